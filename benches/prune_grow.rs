//! Criterion benchmarks of the prune and grow primitives (SPEC §3) on the CPU backend at
//! WRN-28-10 scale (36.5M maskable weights): global magnitude pruning, gradient regrowth, both
//! together (GraNet-style: prune 0.10 -> 0.05, regrow the removed counts), and one RigL
//! exploration step (per-layer prune p = 0.5 + gradient grow), on 2 rayon threads.
//!
//! `cargo bench --bench prune_grow` (all), `cargo bench --bench prune_grow -- global` (one).
//! Each measured iteration starts from a fresh deep copy of the same state (copying is not
//! timed), with ERK masks at density 0.1, random weights, momenta and dense gradients.

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use std::time::{Duration, Instant};

use suptickets::models::{build, ModelConfig};
use suptickets::nn::ParamStore;
use suptickets::rng::Rng;
use suptickets::sparse::{
    grow_gradient, init_random_masks, prune_magnitude_global, prune_magnitude_layerwise,
    DensityInit, MaskInit,
};
use suptickets::Tensor;

/// A copy of `t` with its own storage (so the timed code never pays for copy-on-write).
fn deep(t: &Tensor) -> Tensor {
    Tensor::from_vec(t.to_vec().unwrap(), t.shape()).unwrap()
}

fn deep_store(s: &ParamStore) -> ParamStore {
    let mut out = s.clone();
    for p in &mut out.params {
        p.value = deep(&p.value);
        p.set_mask(p.mask().map(deep));
        p.momentum = p.momentum.as_ref().map(deep);
    }
    out
}

/// WRN-28-10 with ERK masks at 90% sparsity, masked random momenta, and dense random
/// gradients for every parameter.
fn setup() -> (ParamStore, Vec<Option<Tensor>>) {
    let mut net = build(&ModelConfig::new("wrn-28-10", 10)).unwrap();
    let mut r = Rng::new(7);
    for p in &mut net.store.params {
        let v: Vec<f32> = (0..p.value.numel()).map(|_| r.normal() * 0.05).collect();
        p.momentum = Some(Tensor::from_vec(v, p.value.shape()).unwrap());
    }
    let cfg = MaskInit {
        sparsity: 0.9,
        init: DensityInit::Erk,
        dense_first_layer: false,
        seed: 1,
    };
    init_random_masks(&mut net.store, &cfg).unwrap();
    let grads = net
        .store
        .params
        .iter()
        .map(|p| {
            let v: Vec<f32> = (0..p.value.numel()).map(|_| r.normal() * 1e-3).collect();
            Some(Tensor::from_vec(v, p.value.shape()).unwrap())
        })
        .collect();
    (net.store, grads)
}

/// Times `f` on a fresh copy of `base` per iteration.
fn timed(base: &ParamStore, iters: u64, f: &mut dyn FnMut(&mut ParamStore)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mut s = deep_store(base);
        let t0 = Instant::now();
        f(&mut s);
        total += t0.elapsed();
    }
    total
}

fn prune_grow(c: &mut Criterion) {
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build_global();
    let (base, grads) = setup();
    println!(
        "wrn-28-10: {} maskable weights, {} active, {} rayon threads",
        base.num_maskable(),
        suptickets::sparse::active_counts(&base)
            .unwrap()
            .iter()
            .sum::<usize>(),
        rayon::current_num_threads()
    );
    let mut pruned = deep_store(&base);
    let removed = prune_magnitude_global(&mut pruned, 0.05).unwrap();
    let mut g = c.benchmark_group("prune_grow/wrn-28-10");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(4));
    g.bench_function("global_prune", |b| {
        b.iter_custom(|n| {
            timed(&base, n, &mut |s| {
                prune_magnitude_global(s, 0.05).unwrap();
            })
        })
    });
    g.bench_function("gradient_grow", |b| {
        b.iter_custom(|n| {
            timed(&pruned, n, &mut |s| {
                grow_gradient(s, &grads, &removed).unwrap();
            })
        })
    });
    g.bench_function("global_prune+gradient_grow", |b| {
        b.iter_custom(|n| {
            timed(&base, n, &mut |s| {
                let removed = prune_magnitude_global(s, 0.05).unwrap();
                grow_gradient(s, &grads, &removed).unwrap();
            })
        })
    });
    g.bench_function("rigl_step_p0.5", |b| {
        b.iter_custom(|n| {
            timed(&base, n, &mut |s| {
                let removed = prune_magnitude_layerwise(s, 0.5).unwrap();
                grow_gradient(s, &grads, &removed).unwrap();
            })
        })
    });
    g.finish();
}

criterion_group!(benches, prune_grow);
criterion_main!(benches);

//! The sparse-training methods (docs/computation.md, Methods) on real training steps of a 1/8-width
//! ResNet-18 on the CPU (synthetic 32×32 gray batches): after every step the weights and momenta
//! are zero off the mask and the counts are exactly as specified; every exploration step keeps each
//! layer's count, prunes ⌈p·active⌉ by magnitude and regrows the same number of positions (RigL:
//! exactly the top |dense gradient| among the positions inactive after pruning) with weight and
//! momentum 0; SNIP keeps exactly K (the top-K of |g ⊙ w|); GraNet's global density follows the
//! cubic schedule at each pruning step.

use suptickets::models::{build, ModelConfig};
use suptickets::nn::Network;
use suptickets::optim::Sgd;
use suptickets::rng::Rng;
use suptickets::sparse::methods::{
    DropSchedule, MethodKind, SnipScope, SparseConfig, SparseMethod, UpdateReport,
};
use suptickets::sparse::{layer_counts, layer_densities, prune_count, topk_reference, DensityInit};
use suptickets::Tensor;

const BATCH: usize = 16;

fn net() -> Network {
    let mut c = ModelConfig::new("resnet18", 10);
    c.width = 0.125;
    c.in_channels = 1;
    c.seed = 3;
    build(&c).unwrap()
}

/// Four fixed synthetic batches (x, y).
fn batches() -> Vec<(Tensor, Tensor)> {
    let mut r = Rng::new(11);
    (0..4)
        .map(|_| {
            let x: Vec<f32> = (0..BATCH * 32 * 32).map(|_| r.normal()).collect();
            let y: Vec<f32> = (0..BATCH).map(|_| r.below(10) as f32).collect();
            (
                Tensor::from_vec(x, &[BATCH, 1, 32, 32]).unwrap(),
                Tensor::from_vec(y, &[BATCH]).unwrap(),
            )
        })
        .collect()
}

/// Host copy of every maskable layer: (mask, weight, momentum).
#[derive(Clone)]
struct Layer {
    name: String,
    mask: Vec<f32>,
    w: Vec<f32>,
    mom: Vec<f32>,
}

fn snapshot(net: &Network) -> Vec<Layer> {
    net.store
        .maskable_ids()
        .into_iter()
        .map(|id| {
            let p = net.store.param(id);
            let n = p.value.numel();
            Layer {
                name: p.name.clone(),
                mask: p.mask().map_or(vec![1.0; n], |m| m.to_vec().unwrap()),
                w: p.value.to_vec().unwrap(),
                mom: p
                    .momentum
                    .as_ref()
                    .map_or(vec![0.0; n], |m| m.to_vec().unwrap()),
            }
        })
        .collect()
}

fn count(m: &[f32]) -> usize {
    m.iter().filter(|&&v| v != 0.0).count()
}

fn shapes(net: &Network) -> Vec<Vec<usize>> {
    net.store
        .maskable_ids()
        .into_iter()
        .map(|id| net.store.param(id).value.shape().to_vec())
        .collect()
}

/// Masks are 0/1, weight and momentum are zero off the mask, and the method's counts are the
/// masks' counts.
fn check_masked(layers: &[Layer], method: &SparseMethod, when: &str) {
    for (l, layer) in layers.iter().enumerate() {
        for (i, &m) in layer.mask.iter().enumerate() {
            assert!(m == 0.0 || m == 1.0, "{when}: {} mask {m}", layer.name);
            if m == 0.0 {
                assert!(
                    layer.w[i] == 0.0 && layer.mom[i] == 0.0,
                    "{when}: {} at {i} off the mask: w {} momentum {}",
                    layer.name,
                    layer.w[i],
                    layer.mom[i]
                );
            }
        }
        assert_eq!(
            count(&layer.mask),
            method.active()[l],
            "{when}: {} active count",
            layer.name
        );
    }
}

/// What a run saw: the snapshot before and after every update, with its report.
struct Update {
    before: Vec<Layer>,
    after: Vec<Layer>,
    rep: UpdateReport,
    grads: Vec<Option<Vec<f32>>>,
}

/// Trains `steps` steps with `cfg` (ΔT and horizon as configured), checking the masking
/// invariants after every step; returns the initial snapshot, every update and the method.
fn run(
    cfg: SparseConfig,
    ipe: usize,
    steps: u64,
    net: &mut Network,
) -> (Vec<Layer>, Vec<Update>, SparseMethod) {
    let data = batches();
    let mut method = SparseMethod::new(cfg, net, ipe, steps).unwrap();
    let buffers_before: Vec<Vec<f32>> = net
        .store
        .buffers
        .iter()
        .map(|b| b.value.to_vec().unwrap())
        .collect();
    method
        .init_masks(net, Some((&data[0].0, &data[0].1)))
        .unwrap();
    let buffers_after: Vec<Vec<f32>> = net
        .store
        .buffers
        .iter()
        .map(|b| b.value.to_vec().unwrap())
        .collect();
    assert!(
        buffers_before == buffers_after,
        "mask initialisation changed batch-norm statistics"
    );
    let init = snapshot(net);
    check_masked(&init, &method, "init");
    let sgd = Sgd::default();
    let mut updates = Vec::new();
    for s in 1..=steps {
        let (x, y) = &data[(s as usize - 1) % data.len()];
        let dense = method.needs_dense_grad(s);
        let out = net.forward_backward_with(x, y, dense).unwrap();
        sgd.step(&mut net.store, &out.grads, 0.05).unwrap();
        let before = snapshot(net);
        check_masked(&before, &method, &format!("after SGD step {s}"));
        let rep = method.after_step(s, net, &out.grads).unwrap();
        let after = snapshot(net);
        check_masked(&after, &method, &format!("after update {s}"));
        match rep {
            Some(rep) => {
                let grads = net
                    .store
                    .maskable_ids()
                    .into_iter()
                    .map(|id| out.grads[id.0].as_ref().map(|g| g.to_vec().unwrap()))
                    .collect();
                updates.push(Update {
                    before,
                    after,
                    rep,
                    grads,
                });
            }
            None => {
                for (b, a) in before.iter().zip(&after) {
                    assert!(
                        b.mask == a.mask && b.w == a.w,
                        "step {s}: {} changed",
                        a.name
                    );
                }
            }
        }
    }
    (init, updates, method)
}

fn cfg(method: MethodKind, sparsity: f64, dt: usize, epochs: usize, ipe: usize) -> SparseConfig {
    SparseConfig {
        update_interval: dt,
        seed: 7,
        ..SparseConfig::new(method, sparsity, epochs, ipe)
    }
}

/// The exact counts of the density allocation.
fn allocation(net: &Network, c: &SparseConfig, density: f64) -> Vec<usize> {
    let s = shapes(net);
    let d = layer_densities(&s, density, c.init, c.dense_first_layer).unwrap();
    layer_counts(&s, &d)
}

/// Checks one exploration step: counts kept, ⌈p·active⌉ pruned by magnitude (ties to the lower
/// index kept), the same number grown among the positions inactive after pruning (by |grad| for
/// RigL/GraNet), with weight and momentum 0; dense and frozen layers untouched.
fn check_exploration(u: &Update, by_gradient: bool, frozen_first: bool) {
    let p = u.rep.drop_fraction.expect("an exploration step");
    for (l, (b, a)) in u.before.iter().zip(&u.after).enumerate() {
        let active = count(&b.mask);
        assert_eq!(
            count(&a.mask),
            active,
            "step {}: {} count",
            u.rep.step,
            a.name
        );
        let dense = active == b.mask.len() || (frozen_first && l == 0);
        let k = if dense { 0 } else { prune_count(p, active) };
        assert_eq!(u.rep.pruned[l], k, "{} pruned", a.name);
        assert_eq!(u.rep.grown[l], k, "{} grown", a.name);
        if dense {
            assert!(
                a.mask == b.mask && a.w == b.w,
                "{}: dense layer changed",
                a.name
            );
            continue;
        }
        // The magnitude prune: keep the active - k largest |w|.
        let eligible: Vec<bool> = b.mask.iter().map(|&m| m != 0.0).collect();
        let keep = topk_reference(&b.w, &eligible, active - k);
        // Everything kept is still active with its weight and momentum.
        for (i, &kept) in keep.iter().enumerate() {
            if kept {
                assert!(
                    a.mask[i] == 1.0 && a.w[i] == b.w[i] && a.mom[i] == b.mom[i],
                    "{} at {i}: a kept weight changed",
                    a.name
                );
            }
        }
        // Everything active now and not kept was grown: a connection inactive before the step
        // starts at weight and momentum 0; one pruned and regrown in this step keeps both
        // (`--regrown keep`, the default).
        let grown: Vec<bool> = (0..keep.len())
            .map(|i| a.mask[i] == 1.0 && !keep[i])
            .collect();
        assert_eq!(grown.iter().filter(|&&g| g).count(), k, "{}", a.name);
        for (i, &g) in grown.iter().enumerate() {
            if g {
                let (w, m) = if b.mask[i] != 0.0 {
                    (b.w[i], b.mom[i])
                } else {
                    (0.0, 0.0)
                };
                assert!(
                    a.w[i] == w && a.mom[i] == m,
                    "{} at {i}: grown weight {} momentum {}, want {w} {m}",
                    a.name,
                    a.w[i],
                    a.mom[i]
                );
            }
        }
        if by_gradient {
            let g = u.grads[l].as_ref().expect("dense gradient");
            let inactive: Vec<bool> = keep.iter().map(|&k| !k).collect();
            let want = topk_reference(g, &inactive, k);
            assert!(
                want == grown,
                "{}: grown positions are not the top |grad|",
                a.name
            );
        }
    }
}

#[test]
fn static_mask_never_changes_and_has_the_allocated_counts() {
    for (init, dense_first) in [
        (DensityInit::Erk, false),
        (DensityInit::Uniform, true),
        (DensityInit::Er, false),
    ] {
        let mut n = net();
        let c = SparseConfig {
            init,
            dense_first_layer: dense_first,
            ..cfg(MethodKind::Static, 0.9, 2, 2, 4)
        };
        let want = allocation(&n, &c, 0.1);
        let (init_snap, updates, method) = run(c, 4, 6, &mut n);
        assert!(updates.is_empty());
        assert_eq!(method.active(), &want[..]);
        let end = snapshot(&n);
        for (a, b) in init_snap.iter().zip(&end) {
            assert!(a.mask == b.mask, "{} mask changed", a.name);
        }
        if dense_first {
            assert_eq!(count(&end[0].mask), end[0].mask.len());
        }
        if !(dense_first && init == DensityInit::Uniform) {
            // (uniform keeps d in every other layer: a dense first layer adds to the total)
            let total: usize = want.iter().sum();
            let numel: usize = method.numel().iter().sum();
            assert!((total as f64 - 0.1 * numel as f64).abs() <= want.len() as f64);
        }
    }
}

#[test]
fn set_explores_with_exact_counts_and_zero_new_weights() {
    let mut n = net();
    let c = cfg(MethodKind::Set, 0.9, 2, 3, 4);
    let want = allocation(&n, &c, 0.1);
    let (_, updates, method) = run(c, 4, 12, &mut n);
    // horizon 0.75 · 12 = 9: updates at 2, 4, 6, 8
    assert_eq!(
        updates.iter().map(|u| u.rep.step).collect::<Vec<_>>(),
        vec![2, 4, 6, 8]
    );
    for u in &updates {
        check_exploration(u, false, false);
        assert_eq!(u.rep.active, want);
    }
    assert_eq!(method.active(), &want[..]);
    assert_eq!(method.state().updates, 4);
    // the random growth differs from step to step (in the largest, sparsest layer)
    let big = (0..want.len()).max_by_key(|&l| method.numel()[l]).unwrap();
    let grown = |u: &Update| -> Vec<bool> {
        (0..u.after[big].mask.len())
            .map(|i| u.after[big].mask[i] == 1.0 && u.before[big].mask[i] == 0.0)
            .collect()
    };
    assert_ne!(grown(&updates[0]), grown(&updates[1]));
}

#[test]
fn rigl_grows_the_top_dense_gradient_and_keeps_counts() {
    let mut n = net();
    let c = SparseConfig {
        drop_schedule: DropSchedule::Cosine,
        dense_first_layer: true,
        ..cfg(MethodKind::Rigl, 0.9, 2, 3, 4)
    };
    let want = allocation(&n, &c, 0.1);
    let (_, updates, method) = run(c, 4, 12, &mut n);
    assert_eq!(updates.len(), 4);
    for (j, u) in updates.iter().enumerate() {
        // cosine: p(t) = 0.005 + 0.495 (1 + cos(pi t / 9)) / 2
        let t = u.rep.step as f64;
        let p = 0.005 + 0.495 * (1.0 + (std::f64::consts::PI * t / 9.0).cos()) / 2.0;
        assert!(
            (u.rep.drop_fraction.unwrap() - p).abs() < 1e-12,
            "update {j}"
        );
        assert!(u.grads.iter().all(|g| g.is_some()));
        check_exploration(u, true, true);
        assert_eq!(u.rep.active, want);
    }
    assert!(!method.needs_dense_grad(3) && method.needs_dense_grad(4));
    assert!(
        !method.needs_dense_grad(10),
        "no exploration past the horizon"
    );
    // FLOPs: (3 f_S dT + 2 f_S + f_D)/(dT + 1) for steps <= 9, 3 f_S after
    let (fs, fd) = (method.flops_sparse(), method.flops_dense());
    let want_sum = 9.0 * (3.0 * fs * 2.0 + 2.0 * fs + fd) / 3.0 + 3.0 * 3.0 * fs;
    assert!((method.state().flops_sum - want_sum).abs() < 1e-6 * want_sum);
    assert!((method.train_flops_multiple() - want_sum / (12.0 * 3.0 * fd)).abs() < 1e-12);
}

#[test]
fn snip_keeps_exactly_the_top_k_of_g_times_w() {
    for scope in [SnipScope::Global, SnipScope::Layer] {
        let mut n = net();
        let c = SparseConfig {
            snip_scope: scope,
            ..cfg(MethodKind::Snip, 0.95, 2, 2, 4)
        };
        // the scores on an identical network
        let mut twin = net();
        let data = batches();
        let out = twin
            .forward_backward_with(&data[0].0, &data[0].1, true)
            .unwrap();
        let ids = twin.store.maskable_ids();
        let scores: Vec<Vec<f32>> = ids
            .iter()
            .map(|&id| {
                let g = out.grads[id.0].as_ref().unwrap().to_vec().unwrap();
                let w = twin.store.param(id).value.to_vec().unwrap();
                g.iter().zip(&w).map(|(g, w)| g * w).collect()
            })
            .collect();
        let numel: usize = scores.iter().map(Vec::len).sum();
        let want_layers = allocation(&n, &c, 0.05);
        let (init, updates, method) = run(c, 4, 4, &mut n);
        assert!(updates.is_empty());
        match scope {
            SnipScope::Global => {
                let k = (0.05 * numel as f64).round() as usize;
                assert_eq!(method.active().iter().sum::<usize>(), k);
                let flat: Vec<f32> = scores.concat();
                let want = topk_reference(&flat, &vec![true; flat.len()], k);
                let got: Vec<bool> = init
                    .iter()
                    .flat_map(|l| l.mask.iter().map(|&m| m != 0.0))
                    .collect();
                assert!(want == got, "SNIP global mask is not the top-K of |g w|");
            }
            SnipScope::Layer => {
                assert_eq!(method.active(), &want_layers[..]);
                for (l, s) in scores.iter().enumerate() {
                    let want = topk_reference(s, &vec![true; s.len()], want_layers[l]);
                    let got: Vec<bool> = init[l].mask.iter().map(|&m| m != 0.0).collect();
                    assert!(want == got, "{}", init[l].name);
                }
            }
        }
        let end = snapshot(&n);
        for (a, b) in init.iter().zip(&end) {
            assert!(a.mask == b.mask);
        }
    }
}

#[test]
fn granet_density_follows_the_cubic_schedule() {
    for (start, dense_first) in [(0.0, false), (1.0, true)] {
        let mut n = net();
        // 4 epochs of 4 steps, dT = 2: i = step / 2; prune window [start·2, 2·2]
        let c = SparseConfig {
            prune_start_epoch: start,
            prune_end_epoch: 2.0,
            dense_first_layer: dense_first,
            ..cfg(MethodKind::Granet, 0.9, 2, 4, 4)
        };
        assert_eq!(c.initial_density, 0.5);
        let init_counts = allocation(&n, &c, 0.5);
        let (init, updates, method) = run(c, 4, 16, &mut n);
        assert_eq!(
            init.iter().map(|l| count(&l.mask)).collect::<Vec<_>>(),
            init_counts
        );
        let numel: usize = method.numel().iter().sum();
        let (i0, i_f) = ((start * 2.0) as u64, 4u64);
        assert_eq!(method.prune_window(), (i0, i_f));
        let mut pruned_steps = 0;
        for u in &updates {
            let i = u.rep.step / 2;
            if (i0..=i_f).contains(&i) {
                let x = 1.0 - (i - i0) as f64 / (i_f - i0) as f64;
                let d = 0.1 + 0.4 * x * x * x;
                let got = u.rep.target_density.expect("a pruning step");
                assert!((got - d).abs() < 1e-12, "i = {i}: {got} vs {d}");
                let before: usize = u.before.iter().map(|l| count(&l.mask)).sum();
                let k = (d * numel as f64).round() as usize;
                let total: usize = u.rep.active.iter().sum();
                assert_eq!(total, k.min(before), "i = {i}: global count");
                pruned_steps += 1;
            } else {
                assert_eq!(u.rep.target_density, None);
            }
            if dense_first {
                assert_eq!(u.rep.active[0], method.numel()[0]);
                assert!(
                    u.before[0].w == u.after[0].w,
                    "the dense first layer changed"
                );
            }
            if u.rep.drop_fraction.is_some() {
                // Exploration after the global prune keeps the pruned counts: compare with a
                // snapshot of the masks between the two (the report's counts).
                let counts: Vec<usize> = u.after.iter().map(|l| count(&l.mask)).collect();
                assert_eq!(counts, u.rep.active);
                for l in 0..counts.len() {
                    assert_eq!(u.rep.pruned[l], u.rep.grown[l]);
                }
            }
        }
        assert_eq!(pruned_steps as u64, method.state().prune_steps);
        assert_eq!(pruned_steps, (i_f - i0.max(1) + 1) as usize);
        // the final density d_f is reached exactly
        let k = (0.1 * numel as f64).round() as usize;
        assert_eq!(method.active().iter().sum::<usize>(), k);
        // exploration (horizon 12) ran at 2, 4, ..., 10
        assert_eq!(method.state().updates, 5);
    }
}

#[test]
fn granet_exploration_step_is_a_rigl_step_on_the_pruned_masks() {
    // With the pruning window before the first update, every update is a pure exploration
    // step whose growth is checked against the dense gradient.
    let mut n = net();
    let c = SparseConfig {
        prune_start_epoch: 0.0,
        prune_end_epoch: 0.0,
        ..cfg(MethodKind::Granet, 0.8, 2, 2, 4)
    };
    let (_, updates, method) = run(c, 4, 8, &mut n);
    assert_eq!(method.prune_window(), (0, 0));
    // i_f = 0: the first update (s = ΔT) prunes straight to d_f = 0.2; later updates only
    // explore (before this was fixed, a zero window silently never pruned).
    assert_eq!(method.state().prune_steps, 1);
    let d = updates[0].rep.target_density.expect("a pruning step");
    assert!((d - 0.2).abs() < 1e-12, "{d}");
    for u in &updates[1..] {
        assert_eq!(u.rep.target_density, None);
        check_exploration(u, true, false);
    }
    assert_eq!(updates.len(), 2);
}

#[test]
fn dense_method_has_no_masks_and_dense_flops() {
    let mut n = net();
    let (init, updates, method) = run(SparseConfig::dense(), 4, 3, &mut n);
    assert!(updates.is_empty());
    assert!(init.iter().all(|l| count(&l.mask) == l.mask.len()));
    assert!(n.store.params.iter().all(|p| p.mask().is_none()));
    assert_eq!(method.train_flops_multiple(), 1.0);
}

/// `--snip-scope layer --dense-first-layer`: the frozen conv keeps its all-ones mask and the
/// other layers get their allocated counts (this errored with "no score tensor for
/// conv1.weight" before the fix).
#[test]
fn snip_layer_scope_with_a_dense_first_layer() {
    let mut n = net();
    let c = SparseConfig {
        snip_scope: SnipScope::Layer,
        dense_first_layer: true,
        ..cfg(MethodKind::Snip, 0.9, 2, 2, 4)
    };
    let want = allocation(&n, &c, 0.1);
    let (init, _, method) = run(c, 4, 2, &mut n);
    assert_eq!(count(&init[0].mask), init[0].mask.len(), "first conv dense");
    assert_eq!(method.active(), &want[..]);
}

/// The cycles of a SET run grow at random (the base method's criterion), so they need no
/// gradient at all; RigL's need the dense gradient.
#[test]
fn cycle_exploration_grows_with_the_base_methods_criterion() {
    for (method, needs_grad) in [(MethodKind::Set, false), (MethodKind::Rigl, true)] {
        let mut n = net();
        let mut m = SparseMethod::new(cfg(method, 0.9, 2, 2, 4), &mut n, 4, 8).unwrap();
        m.init_masks(&mut n, None).unwrap();
        assert_eq!(m.cycle_needs_dense_grad(), needs_grad, "{method}");
        let before = m.active().to_vec();
        let no_grads: Vec<Option<Tensor>> = vec![None; n.store.params.len()];
        let r = m.explore_cycle(&mut n, 0.5, 1, &no_grads);
        if needs_grad {
            let e = r.unwrap_err().to_string();
            assert!(e.contains("gradient"), "{e}");
        } else {
            let done = r.unwrap();
            assert_eq!(m.active(), &before[..], "SET cycle keeps every count");
            assert!(done.grown.iter().sum::<usize>() > 0);
        }
    }
}

//! The Sup-tickets building blocks (docs/computation.md, Sup-tickets): budget split and triangle
//! learning rate; CIA, CAA and CIMA superposition with global and layerwise re-pruning on hand-made
//! tensors (expected values worked out by hand in `by_hand.rs`) and on a real `resnet18 --width
//! 0.25` store against a host reference; batch-norm AV and BU; the deep-ensemble baseline; the
//! superposer's memory, measured with a counting allocator; and the whole superposition on `cuda:0`
//! against the CPU (prints `skipped: no GPU` without one, fails instead when
//! `SUPTICKETS_REQUIRE_GPU=1`).
//!
//! Files: this one holds the shared helpers, the counting allocator and the memory tests;
//! `schedule.rs`, `by_hand.rs`, `reprune.rs`, `batch_norm.rs` and `ensemble.rs` the tests by
//! topic.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use suptickets::models::{build, ModelConfig};
use suptickets::nn::{
    BatchNorm, Conv2d, Flatten, GlobalAvgPool, Linear, Network, ParamRole, ParamStore, Relu,
    Sequential,
};
use suptickets::rng::Rng;
use suptickets::sparse::{
    active_counts, grow_random, init_random_masks, prune_magnitude_layerwise, DensityInit, MaskInit,
};
use suptickets::suptickets::{
    bn_update, Averaging, BnAverager, Budget, Ensemble, Phase, Reprune, SupSchedule,
    SuperposeConfig, Superposer,
};
use suptickets::train::metrics;
use suptickets::{Device, Tensor};

#[path = "../common/mod.rs"]
mod common;

// ---- a counting allocator (for the memory measurement) -------------------------------------

/// Live heap bytes of this process.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator; the counter only records
// the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` was allocated by `System` with layout `l` (through this allocator).
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` was allocated by `System` with layout `l`; same contract as the caller's.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::SeqCst)
}

// ---- helpers --------------------------------------------------------------------------------

fn t(v: &[f32]) -> Tensor {
    Tensor::from_vec(v.to_vec(), &[v.len()]).unwrap()
}

fn v(t: &Tensor) -> Vec<f32> {
    t.to_vec().unwrap()
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= tol * b.abs().max(1.0),
            "{what}[{i}]: got {a}, want {b} (all: {got:?} vs {want:?})"
        );
    }
}

fn resnet_quarter() -> Network {
    let mut c = ModelConfig::new("resnet18", 10);
    c.width = 0.25;
    build(&c).unwrap()
}

fn mask_init(seed: u64) -> MaskInit {
    MaskInit {
        sparsity: 0.9,
        init: DensityInit::Erk,
        dense_first_layer: false,
        seed,
    }
}

/// Simulates cycle k's training on `store`: an exploration step (prune half of every layer's
/// active weights, regrow as many at random) and fresh random values on every active weight
/// (some exact duplicates, so ties at the threshold happen).
fn fake_cycle(store: &mut ParamStore, r: &mut Rng, k: usize) {
    let pruned = prune_magnitude_layerwise(store, 0.5).unwrap();
    grow_random(store, &pruned, 100 + k as u64).unwrap();
    for id in store.maskable_ids() {
        let p = &mut store.params[id.0];
        let m = v(p.mask().unwrap());
        let w: Vec<f32> = m
            .iter()
            .map(|&m| {
                if m == 0.0 {
                    0.0
                } else if r.below(8) == 0 {
                    (r.below(5) as f32 - 2.0) * 0.0625
                } else {
                    r.normal() * 0.1
                }
            })
            .collect();
        p.value = Tensor::from_slice(&w, p.value.shape(), &p.value.device()).unwrap();
    }
    // Batch-norm statistics and the non-maskable parameters move too.
    for b in &mut store.buffers {
        let x: Vec<f32> = (0..b.value.numel()).map(|_| r.uniform() + 0.5).collect();
        b.value = Tensor::from_slice(&x, b.value.shape(), &b.value.device()).unwrap();
    }
    for p in store.params.iter_mut().filter(|p| !p.is_maskable()) {
        let x: Vec<f32> = (0..p.value.numel()).map(|_| r.normal()).collect();
        p.value = Tensor::from_slice(&x, p.value.shape(), &p.value.device()).unwrap();
    }
}

/// The measurement itself; runs alone in a child process (see
/// `superposer_memory_is_one_copy_whatever_the_tickets`) so that no other test allocates
/// while it counts.
#[test]
fn memory_child() {
    if std::env::var("SUPTICKETS_MEMORY_CHILD").is_err() {
        return;
    }
    for averaging in [Averaging::Cia, Averaging::Caa] {
        let mut net = resnet_quarter();
        init_random_masks(&mut net.store, &mask_init(5)).unwrap();
        let mut r = Rng::new(6);
        fake_cycle(&mut net.store, &mut r, 0);
        let maskable = net.store.num_maskable();
        let dense = net.store.num_params() - maskable;
        let cfg = SuperposeConfig {
            averaging,
            reprune: Reprune::Global,
            density: None,
            frozen_first: false,
        };
        let base = live();
        let mut sup = Superposer::new(&cfg, &net.store).unwrap();
        let after_new = live() - base;
        let copies = if averaging == Averaging::Caa { 2 } else { 1 };
        let want = 4 * (copies * maskable + dense);
        println!(
            "{averaging}: {maskable} maskable weights ({} bytes), {dense} non-maskable; \
             superposer holds {after_new} bytes after ticket 0 (extra_bytes {}; expected {want})",
            4 * maskable,
            sup.extra_bytes()
        );
        assert_eq!(sup.extra_bytes(), want);
        // Bookkeeping (names, vectors) on top of the tensors: well under 1% here.
        assert!(
            (after_new - want as isize).abs() < 32 * 1024,
            "after ticket 0: {after_new} bytes held, expected {want}"
        );
        for k in 1..=6 {
            fake_cycle(&mut net.store, &mut r, k);
            let before = live();
            sup.add_ticket(k, &net.store).unwrap();
            let grown = live() - before;
            println!("{averaging}: ticket {k}: superposer grew by {grown} bytes");
            assert!(
                grown.abs() < 4096,
                "ticket {k}: memory grew by {grown} bytes"
            );
        }
        assert_eq!(sup.extra_bytes(), want);
        // The deep-ensemble baseline, for contrast, grows by one model per ticket.
        let mut ens = Ensemble::new();
        ens.add_ticket(&net.store).unwrap();
        let one = ens.bytes();
        ens.add_ticket(&net.store).unwrap();
        assert_eq!(ens.bytes(), 2 * one);
        drop(sup);
    }
}

#[test]
fn superposer_memory_is_one_copy_whatever_the_tickets() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["memory_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("SUPTICKETS_MEMORY_CHILD", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the measurement failed");
    assert!(text.contains("ticket 6"), "the measurement did not run");
}

// ---- CUDA against CPU -------------------------------------------------------------------------

mod batch_norm;
mod by_hand;
mod ensemble;
mod reprune;
mod schedule;

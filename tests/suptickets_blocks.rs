//! The Sup-tickets building blocks (docs/computation.md, Sup-tickets): budget split and triangle
//! learning rate; CIA, CAA and CIMA superposition with global and layerwise re-pruning on hand-made
//! tensors (expected values worked out by hand below) and on a real `resnet18 --width 0.25` store
//! against a host reference; batch-norm AV and BU; the deep-ensemble baseline; the superposer's
//! memory, measured with a counting allocator; and the whole superposition on `cuda:0` against the
//! CPU (prints `skipped: no GPU` without one, fails instead when `SUPTICKETS_REQUIRE_GPU=1`).

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

/// A hand-made store: maskable `a.weight` [4] and `b.weight` [3], a bias `b.bias` [2] and
/// batch-norm buffers `bn.running_mean`, `bn.running_var` [2].
fn hand_store() -> ParamStore {
    let mut s = ParamStore::default();
    s.add_param("a.weight", t(&[0.0; 4]), ParamRole::Weight);
    s.add_param("b.weight", t(&[0.0; 3]), ParamRole::Weight);
    s.add_param("b.bias", t(&[0.0; 2]), ParamRole::Bias);
    s.add_buffer("bn.running_mean", t(&[0.0; 2]));
    s.add_buffer("bn.running_var", t(&[1.0; 2]));
    s
}

/// One hand-made ticket: (a, a's mask, b, b's mask, bias, running mean, running var).
type HandTicket = (
    [f32; 4],
    [f32; 4],
    [f32; 3],
    [f32; 3],
    [f32; 2],
    [f32; 2],
    [f32; 2],
);

/// The three tickets of the hand-made cases; each has 2 active weights in `a`, 1 in `b`.
const HAND: [HandTicket; 3] = [
    (
        [1.0, 0.0, -3.0, 0.0],
        [1.0, 0.0, 1.0, 0.0],
        [0.0, 2.0, 0.0],
        [0.0, 1.0, 0.0],
        [1.0, 1.0],
        [0.0, 3.0],
        [1.0, 1.0],
    ),
    (
        [0.0, 4.0, -1.0, 0.0],
        [0.0, 1.0, 1.0, 0.0],
        [6.0, 0.0, 0.0],
        [1.0, 0.0, 0.0],
        [3.0, -1.0],
        [2.0, 6.0],
        [3.0, 1.0],
    ),
    (
        [2.0, 0.0, 0.0, 5.0],
        [1.0, 0.0, 0.0, 1.0],
        [0.0, 0.0, 9.0],
        [0.0, 0.0, 1.0],
        [2.0, 3.0],
        [4.0, 0.0],
        [2.0, 4.0],
    ),
];

fn set_ticket(s: &mut ParamStore, k: usize) {
    let (a, am, b, bm, bias, mean, var) = HAND[k];
    s.params[0].value = t(&a);
    s.params[0].mask = Some(t(&am));
    s.params[1].value = t(&b);
    s.params[1].mask = Some(t(&bm));
    s.params[2].value = t(&bias);
    s.buffers[0].value = t(&mean);
    s.buffers[1].value = t(&var);
}

/// Runs the three hand-made tickets through a superposer; returns the ultimate (a, a mask, b,
/// b mask, bias).
#[allow(clippy::type_complexity)]
fn run_hand(
    averaging: Averaging,
    reprune: Reprune,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut s = hand_store();
    set_ticket(&mut s, 0);
    let cfg = SuperposeConfig {
        averaging,
        reprune,
        density: None,
        frozen_first: false,
    };
    let mut sup = Superposer::new(&cfg, &s).unwrap();
    for k in 1..3 {
        set_ticket(&mut s, k);
        let st = sup.add_ticket(k, &s).unwrap();
        assert_eq!(st.kept.iter().sum::<usize>(), 3, "ticket {k}: {st:?}");
        if reprune == Reprune::Layerwise {
            assert_eq!(st.kept, vec![2, 1]);
        }
    }
    // Out of order: an error naming the expected ticket.
    let e = sup.add_ticket(5, &s).unwrap_err();
    assert!(e.to_string().contains("expected ticket 3"), "{e}");
    let ult = sup.ultimate_store(&s).unwrap();
    (
        v(&ult.params[0].value),
        v(ult.params[0].mask.as_ref().unwrap()),
        v(&ult.params[1].value),
        v(ult.params[1].mask.as_ref().unwrap()),
        v(&ult.params[2].value),
    )
}

// ---- schedule -------------------------------------------------------------------------------

#[test]
fn budget_split() {
    let b = Budget::new(250, 8, 0.1).unwrap();
    assert_eq!((b.normal_epochs, b.cyclic_epochs, b.tickets), (226, 24, 3));
    // r·E < C: no cyclic phase, every epoch normal, no capture.
    let b = Budget::new(60, 8, 0.1).unwrap();
    assert_eq!((b.normal_epochs, b.cyclic_epochs, b.tickets), (60, 0, 0));
    let s = SupSchedule::new(b, 10, 0.001, 0.005).unwrap();
    assert!((0..600).all(|i| s.phase(i) == Phase::Normal && s.capture(i).is_none()));
    assert_eq!(s.phase(600), Phase::Done);
    assert_eq!(s.cyclic_lr(599), None);
}

#[test]
fn triangle_lr_and_cycle_boundaries() {
    // E = 30, C = 2, r = 0.2: 3 cycles of 2 epochs after P = 24; I = 10, so a cycle is L = 20
    // iterations starting at 240, 260, 280.
    let b = Budget::new(30, 2, 0.2).unwrap();
    assert_eq!((b.normal_epochs, b.tickets), (24, 3));
    let (a1, a2) = (0.001f32, 0.005f32);
    let s = SupSchedule::new(b, 10, a1, a2).unwrap();
    assert_eq!(
        (s.normal_iters(), s.cycle_iters(), s.total_iters()),
        (240, 20, 300)
    );
    let close = |x: Option<f32>, y: f32| {
        let x = x.unwrap();
        assert!((x - y).abs() < 1e-9, "{x} vs {y}");
    };
    for start in [240, 260, 280] {
        // Start: τ = 1/20, so 0.9 α1 + 0.1 α2 (α1 at the boundary itself, τ → 0).
        close(s.cyclic_lr(start), 0.9 * a1 + 0.1 * a2);
        // Quarter (τ = 5/20): (α1 + α2)/2.
        close(s.cyclic_lr(start + 4), 0.5 * (a1 + a2));
        // Middle (τ = 1/2): α2.
        close(s.cyclic_lr(start + 9), a2);
        // Three quarters: (α1 + α2)/2 again; end of the cycle (τ = 1): α1.
        close(s.cyclic_lr(start + 14), 0.5 * (a1 + a2));
        close(s.cyclic_lr(start + 19), a1);
    }
    assert_eq!(s.cyclic_lr(239), None);
    assert_eq!(s.phase(239), Phase::Normal);
    assert_eq!(s.phase(265), Phase::Cycle { ticket: 2, step: 5 });
    // Exploration at each cycle start; captures: ticket 0 after the last normal step, ticket k
    // after the last step of cycle k.
    let starts: Vec<(usize, usize)> = (0..300)
        .filter_map(|i| s.cycle_start(i).map(|k| (i, k)))
        .collect();
    assert_eq!(starts, vec![(240, 1), (260, 2), (280, 3)]);
    let caps: Vec<(usize, usize)> = (0..300)
        .filter_map(|i| s.capture(i).map(|k| (i, k)))
        .collect();
    assert_eq!(caps, vec![(239, 0), (259, 1), (279, 2), (299, 3)]);
    assert_eq!(s.capture_iter(3), Some(299));
    assert_eq!(s.capture_iter(4), None);
}

// ---- superposition on hand-made tensors -------------------------------------------------------

#[test]
fn cia_by_hand() {
    // Ticket 1: A = (S0 + W1)/2: a = [0.5, 2, -2, 0] keeps 2 and -2; b = [3, 1, 0] keeps 3.
    // Ticket 2: A = (2·S1 + W2)/3: a = [2/3, 4/3, -4/3, 5/3]: layerwise keeps 5/3 and the tie
    // 4/3 vs -4/3 goes to the lower index; b = [2, 0, 3] keeps 3. Bias: [2, 0] then [2, 1].
    let (a, am, b, bm, bias) = run_hand(Averaging::Cia, Reprune::Layerwise);
    assert_close("a", &a, &[0.0, 4.0 / 3.0, 0.0, 5.0 / 3.0], 1e-6);
    assert_eq!(am, vec![0.0, 1.0, 0.0, 1.0]);
    assert_close("b", &b, &[0.0, 0.0, 3.0], 1e-6);
    assert_eq!(bm, vec![0.0, 0.0, 1.0]);
    assert_close("bias", &bias, &[2.0, 1.0], 1e-6);
    // Global, K = 3 over a|b: [2/3, 4/3, -4/3, 5/3 | 2, 0, 3] keeps 3, 2 and 5/3.
    let (a, am, b, bm, _) = run_hand(Averaging::Cia, Reprune::Global);
    assert_close("a", &a, &[0.0, 0.0, 0.0, 5.0 / 3.0], 1e-6);
    assert_eq!(am, vec![0.0, 0.0, 0.0, 1.0]);
    assert_close("b", &b, &[2.0, 0.0, 3.0], 1e-6);
    assert_eq!(bm, vec![1.0, 0.0, 1.0]);
}

#[test]
fn caa_by_hand() {
    // Counts start at ticket 0's mask: a [1,0,1,0], b [0,1,0].
    // Ticket 1 (a mask [0,1,1,0]): a = [1 (inactive), 4/1, (1·-3 + -1)/2 = -2, 0], counts
    // [1,1,2,0], keeps 4 and -2; b (mask [1,0,0]): [6/1, 2 (inactive), 0] keeps 6.
    // Ticket 2 (a mask [1,0,0,1]): a = [(1·0 + 2)/2 = 1, 4, -2, 5/1] keeps 5 and 4;
    // b (mask [0,0,1]): [6, 0, 9/1] keeps 9. Bias as CIA: [2, 1].
    let (a, am, b, bm, bias) = run_hand(Averaging::Caa, Reprune::Layerwise);
    assert_close("a", &a, &[0.0, 4.0, 0.0, 5.0], 1e-6);
    assert_eq!(am, vec![0.0, 1.0, 0.0, 1.0]);
    assert_close("b", &b, &[0.0, 0.0, 9.0], 1e-6);
    assert_eq!(bm, vec![0.0, 0.0, 1.0]);
    assert_close("bias", &bias, &[2.0, 1.0], 1e-6);
    // Global: [1, 4, -2, 5 | 6, 0, 9] keeps 9, 6, 5.
    let (a, _, b, _, _) = run_hand(Averaging::Caa, Reprune::Global);
    assert_close("a", &a, &[0.0, 0.0, 0.0, 5.0], 1e-6);
    assert_close("b", &b, &[6.0, 0.0, 9.0], 1e-6);
}

#[test]
fn cima_by_hand() {
    // β = 0.5. Ticket 1: a = [0.5, 2, -2, 0] keeps 2, -2; b = [3, 1, 0] keeps 3; bias [2, 0].
    // Ticket 2: a = 0.5·[0,2,-2,0] + 0.5·[2,0,0,5] = [1, 1, -1, 2.5] keeps 2.5 and the first of
    // the three ties; b = [1.5, 0, 4.5] keeps 4.5; bias 0.5·[2,0] + 0.5·[2,3] = [2, 1.5].
    let (a, am, b, _, bias) = run_hand(Averaging::Cima { beta: 0.5 }, Reprune::Layerwise);
    assert_eq!(a, vec![1.0, 0.0, 0.0, 2.5]);
    assert_eq!(am, vec![1.0, 0.0, 0.0, 1.0]);
    assert_eq!(b, vec![0.0, 0.0, 4.5]);
    assert_eq!(bias, vec![2.0, 1.5]);
    // β = 0.8 (the default): ticket 1 a = 0.8·[1,0,-3,0] + 0.2·[0,4,-1,0] = [0.8, 0.8, -2.6,
    // 0], keeps -2.6 and the tie 0.8 at index 0.
    let mut s = hand_store();
    set_ticket(&mut s, 0);
    let cfg = SuperposeConfig {
        averaging: Averaging::parse("cima", 0.8).unwrap(),
        reprune: Reprune::Layerwise,
        density: None,
        frozen_first: false,
    };
    let mut sup = Superposer::new(&cfg, &s).unwrap();
    set_ticket(&mut s, 1);
    sup.add_ticket(1, &s).unwrap();
    let u = sup.ultimate().unwrap();
    assert_close("a", &v(&u[0].weight), &[0.8, 0.0, -2.6, 0.0], 1e-6);
    assert_eq!(v(u[0].mask.as_ref().unwrap()), vec![1.0, 0.0, 1.0, 0.0]);
}

#[test]
fn bn_average_by_hand() {
    // CIA / CAA: running means of [0,3], [2,6], [4,0] -> [2, 3]; variances [1,1], [3,1],
    // [2,4] -> [2, 2]. CIMA β = 0.5: [1, 4.5] then [2.5, 2.25]; variances [2, 1] then [2, 2.5].
    for (avg, mean, var) in [
        (Averaging::Cia, [2.0, 3.0], [2.0, 2.0]),
        (Averaging::Caa, [2.0, 3.0], [2.0, 2.0]),
        (Averaging::Cima { beta: 0.5 }, [2.5, 2.25], [2.0, 2.5]),
    ] {
        let mut s = hand_store();
        set_ticket(&mut s, 0);
        let mut bn = BnAverager::new(avg, &s).unwrap();
        for k in 1..3 {
            set_ticket(&mut s, k);
            bn.add_ticket(k, &s).unwrap();
        }
        let mut out = hand_store();
        bn.apply_to(&mut out).unwrap();
        assert_close(
            &format!("{avg} mean"),
            &v(&out.buffers[0].value),
            &mean,
            1e-6,
        );
        assert_close(&format!("{avg} var"), &v(&out.buffers[1].value), &var, 1e-6);
        assert_eq!(bn.extra_bytes(), 4 * 4);
    }
}

// ---- a real store ---------------------------------------------------------------------------

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
        let m = v(p.mask.as_ref().unwrap());
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

/// Keeps the k largest |a| (ties to the lower index) of the flat concatenation.
fn host_topk(a: &[f32], k: usize) -> Vec<bool> {
    let key = |x: f32| x.to_bits() & 0x7fff_ffff;
    let mut idx: Vec<usize> = (0..a.len()).collect();
    idx.sort_by(|&x, &y| key(a[y]).cmp(&key(a[x])).then(x.cmp(&y)));
    let mut sel = vec![false; a.len()];
    for &i in &idx[..k] {
        sel[i] = true;
    }
    sel
}

/// The host reference of a re-pruning of the averaged values `avg` (flat over layers of
/// `sizes`): the global top-`total`, or per layer the top-`active[l]`.
fn host_reprune(
    avg: &[f32],
    reprune: Reprune,
    total: usize,
    sizes: &[usize],
    active: &[usize],
) -> Vec<bool> {
    match reprune {
        Reprune::Global => host_topk(avg, total),
        Reprune::Layerwise => {
            let mut sel = Vec::with_capacity(avg.len());
            let mut at = 0;
            for (l, &n) in sizes.iter().enumerate() {
                sel.extend(host_topk(&avg[at..at + n], active[l]));
                at += n;
            }
            sel
        }
    }
}

#[test]
fn repruned_density_is_exact_on_resnet18() {
    for (reprune, density) in [
        (Reprune::Global, None),
        (Reprune::Global, Some(0.07)),
        (Reprune::Layerwise, None),
    ] {
        let mut net = resnet_quarter();
        init_random_masks(&mut net.store, &mask_init(3)).unwrap();
        let mut r = Rng::new(7);
        fake_cycle(&mut net.store, &mut r, 0);
        let ids = net.store.maskable_ids();
        let sizes: Vec<usize> = ids
            .iter()
            .map(|&i| net.store.param(i).value.numel())
            .collect();
        let total: usize = sizes.iter().sum();
        let active0 = active_counts(&net.store).unwrap();
        let cfg = SuperposeConfig {
            averaging: Averaging::Cia,
            reprune,
            density,
            frozen_first: false,
        };
        let mut sup = Superposer::new(&cfg, &net.store).unwrap();
        // Host reference of S (flat over the maskable tensors), CIA and the same re-pruning.
        let flat = |s: &ParamStore| -> Vec<f32> {
            ids.iter().flat_map(|&i| v(&s.param(i).value)).collect()
        };
        let mut host = flat(&net.store);
        for k in 1..=3 {
            fake_cycle(&mut net.store, &mut r, k);
            let active = active_counts(&net.store).unwrap();
            assert_eq!(active, active0, "exploration keeps every layer's count");
            let st = sup.add_ticket(k, &net.store).unwrap();
            // Expected counts.
            let want_total = match (reprune, density) {
                (Reprune::Global, Some(d)) => (d * total as f64).round() as usize,
                _ => active.iter().sum(),
            };
            assert_eq!(
                st.kept.iter().sum::<usize>(),
                want_total,
                "{reprune:?} {density:?}"
            );
            if reprune == Reprune::Layerwise {
                assert_eq!(st.kept, active);
            }
            // Host reference.
            let w = flat(&net.store);
            let avg: Vec<f32> = host
                .iter()
                .zip(&w)
                .map(|(&s, &w)| (k as f32 * s + w) / (k + 1) as f32)
                .collect();
            let sel = host_reprune(&avg, reprune, want_total, &sizes, &active);
            host = avg
                .iter()
                .zip(&sel)
                .map(|(&a, &s)| if s { a } else { 0.0 })
                .collect();
            // The ultimate ticket: exactly the host values and the selected positions.
            let ult = sup.ultimate().unwrap();
            let got_w: Vec<f32> = ult.iter().flat_map(|u| v(&u.weight)).collect();
            let got_m: Vec<f32> = ult
                .iter()
                .flat_map(|u| v(u.mask.as_ref().unwrap()))
                .collect();
            assert_eq!(got_w, host, "{reprune:?} {density:?} ticket {k}: weights");
            let want_m: Vec<f32> = sel.iter().map(|&s| s as u8 as f32).collect();
            assert_eq!(got_m, want_m, "{reprune:?} {density:?} ticket {k}: masks");
            let mut at = 0;
            for (l, u) in ult.iter().enumerate() {
                let ones = v(u.mask.as_ref().unwrap())
                    .iter()
                    .filter(|&&m| m == 1.0)
                    .count();
                assert_eq!(ones, st.kept[l], "layer {l}");
                assert_eq!(ones, sel[at..at + sizes[l]].iter().filter(|&&s| s).count());
                at += sizes[l];
            }
        }
        // The training store is untouched by superposing (training continues from W_k).
        let before = flat(&net.store);
        let ult = sup.ultimate_store(&net.store).unwrap();
        assert_eq!(flat(&net.store), before);
        let d = ult
            .maskable_ids()
            .iter()
            .map(|&i| {
                v(ult.param(i).mask.as_ref().unwrap())
                    .iter()
                    .filter(|&&m| m != 0.0)
                    .count()
            })
            .sum::<usize>();
        let want = match density {
            Some(x) => (x * total as f64).round() as usize,
            None => active0.iter().sum(),
        };
        assert_eq!(d, want, "{reprune:?} {density:?}: final density");
        println!(
            "{reprune:?} density {density:?}: ultimate ticket keeps {d} of {total} ({:.4})",
            d as f64 / total as f64
        );
    }
}

#[test]
fn bn_average_equals_running_mean_of_tickets() {
    let mut net = resnet_quarter();
    init_random_masks(&mut net.store, &mask_init(4)).unwrap();
    let mut r = Rng::new(8);
    fake_cycle(&mut net.store, &mut r, 0);
    let mut bn = BnAverager::new(Averaging::Cia, &net.store).unwrap();
    let mut sums: Vec<Vec<f64>> = net
        .store
        .buffers
        .iter()
        .map(|b| v(&b.value).iter().map(|&x| x as f64).collect())
        .collect();
    for k in 1..=4 {
        fake_cycle(&mut net.store, &mut r, k);
        bn.add_ticket(k, &net.store).unwrap();
        for (s, b) in sums.iter_mut().zip(&net.store.buffers) {
            s.iter_mut()
                .zip(v(&b.value))
                .for_each(|(s, x)| *s += x as f64);
        }
        let mut out = net.store.clone();
        bn.apply_to(&mut out).unwrap();
        for (s, b) in sums.iter().zip(&out.buffers) {
            let want: Vec<f32> = s.iter().map(|&x| (x / (k + 1) as f64) as f32).collect();
            assert_close(&b.name, &v(&b.value), &want, 1e-5);
        }
    }
    let bytes: usize = net.store.buffers.iter().map(|b| 4 * b.value.numel()).sum();
    assert_eq!(bn.extra_bytes(), bytes);
}

// ---- BU -------------------------------------------------------------------------------------

/// BN(3) -> conv 3->4 -> BN(4) -> ReLU -> global pool -> linear 4->2.
fn tiny_bn_net() -> Network {
    let mut store = ParamStore::default();
    let mut r = Rng::new(1);
    let mut body = Sequential::new();
    body.push(BatchNorm::new(&mut store, "bn0", 3).unwrap());
    body.push(Conv2d::new(&mut store, "conv", 3, 4, 3, 1, 1, false, &mut r).unwrap());
    body.push(BatchNorm::new(&mut store, "bn1", 4).unwrap());
    body.push(Relu);
    body.push(GlobalAvgPool);
    body.push(Flatten);
    body.push(Linear::new(&mut store, "fc", 4, 2, true, &mut r).unwrap());
    Network {
        arch: "tiny".into(),
        num_classes: 2,
        input_shape: [3, 5, 5],
        store,
        body: Box::new(body),
    }
}

/// Batches of [4, 3, 5, 5] with per-batch shifts and scales, labels 0/1.
fn tiny_batches(n: usize, seed: u64) -> Vec<(Tensor, Tensor)> {
    let mut r = Rng::new(seed);
    (0..n)
        .map(|b| {
            let x: Vec<f32> = (0..4 * 75)
                .map(|i| r.normal() * (1.0 + b as f32) + (i / 25 % 3) as f32 - b as f32)
                .collect();
            let y: Vec<f32> = (0..4).map(|i| (i % 2) as f32).collect();
            (
                Tensor::from_vec(x, &[4, 3, 5, 5]).unwrap(),
                Tensor::from_vec(y, &[4]).unwrap(),
            )
        })
        .collect()
}

/// Per-channel mean and unbiased variance of x [n, c, h, w].
fn channel_stats(x: &[f32], n: usize, c: usize, s: usize) -> (Vec<f64>, Vec<f64>) {
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    for ch in 0..c {
        let vals: Vec<f64> = (0..n)
            .flat_map(|i| {
                x[(i * c + ch) * s..(i * c + ch + 1) * s]
                    .iter()
                    .map(|&v| v as f64)
            })
            .collect();
        let m = vals.iter().sum::<f64>() / vals.len() as f64;
        mean[ch] = m;
        var[ch] = vals.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (vals.len() - 1) as f64;
    }
    (mean, var)
}

#[test]
fn bn_update_is_the_cumulative_average_of_batch_statistics() {
    let batches = tiny_batches(3, 5);
    let mut net = tiny_bn_net();
    let params_before: Vec<Vec<f32>> = net.store.params.iter().map(|p| v(&p.value)).collect();
    // Put some arbitrary running statistics in first: BU must discard them.
    for b in &mut net.store.buffers {
        b.value = Tensor::full(b.value.shape(), 7.0, &Device::Cpu).unwrap();
    }
    let seen = bn_update(&mut net, batches.clone()).unwrap();
    assert_eq!(seen, 3);
    // The first BN sees the input itself: its statistics are the mean over the batches of the
    // per-batch channel mean and unbiased variance.
    let (mut mean, mut var) = (vec![0.0f64; 3], vec![0.0f64; 3]);
    for (x, _) in &batches {
        let (m, vv) = channel_stats(&v(x), 4, 3, 25);
        for c in 0..3 {
            mean[c] += m[c] / 3.0;
            var[c] += vv[c] / 3.0;
        }
    }
    let names: Vec<String> = net.store.buffers.iter().map(|b| b.name.clone()).collect();
    let name = |n: &str| names.iter().position(|b| b == n).unwrap();
    let f = |x: Vec<f64>| x.into_iter().map(|v| v as f32).collect::<Vec<f32>>();
    assert_close(
        "bn0.running_mean",
        &v(&net.store.buffers[name("bn0.running_mean")].value),
        &f(mean),
        1e-5,
    );
    assert_close(
        "bn0.running_var",
        &v(&net.store.buffers[name("bn0.running_var")].value),
        &f(var),
        1e-5,
    );
    // The deeper BN: the average of its statistics over each batch alone.
    let mut per_batch = vec![vec![0.0f64; 4]; 2];
    for b in &batches {
        let mut one = tiny_bn_net();
        bn_update(&mut one, [b.clone()]).unwrap();
        for (j, n) in ["bn1.running_mean", "bn1.running_var"].iter().enumerate() {
            let s = v(&one.store.buffers[name(n)].value);
            per_batch[j]
                .iter_mut()
                .zip(s)
                .for_each(|(a, x)| *a += x as f64 / 3.0);
        }
    }
    for (j, n) in ["bn1.running_mean", "bn1.running_var"].iter().enumerate() {
        assert_close(
            n,
            &v(&net.store.buffers[name(n)].value),
            &f(per_batch[j].clone()),
            1e-5,
        );
    }
    // Only the statistics changed.
    let params_after: Vec<Vec<f32>> = net.store.params.iter().map(|p| v(&p.value)).collect();
    assert_eq!(params_before, params_after);
    // The momentum override is gone: a normal training step uses the layer's 0.1 again.
    let before = v(&net.store.buffers[name("bn0.running_mean")].value);
    net.forward_backward(&batches[0].0, &batches[0].1).unwrap();
    let after = v(&net.store.buffers[name("bn0.running_mean")].value);
    let (m0, _) = channel_stats(&v(&batches[0].0), 4, 3, 25);
    for c in 0..3 {
        let want = 0.9 * before[c] + 0.1 * m0[c] as f32;
        assert!((after[c] - want).abs() < 1e-5, "{} vs {want}", after[c]);
    }
}

// ---- deep ensemble --------------------------------------------------------------------------

#[test]
fn ensemble_averages_the_tickets_softmax() {
    let batches = tiny_batches(2, 9);
    let mut net = tiny_bn_net();
    let mut ens = Ensemble::new();
    let mut r = Rng::new(11);
    let mut lps: Vec<Vec<Vec<f32>>> = Vec::new(); // [ticket][batch] -> logprobs
    for _ in 0..3 {
        for p in &mut net.store.params {
            let x: Vec<f32> = (0..p.value.numel()).map(|_| r.normal()).collect();
            p.value = Tensor::from_vec(x, p.value.shape()).unwrap();
        }
        bn_update(&mut net, batches.clone()).unwrap();
        ens.add_ticket(&net.store).unwrap();
        lps.push(
            batches
                .iter()
                .map(|(x, _)| v(&net.logprobs(x).unwrap()))
                .collect(),
        );
    }
    assert_eq!(ens.len(), 3);
    let last: Vec<f32> = net.store.params.iter().flat_map(|p| v(&p.value)).collect();
    let rep = ens.evaluate(&mut net, batches.clone()).unwrap();
    // The network's own parameters are back.
    let now: Vec<f32> = net.store.params.iter().flat_map(|p| v(&p.value)).collect();
    assert_eq!(last, now);
    // Each ticket alone, and the average of the probabilities.
    let labels: Vec<f32> = batches.iter().flat_map(|(_, y)| v(y)).collect();
    for (m, lp) in lps.iter().enumerate() {
        let want = metrics::compute(&lp.concat(), 2, &labels).unwrap();
        assert_eq!(rep.members[m], want, "ticket {m}");
    }
    let all: Vec<Vec<f32>> = lps.iter().map(|lp| lp.concat()).collect();
    let avg: Vec<f32> = (0..all[0].len())
        .map(|i| ((all.iter().map(|a| (a[i] as f64).exp()).sum::<f64>()) / 3.0).ln() as f32)
        .collect();
    let want = metrics::compute(&avg, 2, &labels).unwrap();
    assert_eq!(rep.ensemble.n, 8);
    assert!((rep.ensemble.accuracy - want.accuracy).abs() < 1e-12);
    assert!((rep.ensemble.nll - want.nll).abs() < 1e-5);
    assert!((rep.ensemble.ece - want.ece).abs() < 1e-5);
    println!(
        "deep ensemble of 3: acc {:.3} nll {:.4} ece {:.4}; tickets acc {:?}",
        rep.ensemble.accuracy,
        rep.ensemble.nll,
        rep.ensemble.ece,
        rep.members.iter().map(|m| m.accuracy).collect::<Vec<_>>()
    );
}

// ---- memory -----------------------------------------------------------------------------------

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

#[cfg(feature = "cuda")]
#[test]
fn superposer_on_cuda_matches_cpu() {
    let Some(gpu) = common::gpu_device() else {
        return;
    };
    for averaging in [
        Averaging::Cia,
        Averaging::Caa,
        Averaging::Cima { beta: 0.8 },
    ] {
        for reprune in [Reprune::Global, Reprune::Layerwise] {
            let cfg = SuperposeConfig {
                averaging,
                reprune,
                density: None,
                frozen_first: false,
            };
            let mut net = resnet_quarter();
            init_random_masks(&mut net.store, &mask_init(9)).unwrap();
            let mut r = Rng::new(10);
            fake_cycle(&mut net.store, &mut r, 0);
            let mut g_store = net.store.clone();
            g_store.to_device(&gpu).unwrap();
            let mut cpu = Superposer::new(&cfg, &net.store).unwrap();
            let mut cuda = Superposer::new(&cfg, &g_store).unwrap();
            let mut bn_c = BnAverager::new(averaging, &net.store).unwrap();
            let mut bn_g = BnAverager::new(averaging, &g_store).unwrap();
            for k in 1..=3 {
                fake_cycle(&mut net.store, &mut r, k);
                let mut g_store = net.store.clone();
                g_store.to_device(&gpu).unwrap();
                assert_eq!(
                    cpu.add_ticket(k, &net.store).unwrap(),
                    cuda.add_ticket(k, &g_store).unwrap(),
                    "{averaging} {reprune:?} ticket {k}: kept counts"
                );
                bn_c.add_ticket(k, &net.store).unwrap();
                bn_g.add_ticket(k, &g_store).unwrap();
            }
            for (c, g) in cpu.ultimate().unwrap().iter().zip(cuda.ultimate().unwrap()) {
                assert_eq!(
                    v(&c.weight),
                    v(&g.weight),
                    "{averaging} {reprune:?}: weights"
                );
                assert_eq!(
                    v(c.mask.as_ref().unwrap()),
                    v(g.mask.as_ref().unwrap()),
                    "{averaging} {reprune:?}: masks"
                );
            }
            for ((_, c), (_, g)) in cpu.dense_params().iter().zip(cuda.dense_params()) {
                assert_close("dense params", &v(g), &v(c), 1e-5);
            }
            for ((_, _, c), (_, _, g)) in bn_c.buffers().iter().zip(bn_g.buffers()) {
                assert_close("bn statistics", &v(g), &v(c), 1e-5);
            }
        }
    }
}

/// `--dense-first-layer`: the frozen first conv carries an all-ones mask, but the global
/// re-pruning must leave it whole. Here its weights are the smallest of the model, so a
/// re-pruning that treated it as maskable would strip it (it did before the fix).
#[test]
fn global_reprune_keeps_the_frozen_first_layer_whole() {
    let mut s = ParamStore::default();
    s.add_param("first.weight", t(&[0.01; 4]), ParamRole::Weight);
    s.add_param("b.weight", t(&[0.0; 6]), ParamRole::Weight);
    let b_ticket = |k: usize| -> ([f32; 6], [f32; 6]) {
        let mut w = [0.0; 6];
        let mut m = [0.0; 6];
        // Two active weights of size ~1, at positions that move with k.
        for j in [k % 6, (k + 3) % 6] {
            w[j] = 1.0 + j as f32;
            m[j] = 1.0;
        }
        (w, m)
    };
    let set = |s: &mut ParamStore, k: usize| {
        s.params[0].value = t(&[0.01 * (k + 1) as f32; 4]);
        s.params[0].mask = Some(t(&[1.0; 4]));
        let (w, m) = b_ticket(k);
        s.params[1].value = t(&w);
        s.params[1].mask = Some(t(&m));
    };
    for frozen_first in [false, true] {
        set(&mut s, 0);
        let cfg = SuperposeConfig {
            averaging: Averaging::Cia,
            reprune: Reprune::Global,
            density: None,
            frozen_first,
        };
        let mut sup = Superposer::new(&cfg, &s).unwrap();
        for k in 1..3 {
            set(&mut s, k);
            sup.add_ticket(k, &s).unwrap();
        }
        let mut out = s.clone();
        sup.apply_to(&mut out).unwrap();
        let first_mask = out.params[0].mask.as_ref().unwrap().to_vec().unwrap();
        let b_mask = out.params[1].mask.as_ref().unwrap().to_vec().unwrap();
        let active = |m: &[f32]| m.iter().filter(|&&v| v != 0.0).count();
        if frozen_first {
            assert_eq!(first_mask, vec![1.0; 4], "the frozen layer stays whole");
            let w = out.params[0].value.to_vec().unwrap();
            assert!(
                w.iter().all(|&v| (v - 0.02).abs() < 1e-7),
                "CIA mean: {w:?}"
            );
            assert_eq!(active(&b_mask), 2, "b keeps its ticket's count");
        } else {
            // Treated as maskable, the small first layer loses to b's averaged weights.
            assert!(active(&first_mask) < 4, "{first_mask:?}");
            assert_eq!(active(&first_mask) + active(&b_mask), 6);
        }
    }
}

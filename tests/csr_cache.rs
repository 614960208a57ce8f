//! The CSR structure a parameter keeps for the sparse kernels between mask updates
//! (`Param::mask_csr`) follows every mask write: after each way a mask can be written, the kept
//! structure with the current values equals a fresh build from the weight and the new mask (a
//! stale structure fails), it is reused while only the values change, and whole networks
//! stepping through the sparse kernels after mask changes (new masks, prune and grow) match the
//! dense kernels, on the CPU and (on the CUDA device, where the structures are built and kept
//! on the device) on a GPU when one is usable.

mod common;

use std::sync::Arc;

use suptickets::backend::sparse_policy::{set_sparse_kernels, SparseKernels};
use suptickets::backend::{cpu::CpuBackend, Backend, SelectAction, SparseMatrix, SparseWeight};
use suptickets::models::{build, ModelConfig};
use suptickets::nn::{Network, Param, ParamRole, ParamStore};
use suptickets::rng::Rng;
use suptickets::sparse::density::DensityInit;
use suptickets::sparse::mask::{init_random_masks, MaskInit};
use suptickets::sparse::topk::{select_layers, Plan, Scores};
use suptickets::{Device, Tensor};

fn randn(r: &mut Rng, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec((0..n).map(|_| r.normal()).collect(), shape).unwrap()
}

fn rand_mask(r: &mut Rng, shape: &[usize], density: f32) -> Tensor {
    let n = shape.iter().product();
    let m = (0..n).map(|_| (r.uniform() < density) as u8 as f32);
    Tensor::from_vec(m.collect(), shape).unwrap()
}

fn host(m: SparseMatrix) -> SparseWeight {
    match m {
        SparseMatrix::Host(w) => w,
        SparseMatrix::Device(d) => panic!("a CPU parameter gave the device CSR {d:?}"),
    }
}

/// The kept structure of `p` with its current values equals a fresh build, both ways.
fn assert_fresh(p: &mut Param, what: &str) {
    let rows = p.value.shape()[0];
    let cols = p.value.numel() / rows;
    let plan = p.mask_csr(rows, f64::INFINITY).unwrap().expect("masked");
    let (w, m) = (
        p.value.to_vec().unwrap(),
        p.mask().unwrap().to_vec().unwrap(),
    );
    let fresh = SparseWeight::from_masked(&w, &m, rows, cols).unwrap();
    assert_eq!(plan.nnz, fresh.nnz(), "{what}: entry count");
    for (t, want) in [(false, fresh.clone()), (true, fresh.transpose())] {
        let got = host(CpuBackend.csr_gather(&plan, &p.value, t).unwrap());
        assert_eq!(got, want, "{what}: transposed {t}");
    }
}

/// Flips every 3rd element of a mask held on the host.
fn flip_some(m: &mut Tensor) {
    for (i, v) in m.as_cpu_mut().unwrap().iter_mut().enumerate() {
        if i % 3 == 0 {
            *v = 1.0 - *v;
        }
    }
}

#[test]
fn the_kept_structure_follows_every_mask_write() {
    let mut r = Rng::new(11);
    let shape = [6, 3, 3, 3];
    let mut p = Param::new("conv.weight", randn(&mut r, &shape), ParamRole::Weight);
    assert!(p.mask_csr(6, 1.0).unwrap().is_none(), "no mask, no CSR");
    p.set_mask(Some(rand_mask(&mut r, &shape, 0.3)));
    assert_fresh(&mut p, "set_mask");

    // New values, same mask: the structure is kept (the same one) and only the values change.
    let (v0, kept) = (p.mask_version(), p.mask_csr(6, 1.0).unwrap().unwrap());
    p.value = randn(&mut r, &shape);
    assert!(Arc::ptr_eq(&kept, &p.mask_csr(6, 1.0).unwrap().unwrap()));
    assert_eq!(p.mask_version(), v0);
    assert_fresh(&mut p, "new values");

    // In-place writes through each mutable accessor.
    flip_some(p.mask_mut().unwrap());
    assert!(p.mask_version() > v0);
    assert_fresh(&mut p, "mask_mut");
    let (_, m, _) = p.parts_mut();
    flip_some(m.unwrap());
    assert_fresh(&mut p, "parts_mut");
    p.set_mask(Some(rand_mask(&mut r, &shape, 0.05)));
    assert_fresh(&mut p, "set_mask again");

    // The density policy reads the kept count: dense above the bound, sparse again below it.
    p.set_mask(Some(rand_mask(&mut r, &shape, 0.9)));
    assert!(
        p.mask_csr(6, 0.5).unwrap().is_none(),
        "0.9 dense is above 0.5"
    );
    p.set_mask(Some(rand_mask(&mut r, &shape, 0.2)));
    assert!(
        p.mask_csr(6, 0.5).unwrap().is_some(),
        "0.2 dense is below 0.5"
    );
    assert_fresh(&mut p, "after the policy said dense");

    // A store moved to a device, and prune / grow through the select kernels.
    let mut s = ParamStore::default();
    let id = s.add_param("a.weight", randn(&mut r, &shape), ParamRole::Weight);
    s.add_param("b.weight", randn(&mut r, &[5, 8]), ParamRole::Weight);
    for (i, p) in s.params.iter_mut().enumerate() {
        let m = rand_mask(&mut r, p.value.shape(), 0.5);
        p.value = CpuBackend.mul(&p.value, &m).unwrap();
        p.set_mask(Some(m));
        assert_fresh(p, &format!("store param {i}"));
    }
    let v = s.param(id).mask_version();
    s.to_device(&Device::Cpu).unwrap();
    assert!(
        s.param(id).mask_version() > v,
        "a device move counts as a write"
    );
    let keep = [20, 10];
    select_layers(
        &mut s,
        Scores::Weights,
        Plan::PerLayer(&keep),
        SelectAction::Keep,
    )
    .unwrap();
    s.params.iter_mut().for_each(|p| assert_fresh(p, "pruned"));
    let scores: Vec<Option<Tensor>> = s
        .params
        .iter()
        .map(|p| Some(randn(&mut r, p.value.shape())))
        .collect();
    let grow = [7, 4];
    let plan = Plan::PerLayer(&grow);
    select_layers(&mut s, Scores::Tensors(&scores), plan, SelectAction::Grow).unwrap();
    for p in &mut s.params {
        let m = p.mask().unwrap().clone();
        // Nonzero values at the grown positions, so a stale structure would show in the values.
        p.value = CpuBackend
            .add(&p.value, &CpuBackend.mul(&m, &m).unwrap())
            .unwrap();
        assert_fresh(p, "grown");
    }
}

fn close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = a.iter().map(|v| v.abs()).fold(0f32, f32::max).max(1e-6);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 2e-3 * scale + 1e-5,
            "{what}[{i}]: dense {x} vs sparse {y} (scale {scale})"
        );
    }
}

/// One masked step with the dense kernels and one with the sparse kernels (which use the kept
/// structures) agree in loss and masked gradients.
fn sparse_matches_dense(net: &mut Network, x: &Tensor, y: &Tensor, what: &str) {
    set_sparse_kernels(SparseKernels::Dense);
    let a = net.forward_backward_with(x, y, false).unwrap();
    set_sparse_kernels(SparseKernels::Sparse);
    let b = net.forward_backward_with(x, y, false).unwrap();
    set_sparse_kernels(SparseKernels::Auto);
    let (la, lb) = (a.loss_value().unwrap(), b.loss_value().unwrap());
    let rel = (la - lb).abs() / la.abs().max(1.0);
    assert!(rel <= 1e-4, "{what}: loss {la} vs {lb}");
    for (i, (ga, gb)) in a.grads.iter().zip(&b.grads).enumerate() {
        let (Some(ga), Some(gb)) = (ga, gb) else {
            continue;
        };
        let mut va = ga.to_vec().unwrap();
        if let Some(m) = net.store.params[i].mask() {
            let m = m.to_vec().unwrap();
            va.iter_mut().zip(&m).for_each(|(g, &m)| *g *= m);
        }
        let name = &net.store.params[i].name;
        close(&va, &gb.to_vec().unwrap(), &format!("{what}: grad {name}"));
    }
}

/// Random nonzero values at every active position (so the forward pass shows the structure).
fn refill(net: &mut Network, r: &mut Rng) {
    for p in &mut net.store.params {
        if let Some(m) = p.mask().cloned() {
            let v = randn(r, p.value.shape()).to_device(&m.device()).unwrap();
            p.value = m.backend().mul(&v, &m).unwrap();
        }
    }
}

/// RigL-style: prune 10% of each layer's active weights by magnitude, regrow as many by random
/// scores.
fn prune_and_grow(net: &mut Network, r: &mut Rng) {
    let active: Vec<usize> = net
        .store
        .maskable_ids()
        .iter()
        .map(|&id| {
            let m = net.store.param(id).mask().unwrap().to_vec().unwrap();
            m.iter().filter(|&&v| v != 0.0).count()
        })
        .collect();
    let keep: Vec<usize> = active.iter().map(|a| a - a / 10).collect();
    let grown: Vec<usize> = active.iter().map(|a| a / 10).collect();
    let s = &mut net.store;
    select_layers(
        s,
        Scores::Weights,
        Plan::PerLayer(&keep),
        SelectAction::Keep,
    )
    .unwrap();
    let scores: Vec<Option<Tensor>> = s
        .params
        .iter()
        .map(|p| {
            Some(
                randn(r, p.value.shape())
                    .to_device(&p.value.device())
                    .unwrap(),
            )
        })
        .collect();
    let plan = Plan::PerLayer(&grown);
    select_layers(s, Scores::Tensors(&scores), plan, SelectAction::Grow).unwrap();
}

/// One function for both devices: the kernel choice is process-wide.
#[test]
fn sparse_steps_after_mask_changes_match_the_dense_kernels() {
    let mut devices = vec![Device::Cpu];
    devices.extend(common::gpu_device());
    for dev in devices {
        let mut mc = ModelConfig::new("resnet18", 10);
        mc.width = 0.0625;
        let mut net = build(&mc).unwrap();
        let init = |seed| MaskInit {
            sparsity: 0.9,
            init: DensityInit::Erk,
            dense_first_layer: false,
            seed,
        };
        init_random_masks(&mut net.store, &init(3)).unwrap();
        net.to_device(&dev).unwrap();
        let mut r = Rng::new(5);
        let x = randn(&mut r, &[2, 3, 32, 32]).to_device(&dev).unwrap();
        let y = Tensor::from_slice(&[3.0, 7.0], &[2], &dev).unwrap();
        sparse_matches_dense(&mut net, &x, &y, &format!("{dev:?} first masks"));
        // New masks (the structures of the first ones were kept until now).
        init_random_masks(&mut net.store, &init(4)).unwrap();
        refill(&mut net, &mut r);
        sparse_matches_dense(&mut net, &x, &y, &format!("{dev:?} new masks"));
        prune_and_grow(&mut net, &mut r);
        refill(&mut net, &mut r);
        sparse_matches_dense(&mut net, &x, &y, &format!("{dev:?} pruned and grown"));
    }
}

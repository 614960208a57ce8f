//! The prune (Ψ) and grow (Φ) primitives (docs/computation.md, Methods) through the public sparse
//! API, on the CPU and, when a GPU is present, on `cuda:0` too (the same expectations must hold
//! there; the kernel-level CPU ↔ CUDA comparisons are in `tests/parity/`).
//!
//! Hand-made cases pin the exact semantics (counts, ties to the lower flat index, k = 0,
//! k = all, weight and momentum zeroed); random cases compare against a brute-force sort; the
//! random grow is checked for determinism and uniformity; an exploration step keeps every
//! layer's count on a real ResNet-18 (width 0.25).
//!
//! Files: this one holds the shared helpers (hand-made stores, host copies); `prune.rs`,
//! `grow.rs` and `exploration.rs` the tests by topic.

use suptickets::models::{build, ModelConfig};
use suptickets::nn::{ParamRole, ParamStore};
use suptickets::rng::Rng;
use suptickets::sparse::{
    active_counts, explore, grow_gradient, grow_random, init_random_masks, prune_count,
    prune_magnitude_global, prune_magnitude_layerwise, topk_reference, DensityInit, GrowBy,
    MaskInit, Regrown,
};
use suptickets::{Device, Tensor};

#[path = "../common/mod.rs"]
mod common;

/// The CPU, and `cuda:0` when this machine has a usable GPU.
fn devices() -> Vec<Device> {
    let mut d = vec![Device::Cpu];
    d.extend(common::gpu_device());
    d
}

/// One maskable layer: weight, mask and optional momentum, as flat host vectors.
struct Layer {
    w: Vec<f32>,
    mask: Vec<f32>,
    m: Option<Vec<f32>>,
}

fn layer(w: &[f32], mask: &[f32], m: Option<&[f32]>) -> Layer {
    Layer {
        w: w.to_vec(),
        mask: mask.to_vec(),
        m: m.map(|m| m.to_vec()),
    }
}

/// A store with the given maskable layers (1-d weights), each followed by a bias (not
/// maskable), on `dev`.
fn store(dev: &Device, layers: &[Layer]) -> ParamStore {
    let mut s = ParamStore::default();
    for (i, l) in layers.iter().enumerate() {
        let n = l.w.len();
        let id = s.add_param(
            format!("layer{i}.weight"),
            Tensor::from_slice(&l.w, &[n], dev).unwrap(),
            ParamRole::Weight,
        );
        let p = &mut s.params[id.0];
        p.set_mask(Some(Tensor::from_slice(&l.mask, &[n], dev).unwrap()));
        p.momentum =
            l.m.as_ref()
                .map(|m| Tensor::from_slice(m, &[n], dev).unwrap());
        s.add_param(
            format!("layer{i}.bias"),
            Tensor::from_slice(&[0.5], &[1], dev).unwrap(),
            ParamRole::Bias,
        );
    }
    s
}

/// (weights, masks, momenta) of the maskable layers, on the host.
type Host = (Vec<Vec<f32>>, Vec<Vec<f32>>, Vec<Option<Vec<f32>>>);

fn host(s: &ParamStore) -> Host {
    let mut out: Host = Default::default();
    for id in s.maskable_ids() {
        let p = s.param(id);
        out.0.push(p.value.to_vec().unwrap());
        out.1.push(p.mask().unwrap().to_vec().unwrap());
        out.2.push(p.momentum.as_ref().map(|m| m.to_vec().unwrap()));
    }
    out
}

/// Gradients indexed like `store.params`: `g[l]` for maskable layer l, a constant for biases.
fn grads(dev: &Device, s: &ParamStore, g: &[Vec<f32>]) -> Vec<Option<Tensor>> {
    let mut l = 0;
    s.params
        .iter()
        .map(|p| {
            if p.is_maskable() {
                l += 1;
                Some(Tensor::from_slice(&g[l - 1], p.value.shape(), dev).unwrap())
            } else {
                Some(Tensor::full(p.value.shape(), 9.0, dev).unwrap())
            }
        })
        .collect()
}

fn ones(n: usize) -> Vec<f32> {
    vec![1.0; n]
}

// ---- magnitude prune, per layer -----------------------------------------------------------------

mod exploration;
mod grow;
mod prune;

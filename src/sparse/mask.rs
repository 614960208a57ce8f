//! Initial random masks: each maskable tensor gets exactly round(d_l · N_l) active positions,
//! chosen uniformly with the run's seed (docs/computation.md, Masks), and its weights are zeroed
//! off the mask.

use super::density::{layer_counts, layer_densities, DensityInit};
use crate::error::Result;
use crate::nn::ParamStore;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// How the initial masks are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaskInit {
    /// Global sparsity in [0, 1).
    pub sparsity: f64,
    /// Layer-wise allocation.
    pub init: DensityInit,
    /// Keep the first conv dense.
    pub dense_first_layer: bool,
    /// Seed of the random positions.
    pub seed: u64,
}

/// Density of one maskable tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerDensity {
    /// Parameter name.
    pub name: String,
    /// Elements.
    pub numel: usize,
    /// Active (nonzero-mask) elements.
    pub active: usize,
}

/// Draws masks for every maskable tensor of `store`, multiplies the weights by them and clears
/// momentum buffers at masked positions. Returns the per-layer active counts.
pub fn init_random_masks(store: &mut ParamStore, cfg: &MaskInit) -> Result<Vec<LayerDensity>> {
    let ids = store.maskable_ids();
    let shapes: Vec<Vec<usize>> = ids
        .iter()
        .map(|&id| store.param(id).value.shape().to_vec())
        .collect();
    let dens = layer_densities(&shapes, 1.0 - cfg.sparsity, cfg.init, cfg.dense_first_layer)?;
    let counts = layer_counts(&shapes, &dens);
    let mut out = Vec::with_capacity(ids.len());
    for (l, (&id, &k)) in ids.iter().zip(&counts).enumerate() {
        let p = &mut store.params[id.0];
        let n = p.value.numel();
        let mut mask = vec![0.0f32; n];
        for i in Rng::derive(cfg.seed, 0x3A5C + l as u64).choose(n, k) {
            mask[i] = 1.0;
        }
        let device = p.value.device();
        let m = Tensor::from_slice(&mask, p.value.shape(), &device)?;
        p.value = device.backend().mul(&p.value, &m)?;
        if let Some(mom) = &p.momentum {
            p.momentum = Some(device.backend().mul(mom, &m)?);
        }
        p.set_mask(Some(m));
        out.push(LayerDensity {
            name: p.name.clone(),
            numel: n,
            active: k,
        });
    }
    Ok(out)
}

/// Per-layer active counts as the masks stand now (every element of an unmasked tensor counts),
/// counted on the masks' device ([`super::topk::active_counts`]).
pub fn layer_densities_of(store: &ParamStore) -> Result<Vec<LayerDensity>> {
    let active = super::topk::active_counts(store)?;
    Ok(store
        .maskable_ids()
        .into_iter()
        .zip(active)
        .map(|(id, active)| {
            let p = store.param(id);
            LayerDensity {
                name: p.name.clone(),
                numel: p.value.numel(),
                active,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{build, ModelConfig};

    fn net() -> crate::nn::Network {
        let mut c = ModelConfig::new("resnet18", 10);
        c.width = 0.25;
        build(&c).unwrap()
    }

    #[test]
    fn exact_counts_zero_weights_and_global_density() {
        let mut n = net();
        let cfg = MaskInit {
            sparsity: 0.9,
            init: DensityInit::Erk,
            dense_first_layer: false,
            seed: 5,
        };
        let layers = init_random_masks(&mut n.store, &cfg).unwrap();
        let now = layer_densities_of(&n.store).unwrap();
        assert_eq!(layers, now);
        let (active, total): (usize, usize) = now
            .iter()
            .fold((0, 0), |(a, t), l| (a + l.active, t + l.numel));
        assert!(
            (active as f64 - 0.1 * total as f64).abs() <= now.len() as f64,
            "{active} of {total}"
        );
        for id in n.store.maskable_ids() {
            let p = n.store.param(id);
            let (w, m) = (
                p.value.to_vec().unwrap(),
                p.mask().unwrap().to_vec().unwrap(),
            );
            assert!(
                w.iter().zip(&m).all(|(w, m)| *m == 1.0 || *w == 0.0),
                "{}",
                p.name
            );
            assert!(m.iter().all(|&v| v == 0.0 || v == 1.0));
        }
    }

    #[test]
    fn same_seed_same_masks_other_seed_other_masks() {
        let cfg = MaskInit {
            sparsity: 0.8,
            init: DensityInit::Uniform,
            dense_first_layer: true,
            seed: 1,
        };
        let (mut a, mut b, mut c) = (net(), net(), net());
        init_random_masks(&mut a.store, &cfg).unwrap();
        init_random_masks(&mut b.store, &cfg).unwrap();
        init_random_masks(&mut c.store, &MaskInit { seed: 2, ..cfg }).unwrap();
        let m = |n: &crate::nn::Network, i: usize| {
            n.store
                .param(n.store.maskable_ids()[i])
                .mask()
                .unwrap()
                .to_vec()
                .unwrap()
        };
        assert_eq!(m(&a, 3), m(&b, 3));
        assert_ne!(m(&a, 3), m(&c, 3));
        // Dense first layer: all ones.
        assert!(m(&a, 0).iter().all(|&v| v == 1.0));
    }
}

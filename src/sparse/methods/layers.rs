//! The maskable layers as the methods see them: their sizes and which are frozen
//! (`--dense-first-layer`), and the global-selection helpers that keep frozen layers out.

use crate::error::Result;
use crate::nn::{ParamId, ParamRole, ParamStore};

/// Sizes and frozen flags of the maskable layers (in `maskable_ids` order).
#[derive(Clone, Debug)]
pub(crate) struct Layers {
    /// Elements per maskable layer.
    pub(crate) numel: Vec<usize>,
    /// `frozen[l]`: layer l stays dense and out of every selection.
    pub(crate) frozen: Vec<bool>,
}

impl Layers {
    /// The maskable layers of `store`; the first one is frozen under `dense_first_layer`.
    pub(crate) fn of(store: &ParamStore, dense_first_layer: bool) -> Layers {
        let ids = store.maskable_ids();
        let numel: Vec<usize> = ids
            .iter()
            .map(|&id| store.param(id).value.numel())
            .collect();
        let mut frozen = vec![false; ids.len()];
        if dense_first_layer && !frozen.is_empty() {
            frozen[0] = true;
        }
        Layers { numel, frozen }
    }

    /// K for a global selection at density `d`: round(d · Σ_l N_l) minus the frozen layers'
    /// weights (which stay dense and count against the budget).
    pub(crate) fn global_budget(&self, d: f64) -> usize {
        let total: usize = self.numel.iter().sum();
        let frozen: usize = self
            .numel
            .iter()
            .zip(&self.frozen)
            .filter(|(_, &f)| f)
            .map(|(n, _)| n)
            .sum();
        ((d * total as f64).round() as usize).saturating_sub(frozen)
    }

    /// The parameter ids of the frozen layers.
    pub(crate) fn frozen_ids(&self, store: &ParamStore) -> Vec<ParamId> {
        store
            .maskable_ids()
            .into_iter()
            .zip(&self.frozen)
            .filter(|(_, &f)| f)
            .map(|(id, _)| id)
            .collect()
    }

    /// Σ of `active` over the layers that are not frozen.
    pub(crate) fn free_active(&self, active: &[usize]) -> usize {
        active
            .iter()
            .zip(&self.frozen)
            .filter(|(_, &f)| !f)
            .map(|(a, _)| a)
            .sum()
    }

    /// Spreads per-layer results of a selection over the non-frozen layers back to every
    /// maskable layer (0 for the frozen ones).
    pub(crate) fn expand(&self, reduced: &[usize]) -> Vec<usize> {
        let mut it = reduced.iter();
        self.frozen
            .iter()
            .map(|&f| if f { 0 } else { *it.next().unwrap_or(&0) })
            .collect()
    }

    /// Runs `f` with the frozen maskable tensors taken out of the maskable set (their role is
    /// flipped for the duration, then restored), so a global selection leaves them alone.
    pub(crate) fn without_frozen<T>(
        &self,
        store: &mut ParamStore,
        f: impl FnOnce(&mut ParamStore) -> Result<T>,
    ) -> Result<T> {
        let frozen = self.frozen_ids(store);
        for id in &frozen {
            store.params[id.0].role = ParamRole::Bias;
        }
        let r = f(store);
        for id in &frozen {
            store.params[id.0].role = ParamRole::Weight;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_skips_frozen_layers() {
        let layers = |frozen: &[bool]| Layers {
            numel: vec![1; frozen.len()],
            frozen: frozen.to_vec(),
        };
        assert_eq!(layers(&[true, false, false]).expand(&[3, 4]), vec![0, 3, 4]);
        assert_eq!(layers(&[false, false]).expand(&[3, 4]), vec![3, 4]);
    }
}

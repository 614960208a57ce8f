//! Magnitude pruning (docs/computation.md, Methods): per layer (RigL/SET exploration, Sup-tickets
//! cycles) and global (GraNet's gradual pruning, Sup-tickets re-pruning). Both keep the largest |w|
//! among the active positions, ties to the lower flat index, and zero the weight and momentum of
//! every position they deactivate; they run on the store's device.

use super::topk::{active_counts, select_layers, Plan, Scores};
use crate::backend::SelectAction;
use crate::error::{Error, Result};
use crate::nn::ParamStore;

/// k = ceil(p · active), the number of weights a per-layer prune of fraction `p` removes,
/// computed so that representation error cannot add one (0.7 · 10 gives 7, not 8).
pub fn prune_count(fraction: f64, active: usize) -> usize {
    let x = fraction * active as f64;
    ((x - 1e-9 * x.max(1.0)).ceil().max(0.0) as usize).min(active)
}

/// Per-layer magnitude prune: each maskable layer l loses the k_l = ceil(p · active_l) active
/// weights of smallest |w| (ties: the higher flat index goes first). Returns k_l per maskable
/// layer (in `maskable_ids` order), the counts a following grow step restores.
pub fn prune_magnitude_layerwise(store: &mut ParamStore, fraction: f64) -> Result<Vec<usize>> {
    if !(0.0..=1.0).contains(&fraction) {
        return Err(Error::Config(format!(
            "prune fraction must be in [0, 1], got {fraction}"
        )));
    }
    let active = active_counts(store)?;
    let keep: Vec<usize> = active
        .iter()
        .map(|&a| a - prune_count(fraction, a))
        .collect();
    select_layers(
        store,
        Scores::Weights,
        Plan::PerLayer(&keep),
        SelectAction::Keep,
    )
}

/// Global magnitude prune: keeps the K = round(density · Σ_l N_l) largest |w| over all
/// maskable tensors together (flat index = offset in their concatenation in store order), or
/// every active weight when fewer than K are active. Returns the weights removed per maskable
/// layer.
pub fn prune_magnitude_global(store: &mut ParamStore, density: f64) -> Result<Vec<usize>> {
    if !(0.0..=1.0).contains(&density) {
        return Err(Error::Config(format!(
            "global prune density must be in [0, 1], got {density}"
        )));
    }
    let total = store.num_maskable();
    let target = (density * total as f64).round() as usize;
    // Keep saturates: with fewer than `target` active weights nothing is removed.
    select_layers(
        store,
        Scores::Weights,
        Plan::Global(target),
        SelectAction::Keep,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_count_is_an_exact_ceiling() {
        assert_eq!(prune_count(0.5, 7), 4);
        assert_eq!(prune_count(0.7, 10), 7);
        assert_eq!(prune_count(0.3, 10), 3);
        assert_eq!(prune_count(0.1, 30), 3);
        assert_eq!(prune_count(0.0, 30), 0);
        assert_eq!(prune_count(1.0, 30), 30);
        assert_eq!(prune_count(0.001, 30), 1);
        assert_eq!(prune_count(0.5, 0), 0);
    }
}

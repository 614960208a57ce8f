//! Regrowth (SPEC §3 Φ): activate, per maskable layer, a given number of positions among the
//! inactive ones (so the count is always exact), by |dense gradient| (RigL), uniformly at random
//! (SET) or by |momentum| (SNFS). New weights and their momentum start at 0. Ties go to the
//! lower flat index; the random scores are a counter-based hash, so every backend grows the
//! same positions for a seed.

use super::topk::{select_layers, Plan, Scores};
use crate::backend::SelectAction;
use crate::error::Result;
use crate::nn::ParamStore;
use crate::tensor::Tensor;

/// Gradient grow (RigL): layer l activates the `counts[l]` inactive positions of largest
/// |grad|. `grads` is indexed like `store.params` (as
/// [`StepOutput::grads`](crate::nn::StepOutput)) and must hold the DENSE gradient
/// (computed without the mask). Returns the positions grown per maskable layer.
pub fn grow_gradient(
    store: &mut ParamStore,
    grads: &[Option<Tensor>],
    counts: &[usize],
) -> Result<Vec<usize>> {
    select_layers(
        store,
        Scores::Tensors(grads),
        Plan::PerLayer(counts),
        SelectAction::Grow,
    )
}

/// Random grow (SET): layer l activates `counts[l]` inactive positions chosen uniformly at
/// random, deterministically from `seed` (layer l uses its own stream of the seed).
pub fn grow_random(store: &mut ParamStore, counts: &[usize], seed: u64) -> Result<Vec<usize>> {
    select_layers(
        store,
        Scores::Random(seed),
        Plan::PerLayer(counts),
        SelectAction::Grow,
    )
}

/// Momentum grow (SNFS): layer l activates the `counts[l]` inactive positions of largest
/// |momentum|. The momentum buffers are masked after every SGD step, so inactive positions
/// hold the momentum only where it was not yet zeroed; a layer without a momentum buffer
/// scores every position 0 (the lowest inactive indices win).
pub fn grow_momentum(store: &mut ParamStore, counts: &[usize]) -> Result<Vec<usize>> {
    let scores = store
        .params
        .iter()
        .map(|p| {
            if !p.is_maskable() {
                return Ok(None);
            }
            match &p.momentum {
                Some(m) => Ok(Some(m.clone())),
                None => Tensor::zeros(p.value.shape(), &p.value.device()).map(Some),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    select_layers(
        store,
        Scores::Tensors(&scores),
        Plan::PerLayer(counts),
        SelectAction::Grow,
    )
}

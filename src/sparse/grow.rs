//! Regrowth (docs/computation.md, Methods): activate, per maskable layer, a given number of
//! positions among the inactive ones (so the count is always exact), by |dense gradient| (RigL) or
//! uniformly at random (SET). Grown positions start at weight and momentum 0 ([`super::explore`]
//! restores the values of connections pruned and regrown in one step). SNFS's momentum growth is
//! not offered: the masked SGD keeps the momentum at 0 off the mask, so it would score every
//! candidate 0. Ties go to the lower flat index; the random scores are a counter-based hash, so
//! every backend grows the same positions for a seed.

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

//! GraNet (Liu et al., 2021): random initial masks at the initial density d_i, gradual global
//! magnitude pruning from d_i to d_f on the cubic schedule of [`super::schedule`], and RigL's
//! exploration (regrowth by the default |dense gradient|).

use super::config::SparseConfig;
use super::layers::Layers;
use super::rule::Rule;
use crate::backend::SelectAction;
use crate::error::Result;
use crate::nn::ParamStore;
use crate::sparse::topk::{select_layers, Plan, Scores};

/// GraNet: gradual pruning plus exploration.
pub(crate) struct Granet;

impl Rule for Granet {
    fn initial_density(&self, cfg: &SparseConfig) -> f64 {
        cfg.initial_density
    }

    fn explores(&self) -> bool {
        true
    }

    fn prunes_gradually(&self) -> bool {
        true
    }
}

/// One gradual-pruning step: global magnitude pruning of the non-frozen layers down to density
/// `d` (K = [`Layers::global_budget`], never more than the `active` weights). Returns the
/// weights removed per maskable layer.
pub(crate) fn gradual_prune(
    layers: &Layers,
    active: &[usize],
    d: f64,
    store: &mut ParamStore,
) -> Result<Vec<usize>> {
    let k = layers.global_budget(d);
    let free_active = layers.free_active(active);
    let pruned = layers.without_frozen(store, |s| {
        select_layers(
            s,
            Scores::Weights,
            Plan::Global(k.min(free_active)),
            SelectAction::Keep,
        )
    })?;
    // select_layers reports per layer of the reduced list; map back past frozen layers.
    Ok(layers.expand(&pruned))
}

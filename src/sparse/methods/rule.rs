//! What one sparse-training method says about itself, [`Rule`]: everything else — the update
//! schedule, the exploration step, the FLOP accounting, the checkpointed state — is shared by
//! [`super::SparseMethod`]. A method's file overrides only what differs from the defaults (random
//! initial masks at the final density, no exploration, regrowth by |dense gradient|), the way
//! jaxpruner's RigL overrides only SET's grow scores.

use super::config::SparseConfig;
use super::layers::Layers;
use crate::error::Result;
use crate::nn::Network;
use crate::sparse::explore::GrowBy;
use crate::sparse::mask::{init_random_masks, MaskInit};
use crate::tensor::Tensor;
use crate::train::hooks::FirstBatch;

/// When an exploration step runs: after a training step, or at the start of a Sup-tickets cycle.
#[derive(Clone, Copy, Debug)]
pub(crate) enum GrowAt {
    /// After the SGD step that made the step counter this (1-based).
    Step(u64),
    /// At the start of this Sup-tickets cycle (1-based).
    Cycle(usize),
}

/// A method's own choices (see the module docs); implemented by one unit type per method.
pub(crate) trait Rule: Sync {
    /// The global density of the initial mask: the final density d_f by default.
    fn initial_density(&self, cfg: &SparseConfig) -> f64 {
        cfg.density()
    }

    /// Draws the initial masks of a fresh network (before any step). By default random masks
    /// with the `--init` allocation at [`Rule::initial_density`]; `first_batch` gives the run's
    /// first training batch to a method that needs data.
    fn init_mask(
        &self,
        cfg: &SparseConfig,
        _layers: &Layers,
        net: &mut Network,
        _first_batch: FirstBatch,
    ) -> Result<()> {
        init_random_masks(
            &mut net.store,
            &MaskInit {
                sparsity: 1.0 - self.initial_density(cfg),
                init: cfg.init,
                dense_first_layer: cfg.dense_first_layer,
                seed: cfg.seed,
            },
        )
        .map(|_| ())
    }

    /// Whether it prunes and regrows every ΔT during training (before the horizon).
    fn explores(&self) -> bool {
        false
    }

    /// Whether its exploration regrows by |dense gradient| (so the step needs it).
    fn grows_by_gradient(&self) -> bool {
        true
    }

    /// The regrowth scores of an exploration step at `at` (training, or a Sup-tickets cycle
    /// start): by default the |dense gradient| `grads` of that step.
    fn grow_scores<'a>(&self, _seed: u64, _at: GrowAt, grads: &'a [Option<Tensor>]) -> GrowBy<'a> {
        GrowBy::Gradient(grads)
    }

    /// Whether it prunes gradually (GraNet) in its pruning window.
    fn prunes_gradually(&self) -> bool {
        false
    }
}

//! SET (Mocanu et al., 2018): the default random initial mask, and every ΔT a per-layer
//! magnitude prune and a uniformly random regrowth, deterministic for (seed, step) — and for
//! (seed, cycle) at a Sup-tickets cycle start, so it never needs the dense gradient.

use super::rule::{GrowAt, Rule};
use crate::rng::Rng;
use crate::sparse::explore::GrowBy;
use crate::tensor::Tensor;

/// SET: exploration with random regrowth.
pub(crate) struct Set;

impl Rule for Set {
    fn explores(&self) -> bool {
        true
    }

    fn grows_by_gradient(&self) -> bool {
        false
    }

    fn grow_scores<'a>(&self, seed: u64, at: GrowAt, _grads: &'a [Option<Tensor>]) -> GrowBy<'a> {
        let salt = match at {
            GrowAt::Step(step) => 0x5E7_6000_0000 ^ step,
            GrowAt::Cycle(cycle) => 0xC7C1_E000_0000 ^ cycle as u64,
        };
        GrowBy::Random(Rng::derive(seed, salt).next_u64())
    }
}

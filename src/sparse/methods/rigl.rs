//! RigL (Evci et al., 2020): the default random initial mask, and every ΔT a per-layer
//! magnitude prune and regrowth by the default |dense gradient| of that step's mini-batch.

use super::rule::Rule;

/// RigL: exploration with gradient regrowth.
pub(crate) struct Rigl;

impl Rule for Rigl {
    fn explores(&self) -> bool {
        true
    }
}

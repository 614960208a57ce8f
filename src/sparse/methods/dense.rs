//! Dense training: no masks.

use super::config::SparseConfig;
use super::layers::Layers;
use super::rule::Rule;
use crate::error::Result;
use crate::nn::Network;
use crate::train::hooks::FirstBatch;

/// Plain dense SGD.
pub(crate) struct Dense;

impl Rule for Dense {
    fn initial_density(&self, _cfg: &SparseConfig) -> f64 {
        1.0
    }

    fn init_mask(
        &self,
        _: &SparseConfig,
        _: &Layers,
        _: &mut Network,
        _: FirstBatch,
    ) -> Result<()> {
        Ok(())
    }
}

//! A method's resolved settings, [`SparseConfig`], their defaults and their validation.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::kind::MethodKind;
use super::schedule::{default_update_interval, DropSchedule, GRANET_PRUNE_END_FRACTION};
use super::snip::SnipScope;
use crate::error::{Error, Result};
use crate::sparse::density::DensityInit;
use crate::sparse::explore::Regrown;

/// Default drop fraction p0.
pub const DEFAULT_DROP_FRACTION: f64 = 0.5;

/// Default end of exploration as a fraction of training (RigL: 0.75).
pub const DEFAULT_EXPLORE_UNTIL: f64 = 0.75;

/// Default global sparsity of the sparse methods.
pub const DEFAULT_SPARSITY: f64 = 0.9;

/// GraNet's default initial density d_i.
pub const DEFAULT_INITIAL_DENSITY: f64 = 0.5;

/// A method's resolved settings (defaults applied; see `TrainConfig::sparse_config`).
#[derive(Clone, Debug, PartialEq)]
pub struct SparseConfig {
    /// The method.
    pub method: MethodKind,
    /// Final global sparsity of the maskable tensors, in [0, 1) (0 for dense).
    pub sparsity: f64,
    /// Layer-wise density allocation of the initial mask.
    pub init: DensityInit,
    /// Keep the first conv dense (and out of every mask update).
    pub dense_first_layer: bool,
    /// ΔT: iterations between mask updates (≥ 1).
    pub update_interval: usize,
    /// p0: drop fraction of an exploration step, in [0, 1].
    pub drop_fraction: f64,
    /// Constant or cosine-decayed drop fraction.
    pub drop_schedule: DropSchedule,
    /// Exploration stops at this fraction of training, in [0, 1].
    pub explore_until: f64,
    /// GraNet's initial density d_i (in [d_f, 1]); the final density for the other methods.
    pub initial_density: f64,
    /// GraNet: first pruning epoch t0.
    pub prune_start_epoch: f64,
    /// GraNet: last pruning epoch t_f.
    pub prune_end_epoch: f64,
    /// SNIP's top-K scope.
    pub snip_scope: SnipScope,
    /// Seed of the random masks and of SET's random growth.
    pub seed: u64,
    /// What a connection pruned and regrown by the same exploration step restarts from.
    pub regrown: Regrown,
}

impl SparseConfig {
    /// Dense training.
    pub fn dense() -> SparseConfig {
        SparseConfig {
            method: MethodKind::Dense,
            sparsity: 0.0,
            init: DensityInit::Erk,
            dense_first_layer: false,
            update_interval: 1,
            drop_fraction: DEFAULT_DROP_FRACTION,
            drop_schedule: DropSchedule::Constant,
            explore_until: DEFAULT_EXPLORE_UNTIL,
            initial_density: 1.0,
            prune_start_epoch: 0.0,
            prune_end_epoch: 0.0,
            snip_scope: SnipScope::Global,
            seed: 0,
            regrown: Regrown::Keep,
        }
    }

    /// `method` at `sparsity` with every other setting at its default, for `epochs` epochs of
    /// `iterations_per_epoch` steps.
    pub fn new(
        method: MethodKind,
        sparsity: f64,
        epochs: usize,
        iterations_per_epoch: usize,
    ) -> SparseConfig {
        SparseConfig {
            method,
            sparsity: if method.is_sparse() { sparsity } else { 0.0 },
            update_interval: default_update_interval(
                iterations_per_epoch,
                epochs * iterations_per_epoch,
            )
            .0,
            initial_density: if method == MethodKind::Granet {
                DEFAULT_INITIAL_DENSITY.max(1.0 - sparsity)
            } else {
                1.0 - sparsity
            },
            prune_end_epoch: GRANET_PRUNE_END_FRACTION * epochs as f64,
            ..SparseConfig::dense()
        }
    }

    /// Final density d_f = 1 − sparsity.
    pub fn density(&self) -> f64 {
        1.0 - self.sparsity
    }

    /// Checks the values, naming the flag.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if !(0.0..1.0).contains(&self.sparsity) {
            return bad(format!(
                "--sparsity must be in [0, 1), got {}",
                self.sparsity
            ));
        }
        if self.update_interval == 0 {
            return bad("--update-interval must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.drop_fraction) {
            return bad(format!(
                "--drop-fraction must be in [0, 1], got {}",
                self.drop_fraction
            ));
        }
        if !(0.0..=1.0).contains(&self.explore_until) {
            return bad(format!(
                "--explore-until must be a fraction of training in [0, 1], got {}",
                self.explore_until
            ));
        }
        if self.method == MethodKind::Granet {
            let d_f = self.density();
            if !(self.initial_density <= 1.0 && self.initial_density > 0.0) {
                return bad(format!(
                    "--initial-density must be in (0, 1], got {}",
                    self.initial_density
                ));
            }
            if self.initial_density < d_f - 1e-12 {
                return bad(format!(
                    "--initial-density {} is below the final density {} (1 - --sparsity {}); GraNet prunes from the initial density down to the final one",
                    self.initial_density, d_f, self.sparsity
                ));
            }
            if !(self.prune_start_epoch >= 0.0 && self.prune_start_epoch.is_finite()) {
                return bad(format!(
                    "--prune-start-epoch must be non-negative, got {}",
                    self.prune_start_epoch
                ));
            }
            if !(self.prune_end_epoch >= self.prune_start_epoch && self.prune_end_epoch.is_finite())
            {
                return bad(format!(
                    "--prune-end-epoch ({}) must not be before --prune-start-epoch ({})",
                    self.prune_end_epoch, self.prune_start_epoch
                ));
            }
        }
        Ok(())
    }
}

/// The name of a density allocation (`uniform`, `er`, `erk`).
pub fn density_init_name(init: DensityInit) -> &'static str {
    match init {
        DensityInit::Uniform => "uniform",
        DensityInit::Er => "er",
        DensityInit::Erk => "erk",
    }
}

impl Serialize for DensityInit {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(density_init_name(*self))
    }
}

impl<'de> Deserialize<'de> for DensityInit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<DensityInit, D::Error> {
        let s = String::deserialize(d)?;
        DensityInit::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_validation() {
        for m in MethodKind::ALL {
            assert_eq!(MethodKind::parse(m.name()).unwrap(), m);
        }
        assert!(MethodKind::parse("lottery")
            .unwrap_err()
            .to_string()
            .contains("--method"));
        assert!(DropSchedule::parse("linear").is_err());
        assert!(SnipScope::parse("x")
            .unwrap_err()
            .to_string()
            .contains("--snip-scope"));
        let mut c = SparseConfig::new(MethodKind::Granet, 0.9, 10, 100);
        assert_eq!(c.initial_density, 0.5);
        c.validate().unwrap();
        c.initial_density = 0.05;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--initial-density"));
        let mut c = SparseConfig::new(MethodKind::Rigl, 0.9, 10, 100);
        c.sparsity = 1.0;
        assert!(c.validate().unwrap_err().to_string().contains("--sparsity"));
        c.sparsity = 0.9;
        c.drop_fraction = 1.5;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--drop-fraction"));
    }
}

//! Validation of a [`TrainConfig`]: every value that cannot be right, and every option the
//! chosen method would ignore, is an error naming the option's flag.

use super::config::TrainConfig;
use crate::data::DatasetKind;
use crate::error::{Error, Result};
use crate::sparse::density::DensityInit;
use crate::sparse::explore::Regrown;
use crate::sparse::methods::{
    default_update_interval, MethodKind, SnipScope, SparseConfig, DEFAULT_DROP_FRACTION,
    DEFAULT_EXPLORE_UNTIL, DEFAULT_INITIAL_DENSITY, DEFAULT_SPARSITY, GRANET_PRUNE_END_FRACTION,
};
use crate::suptickets::Averaging;

impl TrainConfig {
    /// Checks values that cannot be right, naming the flag.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if !(self.sparse_crossover > 0.0 && self.sparse_crossover <= 1.0) {
            return bad(format!(
                "--sparse-crossover: expected a density in (0, 1], got {}",
                self.sparse_crossover
            ));
        }
        if self.epochs == 0 {
            return bad("--epochs must be at least 1".into());
        }
        self.validate_folder_options()?;
        if self.batch_size == 0 {
            return bad("--batch-size must be at least 1".into());
        }
        if self.eval_batch_size == 0 {
            return bad("--eval-batch-size must be at least 1".into());
        }
        if !(self.gamma > 0.0 && self.gamma.is_finite()) {
            return bad(format!(
                "--gamma must be a positive factor, got {} (zero stops training at the first milestone, a negative one turns the learning rate negative)",
                self.gamma
            ));
        }
        if !(self.width > 0.0 && self.width.is_finite()) {
            return bad(format!("--width must be positive, got {}", self.width));
        }
        if !(0.0..1.0).contains(&self.valid_split) {
            return bad(format!(
                "--valid-split must be in [0, 1), got {}",
                self.valid_split
            ));
        }
        if !(self.momentum >= 0.0 && self.momentum < 1.0) {
            return bad(format!(
                "--momentum must be in [0, 1), got {}",
                self.momentum
            ));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(format!(
                "--weight-decay must be non-negative, got {}",
                self.weight_decay
            ));
        }
        if self.eval_every == 0 {
            return bad("--eval-every must be at least 1".into());
        }
        if self.limit_train == Some(0) {
            return bad("--limit-train must be at least 1".into());
        }
        if self.limit_test == Some(0) {
            return bad("--limit-test must be at least 1".into());
        }
        if self.stop_after == Some(0) {
            return bad("--stop-after must be at least 1".into());
        }
        self.validate_suptickets()?;
        self.sparse_config(1)?;
        self.lr_schedule().validate()
    }

    /// Refuses an option the method would ignore (e.g. `--sparsity` with `--method dense`),
    /// naming the flag.
    fn check_used_options(&self) -> Result<()> {
        let m = self.method;
        let snip_global =
            m == MethodKind::Snip && self.snip_scope.unwrap_or_default() == SnipScope::Global;
        let given: [(&str, bool, bool); 12] = [
            ("--sparsity", self.sparsity.is_some(), m.is_sparse()),
            ("--init", self.init.is_some(), m.is_sparse() && !snip_global),
            ("--dense-first-layer", self.dense_first_layer, m.is_sparse()),
            (
                "--update-interval",
                self.update_interval.is_some(),
                m.explores(),
            ),
            (
                "--drop-fraction",
                self.drop_fraction.is_some(),
                m.explores(),
            ),
            (
                "--drop-schedule",
                self.drop_schedule.is_some(),
                m.explores(),
            ),
            (
                "--explore-until",
                self.explore_until.is_some(),
                m.explores(),
            ),
            (
                "--initial-density",
                self.initial_density.is_some(),
                m == MethodKind::Granet,
            ),
            (
                "--prune-start-epoch",
                self.prune_start_epoch.is_some(),
                m == MethodKind::Granet,
            ),
            (
                "--prune-end-epoch",
                self.prune_end_epoch.is_some(),
                m == MethodKind::Granet,
            ),
            (
                "--snip-scope",
                self.snip_scope.is_some(),
                m == MethodKind::Snip,
            ),
            (
                "--regrown",
                self.regrown != Regrown::Keep,
                m.explores() || (self.suptickets && m.is_sparse()),
            ),
        ];
        for (flag, set, used) in given {
            if set && !used {
                let hint = if m == MethodKind::Dense {
                    "; choose a sparse --method (static, snip, set, rigl, granet)"
                } else if snip_global && flag == "--init" {
                    "; SNIP's global top-K sets the layer densities itself (--snip-scope layer uses --init)"
                } else {
                    ""
                };
                return Err(Error::Config(format!(
                    "{flag} has no effect with --method {m}{hint}"
                )));
            }
        }
        Ok(())
    }

    /// The sparse-training settings with every default applied, for `iterations_per_epoch`
    /// steps per epoch (the default ΔT depends on it). Checks every value, and that no option
    /// is given that the method would ignore (e.g. `--sparsity` with `--method dense`), naming
    /// the flag.
    pub fn sparse_config(&self, iterations_per_epoch: usize) -> Result<SparseConfig> {
        let m = self.method;
        self.check_used_options()?;
        let sparsity = self
            .sparsity
            .unwrap_or(if m.is_sparse() { DEFAULT_SPARSITY } else { 0.0 });
        if !(0.0..1.0).contains(&sparsity) {
            return Err(Error::Config(format!(
                "--sparsity must be in [0, 1), got {sparsity}"
            )));
        }
        // t_f defaults to 0.44·E of the WHOLE run (the reference's 110 of 250), so a run with
        // and without Sup-tickets prunes on the same schedule; never after the normal phase.
        let prune_end = self.prune_end_epoch.unwrap_or(
            (GRANET_PRUNE_END_FRACTION * self.epochs as f64).min(self.base_epochs() as f64),
        );
        if m == MethodKind::Granet && prune_end > self.base_epochs() as f64 {
            return Err(Error::Config(format!(
                "--prune-end-epoch {prune_end} is after the last epoch of the base method ({}); the final density would never be reached",
                self.base_epochs()
            )));
        }
        let c = SparseConfig {
            method: m,
            sparsity,
            init: self.init.unwrap_or(DensityInit::Erk),
            dense_first_layer: self.dense_first_layer,
            update_interval: self.update_interval.unwrap_or_else(|| {
                default_update_interval(iterations_per_epoch, self.epochs * iterations_per_epoch).0
            }),
            drop_fraction: self.drop_fraction.unwrap_or(DEFAULT_DROP_FRACTION),
            drop_schedule: self.drop_schedule.unwrap_or_default(),
            explore_until: self.explore_until.unwrap_or(DEFAULT_EXPLORE_UNTIL),
            initial_density: match m {
                MethodKind::Granet => self
                    .initial_density
                    .unwrap_or(DEFAULT_INITIAL_DENSITY.max(1.0 - sparsity)),
                _ => 1.0 - sparsity,
            },
            prune_start_epoch: self.prune_start_epoch.unwrap_or(0.0),
            prune_end_epoch: prune_end,
            snip_scope: self.snip_scope.unwrap_or_default(),
            seed: self.seed,
            regrown: self.regrown,
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks the Sup-tickets settings.
    /// Checks the image-folder options, and that none is given for another dataset.
    fn validate_folder_options(&self) -> Result<()> {
        let folder = DatasetKind::parse(&self.dataset)? == DatasetKind::ImageFolder;
        if !folder && (self.image_size.is_some() || self.skip_bad_images) {
            return Err(Error::Config(format!(
                "--image-size and --skip-bad-images apply to --dataset imagefolder only, not {}",
                self.dataset
            )));
        }
        if self.image_size == Some(0) {
            return Err(Error::Config("--image-size must be at least 1".into()));
        }
        if self.decode_threads == 0 {
            return Err(Error::Config("--decode-threads must be at least 1".into()));
        }
        Ok(())
    }

    fn validate_suptickets(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        let d = TrainConfig::default();
        if !self.suptickets {
            let given = [
                ("--cycle-epochs", self.cycle_epochs != d.cycle_epochs),
                ("--cycle-fraction", self.cycle_fraction != d.cycle_fraction),
                ("--cycle-lr-low", self.cycle_lr_low != d.cycle_lr_low),
                ("--cycle-lr-high", self.cycle_lr_high != d.cycle_lr_high),
                (
                    "--cycle-drop-fraction",
                    self.cycle_drop_fraction != d.cycle_drop_fraction,
                ),
                ("--average", self.average != d.average),
                ("--cima-beta", self.cima_beta != d.cima_beta),
                ("--reprune", self.reprune != d.reprune),
                ("--bn", self.bn != d.bn),
                ("--ensemble", self.ensemble),
            ];
            for (flag, set) in given {
                if set {
                    return bad(format!("{flag} has no effect without --suptickets"));
                }
            }
            return Ok(());
        }
        if !self.method.is_sparse() {
            return bad(
                "--suptickets needs a sparse --method (static, snip, set, rigl, granet), not dense"
                    .into(),
            );
        }
        if self.cycle_epochs == 0 {
            return bad("--cycle-epochs must be at least 1".into());
        }
        let b = self.sup_budget()?.expect("suptickets");
        if !b.has_cycles() {
            return bad(format!(
                "--suptickets: --cycle-fraction {} of {} epochs is less than one cycle of {} epoch(s); no ticket would be trained",
                self.cycle_fraction, self.epochs, self.cycle_epochs
            ));
        }
        if b.normal_epochs == 0 {
            return bad(format!(
                "--suptickets: the cycles take all {} epochs; the normal phase needs at least one (lower --cycle-fraction)",
                self.epochs
            ));
        }
        for (flag, a) in [
            ("--cycle-lr-low", self.cycle_lr_low),
            ("--cycle-lr-high", self.cycle_lr_high),
        ] {
            if !(a >= 0.0 && a.is_finite()) {
                return bad(format!("{flag} must be a non-negative rate, got {a}"));
            }
        }
        if self.cycle_lr_low > self.cycle_lr_high {
            return bad(format!(
                "--cycle-lr-low ({}) is above --cycle-lr-high ({}): the cycle's triangle would be inverted",
                self.cycle_lr_low, self.cycle_lr_high
            ));
        }
        if !(self.cycle_drop_fraction >= 0.0 && self.cycle_drop_fraction <= 1.0) {
            return bad(format!(
                "--cycle-drop-fraction must be in [0, 1], got {}",
                self.cycle_drop_fraction
            ));
        }
        let sc = self.superpose_config()?;
        if let Averaging::Cima { beta } = sc.averaging {
            if !(beta > 0.0 && beta < 1.0) {
                return bad(format!("--cima-beta must be in (0, 1), got {beta}"));
            }
        }
        Ok(())
    }
}

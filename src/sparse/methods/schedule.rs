//! When the masks change: the mask-update interval ΔT, the exploration horizon H and the drop
//! fraction p(s) of the exploration steps, and GraNet's gradual-pruning window and cubic target
//! density. Everything here is a function of the configuration and the step.

use serde::{Deserialize, Serialize};

use super::config::SparseConfig;
use crate::error::{Error, Result};

/// The smallest drop fraction of the cosine schedule, p_min (RigL/GraNet reference: 0.005).
pub const DROP_FRACTION_MIN: f64 = 0.005;

/// GraNet's default end of gradual pruning as a fraction of training (CIFAR: 110 of 250 epochs).
pub const GRANET_PRUNE_END_FRACTION: f64 = 110.0 / 250.0;

/// How the drop fraction p evolves over the exploration horizon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DropSchedule {
    /// p(t) = p0.
    #[default]
    Constant,
    /// p(t) = p_min + (p0 − p_min)(1 + cos(π t/T))/2, T the exploration horizon.
    Cosine,
}

impl DropSchedule {
    /// `constant` or `cosine`.
    pub fn name(self) -> &'static str {
        match self {
            DropSchedule::Constant => "constant",
            DropSchedule::Cosine => "cosine",
        }
    }

    /// Parses `constant` or `cosine`.
    pub fn parse(s: &str) -> Result<DropSchedule> {
        match s.trim().to_ascii_lowercase().as_str() {
            "constant" | "const" => Ok(DropSchedule::Constant),
            "cosine" | "cos" => Ok(DropSchedule::Cosine),
            _ => Err(Error::Config(format!(
                "--drop-schedule: unknown schedule {s:?}; expected constant or cosine"
            ))),
        }
    }
}

/// The reference mask-update interval ΔT (RigL, GraNet and Sup-tickets code on CIFAR).
pub const REFERENCE_UPDATE_INTERVAL: usize = 1000;

/// Runs of at least this many steps use [`REFERENCE_UPDATE_INTERVAL`] by default (50 intervals;
/// the reference 250-epoch CIFAR run has 97,750 steps).
pub const REFERENCE_INTERVAL_MIN_STEPS: usize = 50 * REFERENCE_UPDATE_INTERVAL;

/// The default mask-update interval of a run of `total_steps` steps with `iterations_per_epoch`
/// per epoch, and the rule that gave it (for the report): the reference ΔT = 1000 when the run
/// has at least [`REFERENCE_INTERVAL_MIN_STEPS`] steps (CIFAR at batch 128 from 128 epochs on);
/// a shorter run, which would see too few updates at 1000, updates four times an epoch,
/// ΔT = max(1, ⌊I/4⌋) (at most 1000).
pub fn default_update_interval(iterations_per_epoch: usize, total_steps: usize) -> (usize, String) {
    if total_steps >= REFERENCE_INTERVAL_MIN_STEPS {
        (
            REFERENCE_UPDATE_INTERVAL,
            format!(
                "reference: ΔT = {REFERENCE_UPDATE_INTERVAL} (the run has {total_steps} >= {REFERENCE_INTERVAL_MIN_STEPS} steps)"
            ),
        )
    } else {
        let dt = (iterations_per_epoch / 4).clamp(1, REFERENCE_UPDATE_INTERVAL);
        (
            dt,
            format!(
                "short run ({total_steps} < {REFERENCE_INTERVAL_MIN_STEPS} steps): ΔT = max(1, floor(I/4)) = {dt} for I = {iterations_per_epoch}"
            ),
        )
    }
}

/// The drop fraction at step `t` of an exploration horizon of `horizon` steps:
/// p0 (constant) or p_min + (p0 − p_min)(1 + cos(π t/T))/2 (cosine, p_min = min(0.005, p0)).
pub fn drop_fraction_at(p0: f64, schedule: DropSchedule, t: u64, horizon: u64) -> f64 {
    match schedule {
        DropSchedule::Constant => p0,
        DropSchedule::Cosine => {
            let p_min = DROP_FRACTION_MIN.min(p0);
            let x = if horizon == 0 {
                1.0
            } else {
                (t as f64 / horizon as f64).min(1.0)
            };
            p_min + (p0 - p_min) * (1.0 + (std::f64::consts::PI * x).cos()) / 2.0
        }
    }
}

/// GraNet's target density at pruning step `i` of [i0, i_f]:
/// d(i) = d_f + (d_i − d_f)(1 − (i − i0)/(i_f − i0))³ (d_f for i ≥ i_f, d_i before i0).
pub fn granet_density(d_init: f64, d_final: f64, i: u64, i0: u64, i_f: u64) -> f64 {
    if i >= i_f {
        return d_final;
    }
    if i <= i0 {
        return d_init;
    }
    let x = 1.0 - (i - i0) as f64 / (i_f - i0) as f64;
    d_final + (d_init - d_final) * x * x * x
}

/// The update schedule of one run: which steps explore (and with what drop fraction), which
/// steps prune gradually (and to what density).
#[derive(Clone, Debug)]
pub(crate) struct Schedule {
    /// ΔT.
    interval: u64,
    /// The method explores every ΔT before the horizon.
    explores: bool,
    /// The method prunes gradually (GraNet) in the window.
    prunes: bool,
    /// H = ⌊explore_until · total steps⌋, capped by [`Schedule::end_exploration_by`].
    horizon: u64,
    /// (i0, i_f): the gradual-pruning steps, in units of ΔT.
    prune_window: (u64, u64),
    /// p0 and how it decays.
    drop: (f64, DropSchedule),
    /// (d_i, d_f): GraNet's initial and final densities.
    densities: (f64, f64),
}

impl Schedule {
    /// The schedule of `cfg` over `total_steps` steps of `iterations_per_epoch` per epoch.
    pub(crate) fn new(cfg: &SparseConfig, iterations_per_epoch: usize, total_steps: u64) -> Self {
        let rule = cfg.method.rule();
        let horizon = (cfg.explore_until * total_steps as f64).floor() as u64;
        let dt = cfg.update_interval as f64;
        let ipe = iterations_per_epoch as f64;
        let prune_window = (
            (cfg.prune_start_epoch * ipe / dt).floor() as u64,
            (cfg.prune_end_epoch * ipe / dt).floor() as u64,
        );
        Schedule {
            interval: cfg.update_interval as u64,
            explores: rule.explores(),
            prunes: rule.prunes_gradually(),
            horizon,
            prune_window,
            drop: (cfg.drop_fraction, cfg.drop_schedule),
            densities: (cfg.initial_density, cfg.density()),
        }
    }

    /// The exploration horizon H: updates run at steps s < H.
    pub(crate) fn horizon(&self) -> u64 {
        self.horizon
    }

    /// GraNet's pruning steps (i0, i_f), in units of ΔT.
    pub(crate) fn prune_window(&self) -> (u64, u64) {
        self.prune_window
    }

    /// True when step `step` (1-based) runs an exploration update.
    pub(crate) fn is_exploration_step(&self, step: u64) -> bool {
        self.explores && step > 0 && step.is_multiple_of(self.interval) && step < self.horizon
    }

    /// The gradual-pruning step index i when step `step` runs a gradual-pruning step.
    pub(crate) fn pruning_index(&self, step: u64) -> Option<u64> {
        if !self.prunes || step == 0 || !step.is_multiple_of(self.interval) {
            return None;
        }
        let i = step / self.interval;
        let (i0, i_f) = self.prune_window;
        // A window that ends before the first update (t_f = 0, or below one ΔT) prunes straight
        // to the final density at the first update at or after i0.
        let last = i_f.max(i0.max(1));
        (i >= i0 && i <= last).then_some(i)
    }

    /// Ends exploration no later than step `step`: H becomes min(H, `step`).
    pub(crate) fn end_exploration_by(&mut self, step: u64) {
        self.horizon = self.horizon.min(step);
    }

    /// GraNet's target density at pruning step `i`.
    pub(crate) fn target_density(&self, i: u64) -> f64 {
        let (i0, i_f) = self.prune_window;
        granet_density(self.densities.0, self.densities.1, i, i0, i_f)
    }

    /// The drop fraction at step `step`.
    pub(crate) fn drop_fraction(&self, step: u64) -> f64 {
        drop_fraction_at(self.drop.0, self.drop.1, step, self.horizon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_drop_fraction_by_hand() {
        let (p0, t) = (0.5, 100);
        assert_eq!(drop_fraction_at(p0, DropSchedule::Constant, 37, t), 0.5);
        assert!((drop_fraction_at(p0, DropSchedule::Cosine, 0, t) - 0.5).abs() < 1e-15);
        // t = T/2: p_min + (p0 - p_min)/2 = 0.005 + 0.2475
        assert!((drop_fraction_at(p0, DropSchedule::Cosine, 50, t) - 0.2525).abs() < 1e-12);
        // t = T/4: cos(pi/4) = 0.70711; 0.005 + 0.495 * 1.70711 / 2 = 0.42751
        let q = 0.005 + 0.495 * (1.0 + std::f64::consts::FRAC_1_SQRT_2) / 2.0;
        assert!((drop_fraction_at(p0, DropSchedule::Cosine, 25, t) - q).abs() < 1e-12);
        assert!((drop_fraction_at(p0, DropSchedule::Cosine, 100, t) - 0.005).abs() < 1e-15);
        assert!((drop_fraction_at(p0, DropSchedule::Cosine, 150, t) - 0.005).abs() < 1e-15);
    }

    #[test]
    fn granet_cubic_density_by_hand() {
        // d_i = 0.5, d_f = 0.1, i0 = 2, i_f = 6: (1 - (i-2)/4)^3 = 1, 27/64, 1/8, 1/64, 0
        let want = [0.5, 0.1 + 0.4 * 27.0 / 64.0, 0.15, 0.1 + 0.4 / 64.0, 0.1];
        for (j, w) in want.iter().enumerate() {
            let d = granet_density(0.5, 0.1, 2 + j as u64, 2, 6);
            assert!((d - w).abs() < 1e-15, "i = {}: {d} vs {w}", 2 + j);
        }
        assert_eq!(granet_density(0.5, 0.1, 1, 2, 6), 0.5);
        assert_eq!(granet_density(0.5, 0.1, 9, 2, 6), 0.1);
        assert_eq!(granet_density(0.5, 0.1, 3, 3, 3), 0.1);
    }

    #[test]
    fn default_update_interval_rule() {
        assert_eq!(default_update_interval(1, 10).0, 1);
        assert_eq!(default_update_interval(157, 157 * 5).0, 39);
        assert_eq!(default_update_interval(469, 469 * 5).0, 117);
        assert_eq!(default_update_interval(100_000, 100_000).0, 1000);
        // CIFAR at batch 128 (I = 391): the reference's ΔT = 1000 over 250 epochs (73
        // updates in the 75% horizon, not 755 at ⌊I/4⌋ = 97), a quarter epoch over 20.
        let (dt, rule) = default_update_interval(391, 391 * 250);
        assert_eq!(dt, 1000);
        assert!(rule.starts_with("reference"), "{rule}");
        let (dt, rule) = default_update_interval(391, 391 * 20);
        assert_eq!(dt, 97);
        assert!(rule.starts_with("short run"), "{rule}");
    }
}

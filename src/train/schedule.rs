//! Learning-rate schedules, evaluated per iteration: multi-step (the paper's CIFAR schedule:
//! ×0.1 at `int(0.5·E)` and `int(0.75·E)`), cosine, constant, each with an optional linear
//! warm-up over the first W epochs.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The shape of a schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Piecewise constant: multiplied by `gamma` at each milestone epoch.
    Multistep,
    /// Half-cosine from the base rate down to 0 at the end of training (per iteration).
    Cosine,
    /// The base rate throughout.
    Constant,
}

impl ScheduleKind {
    /// Every kind, in the order listed in messages.
    pub const ALL: [ScheduleKind; 3] = [
        ScheduleKind::Multistep,
        ScheduleKind::Cosine,
        ScheduleKind::Constant,
    ];

    /// The name used by `--schedule` and in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            ScheduleKind::Multistep => "multistep",
            ScheduleKind::Cosine => "cosine",
            ScheduleKind::Constant => "constant",
        }
    }

    /// Parses `multistep`, `cosine` or `constant`.
    pub fn parse(s: &str) -> Result<ScheduleKind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "multistep" | "multi-step" | "step" => Ok(ScheduleKind::Multistep),
            "cosine" | "cos" => Ok(ScheduleKind::Cosine),
            "constant" | "const" => Ok(ScheduleKind::Constant),
            _ => Err(Error::Config(format!(
                "--schedule: unknown schedule {s:?}; expected one of: multistep, cosine, constant"
            ))),
        }
    }
}

impl std::fmt::Display for ScheduleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ScheduleKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<ScheduleKind> {
        ScheduleKind::parse(s)
    }
}

/// The default milestones for `epochs` epochs, in epochs: the paper's `int(0.5·E)` and
/// `int(0.75·E)` when those are two distinct epochs after the first (E ≥ 3), else the exact
/// fractions 0.5·E and 0.75·E, which fall inside an epoch (in iterations): a 1-epoch run decays
/// at half and three quarters of it instead of training at 0.01·lr from its first step.
pub fn default_milestones(epochs: usize) -> Vec<f64> {
    let (a, b) = (epochs / 2, epochs * 3 / 4);
    if a >= 1 && b > a {
        vec![a as f64, b as f64]
    } else {
        vec![0.5 * epochs as f64, 0.75 * epochs as f64]
    }
}

/// A learning-rate schedule over `epochs` epochs.
#[derive(Clone, Debug, PartialEq)]
pub struct LrSchedule {
    /// Shape.
    pub kind: ScheduleKind,
    /// Base (peak) learning rate.
    pub base_lr: f32,
    /// Total epochs of training.
    pub epochs: usize,
    /// Epochs (fractions allowed) at which the multi-step schedule multiplies the rate by
    /// `gamma`: from iteration ⌈m·I⌉ on.
    pub milestones: Vec<f64>,
    /// Multi-step factor (0.1).
    pub gamma: f32,
    /// Linear warm-up length in epochs (0 = none; may be fractional).
    pub warmup_epochs: f32,
}

impl LrSchedule {
    /// A schedule with the paper's milestones and factor 0.1, no warm-up.
    pub fn new(kind: ScheduleKind, base_lr: f32, epochs: usize) -> LrSchedule {
        LrSchedule {
            kind,
            base_lr,
            epochs,
            milestones: default_milestones(epochs),
            gamma: 0.1,
            warmup_epochs: 0.0,
        }
    }

    /// Number of warm-up iterations for `iters_per_epoch`.
    pub fn warmup_iters(&self, iters_per_epoch: usize) -> usize {
        (self.warmup_epochs.max(0.0) as f64 * iters_per_epoch as f64).round() as usize
    }

    /// The learning rate of (0-based) `iteration` when an epoch has `iters_per_epoch`
    /// iterations. During warm-up (the first `W·I` iterations) the rate rises linearly,
    /// `base·(it+1)/(W·I)`; after it, multi-step counts the milestones m with it ≥ m·I,
    /// cosine decays `base·½(1 + cos(π·(it − W·I)/(E·I − W·I)))`.
    pub fn lr_at(&self, iteration: usize, iters_per_epoch: usize) -> f32 {
        let ipe = iters_per_epoch.max(1);
        let warm = self.warmup_iters(ipe);
        if iteration < warm {
            return self.base_lr * (iteration + 1) as f32 / warm as f32;
        }
        match self.kind {
            ScheduleKind::Constant => self.base_lr,
            ScheduleKind::Multistep => {
                let k = self
                    .milestones
                    .iter()
                    .filter(|&&m| iteration as f64 >= m * ipe as f64)
                    .count();
                self.base_lr * self.gamma.powi(k as i32)
            }
            ScheduleKind::Cosine => {
                let total = (self.epochs * ipe).max(warm + 1);
                let t = ((iteration - warm) as f64 / (total - warm) as f64).min(1.0);
                (self.base_lr as f64 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
            }
        }
    }

    /// Checks the values (positive rate, milestones increasing, warm-up not negative).
    pub fn validate(&self) -> Result<()> {
        if !(self.base_lr > 0.0 && self.base_lr.is_finite()) {
            return Err(Error::Config(format!(
                "--lr must be positive, got {}",
                self.base_lr
            )));
        }
        if !(self.warmup_epochs >= 0.0 && self.warmup_epochs.is_finite()) {
            return Err(Error::Config(format!(
                "--warmup must be a non-negative number of epochs, got {}",
                self.warmup_epochs
            )));
        }
        if self.milestones.windows(2).any(|w| w[0] > w[1]) {
            return Err(Error::Config(format!(
                "--milestones must be increasing, got {:?}",
                self.milestones
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multistep_paper_boundaries() {
        // E = 250: milestones 125 and 187.
        let s = LrSchedule::new(ScheduleKind::Multistep, 0.1, 250);
        assert_eq!(s.milestones, vec![125.0, 187.0]);
        let i = 391;
        assert_eq!(s.lr_at(0, i), 0.1);
        assert_eq!(s.lr_at(125 * i - 1, i), 0.1);
        assert!((s.lr_at(125 * i, i) - 0.01).abs() < 1e-9);
        assert!((s.lr_at(187 * i - 1, i) - 0.01).abs() < 1e-9);
        assert!((s.lr_at(187 * i, i) - 0.001).abs() < 1e-9);
        assert!((s.lr_at(250 * i - 1, i) - 0.001).abs() < 1e-9);
        // odd E: int(0.5·7) = 3, int(0.75·7) = 5
        assert_eq!(default_milestones(7), vec![3.0, 5.0]);
    }

    #[test]
    fn custom_milestones() {
        let mut s = LrSchedule::new(ScheduleKind::Multistep, 1.0, 10);
        s.milestones = vec![2.0, 4.0, 6.0];
        s.gamma = 0.5;
        assert_eq!(s.lr_at(19, 10), 1.0);
        assert_eq!(s.lr_at(20, 10), 0.5);
        assert_eq!(s.lr_at(45, 10), 0.25);
        assert_eq!(s.lr_at(60, 10), 0.125);
    }

    #[test]
    fn cosine_endpoints_and_midpoint() {
        let s = LrSchedule::new(ScheduleKind::Cosine, 0.1, 10);
        assert_eq!(s.lr_at(0, 100), 0.1);
        assert!((s.lr_at(500, 100) - 0.05).abs() < 1e-7);
        assert!(s.lr_at(999, 100) < 1e-5);
        assert!(s.lr_at(999, 100) > 0.0);
        // monotone
        let v: Vec<f32> = (0..1000).map(|i| s.lr_at(i, 100)).collect();
        assert!(v.windows(2).all(|w| w[1] <= w[0]));
    }

    #[test]
    fn constant_and_warmup() {
        let mut s = LrSchedule::new(ScheduleKind::Constant, 0.2, 5);
        assert_eq!(s.lr_at(0, 10), 0.2);
        assert_eq!(s.lr_at(49, 10), 0.2);
        s.warmup_epochs = 2.0;
        assert_eq!(s.warmup_iters(10), 20);
        assert!((s.lr_at(0, 10) - 0.01).abs() < 1e-7);
        assert!((s.lr_at(9, 10) - 0.1).abs() < 1e-7);
        assert!((s.lr_at(19, 10) - 0.2).abs() < 1e-7);
        assert_eq!(s.lr_at(20, 10), 0.2);
        // cosine after warm-up starts at the base rate and spans the rest
        let mut c = LrSchedule::new(ScheduleKind::Cosine, 0.2, 4);
        c.warmup_epochs = 1.0;
        assert_eq!(c.lr_at(10, 10), 0.2);
        assert!((c.lr_at(25, 10) - 0.1).abs() < 1e-7);
        // fractional warm-up
        c.warmup_epochs = 0.5;
        assert_eq!(c.warmup_iters(10), 5);
    }

    #[test]
    fn parse_and_validate() {
        for k in ScheduleKind::ALL {
            assert_eq!(ScheduleKind::parse(k.name()).unwrap(), k);
        }
        assert!(ScheduleKind::parse("linear")
            .unwrap_err()
            .to_string()
            .contains("linear"));
        let mut s = LrSchedule::new(ScheduleKind::Multistep, 0.1, 10);
        s.validate().unwrap();
        s.milestones = vec![5.0, 2.0];
        assert!(s.validate().is_err());
        s.milestones = vec![];
        s.base_lr = 0.0;
        assert!(s.validate().is_err());
    }
}

//! [`TrainConfig`]: every setting of a training run, read from a TOML file (unknown keys are an
//! error naming the key), overridden by command-line flags, and stored in checkpoints and
//! reports.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::schedule::{default_milestones, LrSchedule, ScheduleKind};
use crate::error::{Error, Result};

/// The settings of one training run. Defaults: the paper's CIFAR optimiser settings (SGD lr 0.1,
/// momentum 0.9, weight decay 5e-4, batch 128, multi-step schedule) on Fashion-MNIST.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Model name (see `suptickets::models::MODEL_NAMES`).
    pub model: String,
    /// Channel multiplier (1.0 = the reference model).
    pub width: f32,
    /// `fashion-mnist`, `cifar10` or `cifar100`.
    pub dataset: String,
    /// Data directory (default: the dataset's, or `SUPTICKETS_DATA_DIR`).
    pub data_dir: Option<PathBuf>,
    /// Training epochs.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Evaluation batch size.
    pub eval_batch_size: usize,
    /// Base learning rate.
    pub lr: f32,
    /// SGD momentum.
    pub momentum: f32,
    /// L2 weight decay.
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Learning-rate schedule.
    pub schedule: ScheduleKind,
    /// Multi-step milestones in epochs (default `int(0.5·E)`, `int(0.75·E)`).
    pub milestones: Option<Vec<usize>>,
    /// Multi-step factor.
    pub gamma: f32,
    /// Linear warm-up in epochs (0 = none).
    pub warmup: f32,
    /// Seed of the initialisation, data order and augmentation.
    pub seed: u64,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Train on the first N training examples only.
    pub limit_train: Option<usize>,
    /// Evaluate on the first N test (or validation) examples only.
    pub limit_test: Option<usize>,
    /// Fraction of the training set held out for validation; when > 0 the per-epoch and final
    /// evaluation use it instead of the test split.
    pub valid_split: f64,
    /// Output directory (default `runs/<name or timestamp>`).
    pub out: Option<PathBuf>,
    /// Run name (used for the default output directory and in reports).
    pub name: Option<String>,
    /// Evaluate every N epochs (the last epoch is always evaluated).
    pub eval_every: usize,
    /// Stop after this many epochs in this invocation (the run can be resumed later); the
    /// schedule still spans `epochs`.
    pub stop_after: Option<usize>,
    /// Show a progress bar / progress lines on stderr.
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: "resnet18".into(),
            width: 1.0,
            dataset: "fashion-mnist".into(),
            data_dir: None,
            epochs: 10,
            batch_size: 128,
            eval_batch_size: 500,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 5e-4,
            nesterov: false,
            schedule: ScheduleKind::Multistep,
            milestones: None,
            gamma: 0.1,
            warmup: 0.0,
            seed: 0,
            device: "cpu".into(),
            limit_train: None,
            limit_test: None,
            valid_split: 0.0,
            out: None,
            name: None,
            eval_every: 1,
            stop_after: None,
            progress: true,
        }
    }
}

impl TrainConfig {
    /// Parses a TOML document; an unknown key is an error naming it.
    pub fn from_toml(text: &str) -> Result<TrainConfig> {
        toml::from_str(text).map_err(|e| Error::Config(e.to_string().trim_end().to_string()))
    }

    /// Reads a TOML file; errors name the file (and the offending key).
    pub fn from_toml_file(path: &std::path::Path) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        TrainConfig::from_toml(&text)
            .map_err(|e| Error::Config(format!("{}: {}", path.display(), strip_prefix(&e))))
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// The learning-rate schedule.
    pub fn lr_schedule(&self) -> LrSchedule {
        LrSchedule {
            kind: self.schedule,
            base_lr: self.lr,
            epochs: self.epochs,
            milestones: self
                .milestones
                .clone()
                .unwrap_or_else(|| default_milestones(self.epochs)),
            gamma: self.gamma,
            warmup_epochs: self.warmup,
        }
    }

    /// Checks values that cannot be right, naming the flag.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.epochs == 0 {
            return bad("--epochs must be at least 1".into());
        }
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return bad("--batch-size must be at least 1".into());
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
        if self.limit_train == Some(0) || self.limit_test == Some(0) {
            return bad("--limit-train/--limit-test must be at least 1".into());
        }
        if self.stop_after == Some(0) {
            return bad("--stop-after must be at least 1".into());
        }
        self.lr_schedule().validate()
    }
}

fn strip_prefix(e: &Error) -> String {
    match e {
        Error::Config(m) => m.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip_and_defaults() {
        let c = TrainConfig::from_toml("model = \"wrn-16-1\"\nepochs = 3\nschedule = \"cosine\"\n")
            .unwrap();
        assert_eq!(c.model, "wrn-16-1");
        assert_eq!(c.epochs, 3);
        assert_eq!(c.schedule, ScheduleKind::Cosine);
        assert_eq!(c.batch_size, 128);
        let back = TrainConfig::from_toml(&c.to_toml()).unwrap();
        assert_eq!(back, c);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_key_is_named() {
        let e = TrainConfig::from_toml("modle = \"vgg16\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("modle"), "{e}");
        let e = TrainConfig::from_toml("schedule = \"linear\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("linear"), "{e}");
    }

    #[test]
    fn validation_names_the_flag() {
        let c = TrainConfig {
            epochs: 0,
            ..TrainConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("--epochs"));
        let c = TrainConfig {
            valid_split: 1.5,
            ..TrainConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--valid-split"));
    }

    #[test]
    fn default_milestones_follow_epochs() {
        let c = TrainConfig {
            epochs: 8,
            ..TrainConfig::default()
        };
        assert_eq!(c.lr_schedule().milestones, vec![4, 6]);
    }
}

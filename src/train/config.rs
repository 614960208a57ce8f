//! [`TrainConfig`]: every setting of a training run, read from a TOML file (unknown keys are an
//! error naming the key), overridden by command-line flags, and stored in checkpoints and
//! reports.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::schedule::{default_milestones, LrSchedule, ScheduleKind};
use crate::backend::sparse_policy::SparseKernels;
use crate::data::folder::{FolderOptions, DEFAULT_IMAGE_SIZE};
use crate::error::{Error, Result};
use crate::sparse::density::DensityInit;
use crate::sparse::explore::Regrown;
use crate::sparse::methods::{DropSchedule, MethodKind, SnipScope};
use crate::suptickets::{AverageKind, BnStrategy, Budget, Reprune, SuperposeConfig};

/// Declares every option of a training run once: its TOML key and field of [`TrainConfig`]
/// (with its default), and its `train` flag in [`TrainFlags`] (same name, `-` for `_`), with
/// the same documentation. `value` options are set by `--flag VALUE`; `option` options are
/// unset (`None`, a default computed later) unless given; `switch` options are `--flag`.
macro_rules! train_options {
    (@apply $flags:ident, $cfg:ident, value, $name:ident) => {
        if let Some(v) = &$flags.$name {
            $cfg.$name = v.clone();
        }
    };
    (@apply $flags:ident, $cfg:ident, option, $name:ident) => {
        if let Some(v) = &$flags.$name {
            $cfg.$name = Some(v.clone());
        }
    };
    (@apply $flags:ident, $cfg:ident, switch, $name:ident) => {
        if $flags.$name {
            $cfg.$name = true;
        }
    };
    (@given $flags:ident, $keys:ident, switch, $name:ident) => {
        if $flags.$name {
            $keys.push(stringify!($name));
        }
    };
    (@given $flags:ident, $keys:ident, $kind:ident, $name:ident) => {
        if $flags.$name.is_some() {
            $keys.push(stringify!($name));
        }
    };
    (@munch [$($cfg:tt)*] [$($flag:tt)*] [$(($kind:ident $aname:ident))*] [$($def:tt)*]) => {
        /// The settings of one training run. Defaults: the paper's CIFAR optimiser settings
        /// (SGD lr 0.1, momentum 0.9, weight decay 5e-4, batch 128, multi-step schedule) on
        /// Fashion-MNIST. Each field is a TOML key and a `train` flag ([`TrainFlags`]).
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct TrainConfig { $($cfg)* }

        impl TrainConfig {
            /// Every option's TOML key.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($aname)),*];
        }

        impl Default for TrainConfig {
            fn default() -> Self {
                TrainConfig { $($def)* }
            }
        }

        /// The `train` flags: one per key of [`TrainConfig`]; each given flag overrides the
        /// configuration file (or, with `--resume`, the checkpoint's configuration).
        #[derive(clap::Args, Clone, Debug, Default)]
        pub struct TrainFlags { $($flag)* }

        impl TrainFlags {
            /// Sets every option given on the command line in `cfg`.
            pub fn apply_to(&self, cfg: &mut TrainConfig) {
                $(train_options!(@apply self, cfg, $kind, $aname);)*
            }

            /// The keys of the options given on the command line.
            pub fn given(&self) -> Vec<&'static str> {
                let mut keys = Vec::new();
                $(train_options!(@given self, keys, $kind, $aname);)*
                keys
            }
        }
    };
    (@munch [$($cfg:tt)*] [$($flag:tt)*] [$($apply:tt)*] [$($def:tt)*]
        $(#[doc = $doc:literal])* $name:ident: value $ty:ty = $d:expr, [$($arg:tt)*]; $($rest:tt)*) => {
        train_options!(@munch
            [$($cfg)* $(#[doc = $doc])* pub $name: $ty,]
            [$($flag)* $(#[doc = $doc])* #[arg(long, $($arg)*)] pub $name: Option<$ty>,]
            [$($apply)* (value $name)]
            [$($def)* $name: $d,]
            $($rest)*);
    };
    (@munch [$($cfg:tt)*] [$($flag:tt)*] [$($apply:tt)*] [$($def:tt)*]
        $(#[doc = $doc:literal])* $name:ident: option $ty:ty = $d:expr, [$($arg:tt)*]; $($rest:tt)*) => {
        train_options!(@munch
            [$($cfg)* $(#[doc = $doc])* pub $name: Option<$ty>,]
            [$($flag)* $(#[doc = $doc])* #[arg(long, $($arg)*)] pub $name: Option<$ty>,]
            [$($apply)* (option $name)]
            [$($def)* $name: $d,]
            $($rest)*);
    };
    (@munch [$($cfg:tt)*] [$($flag:tt)*] [$($apply:tt)*] [$($def:tt)*]
        $(#[doc = $doc:literal])* $name:ident: switch bool = $d:expr, [$($arg:tt)*]; $($rest:tt)*) => {
        train_options!(@munch
            [$($cfg)* $(#[doc = $doc])* pub $name: bool,]
            [$($flag)* $(#[doc = $doc])* #[arg(long, $($arg)*)] pub $name: bool,]
            [$($apply)* (switch $name)]
            [$($def)* $name: $d,]
            $($rest)*);
    };
    ($($t:tt)*) => { train_options!(@munch [] [] [] [] $($t)*); };
}

train_options! {
    /// Model: `vgg16`, `resnet18`, `resnet34`, `resnet50`, `resnet101`, `resnet152`,
    /// `resnet50-imagenet` or `wrn-D-K` (e.g. `wrn-28-10`); `suptickets info` lists them.
    model: value String = "resnet18".into(), [];
    /// Channel multiplier (1.0 = the reference model).
    width: value f32 = 1.0, [];
    /// `fashion-mnist`, `cifar10`, `cifar100` or `imagefolder` (an ImageNet-format folder:
    /// `DIR/train/<class>/*.JPEG`, `DIR/val/<class>/*.JPEG`).
    dataset: value String = "fashion-mnist".into(), [];
    /// Data directory (default: the dataset's, or `SUPTICKETS_DATA_DIR`).
    data_dir: option PathBuf = None, [value_name = "DIR"];
    /// `imagefolder` only: side S of the square training crops and evaluation centre crops
    /// (default 224; evaluation first resizes the shorter side to ⌊S·256/224⌋).
    image_size: option usize = None, [value_name = "S"];
    /// `imagefolder` only: skip unreadable image files (not a JPEG, truncated, undecodable)
    /// and count them in the report, instead of failing on the first one.
    skip_bad_images: switch bool = false, [];
    /// `imagefolder` only: threads decoding JPEGs ahead of the training step.
    decode_threads: value usize = 2, [value_name = "N"];
    /// Training epochs.
    epochs: value usize = 10, [];
    /// Mini-batch size.
    batch_size: value usize = 128, [];
    /// Evaluation batch size.
    eval_batch_size: value usize = 500, [];
    /// Base learning rate.
    lr: value f32 = 0.1, [];
    /// SGD momentum.
    momentum: value f32 = 0.9, [];
    /// L2 weight decay.
    weight_decay: value f32 = 5e-4, [];
    /// Nesterov momentum.
    nesterov: switch bool = false, [];
    /// Learning-rate schedule.
    schedule: value ScheduleKind = ScheduleKind::Multistep, [ignore_case = true];
    /// Multi-step milestones in epochs (default `int(0.5·E)`, `int(0.75·E)`; for E < 3 the
    /// fractions 0.5·E and 0.75·E, inside the epoch).
    milestones: option Vec<usize> = None, [value_delimiter = ','];
    /// Multi-step factor.
    gamma: value f32 = 0.1, [];
    /// Linear warm-up in epochs (0 = none).
    warmup: value f32 = 0.0, [value_name = "EPOCHS"];
    /// Seed of the initialisation, data order and augmentation.
    seed: value u64 = 0, [];
    /// `cpu`, `cuda` or `cuda:N`.
    device: value String = "cpu".into(), [];
    /// Train on the first N training examples only.
    limit_train: option usize = None, [value_name = "N"];
    /// Evaluate on the first N test (or validation) examples only.
    limit_test: option usize = None, [value_name = "N"];
    /// Fraction of the training set held out for validation; when > 0 the per-epoch and final
    /// evaluation use it instead of the test split.
    valid_split: value f64 = 0.0, [value_name = "FRACTION"];
    /// Output directory (default `runs/<name or timestamp>`).
    out: option PathBuf = None, [value_name = "DIR"];
    /// Run name (used for the default output directory and in reports).
    name: option String = None, [];
    /// Evaluate every N epochs (the last epoch is always evaluated).
    eval_every: value usize = 1, [value_name = "N"];
    /// Stop after this many epochs in this invocation (the run can be resumed later); the
    /// schedule still spans `epochs`.
    stop_after: option usize = None, [value_name = "N"];
    /// Show a progress bar / progress lines on stderr.
    progress: value bool = true, [hide = true];
    /// Sparse-training method: `dense`, `static`, `snip`, `set`, `rigl` or `granet`.
    method: value MethodKind = MethodKind::Dense, [ignore_case = true];
    /// Final global sparsity of the conv and linear weights, in [0, 1) (sparse methods only;
    /// default 0.9).
    sparsity: option f64 = None, [];
    /// Layer-wise density allocation of the initial mask: `uniform`, `er` or `erk` (default).
    init: option DensityInit = None, [ignore_case = true];
    /// Keep the first conv dense, and out of every mask update (sparse methods only).
    dense_first_layer: switch bool = false, [];
    /// ΔT, iterations between mask updates (SET, RigL, GraNet; default
    /// min(1000, max(1, iterations per epoch / 4))).
    update_interval: option usize = None, [value_name = "ITERS"];
    /// Drop fraction p0 of an exploration step (SET, RigL, GraNet; default 0.5).
    drop_fraction: option f64 = None, [value_name = "P"];
    /// `constant` (default) or `cosine` decay of the drop fraction over the exploration horizon.
    drop_schedule: option DropSchedule = None, [ignore_case = true];
    /// Exploration stops at this fraction of training (SET, RigL, GraNet; default 0.75).
    explore_until: option f64 = None, [value_name = "FRACTION"];
    /// GraNet's initial density d_i (default 0.5, and at least the final density).
    initial_density: option f64 = None, [value_name = "DENSITY"];
    /// GraNet: epoch where gradual pruning starts (default 0; fractions allowed).
    prune_start_epoch: option f64 = None, [value_name = "EPOCH"];
    /// GraNet: epoch where gradual pruning reaches the final density (default 0.44 · epochs,
    /// the reference's 110 of 250).
    prune_end_epoch: option f64 = None, [value_name = "EPOCH"];
    /// SNIP's top-K: `global` (default) or `layer` (per layer, with the `init` allocation).
    snip_scope: option SnipScope = None, [ignore_case = true];
    /// What a connection pruned and regrown by the same exploration step (SET, RigL, GraNet and
    /// the Sup-tickets cycles) restarts from: `keep` its weight and momentum (default, as the
    /// reference code bases) or `zero`.
    regrown: value Regrown = Regrown::Keep, [ignore_case = true];
    /// Sup-tickets (docs/computation.md, Sup-tickets): end the run with cycles of cyclic-LR
    /// training whose tickets are superposed into the ultimate ticket (sparse methods only).
    suptickets: switch bool = false, [];
    /// Sup-tickets: cycle length C in epochs.
    cycle_epochs: value usize = 8, [value_name = "EPOCHS"];
    /// Sup-tickets: fraction r of the epochs spent in cycles, in (0, 1].
    cycle_fraction: value f64 = 0.1, [value_name = "R"];
    /// Sup-tickets: α1, the cyclic learning rate at cycle boundaries.
    cycle_lr_low: value f32 = 0.001, [value_name = "LR"];
    /// Sup-tickets: α2, the cyclic learning rate at mid-cycle.
    cycle_lr_high: value f32 = 0.005, [value_name = "LR"];
    /// Sup-tickets: fraction q of each layer's active weights pruned and regrown at each cycle
    /// start.
    cycle_drop_fraction: value f64 = 0.5, [value_name = "Q"];
    /// Sup-tickets averaging: `cia` (default), `caa` or `cima`.
    average: value AverageKind = AverageKind::Cia, [ignore_case = true];
    /// Sup-tickets: CIMA's β.
    cima_beta: value f32 = crate::suptickets::DEFAULT_CIMA_BETA, [value_name = "BETA"];
    /// Sup-tickets re-pruning: `global` (default) or `layerwise`.
    reprune: value Reprune = Reprune::Global, [ignore_case = true];
    /// Sup-tickets batch norm of the ultimate ticket: `av` (default) or `bu`.
    bn: value BnStrategy = BnStrategy::Average, [ignore_case = true];
    /// Sup-tickets: also evaluate the deep ensemble of the K+1 tickets (appendix E).
    ensemble: switch bool = false, [];
    /// Kernels of masked layers: `auto` (sparse below the crossover density), `dense` or
    /// `sparse` ([`crate::backend::sparse_policy`]).
    sparse_kernels: value SparseKernels = SparseKernels::Auto, [ignore_case = true];
    /// The crossover density of `sparse_kernels = "auto"`.
    sparse_crossover: value f64 = crate::backend::sparse_policy::DEFAULT_CROSSOVER, [value_name = "DENSITY"];
    /// Data-parallel runs (`mpirun -np N`): batch norm normalises with the statistics of the
    /// global batch, all-reduced across the processes (otherwise each process uses its own
    /// rows' and rank 0's running statistics are kept).
    sync_bn: switch bool = false, [];
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

    /// `self` with the keys that the TOML file `path` sets replaced by the file's values (the
    /// other keys keep `self`'s); also returns the keys the file set. Errors name the file.
    pub fn overlay_toml_file(&self, path: &Path) -> Result<(TrainConfig, Vec<String>)> {
        let named = |m: String| Error::Config(format!("{}: {m}", path.display()));
        let keys = toml_keys(path)?;
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let file: toml::Table = text.parse().map_err(|e| named(format!("{e}")))?;
        let mut merged = match toml::Value::try_from(self) {
            Ok(toml::Value::Table(t)) => t,
            other => return Err(named(format!("cannot merge the configuration: {other:?}"))),
        };
        merged.extend(file);
        let cfg = toml::Value::Table(merged)
            .try_into()
            .map_err(|e| named(format!("{e}").trim_end().to_string()))?;
        Ok((cfg, keys))
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// The Sup-tickets budget (None without `--suptickets`).
    pub fn sup_budget(&self) -> Result<Option<Budget>> {
        if !self.suptickets {
            return Ok(None);
        }
        if !(self.cycle_fraction > 0.0 && self.cycle_fraction <= 1.0) {
            return Err(Error::Config(format!(
                "--cycle-fraction must be in (0, 1], got {}",
                self.cycle_fraction
            )));
        }
        Budget::new(self.epochs, self.cycle_epochs, self.cycle_fraction).map(Some)
    }

    /// The epochs of the base method: P = E − E_c with `--suptickets`, E otherwise.
    pub fn base_epochs(&self) -> usize {
        match self.sup_budget() {
            Ok(Some(b)) => b.normal_epochs,
            _ => self.epochs,
        }
    }

    /// The Sup-tickets superposition settings.
    pub fn superpose_config(&self) -> Result<SuperposeConfig> {
        Ok(SuperposeConfig {
            averaging: self.average.with_beta(self.cima_beta),
            reprune: self.reprune,
            density: None,
            frozen_first: self.dense_first_layer,
        })
    }

    /// The Sup-tickets batch-norm strategy of the ultimate ticket.
    pub fn bn_strategy(&self) -> Result<BnStrategy> {
        Ok(self.bn)
    }

    /// The image-folder settings: `--image-size` (default 224), `--skip-bad-images`,
    /// `--decode-threads`.
    pub fn folder_options(&self) -> FolderOptions {
        FolderOptions {
            image_size: self.image_size.unwrap_or(DEFAULT_IMAGE_SIZE),
            skip_bad: self.skip_bad_images,
            decode_threads: self.decode_threads,
        }
    }

    /// The learning-rate schedule of the base method (over P epochs with `--suptickets`).
    pub fn lr_schedule(&self) -> LrSchedule {
        let epochs = self.base_epochs();
        LrSchedule {
            kind: self.schedule,
            base_lr: self.lr,
            epochs,
            milestones: match &self.milestones {
                Some(m) => m.iter().map(|&e| e as f64).collect(),
                None => default_milestones(epochs),
            },
            gamma: self.gamma,
            warmup_epochs: self.warmup,
        }
    }
}

/// The keys the TOML file `path` sets, after checking that it is a valid configuration (an
/// unknown key or a wrong type is an error naming the file and the key).
pub fn toml_keys(path: &Path) -> Result<Vec<String>> {
    TrainConfig::from_toml_file(path)?;
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    Ok(table.keys().cloned().collect())
}

/// Where a run's options came from, so that a message names each one as the user gave it:
/// `key` in FILE for a key of the configuration file that no flag overrode, `--flag` otherwise.
#[derive(Clone, Debug, Default)]
pub struct OptionSources {
    /// The configuration file and the keys it set.
    pub file: Option<(PathBuf, Vec<String>)>,
    /// The keys of the flags given.
    pub flags: Vec<&'static str>,
}

impl OptionSources {
    /// How to name option `key` (a TOML key) in a message.
    pub fn name(&self, key: &str) -> String {
        match &self.file {
            Some((f, keys)) if keys.iter().any(|k| k == key) && !self.flags.contains(&key) => {
                format!("`{key}` in {}", f.display())
            }
            _ => format!("--{}", key.replace('_', "-")),
        }
    }

    /// `e` with every `--flag` of a configuration message renamed by [`Self::name`].
    pub fn rename(&self, e: Error) -> Error {
        let Error::Config(m) = e else { return e };
        let mut out = String::with_capacity(m.len());
        let mut rest = m.as_str();
        while let Some(i) = rest.find("--") {
            out.push_str(&rest[..i]);
            let flag = &rest[i + 2..];
            let len = flag
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
                .unwrap_or(flag.len());
            let key = flag[..len].replace('-', "_");
            if len > 0 && TrainConfig::KEYS.contains(&key.as_str()) {
                out.push_str(&self.name(&key));
            } else {
                out.push_str(&rest[i..i + 2 + len]);
            }
            rest = &flag[len..];
        }
        out.push_str(rest);
        Error::Config(out)
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
    fn sparse_options_are_checked_against_the_method() {
        let err = |c: TrainConfig| c.validate().unwrap_err().to_string();
        let dense_sparsity = TrainConfig {
            sparsity: Some(0.9),
            ..TrainConfig::default()
        };
        assert!(err(dense_sparsity).contains("--sparsity has no effect with --method dense"));
        let rigl = TrainConfig {
            method: MethodKind::Rigl,
            ..TrainConfig::default()
        };
        let c = rigl.sparse_config(400).unwrap();
        assert_eq!((c.sparsity, c.update_interval), (0.9, 100));
        assert!(err(TrainConfig {
            sparsity: Some(1.0),
            ..rigl.clone()
        })
        .contains("--sparsity"));
        assert!(err(TrainConfig {
            initial_density: Some(0.5),
            ..rigl.clone()
        })
        .contains("--initial-density"));
        assert!(err(TrainConfig {
            update_interval: Some(0),
            ..rigl.clone()
        })
        .contains("--update-interval"));
        assert!(err(TrainConfig {
            explore_until: Some(1.5),
            ..rigl.clone()
        })
        .contains("--explore-until"));
        let granet = TrainConfig {
            method: MethodKind::Granet,
            sparsity: Some(0.8),
            initial_density: Some(0.1),
            ..TrainConfig::default()
        };
        assert!(err(granet.clone()).contains("--initial-density"));
        assert!(err(TrainConfig {
            initial_density: None,
            prune_end_epoch: Some(20.0),
            ..granet
        })
        .contains("--prune-end-epoch"));
        let toml =
            "method = \"granet\"\nsparsity = 0.95\ninit = \"er\"\ndrop_schedule = \"cosine\"\n";
        let c = TrainConfig::from_toml(toml).unwrap();
        assert_eq!(TrainConfig::from_toml(&c.to_toml()).unwrap(), c);
        let s = c.sparse_config(100).unwrap();
        assert_eq!(s.init, DensityInit::Er);
        assert_eq!(s.initial_density, 0.5);
        assert_eq!(s.prune_end_epoch, 4.4);
        assert!(TrainConfig::from_toml("init = \"erdos\"\n").is_err());
        assert!(TrainConfig::from_toml("method = \"lth\"\n").is_err());
    }

    #[test]
    fn default_milestones_follow_epochs() {
        let c = TrainConfig {
            epochs: 8,
            ..TrainConfig::default()
        };
        assert_eq!(c.lr_schedule().milestones, vec![4.0, 6.0]);
        // A 1-epoch run decays inside its epoch (it trained at 0.01·lr throughout before).
        let one = TrainConfig {
            epochs: 1,
            ..TrainConfig::default()
        };
        let s = one.lr_schedule();
        assert_eq!(s.milestones, vec![0.5, 0.75]);
        assert_eq!(s.lr_at(0, 100), 0.1);
        assert_eq!(s.lr_at(49, 100), 0.1);
        assert!((s.lr_at(50, 100) - 0.01).abs() < 1e-9);
        assert!((s.lr_at(75, 100) - 0.001).abs() < 1e-9);
    }

    #[test]
    fn both_compare_arms_resolve_the_same_sparse_schedule() {
        // GraNet's t_f and ΔT come from the whole run E, with or without Sup-tickets (t_f came
        // from the normal phase P before, so the arms pruned on different schedules).
        let base = TrainConfig {
            epochs: 250,
            method: MethodKind::Granet,
            sparsity: Some(0.9),
            ..TrainConfig::default()
        };
        let sup = TrainConfig {
            suptickets: true,
            cycle_epochs: 8,
            cycle_fraction: 0.1,
            ..base.clone()
        };
        let (b, s) = (
            base.sparse_config(391).unwrap(),
            sup.sparse_config(391).unwrap(),
        );
        assert_eq!(b.prune_end_epoch, 110.0);
        assert_eq!(s.prune_end_epoch, 110.0);
        assert_eq!(
            b.update_interval, 1000,
            "reference ΔT on a 250-epoch CIFAR run"
        );
        assert_eq!(s.update_interval, 1000);
        // A short run where 0.44·E would fall after the normal phase: capped at P.
        let short = TrainConfig {
            epochs: 5,
            cycle_epochs: 1,
            cycle_fraction: 0.8,
            ..sup.clone()
        };
        assert_eq!(short.sparse_config(100).unwrap().prune_end_epoch, 1.0);
    }

    #[test]
    fn granet_default_initial_density_follows_the_sparsity() {
        // d_i = max(0.5, 1 − s): --sparsity 0.3 used to fail validation with d_i = 0.5.
        let c = TrainConfig {
            method: MethodKind::Granet,
            sparsity: Some(0.3),
            ..TrainConfig::default()
        };
        let s = c.sparse_config(100).unwrap();
        assert!((s.initial_density - 0.7).abs() < 1e-12);
        let c = TrainConfig {
            sparsity: Some(0.9),
            ..c
        };
        assert_eq!(c.sparse_config(100).unwrap().initial_density, 0.5);
    }
}

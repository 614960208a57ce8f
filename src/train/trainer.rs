//! The entry points of training and evaluation ([`train`], [`resume`], [`eval_checkpoint`]) and
//! what they share: the run directory's file names, the datasets and loaders of a
//! configuration, evaluation. The run itself is [`super::run`].

use std::path::{Path, PathBuf};

use super::checkpoint::Checkpoint;
use super::config::TrainConfig;
use super::metrics::{Metrics, MetricsAccumulator};
use super::report::Report;
use crate::data::{self, folder, DatasetKind, Loader, LoaderConfig, Source, Split};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::ModelConfig;
use crate::nn::Network;
use crate::suptickets::SupSchedule;
use crate::tensor::Tensor;

/// File name of the checkpoint inside a run directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// File name of the last trained weights of a Sup-tickets run (the checkpoint holds the
/// ultimate ticket).
pub const LAST_FILE: &str = "last.safetensors";
/// File name of the per-epoch log inside a run directory.
pub const LOG_FILE: &str = "log.jsonl";

/// The folder of a Sup-tickets run's tickets: `W_<k>.safetensors`, each a checkpoint of the
/// weights captured at the end of cycle k (k = 0: the end of the normal phase), with the same
/// tensor names as `checkpoint.safetensors` (so `eval` evaluates any of them).
pub const TICKETS_DIR: &str = "tickets";

/// The file of ticket W_k in run directory `out`.
pub fn ticket_path(out: &Path, k: usize) -> PathBuf {
    out.join(TICKETS_DIR).join(format!("W_{k}.safetensors"))
}

/// The checkpoint file of `path`: `path` itself if it is a file, else `path/checkpoint.safetensors`.
pub fn checkpoint_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(CHECKPOINT_FILE)
    } else {
        path.to_path_buf()
    }
}

/// The training and evaluation sets of `cfg` (the evaluation set is the validation split
/// when `valid_split > 0`, the test split otherwise), and the evaluation split's name.
pub fn datasets(
    cfg: &TrainConfig,
    need_train: bool,
) -> Result<(Option<Source>, Source, &'static str)> {
    let kind = DatasetKind::parse(&cfg.dataset)?;
    let dir = cfg.data_dir.as_deref();
    // The directory actually read (the flag's, the environment's or the default), so that an
    // unreadable one is reported with its OS error rather than as missing files.
    check_readable_dir(&data::resolve_dir(kind, dir).0)?;
    if kind == DatasetKind::ImageFolder {
        let (root, _) = data::resolve_dir(kind, dir);
        let opts = cfg.folder_options();
        let (train, eval, split) =
            folder::open_splits(&root, &opts, need_train, cfg.valid_split, cfg.seed)?;
        return Ok((train.map(Source::from), eval.into(), split));
    }
    if cfg.valid_split > 0.0 {
        let full = data::load(kind, dir, Split::Train)?;
        let (train, valid) = data::split_validation(&full, cfg.valid_split, cfg.seed)?;
        Ok((need_train.then(|| train.into()), valid.into(), "validation"))
    } else {
        let train = if need_train {
            Some(data::load(kind, dir, Split::Train)?.into())
        } else {
            None
        };
        Ok((train, data::load(kind, dir, Split::Test)?.into(), "test"))
    }
}

/// Reports the OS error of a data directory that exists but cannot be read (permission
/// denied, a file where a folder should be), which the dataset readers would otherwise report
/// as missing files. A missing directory is left to them (their message says how to install).
fn check_readable_dir(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let p = entry.path();
        if let Err(e) = std::fs::metadata(&p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(Error::io(p, e));
            }
        }
    }
    Ok(())
}

/// The evaluation loader of `cfg` over `set`.
pub fn eval_loader(cfg: &TrainConfig, set: impl Into<Source>) -> Result<Loader> {
    let mut lc = LoaderConfig::eval(cfg.eval_batch_size);
    lc.limit = cfg.limit_test;
    Loader::new(set, lc)
}

/// Evaluates `net` (eval mode: running statistics) on every batch of `loader`.
pub fn evaluate(net: &mut Network, loader: &Loader) -> Result<Metrics> {
    let device = net.device();
    let [c, h, w] = net.input_shape;
    let k = net.num_classes;
    let mut acc = MetricsAccumulator::new();
    for b in loader.epoch(0) {
        let b = b?;
        let x = Tensor::from_slice(&b.x, &[b.n, c, h, w], &device)?;
        let lp = net.logprobs(&x)?.to_vec()?;
        acc.add(&lp, k, &b.y)?;
    }
    Ok(acc.finish())
}

/// The model configuration `cfg` asks for on its dataset (32×32 images, S×S for an image
/// folder, whose classes are counted from its `train/` folder).
pub fn model_config(cfg: &TrainConfig) -> Result<ModelConfig> {
    let kind = DatasetKind::parse(&cfg.dataset)?;
    let (num_classes, size) = match kind.num_classes() {
        Some(k) => (k, 32),
        None => {
            let (root, _) = data::resolve_dir(kind, cfg.data_dir.as_deref());
            let classes = folder::class_names(&root)?.len();
            (classes, cfg.folder_options().image_size)
        }
    };
    Ok(ModelConfig {
        name: cfg.model.clone(),
        num_classes,
        in_channels: kind.channels(),
        image_size: Some(size),
        width: cfg.width,
        seed: cfg.seed,
    })
}

pub use super::progress::fmt_secs;
pub use super::run::{train_from, train_from_with};

/// Trains from scratch as `cfg` says; see [`train_from`].
pub fn train(cfg: &TrainConfig) -> Result<Report> {
    train_from(cfg, None)
}

/// Continues the run whose checkpoint is `from` (a run directory or a checkpoint file), writing
/// into `cfg.out`. The model must be the checkpoint's.
pub fn resume(cfg: &TrainConfig, from: &Path) -> Result<Report> {
    let ck = Checkpoint::read(&checkpoint_path(from))?;
    train_from(cfg, Some((ck, from.to_path_buf())))
}

/// The run name and output directory (`runs/<name or timestamp>` when `out` is unset).
pub fn output_dir(cfg: &TrainConfig) -> PathBuf {
    if let Some(o) = &cfg.out {
        return o.clone();
    }
    let name = cfg.name.clone().unwrap_or_else(timestamp);
    PathBuf::from("runs").join(name)
}

/// UTC `YYYYmmdd-HHMMSS` of now.
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86400, secs % 86400);
    // civil date from days since 1970-01-01 (Howard Hinnant's algorithm)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// The learning rate of iteration `it` (0-based): the triangle rate of Eq. 3 inside a
/// Sup-tickets cycle, the base schedule (over the normal phase) otherwise.
pub fn iteration_lr(
    schedule: &super::schedule::LrSchedule,
    sup: Option<&SupSchedule>,
    it: usize,
    ipe: usize,
) -> f32 {
    sup.and_then(|ss| ss.cyclic_lr(it))
        .unwrap_or_else(|| schedule.lr_at(it, ipe))
}

/// What `suptickets eval` prints.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EvalResult {
    /// The checkpoint evaluated.
    pub checkpoint: String,
    /// Model name.
    pub model: String,
    /// Dataset name.
    pub dataset: String,
    /// `test` or `validation`.
    pub eval_split: String,
    /// Examples evaluated.
    pub test_examples: usize,
    /// Top-1 accuracy.
    pub test_accuracy: f64,
    /// Mean NLL.
    pub test_nll: f64,
    /// ECE (15 bins).
    pub test_ece: f64,
    /// Epochs the checkpoint was trained for.
    pub epoch: usize,
    /// Device used.
    pub device: String,
}

/// Evaluates a checkpoint on the split its run evaluated on (same dataset, limit and validation
/// split), optionally with another data directory or device; reproduces `report.json`'s
/// `test_*` numbers.
pub fn eval_checkpoint(
    path: &Path,
    data_dir: Option<&Path>,
    device: Option<&str>,
) -> Result<EvalResult> {
    let file = checkpoint_path(path);
    let ck = Checkpoint::read(&file)?;
    let mut cfg = ck.meta.train_config.clone().ok_or_else(|| {
        Error::data(
            &file,
            "the checkpoint has no training configuration (dataset unknown)",
        )
    })?;
    if let Some(d) = data_dir {
        cfg.data_dir = Some(d.to_path_buf());
    }
    if let Some(d) = device {
        cfg.device = d.to_string();
    }
    if ck.meta.sup_tickets.is_some() && ck.meta.epoch >= cfg.epochs {
        return Err(Error::data(
            &file,
            "this Sup-tickets run was trained to its last epoch but its finalisation (superposing \
             the tickets into the ultimate ticket) did not complete; finish it with \
             `suptickets train --resume <run directory>`",
        ));
    }
    let device = Device::parse(&cfg.device)?;
    let (_, set, split) = datasets(&cfg, false)?;
    let loader = eval_loader(&cfg, set)?;
    let mut net = ck.build_network()?;
    net.to_device(&device)?;
    let m = evaluate(&mut net, &loader)?;
    Ok(EvalResult {
        checkpoint: file.display().to_string(),
        model: ck.meta.model.name.clone(),
        dataset: cfg.dataset.clone(),
        eval_split: split.into(),
        test_examples: m.n,
        test_accuracy: m.accuracy,
        test_nll: m.nll,
        test_ece: m.ece,
        epoch: ck.meta.epoch,
        device: device.name(),
    })
}

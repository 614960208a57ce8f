//! What a run writes: one [`EpochLog`] line per epoch in `log.jsonl`, and at the end
//! `report.json` ([`Report`]), `report.md`, `lr.svg` and `curves.svg`.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::checkpoint::{write_atomic, ModelSpec};
use super::config::TrainConfig;
use super::flops::LayerFlops;
use super::plot::{render, Panel, Series};
use super::schedule::LrSchedule;
use crate::error::{Error, Result};

/// One line of `log.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// Epoch number, 1-based (epochs completed).
    pub epoch: usize,
    /// Optimizer steps completed.
    pub step: u64,
    /// Learning rate of the epoch's last step.
    pub lr: f32,
    /// Mean training loss over the epoch's examples.
    pub train_loss: f64,
    /// Training accuracy over the epoch (augmented data, model in training mode).
    pub train_acc: f64,
    /// Accuracy on the evaluation split (None when this epoch was not evaluated).
    pub test_acc: Option<f64>,
    /// NLL on the evaluation split.
    pub test_nll: Option<f64>,
    /// ECE on the evaluation split.
    pub test_ece: Option<f64>,
    /// Training throughput (training steps only).
    pub images_per_sec: f64,
    /// Wall-clock seconds of the epoch, evaluation included.
    pub seconds: f64,
    /// Global density of the conv and linear weights at the end of the epoch (None: dense).
    #[serde(default)]
    pub density: Option<f64>,
}

/// Reads `log.jsonl` (missing file = empty log).
pub fn read_log(path: &Path) -> Result<Vec<EpochLog>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::data(path, format!("line {}: {e}", i + 1)))
        })
        .collect()
}

/// Rewrites `log.jsonl` with `entries`.
pub fn write_log(path: &Path, entries: &[EpochLog]) -> Result<()> {
    let mut s = String::new();
    for e in entries {
        s += &serde_json::to_string(e).expect("log entry serialises");
        s.push('\n');
    }
    write_atomic(path, s.as_bytes())
}

/// Appends one line to `log.jsonl` (rank 0 only, in data-parallel training).
pub fn append_log(path: &Path, entry: &EpochLog) -> Result<()> {
    if !crate::dist::is_writer() {
        return Ok(());
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let line = serde_json::to_string(entry).expect("log entry serialises");
    writeln!(f, "{line}").map_err(|e| Error::io(path, e))?;
    f.flush().map_err(|e| Error::io(path, e))?;
    super::checkpoint::write_done(path);
    Ok(())
}

/// The final report of a run (`report.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Crate version.
    pub version: String,
    /// Run name.
    pub name: String,
    /// The model that was trained.
    pub model: ModelSpec,
    /// The run's configuration.
    pub config: TrainConfig,
    /// Device name (`cpu`, `cuda:0`).
    pub device: String,
    /// Dataset name.
    pub dataset: String,
    /// `test` or `validation`: the split behind the `test_*` metrics.
    pub eval_split: String,
    /// Examples the `test_*` metrics were computed on.
    pub test_examples: usize,
    /// Top-1 accuracy on the evaluation split.
    pub test_accuracy: f64,
    /// Mean NLL on the evaluation split.
    pub test_nll: f64,
    /// ECE (15 bins) on the evaluation split.
    pub test_ece: f64,
    /// Mean training loss of the last epoch.
    pub train_loss: f64,
    /// Training accuracy of the last epoch.
    pub train_accuracy: f64,
    /// Epochs completed.
    pub epochs_completed: usize,
    /// Optimizer steps completed.
    pub steps: u64,
    /// True when all configured epochs are done.
    pub finished: bool,
    /// Trainable parameters (batch norm and biases included).
    pub params: usize,
    /// Parameters that are not masked out (all of them for dense training).
    pub params_nonzero: usize,
    /// Parameters of the maskable tensors (conv and linear weights).
    pub maskable_params: usize,
    /// 1 − nonzero/total over the maskable tensors.
    pub sparsity: f64,
    /// The training method (`dense`, `static`, `snip`, `set`, `rigl`, `granet`).
    pub method: String,
    /// ΔT of the mask updates (None for methods without updates).
    #[serde(default)]
    pub update_interval: Option<usize>,
    /// Which rule gave ΔT: the `--update-interval` flag, the reference 1000 (long runs) or a
    /// quarter epoch (short runs).
    #[serde(default)]
    pub update_interval_rule: Option<String>,
    /// The step before which exploration updates run (SET, RigL, GraNet).
    #[serde(default)]
    pub exploration_horizon: Option<u64>,
    /// GraNet's gradual-pruning window (i0, i_f) in units of ΔT.
    #[serde(default)]
    pub prune_window: Option<(u64, u64)>,
    /// Exploration (prune-and-grow) updates performed.
    #[serde(default)]
    pub mask_updates: u64,
    /// GraNet gradual-pruning steps performed.
    #[serde(default)]
    pub prune_steps: u64,
    /// Dense forward FLOPs of one example, f_D.
    pub flops_dense: u64,
    /// Sparse forward FLOPs of one example, f_S.
    pub flops_sparse: f64,
    /// Training FLOPs as a multiple of dense training: Σ over the run's steps of each step's
    /// per-example training FLOPs (docs/computation.md, FLOPs; with the masks of that step) / (steps · 3f_D).
    pub train_flops_multiple: f64,
    /// Inference FLOPs as a multiple of dense inference, f_S/f_D.
    pub test_flops_multiple: f64,
    /// Training wall-clock seconds (summed over resumed runs; evaluation included).
    pub wall_seconds: f64,
    /// Mean training throughput over the logged epochs.
    pub images_per_sec: f64,
    /// `imagefolder` with `--skip-bad-images`: unreadable image files skipped (training and
    /// evaluation splits, at the scan and at decoding); absent for other datasets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_images: Option<usize>,
    /// Per-layer table (params, nonzeros, FLOPs, final density and sparsity).
    pub layers: Vec<LayerFlops>,
    /// Sup-tickets: each ticket W_k (0..=K) evaluated at its capture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tickets: Option<Vec<TicketMetrics>>,
    /// Sup-tickets: the ultimate (superposed) ticket; the top-level `test_*` metrics are its.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ultimate: Option<UltimateMetrics>,
    /// Sup-tickets with `--ensemble`: the averaged softmax of the K+1 tickets (appendix E).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<EnsembleMetrics>,
    /// Data-parallel runs: processes, transport and the gradient bytes all-reduced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_parallel: Option<crate::dist::DataParallelReport>,
}

/// One Sup-tickets ticket, evaluated at its capture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketMetrics {
    /// k (0 = the end of the normal phase).
    pub ticket: usize,
    /// The epoch it was captured at.
    pub epoch: usize,
    /// Top-1 accuracy.
    pub accuracy: f64,
    /// Mean NLL.
    pub nll: f64,
    /// ECE (15 bins).
    pub ece: f64,
}

/// The ultimate ticket S_K.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UltimateMetrics {
    /// Top-1 accuracy.
    pub accuracy: f64,
    /// Mean NLL.
    pub nll: f64,
    /// ECE (15 bins).
    pub ece: f64,
    /// Exact density of its maskable tensors (nonzero mask entries / maskable parameters).
    pub density: f64,
    /// Active (mask) entries of its maskable tensors.
    pub nonzero: usize,
    /// Tickets superposed (K + 1).
    pub tickets: usize,
    /// `cia`, `caa` or `cima`.
    pub averaging: String,
    /// `global` or `layerwise`.
    pub reprune: String,
    /// `av` or `bu`.
    pub bn: String,
}

/// The deep ensemble of the tickets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnsembleMetrics {
    /// Members (K + 1).
    pub members: usize,
    /// Top-1 accuracy of the averaged softmax.
    pub accuracy: f64,
    /// Mean NLL.
    pub nll: f64,
    /// ECE (15 bins).
    pub ece: f64,
}

impl Report {
    /// The report as Markdown.
    pub fn to_markdown(&self, log: &[EpochLog]) -> String {
        let mut s = format!("# suptickets run `{}`\n\n", self.name);
        s += &format!(
            "- model: `{}` (width {}), {} classes, {} input channel(s)\n",
            self.model.name, self.model.width, self.model.num_classes, self.model.in_channels
        );
        s += &format!(
            "- data: `{}`; metrics on the {} split ({} examples)\n",
            self.dataset, self.eval_split, self.test_examples
        );
        s += &format!(
            "- device: `{}`; epochs {}/{} ({} steps){}\n",
            self.device,
            self.epochs_completed,
            self.config.epochs,
            self.steps,
            if self.finished {
                ""
            } else {
                ", **not finished**"
            }
        );
        s +=
            &format!(
            "- optimiser: SGD lr {} ({} schedule{}), momentum {}, weight decay {}, batch {}{}\n",
            self.config.lr,
            self.config.schedule,
            if self.config.warmup > 0.0 {
                format!(", {} warm-up epochs", self.config.warmup)
            } else {
                String::new()
            },
            self.config.momentum,
            self.config.weight_decay,
            self.config.batch_size,
            if self.config.nesterov { ", Nesterov" } else { "" }
        );
        s += &format!(
            "- wall time: {:.1} s, {:.0} images/s\n\n",
            self.wall_seconds, self.images_per_sec
        );
        s += "## Result\n\n| metric | value |\n|---|---:|\n";
        s += &format!(
            "| {} accuracy | {:.2}% |\n",
            self.eval_split,
            100.0 * self.test_accuracy
        );
        s += &format!("| {} NLL | {:.4} |\n", self.eval_split, self.test_nll);
        s += &format!(
            "| {} ECE (15 bins) | {:.4} |\n",
            self.eval_split, self.test_ece
        );
        s += &format!("| parameters | {} |\n", self.params);
        s += &format!("| nonzero parameters | {} |\n", self.params_nonzero);
        s += &format!("| method | {} |\n", self.method);
        if let Some(dt) = self.update_interval {
            s += &format!(
                "| mask updates (ΔT = {dt}) | {} exploration, {} pruning |\n",
                self.mask_updates, self.prune_steps
            );
        }
        if let Some(rule) = &self.update_interval_rule {
            s += &format!("| ΔT rule | {rule} |\n");
        }
        s += &format!("| sparsity (maskable) | {:.4} |\n", self.sparsity);
        s += &format!("| forward FLOPs/example (dense) | {} |\n", self.flops_dense);
        s += &format!(
            "| train FLOPs (× dense) | {:.4} |\n",
            self.train_flops_multiple
        );
        s += &format!(
            "| test FLOPs (× dense) | {:.4} |\n\n",
            self.test_flops_multiple
        );
        if !log.is_empty() {
            let sparse = log.iter().any(|e| e.density.is_some());
            s += "## Epochs\n\n| epoch | lr | train loss | train acc | test acc | test NLL | test ECE | img/s | s |";
            s += if sparse { " density |\n" } else { "\n" };
            s += "|---:|---:|---:|---:|---:|---:|---:|---:|---:|";
            s += if sparse { "---:|\n" } else { "\n" };
            let opt = |v: Option<f64>, pct: bool| match v {
                Some(v) if pct => format!("{:.2}%", 100.0 * v),
                Some(v) => format!("{v:.4}"),
                None => "".into(),
            };
            for e in log {
                s += &format!(
                    "| {} | {:.4} | {:.4} | {:.2}% | {} | {} | {} | {:.0} | {:.1} |",
                    e.epoch,
                    e.lr,
                    e.train_loss,
                    100.0 * e.train_acc,
                    opt(e.test_acc, true),
                    opt(e.test_nll, false),
                    opt(e.test_ece, false),
                    e.images_per_sec,
                    e.seconds
                );
                if sparse {
                    s += &format!(" {} |", opt(e.density, false));
                }
                s.push('\n');
            }
            s.push('\n');
        }
        if let (Some(t), Some(u)) = (&self.tickets, &self.ultimate) {
            s += &format!(
                "## Tickets vs ultimate\n\n{} averaging, {} re-pruning, BN {}.\n\n| ticket | epoch | accuracy | NLL | ECE |\n|---|---:|---:|---:|---:|\n",
                u.averaging, u.reprune, u.bn
            );
            for k in t {
                s += &format!(
                    "| W_{} | {} | {:.2}% | {:.4} | {:.4} |\n",
                    k.ticket,
                    k.epoch,
                    100.0 * k.accuracy,
                    k.nll,
                    k.ece
                );
            }
            s += &format!(
                "| **ultimate S_{}** (density {:.4}) | {} | {:.2}% | {:.4} | {:.4} |\n",
                u.tickets.saturating_sub(1),
                u.density,
                self.epochs_completed,
                100.0 * u.accuracy,
                u.nll,
                u.ece
            );
            if let Some(e) = &self.ensemble {
                s += &format!(
                    "| ensemble of {} | {} | {:.2}% | {:.4} | {:.4} |\n",
                    e.members,
                    self.epochs_completed,
                    100.0 * e.accuracy,
                    e.nll,
                    e.ece
                );
            }
            s += "\nPlot: [tickets.svg](tickets.svg).\n\n";
        }
        if let Some(d) = &self.data_parallel {
            s += &d.to_markdown();
        }
        s += "## Layers\n\n";
        s += &super::flops::layers_markdown(&self.layers);
        s += "\nPlots: [lr.svg](lr.svg), [curves.svg](curves.svg).\n";
        s
    }

    /// Writes `report.json` and `report.md` into `dir`.
    pub fn write(&self, dir: &Path, log: &[EpochLog]) -> Result<()> {
        let json = serde_json::to_string_pretty(self).expect("report serialises");
        write_atomic(&dir.join("report.json"), (json + "\n").as_bytes())?;
        write_atomic(&dir.join("report.md"), self.to_markdown(log).as_bytes())
    }
}

/// `lr.svg`: the learning rate of every iteration (at most ~4000 points drawn).
pub fn lr_svg(schedule: &LrSchedule, iters_per_epoch: usize) -> String {
    let total = schedule.epochs * iters_per_epoch.max(1);
    let stride = (total / 4000).max(1);
    let mut pts: Vec<(f64, f64)> = (0..total)
        .step_by(stride)
        .map(|i| (i as f64, schedule.lr_at(i, iters_per_epoch) as f64))
        .collect();
    if total > 0 && !(total - 1).is_multiple_of(stride) {
        let i = total - 1;
        pts.push((i as f64, schedule.lr_at(i, iters_per_epoch) as f64));
    }
    render(&[Panel {
        title: format!(
            "learning rate ({} schedule, {} iterations/epoch)",
            schedule.kind, iters_per_epoch
        ),
        x_label: "iteration".into(),
        y_label: "learning rate".into(),
        series: vec![Series::new("lr", "#1f77b4", pts)],
    }])
}

/// `lr.svg` of a Sup-tickets run: the base schedule over the normal phase, then the triangle
/// rate of each cycle, with a marker at every ticket capture.
pub fn sup_lr_svg(
    schedule: &LrSchedule,
    sup: &crate::suptickets::SupSchedule,
    iters_per_epoch: usize,
) -> String {
    let total = sup.total_iters();
    let lr =
        |i: usize| super::trainer::iteration_lr(schedule, Some(sup), i, iters_per_epoch) as f64;
    let stride = (total / 4000).max(1);
    let mut pts: Vec<(f64, f64)> = (0..total)
        .step_by(stride)
        .map(|i| (i as f64, lr(i)))
        .collect();
    if total > 0 && !(total - 1).is_multiple_of(stride) {
        pts.push(((total - 1) as f64, lr(total - 1)));
    }
    let captures: Vec<(f64, f64)> = (0..=sup.budget.tickets)
        .filter_map(|k| sup.capture_iter(k))
        .map(|i| (i as f64, lr(i)))
        .collect();
    let mut markers = Series::new("ticket captures", "#d62728", captures);
    markers.markers_only = true;
    render(&[Panel {
        title: format!(
            "learning rate ({} schedule over {} normal epochs, then {} cycle(s) of {} epoch(s))",
            schedule.kind, sup.budget.normal_epochs, sup.budget.tickets, sup.budget.cycle
        ),
        x_label: "iteration".into(),
        y_label: "learning rate".into(),
        series: vec![Series::new("lr", "#1f77b4", pts), markers],
    }])
}

/// `tickets.svg`: each ticket's accuracy against the ultimate ticket's.
pub fn tickets_svg(tickets: &[TicketMetrics], ultimate: &UltimateMetrics) -> String {
    let pts: Vec<(f64, f64)> = tickets
        .iter()
        .map(|t| (t.ticket as f64, 100.0 * t.accuracy))
        .collect();
    let last = tickets.len().saturating_sub(1) as f64;
    let ult = vec![
        (0.0, 100.0 * ultimate.accuracy),
        (last, 100.0 * ultimate.accuracy),
    ];
    render(&[Panel {
        title: "tickets vs the ultimate ticket".into(),
        x_label: "ticket k".into(),
        y_label: "test accuracy (%)".into(),
        series: vec![
            Series::new("ticket W_k", "#1f77b4", pts),
            Series::new("ultimate S_K", "#d62728", ult),
        ],
    }])
}

/// `curves.svg`: loss and accuracy per epoch.
pub fn curves_svg(log: &[EpochLog], eval_split: &str) -> String {
    let pts = |f: &dyn Fn(&EpochLog) -> Option<f64>| -> Vec<(f64, f64)> {
        log.iter()
            .filter_map(|e| f(e).map(|v| (e.epoch as f64, v)))
            .collect()
    };
    render(&[
        Panel {
            title: "loss".into(),
            x_label: "epoch".into(),
            y_label: "cross-entropy".into(),
            series: vec![
                Series::new("train loss", "#1f77b4", pts(&|e| Some(e.train_loss))),
                Series::new(
                    &format!("{eval_split} NLL"),
                    "#d62728",
                    pts(&|e| e.test_nll),
                ),
            ],
        },
        Panel {
            title: "accuracy".into(),
            x_label: "epoch".into(),
            y_label: "top-1 accuracy (%)".into(),
            series: vec![
                Series::new("train", "#1f77b4", pts(&|e| Some(100.0 * e.train_acc))),
                Series::new(
                    eval_split,
                    "#d62728",
                    pts(&|e| e.test_acc.map(|a| 100.0 * a)),
                ),
            ],
        },
    ])
}

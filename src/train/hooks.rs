//! The hooks the training loop ([`super::run`]) calls: what a training method adds to plain
//! SGD. The loop itself knows no method; [`crate::sparse::methods::SparseMethod`] (dense and
//! every sparse method) and the Sup-tickets driver ([`crate::suptickets::driver::SupTickets`])
//! implement [`RunHooks`].

use std::path::Path;

use super::checkpoint::{Checkpoint, CheckpointMeta};
use super::config::TrainConfig;
use super::flops::FlopsTable;
use super::metrics::Metrics;
use super::report::{EnsembleMetrics, EpochLog, TicketMetrics, UltimateMetrics};
use super::schedule::LrSchedule;
use crate::data::Loader;
use crate::device::Device;
use crate::error::Result;
use crate::nn::Network;
use crate::tensor::Tensor;

/// What the loop needs to know before a step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepPlan {
    /// The learning rate of the step.
    pub lr: f32,
    /// Whether the backward pass must produce the dense weight gradient of masked layers.
    pub dense_grad: bool,
}

/// The run as the hooks see it: where it writes, what it evaluates on, its schedule.
pub struct RunContext<'a> {
    /// The run's configuration.
    pub cfg: &'a TrainConfig,
    /// The run directory.
    pub out: &'a Path,
    /// The device the network lives on.
    pub device: &'a Device,
    /// The base learning-rate schedule.
    pub schedule: &'a LrSchedule,
    /// Iterations per epoch.
    pub iterations_per_epoch: usize,
    /// The training loader (batch-norm recomputation reads it).
    pub train_loader: &'a Loader,
    /// The evaluation loader.
    pub eval_loader: &'a Loader,
    /// Training examples per epoch.
    pub train_examples: usize,
    /// `test` or `validation`.
    pub eval_split: &'a str,
    /// Print progress lines.
    pub progress: bool,
}

/// The first training batch of the run (images, labels), built on demand (SNIP scores on it).
pub type FirstBatch<'a> = &'a dyn Fn() -> Result<(Tensor, Tensor)>;

/// A checkpoint to continue from, and the run's log up to it.
#[derive(Clone, Copy)]
pub struct Resume<'a> {
    /// The checkpoint.
    pub checkpoint: &'a Checkpoint,
    /// The per-epoch log up to the checkpoint's epoch.
    pub log: &'a [EpochLog],
}

/// What a method contributes to the report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportPart {
    /// The method's name.
    pub method: String,
    /// ΔT of an exploring method.
    pub update_interval: Option<usize>,
    /// How ΔT was chosen.
    pub update_interval_rule: Option<String>,
    /// The exploration horizon H of an exploring method.
    pub exploration_horizon: Option<u64>,
    /// GraNet's pruning window.
    pub prune_window: Option<(u64, u64)>,
    /// Exploration updates done.
    pub mask_updates: u64,
    /// Gradual-pruning steps done.
    pub prune_steps: u64,
    /// Training FLOPs of the run as a multiple of dense training (docs/computation.md, FLOPs).
    pub train_flops_multiple: f64,
    /// Sup-tickets: every ticket's metrics.
    pub tickets: Option<Vec<TicketMetrics>>,
    /// Sup-tickets: the ultimate ticket.
    pub ultimate: Option<UltimateMetrics>,
    /// Sup-tickets: the deep ensemble of the tickets.
    pub ensemble: Option<EnsembleMetrics>,
}

/// A training method as the loop sees it. Steps are 1-based (step s makes the optimiser's
/// counter s); iteration `it` = s − 1 indexes the learning-rate schedules.
pub trait RunHooks {
    /// Before the first step of this invocation: draw the initial masks of a fresh run
    /// (`resume` None; `first_batch` gives the run's first training batch), or adopt the state
    /// saved in the checkpoint `resume`. `meta` is the run's metadata (the checkpoint's when
    /// resuming); the hook records its state there.
    fn start(
        &mut self,
        ctx: &RunContext,
        net: &mut Network,
        meta: &mut CheckpointMeta,
        resume: Option<Resume>,
        first_batch: FirstBatch,
    ) -> Result<()>;

    /// The learning rate of iteration `it` and whether its step needs the dense gradient.
    fn plan_step(&self, ctx: &RunContext, it: usize) -> StepPlan;

    /// After the SGD step of iteration `it` (`grads` are its gradients): mask updates.
    fn step_done(&mut self, it: usize, net: &mut Network, grads: &[Option<Tensor>]) -> Result<()>;

    /// Whether the network must be evaluated after iteration `last_it`, the epoch's last (on top
    /// of the `--eval-every` epochs): Sup-tickets evaluates every ticket.
    fn must_evaluate(&self, last_it: usize) -> bool;

    /// After an epoch (`meta.epoch` is still the previous one; `done` is the epoch just
    /// finished, `metrics` its evaluation if any): Sup-tickets writes a captured ticket.
    fn epoch_done(
        &mut self,
        ctx: &RunContext,
        net: &Network,
        meta: &CheckpointMeta,
        done: usize,
        metrics: Option<Metrics>,
    ) -> Result<()>;

    /// The global density of the maskable weights, for a sparse method.
    fn log_density(&self) -> Option<f64>;

    /// Mask changes so far, for the progress line.
    fn mask_changes(&self) -> u64;

    /// Before a checkpoint write: the state to store in `meta`, and extra tensors.
    fn save_state(&self, net: &Network, meta: &mut CheckpointMeta) -> Vec<(String, Tensor)>;

    /// After the last epoch of this invocation. Returns the metrics of the network it leaves
    /// (None: unchanged) and whether the run's last write is the final checkpoint (Sup-tickets:
    /// the ultimate ticket replaces the trained weights).
    fn finish(
        &mut self,
        ctx: &RunContext,
        net: &mut Network,
        meta: &mut CheckpointMeta,
        epochs: usize,
    ) -> Result<Finish>;

    /// The method's part of the report (`table`: the final network's FLOPs).
    fn report_part(&self, ctx: &RunContext, table: &FlopsTable) -> ReportPart;

    /// The learning-rate plot of the run.
    fn lr_svg(&self, ctx: &RunContext) -> String;
}

/// What [`RunHooks::finish`] did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Finish {
    /// Metrics of the network as it now is (None: evaluate it).
    pub metrics: Option<Metrics>,
    /// The network changed and its final checkpoint is the run's last write.
    pub finalised: bool,
}

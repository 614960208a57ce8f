//! The sparse-training methods of SPEC §4 (dense, static, SNIP, SET, RigL, GraNet) as one
//! scheduler object, [`SparseMethod`], with three hooks the training loop calls:
//!
//! 1. [`SparseMethod::init_masks`] before the first step (random ERK/ER/uniform masks, or SNIP's
//!    connection sensitivity on one training batch), or [`SparseMethod::resume`] when the masks
//!    came back from a checkpoint;
//! 2. [`SparseMethod::needs_dense_grad`] before step `s` (1-based: the step that makes the
//!    optimizer's step counter `s`): whether the backward pass must produce the dense weight
//!    gradient (RigL and GraNet exploration steps);
//! 3. [`SparseMethod::after_step`] after the SGD step `s`: counts the step's training FLOPs and
//!    performs the mask update when `s` is a multiple of ΔT.
//!
//! Update steps (ΔT = `update_interval`, p = drop fraction, H = exploration horizon =
//! ⌊explore_until · total steps⌋):
//! - **SET / RigL / GraNet exploration**, at every s with s % ΔT = 0 and s < H: per-layer
//!   magnitude prune of k_l = ⌈p(s)·active_l⌉ weights, then per-layer growth of exactly k_l
//!   inactive positions, at random (SET) or by |dense gradient of step s's mini-batch| (RigL,
//!   GraNet), among every position inactive after the prune ([`super::explore`], the one step
//!   the Sup-tickets cycles use too). Connections inactive before the step start at weight and
//!   momentum 0 (SPEC §3); one pruned and regrown in the same step keeps its values unless
//!   `--regrown zero`. Every layer keeps its count.
//!   The SGD step of s is taken first (with the dense gradient, which the fused masked SGD
//!   restricts to the old mask), then the mask changes: the PyTorch reference order.
//! - **GraNet gradual pruning**, at every s = i·ΔT with i0 ≤ i ≤ i_f (i0 = ⌊t0·I/ΔT⌋,
//!   i_f = ⌊t_f·I/ΔT⌋, I = iterations per epoch), before that step's exploration: global
//!   magnitude pruning to d(i) = d_f + (d_i − d_f)(1 − (i − i0)/(i_f − i0))³. The schedule
//!   includes i = i_f, so the final density d_f is reached exactly (the reference code stops at
//!   i_f − 1, a hair above d_f). Gradual pruning is not exploration: it runs to i_f even past H.
//!
//! Layers that are dense — the first conv under `--dense-first-layer`, and any layer with no
//! inactive position (e.g. an ERK-saturated layer) — are skipped by exploration: growth could
//! only re-activate what was just pruned, so the mask would not change, and skipping keeps their
//! weights under either `--regrown` setting. The `--dense-first-layer` layer also takes no part in SNIP's or GraNet's global
//! selections, and is counted as dense in their budget K = round(d · Σ_l N_l).
//!
//! Everything is a function of (configuration, seed, step): SET's random scores come from
//! (seed, step), GraNet's target density from the step, so the only state to checkpoint is
//! [`SparseState`] (counters and the running FLOPs sum), and a resumed run repeats an
//! uninterrupted one exactly on the CPU.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::density::{layer_counts, layer_densities, DensityInit};
use super::explore::{explore, Explored, GrowBy, Regrown};
use super::mask::{init_random_masks, MaskInit};
use super::topk::{active_counts, select_layers, Plan, Scores};
use crate::backend::SelectAction;
use crate::error::{Error, Result};
use crate::nn::{Network, ParamId, ParamRole, ParamStore};
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::train::flops;

/// The smallest drop fraction of the cosine schedule, p_min (RigL/GraNet reference: 0.005).
pub const DROP_FRACTION_MIN: f64 = 0.005;

/// GraNet's default end of gradual pruning as a fraction of training (CIFAR: 110 of 250 epochs).
pub const GRANET_PRUNE_END_FRACTION: f64 = 110.0 / 250.0;

/// Default drop fraction p0.
pub const DEFAULT_DROP_FRACTION: f64 = 0.5;

/// Default end of exploration as a fraction of training (RigL: 0.75).
pub const DEFAULT_EXPLORE_UNTIL: f64 = 0.75;

/// Default global sparsity of the sparse methods.
pub const DEFAULT_SPARSITY: f64 = 0.9;

/// GraNet's default initial density d_i.
pub const DEFAULT_INITIAL_DENSITY: f64 = 0.5;

/// A sparse-training method (SPEC §4), chosen by `--method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MethodKind {
    /// Plain dense SGD, no masks.
    #[default]
    Dense,
    /// A random ERK/ER/uniform mask that never changes.
    Static,
    /// SNIP: top-K of |g ⊙ w| on one training batch at initialisation, never changes.
    Snip,
    /// SET: every ΔT, per-layer magnitude prune and random regrowth.
    Set,
    /// RigL: every ΔT, per-layer magnitude prune and gradient regrowth.
    Rigl,
    /// GraNet: gradual global magnitude pruning from d_i to d_f, plus RigL's exploration.
    Granet,
}

impl MethodKind {
    /// Every method, in the order listed in messages.
    pub const ALL: [MethodKind; 6] = [
        MethodKind::Dense,
        MethodKind::Static,
        MethodKind::Snip,
        MethodKind::Set,
        MethodKind::Rigl,
        MethodKind::Granet,
    ];

    /// The name used by `--method`, configuration files and reports.
    pub fn name(self) -> &'static str {
        match self {
            MethodKind::Dense => "dense",
            MethodKind::Static => "static",
            MethodKind::Snip => "snip",
            MethodKind::Set => "set",
            MethodKind::Rigl => "rigl",
            MethodKind::Granet => "granet",
        }
    }

    /// Parses a method name (case-insensitive).
    pub fn parse(s: &str) -> Result<MethodKind> {
        let l = s.trim().to_ascii_lowercase();
        MethodKind::ALL
            .into_iter()
            .find(|m| m.name() == l)
            .ok_or_else(|| {
                Error::Config(format!(
                    "--method: unknown method {s:?}; expected one of: dense, static, snip, set, rigl, granet"
                ))
            })
    }

    /// True for every method with masks.
    pub fn is_sparse(self) -> bool {
        self != MethodKind::Dense
    }

    /// True for the methods that change the mask during training (SET, RigL, GraNet).
    pub fn explores(self) -> bool {
        matches!(
            self,
            MethodKind::Set | MethodKind::Rigl | MethodKind::Granet
        )
    }

    /// True for the methods that regrow by the dense gradient (RigL, GraNet).
    pub fn grows_by_gradient(self) -> bool {
        matches!(self, MethodKind::Rigl | MethodKind::Granet)
    }
}

impl std::fmt::Display for MethodKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for MethodKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<MethodKind> {
        MethodKind::parse(s)
    }
}

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

/// Which top-K SNIP takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SnipScope {
    /// One top-K over all maskable tensors together (the SNIP paper).
    #[default]
    Global,
    /// Per layer, with the counts of the `--init` density allocation.
    Layer,
}

impl SnipScope {
    /// `global` or `layer`.
    pub fn name(self) -> &'static str {
        match self {
            SnipScope::Global => "global",
            SnipScope::Layer => "layer",
        }
    }

    /// Parses `global` or `layer`.
    pub fn parse(s: &str) -> Result<SnipScope> {
        match s.trim().to_ascii_lowercase().as_str() {
            "global" => Ok(SnipScope::Global),
            "layer" | "layerwise" | "per-layer" => Ok(SnipScope::Layer),
            _ => Err(Error::Config(format!(
                "--snip-scope: unknown scope {s:?}; expected global or layer"
            ))),
        }
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

/// What a method must carry across a checkpoint (stored in its metadata as `sparse`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct SparseState {
    /// The method's name.
    pub method: String,
    /// Masks have been drawn (set once, before the first step).
    pub initialised: bool,
    /// Exploration (prune-and-grow) updates done.
    pub updates: u64,
    /// GraNet gradual-pruning steps done.
    pub prune_steps: u64,
    /// The step of the last mask change (0: none yet).
    pub last_update_step: u64,
    /// Σ over the steps so far of the per-example training FLOPs of each step (SPEC §8).
    pub flops_sum: f64,
    /// Steps counted in `flops_sum`.
    pub flops_steps: u64,
}

/// What one mask update did (returned by [`SparseMethod::after_step`]).
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateReport {
    /// The step after which the update ran.
    pub step: u64,
    /// GraNet: the global target density of this pruning step.
    pub target_density: Option<f64>,
    /// GraNet: weights removed per maskable layer by the global pruning.
    pub globally_pruned: Vec<usize>,
    /// The drop fraction of the exploration (None: no exploration at this step).
    pub drop_fraction: Option<f64>,
    /// Weights pruned per maskable layer by the exploration.
    pub pruned: Vec<usize>,
    /// Weights grown per maskable layer by the exploration.
    pub grown: Vec<usize>,
    /// Active weights per maskable layer afterwards.
    pub active: Vec<usize>,
}

/// A method's scheduler: initial masks, mask updates and FLOP accounting (see the module docs).
#[derive(Clone, Debug)]
pub struct SparseMethod {
    cfg: SparseConfig,
    iterations_per_epoch: usize,
    total_steps: u64,
    horizon: u64,
    prune_window: (u64, u64),
    numel: Vec<usize>,
    frozen: Vec<bool>,
    layer_flops: Vec<f64>,
    active: Vec<usize>,
    state: SparseState,
}

impl SparseMethod {
    /// The scheduler of `cfg` for `net`, trained for `total_steps` steps of
    /// `iterations_per_epoch` per epoch (the exploration horizon is `explore_until · total_steps`;
    /// a run that ends with Sup-tickets cycles caps it with [`SparseMethod::end_exploration_by`]).
    /// Traces `net` once for the per-layer FLOPs.
    pub fn new(
        cfg: SparseConfig,
        net: &mut Network,
        iterations_per_epoch: usize,
        total_steps: u64,
    ) -> Result<SparseMethod> {
        cfg.validate()?;
        let ids = net.store.maskable_ids();
        let numel: Vec<usize> = ids
            .iter()
            .map(|&id| net.store.param(id).value.numel())
            .collect();
        let mut frozen = vec![false; ids.len()];
        if cfg.dense_first_layer && !frozen.is_empty() {
            frozen[0] = true;
        }
        let mut layer_flops = vec![0.0; ids.len()];
        for t in net.trace()? {
            if let Some(l) = ids.iter().position(|&id| id == t.param) {
                layer_flops[l] += 2.0 * t.macs_per_example as f64;
            }
        }
        let horizon = (cfg.explore_until * total_steps as f64).floor() as u64;
        let dt = cfg.update_interval as f64;
        let ipe = iterations_per_epoch as f64;
        let prune_window = (
            (cfg.prune_start_epoch * ipe / dt).floor() as u64,
            (cfg.prune_end_epoch * ipe / dt).floor() as u64,
        );
        let active = numel.clone();
        Ok(SparseMethod {
            state: SparseState {
                method: cfg.method.name().into(),
                ..SparseState::default()
            },
            cfg,
            iterations_per_epoch,
            total_steps,
            horizon,
            prune_window,
            numel,
            frozen,
            layer_flops,
            active,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SparseConfig {
        &self.cfg
    }

    /// The method.
    pub fn kind(&self) -> MethodKind {
        self.cfg.method
    }

    /// The state to save in a checkpoint.
    pub fn state(&self) -> &SparseState {
        &self.state
    }

    /// Iterations per epoch the schedule was built for.
    pub fn iterations_per_epoch(&self) -> usize {
        self.iterations_per_epoch
    }

    /// Steps of the whole run.
    pub fn total_steps(&self) -> u64 {
        self.total_steps
    }

    /// The exploration horizon H: updates run at steps s < H.
    pub fn exploration_horizon(&self) -> u64 {
        self.horizon
    }

    /// GraNet's pruning steps (i0, i_f), in units of ΔT.
    pub fn prune_window(&self) -> (u64, u64) {
        self.prune_window
    }

    /// Active weights per maskable layer as the scheduler last saw them.
    pub fn active(&self) -> &[usize] {
        &self.active
    }

    /// Elements per maskable layer.
    pub fn numel(&self) -> &[usize] {
        &self.numel
    }

    /// Current global density of the maskable tensors.
    pub fn density(&self) -> f64 {
        let n: usize = self.numel.iter().sum();
        if n == 0 {
            1.0
        } else {
            self.active.iter().sum::<usize>() as f64 / n as f64
        }
    }

    /// The initial global density: d_i for GraNet, d_f for the other sparse methods, 1 for dense.
    pub fn initial_density(&self) -> f64 {
        match self.cfg.method {
            MethodKind::Dense => 1.0,
            MethodKind::Granet => self.cfg.initial_density,
            _ => self.cfg.density(),
        }
    }

    /// True when step `step` (1-based) runs an exploration update.
    pub fn is_exploration_step(&self, step: u64) -> bool {
        self.cfg.method.explores()
            && step > 0
            && step.is_multiple_of(self.cfg.update_interval as u64)
            && step < self.horizon
    }

    /// GraNet: the pruning step index i when step `step` runs a gradual-pruning step.
    pub fn pruning_index(&self, step: u64) -> Option<u64> {
        if self.cfg.method != MethodKind::Granet
            || step == 0
            || !step.is_multiple_of(self.cfg.update_interval as u64)
        {
            return None;
        }
        let i = step / self.cfg.update_interval as u64;
        let (i0, i_f) = self.prune_window;
        // A window that ends before the first update (t_f = 0, or below one ΔT) prunes straight
        // to the final density at the first update at or after i0.
        let last = i_f.max(i0.max(1));
        (i >= i0 && i <= last).then_some(i)
    }

    /// Ends exploration no later than step `step` (the start of the Sup-tickets cycles): the
    /// horizon becomes min(⌊explore_until · total steps⌋, `step`), so a run with and without
    /// Sup-tickets explores on the same schedule up to the cycles.
    pub fn end_exploration_by(&mut self, step: u64) {
        self.horizon = self.horizon.min(step);
    }

    /// GraNet's target density at pruning step `i`.
    pub fn target_density(&self, i: u64) -> f64 {
        let (i0, i_f) = self.prune_window;
        granet_density(self.cfg.initial_density, self.cfg.density(), i, i0, i_f)
    }

    /// The drop fraction at step `step`.
    pub fn drop_fraction(&self, step: u64) -> f64 {
        drop_fraction_at(
            self.cfg.drop_fraction,
            self.cfg.drop_schedule,
            step,
            self.horizon,
        )
    }

    /// Whether step `step` (1-based) needs the dense weight gradient
    /// ([`Network::forward_backward_with`]): RigL and GraNet exploration steps.
    pub fn needs_dense_grad(&self, step: u64) -> bool {
        self.cfg.method.grows_by_gradient() && self.is_exploration_step(step)
    }

    /// Draws the initial masks of a fresh network (before any step): nothing for dense; random
    /// masks with the `--init` allocation at the initial density for static, SET, RigL and
    /// GraNet; SNIP's top-K of |g ⊙ w| on `batch` (one training batch, required for SNIP: a
    /// training-mode forward and backward whose batch-norm statistics update is undone).
    pub fn init_masks(
        &mut self,
        net: &mut Network,
        batch: Option<(&Tensor, &Tensor)>,
    ) -> Result<()> {
        match self.cfg.method {
            MethodKind::Dense => {}
            MethodKind::Snip => {
                let (x, y) = batch.ok_or_else(|| {
                    Error::Config("snip: the initial mask needs one training batch".into())
                })?;
                self.init_snip(net, x, y)?;
            }
            _ => {
                init_random_masks(
                    &mut net.store,
                    &MaskInit {
                        sparsity: 1.0 - self.initial_density(),
                        init: self.cfg.init,
                        dense_first_layer: self.cfg.dense_first_layer,
                        seed: self.cfg.seed,
                    },
                )?;
            }
        }
        self.state.initialised = true;
        self.sync(&net.store)
    }

    /// [`SparseMethod::init_masks`] for a training run: SNIP asks `first_batch` for the run's
    /// first training batch (images, labels); the other methods draw without data.
    pub fn init_masks_from(
        &mut self,
        net: &mut Network,
        first_batch: &dyn Fn() -> Result<(Tensor, Tensor)>,
    ) -> Result<()> {
        if self.cfg.method == MethodKind::Snip {
            let (x, y) = first_batch()?;
            self.init_masks(net, Some((&x, &y)))
        } else {
            self.init_masks(net, None)
        }
    }

    /// SNIP: connection sensitivity |∂L/∂w ⊙ w| on one batch of the dense network.
    fn init_snip(&mut self, net: &mut Network, x: &Tensor, y: &Tensor) -> Result<()> {
        let buffers = net.store.buffers.clone();
        let out = net.forward_backward_with(x, y, true)?;
        net.store.buffers = buffers;
        let ids = net.store.maskable_ids();
        let mut scores: Vec<Option<Tensor>> = vec![None; net.store.params.len()];
        for (l, &id) in ids.iter().enumerate() {
            let p = &mut net.store.params[id.0];
            // Every maskable tensor gets a mask; the frozen ones stay all ones.
            p.mask = Some(Tensor::full(p.value.shape(), 1.0, &p.value.device())?);
            if self.frozen[l] {
                continue;
            }
            let g = out.grads[id.0]
                .as_ref()
                .ok_or_else(|| Error::Config(format!("snip: no gradient for {}", p.name)))?;
            scores[id.0] = Some(p.value.backend().mul(g, &p.value)?);
        }
        let shapes: Vec<Vec<usize>> = ids
            .iter()
            .map(|&id| net.store.param(id).value.shape().to_vec())
            .collect();
        let d = self.cfg.density();
        match self.cfg.snip_scope {
            SnipScope::Global => {
                let k = self.global_budget(d);
                let frozen = self.frozen_ids(&net.store);
                with_frozen(&mut net.store, &frozen, |s| {
                    select_layers(
                        s,
                        Scores::Tensors(&scores),
                        Plan::Global(k),
                        SelectAction::Keep,
                    )
                })?;
            }
            SnipScope::Layer => {
                let dens = layer_densities(&shapes, d, self.cfg.init, self.cfg.dense_first_layer)?;
                // The frozen layer keeps its all-ones mask: it takes no part in the selection.
                let counts: Vec<usize> = layer_counts(&shapes, &dens)
                    .into_iter()
                    .zip(&self.frozen)
                    .filter(|(_, &f)| !f)
                    .map(|(c, _)| c)
                    .collect();
                let frozen = self.frozen_ids(&net.store);
                with_frozen(&mut net.store, &frozen, |s| {
                    select_layers(
                        s,
                        Scores::Tensors(&scores),
                        Plan::PerLayer(&counts),
                        SelectAction::Keep,
                    )
                })?;
            }
        }
        Ok(())
    }

    /// K for a global selection at density `d`: round(d · Σ_l N_l) minus the frozen layers'
    /// weights (which stay dense and count against the budget).
    fn global_budget(&self, d: f64) -> usize {
        let total: usize = self.numel.iter().sum();
        let frozen: usize = self
            .numel
            .iter()
            .zip(&self.frozen)
            .filter(|(_, &f)| f)
            .map(|(n, _)| n)
            .sum();
        ((d * total as f64).round() as usize).saturating_sub(frozen)
    }

    fn frozen_ids(&self, store: &ParamStore) -> Vec<ParamId> {
        store
            .maskable_ids()
            .into_iter()
            .zip(&self.frozen)
            .filter(|(_, &f)| f)
            .map(|(id, _)| id)
            .collect()
    }

    /// Adopts masks restored from a checkpoint and the method state saved with them (None for a
    /// checkpoint written without one: a dense run, or masks as they are).
    pub fn resume(&mut self, store: &ParamStore, state: Option<SparseState>) -> Result<()> {
        if let Some(s) = state {
            if !s.method.is_empty() && s.method != self.cfg.method.name() {
                return Err(Error::Config(format!(
                    "--method {} does not match the checkpoint's method {}",
                    self.cfg.method.name(),
                    s.method
                )));
            }
            self.state = SparseState {
                method: self.cfg.method.name().into(),
                ..s
            };
        } else {
            self.state.initialised = true;
        }
        self.sync(store)
    }

    /// Re-reads the active counts from the masks.
    pub fn sync(&mut self, store: &ParamStore) -> Result<()> {
        self.active = active_counts(store)?;
        Ok(())
    }

    /// f_D: dense forward FLOPs of one example over the maskable layers.
    pub fn flops_dense(&self) -> f64 {
        self.layer_flops.iter().sum()
    }

    /// f_S = Σ_l d_l·FLOPs_l at the current masks.
    pub fn flops_sparse(&self) -> f64 {
        self.layer_flops
            .iter()
            .zip(self.active.iter().zip(&self.numel))
            .map(|(f, (&a, &n))| if n == 0 { *f } else { f * a as f64 / n as f64 })
            .sum()
    }

    /// Training FLOPs of one example at step `step` with the current masks (SPEC §8): dense
    /// 3f_D; static, SNIP, SET 3f_S; RigL and GraNet (3f_S·ΔT + 2f_S + f_D)/(ΔT + 1) while
    /// exploring (steps ≤ H), 3f_S after.
    pub fn step_flops(&self, step: u64) -> f64 {
        let exploring = (step <= self.horizon).then_some(self.cfg.update_interval);
        flops::step_flops(
            self.cfg.method,
            self.flops_sparse(),
            self.flops_dense(),
            exploring,
        )
    }

    /// Training FLOPs of the steps so far as a multiple of dense training:
    /// Σ_s FLOPs(s) / (steps · 3f_D) (1 before any step).
    pub fn train_flops_multiple(&self) -> f64 {
        let d = 3.0 * self.flops_dense() * self.state.flops_steps as f64;
        if d == 0.0 {
            1.0
        } else {
            self.state.flops_sum / d
        }
    }

    /// Whether the exploration at the start of a Sup-tickets cycle needs the dense gradient:
    /// it grows with the base method's criterion, by gradient for every method but SET.
    pub fn cycle_needs_dense_grad(&self) -> bool {
        self.cfg.method != MethodKind::Set
    }

    /// Training FLOPs of one example in a Sup-tickets cycle step (SPEC §8): 3f_S, except at a
    /// cycle start whose regrowth needs the dense gradient: 2f_S + f_D.
    pub fn cycle_step_flops(&self, cycle_start: bool) -> f64 {
        let (f_s, f_d) = (self.flops_sparse(), self.flops_dense());
        if cycle_start && self.cycle_needs_dense_grad() {
            flops::step_flops(MethodKind::Rigl, f_s, f_d, Some(0))
        } else {
            flops::step_flops(MethodKind::Static, f_s, f_d, None)
        }
    }

    /// The exploration at the start of Sup-tickets cycle `cycle` (1-based), after that step's SGD
    /// update: the same step as during training ([`explore`]) with drop fraction `q`, growing
    /// with the base method's criterion (random for SET, |dense gradient| otherwise; `grads`
    /// must then be dense), frozen and fully dense layers untouched.
    pub fn explore_cycle(
        &mut self,
        net: &mut Network,
        q: f64,
        cycle: usize,
        grads: &[Option<Tensor>],
    ) -> Result<Explored> {
        let grow = if self.cycle_needs_dense_grad() {
            GrowBy::Gradient(grads)
        } else {
            GrowBy::Random(Rng::derive(self.cfg.seed, 0xC7C1_E000_0000 ^ cycle as u64).next_u64())
        };
        let done = explore(&mut net.store, q, grow, &self.frozen, self.cfg.regrown)?;
        self.sync(&net.store)?;
        Ok(done)
    }

    /// After the SGD step that made the step counter `step`: counts the step's FLOPs, then runs
    /// GraNet's gradual pruning and the exploration update when they are due. `grads` are that
    /// step's gradients (dense where [`SparseMethod::needs_dense_grad`] said so). Returns what
    /// changed, or None when the masks did not change.
    pub fn after_step(
        &mut self,
        step: u64,
        net: &mut Network,
        grads: &[Option<Tensor>],
    ) -> Result<Option<UpdateReport>> {
        self.state.flops_sum += self.step_flops(step);
        self.state.flops_steps += 1;
        let prune_i = self.pruning_index(step);
        let explores = self.is_exploration_step(step);
        if prune_i.is_none() && !explores {
            return Ok(None);
        }
        let nl = self.numel.len();
        let mut rep = UpdateReport {
            step,
            target_density: None,
            globally_pruned: vec![0; nl],
            drop_fraction: None,
            pruned: vec![0; nl],
            grown: vec![0; nl],
            active: Vec::new(),
        };
        if let Some(i) = prune_i {
            let d = self.target_density(i);
            let k = self.global_budget(d);
            let frozen = self.frozen_ids(&net.store);
            let free_active: usize = self
                .active
                .iter()
                .zip(&self.frozen)
                .filter(|(_, &f)| !f)
                .map(|(a, _)| a)
                .sum();
            rep.globally_pruned = with_frozen(&mut net.store, &frozen, |s| {
                select_layers(
                    s,
                    Scores::Weights,
                    Plan::Global(k.min(free_active)),
                    SelectAction::Keep,
                )
            })?;
            // select_layers reports per layer of the reduced list; map back past frozen layers.
            rep.globally_pruned = expand(&rep.globally_pruned, &self.frozen);
            rep.target_density = Some(d);
            self.state.prune_steps += 1;
            self.sync(&net.store)?;
        }
        if explores {
            let p = self.drop_fraction(step);
            let grow = if self.cfg.method.grows_by_gradient() {
                GrowBy::Gradient(grads)
            } else {
                GrowBy::Random(Rng::derive(self.cfg.seed, 0x5E7_6000_0000 ^ step).next_u64())
            };
            let done = explore(&mut net.store, p, grow, &self.frozen, self.cfg.regrown)?;
            rep.drop_fraction = Some(p);
            rep.pruned = done.pruned;
            rep.grown = done.grown;
            self.state.updates += 1;
            self.sync(&net.store)?;
        }
        self.state.last_update_step = step;
        rep.active = self.active.clone();
        Ok(Some(rep))
    }
}

/// Spreads per-layer results of a selection over the non-frozen layers back to every maskable
/// layer (0 for the frozen ones).
fn expand(reduced: &[usize], frozen: &[bool]) -> Vec<usize> {
    let mut it = reduced.iter();
    frozen
        .iter()
        .map(|&f| if f { 0 } else { *it.next().unwrap_or(&0) })
        .collect()
}

/// Runs `f` with the `frozen` maskable tensors taken out of the maskable set (their role is
/// flipped for the duration, then restored), so a global selection leaves them alone.
fn with_frozen<T>(
    store: &mut ParamStore,
    frozen: &[ParamId],
    f: impl FnOnce(&mut ParamStore) -> Result<T>,
) -> Result<T> {
    for id in frozen {
        store.params[id.0].role = ParamRole::Bias;
    }
    let r = f(store);
    for id in frozen {
        store.params[id.0].role = ParamRole::Weight;
    }
    r
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

    #[test]
    fn expand_skips_frozen_layers() {
        assert_eq!(expand(&[3, 4], &[true, false, false]), vec![0, 3, 4]);
        assert_eq!(expand(&[3, 4], &[false, false]), vec![3, 4]);
    }
}

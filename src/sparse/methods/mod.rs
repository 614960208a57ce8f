//! The sparse-training methods (docs/computation.md, Methods: dense, static, SNIP, SET, RigL,
//! GraNet) as one scheduler object, [`SparseMethod`], with three hooks the training loop calls:
//!
//! 1. [`SparseMethod::init_masks_from`] before the first step (the method's initial mask: random
//!    ERK/ER/uniform masks, or SNIP's connection sensitivity on the first training batch, which
//!    SNIP asks for itself), or [`SparseMethod::resume`] when the masks came back from a
//!    checkpoint;
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
//!   momentum 0 (docs/computation.md, Masks); one pruned and regrown in the same step keeps its
//!   values unless `--regrown zero`. Every layer keeps its count. The SGD step of s is taken first
//!   (with the dense gradient, which the fused masked SGD restricts to the old mask), then the mask
//!   changes: the PyTorch reference order.
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
//!
//! Files: [`schedule`] (ΔT, the horizon, the drop fraction, GraNet's cubic), [`config`] (the
//! settings), [`state`] (what is checkpointed), `update.rs` (the mask update after a step and at
//! a cycle start, FLOP accounting), `layers.rs` (frozen layers in global selections), `rule.rs`
//! (what a method may override) and one file per method saying only what differs: `dense.rs`,
//! `static_mask.rs`, `snip.rs`, `set.rs`, `rigl.rs`, `granet.rs`. `run_hooks.rs` makes the
//! method the training loop's hooks.

pub mod config;
mod dense;
mod granet;
pub mod kind;
mod layers;
mod rigl;
mod rule;
mod run_hooks;
pub mod schedule;
mod set;
pub mod snip;
pub mod state;
mod static_mask;
mod update;

pub use config::{
    density_init_name, SparseConfig, DEFAULT_DROP_FRACTION, DEFAULT_EXPLORE_UNTIL,
    DEFAULT_INITIAL_DENSITY, DEFAULT_SPARSITY,
};
pub use kind::MethodKind;
pub use schedule::{
    default_update_interval, drop_fraction_at, granet_density, DropSchedule, DROP_FRACTION_MIN,
    GRANET_PRUNE_END_FRACTION, REFERENCE_INTERVAL_MIN_STEPS, REFERENCE_UPDATE_INTERVAL,
};
pub use snip::SnipScope;
pub use state::{SparseState, UpdateReport};

use layers::Layers;
use rule::Rule;
use schedule::Schedule;

use super::topk::active_counts;
use crate::error::{Error, Result};
use crate::nn::{Network, ParamStore};
use crate::tensor::Tensor;
use crate::train::hooks::FirstBatch;

/// A method's scheduler: initial masks, mask updates and FLOP accounting (see the module docs).
#[derive(Clone, Debug)]
pub struct SparseMethod {
    cfg: SparseConfig,
    iterations_per_epoch: usize,
    total_steps: u64,
    schedule: Schedule,
    layers: Layers,
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
        let layers = Layers::of(&net.store, cfg.dense_first_layer);
        let mut layer_flops = vec![0.0; ids.len()];
        for t in net.trace()? {
            if let Some(l) = ids.iter().position(|&id| id == t.param) {
                layer_flops[l] += 2.0 * t.macs_per_example as f64;
            }
        }
        let active = layers.numel.clone();
        Ok(SparseMethod {
            state: SparseState {
                method: cfg.method.name().into(),
                ..SparseState::default()
            },
            schedule: Schedule::new(&cfg, iterations_per_epoch, total_steps),
            cfg,
            iterations_per_epoch,
            total_steps,
            layers,
            layer_flops,
            active,
        })
    }

    /// The method's own rule.
    fn rule(&self) -> &'static dyn Rule {
        self.cfg.method.rule()
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
        self.schedule.horizon()
    }

    /// GraNet's pruning steps (i0, i_f), in units of ΔT.
    pub fn prune_window(&self) -> (u64, u64) {
        self.schedule.prune_window()
    }

    /// Active weights per maskable layer as the scheduler last saw them.
    pub fn active(&self) -> &[usize] {
        &self.active
    }

    /// Elements per maskable layer.
    pub fn numel(&self) -> &[usize] {
        &self.layers.numel
    }

    /// Current global density of the maskable tensors.
    pub fn density(&self) -> f64 {
        let n: usize = self.layers.numel.iter().sum();
        if n == 0 {
            1.0
        } else {
            self.active.iter().sum::<usize>() as f64 / n as f64
        }
    }

    /// The initial global density: d_i for GraNet, d_f for the other sparse methods, 1 for dense.
    pub fn initial_density(&self) -> f64 {
        self.rule().initial_density(&self.cfg)
    }

    /// True when step `step` (1-based) runs an exploration update.
    pub fn is_exploration_step(&self, step: u64) -> bool {
        self.schedule.is_exploration_step(step)
    }

    /// GraNet: the pruning step index i when step `step` runs a gradual-pruning step.
    pub fn pruning_index(&self, step: u64) -> Option<u64> {
        self.schedule.pruning_index(step)
    }

    /// Ends exploration no later than step `step` (the start of the Sup-tickets cycles): the
    /// horizon becomes min(⌊explore_until · total steps⌋, `step`), so a run with and without
    /// Sup-tickets explores on the same schedule up to the cycles.
    pub fn end_exploration_by(&mut self, step: u64) {
        self.schedule.end_exploration_by(step);
    }

    /// GraNet's target density at pruning step `i`.
    pub fn target_density(&self, i: u64) -> f64 {
        self.schedule.target_density(i)
    }

    /// The drop fraction at step `step`.
    pub fn drop_fraction(&self, step: u64) -> f64 {
        self.schedule.drop_fraction(step)
    }

    /// Whether step `step` (1-based) needs the dense weight gradient
    /// ([`Network::forward_backward_with`]): RigL and GraNet exploration steps.
    pub fn needs_dense_grad(&self, step: u64) -> bool {
        self.cfg.method.grows_by_gradient() && self.is_exploration_step(step)
    }

    /// Draws the initial masks of a fresh network (before any step) with `batch` as the first
    /// training batch (required for SNIP; see [`SparseMethod::init_masks_from`]).
    pub fn init_masks(
        &mut self,
        net: &mut Network,
        batch: Option<(&Tensor, &Tensor)>,
    ) -> Result<()> {
        let first_batch = || match batch {
            Some((x, y)) => Ok((x.clone(), y.clone())),
            None => Err(Error::Config(
                "snip: the initial mask needs one training batch".into(),
            )),
        };
        self.init_masks_from(net, &first_batch)
    }

    /// Draws the initial masks of a fresh network (before any step), the method's own way:
    /// nothing for dense; random masks with the `--init` allocation at the initial density for
    /// static, SET, RigL and GraNet; SNIP's top-K of |g ⊙ w| on the batch it asks `first_batch`
    /// for (the run's first training batch: images, labels).
    pub fn init_masks_from(&mut self, net: &mut Network, first_batch: FirstBatch) -> Result<()> {
        self.rule()
            .init_mask(&self.cfg, &self.layers, net, first_batch)?;
        self.state.initialised = true;
        self.sync(&net.store)
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
}

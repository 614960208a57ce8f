//! The mask updates — after a training step (GraNet's gradual pruning, the exploration step)
//! and at a Sup-tickets cycle start — and the FLOP accounting (docs/computation.md, FLOPs).

use super::granet::gradual_prune;
use super::rule::GrowAt;
use super::{MethodKind, SparseMethod, UpdateReport};
use crate::error::Result;
use crate::nn::Network;
use crate::sparse::explore::{explore, Explored};
use crate::tensor::Tensor;
use crate::train::flops;

impl SparseMethod {
    /// f_D: dense forward FLOPs of one example over the maskable layers.
    pub fn flops_dense(&self) -> f64 {
        self.layer_flops.iter().sum()
    }

    /// f_S = Σ_l d_l·FLOPs_l at the current masks.
    pub fn flops_sparse(&self) -> f64 {
        self.layer_flops
            .iter()
            .zip(self.active.iter().zip(&self.layers.numel))
            .map(|(f, (&a, &n))| if n == 0 { *f } else { f * a as f64 / n as f64 })
            .sum()
    }

    /// Training FLOPs of one example at step `step` with the current masks (docs/computation.md,
    /// FLOPs): dense 3f_D; static, SNIP, SET 3f_S; RigL and GraNet (3f_S·ΔT + 2f_S + f_D)/(ΔT + 1)
    /// while exploring (steps ≤ H), 3f_S after.
    pub fn step_flops(&self, step: u64) -> f64 {
        let exploring = (step <= self.schedule.horizon()).then_some(self.cfg.update_interval);
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
        self.rule().grows_by_gradient()
    }

    /// Training FLOPs of one example in a Sup-tickets cycle step (docs/computation.md, FLOPs):
    /// 3f_S, except at a cycle start whose regrowth needs the dense gradient: 2f_S + f_D.
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
        let grow = self
            .rule()
            .grow_scores(self.cfg.seed, GrowAt::Cycle(cycle), grads);
        let done = explore(
            &mut net.store,
            q,
            grow,
            &self.layers.frozen,
            self.cfg.regrown,
        )?;
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
        let nl = self.layers.numel.len();
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
            rep.globally_pruned = gradual_prune(&self.layers, &self.active, d, &mut net.store)?;
            rep.target_density = Some(d);
            self.state.prune_steps += 1;
            self.sync(&net.store)?;
        }
        if explores {
            let p = self.drop_fraction(step);
            let grow = self
                .rule()
                .grow_scores(self.cfg.seed, GrowAt::Step(step), grads);
            let done = explore(
                &mut net.store,
                p,
                grow,
                &self.layers.frozen,
                self.cfg.regrown,
            )?;
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

//! The Sup-tickets time line (docs/computation.md, Sup-tickets): the budget split between the
//! normal phase and the cycles, the per-iteration triangle learning rate of Eq. 3, and which
//! iterations start a cycle (exploration) or end one (a ticket capture).
//!
//! Iterations are counted from 0 over the whole run of `E · I` iterations (I = iterations per
//! epoch). The normal phase is iterations `[0, P·I)`; cycle k (1-based) is
//! `[P·I + (k−1)·C·I, P·I + k·C·I)`. Ticket 0 is the weights after the last normal iteration,
//! ticket k the weights after the last iteration of cycle k.

use crate::error::{Error, Result};

/// The budget split of a run of `epochs` epochs (step 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Total epochs E.
    pub epochs: usize,
    /// Cycle length C in epochs.
    pub cycle: usize,
    /// Normal epochs P = E − E_c.
    pub normal_epochs: usize,
    /// Cyclic epochs E_c = floor(r·E / C)·C.
    pub cyclic_epochs: usize,
    /// Tickets K = E_c / C created by the cycles (ticket 0, the end of the normal phase, is
    /// not counted).
    pub tickets: usize,
}

impl Budget {
    /// Splits `epochs` epochs with cycles of `cycle` epochs taking the fraction `fraction` (r)
    /// of the budget: E_c = floor(r·E / C)·C, K = E_c / C, P = E − E_c; no cyclic phase when
    /// r·E < C. E = 250, C = 8, r = 0.1 gives P = 226, K = 3.
    pub fn new(epochs: usize, cycle: usize, fraction: f64) -> Result<Budget> {
        if cycle == 0 {
            return Err(Error::Config(
                "--cycle: the cycle length must be at least one epoch".into(),
            ));
        }
        if !(0.0..=1.0).contains(&fraction) {
            return Err(Error::Config(format!(
                "--cycle-fraction must be in [0, 1], got {fraction}"
            )));
        }
        let x = fraction * epochs as f64 / cycle as f64;
        // floor, robust to representation error (0.1 · 80 / 8 must give 1, not 0).
        let tickets = (x + 1e-9 * x.max(1.0)).floor() as usize;
        let cyclic_epochs = tickets * cycle;
        Ok(Budget {
            epochs,
            cycle,
            normal_epochs: epochs - cyclic_epochs,
            cyclic_epochs,
            tickets,
        })
    }

    /// True when there is at least one cycle.
    pub fn has_cycles(&self) -> bool {
        self.tickets > 0
    }
}

/// The triangle learning rate of Eq. 3 over one cycle: α1 at the cycle boundaries, α2 in the
/// middle.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TriangleLr {
    /// α1: the rate at the boundaries of a cycle.
    pub alpha1: f32,
    /// α2: the rate in the middle of a cycle.
    pub alpha2: f32,
}

impl TriangleLr {
    /// The rate at position τ ∈ (0, 1] of a cycle: (1 − 2τ)α1 + 2τα2 for τ ≤ 1/2,
    /// (2 − 2τ)α2 + (2τ − 1)α1 after.
    pub fn at(&self, tau: f64) -> f32 {
        let (a1, a2) = (self.alpha1 as f64, self.alpha2 as f64);
        let lr = if tau <= 0.5 {
            (1.0 - 2.0 * tau) * a1 + 2.0 * tau * a2
        } else {
            (2.0 - 2.0 * tau) * a2 + (2.0 * tau - 1.0) * a1
        };
        lr as f32
    }
}

/// Where an iteration falls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The normal phase: the base method with its own schedule.
    Normal,
    /// Iteration `step` (0-based) of cycle `ticket` (1-based: cycle k creates ticket k).
    Cycle {
        /// The cycle, 1..=K.
        ticket: usize,
        /// The iteration inside the cycle, 0..C·I.
        step: usize,
    },
    /// After the last iteration of the run.
    Done,
}

/// The Sup-tickets time line of a run: its budget, iterations per epoch and the cyclic rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SupSchedule {
    /// The budget split.
    pub budget: Budget,
    /// Iterations (optimizer steps) per epoch, I.
    pub iters_per_epoch: usize,
    /// The cyclic learning rate.
    pub lr: TriangleLr,
}

impl SupSchedule {
    /// The time line of `budget` with `iters_per_epoch` iterations per epoch and cyclic bounds
    /// α1 (boundaries) and α2 (mid-cycle).
    pub fn new(
        budget: Budget,
        iters_per_epoch: usize,
        alpha1: f32,
        alpha2: f32,
    ) -> Result<SupSchedule> {
        if iters_per_epoch == 0 {
            return Err(Error::Config(
                "Sup-tickets: an epoch must have at least one iteration".into(),
            ));
        }
        for (name, a) in [
            ("--cycle-lr-low (α1)", alpha1),
            ("--cycle-lr-high (α2)", alpha2),
        ] {
            if !(a >= 0.0 && a.is_finite()) {
                return Err(Error::Config(format!(
                    "{name} must be a non-negative rate, got {a}"
                )));
            }
        }
        Ok(SupSchedule {
            budget,
            iters_per_epoch,
            lr: TriangleLr { alpha1, alpha2 },
        })
    }

    /// Iterations of the whole run, E·I.
    pub fn total_iters(&self) -> usize {
        self.budget.epochs * self.iters_per_epoch
    }

    /// Iterations of the normal phase, P·I (the first cycle starts at this iteration).
    pub fn normal_iters(&self) -> usize {
        self.budget.normal_epochs * self.iters_per_epoch
    }

    /// Iterations of one cycle, C·I.
    pub fn cycle_iters(&self) -> usize {
        self.budget.cycle * self.iters_per_epoch
    }

    /// Where iteration `it` falls.
    pub fn phase(&self, it: usize) -> Phase {
        let p = self.normal_iters();
        if it < p {
            Phase::Normal
        } else if it >= self.total_iters() {
            Phase::Done
        } else {
            let j = it - p;
            let l = self.cycle_iters();
            Phase::Cycle {
                ticket: j / l + 1,
                step: j % l,
            }
        }
    }

    /// The cycle position τ ∈ (0, 1] of iteration `it` (the paper's t(i) = (mod(i−1, L) + 1)/L
    /// with i the 1-based iteration of the cyclic phase and L = C·I), or None outside the
    /// cycles.
    pub fn tau(&self, it: usize) -> Option<f64> {
        match self.phase(it) {
            Phase::Cycle { step, .. } => Some((step + 1) as f64 / self.cycle_iters() as f64),
            _ => None,
        }
    }

    /// The cyclic learning rate of iteration `it` (Eq. 3), or None in the normal phase (the
    /// base method's schedule over P epochs applies) and after the run.
    pub fn cyclic_lr(&self, it: usize) -> Option<f32> {
        self.tau(it).map(|t| self.lr.at(t))
    }

    /// The ticket whose cycle starts at iteration `it` (exploration runs once, before this
    /// iteration's step), or None.
    pub fn cycle_start(&self, it: usize) -> Option<usize> {
        match self.phase(it) {
            Phase::Cycle { ticket, step: 0 } => Some(ticket),
            _ => None,
        }
    }

    /// The ticket captured after the optimizer step of iteration `it`, or None: ticket 0 after
    /// the last normal iteration (when there are cycles), ticket k after the last iteration of
    /// cycle k.
    pub fn capture(&self, it: usize) -> Option<usize> {
        if !self.budget.has_cycles() {
            return None;
        }
        let p = self.normal_iters();
        if it + 1 == p {
            return Some(0);
        }
        match self.phase(it) {
            Phase::Cycle { ticket, step } if step + 1 == self.cycle_iters() => Some(ticket),
            _ => None,
        }
    }

    /// The iteration after whose step ticket `k` (0..=K) is captured.
    pub fn capture_iter(&self, k: usize) -> Option<usize> {
        (self.budget.has_cycles() && k <= self.budget.tickets)
            .then(|| self.normal_iters() + k * self.cycle_iters() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_budget() {
        let b = Budget::new(250, 8, 0.1).unwrap();
        assert_eq!((b.normal_epochs, b.cyclic_epochs, b.tickets), (226, 24, 3));
        // ImageNet: 100 epochs, C = 2, 8 cyclic epochs.
        let b = Budget::new(100, 2, 0.08).unwrap();
        assert_eq!((b.normal_epochs, b.tickets), (92, 4));
        // Exactly one cycle (0.1 · 80 = 8 despite rounding).
        assert_eq!(Budget::new(80, 8, 0.1).unwrap().tickets, 1);
        // r·E < C: no cyclic phase.
        let b = Budget::new(70, 8, 0.1).unwrap();
        assert_eq!((b.normal_epochs, b.cyclic_epochs, b.tickets), (70, 0, 0));
        assert!(!b.has_cycles());
        assert!(Budget::new(10, 0, 0.1).is_err());
        assert!(Budget::new(10, 2, 1.5).is_err());
    }

    #[test]
    fn triangle_rate_at_quarter_points() {
        let lr = TriangleLr {
            alpha1: 0.001,
            alpha2: 0.005,
        };
        let close = |a: f32, b: f32| (a - b).abs() < 1e-9;
        assert!(close(lr.at(0.25), 0.003));
        assert!(close(lr.at(0.5), 0.005));
        assert!(close(lr.at(0.75), 0.003));
        assert!(close(lr.at(1.0), 0.001));
        assert!(close(lr.at(1e-9), 0.001));
    }
}

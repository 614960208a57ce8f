//! The Sup-tickets driver: a training method ([`RunHooks`]) that runs the base sparse method
//! for the normal phase and then the cycles of docs/suptickets.md — the triangle learning rate,
//! one exploration step at each cycle start, a ticket captured at each cycle end (written to
//! `tickets/W_k.safetensors` and superposed into the running ultimate ticket, with its
//! batch-norm statistics when `--bn av`), and at the end the ultimate ticket (and the deep
//! ensemble of the tickets with `--ensemble`). It owns the schedule, the superposer, the BN
//! averager, the tickets' metrics and the cyclic phase's FLOP count, and saves and restores
//! them through the checkpoint, so a run resumes anywhere inside the cycles.

use super::SupSchedule;
use super::{bn_update_loader, BnAverager, BnStrategy, Ensemble, SuperposeConfig, Superposer};
use crate::error::{Error, Result};
use crate::nn::Network;
use crate::sparse::methods::SparseMethod;
use crate::tensor::Tensor;
use crate::train::checkpoint::{self, Checkpoint, CheckpointMeta};
use crate::train::flops::FlopsTable;
use crate::train::hooks::{Finish, FirstBatch, ReportPart, Resume, RunContext, RunHooks, StepPlan};
use crate::train::metrics::Metrics;
use crate::train::report::{self, EnsembleMetrics, TicketMetrics, UltimateMetrics};
use crate::train::trainer::{evaluate, ticket_path, LAST_FILE, TICKETS_DIR};

/// The Sup-tickets driver (see the module docs).
pub struct SupTickets {
    method: SparseMethod,
    sched: SupSchedule,
    sup_cfg: SuperposeConfig,
    bn_strategy: BnStrategy,
    cycle_drop_fraction: f64,
    superposer: Option<Superposer>,
    bn_avg: Option<BnAverager>,
    tickets: Vec<TicketMetrics>,
    /// FLOPs of the cyclic phase (per example): Σ over its steps, and the step count.
    cyc_flops: f64,
    cyc_steps: u64,
    /// BU's pass over the training set at the end (per-example FLOPs · examples).
    bu_flops: f64,
    ultimate: Option<UltimateMetrics>,
    ensemble: Option<EnsembleMetrics>,
}

impl SupTickets {
    /// The driver of `sched` around the base `method`, whose exploration is ended at the start
    /// of the cycles.
    pub fn new(
        mut method: SparseMethod,
        sched: SupSchedule,
        sup_cfg: SuperposeConfig,
        bn_strategy: BnStrategy,
        cycle_drop_fraction: f64,
    ) -> SupTickets {
        method.end_exploration_by(sched.normal_iters() as u64);
        SupTickets {
            method,
            sched,
            sup_cfg,
            bn_strategy,
            cycle_drop_fraction,
            superposer: None,
            bn_avg: None,
            tickets: Vec::new(),
            cyc_flops: 0.0,
            cyc_steps: 0,
            bu_flops: 0.0,
            ultimate: None,
            ensemble: None,
        }
    }

    /// The schedule.
    pub fn schedule(&self) -> &SupSchedule {
        &self.sched
    }

    /// Checks that a run can resume from `ck` at epoch `ck.meta.epoch`: inside the cycles only
    /// with the superposition state saved.
    fn check_resume(&self, ck: &Checkpoint, epochs: usize) -> Result<()> {
        let normal = self.sched.budget.normal_epochs;
        if ck.meta.epoch < normal {
            return Ok(());
        }
        let why = if ck.meta.sup_tickets.is_none() && ck.meta.epoch >= epochs {
            "the run is finished (its checkpoint holds the ultimate ticket)"
        } else if ck.meta.sup_tickets.is_none() {
            "the checkpoint has no superposition state"
        } else {
            return Ok(());
        };
        Err(Error::Config(format!(
            "{}: resuming a Sup-tickets run inside (or after) its cyclic phase is not supported here: {why} \
             (the checkpoint is at epoch {}, the cycles start after epoch {normal})",
            ck.path.display(),
            ck.meta.epoch,
        )))
    }

    /// Restores the superposition state, the tickets' metrics (from the log) and the cyclic
    /// FLOP count of a checkpoint inside the cycles.
    fn resume_cycles(
        &mut self,
        ctx: &RunContext,
        net: &Network,
        meta: &CheckpointMeta,
        ck: &Checkpoint,
        log: &[crate::train::report::EpochLog],
    ) -> Result<()> {
        let normal = self.sched.budget.normal_epochs;
        let Some(n) = ck.meta.sup_tickets.filter(|_| meta.epoch >= normal) else {
            return Ok(());
        };
        let mut get = |name: &str| ck.sup_tensor(name, ctx.device);
        let mut sp = Superposer::new(&self.sup_cfg, &net.store)?;
        sp.load_state(&net.store, n, &mut get)?;
        self.superposer = Some(sp);
        if self.bn_strategy == BnStrategy::Average {
            let mut b = BnAverager::new(self.sup_cfg.averaging, &net.store)?;
            b.load_state(n, &mut get)?;
            self.bn_avg = Some(b);
        }
        let ipe = ctx.iterations_per_epoch;
        for e in log {
            let it = (e.epoch * ipe).wrapping_sub(1);
            if let (Some(k), Some(acc)) = (self.sched.capture(it), e.test_acc) {
                self.tickets.push(TicketMetrics {
                    ticket: k,
                    epoch: e.epoch,
                    accuracy: acc,
                    nll: e.test_nll.unwrap_or(f64::NAN),
                    ece: e.test_ece.unwrap_or(f64::NAN),
                });
            }
        }
        // The cyclic steps already taken, for the FLOPs count (every cycle keeps each layer's
        // count, so f_S is that of the current masks).
        let done = meta.epoch - normal;
        self.cyc_steps = (done * ipe) as u64;
        let starts = done.div_ceil(self.sched.budget.cycle) as u64;
        self.cyc_flops = (self.cyc_steps - starts) as f64 * self.method.cycle_step_flops(false)
            + starts as f64 * self.method.cycle_step_flops(true);
        Ok(())
    }

    /// Adds the network's current weights as ticket `k` (k = 0 starts the superposition).
    fn capture(&mut self, k: usize, net: &Network) -> Result<()> {
        if k == 0 {
            self.superposer = Some(Superposer::new(&self.sup_cfg, &net.store)?);
            if self.bn_strategy == BnStrategy::Average {
                self.bn_avg = Some(BnAverager::new(self.sup_cfg.averaging, &net.store)?);
            }
        } else if let Some(sp) = self.superposer.as_mut() {
            sp.add_ticket(k, &net.store)?;
            if let Some(b) = self.bn_avg.as_mut() {
                b.add_ticket(k, &net.store)?;
            }
        }
        Ok(())
    }
}

impl RunHooks for SupTickets {
    fn start(
        &mut self,
        ctx: &RunContext,
        net: &mut Network,
        meta: &mut CheckpointMeta,
        resume: Option<Resume>,
        first_batch: FirstBatch,
    ) -> Result<()> {
        if let Some(r) = resume {
            self.check_resume(r.checkpoint, ctx.cfg.epochs)?;
        }
        self.method.start(ctx, net, meta, resume, first_batch)?;
        if let Some(r) = resume {
            self.resume_cycles(ctx, net, meta, r.checkpoint, r.log)?;
        }
        Ok(())
    }

    fn plan_step(&self, ctx: &RunContext, it: usize) -> StepPlan {
        match self.sched.cyclic_lr(it) {
            Some(lr) => StepPlan {
                lr,
                dense_grad: self.sched.cycle_start(it).is_some()
                    && self.method.cycle_needs_dense_grad(),
            },
            None => self.method.plan_step(ctx, it),
        }
    }

    fn step_done(&mut self, it: usize, net: &mut Network, grads: &[Option<Tensor>]) -> Result<()> {
        if self.sched.cyclic_lr(it).is_none() {
            self.method.step_done(it, net, grads)?;
        } else {
            // The cyclic phase: no mask update of the base method; one exploration step (the
            // base method's, with drop fraction q) at each cycle start.
            let start = self.sched.cycle_start(it);
            self.cyc_flops += self.method.cycle_step_flops(start.is_some());
            if let Some(cycle) = start {
                self.method
                    .explore_cycle(net, self.cycle_drop_fraction, cycle, grads)?;
            }
            self.cyc_steps += 1;
        }
        if let Some(k) = self.sched.capture(it) {
            self.capture(k, net)?;
        }
        Ok(())
    }

    fn must_evaluate(&self, last_it: usize) -> bool {
        self.sched.capture(last_it).is_some()
    }

    fn epoch_done(
        &mut self,
        ctx: &RunContext,
        net: &Network,
        meta: &CheckpointMeta,
        done: usize,
        metrics: Option<Metrics>,
    ) -> Result<()> {
        let Some(k) = self.sched.capture((meta.step as usize).wrapping_sub(1)) else {
            return Ok(());
        };
        // The ticket goes to disk before the epoch's checkpoint: a run killed in between redoes
        // the epoch and writes it again.
        let mut ticket_meta = meta.clone();
        ticket_meta.epoch = done;
        ticket_meta.sup_tickets = None;
        let dir = ctx.out.join(TICKETS_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        checkpoint::save(&ticket_path(ctx.out, k), net, &ticket_meta)?;
        if let Some(m) = metrics {
            self.tickets.push(TicketMetrics {
                ticket: k,
                epoch: done,
                accuracy: m.accuracy,
                nll: m.nll,
                ece: m.ece,
            });
            if ctx.progress {
                eprintln!(
                    "ticket W_{k} captured at epoch {done}: {} acc {:.2}% nll {:.4} ece {:.4}",
                    ctx.eval_split,
                    100.0 * m.accuracy,
                    m.nll,
                    m.ece
                );
            }
        }
        Ok(())
    }

    fn log_density(&self) -> Option<f64> {
        self.method.log_density()
    }

    fn mask_changes(&self) -> u64 {
        self.method.mask_changes()
    }

    fn save_state(&self, net: &Network, meta: &mut CheckpointMeta) -> Vec<(String, Tensor)> {
        let mut extra = self.method.save_state(net, meta);
        if let Some(sp) = &self.superposer {
            meta.sup_tickets = Some(sp.tickets());
            extra = sp.state_tensors(&net.store);
            if let Some(b) = &self.bn_avg {
                extra.extend(b.state_tensors());
            }
        }
        extra
    }

    fn finish(
        &mut self,
        ctx: &RunContext,
        net: &mut Network,
        meta: &mut CheckpointMeta,
        epochs: usize,
    ) -> Result<Finish> {
        // Finished training: the last trained weights go to last.safetensors; the ultimate
        // ticket S_K (with its batch-norm statistics) replaces them in the network. The
        // checkpoint keeps W_K and the superposition state until the very last write, after
        // the report: a run killed anywhere before it resumes into this finalisation, one
        // killed after it is complete.
        let Some(sp) = self.superposer.as_ref() else {
            return Ok(Finish::default());
        };
        if meta.epoch < epochs || meta.sup_tickets.is_none() {
            return Ok(Finish::default());
        }
        checkpoint::save(&ctx.out.join(LAST_FILE), net, meta)?;
        if ctx.cfg.ensemble {
            self.ensemble = Some(ensemble_of_tickets(ctx, sp.tickets())?);
        }
        sp.apply_to(&mut net.store)?;
        let mut bu = 0usize;
        match &self.bn_avg {
            Some(b) => b.apply_to(&mut net.store)?,
            None => {
                bn_update_loader(net, ctx.train_loader, epochs)?;
                bu = ctx.train_examples;
            }
        }
        let m = evaluate(net, ctx.eval_loader)?;
        meta.sup_tickets = None;
        self.bu_flops = bu as f64 * self.method.flops_sparse();
        let (maskable, nonzero) = maskable_nonzero(net)?;
        self.ultimate = Some(UltimateMetrics {
            accuracy: m.accuracy,
            nll: m.nll,
            ece: m.ece,
            density: if maskable == 0 {
                1.0
            } else {
                nonzero as f64 / maskable as f64
            },
            nonzero,
            tickets: sp.tickets(),
            averaging: self.sup_cfg.averaging.name().into(),
            reprune: self.sup_cfg.reprune.name().into(),
            bn: self.bn_strategy.name().into(),
        });
        Ok(Finish {
            metrics: Some(m),
            finalised: true,
        })
    }

    fn report_part(&self, ctx: &RunContext, table: &FlopsTable) -> ReportPart {
        let mut part = self.method.report_part(ctx, table);
        if self.cyc_steps > 0 || self.bu_flops > 0.0 {
            // The base method's steps, the cyclic steps (one dense gradient per cycle start)
            // and the BU pass, over (all steps · 3f_D) per example.
            let f_d = self.method.flops_dense();
            let base_steps = self.method.state().flops_steps as f64;
            let base = part.train_flops_multiple * base_steps * 3.0 * f_d;
            let all_steps = base_steps + self.cyc_steps as f64;
            // The BU pass (N_train · f_S) in per-step units of one example: / batch size.
            let bu_per_example = self.bu_flops / ctx.cfg.batch_size as f64;
            part.train_flops_multiple = (base + self.cyc_flops + bu_per_example)
                / (all_steps * 3.0 * f_d).max(f64::MIN_POSITIVE);
        }
        part.tickets = Some(self.tickets.clone());
        part.ultimate = self.ultimate.clone();
        part.ensemble = self.ensemble.clone();
        part
    }

    fn lr_svg(&self, ctx: &RunContext) -> String {
        report::sup_lr_svg(ctx.schedule, &self.sched, ctx.iterations_per_epoch)
    }
}

/// Maskable parameters and their nonzero count (by mask) in `net`.
pub fn maskable_nonzero(net: &Network) -> Result<(usize, usize)> {
    let mut nz = 0;
    for p in net.store.params.iter().filter(|p| p.is_maskable()) {
        nz += match p.mask() {
            Some(m) => m.to_vec()?.iter().filter(|&&v| v != 0.0).count(),
            None => p.value.numel(),
        };
    }
    Ok((net.store.num_maskable(), nz))
}

/// The deep ensemble of the `count` tickets W_0..W_{count-1} read back from the run's
/// `tickets/` folder, evaluated on the evaluation loader (paper appendix E).
fn ensemble_of_tickets(ctx: &RunContext, count: usize) -> Result<EnsembleMetrics> {
    let mut e = Ensemble::new();
    let mut net = None;
    for k in 0..count {
        let ck = Checkpoint::read(&ticket_path(ctx.out, k))?;
        let mut n = ck.build_network()?;
        n.to_device(ctx.device)?;
        e.add_ticket(&n.store)?;
        net = Some(n);
    }
    let mut net = net.expect("at least ticket W_0");
    let r = e.evaluate_loader(&mut net, ctx.eval_loader)?;
    Ok(EnsembleMetrics {
        members: e.len(),
        accuracy: r.ensemble.accuracy,
        nll: r.ensemble.nll,
        ece: r.ensemble.ece,
    })
}

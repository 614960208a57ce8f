//! The sparse method as the training loop's hooks ([`RunHooks`]): the base learning-rate
//! schedule, the dense gradient on RigL's and GraNet's exploration steps, the mask update after
//! each step, and the method's part of the report. Dense training is the method `dense`.

use super::{default_update_interval, MethodKind, SparseMethod};
use crate::error::Result;
use crate::nn::Network;
use crate::tensor::Tensor;
use crate::train::checkpoint::CheckpointMeta;
use crate::train::flops::FlopsTable;
use crate::train::hooks::{Finish, FirstBatch, ReportPart, Resume, RunContext, RunHooks, StepPlan};
use crate::train::metrics::Metrics;
use crate::train::report;

impl RunHooks for SparseMethod {
    fn start(
        &mut self,
        _ctx: &RunContext,
        net: &mut Network,
        meta: &mut CheckpointMeta,
        resume: Option<Resume>,
        first_batch: FirstBatch,
    ) -> Result<()> {
        match resume {
            None => self.init_masks_from(net, first_batch)?,
            Some(_) => self.resume(&net.store, meta.sparse.clone())?,
        }
        meta.sparse = Some(self.state().clone());
        Ok(())
    }

    fn plan_step(&self, ctx: &RunContext, it: usize) -> StepPlan {
        StepPlan {
            lr: ctx.schedule.lr_at(it, ctx.iterations_per_epoch),
            dense_grad: self.needs_dense_grad(it as u64 + 1),
        }
    }

    fn step_done(&mut self, it: usize, net: &mut Network, grads: &[Option<Tensor>]) -> Result<()> {
        self.after_step(it as u64 + 1, net, grads).map(|_| ())
    }

    fn must_evaluate(&self, _last_it: usize) -> bool {
        false
    }

    fn epoch_done(
        &mut self,
        _ctx: &RunContext,
        _net: &Network,
        _meta: &CheckpointMeta,
        _done: usize,
        _metrics: Option<Metrics>,
    ) -> Result<()> {
        Ok(())
    }

    fn log_density(&self) -> Option<f64> {
        self.kind().is_sparse().then(|| self.density())
    }

    fn mask_changes(&self) -> u64 {
        self.state().updates + self.state().prune_steps
    }

    fn save_state(&self, _net: &Network, meta: &mut CheckpointMeta) -> Vec<(String, Tensor)> {
        meta.sparse = Some(self.state().clone());
        Vec::new()
    }

    fn finish(
        &mut self,
        _ctx: &RunContext,
        _net: &mut Network,
        _meta: &mut CheckpointMeta,
        _epochs: usize,
    ) -> Result<Finish> {
        Ok(Finish::default())
    }

    fn report_part(&self, ctx: &RunContext, table: &FlopsTable) -> ReportPart {
        let kind = self.kind();
        let ipe = ctx.iterations_per_epoch;
        ReportPart {
            method: kind.name().into(),
            update_interval: kind.explores().then_some(self.config().update_interval),
            update_interval_rule: kind.explores().then(|| match ctx.cfg.update_interval {
                Some(dt) => format!("set by --update-interval: ΔT = {dt}"),
                None => default_update_interval(ipe, ctx.cfg.epochs * ipe).1,
            }),
            exploration_horizon: kind.explores().then_some(self.exploration_horizon()),
            prune_window: (kind == MethodKind::Granet).then_some(self.prune_window()),
            mask_updates: self.state().updates,
            prune_steps: self.state().prune_steps,
            train_flops_multiple: if self.state().flops_steps > 0 {
                self.train_flops_multiple()
            } else {
                table.train_flops_multiple(kind)
            },
            ..ReportPart::default()
        }
    }

    fn lr_svg(&self, ctx: &RunContext) -> String {
        report::lr_svg(ctx.schedule, ctx.iterations_per_epoch)
    }
}

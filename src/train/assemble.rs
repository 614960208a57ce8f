//! Assembles a run's [`Report`]: the final metrics, the network's parameter and FLOP counts and
//! the method's part ([`RunHooks::report_part`]).

use super::flops::FlopsTable;
use super::hooks::RunHooks;
use super::metrics::Metrics;
use super::report::Report;
use super::run::Run;
use crate::data::Source;
use crate::error::Result;
use crate::suptickets::driver::maskable_nonzero;

/// The report of `run` whose network, as it now is, scored `metrics`.
pub fn assemble_report(run: &mut Run, hooks: &dyn RunHooks, metrics: Metrics) -> Result<Report> {
    let table = FlopsTable::of(&mut run.net)?;
    let (maskable, maskable_nonzero) = maskable_nonzero(&run.net)?;
    let params = run.net.store.num_params();
    let part = hooks.report_part(&run.context(), &table);
    let log = &run.log;
    let ips: Vec<f64> = log.iter().map(|e| e.images_per_sec).collect();
    Ok(Report {
        version: env!("CARGO_PKG_VERSION").into(),
        name: run.name.clone(),
        model: run.meta.model.clone(),
        config: run.cfg.clone(),
        device: run.device.name(),
        dataset: run.dataset_name.clone(),
        eval_split: run.eval_split.into(),
        test_examples: metrics.n,
        test_accuracy: metrics.accuracy,
        test_nll: metrics.nll,
        test_ece: metrics.ece,
        train_loss: log.last().map_or(f64::NAN, |e| e.train_loss),
        train_accuracy: log.last().map_or(f64::NAN, |e| e.train_acc),
        epochs_completed: run.meta.epoch,
        steps: run.meta.step,
        finished: run.meta.epoch >= run.cfg.epochs,
        params,
        params_nonzero: params - maskable + maskable_nonzero,
        maskable_params: maskable,
        sparsity: if maskable == 0 {
            0.0
        } else {
            1.0 - maskable_nonzero as f64 / maskable as f64
        },
        method: part.method,
        update_interval: part.update_interval,
        update_interval_rule: part.update_interval_rule,
        exploration_horizon: part.exploration_horizon,
        prune_window: part.prune_window,
        mask_updates: part.mask_updates,
        prune_steps: part.prune_steps,
        flops_dense: table.flops_dense(),
        flops_sparse: table.flops_sparse(),
        train_flops_multiple: part.train_flops_multiple,
        test_flops_multiple: table.test_flops_multiple(),
        wall_seconds: run.meta.wall_seconds,
        images_per_sec: if ips.is_empty() {
            0.0
        } else {
            ips.iter().sum::<f64>() / ips.len() as f64
        },
        skipped_images: skipped_images(run),
        layers: table.layers,
        tickets: part.tickets,
        ultimate: part.ultimate,
        ensemble: part.ensemble,
        data_parallel: run.dp.report(),
    })
}

/// Image files the run's image folders skipped (None for in-memory datasets).
fn skipped_images(run: &Run) -> Option<usize> {
    let (train, eval) = (run.train_loader.source(), run.eval_loader.source());
    matches!(train, Source::Folder(_)).then(|| train.skipped() + eval.skipped())
}

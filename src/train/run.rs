//! The training run, top to bottom: [`prepare`] (device, data, model, the checkpoint to resume
//! from), the method's hooks ([`RunHooks`]: the sparse method, or the Sup-tickets driver around
//! it), [`fit`] (loader → forward/backward → SGD step → the method's mask update and ticket
//! capture → per-epoch evaluation, log and checkpoint), the method's [`RunHooks::finish`]
//! (Sup-tickets: superpose the tickets) and the report. A run resumed from its checkpoint ends
//! with exactly the weights of an uninterrupted run on the CPU: the data order of epoch e
//! depends only on (seed, e), and the checkpoint holds the weights, masks, momenta, batch-norm
//! statistics, step counter, RNG state and the method's state.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::assemble::assemble_report;
use super::checkpoint::{self, Checkpoint, CheckpointMeta, ModelSpec};
use super::config::TrainConfig;
use super::hooks::{Resume, RunContext, RunHooks};
use super::loss_record::LossRecord;
use super::metrics::Metrics;
use super::progress::{epoch_line, start_line, Progress};
use super::report::{self, EpochLog, Report};
use super::run_dir::{self, Existing, RunDirLock};
use super::schedule::LrSchedule;
use super::trainer::{
    datasets, eval_loader, evaluate, model_config, output_dir, CHECKPOINT_FILE, LOG_FILE,
};
use crate::data::{Batch, DatasetKind, Loader, LoaderConfig, Source};
use crate::device::Device;
use crate::dist::shard::{check_batch_size, drop_last};
use crate::dist::DataParallel;
use crate::error::{Error, Result};
use crate::models::build;
use crate::nn::Network;
use crate::optim::Sgd;
use crate::rng::Rng;
use crate::sparse::methods::SparseMethod;
use crate::suptickets::driver::SupTickets;
use crate::suptickets::SupSchedule;
use crate::tensor::Tensor;

/// RNG stream of the run's own generator (saved in checkpoints; for methods that draw random
/// numbers during training).
const TRAINER_STREAM: u64 = 0x7261_696e;

/// The hooks' view of a [`Run`], built from its fields one by one, so that the borrow checker
/// sees them apart from the network and metadata borrowed beside it.
macro_rules! run_context {
    ($run:expr) => {
        RunContext {
            cfg: &$run.cfg,
            out: &$run.out,
            device: &$run.device,
            schedule: &$run.schedule,
            iterations_per_epoch: $run.ipe,
            train_loader: &$run.train_loader,
            eval_loader: &$run.eval_loader,
            train_examples: $run.n_train,
            eval_split: $run.eval_split,
            progress: $run.cfg.progress,
        }
    };
}

/// A prepared run: everything [`fit`] needs.
pub struct Run {
    /// The configuration (validated).
    pub cfg: TrainConfig,
    /// The device.
    pub device: Device,
    /// The run directory.
    pub out: PathBuf,
    /// The run's name.
    pub name: String,
    /// The dataset's name.
    pub dataset_name: String,
    /// `test` or `validation`.
    pub eval_split: &'static str,
    /// The network (on the device).
    pub net: Network,
    /// The metadata of the next checkpoint.
    pub meta: CheckpointMeta,
    /// The per-epoch log so far.
    pub log: Vec<EpochLog>,
    /// The run's generator.
    pub rng: Rng,
    /// The training loader.
    pub train_loader: Loader,
    /// The evaluation loader.
    pub eval_loader: Loader,
    /// Iterations per epoch.
    pub ipe: usize,
    /// Training examples per epoch.
    pub n_train: usize,
    /// The base learning-rate schedule.
    pub schedule: LrSchedule,
    /// The checkpoint this invocation continues from.
    pub from: Option<Checkpoint>,
    /// What to do with a run already in the directory.
    pub existing: Existing,
    /// The run directory's lock, held from the first write to the end of the run.
    pub lock: Option<RunDirLock>,
    /// Data parallelism over the process's world (one process: plain steps).
    pub dp: DataParallel,
}

impl Run {
    /// The view of the run the hooks get.
    pub fn context(&self) -> RunContext<'_> {
        self.split().0
    }

    /// The hooks' view of the run beside the network and the metadata, which they change.
    fn split_mut(&mut self) -> (RunContext<'_>, &mut Network, &mut CheckpointMeta) {
        let ctx = run_context!(self);
        (ctx, &mut self.net, &mut self.meta)
    }

    /// The hooks' view of the run beside the network and the metadata.
    fn split(&self) -> (RunContext<'_>, &Network, &CheckpointMeta) {
        let ctx = run_context!(self);
        (ctx, &self.net, &self.meta)
    }
}

/// The training run, from scratch or from a checkpoint (and the directory it came from).
/// A fresh run refuses a directory that already holds a run; see [`train_from_with`].
pub fn train_from(cfg: &TrainConfig, from: Option<(Checkpoint, PathBuf)>) -> Result<Report> {
    train_from_with(cfg, from, false)
}

/// [`train_from`]; with `overwrite`, a previous run in the output directory (other than the
/// one resumed) is replaced instead of refused.
pub fn train_from_with(
    cfg: &TrainConfig,
    from: Option<(Checkpoint, PathBuf)>,
    overwrite: bool,
) -> Result<Report> {
    let mut run = prepare(cfg, from, overwrite)?;
    let mut hooks = method_hooks(&mut run)?;
    start(&mut run, hooks.as_mut())?;
    let first_epoch = run.meta.epoch;
    let last_metrics = fit(&mut run, hooks.as_mut())?;
    if !run.dp.is_writer() {
        // Data-parallel ranks other than 0 end with the training: rank 0 finishes the method
        // (superposition, evaluation) and writes everything.
        return assemble_report(&mut run, hooks.as_ref(), last_metrics.unwrap_or_default());
    }
    let epochs = run.cfg.epochs;
    let (ctx, net, meta) = run.split_mut();
    let fin = hooks.finish(&ctx, net, meta, epochs)?;
    let metrics = match fin.metrics.or(last_metrics) {
        Some(m) => m,
        None => evaluate(&mut run.net, &run.eval_loader)?,
    };
    if run.meta.epoch == first_epoch && !fin.finalised {
        // Nothing trained in this invocation: still leave a checkpoint behind.
        checkpoint::save(&run.out.join(CHECKPOINT_FILE), &run.net, &run.meta)?;
    }
    let report = assemble_report(&mut run, hooks.as_ref(), metrics)?;
    write_outputs(&run, hooks.as_ref(), &report)?;
    if fin.finalised {
        // The last write of a Sup-tickets run: the ultimate ticket replaces W_K.
        checkpoint::save(&run.out.join(CHECKPOINT_FILE), &run.net, &run.meta)?;
    }
    Ok(report)
}

/// The training set's images and classes fit the model's input and classifier.
fn check_fits(train_set: &Source, net: &Network) -> Result<()> {
    let shape = train_set.shape();
    if shape != net.input_shape || train_set.num_classes() != net.num_classes {
        return Err(Error::Config(format!(
            "{}: images {shape:?} with {} classes do not fit the model's input {:?} and {} classes",
            train_set.name(),
            train_set.num_classes(),
            net.input_shape,
            net.num_classes
        )));
    }
    Ok(())
}

/// Checks the configuration and the run directory, sets the kernel policy, builds (or
/// restores) the network and the loaders.
pub fn prepare(
    cfg: &TrainConfig,
    from: Option<(Checkpoint, PathBuf)>,
    overwrite: bool,
) -> Result<Run> {
    cfg.validate()?;
    let out = output_dir(cfg);
    let existing = match &from {
        Some((_, dir)) if same_dir(&run_dir_of(dir), &out) => Existing::Continue,
        _ if overwrite => Existing::Overwrite,
        _ => Existing::Refuse,
    };
    // Only the writing rank (rank 0 under `mpirun`; the only process otherwise) owns the
    // run directory.
    if crate::dist::is_writer() {
        run_dir::precheck(&out, existing)?;
    }
    let dp = DataParallel::new(cfg.sync_bn);
    check_batch_size(cfg.batch_size, dp.size())?;
    crate::backend::sparse_policy::set_sparse_kernels(cfg.sparse_kernels);
    crate::backend::sparse_policy::set_crossover(cfg.sparse_crossover)?;
    let device = Device::parse(&cfg.device)?;
    let name = cfg.name.clone().unwrap_or_else(|| {
        out.file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into())
    });
    let mcfg = model_config(cfg)?;
    let dataset_name = DatasetKind::parse(&cfg.dataset)?.name().to_string();
    let spec = ModelSpec::from(&mcfg);
    let (mut net, meta, log, from) = match from {
        None => {
            let mut meta = CheckpointMeta::new(spec);
            meta.rng = Rng::derive(cfg.seed, TRAINER_STREAM).state();
            (build(&mcfg)?, meta, Vec::new(), None)
        }
        Some((ck, from_dir)) => {
            check_same_model(&ck, &spec)?;
            let net = ck.build_network()?;
            let dir = run_dir_of(&from_dir);
            let mut log = report::read_log(&dir.join(LOG_FILE))?;
            log.retain(|e| e.epoch <= ck.meta.epoch);
            let mut meta = ck.meta.clone();
            meta.train_config = Some(cfg.clone());
            (net, meta, log, Some(ck))
        }
    };
    net.to_device(&device)?;
    let rng = Rng::from_state(meta.rng);
    let (train_set, eval_set, eval_split) = datasets(cfg, true)?;
    let train_set = train_set.expect("requested");
    check_fits(&train_set, &net)?;
    let mut lc = LoaderConfig::train(cfg.batch_size, cfg.seed);
    lc.limit = cfg.limit_train;
    let n_train = cfg
        .limit_train
        .map_or(train_set.len(), |l| l.min(train_set.len()));
    // A final batch of one example would give batch norm a single sample per channel in the
    // classifier's BatchNorm1d (VGG); drop it rather than train on it (on several processes:
    // one that leaves a process fewer than two rows, see `dist::shard::drop_last`).
    lc.drop_last = drop_last(n_train, cfg.batch_size, dp.size(), cfg.sync_bn);
    let train_loader = Loader::new(train_set, lc)?;
    let eval_loader = eval_loader(cfg, eval_set)?;
    let ipe = train_loader.batches_per_epoch();
    if ipe == 0 {
        return Err(Error::Config("the training set is empty".into()));
    }
    let schedule = cfg.lr_schedule();
    let mut cfg = cfg.clone();
    // Progress lines come from rank 0 only.
    cfg.progress &= dp.is_writer();
    Ok(Run {
        cfg,
        device,
        out,
        name,
        dataset_name,
        eval_split,
        net,
        meta,
        log,
        rng,
        train_loader,
        eval_loader,
        ipe,
        n_train,
        schedule,
        from,
        existing,
        lock: None,
        dp,
    })
}

/// The run directory of a `--resume` path (the directory itself, or a checkpoint's folder).
fn run_dir_of(from: &Path) -> PathBuf {
    if from.is_dir() {
        from.to_path_buf()
    } else {
        from.parent().map(Path::to_path_buf).unwrap_or_default()
    }
}

/// Whether `a` and `b` name the same directory.
fn same_dir(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (a.canonicalize(), b.canonicalize()),
            (Ok(x), Ok(y)) if x == y
        )
}

/// The error of a checkpoint whose model is not the configuration's.
fn check_same_model(ck: &Checkpoint, spec: &ModelSpec) -> Result<()> {
    if ck.meta.model == *spec {
        return Ok(());
    }
    let m = &ck.meta.model;
    Err(Error::Config(format!(
        "{}: the checkpoint holds {:?} (width {}, {} classes, {} channels, seed {}), \
         but the configuration asks for {:?} (width {}, {} classes, {} channels, seed {})",
        ck.path.display(),
        m.name,
        m.width,
        m.num_classes,
        m.in_channels,
        m.seed,
        spec.name,
        spec.width,
        spec.num_classes,
        spec.in_channels,
        spec.seed
    )))
}

/// The hooks of the run's method: the sparse method (dense included), wrapped by the
/// Sup-tickets driver with `--suptickets`.
fn method_hooks(run: &mut Run) -> Result<Box<dyn RunHooks>> {
    let cfg = run.cfg.clone();
    let ipe = run.ipe;
    let sup_sched = match cfg.sup_budget()? {
        Some(b) => Some(SupSchedule::new(
            b,
            ipe,
            cfg.cycle_lr_low,
            cfg.cycle_lr_high,
        )?),
        None => None,
    };
    let method = SparseMethod::new(
        cfg.sparse_config(ipe)?,
        &mut run.net,
        ipe,
        (cfg.epochs * ipe) as u64,
    )?;
    Ok(match sup_sched {
        Some(s) => Box::new(SupTickets::new(
            method,
            s,
            cfg.superpose_config()?,
            cfg.bn_strategy()?,
            cfg.cycle_drop_fraction,
        )),
        None => Box::new(method),
    })
}

/// The method's start (initial masks or its resumed state), then the run directory: the log so
/// far and the effective configuration.
fn start(run: &mut Run, hooks: &mut dyn RunHooks) -> Result<()> {
    let (image, classes) = (run.net.input_shape, run.net.num_classes);
    let device = run.device.clone();
    let loader = run.train_loader.clone();
    let first_batch =
        || -> Result<(Tensor, Tensor)> { loader.batch(0, 0)?.to_tensors(image, classes, &device) };
    let from = run.from.take();
    let log = std::mem::take(&mut run.log);
    let resume = from.as_ref().map(|ck| Resume {
        checkpoint: ck,
        log: &log,
    });
    let (ctx, net, meta) = run.split_mut();
    hooks.start(&ctx, net, meta, resume, &first_batch)?;
    run.log = log;
    run.from = from;
    if crate::dist::is_writer() {
        run.lock = Some(run_dir::claim(&run.out, run.existing)?);
    }
    run.dp.check(&run.net, "at the start")?;
    let out = &run.out;
    report::write_log(&out.join(LOG_FILE), &run.log)?;
    checkpoint::write_atomic(&out.join("config.toml"), run.cfg.to_toml().as_bytes())?;
    run.meta.train_config = Some(run.cfg.clone());
    Ok(())
}

/// The epochs of this invocation; returns the last evaluation's metrics.
pub fn fit(run: &mut Run, hooks: &mut dyn RunHooks) -> Result<Option<Metrics>> {
    let first_epoch = run.meta.epoch;
    let last_epoch = match run.cfg.stop_after {
        Some(s) => (first_epoch + s).min(run.cfg.epochs),
        None => run.cfg.epochs,
    };
    let mut last_metrics = None;
    let run_start = Instant::now();
    let wall_before = run.meta.wall_seconds;
    if run.cfg.progress && first_epoch < last_epoch {
        eprintln!("{}", start_line(run));
    }
    for epoch in first_epoch..last_epoch {
        let epoch_start = Instant::now();
        let (mut entry, seen, train_secs) = train_epoch(run, hooks, epoch, last_epoch)?;
        if let Some(name) = super::finite::first_non_finite(&run.net)? {
            return Err(Error::Diverged(format!(
                "in epoch {}, {name} holds NaN or infinite values although the loss stayed finite (lr {}); nothing of this epoch was written; try a lower --lr",
                epoch + 1,
                entry.lr
            )));
        }
        let done = epoch + 1;
        // A ticket captured at this epoch's last step is evaluated now.
        let evaluate_now = done.is_multiple_of(run.cfg.eval_every)
            || done == last_epoch
            || hooks.must_evaluate((run.meta.step as usize).wrapping_sub(1));
        // Rank 0 evaluates (nothing that steers training depends on the metrics).
        let m = if evaluate_now && run.dp.is_writer() {
            let m = evaluate(&mut run.net, &run.eval_loader)?;
            last_metrics = Some(m);
            Some(m)
        } else {
            None
        };
        hooks.epoch_done(&run.context(), &run.net, &run.meta, done, m)?;
        entry.test_acc = m.map(|m| m.accuracy);
        entry.test_nll = m.map(|m| m.nll);
        entry.test_ece = m.map(|m| m.ece);
        entry.images_per_sec = seen as f64 / train_secs.max(1e-9);
        entry.seconds = epoch_start.elapsed().as_secs_f64();
        entry.density = hooks.log_density();
        if run.cfg.progress {
            eprintln!("{}", epoch_line(run, &entry, m, hooks.mask_changes()));
        }
        report::append_log(&run.out.join(LOG_FILE), &entry)?;
        run.log.push(entry);
        run.meta.epoch = done;
        run.dp.check(&run.net, &format!("after epoch {done}"))?;
        run.meta.rng = run.rng.state();
        run.meta.wall_seconds = wall_before + run_start.elapsed().as_secs_f64();
        let extra = hooks.save_state(&run.net, &mut run.meta);
        checkpoint::save_with(&run.out.join(CHECKPOINT_FILE), &run.net, &run.meta, &extra)?;
    }
    Ok(last_metrics)
}

/// One epoch of SGD steps; returns its log entry (training part), the examples seen and the
/// seconds spent in steps. Nothing comes back from the device between steps: the losses and
/// the count of correct predictions stay there, read only when progress shows and at the
/// epoch's end, where a non-finite loss is an error naming its step (before anything of the
/// epoch is written).
fn train_epoch(
    run: &mut Run,
    hooks: &mut dyn RunHooks,
    epoch: usize,
    last_epoch: usize,
) -> Result<(EpochLog, usize, f64)> {
    let ipe = run.ipe;
    let progress = Progress::new(run.cfg.progress, epoch, run.cfg.epochs, ipe);
    let mut losses = LossRecord::new(ipe, epoch, &run.device)?;
    // This rank's correct predictions and examples; `global` counts the examples of every
    // rank (the global batches), for the rate.
    let (mut seen, mut global) = (0usize, 0usize);
    let mut correct_dev = Tensor::zeros(&[1], &run.device)?;
    let mut train_secs = 0.0f64;
    let mut lr = run.schedule.lr_at(run.meta.step as usize, ipe);
    let mut t_step = Instant::now();
    for (i, b) in run.train_loader.epoch(epoch).enumerate() {
        let b = b?;
        let (rows, step_lr) = train_step(run, hooks, &b, &mut losses, &mut correct_dev)
            .map_err(|e| losses.explain(e))?;
        lr = step_lr;
        seen += rows;
        global += b.n;
        let now = Instant::now();
        train_secs += now.duration_since(t_step).as_secs_f64();
        t_step = now;
        if progress.shows(i + 1) {
            let (loss_sum, correct) = (losses.sum()?, correct_dev.scalar()? as f64);
            let per_step = train_secs / (i + 1) as f64;
            let eta = per_step * ((ipe - i - 1) + (last_epoch - epoch - 1) * ipe) as f64;
            progress.step(
                i + 1,
                loss_sum / seen as f64,
                correct / seen as f64,
                global as f64 / train_secs.max(1e-9),
                eta,
            );
        }
    }
    progress.finish();
    let (loss_sum, correct) = (losses.sum()?, correct_dev.scalar()? as usize);
    let [loss_sum, correct, _] = run.dp.epoch_totals(loss_sum, correct, seen)?;
    let seen = global;
    let entry = EpochLog {
        epoch: epoch + 1,
        step: run.meta.step,
        lr,
        train_loss: loss_sum / seen.max(1) as f64,
        train_acc: correct / seen.max(1) as f64,
        test_acc: None,
        test_nll: None,
        test_ece: None,
        images_per_sec: 0.0,
        seconds: 0.0,
        density: None,
    };
    Ok((entry, seen, train_secs))
}

/// One SGD step on batch `b`: forward/backward on this rank's rows, the optimiser step, the
/// method's mask update, the step's loss into `losses` and its correct predictions added to
/// `correct` (both on the device); returns the rows this rank trained on and the step's
/// learning rate.
fn train_step(
    run: &mut Run,
    hooks: &mut dyn RunHooks,
    b: &Batch,
    losses: &mut LossRecord,
    correct: &mut Tensor,
) -> Result<(usize, f32)> {
    let sgd = Sgd {
        momentum: run.cfg.momentum,
        weight_decay: run.cfg.weight_decay,
        nesterov: run.cfg.nesterov,
    };
    // Labels are checked on the host; `dp.step` uploads this process's rows of the batch.
    b.check_labels(run.net.num_classes)?;
    let it = run.meta.step as usize;
    let plan = hooks.plan_step(&run.context(), it);
    let shard = run.dp.step(&mut run.net, b, &run.device, plan.dense_grad)?;
    let outp = shard.out;
    let rows = shard.rows.len();
    losses.push(&outp.loss, run.meta.step, plan.lr, rows)?;
    sgd.step(&mut run.net.store, &outp.grads, plan.lr)?;
    run.meta.step += 1;
    hooks.step_done(it, &mut run.net, &outp.grads)?;
    run.dp
        .after_step(&mut run.net, hooks.mask_changes(), run.meta.step)?;
    outp.logprobs
        .backend()
        .count_correct(&outp.logprobs, &shard.labels, correct)?;
    Ok((rows, plan.lr))
}

/// report.json / report.md, the learning-rate, tickets and curves plots.
fn write_outputs(run: &Run, hooks: &dyn RunHooks, report: &Report) -> Result<()> {
    let out = &run.out;
    report.write(out, &run.log)?;
    let lr_svg = hooks.lr_svg(&run.context());
    checkpoint::write_atomic(&out.join("lr.svg"), lr_svg.as_bytes())?;
    if let (Some(t), Some(u)) = (&report.tickets, &report.ultimate) {
        checkpoint::write_atomic(
            &out.join("tickets.svg"),
            report::tickets_svg(t, u).as_bytes(),
        )?;
    }
    checkpoint::write_atomic(
        &out.join("curves.svg"),
        report::curves_svg(&run.log, run.eval_split).as_bytes(),
    )
}

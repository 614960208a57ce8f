//! The training loop: data, model, the sparse method's masks and mask updates
//! ([`SparseMethod`]), SGD with the scheduled learning rate, per-epoch evaluation,
//! `log.jsonl`, an atomic checkpoint after every epoch, and the final report and plots.
//! A run resumed from its checkpoint ends with exactly the weights of an uninterrupted run on
//! the CPU: the data order of epoch e depends only on (seed, e), and the checkpoint holds the
//! weights, masks, momenta, batch-norm statistics, step counter, RNG state and the method's
//! state.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::checkpoint::{self, Checkpoint, CheckpointMeta, ModelSpec};
use super::config::TrainConfig;
use super::flops::FlopsTable;
use super::metrics::{Metrics, MetricsAccumulator};
use super::report::{self, EnsembleMetrics, EpochLog, Report, TicketMetrics, UltimateMetrics};
use crate::data::{self, Dataset, DatasetKind, Loader, LoaderConfig, Split};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::{build, ModelConfig};
use crate::nn::Network;
use crate::optim::Sgd;
use crate::rng::Rng;
use crate::sparse::methods::{default_update_interval, MethodKind, SparseMethod};
use crate::suptickets::{
    bn_update_loader, BnAverager, BnStrategy, Ensemble, SupSchedule, Superposer,
};
use crate::tensor::Tensor;

/// File name of the checkpoint inside a run directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// File name of the last trained weights of a Sup-tickets run (the checkpoint holds the
/// ultimate ticket).
pub const LAST_FILE: &str = "last.safetensors";
/// File name of the per-epoch log inside a run directory.
pub const LOG_FILE: &str = "log.jsonl";

/// The folder of a Sup-tickets run's tickets: `W_<k>.safetensors`, each a checkpoint of the
/// weights captured at the end of cycle k (k = 0: the end of the normal phase), with the same
/// tensor names as `checkpoint.safetensors` (so `eval` evaluates any of them).
pub const TICKETS_DIR: &str = "tickets";

/// The file of ticket W_k in run directory `out`.
pub fn ticket_path(out: &Path, k: usize) -> PathBuf {
    out.join(TICKETS_DIR).join(format!("W_{k}.safetensors"))
}

/// RNG stream of the trainer's own generator (saved in checkpoints; for methods that draw
/// random numbers during training).
const TRAINER_STREAM: u64 = 0x7261_696e;

/// The checkpoint file of `path`: `path` itself if it is a file, else `path/checkpoint.safetensors`.
pub fn checkpoint_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(CHECKPOINT_FILE)
    } else {
        path.to_path_buf()
    }
}

/// The training and evaluation sets of `cfg` (the evaluation set is the validation split
/// when `valid_split > 0`, the test split otherwise), and the evaluation split's name.
pub fn datasets(
    cfg: &TrainConfig,
    need_train: bool,
) -> Result<(Option<Dataset>, Dataset, &'static str)> {
    let kind = DatasetKind::parse(&cfg.dataset)?;
    let dir = cfg.data_dir.as_deref();
    if cfg.valid_split > 0.0 {
        let full = data::load(kind, dir, Split::Train)?;
        let (train, valid) = data::split_validation(&full, cfg.valid_split, cfg.seed)?;
        Ok((need_train.then_some(train), valid, "validation"))
    } else {
        let train = if need_train {
            Some(data::load(kind, dir, Split::Train)?)
        } else {
            None
        };
        Ok((train, data::load(kind, dir, Split::Test)?, "test"))
    }
}

/// The evaluation loader of `cfg` over `set`.
pub fn eval_loader(cfg: &TrainConfig, set: impl Into<Arc<Dataset>>) -> Result<Loader> {
    let mut lc = LoaderConfig::eval(cfg.eval_batch_size);
    lc.limit = cfg.limit_test;
    Loader::new(set, lc)
}

/// Evaluates `net` (eval mode: running statistics) on every batch of `loader`.
pub fn evaluate(net: &mut Network, loader: &Loader) -> Result<Metrics> {
    let device = net.device();
    let [c, h, w] = net.input_shape;
    let k = net.num_classes;
    let mut acc = MetricsAccumulator::new();
    for b in loader.epoch(0) {
        let x = Tensor::from_slice(&b.x, &[b.n, c, h, w], &device)?;
        let lp = net.logprobs(&x)?.to_vec()?;
        acc.add(&lp, k, &b.y)?;
    }
    Ok(acc.finish())
}

/// The model configuration `cfg` asks for on its dataset (every dataset is 32×32).
pub fn model_config(cfg: &TrainConfig) -> Result<ModelConfig> {
    let kind = DatasetKind::parse(&cfg.dataset)?;
    Ok(ModelConfig {
        name: cfg.model.clone(),
        num_classes: kind.num_classes(),
        in_channels: kind.channels(),
        image_size: Some(32),
        width: cfg.width,
        seed: cfg.seed,
    })
}

/// Trains from scratch as `cfg` says; see [`train_from`].
pub fn train(cfg: &TrainConfig) -> Result<Report> {
    train_from(cfg, None)
}

/// Continues the run whose checkpoint is `from` (a run directory or a checkpoint file), writing
/// into `cfg.out`. The model must be the checkpoint's.
pub fn resume(cfg: &TrainConfig, from: &Path) -> Result<Report> {
    let ck = Checkpoint::read(&checkpoint_path(from))?;
    train_from(cfg, Some((ck, from.to_path_buf())))
}

/// Progress output: an indicatif bar on a terminal, plain lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    enabled: bool,
    every: usize,
}

impl Progress {
    fn new(enabled: bool, epoch: usize, epochs: usize, steps: usize) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let bar = (enabled && tty).then(|| {
            let b = indicatif::ProgressBar::new(steps as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            b.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
            b
        });
        Progress {
            bar,
            enabled,
            every: (steps / 10).max(1),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &self,
        epoch: usize,
        epochs: usize,
        i: usize,
        steps: usize,
        loss: f64,
        acc: f64,
        ips: f64,
        eta: f64,
    ) {
        let msg = format!("loss {loss:.4} acc {:.2}% {ips:.0} img/s", 100.0 * acc);
        if let Some(b) = &self.bar {
            b.set_position(i as u64);
            b.set_message(format!("{msg} ETA {}", fmt_secs(eta)));
        } else if self.enabled && (i.is_multiple_of(self.every) || i == steps) {
            eprintln!(
                "epoch {}/{epochs} step {i}/{steps} {msg} ETA {}",
                epoch + 1,
                fmt_secs(eta)
            );
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// `1h02m03s` / `2m03s` / `3s`.
pub fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    let (h, m, sec) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}h{m:02}m{sec:02}s")
    } else if m > 0 {
        format!("{m}m{sec:02}s")
    } else {
        format!("{sec}s")
    }
}

/// The run name and output directory (`runs/<name or timestamp>` when `out` is unset).
pub fn output_dir(cfg: &TrainConfig) -> PathBuf {
    if let Some(o) = &cfg.out {
        return o.clone();
    }
    let name = cfg.name.clone().unwrap_or_else(timestamp);
    PathBuf::from("runs").join(name)
}

/// UTC `YYYYmmdd-HHMMSS` of now.
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86400, secs % 86400);
    // civil date from days since 1970-01-01 (Howard Hinnant's algorithm)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// The learning rate of iteration `it` (0-based): the triangle rate of Eq. 3 inside a
/// Sup-tickets cycle, the base schedule (over the normal phase) otherwise.
pub fn iteration_lr(
    schedule: &super::schedule::LrSchedule,
    sup: Option<&SupSchedule>,
    it: usize,
    ipe: usize,
) -> f32 {
    sup.and_then(|ss| ss.cyclic_lr(it))
        .unwrap_or_else(|| schedule.lr_at(it, ipe))
}

/// The training loop, from scratch or from a checkpoint (and the directory it came from).
pub fn train_from(cfg: &TrainConfig, from: Option<(Checkpoint, PathBuf)>) -> Result<Report> {
    cfg.validate()?;
    crate::backend::sparse_policy::set_sparse_kernels(
        crate::backend::sparse_policy::SparseKernels::parse(&cfg.sparse_kernels)?,
    );
    crate::backend::sparse_policy::set_crossover(cfg.sparse_crossover)?;
    let device = Device::parse(&cfg.device)?;
    let out = output_dir(cfg);
    let name = cfg.name.clone().unwrap_or_else(|| {
        out.file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into())
    });

    let mcfg = model_config(cfg)?;
    let dataset_name = DatasetKind::parse(&cfg.dataset)?.name().to_string();

    // Model, state.
    let (mut net, mut meta, mut log) = match &from {
        None => {
            let net = build(&mcfg)?;
            let mut meta = CheckpointMeta::new(ModelSpec::from(&mcfg));
            meta.rng = Rng::derive(cfg.seed, TRAINER_STREAM).state();
            (net, meta, Vec::new())
        }
        Some((ck, from_dir)) => {
            let spec = ModelSpec::from(&mcfg);
            if ck.meta.model != spec {
                return Err(Error::Config(format!(
                    "{}: the checkpoint holds {:?} (width {}, {} classes, {} channels, seed {}), \
                     but the configuration asks for {:?} (width {}, {} classes, {} channels, seed {})",
                    ck.path.display(),
                    ck.meta.model.name,
                    ck.meta.model.width,
                    ck.meta.model.num_classes,
                    ck.meta.model.in_channels,
                    ck.meta.model.seed,
                    spec.name,
                    spec.width,
                    spec.num_classes,
                    spec.in_channels,
                    spec.seed
                )));
            }
            let net = ck.build_network()?;
            let dir = if from_dir.is_dir() {
                from_dir.clone()
            } else {
                from_dir.parent().map(Path::to_path_buf).unwrap_or_default()
            };
            let mut log = report::read_log(&dir.join(LOG_FILE))?;
            log.retain(|e| e.epoch <= ck.meta.epoch);
            let mut meta = ck.meta.clone();
            meta.train_config = Some(cfg.clone());
            (net, meta, log)
        }
    };
    net.to_device(&device)?;
    let mut rng = Rng::from_state(meta.rng);
    let (train_set, eval_set, eval_split) = datasets(cfg, true)?;
    let train_set = train_set.expect("requested");
    let shape = [train_set.channels, train_set.height, train_set.width];
    let [c_in, h_in, w_in] = shape;
    if shape != net.input_shape || train_set.num_classes != net.num_classes {
        return Err(Error::Config(format!(
            "{}: images {shape:?} with {} classes do not fit the model's input {:?} and {} classes",
            train_set.name, train_set.num_classes, net.input_shape, net.num_classes
        )));
    }
    let mut lc = LoaderConfig::train(cfg.batch_size, cfg.seed);
    lc.limit = cfg.limit_train;
    let n_train = cfg.limit_train.map_or(train_set.n, |l| l.min(train_set.n));
    // A final batch of one example would give batch norm a single sample per channel in the
    // classifier's BatchNorm1d (VGG); drop it rather than train on it.
    lc.drop_last = n_train % cfg.batch_size == 1 && n_train > 1;
    let train_loader = Loader::new(train_set, lc)?;
    let eval_loader = eval_loader(cfg, eval_set)?;
    let ipe = train_loader.batches_per_epoch();
    if ipe == 0 {
        return Err(Error::Config("the training set is empty".into()));
    }

    // Sup-tickets: the budget split and the per-iteration schedule of the cycles.
    let sup_sched = match cfg.sup_budget()? {
        Some(b) => Some(SupSchedule::new(
            b,
            ipe,
            cfg.cycle_lr_low,
            cfg.cycle_lr_high,
        )?),
        None => None,
    };
    if let (Some(ss), Some((ck, _))) = (&sup_sched, &from) {
        if ck.meta.epoch >= ss.budget.normal_epochs {
            let why = if ck.meta.sup_tickets.is_none() && ck.meta.epoch >= cfg.epochs {
                Some("the run is finished (its checkpoint holds the ultimate ticket)")
            } else if ck.meta.sup_tickets.is_none() {
                Some("the checkpoint has no superposition state")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(Error::Config(format!(
                    "{}: resuming a Sup-tickets run inside (or after) its cyclic phase is not supported here: {why} \
                     (the checkpoint is at epoch {}, the cycles start after epoch {})",
                    ck.path.display(),
                    ck.meta.epoch,
                    ss.budget.normal_epochs
                )));
            }
        }
    }
    // The sparse method: masks drawn now for a fresh run, or taken from the checkpoint. With
    // Sup-tickets its horizon is the normal phase only (exploration stops before the cycles).
    let total_steps = (cfg.epochs * ipe) as u64;
    let mut method = SparseMethod::new(cfg.sparse_config(ipe)?, &mut net, ipe, total_steps)?;
    method.end_exploration_by((cfg.base_epochs() * ipe) as u64);
    if from.is_none() {
        if method.kind() == MethodKind::Snip {
            // SNIP scores connections on the first training batch of the run.
            let b = train_loader.batch(0, 0);
            let x = Tensor::from_slice(&b.x, &[b.n, c_in, h_in, w_in], &device)?;
            let y = Tensor::from_slice(&b.y, &[b.n], &device)?;
            method.init_masks(&mut net, Some((&x, &y)))?;
        } else {
            method.init_masks(&mut net, None)?;
        }
    } else {
        method.resume(&net.store, meta.sparse.clone())?;
    }
    meta.sparse = Some(method.state().clone());

    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let log_path = out.join(LOG_FILE);
    report::write_log(&log_path, &log)?;
    std::fs::write(out.join("config.toml"), cfg.to_toml())
        .map_err(|e| Error::io(out.join("config.toml"), e))?;
    meta.train_config = Some(cfg.clone());

    let schedule = cfg.lr_schedule();
    let sgd = Sgd {
        momentum: cfg.momentum,
        weight_decay: cfg.weight_decay,
        nesterov: cfg.nesterov,
    };
    let [c, h, w] = net.input_shape;
    let k = net.num_classes;
    let first_epoch = meta.epoch;
    let last_epoch = match cfg.stop_after {
        Some(s) => (first_epoch + s).min(cfg.epochs),
        None => cfg.epochs,
    };
    let mut last_metrics: Option<Metrics> = None;
    // Sup-tickets state.
    let mut superposer: Option<Superposer> = None;
    let mut bn_avg: Option<BnAverager> = None;
    let mut tickets: Vec<TicketMetrics> = Vec::new();
    let sup_cfg = cfg.superpose_config()?;
    let bn_strategy = BnStrategy::parse(&cfg.bn)?;
    // FLOPs of the cyclic phase (per example): Σ over its steps, and the step count.
    let (mut cyc_flops, mut cyc_steps) = (0.0f64, 0u64);
    // Resuming inside the cyclic phase: the superposition state and the tickets so far.
    if let (Some(ss), Some((ck, _))) = (&sup_sched, &from) {
        if let Some(n) = ck
            .meta
            .sup_tickets
            .filter(|_| meta.epoch >= ss.budget.normal_epochs)
        {
            let mut get = |name: &str| ck.sup_tensor(name, &device);
            let mut sp = Superposer::new(&sup_cfg, &net.store)?;
            sp.load_state(&net.store, n, &mut get)?;
            superposer = Some(sp);
            if bn_strategy == BnStrategy::Average {
                let mut b = BnAverager::new(sup_cfg.averaging, &net.store)?;
                b.load_state(n, &mut get)?;
                bn_avg = Some(b);
            }
            for e in &log {
                let it = (e.epoch * ipe).wrapping_sub(1);
                if let (Some(k), Some(acc)) = (ss.capture(it), e.test_acc) {
                    tickets.push(TicketMetrics {
                        ticket: k,
                        epoch: e.epoch,
                        accuracy: acc,
                        nll: e.test_nll.unwrap_or(f64::NAN),
                        ece: e.test_ece.unwrap_or(f64::NAN),
                    });
                }
            }
            // The cyclic steps already taken, for the FLOPs count.
            let done = meta.epoch - ss.budget.normal_epochs;
            cyc_steps = (done * ipe) as u64;
            let starts = done.div_ceil(ss.budget.cycle) as u64;
            cyc_flops = (cyc_steps - starts) as f64 * method.cycle_step_flops(false)
                + starts as f64 * method.cycle_step_flops(true);
        }
    }
    let run_start = Instant::now();
    let wall_before = meta.wall_seconds;
    if cfg.progress && first_epoch < last_epoch {
        eprintln!(
            "training {} ({} parameters) on {} ({} examples, {} steps/epoch), evaluating on {} {} examples, device {}, output {}",
            net.arch,
            net.store.num_params(),
            dataset_name,
            n_train,
            ipe,
            eval_loader.len(),
            eval_split,
            device.name(),
            out.display()
        );
    }

    for epoch in first_epoch..last_epoch {
        let epoch_start = Instant::now();
        let progress = Progress::new(cfg.progress, epoch, cfg.epochs, ipe);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut train_secs = 0.0f64;
        let mut lr = schedule.lr_at(meta.step as usize, ipe);
        let mut t_step = Instant::now();
        for (i, b) in train_loader.epoch(epoch).enumerate() {
            let x = Tensor::from_slice(&b.x, &[b.n, c, h, w], &device)?;
            let y = Tensor::from_slice(&b.y, &[b.n], &device)?;
            let it = meta.step as usize;
            let cyclic_lr = sup_sched.as_ref().and_then(|ss| ss.cyclic_lr(it));
            let cycle_start = sup_sched.as_ref().and_then(|ss| ss.cycle_start(it));
            lr = iteration_lr(&schedule, sup_sched.as_ref(), it, ipe);
            let step = meta.step + 1;
            let dense_grad = match cyclic_lr {
                Some(_) => cycle_start.is_some() && method.cycle_needs_dense_grad(),
                None => method.needs_dense_grad(step),
            };
            let outp = net.forward_backward_with(&x, &y, dense_grad)?;
            if !outp.loss.is_finite() {
                return Err(Error::Config(format!(
                    "training diverged: loss {} at epoch {} step {} (lr {lr}); try a lower --lr",
                    outp.loss,
                    epoch + 1,
                    meta.step
                )));
            }
            sgd.step(&mut net.store, &outp.grads, lr)?;
            meta.step = step;
            if cyclic_lr.is_none() {
                method.after_step(step, &mut net, &outp.grads)?;
            } else {
                // The cyclic phase: no mask update of the base method; one exploration step
                // (the base method's, with drop fraction q) at each cycle start.
                cyc_flops += method.cycle_step_flops(cycle_start.is_some());
                if let Some(cycle) = cycle_start {
                    method.explore_cycle(&mut net, cfg.cycle_drop_fraction, cycle, &outp.grads)?;
                }
                cyc_steps += 1;
            }
            if let Some(k) = sup_sched.as_ref().and_then(|ss| ss.capture(it)) {
                if k == 0 {
                    superposer = Some(Superposer::new(&sup_cfg, &net.store)?);
                    if bn_strategy == BnStrategy::Average {
                        bn_avg = Some(BnAverager::new(sup_cfg.averaging, &net.store)?);
                    }
                } else if let Some(sp) = superposer.as_mut() {
                    sp.add_ticket(k, &net.store)?;
                    if let Some(b) = bn_avg.as_mut() {
                        b.add_ticket(k, &net.store)?;
                    }
                }
            }
            let lp = outp.logprobs.to_vec()?;
            for (row, &yy) in lp.chunks_exact(k).zip(&b.y) {
                let mut best = 0;
                for (j, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = j;
                    }
                }
                correct += (best == yy as usize) as usize;
            }
            loss_sum += outp.loss as f64 * b.n as f64;
            seen += b.n;
            let now = Instant::now();
            train_secs += now.duration_since(t_step).as_secs_f64();
            t_step = now;
            let ips = seen as f64 / train_secs.max(1e-9);
            let per_step = train_secs / (i + 1) as f64;
            let eta = per_step * ((ipe - i - 1) + (last_epoch - epoch - 1) * ipe) as f64;
            progress.step(
                epoch,
                cfg.epochs,
                i + 1,
                ipe,
                loss_sum / seen as f64,
                correct as f64 / seen as f64,
                ips,
                eta,
            );
        }
        progress.finish();
        let done = epoch + 1;
        // A ticket captured at this epoch's last step is evaluated now.
        let captured = sup_sched
            .as_ref()
            .and_then(|ss| ss.capture((meta.step as usize).wrapping_sub(1)));
        let evaluate_now =
            done.is_multiple_of(cfg.eval_every) || done == last_epoch || captured.is_some();
        let m = if evaluate_now {
            let m = evaluate(&mut net, &eval_loader)?;
            last_metrics = Some(m);
            Some(m)
        } else {
            None
        };
        if let Some(k) = captured {
            // The ticket goes to disk before the epoch's checkpoint: a run killed in between
            // redoes the epoch and writes it again.
            let mut ticket_meta = meta.clone();
            ticket_meta.epoch = done;
            ticket_meta.sup_tickets = None;
            let dir = out.join(TICKETS_DIR);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            checkpoint::save(&ticket_path(&out, k), &net, &ticket_meta)?;
        }
        if let (Some(k), Some(m)) = (captured, m) {
            tickets.push(TicketMetrics {
                ticket: k,
                epoch: done,
                accuracy: m.accuracy,
                nll: m.nll,
                ece: m.ece,
            });
            if cfg.progress {
                eprintln!(
                    "ticket W_{k} captured at epoch {done}: {eval_split} acc {:.2}% nll {:.4} ece {:.4}",
                    100.0 * m.accuracy,
                    m.nll,
                    m.ece
                );
            }
        }
        let entry = EpochLog {
            epoch: done,
            step: meta.step,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            train_acc: correct as f64 / seen.max(1) as f64,
            test_acc: m.map(|m| m.accuracy),
            test_nll: m.map(|m| m.nll),
            test_ece: m.map(|m| m.ece),
            images_per_sec: seen as f64 / train_secs.max(1e-9),
            seconds: epoch_start.elapsed().as_secs_f64(),
            density: method.kind().is_sparse().then(|| method.density()),
        };
        if cfg.progress {
            let test = match m {
                Some(m) => format!(
                    ", {eval_split} acc {:.2}% nll {:.4} ece {:.4}",
                    100.0 * m.accuracy,
                    m.nll,
                    m.ece
                ),
                None => String::new(),
            };
            let sparse = match entry.density {
                Some(d) => format!(
                    ", density {d:.4} ({} mask updates)",
                    method.state().updates + method.state().prune_steps
                ),
                None => String::new(),
            };
            eprintln!(
                "epoch {done}/{}: lr {:.4} train loss {:.4} acc {:.2}%{test}, {:.0} img/s, {:.1} s{sparse}",
                cfg.epochs,
                lr,
                entry.train_loss,
                100.0 * entry.train_acc,
                entry.images_per_sec,
                entry.seconds
            );
        }
        report::append_log(&log_path, &entry)?;
        log.push(entry);
        meta.epoch = done;
        meta.rng = rng.state();
        meta.wall_seconds = wall_before + run_start.elapsed().as_secs_f64();
        meta.sparse = Some(method.state().clone());
        let mut extra = Vec::new();
        if let Some(sp) = &superposer {
            meta.sup_tickets = Some(sp.tickets());
            extra = sp.state_tensors(&net.store);
            if let Some(b) = &bn_avg {
                extra.extend(b.state_tensors());
            }
        }
        checkpoint::save_with(&out.join(CHECKPOINT_FILE), &net, &meta, &extra)?;
    }
    // Keep the generator "used" so its state is what a later method would continue from.
    let _ = &mut rng;

    // Sup-tickets, finished: the last trained weights go to last.safetensors; the ultimate
    // ticket S_K (with its batch-norm statistics) replaces them in the network. The checkpoint
    // keeps W_K and the superposition state until the very last write, after the report: a run
    // killed anywhere before it resumes into this finalisation, one killed after it is complete.
    let mut ultimate_info: Option<(usize, usize, Option<EnsembleMetrics>)> = None;
    let mut bu_flops = 0.0f64;
    let finalise = superposer.is_some() && meta.epoch >= cfg.epochs && meta.sup_tickets.is_some();
    if let (Some(sp), true) = (&superposer, finalise) {
        checkpoint::save(&out.join(LAST_FILE), &net, &meta)?;
        let ens = if cfg.ensemble {
            Some(ensemble_of_tickets(
                &out,
                sp.tickets(),
                &device,
                &eval_loader,
            )?)
        } else {
            None
        };
        sp.apply_to(&mut net.store)?;
        let mut bu = 0usize;
        match &bn_avg {
            Some(b) => b.apply_to(&mut net.store)?,
            None => {
                bn_update_loader(&mut net, &train_loader, cfg.epochs)?;
                bu = n_train;
            }
        }
        ultimate_info = Some((sp.tickets(), bu, ens));
        last_metrics = Some(evaluate(&mut net, &eval_loader)?);
        meta.sup_tickets = None;
        bu_flops = bu as f64 * method.flops_sparse();
    }
    let metrics = match last_metrics {
        Some(m) => m,
        None => evaluate(&mut net, &eval_loader)?,
    };
    if meta.epoch == first_epoch && !finalise {
        // Nothing trained in this invocation: still leave a checkpoint behind.
        checkpoint::save(&out.join(CHECKPOINT_FILE), &net, &meta)?;
    }
    let table = FlopsTable::of(&mut net)?;
    let maskable = net.store.num_maskable();
    let maskable_nonzero: usize = {
        let mut nz = 0;
        for p in net.store.params.iter().filter(|p| p.is_maskable()) {
            nz += match &p.mask {
                Some(m) => m.to_vec()?.iter().filter(|&&v| v != 0.0).count(),
                None => p.value.numel(),
            };
        }
        nz
    };
    let params = net.store.num_params();
    let kind = method.kind();
    let mut train_flops_multiple = if method.state().flops_steps > 0 {
        method.train_flops_multiple()
    } else {
        table.train_flops_multiple(kind)
    };
    if cyc_steps > 0 || bu_flops > 0.0 {
        // Sup-tickets: the base method's steps, the cyclic steps (one dense gradient per
        // cycle start) and the BU pass, over (all steps · 3f_D) per example.
        let base_steps = method.state().flops_steps as f64;
        let base = train_flops_multiple * base_steps * 3.0 * method.flops_dense();
        let all_steps = base_steps + cyc_steps as f64;
        // The BU pass (N_train · f_S) in per-step units of one example: / batch size.
        let bu_per_example = bu_flops / cfg.batch_size as f64;
        train_flops_multiple = (base + cyc_flops + bu_per_example)
            / (all_steps * 3.0 * method.flops_dense()).max(f64::MIN_POSITIVE);
    }
    let (ultimate, ensemble_metrics) = match ultimate_info {
        Some((n_tickets, _, ens)) => (
            Some(UltimateMetrics {
                accuracy: metrics.accuracy,
                nll: metrics.nll,
                ece: metrics.ece,
                density: if maskable == 0 {
                    1.0
                } else {
                    maskable_nonzero as f64 / maskable as f64
                },
                nonzero: maskable_nonzero,
                tickets: n_tickets,
                averaging: sup_cfg.averaging.name().into(),
                reprune: sup_cfg.reprune.name().into(),
                bn: bn_strategy.name().into(),
            }),
            ens,
        ),
        None => (None, None),
    };
    let ips: Vec<f64> = log.iter().map(|e| e.images_per_sec).collect();
    let report = Report {
        version: env!("CARGO_PKG_VERSION").into(),
        name,
        model: meta.model.clone(),
        config: cfg.clone(),
        device: device.name(),
        dataset: dataset_name,
        eval_split: eval_split.into(),
        test_examples: metrics.n,
        test_accuracy: metrics.accuracy,
        test_nll: metrics.nll,
        test_ece: metrics.ece,
        train_loss: log.last().map_or(f64::NAN, |e| e.train_loss),
        train_accuracy: log.last().map_or(f64::NAN, |e| e.train_acc),
        epochs_completed: meta.epoch,
        steps: meta.step,
        finished: meta.epoch >= cfg.epochs,
        params,
        params_nonzero: params - maskable + maskable_nonzero,
        maskable_params: maskable,
        sparsity: if maskable == 0 {
            0.0
        } else {
            1.0 - maskable_nonzero as f64 / maskable as f64
        },
        method: kind.name().into(),
        update_interval: kind.explores().then_some(method.config().update_interval),
        update_interval_rule: kind.explores().then(|| match cfg.update_interval {
            Some(dt) => format!("set by --update-interval: ΔT = {dt}"),
            None => default_update_interval(ipe, cfg.epochs * ipe).1,
        }),
        exploration_horizon: kind.explores().then_some(method.exploration_horizon()),
        prune_window: (kind == MethodKind::Granet).then_some(method.prune_window()),
        mask_updates: method.state().updates,
        prune_steps: method.state().prune_steps,
        flops_dense: table.flops_dense(),
        flops_sparse: table.flops_sparse(),
        train_flops_multiple,
        test_flops_multiple: table.test_flops_multiple(),
        wall_seconds: meta.wall_seconds,
        images_per_sec: if ips.is_empty() {
            0.0
        } else {
            ips.iter().sum::<f64>() / ips.len() as f64
        },
        layers: table.layers,
        tickets: sup_sched.is_some().then(|| tickets.clone()),
        ultimate,
        ensemble: ensemble_metrics,
    };
    report.write(&out, &log)?;
    let lr_svg = match &sup_sched {
        Some(ss) => report::sup_lr_svg(&schedule, ss, ipe),
        None => report::lr_svg(&schedule, ipe),
    };
    checkpoint::write_atomic(&out.join("lr.svg"), lr_svg.as_bytes())?;
    if let (Some(t), Some(u)) = (&report.tickets, &report.ultimate) {
        checkpoint::write_atomic(
            &out.join("tickets.svg"),
            report::tickets_svg(t, u).as_bytes(),
        )?;
    }
    checkpoint::write_atomic(
        &out.join("curves.svg"),
        report::curves_svg(&log, eval_split).as_bytes(),
    )?;
    if finalise {
        // The last write of a Sup-tickets run: the ultimate ticket replaces W_K.
        checkpoint::save(&out.join(CHECKPOINT_FILE), &net, &meta)?;
    }
    Ok(report)
}

/// The deep ensemble of the `count` tickets W_0..W_{count-1} read back from the run's
/// `tickets/` folder, evaluated on `loader` (SPEC §5, paper appendix E).
fn ensemble_of_tickets(
    out: &Path,
    count: usize,
    device: &Device,
    loader: &Loader,
) -> Result<EnsembleMetrics> {
    let mut e = Ensemble::new();
    let mut net = None;
    for k in 0..count {
        let ck = Checkpoint::read(&ticket_path(out, k))?;
        let mut n = ck.build_network()?;
        n.to_device(device)?;
        e.add_ticket(&n.store)?;
        net = Some(n);
    }
    let mut net = net.expect("at least ticket W_0");
    let r = e.evaluate_loader(&mut net, loader)?;
    Ok(EnsembleMetrics {
        members: e.len(),
        accuracy: r.ensemble.accuracy,
        nll: r.ensemble.nll,
        ece: r.ensemble.ece,
    })
}

/// What `suptickets eval` prints.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EvalResult {
    /// The checkpoint evaluated.
    pub checkpoint: String,
    /// Model name.
    pub model: String,
    /// Dataset name.
    pub dataset: String,
    /// `test` or `validation`.
    pub eval_split: String,
    /// Examples evaluated.
    pub test_examples: usize,
    /// Top-1 accuracy.
    pub test_accuracy: f64,
    /// Mean NLL.
    pub test_nll: f64,
    /// ECE (15 bins).
    pub test_ece: f64,
    /// Epochs the checkpoint was trained for.
    pub epoch: usize,
    /// Device used.
    pub device: String,
}

/// Evaluates a checkpoint on the split its run evaluated on (same dataset, limit and validation
/// split), optionally with another data directory or device; reproduces `report.json`'s
/// `test_*` numbers.
pub fn eval_checkpoint(
    path: &Path,
    data_dir: Option<&Path>,
    device: Option<&str>,
) -> Result<EvalResult> {
    let file = checkpoint_path(path);
    let ck = Checkpoint::read(&file)?;
    let mut cfg = ck.meta.train_config.clone().ok_or_else(|| {
        Error::data(
            &file,
            "the checkpoint has no training configuration (dataset unknown)",
        )
    })?;
    if let Some(d) = data_dir {
        cfg.data_dir = Some(d.to_path_buf());
    }
    if let Some(d) = device {
        cfg.device = d.to_string();
    }
    if ck.meta.sup_tickets.is_some() && ck.meta.epoch >= cfg.epochs {
        return Err(Error::data(
            &file,
            "this Sup-tickets run was trained to its last epoch but its finalisation (superposing \
             the tickets into the ultimate ticket) did not complete; finish it with \
             `suptickets train --resume <run directory>`",
        ));
    }
    let device = Device::parse(&cfg.device)?;
    let (_, set, split) = datasets(&cfg, false)?;
    let loader = eval_loader(&cfg, set)?;
    let mut net = ck.build_network()?;
    net.to_device(&device)?;
    let m = evaluate(&mut net, &loader)?;
    Ok(EvalResult {
        checkpoint: file.display().to_string(),
        model: ck.meta.model.name.clone(),
        dataset: cfg.dataset.clone(),
        eval_split: split.into(),
        test_examples: m.n,
        test_accuracy: m.accuracy,
        test_nll: m.nll,
        test_ece: m.ece,
        epoch: ck.meta.epoch,
        device: device.name(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suptickets::Budget;

    #[test]
    fn iteration_lr_follows_eq3_in_the_cycles() {
        // E = 10, C = 2, r = 0.4: P = 6 normal epochs, K = 2 cycles, 5 iterations per epoch.
        let cfg = TrainConfig {
            epochs: 10,
            method: MethodKind::Rigl,
            suptickets: true,
            cycle_epochs: 2,
            cycle_fraction: 0.4,
            ..TrainConfig::default()
        };
        cfg.validate().unwrap();
        let ipe = 5;
        let b = cfg.sup_budget().unwrap().unwrap();
        assert_eq!(b, Budget::new(10, 2, 0.4).unwrap());
        assert_eq!((b.normal_epochs, b.tickets), (6, 2));
        let sched = cfg.lr_schedule();
        assert_eq!(
            sched.epochs, 6,
            "the base schedule spans the normal phase only"
        );
        let ss = SupSchedule::new(b, ipe, cfg.cycle_lr_low, cfg.cycle_lr_high).unwrap();
        let (a1, a2) = (0.001f64, 0.005f64);
        let p = 6 * ipe;
        let l = 2 * ipe;
        for it in 0..10 * ipe {
            let lr = iteration_lr(&sched, Some(&ss), it, ipe) as f64;
            if it < p {
                assert_eq!(lr as f32, sched.lr_at(it, ipe), "normal phase, it {it}");
            } else {
                let tau = ((it - p) % l + 1) as f64 / l as f64;
                let want = if tau <= 0.5 {
                    (1.0 - 2.0 * tau) * a1 + 2.0 * tau * a2
                } else {
                    (2.0 - 2.0 * tau) * a2 + (2.0 * tau - 1.0) * a1
                };
                assert!((lr - want).abs() < 1e-7, "it {it}: {lr} vs {want}");
            }
        }
        // the last iteration of each cycle is at α1, mid-cycle at α2
        assert!((iteration_lr(&sched, Some(&ss), p + l - 1, ipe) as f64 - a1).abs() < 1e-9);
        assert!((iteration_lr(&sched, Some(&ss), p + ipe - 1, ipe) as f64 - a2).abs() < 1e-9);
        assert_eq!(ss.capture(p - 1), Some(0));
        assert_eq!(ss.cycle_start(p), Some(1));
        assert_eq!(ss.capture(p + 2 * l - 1), Some(2));
    }

    #[test]
    fn suptickets_settings_are_checked() {
        let err = |c: TrainConfig| c.validate().unwrap_err().to_string();
        let rigl = TrainConfig {
            method: MethodKind::Rigl,
            suptickets: true,
            epochs: 10,
            cycle_epochs: 1,
            ..TrainConfig::default()
        };
        rigl.validate().unwrap();
        for r in [0.0, -0.1, 1.5, f64::NAN] {
            assert!(err(TrainConfig {
                cycle_fraction: r,
                ..rigl.clone()
            })
            .contains("--cycle-fraction"));
        }
        assert!(err(TrainConfig {
            method: MethodKind::Dense,
            ..rigl.clone()
        })
        .contains("sparse --method"));
        assert!(err(TrainConfig {
            suptickets: false,
            ..rigl.clone()
        })
        .contains("--cycle-epochs has no effect without --suptickets"));
        assert!(err(TrainConfig {
            average: "mean".into(),
            ..rigl.clone()
        })
        .contains("mean"));
        assert!(err(TrainConfig {
            bn: "xx".into(),
            ..rigl.clone()
        })
        .contains("--bn"));
        assert!(err(TrainConfig {
            cycle_fraction: 1.0,
            ..rigl.clone()
        })
        .contains("normal phase"));
        let toml = "method = \"set\"\nsuptickets = true\ncycle_epochs = 1\naverage = \"caa\"\nbn = \"bu\"\n";
        let c = TrainConfig::from_toml(toml).unwrap();
        c.validate().unwrap();
        assert_eq!(TrainConfig::from_toml(&c.to_toml()).unwrap(), c);
    }
}

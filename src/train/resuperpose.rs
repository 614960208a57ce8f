//! `suptickets superpose`: superposes the tickets a Sup-tickets run saved in `tickets/` again,
//! with any averaging, re-pruning and batch-norm setting, without training again. The cycles do
//! not depend on how tickets are superposed (training continues from W_k, never from S_k), so
//! this gives exactly what a run with those settings would have reported: the CIA / CAA / CIMA
//! × AV / BU ablation from one run.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::checkpoint::{self, Checkpoint};
use super::config::TrainConfig;
use super::metrics::Metrics;
use super::trainer::{datasets, eval_loader, evaluate, ticket_path};
use crate::data::{Loader, LoaderConfig};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::Network;
use crate::suptickets::{
    bn_update_loader, AverageKind, BnAverager, BnStrategy, Reprune, Superposer,
};

/// What to superpose: the run, and the settings that replace the run's own.
#[derive(Clone, Debug)]
pub struct ResuperposeArgs {
    /// The run directory (holding `tickets/W_k.safetensors`).
    pub run: PathBuf,
    /// Averaging (`cia`, `caa`, `cima`); the run's when None.
    pub average: Option<AverageKind>,
    /// CIMA's β; the run's when None.
    pub cima_beta: Option<f32>,
    /// Re-pruning (`global`, `layerwise`); the run's when None.
    pub reprune: Option<Reprune>,
    /// Batch norm (`av`, `bu`); the run's when None.
    pub bn: Option<BnStrategy>,
    /// Device (`cpu`, `cuda[:N]`); the run's when None.
    pub device: Option<String>,
    /// Where to write the superposed ticket as a checkpoint (optional).
    pub out: Option<PathBuf>,
}

/// The superposed ticket's metrics and the settings that made it.
#[derive(Clone, Debug, Serialize)]
pub struct ResuperposeResult {
    /// The run directory.
    pub run: String,
    /// Tickets superposed (W_0..W_{n-1}).
    pub tickets: usize,
    /// Averaging.
    pub average: String,
    /// Re-pruning.
    pub reprune: String,
    /// Batch norm.
    pub bn: String,
    /// Density of the maskable tensors of the result.
    pub density: f64,
    /// Split evaluated on.
    pub eval_split: String,
    /// Accuracy, NLL and ECE.
    pub metrics: Metrics,
}

/// The tickets saved in `run`'s `tickets/` folder, W_0 first (at least W_0 and W_1).
pub fn saved_tickets(run: &Path) -> Result<Vec<PathBuf>> {
    let paths: Vec<PathBuf> = (0..)
        .map(|k| ticket_path(run, k))
        .take_while(|p| p.exists())
        .collect();
    if paths.len() < 2 {
        return Err(Error::Config(format!(
            "{}: found {} saved ticket(s) (tickets/W_k.safetensors); superposing needs W_0 and at least W_1 from a finished Sup-tickets run",
            run.display(),
            paths.len()
        )));
    }
    Ok(paths)
}

/// Superposes the saved tickets of `a.run` with the settings of `a` and evaluates the result.
pub fn resuperpose(a: &ResuperposeArgs) -> Result<ResuperposeResult> {
    let paths = saved_tickets(&a.run)?;
    let first = Checkpoint::read(&paths[0])?;
    let mut cfg: TrainConfig = first
        .meta
        .train_config
        .clone()
        .ok_or_else(|| Error::data(&paths[0], "the ticket has no training configuration"))?;
    override_settings(&mut cfg, a);
    let sup_cfg = cfg.superpose_config()?;
    let bn = cfg.bn;
    let device = Device::parse(&cfg.device)?;
    let load = |p: &Path| -> Result<Network> {
        let mut n = Checkpoint::read(p)?.build_network()?;
        n.to_device(&device)?;
        Ok(n)
    };
    let mut net = load(&paths[0])?;
    let mut sp = Superposer::new(&sup_cfg, &net.store)?;
    let mut bn_avg = match bn {
        BnStrategy::Average => Some(BnAverager::new(sup_cfg.averaging, &net.store)?),
        BnStrategy::Update => None,
    };
    for (k, p) in paths.iter().enumerate().skip(1) {
        net = load(p)?;
        sp.add_ticket(k, &net.store)?;
        if let Some(b) = bn_avg.as_mut() {
            b.add_ticket(k, &net.store)?;
        }
    }
    sp.apply_to(&mut net.store)?;
    match &bn_avg {
        Some(b) => b.apply_to(&mut net.store)?,
        None => bn_update(&mut net, &cfg)?,
    }
    let (_, set, split) = datasets(&cfg, false)?;
    let metrics = evaluate(&mut net, &eval_loader(&cfg, set)?)?;
    if let Some(out) = &a.out {
        let mut meta = first.meta.clone();
        meta.epoch = cfg.epochs;
        meta.sup_tickets = None;
        meta.train_config = Some(cfg.clone());
        checkpoint::save(out, &net, &meta)?;
    }
    let (mut nz, mut total) = (0usize, 0usize);
    for p in net.store.params.iter().filter(|p| p.is_maskable()) {
        total += p.value.numel();
        nz += match p.mask() {
            Some(m) => m.to_vec()?.iter().filter(|&&v| v != 0.0).count(),
            None => p.value.numel(),
        };
    }
    Ok(ResuperposeResult {
        run: a.run.display().to_string(),
        tickets: paths.len(),
        average: sup_cfg.averaging.name().into(),
        reprune: sup_cfg.reprune.name().into(),
        bn: bn.name().into(),
        density: nz as f64 / total.max(1) as f64,
        eval_split: split.into(),
        metrics,
    })
}

fn override_settings(cfg: &mut TrainConfig, a: &ResuperposeArgs) {
    if let Some(v) = &a.average {
        cfg.average = *v;
    }
    if let Some(v) = a.cima_beta {
        cfg.cima_beta = v;
    }
    if let Some(v) = &a.reprune {
        cfg.reprune = *v;
    }
    if let Some(v) = &a.bn {
        cfg.bn = *v;
    }
    if let Some(v) = &a.device {
        cfg.device = v.clone();
    }
}

/// BU: batch-norm statistics recomputed with one pass over the run's training set.
fn bn_update(net: &mut Network, cfg: &TrainConfig) -> Result<()> {
    let (train, _, _) = datasets(cfg, true)?;
    let train = train.expect("requested");
    let n = cfg.limit_train.map_or(train.len(), |l| l.min(train.len()));
    let mut lc = LoaderConfig::train(cfg.batch_size, cfg.seed);
    lc.limit = cfg.limit_train;
    lc.drop_last = n % cfg.batch_size == 1 && n > 1; // as the training loop
    let loader = Loader::new(train, lc)?;
    bn_update_loader(net, &loader, cfg.epochs)?;
    Ok(())
}

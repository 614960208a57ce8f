//! The `suptickets` command-line program: `train`, `eval`, `flops` and `info`.
//!
//! Every failure is printed as one `error: ...` line on stderr with a non-zero exit status;
//! the program never panics on bad input.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use suptickets::error::{Error, Result};
use suptickets::train::checkpoint::Checkpoint;
use suptickets::train::config::{toml_keys, OptionSources, TrainFlags};
use suptickets::train::trainer::{checkpoint_path, eval_checkpoint, output_dir, train_from_with};
use suptickets::train::{Report, TrainConfig};

/// `println!` that ignores a closed stdout (e.g. `suptickets info | head`) instead of panicking.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

mod cli;
use cli::bench::{cmd_bench, BenchArgs};
use cli::flops::{cmd_flops, FlopsArgs};
use cli::info::cmd_info;

/// Sparse neural-network training from scratch with Sup-tickets (Yin et al., UAI 2022).
#[derive(Parser, Debug)]
#[command(name = "suptickets", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model; writes log.jsonl, checkpoint.safetensors, report.json/.md and plots.
    Train(Box<TrainArgs>),
    /// Train the base method and the same with --suptickets (same seed and epochs) into
    /// OUT/base and OUT/suptickets, then print both side by side.
    Compare(Box<TrainArgs>),
    /// Time the sparse kernels against the dense ones: whole training step, inference and
    /// every conv/linear layer, with the FLOP reduction and achieved GFLOP/s beside them.
    Bench(BenchArgs),
    /// Evaluate a checkpoint on its run's test (or validation) split.
    Eval(EvalArgs),
    /// Superpose a finished Sup-tickets run's saved tickets again with other averaging,
    /// re-pruning or batch-norm settings (no training), and evaluate the result.
    Superpose(SuperposeArgs),
    /// Per-layer parameter and FLOP table of a model.
    Flops(FlopsArgs),
    /// Version, backends, CUDA/NVRTC status and the kernel list.
    Info,
}

/// `train` arguments: the configuration file or the run to resume, then one flag per option
/// ([`TrainFlags`], each overriding the file, which overrides the defaults or, with `--resume`,
/// the checkpoint's configuration).
#[derive(Args, Debug, Default)]
struct TrainArgs {
    /// TOML configuration file (keys as the long flags with `_` for `-`). With --resume, only
    /// the keys the file sets replace the run's.
    #[arg(long, value_name = "FILE.toml")]
    config: Option<PathBuf>,
    /// Continue the run in DIR (or from a checkpoint file); writes into DIR unless --out is given.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Every option of the run.
    #[command(flatten)]
    flags: TrainFlags,
    /// Replace a run already in the output directory (its outputs are removed first); without
    /// it, a fresh run into a directory holding a run is refused.
    #[arg(long)]
    overwrite: bool,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
    /// Print the final report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct EvalArgs {
    /// Checkpoint file or run directory.
    #[arg(long, value_name = "PATH")]
    checkpoint: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Directory with the dataset files (default: the run's).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// cpu, cuda or cuda:N (default: the run's).
    #[arg(long)]
    device: Option<String>,
}

/// Counts heap bytes so that `bench` can report the peak memory of a training step.
#[global_allocator]
static HEAP: suptickets::bench::memory::CountingAlloc = suptickets::bench::memory::CountingAlloc;

fn main() -> ExitCode {
    suptickets::alloc_tuning::keep_freed_buffers();
    HEAP.activate();
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Train(a) => cmd_train(*a),
        Command::Compare(a) => cmd_compare(*a),
        Command::Bench(a) => cmd_bench(a),
        Command::Eval(a) => cmd_eval(a),
        Command::Superpose(a) => cmd_superpose(a),
        Command::Flops(a) => cmd_flops(a),
        Command::Info => cmd_info(),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Applies the flags that were given to `cfg`.
fn apply_flags(cfg: &mut TrainConfig, a: &TrainArgs) {
    a.flags.apply_to(cfg);
    if a.quiet {
        cfg.progress = false;
    }
}

/// A resumed run: its checkpoint and the `--resume` path.
type Resumed = (Checkpoint, PathBuf);

/// The configuration of `train`: the defaults (with `--resume`, the checkpoint's),
/// then the keys the `--config` file sets, then the flags; the checkpoint to resume; and where
/// each option came from (messages name a file's key as the key, a flag as the flag).
fn train_config(a: &TrainArgs) -> Result<(TrainConfig, Option<Resumed>, OptionSources)> {
    let mut sources = OptionSources {
        file: None,
        flags: a.flags.given(),
    };
    let (mut cfg, resumed) = match &a.resume {
        Some(dir) => {
            let ck = Checkpoint::read(&checkpoint_path(dir))?;
            let mut cfg = ck.meta.train_config.clone().ok_or_else(|| {
                Error::data(
                    &ck.path,
                    "the checkpoint has no training configuration to resume",
                )
            })?;
            cfg.stop_after = None;
            (cfg, Some((ck, dir.clone())))
        }
        None => (TrainConfig::default(), None),
    };
    if let Some(f) = &a.config {
        let (c, keys) = match resumed {
            Some(_) => cfg.overlay_toml_file(f)?,
            None => (TrainConfig::from_toml_file(f)?, toml_keys(f)?),
        };
        cfg = c;
        sources.file = Some((f.clone(), keys));
    }
    if let Some((_, dir)) = &resumed {
        // Resuming writes into the run's own directory unless --out is given.
        cfg.out = Some(if dir.is_dir() {
            dir.clone()
        } else {
            dir.parent().map(PathBuf::from).unwrap_or_default()
        });
    }
    apply_flags(&mut cfg, a);
    if cfg.out.is_none() {
        cfg.out = Some(output_dir(&cfg));
    }
    Ok((cfg, resumed, sources))
}

/// What differs between `compare`'s two arms besides the Sup-tickets settings: the schedule
/// quantities each arm resolved (both are printed when they differ), and the one difference
/// that is Sup-tickets by design (the base LR schedule spans the normal phase only).
fn arm_differences(base: &Report, sup: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let mut diff = |what: &str, b: String, s: String| {
        if b != s {
            out.push(format!("differs: {what}: base {b}, suptickets {s}"));
        }
    };
    diff(
        "ΔT",
        format!("{:?}", base.update_interval),
        format!("{:?}", sup.update_interval),
    );
    diff(
        "exploration horizon (steps)",
        format!("{:?}", base.exploration_horizon),
        format!("{:?}", sup.exploration_horizon),
    );
    diff(
        "GraNet pruning window (updates)",
        format!("{:?}", base.prune_window),
        format!("{:?}", sup.prune_window),
    );
    diff("steps", base.steps.to_string(), sup.steps.to_string());
    if let Some(b) = sup.config.sup_budget().ok().flatten() {
        out.push(format!(
            "by design: the suptickets arm runs its {} schedule over the {} normal epochs, then {} cycle(s) of {} epoch(s) (the base arm: over all {} epochs)",
            sup.config.schedule.name(),
            b.normal_epochs,
            b.tickets,
            b.cycle,
            base.config.epochs
        ));
    }
    out
}

fn cmd_train(a: TrainArgs) -> Result<()> {
    let (mut cfg, resumed, sources) = train_config(&a)?;
    cfg.validate().map_err(|e| sources.rename(e))?;
    // Under `mpirun -np N` (N > 1): data-parallel training, one process per rank.
    cfg.device = suptickets::dist::rank_device(&cfg.device);
    let world = suptickets::dist::init(&cfg.device)?;
    let result = train_from_with(&cfg, resumed, a.overwrite).map_err(|e| sources.rename(e));
    let report = match (result, &world) {
        (Ok(r), _) => r,
        (Err(e), Some(w)) => {
            // The other ranks would wait forever in their next collective: end the job.
            let w = w.world();
            eprintln!("error (rank {} of {}): {e}", w.rank(), w.size());
            w.abort(1);
            return Err(e);
        }
        (Err(e), None) => return Err(e),
    };
    if !suptickets::dist::is_writer() {
        return Ok(());
    }
    let out = cfg.out.clone().unwrap_or_default();
    if a.json {
        say!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| Error::Config(e.to_string()))?
        );
    } else {
        say!(
            "{} accuracy {:.2}%, NLL {:.4}, ECE {:.4} ({} examples) after {} epoch(s), {:.1} s; report in {}",
            report.eval_split,
            100.0 * report.test_accuracy,
            report.test_nll,
            report.test_ece,
            report.test_examples,
            report.epochs_completed,
            report.wall_seconds,
            out.join("report.md").display()
        );
        if let (Some(t), Some(u)) = (&report.tickets, &report.ultimate) {
            say!(
                "Sup-tickets ({} averaging, {} re-pruning, BN {}):",
                u.averaging,
                u.reprune,
                u.bn
            );
            for k in t {
                say!(
                    "  ticket W_{:<3} (epoch {:>3})  accuracy {:>6.2}%  NLL {:.4}  ECE {:.4}",
                    k.ticket,
                    k.epoch,
                    100.0 * k.accuracy,
                    k.nll,
                    k.ece
                );
            }
            say!(
                "  ultimate S_{:<3} (density {:.4})  accuracy {:>6.2}%  NLL {:.4}  ECE {:.4}",
                u.tickets.saturating_sub(1),
                u.density,
                100.0 * u.accuracy,
                u.nll,
                u.ece
            );
            if let Some(e) = &report.ensemble {
                say!(
                    "  ensemble of {} tickets       accuracy {:>6.2}%  NLL {:.4}  ECE {:.4}",
                    e.members,
                    100.0 * e.accuracy,
                    e.nll,
                    e.ece
                );
            }
        }
    }
    Ok(())
}

fn cmd_compare(a: TrainArgs) -> Result<()> {
    if a.resume.is_some() {
        return Err(Error::Config(
            "compare: --resume is not supported; resume each run with `train --resume OUT/base` or `OUT/suptickets`".into(),
        ));
    }
    let (cfg, _, sources) = train_config(&a)?;
    let out = cfg.out.clone().unwrap_or_else(|| output_dir(&cfg));
    let (base, sup) = compare_configs(&cfg, &out);
    // Check both before spending time on either.
    base.validate().map_err(|e| sources.rename(e))?;
    sup.validate().map_err(|e| sources.rename(e))?;
    let rb = train_from_with(&base, None, a.overwrite)?;
    let rs = train_from_with(&sup, None, a.overwrite)?;
    if a.json {
        let v: serde_json::Value = serde_json::json!({
            "base": rb,
            "suptickets": rs,
        });
        say!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| Error::Config(e.to_string()))?
        );
        return Ok(());
    }
    print_comparison(&cfg, &rb, &rs);
    for line in arm_differences(&rb, &rs) {
        say!("{line}");
    }
    say!(
        "runs in {} and {}",
        out.join("base").display(),
        out.join("suptickets").display()
    );
    Ok(())
}

/// The two runs of `compare` under `out`: the base run (the same settings without the
/// Sup-tickets ones) in `out/base` and the Sup-tickets run in `out/suptickets`.
fn compare_configs(cfg: &TrainConfig, out: &std::path::Path) -> (TrainConfig, TrainConfig) {
    let mut sup = cfg.clone();
    sup.suptickets = true;
    sup.out = Some(out.join("suptickets"));
    sup.name = Some(format!(
        "{}-suptickets",
        cfg.name.clone().unwrap_or_else(|| "compare".into())
    ));
    let d = TrainConfig::default();
    let mut base = cfg.clone();
    base.suptickets = false;
    base.cycle_epochs = d.cycle_epochs;
    base.cycle_fraction = d.cycle_fraction;
    base.cycle_lr_low = d.cycle_lr_low;
    base.cycle_lr_high = d.cycle_lr_high;
    base.cycle_drop_fraction = d.cycle_drop_fraction;
    base.average = d.average;
    base.cima_beta = d.cima_beta;
    base.reprune = d.reprune;
    base.bn = d.bn;
    base.ensemble = false;
    base.out = Some(out.join("base"));
    base.name = Some(format!(
        "{}-base",
        cfg.name.clone().unwrap_or_else(|| "compare".into())
    ));
    (base, sup)
}

/// The `compare` table: both runs' metrics and FLOPs, then the Sup-tickets run's tickets.
fn print_comparison(cfg: &TrainConfig, rb: &Report, rs: &Report) {
    let rows = [("base", rb), ("suptickets", rs)];
    say!(
        "{} on {} ({} epochs, seed {}, method {}, sparsity {:.4}), {} split:",
        rb.model.name,
        rb.dataset,
        cfg.epochs,
        cfg.seed,
        rb.method,
        rb.sparsity,
        rb.eval_split
    );
    say!(
        "{:<12} {:>9} {:>8} {:>8} {:>11} {:>10} {:>9}",
        "run",
        "accuracy",
        "NLL",
        "ECE",
        "train FLOPs",
        "test FLOPs",
        "wall s"
    );
    for (name, r) in rows {
        say!(
            "{:<12} {:>8.2}% {:>8.4} {:>8.4} {:>10.4}x {:>9.4}x {:>9.1}",
            name,
            100.0 * r.test_accuracy,
            r.test_nll,
            r.test_ece,
            r.train_flops_multiple,
            r.test_flops_multiple,
            r.wall_seconds
        );
    }
    if let Some(t) = &rs.tickets {
        for k in t {
            say!(
                "  ticket W_{:<4} {:>8.2}% {:>8.4} {:>8.4}",
                k.ticket,
                100.0 * k.accuracy,
                k.nll,
                k.ece
            );
        }
    }
}

fn cmd_eval(a: EvalArgs) -> Result<()> {
    let r = eval_checkpoint(&a.checkpoint, a.data_dir.as_deref(), a.device.as_deref())?;
    if a.json {
        say!(
            "{}",
            serde_json::to_string_pretty(&r).map_err(|e| Error::Config(e.to_string()))?
        );
    } else {
        say!(
            "{} ({} after {} epochs) on {} {} ({} examples, {}):",
            r.checkpoint,
            r.model,
            r.epoch,
            r.dataset,
            r.eval_split,
            r.test_examples,
            r.device
        );
        say!("  accuracy {:.2}%", 100.0 * r.test_accuracy);
        say!("  NLL      {:.4}", r.test_nll);
        say!("  ECE      {:.4}", r.test_ece);
    }
    Ok(())
}

/// `superpose` flags.
#[derive(Args, Debug)]
struct SuperposeArgs {
    /// The run directory (with tickets/W_k.safetensors).
    #[arg(long, value_name = "DIR")]
    run: PathBuf,
    /// Averaging: cia, caa or cima (default: the run's).
    #[arg(long, ignore_case = true)]
    average: Option<suptickets::suptickets::AverageKind>,
    /// CIMA's β (default: the run's).
    #[arg(long, value_name = "BETA")]
    cima_beta: Option<f32>,
    /// Re-pruning: global or layerwise (default: the run's).
    #[arg(long, ignore_case = true)]
    reprune: Option<suptickets::suptickets::Reprune>,
    /// Batch norm: av or bu (default: the run's).
    #[arg(long, ignore_case = true)]
    bn: Option<suptickets::suptickets::BnStrategy>,
    /// cpu or cuda[:N] (default: the run's).
    #[arg(long)]
    device: Option<String>,
    /// Also write the superposed ticket to this checkpoint file.
    #[arg(long, value_name = "FILE.safetensors")]
    out: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn cmd_superpose(a: SuperposeArgs) -> Result<()> {
    use suptickets::train::resuperpose::{resuperpose, ResuperposeArgs};
    let r = resuperpose(&ResuperposeArgs {
        run: a.run,
        average: a.average,
        cima_beta: a.cima_beta,
        reprune: a.reprune,
        bn: a.bn,
        device: a.device,
        out: a.out,
    })?;
    if a.json {
        say!(
            "{}",
            serde_json::to_string(&r).map_err(|e| Error::Config(e.to_string()))?
        );
    } else {
        say!(
            "{}: {} tickets, {} averaging, {} re-pruning, BN {}: density {:.4}, {} accuracy {:.2}%, NLL {:.4}, ECE {:.4}",
            r.run,
            r.tickets,
            r.average,
            r.reprune,
            r.bn,
            r.density,
            r.eval_split,
            100.0 * r.metrics.accuracy,
            r.metrics.nll,
            r.metrics.ece
        );
    }
    Ok(())
}

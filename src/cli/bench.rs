//! `suptickets bench`: its arguments, the single measurement and the `--sweep` files.

use std::path::PathBuf;

use suptickets::error::{Error, Result};

/// Arguments of `suptickets bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Model (vgg16, resnet18, ...; CIFAR 32x32x3 input, 10 classes).
    #[arg(long, default_value = "vgg16")]
    model: String,
    /// Channel multiplier.
    #[arg(long, default_value_t = 1.0)]
    width: f32,
    /// Global sparsity of the random masks.
    #[arg(long, default_value_t = 0.95)]
    sparsity: f64,
    /// Layer-wise density allocation: uniform, er or erk.
    #[arg(long, default_value = "erk")]
    init: String,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// cpu or cuda[:N].
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Timed repetitions (medians reported).
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Untimed repetitions first.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Crossover density of the auto kernel choice.
    #[arg(long, value_name = "DENSITY")]
    sparse_crossover: Option<f64>,
    /// Whole network only (no per-layer table).
    #[arg(long)]
    no_layers: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Measure at each of these sparsities (e.g. 0.5,0.8,0.9,0.95,0.98) instead of --sparsity,
    /// and write sweep.csv, sweep.svg and sweep.json into --out.
    #[arg(long, value_name = "S1,S2,...")]
    sweep: Option<String>,
    /// Folder for the --sweep outputs.
    #[arg(long, value_name = "DIR", default_value = "bench-sweep")]
    out: PathBuf,
}

pub fn cmd_bench(a: BenchArgs) -> Result<()> {
    if !(0.0..1.0).contains(&a.sparsity) {
        return Err(Error::Config(format!(
            "--sparsity: expected a value in [0, 1), got {}",
            a.sparsity
        )));
    }
    if a.batch == 0 || a.steps == 0 {
        return Err(Error::Config(
            "--batch and --steps must be at least 1".into(),
        ));
    }
    if let Some(c) = a.sparse_crossover {
        suptickets::backend::sparse_policy::set_crossover(c)?;
    }
    let cfg = suptickets::bench::BenchConfig {
        model: a.model,
        width: a.width,
        sparsity: a.sparsity,
        init: suptickets::sparse::density::DensityInit::parse(&a.init)
            .map_err(|e| Error::Config(format!("--init: {e}")))?,
        batch: a.batch,
        device: suptickets::Device::parse(&a.device)?,
        steps: a.steps,
        warmup: a.warmup,
        no_layers: a.no_layers,
    };
    if let Some(list) = &a.sweep {
        return bench_sweep(&cfg, list, &a.out, a.json);
    }
    let r = suptickets::bench::run(&cfg)?;
    if a.json {
        say!(
            "{}",
            serde_json::to_string(&r).map_err(|e| Error::Config(e.to_string()))?
        );
    } else {
        say!("{}", suptickets::bench::render(&r));
    }
    Ok(())
}

/// `bench --sweep`: every sparsity in turn, then the CSV, SVG and JSON files.
fn bench_sweep(
    cfg: &suptickets::bench::BenchConfig,
    list: &str,
    out: &std::path::Path,
    json: bool,
) -> Result<()> {
    use suptickets::bench::sweep;
    let sparsities = sweep::parse_sparsities(list)?;
    if out.is_file() {
        return Err(Error::Config(format!("--out {}: is a file", out.display())));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let reports = sweep::run_sweep(cfg, &sparsities, |r| {
        eprintln!(
            "sparsity {}: FLOP reduction {:.1}x, train step {:.2}x, inference {:.2}x",
            r.sparsity, r.flop_reduction, r.train_speedup, r.inference_speedup
        )
    })?;
    let js = serde_json::to_string_pretty(&reports).map_err(|e| Error::Config(e.to_string()))?;
    for (name, text) in [
        ("sweep.csv", sweep::csv(&reports)),
        ("sweep.svg", sweep::svg(&reports)),
        ("sweep.json", js.clone()),
    ] {
        let p = out.join(name);
        std::fs::write(&p, text).map_err(|e| Error::io(&p, e))?;
    }
    if json {
        say!("{js}");
    } else {
        say!("wrote {}/sweep.csv, sweep.svg, sweep.json", out.display());
    }
    Ok(())
}

//! `bench --sweep`: the same measurement over several sparsities, written as a CSV table and an
//! SVG chart of measured speed-up against the FLOP reduction (the line a kernel would reach if
//! time fell with FLOPs), for the whole training step, inference, and each layer.

use std::fmt::Write as _;

use super::{run, BenchConfig, BenchReport};
use crate::error::{Error, Result};
use crate::train::plot::{render, Panel, Series};

/// Parses `--sweep`: comma-separated sparsities, each in [0, 1), at least one.
pub fn parse_sparsities(s: &str) -> Result<Vec<f64>> {
    let bad = |why: String| Error::Config(format!("--sweep {s:?}: {why}"));
    let v = s
        .split(',')
        .map(|t| {
            let t = t.trim();
            let x: f64 = t
                .parse()
                .map_err(|_| bad(format!("{t:?} is not a number")))?;
            if (0.0..1.0).contains(&x) {
                Ok(x)
            } else {
                Err(bad(format!("sparsity {x} is outside [0, 1)")))
            }
        })
        .collect::<Result<Vec<f64>>>()?;
    if v.is_empty() {
        return Err(bad("no sparsity given".into()));
    }
    Ok(v)
}

/// Runs the benchmark at each sparsity (`cfg.sparsity` is replaced), calling `each` with every
/// finished report (for progress).
pub fn run_sweep(
    cfg: &BenchConfig,
    sparsities: &[f64],
    mut each: impl FnMut(&BenchReport),
) -> Result<Vec<BenchReport>> {
    sparsities
        .iter()
        .map(|&s| {
            let r = run(&BenchConfig {
                sparsity: s,
                ..cfg.clone()
            })?;
            each(&r);
            Ok(r)
        })
        .collect()
}

/// One CSV row per (sparsity, scope): `train step`, `inference`, then every layer.
pub fn csv(reports: &[BenchReport]) -> String {
    let mut s = String::from(
        "sparsity,scope,density,flop_reduction,dense_ms,sparse_ms,speedup,dense_peak_heap_bytes,sparse_peak_heap_bytes\n",
    );
    let opt = |b: Option<usize>| b.map_or(String::new(), |b| b.to_string());
    for r in reports {
        let density = 1.0 / r.flop_reduction;
        let (dh, sh) = (
            opt(r.dense.train_step_heap.peak_bytes),
            opt(r.sparse.train_step_heap.peak_bytes),
        );
        for (scope, d, sp, heap) in [
            (
                "train step",
                r.dense.train_step_ms,
                r.sparse.train_step_ms,
                (dh.as_str(), sh.as_str()),
            ),
            (
                "inference",
                r.dense.inference_ms,
                r.sparse.inference_ms,
                ("", ""),
            ),
        ] {
            let _ = writeln!(
                s,
                "{},{scope},{density:.6},{:.4},{d:.4},{sp:.4},{:.4},{},{}",
                r.sparsity,
                r.flop_reduction,
                d / sp,
                heap.0,
                heap.1
            );
        }
        for l in &r.layers {
            let (d, sp) = (
                l.dense_ms.iter().sum::<f64>(),
                l.sparse_ms.iter().sum::<f64>() + l.build_ms,
            );
            let _ = writeln!(
                s,
                "{},{},{:.6},{:.4},{d:.4},{sp:.4},{:.4},,",
                r.sparsity, l.name, l.density, l.flop_reduction, l.speedup
            );
        }
    }
    s
}

const COLORS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

fn ideal_line(reports: &[BenchReport], x_of: impl Fn(&BenchReport) -> Vec<f64>) -> Series {
    let xs: Vec<f64> = reports.iter().flat_map(x_of).collect();
    let hi = xs.iter().cloned().fold(1.0f64, f64::max);
    Series::new("= FLOP reduction", "#999999", vec![(1.0, 1.0), (hi, hi)])
}

/// The chart: whole step and inference in the first panel, one line per layer in the second
/// (layers with an all-ones mask are left out: their FLOP reduction is 1).
pub fn svg(reports: &[BenchReport]) -> String {
    let first = reports.first();
    let title = first.map_or(String::new(), |r| {
        format!(
            "{} x{}, {}, batch {}, {}",
            r.model, r.width, r.device, r.batch, r.init
        )
    });
    let whole =
        |f: fn(&BenchReport) -> f64| reports.iter().map(|r| (r.flop_reduction, f(r))).collect();
    let mut top = vec![ideal_line(reports, |r| vec![r.flop_reduction])];
    top.push(Series::new(
        "train step",
        COLORS[0],
        whole(|r| r.train_speedup),
    ));
    top.push(Series::new(
        "inference",
        COLORS[1],
        whole(|r| r.inference_speedup),
    ));
    let mut layers = vec![ideal_line(reports, |r| {
        r.layers.iter().map(|l| l.flop_reduction).collect()
    })];
    let names: Vec<&str> = first.map_or(Vec::new(), |r| {
        r.layers.iter().map(|l| l.name.as_str()).collect()
    });
    for (i, name) in names.iter().enumerate() {
        let pts: Vec<(f64, f64)> = reports
            .iter()
            .filter_map(|r| r.layers.get(i))
            .filter(|l| l.density < 1.0)
            .map(|l| (l.flop_reduction, l.speedup))
            .collect();
        if !pts.is_empty() {
            let label = name.strip_suffix(".weight").unwrap_or(name);
            layers.push(Series::new(label, COLORS[(i + 2) % COLORS.len()], pts));
        }
    }
    let mut panels = vec![Panel {
        title: format!("whole network ({title})"),
        x_label: "FLOP reduction (dense / sparse FLOPs)".into(),
        y_label: "measured speed-up".into(),
        series: top,
    }];
    if layers.len() > 1 {
        panels.push(Panel {
            title: "per layer (fwd + bwd-input + bwd-weight + CSR values gather)".into(),
            x_label: "FLOP reduction (1 / density)".into(),
            y_label: "measured speed-up".into(),
            series: layers,
        });
    }
    render(&panels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_sparsities_are_checked_by_name() {
        assert_eq!(
            parse_sparsities("0.5, 0.9,0.98").unwrap(),
            vec![0.5, 0.9, 0.98]
        );
        let e = parse_sparsities("0.5,1.0").unwrap_err().to_string();
        assert!(e.contains("--sweep") && e.contains("outside [0, 1)"), "{e}");
        let e = parse_sparsities("0.5,x").unwrap_err().to_string();
        assert!(e.contains("\"x\" is not a number"), "{e}");
    }
}

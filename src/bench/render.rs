//! The human-readable `bench` report.

use super::memory::HeapPeak;
use super::BenchReport;

fn mb(b: Option<usize>) -> String {
    b.map_or_else(|| "n/a".into(), |b| format!("{:.1}", b as f64 / 1e6))
}

fn heap_line(name: &str, h: &HeapPeak) -> String {
    let calls = h
        .allocations
        .map_or_else(|| "n/a".into(), |c| c.to_string());
    format!(
        "{name:<14} {:>12} {:>12} {calls:>12}\n",
        mb(h.peak_bytes),
        mb(h.transient_bytes)
    )
}

/// The human-readable report.
pub fn render(r: &BenchReport) -> String {
    let mut s = format!(
        "{} x{} on {} ({} threads), batch {}, sparsity {} ({}), auto crossover {}\n",
        r.model, r.width, r.device, r.threads, r.batch, r.sparsity, r.init, r.crossover
    );
    s += &format!(
        "training FLOPs per step: dense {:.1} GFLOP, sparse {:.2} GFLOP (reduction {:.1}x)\n",
        r.dense_step_gflop, r.sparse_step_gflop, r.flop_reduction
    );
    s += &format!(
        "maskable weights: dense {:.1} MB, CSR {:.2} MB ({:.1}% of dense)\n\n",
        r.dense_weight_bytes as f64 / 1e6,
        r.sparse_weight_bytes as f64 / 1e6,
        100.0 * r.sparse_weight_bytes as f64 / r.dense_weight_bytes.max(1) as f64
    );
    s += &format!(
        "{:<14} {:>12} {:>12} {:>9}\n",
        "whole network", "dense ms", "sparse ms", "speed-up"
    );
    for (name, d, sp) in [
        ("inference", r.dense.inference_ms, r.sparse.inference_ms),
        (
            "fwd+bwd",
            r.dense.forward_backward_ms,
            r.sparse.forward_backward_ms,
        ),
        ("train step", r.dense.train_step_ms, r.sparse.train_step_ms),
    ] {
        s += &format!("{name:<14} {d:>12.1} {sp:>12.1} {:>8.2}x\n", d / sp);
    }
    s += &format!(
        "\n{:<14} {:>12} {:>12} {:>12}   (host heap MB, one step from an empty buffer pool; allocations per warm step)\n",
        "train step", "peak", "transient", "allocations"
    );
    s += &heap_line("  dense", &r.dense.train_step_heap);
    s += &heap_line("  sparse", &r.sparse.train_step_heap);
    if !r.layers.is_empty() {
        s += &format!(
            "\n{:<28} {:>7} {:>6} {:>21} {:>27} {:>6} {:>8} {:>8} {:>9}\n",
            "layer",
            "density",
            "auto",
            "dense f/i/w ms",
            "sparse f/i/w + gather ms",
            "x",
            "1/d",
            "sp GF/s",
            "dense GF/s"
        );
        for l in &r.layers {
            s += &format!(
                "{:<28} {:>7.4} {:>6} {:>6.1} {:>6.1} {:>6.1} {:>6.1} {:>6.1} {:>6.1} {:>5.1} {:>5.2}x {:>7.1}x {:>8.1} {:>9.1}\n",
                l.name,
                l.density,
                l.auto_choice,
                l.dense_ms[0],
                l.dense_ms[1],
                l.dense_ms[2],
                l.sparse_ms[0],
                l.sparse_ms[1],
                l.sparse_ms[2],
                l.build_ms,
                l.speedup,
                l.flop_reduction,
                l.sparse_gflops,
                l.dense_gflops
            );
        }
    }
    s
}

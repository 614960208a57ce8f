//! Criterion benchmarks of the CPU backend at batch 128: the convolution of every distinct
//! VGG-16 and ResNet-18 (CIFAR) layer shape (forward, backward-input and backward-weight, each
//! alone and all three together), and the element-wise, batch-norm and pooling ops on a
//! [128, 64, 32, 32] activation.
//!
//! `cargo bench --bench cpu_kernels -- conv/64-64-32-k3-s1` runs one layer; `-- /step` only
//! the sums; `-- ops/` the other kernels. By default the time is the process CPU time (all
//! threads, from `/proc/self/task/*/schedstat`) divided by the rayon thread count, which on a
//! quiet machine equals the wall time and on a shared one is not inflated by other processes;
//! `BENCH_WALL=1` measures wall time instead. See `notes/cpu-conv-timings.md`.
//!
//! `-- fused/` compares batch norm + ReLU (and + residual + ReLU) forward and backward, fused
//! vs the unfused ops, on the README job's largest activation [128, 8, 32, 32].

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

use suptickets::backend::cpu::CPU;
use suptickets::backend::{Backend, BnAct, BnActSaved, Conv2dParams, Pool2dParams};
use suptickets::rng::Rng;
use suptickets::Tensor;

/// Batch size of the measured training step.
const BATCH: usize = 128;

/// (c_in, c_out, input size, kernel, stride) of each distinct convolution of VGG-16 and
/// ResNet-18 on 32×32 inputs (padding 1 for 3×3, 0 for 1×1).
const CONVS: &[(usize, usize, usize, usize, usize)] = &[
    (3, 64, 32, 3, 1),
    (64, 64, 32, 3, 1),
    (64, 128, 16, 3, 1),
    (128, 128, 16, 3, 1),
    (128, 256, 8, 3, 1),
    (256, 256, 8, 3, 1),
    (256, 512, 4, 3, 1),
    (512, 512, 4, 3, 1),
    (512, 512, 2, 3, 1),
    (64, 128, 32, 3, 2),
    (64, 128, 32, 1, 2),
    (128, 256, 16, 3, 2),
    (128, 256, 16, 1, 2),
    (256, 512, 8, 3, 2),
    (256, 512, 8, 1, 2),
];

fn random(r: &mut Rng, shape: &[usize], scale: f32) -> Tensor {
    let v = (0..shape.iter().product())
        .map(|_| r.normal() * scale)
        .collect();
    Tensor::from_vec(v, shape).unwrap()
}

fn conv_benches<M: Measurement>(c: &mut Criterion<M>) {
    let mut r = Rng::new(0);
    for &(ci, co, hw, k, s) in CONVS {
        let p = Conv2dParams::new(BATCH, ci, hw, hw, co, k, s, k / 2).unwrap();
        let x = random(&mut r, &p.x_shape(), 1.0);
        let w = random(&mut r, &p.w_shape(), 0.05);
        let dy = random(&mut r, &p.y_shape(), 1.0);
        let mut g = c.benchmark_group(format!("conv/{ci}-{co}-{hw}-k{k}-s{s}"));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        g.bench_function("fwd", |b| {
            b.iter(|| black_box(CPU.conv2d_fwd(&x, &w, None, &p).unwrap()))
        });
        g.bench_function("bwd_input", |b| {
            b.iter(|| black_box(CPU.conv2d_bwd_input(&dy, &w, &p).unwrap()))
        });
        g.bench_function("bwd_weight", |b| {
            b.iter(|| black_box(CPU.conv2d_bwd_weight(&x, &dy, &p, None).unwrap()))
        });
        g.bench_function("step", |b| {
            b.iter(|| {
                black_box(CPU.conv2d_fwd(&x, &w, None, &p).unwrap());
                black_box(CPU.conv2d_bwd_input(&dy, &w, &p).unwrap());
                black_box(CPU.conv2d_bwd_weight(&x, &dy, &p, None).unwrap());
            })
        });
        g.finish();
    }
}

fn op_benches<M: Measurement>(c: &mut Criterion<M>) {
    let mut r = Rng::new(1);
    let shape = [BATCH, 64, 32, 32];
    let x = random(&mut r, &shape, 1.0);
    let dy = random(&mut r, &shape, 1.0);
    let gamma = random(&mut r, &[64], 1.0);
    let beta = random(&mut r, &[64], 1.0);
    let bn = CPU.batchnorm_fwd_train(&x, &gamma, &beta, 1e-5).unwrap();
    let y = CPU.relu_fwd(&x).unwrap();
    let pp = Pool2dParams::new(BATCH, 64, 32, 32, 2, 2, 0).unwrap();
    let (_, idx) = CPU.maxpool2d_fwd(&x, &pp).unwrap();
    let dyp = random(&mut r, &pp.y_shape(), 1.0);
    let mut g = c.benchmark_group("ops/128x64x32x32");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("batchnorm_fwd_train", |b| {
        b.iter(|| black_box(CPU.batchnorm_fwd_train(&x, &gamma, &beta, 1e-5).unwrap()))
    });
    g.bench_function("batchnorm_bwd", |b| {
        b.iter(|| {
            black_box(
                CPU.batchnorm_bwd(&dy, &x, &gamma, &bn.mean, &bn.invstd)
                    .unwrap(),
            )
        })
    });
    g.bench_function("relu_fwd", |b| {
        b.iter(|| black_box(CPU.relu_fwd(&x).unwrap()))
    });
    g.bench_function("relu_bwd", |b| {
        b.iter(|| black_box(CPU.relu_bwd(&dy, &y).unwrap()))
    });
    g.bench_function("add", |b| b.iter(|| black_box(CPU.add(&x, &dy).unwrap())));
    g.bench_function("maxpool2d_fwd", |b| {
        b.iter(|| black_box(CPU.maxpool2d_fwd(&x, &pp).unwrap()))
    });
    g.bench_function("maxpool2d_bwd", |b| {
        b.iter(|| black_box(CPU.maxpool2d_bwd(&dyp, &idx, &pp).unwrap()))
    });
    g.finish();
}

/// Batch norm (+ residual) + ReLU, forward and backward: the unfused ops vs the fused pair.
fn fused_benches<M: Measurement>(c: &mut Criterion<M>) {
    let mut r = Rng::new(2);
    let shape = [BATCH, 8, 32, 32];
    let (x, dy, res) = (
        random(&mut r, &shape, 1.0),
        random(&mut r, &shape, 1.0),
        random(&mut r, &shape, 1.0),
    );
    let (gamma, beta) = (random(&mut r, &[8], 1.0), random(&mut r, &[8], 1.0));
    let mut g = c.benchmark_group("fused/128x8x32x32");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for residual in [false, true] {
        let rs = residual.then_some(&res);
        let tag = if residual { "bn_add_relu" } else { "bn_relu" };
        g.bench_function(format!("{tag}/unfused"), |b| {
            b.iter(|| {
                let f = CPU.batchnorm_fwd_train(&x, &gamma, &beta, 1e-5).unwrap();
                let z = match rs {
                    Some(r) => CPU.add(&f.y, r).unwrap(),
                    None => f.y,
                };
                let y = CPU.relu_fwd(&z).unwrap();
                let gz = CPU.relu_bwd(&dy, &y).unwrap();
                black_box(CPU.batchnorm_bwd(&gz, &x, &gamma, &f.mean, &f.invstd))
            })
        });
        g.bench_function(format!("{tag}/fused"), |b| {
            b.iter(|| {
                let f = CPU
                    .bn_act_fwd_train(&x, &gamma, &beta, rs, true, 1e-5)
                    .unwrap();
                let saved = BnActSaved {
                    x: x.clone(),
                    y: f.y,
                    gamma: gamma.clone(),
                    beta: beta.clone(),
                    mean: f.mean,
                    invstd: f.invstd,
                };
                let act = BnAct {
                    residual,
                    relu: true,
                };
                black_box(CPU.bn_act_bwd(&dy, &saved, act))
            })
        });
    }
    g.finish();
}

/// Process CPU time (every thread) divided by the rayon thread count, in nanoseconds.
struct CpuTime;

/// CPU nanoseconds this process has run, summed over its threads.
fn process_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        process_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        process_cpu_ns().saturating_sub(start) / rayon::current_num_threads().max(1) as u64
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &NanosFormatter
    }
}

/// Formats nanoseconds like criterion's wall-time formatter.
struct NanosFormatter;

impl ValueFormatter for NanosFormatter {
    fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match ns {
            v if v < 1e3 => (1.0, "ns"),
            v if v < 1e6 => (1e-3, "µs"),
            v if v < 1e9 => (1e-6, "ms"),
            _ => (1e-9, "s"),
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }
    fn scale_throughputs(&self, ns: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let per = match *t {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) | Throughput::Elements(n) => n,
        } as f64;
        let _ = ns;
        values.iter_mut().for_each(|v| *v = per * 1e9 / *v);
        "per s"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn main() {
    if std::env::var_os("BENCH_WALL").is_some() {
        let mut c = Criterion::default()
            .with_measurement(WallTime)
            .configure_from_args();
        conv_benches(&mut c);
        op_benches(&mut c);
        fused_benches(&mut c);
        c.final_summary();
    } else {
        let mut c = Criterion::default()
            .with_measurement(CpuTime)
            .configure_from_args();
        conv_benches(&mut c);
        op_benches(&mut c);
        fused_benches(&mut c);
        c.final_summary();
    }
}

//! `suptickets bench`: measured speed of the sparse kernels against the dense ones, per layer
//! and for the whole training step, beside the theoretical FLOP reduction.
//!
//! The model gets random masks at the requested sparsity (ERK or uniform, docs/computation.md,
//! Masks) on a synthetic CIFAR batch. Whole-step timings alternate dense and sparse runs (the
//! machines are noisy, so each round times both, and medians are reported): `dense` runs every
//! layer with the dense kernels on the masked weights (what the reference code does), `sparse` runs
//! the per-layer choice of `--sparse-kernels auto` (sparse below the crossover density). Per-layer
//! timings call the backend kernels directly on the layer's real mask: forward, backward to the
//! input, backward to the weights (masked, as on a regular step), and the per-step CSR work:
//! the weight's values gathered into the mask's kept CSR structure, forward and transposed.

use std::time::Instant;

use serde::Serialize;

use crate::autograd::sparse_ops::sparse_weight_of;
use crate::backend::sparse_policy::{self, SparseKernels};
use crate::backend::{Conv2dParams, SparseWeight};
use crate::device::Device;
use crate::error::Result;
use crate::models::{build, ModelConfig};
use crate::nn::{LayerKind, Network};
use crate::optim::Sgd;
use crate::rng::Rng;
use crate::sparse::density::DensityInit;
use crate::sparse::mask::{init_random_masks, MaskInit};
use crate::tensor::Tensor;

pub mod memory;
mod render;
pub mod sweep;

use memory::HeapPeak;
pub use render::render;

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Model name.
    pub model: String,
    /// Channel multiplier.
    pub width: f32,
    /// Global sparsity of the masks.
    pub sparsity: f64,
    /// Layer-wise density allocation.
    pub init: DensityInit,
    /// Batch size.
    pub batch: usize,
    /// Device.
    pub device: Device,
    /// Timed repetitions (medians are reported).
    pub steps: usize,
    /// Untimed repetitions first.
    pub warmup: usize,
    /// Skip the per-layer table.
    pub no_layers: bool,
}

/// Median times of the whole network, milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct StepTimes {
    /// Eval-mode forward pass of the batch (inference).
    pub inference_ms: f64,
    /// Training forward + backward.
    pub forward_backward_ms: f64,
    /// Forward + backward + SGD step (masks applied).
    pub train_step_ms: f64,
    /// Host heap of the training step (the largest over the timed rounds).
    pub train_step_heap: HeapPeak,
}

/// One conv or linear layer.
#[derive(Clone, Debug, Serialize)]
pub struct LayerBench {
    /// Weight name.
    pub name: String,
    /// Weight shape.
    pub shape: Vec<usize>,
    /// Input map of one example.
    pub in_shape: Vec<usize>,
    /// Active fraction of the weight.
    pub density: f64,
    /// What `auto` runs for this layer: `sparse` or `dense`.
    pub auto_choice: String,
    /// Dense kernels: forward, backward-input, backward-weight (ms).
    pub dense_ms: [f64; 3],
    /// Sparse kernels: forward, backward-input, backward-weight (ms).
    pub sparse_ms: [f64; 3],
    /// The weight's values gathered into the kept CSR structure of its mask, forward and
    /// transposed (ms, once per step; the structure itself is built once per mask).
    pub build_ms: f64,
    /// Dense / sparse time of the three passes together (build included).
    pub speedup: f64,
    /// 1 / density: the FLOP reduction.
    pub flop_reduction: f64,
    /// Achieved GFLOP/s of the sparse passes (useful FLOPs only).
    pub sparse_gflops: f64,
    /// Achieved GFLOP/s of the dense passes.
    pub dense_gflops: f64,
}

/// The whole measurement.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Model name.
    pub model: String,
    /// Channel multiplier.
    pub width: f32,
    /// Requested sparsity.
    pub sparsity: f64,
    /// Density allocation.
    pub init: String,
    /// Batch size.
    pub batch: usize,
    /// Device.
    pub device: String,
    /// Rayon threads (CPU).
    pub threads: usize,
    /// Crossover density of `auto`.
    pub crossover: f64,
    /// Dense training FLOPs of one step (3 × forward), GFLOP.
    pub dense_step_gflop: f64,
    /// Sparse training FLOPs of one step at these masks, GFLOP.
    pub sparse_step_gflop: f64,
    /// Dense / sparse FLOPs.
    pub flop_reduction: f64,
    /// Bytes of the maskable weights stored densely.
    pub dense_weight_bytes: usize,
    /// Bytes of the same weights in CSR (u32 indices, f32 values, row pointers).
    pub sparse_weight_bytes: usize,
    /// Dense network, masked weights (the reference code's way).
    pub dense: StepTimes,
    /// Sparse kernels where `auto` chooses them.
    pub sparse: StepTimes,
    /// Dense / sparse, training step.
    pub train_speedup: f64,
    /// Dense / sparse, inference.
    pub inference_speedup: f64,
    /// Per-layer table (empty with `no_layers`).
    pub layers: Vec<LayerBench>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Milliseconds since `t` once `dev` has finished its queued work (kernels are asynchronous on
/// CUDA: without the wait a timer measures only the launches).
fn ms_synced(t: Instant, dev: &Device) -> Result<f64> {
    dev.synchronize()?;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

fn random(r: &mut Rng, shape: &[usize], device: &Device) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    Tensor::from_vec((0..n).map(|_| r.normal()).collect(), shape)?.to_device(device)
}

/// Runs the benchmark.
pub fn run(cfg: &BenchConfig) -> Result<BenchReport> {
    let (mut net, x, y) = bench_network(cfg)?;
    let trace = net.trace()?;
    let fp = footprint(&net, &trace, cfg.batch)?;
    let crossover = sparse_policy::crossover();
    let (dense, sparse) = time_steps(&mut net, &x, &y, cfg)?;
    let layers = if cfg.no_layers {
        Vec::new()
    } else {
        trace
            .iter()
            .zip(&fp.sparse_ws)
            .map(|(l, (sw, d))| layer_bench(&net, l, sw, *d, cfg))
            .collect::<Result<Vec<_>>>()?
    };
    Ok(BenchReport {
        model: cfg.model.clone(),
        width: cfg.width,
        sparsity: cfg.sparsity,
        init: format!("{:?}", cfg.init).to_lowercase(),
        batch: cfg.batch,
        device: cfg.device.name(),
        threads: rayon::current_num_threads(),
        crossover,
        dense_step_gflop: fp.dense_flop,
        sparse_step_gflop: fp.sparse_flop,
        flop_reduction: fp.dense_flop / fp.sparse_flop.max(1e-12),
        dense_weight_bytes: fp.dense_bytes,
        sparse_weight_bytes: fp.sparse_bytes,
        train_speedup: dense.train_step_ms / sparse.train_step_ms,
        inference_speedup: dense.inference_ms / sparse.inference_ms,
        dense,
        sparse,
        layers,
    })
}

/// The model with its random masks on the device, and a synthetic CIFAR batch (inputs, labels).
fn bench_network(cfg: &BenchConfig) -> Result<(Network, Tensor, Tensor)> {
    let mut mc = ModelConfig::new(&cfg.model, 10);
    mc.width = cfg.width;
    let mut net = build(&mc)?;
    init_random_masks(
        &mut net.store,
        &MaskInit {
            sparsity: cfg.sparsity,
            init: cfg.init,
            dense_first_layer: false,
            seed: 0,
        },
    )?;
    net.to_device(&cfg.device)?;
    let mut r = Rng::new(1);
    let x = random(&mut r, &[cfg.batch, 3, 32, 32], &cfg.device)?;
    let y = Tensor::from_vec(
        (0..cfg.batch).map(|i| (i % 10) as f32).collect(),
        &[cfg.batch],
    )?
    .to_device(&cfg.device)?;
    Ok((net, x, y))
}

/// FLOPs of one step and weight bytes from the real masks.
struct Footprint {
    /// Dense training FLOPs of one step, GFLOP.
    dense_flop: f64,
    /// Sparse training FLOPs of one step, GFLOP.
    sparse_flop: f64,
    /// Bytes of the maskable weights stored densely.
    dense_bytes: usize,
    /// Bytes of the same weights in CSR.
    sparse_bytes: usize,
    /// Each traced layer's CSR weight and density.
    sparse_ws: Vec<(SparseWeight, f64)>,
}

/// The [`Footprint`] of the traced layers for a batch of `batch`.
fn footprint(net: &Network, trace: &[crate::nn::LayerTrace], batch: usize) -> Result<Footprint> {
    let (mut dense_flop, mut sparse_flop, mut dense_bytes, mut sparse_bytes) = (0.0, 0.0, 0, 0);
    let mut sparse_ws: Vec<(SparseWeight, f64)> = Vec::new();
    for l in trace {
        let p = net.store.param(l.param);
        let rows = p.value.shape()[0];
        let sw = match p.mask() {
            Some(m) => sparse_weight_of(&p.value, m, rows)?,
            None => {
                let ones = Tensor::from_vec(vec![1.0; p.value.numel()], p.value.shape())?;
                sparse_weight_of(&p.value.to_device(&Device::Cpu)?, &ones, rows)?
            }
        };
        let d = sw.density();
        let f = 2.0 * l.macs_per_example as f64 * batch as f64 / 1e9;
        dense_flop += 3.0 * f;
        sparse_flop += 3.0 * f * d;
        dense_bytes += 4 * p.value.numel();
        sparse_bytes += sw.bytes();
        sparse_ws.push((sw, d));
    }
    Ok(Footprint {
        dense_flop,
        sparse_flop,
        dense_bytes,
        sparse_bytes,
        sparse_ws,
    })
}

/// Whole-step timings, dense then sparse kernels in every round (medians over the timed
/// rounds); the process's kernel choice is restored afterwards.
fn time_steps(
    net: &mut Network,
    x: &Tensor,
    y: &Tensor,
    cfg: &BenchConfig,
) -> Result<(StepTimes, StepTimes)> {
    let prev = sparse_policy::sparse_kernels();
    let opt = Sgd::default();
    let mut times = [
        [Vec::new(), Vec::new(), Vec::new()],
        [Vec::new(), Vec::new(), Vec::new()],
    ];
    let mut heap = [HeapPeak::default(); 2];
    for round in 0..cfg.warmup + cfg.steps {
        for (mode, t) in times.iter_mut().enumerate() {
            sparse_policy::set_sparse_kernels(if mode == 0 {
                SparseKernels::Dense
            } else {
                SparseKernels::Auto
            });
            let dev = &cfg.device;
            dev.synchronize()?;
            let t0 = Instant::now();
            net.logits(x)?;
            let inf = ms_synced(t0, dev)?;
            let t1 = Instant::now();
            let (step, hp) = HeapPeak::measure(|| -> Result<(f64, f64)> {
                let out = net.forward_backward(x, y)?;
                let fb = ms_synced(t1, dev)?;
                opt.step(&mut net.store, &out.grads, 1e-3)?;
                Ok((fb, ms_synced(t1, dev)?))
            });
            let (fb, st) = step?;
            if round >= cfg.warmup {
                t[0].push(inf);
                t[1].push(fb);
                t[2].push(st);
                heap[mode] = heap[mode].max(hp);
            }
        }
    }
    for (mode, h) in heap.iter_mut().enumerate() {
        *h = step_heap(net, x, y, mode == 1, h.allocations)?;
    }
    sparse_policy::set_sparse_kernels(prev);
    let times_of = |t: &[Vec<f64>; 3], h: HeapPeak| StepTimes {
        inference_ms: median(t[0].clone()),
        forward_backward_ms: median(t[1].clone()),
        train_step_ms: median(t[2].clone()),
        train_step_heap: h,
    };
    Ok((times_of(&times[0], heap[0]), times_of(&times[1], heap[1])))
}

/// The heap of one untimed training step (sparse kernels where `auto` picks them, or dense)
/// started with the CPU buffer pool empty, so that its peak is what the step itself needs;
/// `warm_allocations` (counted on the timed steps, pool warm) replaces its allocation count.
fn step_heap(
    net: &mut Network,
    x: &Tensor,
    y: &Tensor,
    sparse: bool,
    warm_allocations: Option<usize>,
) -> Result<HeapPeak> {
    sparse_policy::set_sparse_kernels(if sparse {
        SparseKernels::Auto
    } else {
        SparseKernels::Dense
    });
    crate::backend::cpu::buffers::clear();
    let (done, hp) = HeapPeak::measure(|| -> Result<()> {
        let out = net.forward_backward(x, y)?;
        Sgd::default().step(&mut net.store, &out.grads, 1e-3)
    });
    done?;
    Ok(HeapPeak {
        allocations: warm_allocations,
        ..hp
    })
}

/// The layer as a conv of a batch of `n` (a linear layer is a 1×1 conv of a 1×1 map) and its
/// weight in 4-D.
fn layer_geometry(
    l: &crate::nn::LayerTrace,
    w: &Tensor,
    n: usize,
) -> Result<(Conv2dParams, Tensor)> {
    let rows = w.shape()[0];
    Ok(match l.kind {
        LayerKind::Conv => {
            let [c, h, wd] = [l.in_shape[0], l.in_shape[1], l.in_shape[2]];
            let k = w.shape()[2];
            (
                Conv2dParams::new(n, c, h, wd, rows, k, l.stride_pad.0, l.stride_pad.1)?,
                w.clone(),
            )
        }
        LayerKind::Linear => {
            let d_in = w.shape()[1];
            (
                Conv2dParams::new(n, d_in, 1, 1, rows, 1, 1, 0)?,
                w.reshape(&[rows, d_in, 1, 1])?,
            )
        }
    })
}

/// Median of each of three series.
fn medians3(t: &[Vec<f64>; 3]) -> [f64; 3] {
    [
        median(t[0].clone()),
        median(t[1].clone()),
        median(t[2].clone()),
    ]
}

/// Per-round timings of one layer: dense passes, sparse passes, CSR builds.
type LayerTimes = ([Vec<f64>; 3], [Vec<f64>; 3], Vec<f64>);

/// Times one layer's three passes, dense and sparse, alternating.
fn layer_bench(
    net: &Network,
    l: &crate::nn::LayerTrace,
    sw: &SparseWeight,
    density: f64,
    cfg: &BenchConfig,
) -> Result<LayerBench> {
    let p = net.store.param(l.param);
    let w = p.value.clone();
    let (geom, w4) = layer_geometry(l, &w, cfg.batch)?;
    let (dt, st, bt) = time_layer(net, l, sw, &geom, &w4, cfg)?;
    let dense_ms = medians3(&dt);
    let sparse_ms = medians3(&st);
    let build_ms = median(bt);
    let (ds, ss) = (
        dense_ms.iter().sum::<f64>(),
        sparse_ms.iter().sum::<f64>() + build_ms,
    );
    let flop = 3.0 * 2.0 * geom.macs() as f64 / 1e9;
    Ok(LayerBench {
        name: l.name.clone(),
        shape: w.shape().to_vec(),
        in_shape: l.in_shape.clone(),
        density,
        // The process runs `auto` here (restored after the whole-step rounds).
        auto_choice: if p.mask().is_some() && sparse_policy::use_sparse(density, &cfg.device) {
            "sparse".into()
        } else {
            "dense".into()
        },
        dense_ms,
        sparse_ms,
        build_ms,
        speedup: ds / ss,
        flop_reduction: 1.0 / density.max(1e-12),
        sparse_gflops: flop * density / (ss / 1e3),
        dense_gflops: flop / (ds / 1e3),
    })
}

/// The timed rounds of [`layer_bench`] on random inputs and output gradients: forward,
/// backward-input and backward-weight with the dense kernels on the 4-D weight `w4`, the
/// values gathered into the CSR structure of the layer's mask (kept between steps, as in
/// training), then the same three passes with the sparse kernels on the gathered CSRs.
fn time_layer(
    net: &Network,
    l: &crate::nn::LayerTrace,
    sw: &SparseWeight,
    geom: &Conv2dParams,
    w4: &Tensor,
    cfg: &BenchConfig,
) -> Result<LayerTimes> {
    let p = net.store.param(l.param);
    let rows = p.value.shape()[0];
    let dev = &cfg.device;
    let mut r = Rng::new(2);
    let mask4 = match p.mask() {
        Some(m) => Some(m.reshape(w4.shape())?),
        None => None,
    };
    let x = random(&mut r, &geom.x_shape(), dev)?;
    let dy = random(&mut r, &geom.y_shape(), dev)?;
    let be = x.backend();
    let mask = match p.mask() {
        Some(m) => m.clone(),
        None => Tensor::full(p.value.shape(), 1.0, dev)?,
    };
    let plan = be.csr_plan(&mask, rows, sw.cols, sw.nnz())?;
    let mut dt = [Vec::new(), Vec::new(), Vec::new()];
    let mut st = [Vec::new(), Vec::new(), Vec::new()];
    let mut bt = Vec::new();
    for round in 0..cfg.warmup + cfg.steps {
        let keep = round >= cfg.warmup;
        dev.synchronize()?;
        let t = Instant::now();
        be.conv2d_fwd(&x, w4, None, geom)?;
        let a = ms_synced(t, dev)?;
        let t = Instant::now();
        be.conv2d_bwd_input(&dy, w4, geom)?;
        let b = ms_synced(t, dev)?;
        let t = Instant::now();
        be.conv2d_bwd_weight(&x, &dy, geom, mask4.as_ref())?;
        let c = ms_synced(t, dev)?;
        let t = Instant::now();
        let (sw, swt) = (
            be.csr_gather(&plan, &p.value, false)?,
            be.csr_gather(&plan, &p.value, true)?,
        );
        let bd = ms_synced(t, dev)?;
        let t = Instant::now();
        be.spconv_fwd(&x, sw.operand(), None, geom)?;
        let e = ms_synced(t, dev)?;
        let t = Instant::now();
        be.spconv_bwd_input(&dy, swt.operand(), geom)?;
        let f = ms_synced(t, dev)?;
        let t = Instant::now();
        be.spconv_bwd_weight(&x, &dy, sw.operand(), geom)?;
        let g = ms_synced(t, dev)?;
        if keep {
            for (v, x) in dt.iter_mut().zip([a, b, c]) {
                v.push(x);
            }
            for (v, x) in st.iter_mut().zip([e, f, g]) {
                v.push(x);
            }
            bt.push(bd);
        }
    }
    Ok((dt, st, bt))
}

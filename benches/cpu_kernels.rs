//! Criterion benchmarks of the CPU backend's convolution on the VGG-16 (CIFAR) layer shapes at
//! batch 128: forward, backward-input and backward-weight, each alone and all three together.
//!
//! `cargo bench --bench cpu_kernels -- conv/64-64-32` runs one layer; `-- /step` only the sums.
//! Compare with `/tmp` PyTorch timings as described in `notes/cpu-conv-timings.md`.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;

use suptickets::backend::cpu::CPU;
use suptickets::backend::{Backend, Conv2dParams};
use suptickets::rng::Rng;
use suptickets::Tensor;

/// Batch size of the measured training step.
const BATCH: usize = 128;

/// (c_in, c_out, spatial size) of each distinct 3×3, pad-1 convolution of VGG-16 on 32×32.
const VGG16_CONVS: &[(usize, usize, usize)] = &[
    (3, 64, 32),
    (64, 64, 32),
    (64, 128, 16),
    (128, 128, 16),
    (128, 256, 8),
    (256, 256, 8),
    (256, 512, 4),
    (512, 512, 4),
    (512, 512, 2),
];

fn random(r: &mut Rng, shape: &[usize], scale: f32) -> Tensor {
    let v = (0..shape.iter().product())
        .map(|_| r.normal() * scale)
        .collect();
    Tensor::from_vec(v, shape).unwrap()
}

fn conv_benches(c: &mut Criterion) {
    let mut r = Rng::new(0);
    for &(ci, co, hw) in VGG16_CONVS {
        let p = Conv2dParams::new(BATCH, ci, hw, hw, co, 3, 1, 1).unwrap();
        let x = random(&mut r, &p.x_shape(), 1.0);
        let w = random(&mut r, &p.w_shape(), 0.05);
        let dy = random(&mut r, &p.y_shape(), 1.0);
        let mut g = c.benchmark_group(format!("conv/{ci}-{co}-{hw}"));
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

criterion_group!(benches, conv_benches);
criterion_main!(benches);

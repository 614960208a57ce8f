//! Criterion benchmarks of the sparse convolution kernels (CPU backend, batch 128) at
//! densities 1.0, 0.2, 0.1, 0.05 and 0.02, beside the dense kernels on the same masked weight,
//! for a large-map, a mid-map and a small-map VGG-16 layer and a stride-2 ResNet-18 layer.
//!
//! `cargo bench --bench spconv -- 64-64-32` runs one layer; `-- d0.05` one density. Group
//! names: `spconv/<c_in>-<c_out>-<size>-k<k>-s<stride>/<dense|sparse>/d<density>/<pass>` with
//! pass = fwd, bwd_in, bwd_w, or all (the three passes of one training step, CSR build included).

use criterion::Criterion;
use std::hint::black_box;
use std::time::Duration;

use suptickets::autograd::sparse_ops::sparse_weight_of;
use suptickets::backend::cpu::CPU;
use suptickets::backend::{Backend, Conv2dParams};
use suptickets::rng::Rng;
use suptickets::Tensor;

const BATCH: usize = 128;
const DENSITIES: &[f64] = &[1.0, 0.2, 0.1, 0.05, 0.02];
/// (c_in, c_out, input size, kernel, stride).
const LAYERS: &[(usize, usize, usize, usize, usize)] = &[
    (64, 64, 32, 3, 1),
    (256, 256, 8, 3, 1),
    (512, 512, 2, 3, 1),
    (128, 256, 16, 3, 2),
];

fn random(r: &mut Rng, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec((0..n).map(|_| r.normal()).collect(), shape).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut r = Rng::new(0);
    for &(ci, co, hw, k, st) in LAYERS {
        let p = Conv2dParams::new(BATCH, ci, hw, hw, co, k, st, k / 2).unwrap();
        let x = random(&mut r, &p.x_shape());
        let dy = random(&mut r, &p.y_shape());
        let w = random(&mut r, &p.w_shape());
        let name = format!("{ci}-{co}-{hw}-k{k}-s{st}");
        for &d in DENSITIES {
            let m: Vec<f32> = (0..w.numel())
                .map(|_| (r.uniform() < d as f32) as u8 as f32)
                .collect();
            let mask = Tensor::from_vec(m, &p.w_shape()).unwrap();
            let wm = CPU.mul(&w, &mask).unwrap();
            let sw = sparse_weight_of(&wm, &mask, co).unwrap();
            let swt = sw.transpose();
            // As in training: the mask's CSR structure is kept, the values regathered per step.
            let plan = CPU.csr_plan(&mask, co, sw.cols, sw.nnz()).unwrap();
            let mut g = c.benchmark_group(format!("spconv/{name}"));
            g.sample_size(10)
                .measurement_time(Duration::from_secs(3))
                .warm_up_time(Duration::from_millis(500));
            if d == 1.0 {
                g.bench_function("dense/d1.0/fwd", |b| {
                    b.iter(|| CPU.conv2d_fwd(black_box(&x), &wm, None, &p).unwrap())
                });
                g.bench_function("dense/d1.0/bwd_in", |b| {
                    b.iter(|| CPU.conv2d_bwd_input(black_box(&dy), &wm, &p).unwrap())
                });
                g.bench_function("dense/d1.0/bwd_w", |b| {
                    b.iter(|| {
                        CPU.conv2d_bwd_weight(black_box(&x), &dy, &p, Some(&mask))
                            .unwrap()
                    })
                });
            }
            let tag = format!("d{d}");
            g.bench_function(format!("sparse/{tag}/fwd"), |b| {
                b.iter(|| {
                    CPU.spconv_fwd(black_box(&x), (&sw).into(), None, &p)
                        .unwrap()
                })
            });
            g.bench_function(format!("sparse/{tag}/bwd_in"), |b| {
                b.iter(|| {
                    CPU.spconv_bwd_input(black_box(&dy), (&swt).into(), &p)
                        .unwrap()
                })
            });
            g.bench_function(format!("sparse/{tag}/bwd_w"), |b| {
                b.iter(|| {
                    CPU.spconv_bwd_weight(black_box(&x), &dy, (&sw).into(), &p)
                        .unwrap()
                })
            });
            g.bench_function(format!("sparse/{tag}/all"), |b| {
                b.iter(|| {
                    let s = CPU.csr_gather(&plan, &wm, false).unwrap();
                    let t = CPU.csr_gather(&plan, &wm, true).unwrap();
                    CPU.spconv_fwd(black_box(&x), s.operand(), None, &p)
                        .unwrap();
                    CPU.spconv_bwd_input(&dy, t.operand(), &p).unwrap();
                    CPU.spconv_bwd_weight(&x, &dy, s.operand(), &p).unwrap()
                })
            });
            g.finish();
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}

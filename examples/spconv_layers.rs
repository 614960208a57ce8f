//! Quick per-layer timing of the sparse conv kernels against the dense ones (VGG-16 CIFAR shapes).
//! cargo run --release --example spconv_layers -- DENSITY BATCH
use std::time::Instant;
use suptickets::backend::cpu::{conv_gemm, spconv_direct, spconv_tiled};
use suptickets::backend::{Conv2dParams, SparseWeight};
use suptickets::rng::Rng;

fn time<F: FnMut()>(mut f: F, reps: usize) -> f64 {
    f();
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[reps / 2]
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let d: f32 = a.get(1).map_or(0.05, |s| s.parse().unwrap());
    let n: usize = a.get(2).map_or(128, |s| s.parse().unwrap());
    let shapes = [
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
    let mut r = Rng::new(0);
    let (mut td, mut ts) = ([0.0; 3], [0.0; 3]);
    for &(ci, co, hw) in &shapes {
        let p = Conv2dParams::new(n, ci, hw, hw, co, 3, 1, 1).unwrap();
        let x: Vec<f32> = (0..n * ci * hw * hw).map(|_| r.normal()).collect();
        let k = p.col_rows();
        let w: Vec<f32> = (0..co * k).map(|_| r.normal()).collect();
        let m: Vec<f32> = (0..co * k)
            .map(|_| (r.uniform() < d) as u8 as f32)
            .collect();
        let wm: Vec<f32> = w.iter().zip(&m).map(|(a, b)| a * b).collect();
        let sw = SparseWeight::from_masked(&w, &m, co, k).unwrap();
        let ys: usize = p.y_shape().iter().product();
        let dy: Vec<f32> = (0..ys).map(|_| r.normal()).collect();
        let mut y = vec![0f32; ys];
        let mut dx = vec![0f32; x.len()];
        let mut dw = vec![0f32; w.len()];
        let reps = 5;
        let df = time(
            || conv_gemm::conv2d_forward(&x, &wm, None, &p, &mut y),
            reps,
        );
        let di = time(
            || conv_gemm::conv2d_backward_input(&dy, &wm, &p, &mut dx),
            reps,
        );
        let dwt = time(
            || conv_gemm::conv2d_backward_weight(&x, &dy, &p, &mut dw),
            reps,
        );
        let dir = spconv_direct::applies(&p)
            && std::env::var("SPCONV_PATH").map_or(true, |v| v != "tiled");
        let sf = time(
            || {
                if dir {
                    spconv_direct::forward(&x, &sw, None, &p, &mut y)
                } else {
                    spconv_tiled::forward(&x, &sw, None, &p, &mut y)
                }
            },
            reps,
        );
        let swt = sw.transpose();
        let si = time(
            || {
                if dir {
                    spconv_direct::backward_input(&dy, &swt, &p, &mut dx)
                } else {
                    spconv_tiled::backward_input(&dy, &swt, &p, &mut dx)
                }
            },
            reps,
        );
        let sww = time(
            || {
                let _ = if dir {
                    spconv_direct::backward_weight(&x, &dy, &sw, &p)
                } else {
                    spconv_tiled::backward_weight(&x, &dy, &sw, &p)
                };
            },
            reps,
        );
        let build = time(
            || {
                let s = SparseWeight::from_masked(&w, &m, co, k).unwrap();
                let _ = s.transpose();
            },
            reps,
        );
        let gf = 2.0 * p.macs() as f64 * sw.density() / 1e9;
        println!("{ci:>3}->{co:>3} @{hw:>2}: dense f/i/w {:6.1} {:6.1} {:6.1} ms | sparse {:6.1} {:6.1} {:6.1} ms | x{:4.1} {:4.1} {:4.1} | sparse GFLOP/s {:5.1} {:5.1} {:5.1} | build {:4.1} ms",
            df*1e3, di*1e3, dwt*1e3, sf*1e3, si*1e3, sww*1e3, df/sf, di/si, dwt/sww, gf/sf, gf/si, gf/sww, build*1e3);
        td[0] += df;
        td[1] += di;
        td[2] += dwt;
        ts[0] += sf;
        ts[1] += si;
        ts[2] += sww;
    }
    println!(
        "total dense {:.0} {:.0} {:.0} ms = {:.0}; sparse {:.0} {:.0} {:.0} = {:.0}; ratio {:.2}",
        td[0] * 1e3,
        td[1] * 1e3,
        td[2] * 1e3,
        (td[0] + td[1] + td[2]) * 1e3,
        ts[0] * 1e3,
        ts[1] * 1e3,
        ts[2] * 1e3,
        (ts[0] + ts[1] + ts[2]) * 1e3,
        (td[0] + td[1] + td[2]) / (ts[0] + ts[1] + ts[2])
    );
}

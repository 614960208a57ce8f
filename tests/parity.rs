//! CPU ↔ CUDA parity: one `parity_<kernel>` test per registry kernel runs the CPU twin
//! (`suptickets::backend::cpu::<family>::<kernel>`) and the CUDA kernel (through the backend's
//! tensor-level entry point of the same name) on the same random inputs and compares them
//! (relative error ≤ 1e-4, argmax indices exactly); `backend_*` tests compare whole
//! [`Backend`] methods on `Device::Cpu` and `Device::cuda(0)`.
//!
//! Without a GPU every test prints `skipped: no GPU` and passes, unless
//! `SUPTICKETS_REQUIRE_GPU=1`, where it fails (that is how the GPU machine runs them).
//! `cuda_unavailable_is_a_clear_error` checks the error a machine without CUDA gets.

#![cfg(feature = "cuda")]

use std::sync::{Arc, OnceLock};

use suptickets::backend::cuda::CudaBackend;
use suptickets::backend::{cpu, Backend, Conv2dParams, Pool2dParams, SgdParams};
use suptickets::rng::Rng;
use suptickets::{Device, Error, Tensor};

// ---- harness ------------------------------------------------------------------------------

fn require_gpu() -> bool {
    std::env::var("SUPTICKETS_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// The shared CUDA backend (one per test binary, so each family compiles once), or None
/// after printing `skipped: no GPU` (a failure when SUPTICKETS_REQUIRE_GPU=1).
fn gpu() -> Option<Arc<CudaBackend>> {
    static GPU: OnceLock<std::result::Result<Arc<CudaBackend>, String>> = OnceLock::new();
    match GPU.get_or_init(|| CudaBackend::new(0).map_err(|e| e.to_string())) {
        Ok(g) => Some(g.clone()),
        Err(e) => {
            assert!(
                !require_gpu(),
                "SUPTICKETS_REQUIRE_GPU=1 but CUDA is unusable: {e}"
            );
            println!("skipped: no GPU ({e})");
            None
        }
    }
}

macro_rules! gpu_or_skip {
    () => {
        match gpu() {
            Some(g) => g,
            None => return,
        }
    };
}

fn normal(r: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| r.normal()).collect()
}

fn uniform(r: &mut Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| lo + (hi - lo) * r.uniform()).collect()
}

fn up(g: &CudaBackend, data: &[f32], shape: &[usize]) -> Tensor {
    g.upload(data, shape).expect("upload")
}

fn zeros(g: &CudaBackend, shape: &[usize]) -> Tensor {
    g.zeros(shape).expect("zeros")
}

fn down(t: &Tensor) -> Vec<f32> {
    t.to_vec().expect("download")
}

/// Asserts |got − want| ≤ tol · max(|want|, 1) elementwise (NaN matches NaN).
fn assert_close_tol(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let mut worst = (0.0f32, 0usize);
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        if a.is_nan() && b.is_nan() {
            continue;
        }
        let e = (a - b).abs() / b.abs().max(1.0);
        if e.is_nan() || e > worst.0 {
            worst = (e, i);
        }
    }
    let (e, i) = worst;
    assert!(
        e.is_finite() && e <= tol,
        "{what}: relative error {e:e} at {i}: cuda {} vs cpu {} (tolerance {tol:e})",
        got[i],
        want[i]
    );
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_close_tol(what, got, want, 1e-4);
}

/// Like [`assert_close_tol`] but measures each error against max(|want_i|, rms(want), 1): the
/// rounding error of a long reduction (a weight gradient summed over N·H·W terms) scales with the
/// typical size of its sums, so a result that cancels to near zero is not held to 1e-4 of itself.
fn assert_close_scaled(what: &str, got: &Tensor, want: &Tensor, tol: f32) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes differ");
    let (got, want) = (down(got), down(want));
    let rms = (want.iter().map(|v| v * v).sum::<f32>() / want.len().max(1) as f32).sqrt();
    let scale = rms.max(1.0);
    let scaled = |v: &[f32]| v.iter().map(|x| x / scale).collect::<Vec<f32>>();
    assert_close_tol(what, &scaled(&got), &scaled(&want), tol);
}

fn assert_tensor_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes differ");
    assert_close(what, &down(got), &down(want));
}

#[allow(clippy::too_many_arguments)]
fn conv_params(
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: usize,
    s: usize,
    pad: usize,
) -> Conv2dParams {
    Conv2dParams::new(n, c_in, h, w, c_out, k, s, pad).expect("conv params")
}

// ---- conv ---------------------------------------------------------------------------------

#[test]
fn parity_im2col_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(1);
    for p in [
        conv_params(1, 3, 11, 9, 4, 3, 2, 1),
        conv_params(1, 5, 8, 8, 2, 1, 1, 0),
        conv_params(1, 2, 7, 6, 3, 5, 1, 2),
    ] {
        let x = normal(&mut r, (p.c_in * p.h_in * p.w_in) as usize);
        let mut col = vec![0.0; p.col_rows() * p.col_cols()];
        cpu::conv::im2col_f32(&x, &p, &mut col);
        let mut gcol = zeros(&g, &[p.col_rows(), p.col_cols()]);
        g.im2col_f32(&up(&g, &x, &[x.len()]), &p, &mut gcol)
            .unwrap();
        assert_close(&format!("im2col {p:?}"), &down(&gcol), &col);
    }
}

#[test]
fn parity_col2im_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(2);
    for p in [
        conv_params(1, 3, 11, 9, 4, 3, 2, 1),
        conv_params(1, 4, 9, 9, 2, 3, 1, 1),
        conv_params(1, 2, 10, 7, 3, 2, 3, 1),
    ] {
        let col = normal(&mut r, p.col_rows() * p.col_cols());
        let mut x = vec![0.0; (p.c_in * p.h_in * p.w_in) as usize];
        cpu::conv::col2im_f32(&col, &p, &mut x);
        let mut gx = up(&g, &vec![f32::NAN; x.len()], &[x.len()]);
        g.col2im_f32(&up(&g, &col, &[col.len()]), &p, &mut gx)
            .unwrap();
        assert_close(&format!("col2im {p:?}"), &down(&gx), &x);
    }
}

#[test]
fn parity_bias_add_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(3);
    let (n, c, s) = (3, 5, 37);
    let y0 = normal(&mut r, n * c * s);
    let bias = normal(&mut r, c);
    let mut y = y0.clone();
    cpu::conv::bias_add_f32(&mut y, &bias, n, c, s);
    let mut gy = up(&g, &y0, &[n, c, s]);
    g.bias_add_f32(&mut gy, &up(&g, &bias, &[c]), n, c, s)
        .unwrap();
    assert_close("bias_add", &down(&gy), &y);
}

#[test]
fn parity_channel_sum_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(4);
    // Small n·s (a thread per channel) and large n·s (a block per channel).
    for (n, c, s) in [(4, 300, 1), (16, 7, 333), (2, 3, 20)] {
        let x = normal(&mut r, n * c * s);
        let mut out = vec![0.0; c];
        cpu::conv::channel_sum_f32(&x, n, c, s, &mut out);
        let mut gout = zeros(&g, &[c]);
        g.channel_sum_f32(&up(&g, &x, &[n, c, s]), n, c, s, &mut gout)
            .unwrap();
        assert_close(&format!("channel_sum n{n} c{c} s{s}"), &down(&gout), &out);
    }
}

// ---- matmul -------------------------------------------------------------------------------

#[test]
fn parity_sgemm_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(5);
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        for (m, n, k, alpha, beta) in [
            (70, 33, 37, 0.7, 0.3),
            (128, 64, 300, 1.0, 0.0),
            (1, 1, 1, 2.0, 1.0),
        ] {
            let (ar, ac) = if ta { (k, m) } else { (m, k) };
            let (br, bc) = if tb { (n, k) } else { (k, n) };
            let (lda, ldb, ldc) = (ac + 3, bc + 1, n + 2);
            let a = normal(&mut r, ar * lda);
            let b = normal(&mut r, br * ldb);
            let c0 = normal(&mut r, m * ldc);
            let mut c = c0.clone();
            cpu::matmul::sgemm_f32(ta, tb, m, n, k, alpha, &a, lda, &b, ldb, beta, &mut c, ldc);
            let mut gc = up(&g, &c0, &[c0.len()]);
            g.sgemm_f32(
                ta,
                tb,
                m,
                n,
                k,
                alpha,
                &up(&g, &a, &[a.len()]),
                lda,
                &up(&g, &b, &[b.len()]),
                ldb,
                beta,
                &mut gc,
                ldc,
            )
            .unwrap();
            assert_close(
                &format!("sgemm ta={ta} tb={tb} m{m} n{n} k{k} alpha {alpha} beta {beta}"),
                &down(&gc),
                &c,
            );
        }
    }
    // beta = 0 overwrites a C full of NaN.
    let (a, b) = (normal(&mut r, 6), normal(&mut r, 6));
    let mut c = vec![f32::NAN; 4];
    cpu::matmul::sgemm_f32(false, false, 2, 2, 3, 1.0, &a, 3, &b, 2, 0.0, &mut c, 2);
    let mut gc = up(&g, &[f32::NAN; 4], &[4]);
    g.sgemm_f32(
        false,
        false,
        2,
        2,
        3,
        1.0,
        &up(&g, &a, &[6]),
        3,
        &up(&g, &b, &[6]),
        2,
        0.0,
        &mut gc,
        2,
    )
    .unwrap();
    assert_close("sgemm beta=0 over NaN", &down(&gc), &c);
}

// ---- batchnorm ----------------------------------------------------------------------------

/// Random BN inputs: x (offset from 0 so the mean matters), dy, gamma, beta.
fn bn_inputs(
    r: &mut Rng,
    n: usize,
    c: usize,
    s: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let x = uniform(r, n * c * s, 0.5, 3.0);
    let dy = normal(r, n * c * s);
    let gamma = uniform(r, c, 0.5, 1.5);
    let beta = normal(r, c);
    (x, dy, gamma, beta)
}

const BN_SHAPES: [(usize, usize, usize); 3] = [(8, 6, 49), (64, 5, 1), (2, 3, 1000)];

#[test]
fn parity_bn_stats_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(6);
    for (n, c, s) in BN_SHAPES {
        let (x, ..) = bn_inputs(&mut r, n, c, s);
        let (mut mean, mut var) = (vec![0.0; c], vec![0.0; c]);
        cpu::batchnorm::bn_stats_f32(&x, n, c, s, &mut mean, &mut var);
        let (mut gm, mut gv) = (zeros(&g, &[c]), zeros(&g, &[c]));
        g.bn_stats_f32(&up(&g, &x, &[n, c, s]), n, c, s, &mut gm, &mut gv)
            .unwrap();
        assert_close(&format!("bn mean n{n} c{c} s{s}"), &down(&gm), &mean);
        assert_close(&format!("bn var n{n} c{c} s{s}"), &down(&gv), &var);
    }
}

#[test]
fn parity_bn_invstd_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(7);
    let var = uniform(&mut r, 300, 0.0, 4.0);
    let mut inv = vec![0.0; 300];
    cpu::batchnorm::bn_invstd_f32(&var, 1e-5, &mut inv);
    let mut gi = zeros(&g, &[300]);
    g.bn_invstd_f32(&up(&g, &var, &[300]), 1e-5, &mut gi)
        .unwrap();
    assert_close("bn invstd", &down(&gi), &inv);
}

#[test]
fn parity_bn_fwd_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(8);
    for (n, c, s) in BN_SHAPES {
        let (x, _, gamma, beta) = bn_inputs(&mut r, n, c, s);
        let mean = uniform(&mut r, c, 1.0, 2.0);
        let invstd = uniform(&mut r, c, 0.5, 2.0);
        let mut y = vec![0.0; x.len()];
        cpu::batchnorm::bn_fwd_f32(&x, n, c, s, &mean, &invstd, &gamma, &beta, &mut y);
        let mut gy = zeros(&g, &[n, c, s]);
        g.bn_fwd_f32(
            &up(&g, &x, &[n, c, s]),
            n,
            c,
            s,
            &up(&g, &mean, &[c]),
            &up(&g, &invstd, &[c]),
            &up(&g, &gamma, &[c]),
            &up(&g, &beta, &[c]),
            &mut gy,
        )
        .unwrap();
        assert_close(&format!("bn fwd n{n} c{c} s{s}"), &down(&gy), &y);
    }
}

#[test]
fn parity_bn_bwd_reduce_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(9);
    for (n, c, s) in BN_SHAPES {
        let (x, dy, ..) = bn_inputs(&mut r, n, c, s);
        let mean = uniform(&mut r, c, 1.0, 2.0);
        let invstd = uniform(&mut r, c, 0.5, 2.0);
        let (mut sd, mut sdx) = (vec![0.0; c], vec![0.0; c]);
        cpu::batchnorm::bn_bwd_reduce_f32(&dy, &x, n, c, s, &mean, &invstd, &mut sd, &mut sdx);
        let (mut gsd, mut gsdx) = (zeros(&g, &[c]), zeros(&g, &[c]));
        g.bn_bwd_reduce_f32(
            &up(&g, &dy, &[n, c, s]),
            &up(&g, &x, &[n, c, s]),
            n,
            c,
            s,
            &up(&g, &mean, &[c]),
            &up(&g, &invstd, &[c]),
            &mut gsd,
            &mut gsdx,
        )
        .unwrap();
        assert_close(&format!("bn sum_dy n{n} c{c} s{s}"), &down(&gsd), &sd);
        assert_close(
            &format!("bn sum_dy_xhat n{n} c{c} s{s}"),
            &down(&gsdx),
            &sdx,
        );
    }
}

#[test]
fn parity_bn_bwd_dx_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(10);
    for (n, c, s) in BN_SHAPES {
        let (x, dy, gamma, _) = bn_inputs(&mut r, n, c, s);
        let mean = uniform(&mut r, c, 1.0, 2.0);
        let invstd = uniform(&mut r, c, 0.5, 2.0);
        let sd = normal(&mut r, c);
        let sdx = normal(&mut r, c);
        let mut dx = vec![0.0; x.len()];
        cpu::batchnorm::bn_bwd_dx_f32(&dy, &x, n, c, s, &mean, &invstd, &gamma, &sd, &sdx, &mut dx);
        let mut gdx = zeros(&g, &[n, c, s]);
        g.bn_bwd_dx_f32(
            &up(&g, &dy, &[n, c, s]),
            &up(&g, &x, &[n, c, s]),
            n,
            c,
            s,
            &up(&g, &mean, &[c]),
            &up(&g, &invstd, &[c]),
            &up(&g, &gamma, &[c]),
            &up(&g, &sd, &[c]),
            &up(&g, &sdx, &[c]),
            &mut gdx,
        )
        .unwrap();
        assert_close(&format!("bn dx n{n} c{c} s{s}"), &down(&gdx), &dx);
    }
}

// ---- elementwise --------------------------------------------------------------------------

const EW_LEN: usize = 100_003;

#[test]
fn parity_relu_fwd_f32() {
    let g = gpu_or_skip!();
    let mut x = normal(&mut Rng::new(11), EW_LEN);
    x[17] = f32::NAN;
    let mut y = vec![0.0; EW_LEN];
    cpu::elementwise::relu_fwd_f32(&x, &mut y);
    let mut gy = zeros(&g, &[EW_LEN]);
    g.relu_fwd_f32(&up(&g, &x, &[EW_LEN]), &mut gy).unwrap();
    assert_close("relu fwd", &down(&gy), &y);
}

#[test]
fn parity_relu_bwd_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(12);
    let (dy, y) = (normal(&mut r, EW_LEN), normal(&mut r, EW_LEN));
    let mut dx = vec![0.0; EW_LEN];
    cpu::elementwise::relu_bwd_f32(&dy, &y, &mut dx);
    let mut gdx = zeros(&g, &[EW_LEN]);
    g.relu_bwd_f32(&up(&g, &dy, &[EW_LEN]), &up(&g, &y, &[EW_LEN]), &mut gdx)
        .unwrap();
    assert_close("relu bwd", &down(&gdx), &dx);
}

#[test]
fn parity_add_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(13);
    let (a, b) = (normal(&mut r, EW_LEN), normal(&mut r, EW_LEN));
    let mut c = vec![0.0; EW_LEN];
    cpu::elementwise::add_f32(&a, &b, &mut c);
    let mut gc = zeros(&g, &[EW_LEN]);
    g.add_f32(&up(&g, &a, &[EW_LEN]), &up(&g, &b, &[EW_LEN]), &mut gc)
        .unwrap();
    assert_close("add", &down(&gc), &c);
}

#[test]
fn parity_mul_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(14);
    let (a, b) = (normal(&mut r, EW_LEN), normal(&mut r, EW_LEN));
    let mut c = vec![0.0; EW_LEN];
    cpu::elementwise::mul_f32(&a, &b, &mut c);
    let mut gc = zeros(&g, &[EW_LEN]);
    g.mul_f32(&up(&g, &a, &[EW_LEN]), &up(&g, &b, &[EW_LEN]), &mut gc)
        .unwrap();
    assert_close("mul", &down(&gc), &c);
}

#[test]
fn parity_axpby_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(15);
    let (x, y0) = (normal(&mut r, EW_LEN), normal(&mut r, EW_LEN));
    let mut y = y0.clone();
    cpu::elementwise::axpby_f32(0.3, &x, -1.7, &mut y);
    let mut gy = up(&g, &y0, &[EW_LEN]);
    g.axpby_f32(0.3, &up(&g, &x, &[EW_LEN]), -1.7, &mut gy)
        .unwrap();
    assert_close("axpby", &down(&gy), &y);
}

#[test]
fn parity_sum_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(16);
    for len in [0, 1, 1000, 4096, 1_000_003] {
        let x = normal(&mut r, len);
        let want = cpu::elementwise::sum_f32(&x);
        let got = g.sum_f32(&up(&g, &x, &[len])).unwrap();
        // Sums of ±1 values cancel: compare against the sum of magnitudes' scale.
        let scale = (len as f32).sqrt().max(1.0);
        assert!(
            (got - want).abs() <= 1e-4 * scale.max(want.abs()),
            "sum of {len}: cuda {got} vs cpu {want}"
        );
    }
}

// ---- pool ---------------------------------------------------------------------------------

/// Pooling cases: (n, c, h, w, k, stride, pad).
const POOLS: [(usize, usize, usize, usize, usize, usize, usize); 4] = [
    (2, 3, 8, 8, 2, 2, 0),
    (2, 2, 7, 9, 3, 2, 1),
    (1, 3, 5, 5, 3, 1, 1),
    (2, 2, 6, 5, 2, 1, 1),
];

fn pool_params(c: (usize, usize, usize, usize, usize, usize, usize)) -> Pool2dParams {
    Pool2dParams::new(c.0, c.1, c.2, c.3, c.4, c.5, c.6).expect("pool params")
}

/// Values on a coarse grid, so windows hold ties (the first maximum must win on both sides).
fn tied(r: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| (r.normal() * 2.0).round() / 2.0).collect()
}

#[test]
fn parity_maxpool2d_fwd_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(17);
    for case in POOLS {
        let p = pool_params(case);
        let lin = p.x_shape().iter().product::<usize>();
        let lout = p.y_shape().iter().product::<usize>();
        let mut x = tied(&mut r, lin);
        x[3] = f32::NAN;
        let (mut y, mut idx) = (vec![0.0; lout], vec![0.0; lout]);
        cpu::pool::maxpool2d_fwd_f32(&x, &p, &mut y, &mut idx);
        let (mut gy, mut gi) = (zeros(&g, &p.y_shape()), zeros(&g, &p.y_shape()));
        g.maxpool2d_fwd_f32(&up(&g, &x, &p.x_shape()), &p, &mut gy, &mut gi)
            .unwrap();
        assert_close(&format!("maxpool y {p:?}"), &down(&gy), &y);
        assert_eq!(down(&gi), idx, "maxpool argmax {p:?}");
    }
}

#[test]
fn parity_maxpool2d_bwd_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(18);
    for case in POOLS {
        let p = pool_params(case);
        let lin = p.x_shape().iter().product::<usize>();
        let lout = p.y_shape().iter().product::<usize>();
        let x = tied(&mut r, lin);
        let (mut y, mut idx) = (vec![0.0; lout], vec![0.0; lout]);
        cpu::pool::maxpool2d_fwd_f32(&x, &p, &mut y, &mut idx);
        let dy = normal(&mut r, lout);
        let mut dx = vec![0.0; lin];
        cpu::pool::maxpool2d_bwd_f32(&dy, &idx, &p, &mut dx);
        let mut gdx = up(&g, &vec![f32::NAN; lin], &p.x_shape());
        g.maxpool2d_bwd_f32(
            &up(&g, &dy, &p.y_shape()),
            &up(&g, &idx, &p.y_shape()),
            &p,
            &mut gdx,
        )
        .unwrap();
        assert_close(&format!("maxpool dx {p:?}"), &down(&gdx), &dx);
    }
}

#[test]
fn parity_avgpool2d_fwd_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(19);
    for case in POOLS {
        let p = pool_params(case);
        let lin = p.x_shape().iter().product::<usize>();
        let x = normal(&mut r, lin);
        let mut y = vec![0.0; p.y_shape().iter().product::<usize>()];
        cpu::pool::avgpool2d_fwd_f32(&x, &p, &mut y);
        let mut gy = zeros(&g, &p.y_shape());
        g.avgpool2d_fwd_f32(&up(&g, &x, &p.x_shape()), &p, &mut gy)
            .unwrap();
        assert_close(&format!("avgpool y {p:?}"), &down(&gy), &y);
    }
}

#[test]
fn parity_avgpool2d_bwd_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(20);
    for case in POOLS {
        let p = pool_params(case);
        let lin = p.x_shape().iter().product::<usize>();
        let dy = normal(&mut r, p.y_shape().iter().product::<usize>());
        let mut dx = vec![0.0; lin];
        cpu::pool::avgpool2d_bwd_f32(&dy, &p, &mut dx);
        let mut gdx = up(&g, &vec![f32::NAN; lin], &p.x_shape());
        g.avgpool2d_bwd_f32(&up(&g, &dy, &p.y_shape()), &p, &mut gdx)
            .unwrap();
        assert_close(&format!("avgpool dx {p:?}"), &down(&gdx), &dx);
    }
}

// ---- loss ---------------------------------------------------------------------------------

fn labels(r: &mut Rng, n: usize, k: usize) -> Vec<f32> {
    (0..n).map(|_| r.below(k as u64) as f32).collect()
}

#[test]
fn parity_log_softmax_ce_fwd_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(21);
    for (n, k) in [(128, 10), (7, 1000), (3, 1)] {
        let mut logits: Vec<f32> = normal(&mut r, n * k).iter().map(|v| v * 4.0).collect();
        logits[0] = 60.0;
        let mut lab = labels(&mut r, n, k);
        lab[n - 1] = 0.5; // not a class index: NaN on both sides
        let (mut lp, mut nll) = (vec![0.0; n * k], vec![0.0; n]);
        cpu::loss::log_softmax_ce_fwd_f32(&logits, &lab, n, k, &mut lp, &mut nll);
        let (mut glp, mut gnll) = (zeros(&g, &[n, k]), zeros(&g, &[n]));
        g.log_softmax_ce_fwd_f32(
            &up(&g, &logits, &[n, k]),
            &up(&g, &lab, &[n]),
            n,
            k,
            &mut glp,
            &mut gnll,
        )
        .unwrap();
        assert_close(&format!("logprobs n{n} k{k}"), &down(&glp), &lp);
        assert_close(&format!("row nll n{n} k{k}"), &down(&gnll), &nll);
    }
}

#[test]
fn parity_log_softmax_ce_bwd_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(22);
    for (n, k) in [(128, 10), (7, 1000)] {
        let logits = normal(&mut r, n * k);
        let lab = labels(&mut r, n, k);
        let (mut lp, mut nll) = (vec![0.0; n * k], vec![0.0; n]);
        cpu::loss::log_softmax_ce_fwd_f32(&logits, &lab, n, k, &mut lp, &mut nll);
        let mut d = vec![0.0; n * k];
        cpu::loss::log_softmax_ce_bwd_f32(&lp, &lab, n, k, 0.37, &mut d);
        let mut gd = zeros(&g, &[n, k]);
        g.log_softmax_ce_bwd_f32(
            &up(&g, &lp, &[n, k]),
            &up(&g, &lab, &[n]),
            n,
            k,
            0.37,
            &mut gd,
        )
        .unwrap();
        assert_close(&format!("dlogits n{n} k{k}"), &down(&gd), &d);
    }
}

// ---- optim --------------------------------------------------------------------------------

fn mask(r: &mut Rng, n: usize, density: f32) -> Vec<f32> {
    (0..n)
        .map(|_| if r.uniform() < density { 1.0 } else { 0.0 })
        .collect()
}

#[test]
fn parity_sgd_step_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(23);
    let len = 50_001;
    for nesterov in [0, 1] {
        for masked in [false, true] {
            let p = SgdParams {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 5e-4,
                nesterov,
            };
            let (w0, gr, m0) = (
                normal(&mut r, len),
                normal(&mut r, len),
                normal(&mut r, len),
            );
            let mk = mask(&mut r, len, 0.2);
            let (mut w, mut m) = (w0.clone(), m0.clone());
            cpu::optim::sgd_step_f32(&mut w, &gr, &mut m, masked.then_some(&mk[..]), &p);
            let (mut gw, mut gm) = (up(&g, &w0, &[len]), up(&g, &m0, &[len]));
            let gmask = up(&g, &mk, &[len]);
            g.sgd_step_f32(
                &mut gw,
                &up(&g, &gr, &[len]),
                &mut gm,
                masked.then_some(&gmask),
                &p,
            )
            .unwrap();
            let what = format!("sgd nesterov={nesterov} masked={masked}");
            assert_close(&format!("{what}: w"), &down(&gw), &w);
            assert_close(&format!("{what}: m"), &down(&gm), &m);
        }
    }
}

// ---- whole Backend methods: Device::Cpu vs Device::cuda(0) -----------------------------------

/// Uploads host data to both devices.
fn both(g: &CudaBackend, data: &[f32], shape: &[usize]) -> (Tensor, Tensor) {
    (
        Tensor::from_vec(data.to_vec(), shape).unwrap(),
        up(g, data, shape),
    )
}

fn cpu_be() -> &'static dyn Backend {
    &cpu::CPU
}

#[test]
fn backend_conv2d_stride2_pad1_fwd_and_bwd() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(30);
    for p in [
        conv_params(4, 3, 11, 11, 8, 3, 2, 1),
        conv_params(3, 8, 8, 8, 16, 3, 1, 1),
        conv_params(5, 16, 6, 6, 4, 1, 1, 0),
        conv_params(2, 4, 9, 9, 6, 1, 2, 0),
        // Enough images that the weight gradient is split over several partial sums.
        conv_params(40, 2, 5, 5, 3, 3, 1, 1),
    ] {
        let xs = normal(&mut r, p.x_shape().iter().product());
        let ws = normal(&mut r, p.w_shape().iter().product());
        let bs = normal(&mut r, p.c_out as usize);
        let dys = normal(&mut r, p.y_shape().iter().product());
        let ms = mask(&mut r, ws.len(), 0.3);
        let (cx, gx) = both(&g, &xs, &p.x_shape());
        let (cw, gw) = both(&g, &ws, &p.w_shape());
        let (cb, gb) = both(&g, &bs, &[p.c_out as usize]);
        let (cdy, gdy) = both(&g, &dys, &p.y_shape());
        let (cm, gm) = both(&g, &ms, &p.w_shape());
        let what = format!("{p:?}");
        assert_tensor_close(
            &format!("conv fwd {what}"),
            &g.conv2d_fwd(&gx, &gw, Some(&gb), &p).unwrap(),
            &cpu_be().conv2d_fwd(&cx, &cw, Some(&cb), &p).unwrap(),
        );
        assert_tensor_close(
            &format!("conv fwd (no bias) {what}"),
            &g.conv2d_fwd(&gx, &gw, None, &p).unwrap(),
            &cpu_be().conv2d_fwd(&cx, &cw, None, &p).unwrap(),
        );
        assert_tensor_close(
            &format!("conv bwd input {what}"),
            &g.conv2d_bwd_input(&gdy, &gw, &p).unwrap(),
            &cpu_be().conv2d_bwd_input(&cdy, &cw, &p).unwrap(),
        );
        assert_tensor_close(
            &format!("conv bwd weight {what}"),
            &g.conv2d_bwd_weight(&gx, &gdy, &p, None).unwrap(),
            &cpu_be().conv2d_bwd_weight(&cx, &cdy, &p, None).unwrap(),
        );
        assert_tensor_close(
            &format!("conv bwd weight masked {what}"),
            &g.conv2d_bwd_weight(&gx, &gdy, &p, Some(&gm)).unwrap(),
            &cpu_be()
                .conv2d_bwd_weight(&cx, &cdy, &p, Some(&cm))
                .unwrap(),
        );
        assert_tensor_close(
            &format!("bias grad {what}"),
            &g.channel_sum(&gdy).unwrap(),
            &cpu_be().channel_sum(&cdy).unwrap(),
        );
    }
}

#[test]
fn backend_conv2d_chunked_over_the_im2col_budget() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(31);
    // 36 x 64 columns per image; a budget of 5,000 floats takes two images a chunk, so 7 images
    // run as 4 chunks (the last one short). Small enough for the virtual GPU; the budget is
    // process-wide, so the other conv tests running meanwhile are chunked too (same results).
    suptickets::backend::cuda::conv::set_im2col_budget(5_000);
    let p = conv_params(7, 4, 8, 8, 8, 3, 1, 1);
    let xs = normal(&mut r, p.x_shape().iter().product());
    let ws: Vec<f32> = normal(&mut r, p.w_shape().iter().product())
        .iter()
        .map(|v| v * 0.05)
        .collect();
    let dys = normal(&mut r, p.y_shape().iter().product());
    let (cx, gx) = both(&g, &xs, &p.x_shape());
    let (cw, gw) = both(&g, &ws, &p.w_shape());
    let (cdy, gdy) = both(&g, &dys, &p.y_shape());
    assert_tensor_close(
        "chunked conv fwd",
        &g.conv2d_fwd(&gx, &gw, None, &p).unwrap(),
        &cpu_be().conv2d_fwd(&cx, &cw, None, &p).unwrap(),
    );
    assert_tensor_close(
        "chunked conv bwd input",
        &g.conv2d_bwd_input(&gdy, &gw, &p).unwrap(),
        &cpu_be().conv2d_bwd_input(&cdy, &cw, &p).unwrap(),
    );
    // A weight gradient is a long sum that can cancel to near 0: each error is measured against
    // the gradient's RMS (seen on an H200 with 130 images of 32x32, 133,120 products a weight:
    // 8.8e-4 absolute at an entry of 0.42, i.e. 2.4e-6 of the RMS).
    assert_close_scaled(
        "chunked conv bwd weight",
        &g.conv2d_bwd_weight(&gx, &gdy, &p, None).unwrap(),
        &cpu_be().conv2d_bwd_weight(&cx, &cdy, &p, None).unwrap(),
        1e-4,
    );
}

#[test]
fn backend_linear_fwd_bwd() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(32);
    for (n, din, dout) in [(128, 512, 10), (3, 7, 5), (64, 100, 300)] {
        let (cx, gx) = both(&g, &normal(&mut r, n * din), &[n, din]);
        let (cw, gw) = both(&g, &normal(&mut r, dout * din), &[dout, din]);
        let (cb, gb) = both(&g, &normal(&mut r, dout), &[dout]);
        let (cdy, gdy) = both(&g, &normal(&mut r, n * dout), &[n, dout]);
        let (cm, gm) = both(&g, &mask(&mut r, dout * din, 0.1), &[dout, din]);
        let what = format!("n{n} in{din} out{dout}");
        assert_tensor_close(
            &format!("linear fwd {what}"),
            &g.linear_fwd(&gx, &gw, Some(&gb)).unwrap(),
            &cpu_be().linear_fwd(&cx, &cw, Some(&cb)).unwrap(),
        );
        assert_tensor_close(
            &format!("linear bwd input {what}"),
            &g.linear_bwd_input(&gdy, &gw).unwrap(),
            &cpu_be().linear_bwd_input(&cdy, &cw).unwrap(),
        );
        assert_tensor_close(
            &format!("linear bwd weight {what}"),
            &g.linear_bwd_weight(&gx, &gdy, None).unwrap(),
            &cpu_be().linear_bwd_weight(&cx, &cdy, None).unwrap(),
        );
        assert_tensor_close(
            &format!("linear bwd weight masked {what}"),
            &g.linear_bwd_weight(&gx, &gdy, Some(&gm)).unwrap(),
            &cpu_be().linear_bwd_weight(&cx, &cdy, Some(&cm)).unwrap(),
        );
    }
}

#[test]
fn backend_batchnorm_train_eval_and_bwd() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(33);
    for shape in [vec![16, 8, 7, 7], vec![128, 20], vec![4, 3, 2, 5, 5]] {
        let c = shape[1];
        let len: usize = shape.iter().product();
        let (cx, gx) = both(&g, &uniform(&mut r, len, -1.0, 4.0), &shape);
        let (cdy, gdy) = both(&g, &normal(&mut r, len), &shape);
        let (cg, gg) = both(&g, &uniform(&mut r, c, 0.5, 1.5), &[c]);
        let (cb, gb) = both(&g, &normal(&mut r, c), &[c]);
        let cf = cpu_be().batchnorm_fwd_train(&cx, &cg, &cb, 1e-5).unwrap();
        let gf = g.batchnorm_fwd_train(&gx, &gg, &gb, 1e-5).unwrap();
        let what = format!("{shape:?}");
        assert_tensor_close(&format!("bn train y {what}"), &gf.y, &cf.y);
        assert_tensor_close(&format!("bn train mean {what}"), &gf.mean, &cf.mean);
        assert_tensor_close(&format!("bn train var {what}"), &gf.var, &cf.var);
        assert_tensor_close(&format!("bn train invstd {what}"), &gf.invstd, &cf.invstd);
        let cbw = cpu_be()
            .batchnorm_bwd(&cdy, &cx, &cg, &cf.mean, &cf.invstd)
            .unwrap();
        let gbw = g
            .batchnorm_bwd(&gdy, &gx, &gg, &gf.mean, &gf.invstd)
            .unwrap();
        assert_tensor_close(&format!("bn dx {what}"), &gbw.dx, &cbw.dx);
        assert_tensor_close(&format!("bn dgamma {what}"), &gbw.dgamma, &cbw.dgamma);
        assert_tensor_close(&format!("bn dbeta {what}"), &gbw.dbeta, &cbw.dbeta);
        let (cm, gm) = both(&g, &normal(&mut r, c), &[c]);
        let (cv, gv) = both(&g, &uniform(&mut r, c, 0.1, 2.0), &[c]);
        assert_tensor_close(
            &format!("bn eval {what}"),
            &g.batchnorm_fwd_eval(&gx, &gg, &gb, &gm, &gv, 1e-5).unwrap(),
            &cpu_be()
                .batchnorm_fwd_eval(&cx, &cg, &cb, &cm, &cv, 1e-5)
                .unwrap(),
        );
    }
}

#[test]
fn backend_cross_entropy_fwd_bwd() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(34);
    for (n, k) in [(128, 10), (5, 100), (1, 3)] {
        let (cl, gl) = both(&g, &normal(&mut r, n * k), &[n, k]);
        let (cy, gy) = both(&g, &labels(&mut r, n, k), &[n]);
        let (closs, clp) = cpu_be().cross_entropy_fwd(&cl, &cy).unwrap();
        let (gloss, glp) = g.cross_entropy_fwd(&gl, &gy).unwrap();
        assert_tensor_close(&format!("ce loss n{n} k{k}"), &gloss, &closs);
        assert_tensor_close(&format!("ce logprobs n{n} k{k}"), &glp, &clp);
        assert_tensor_close(
            &format!("ce bwd n{n} k{k}"),
            &g.cross_entropy_bwd(&glp, &gy, 2.5).unwrap(),
            &cpu_be().cross_entropy_bwd(&clp, &cy, 2.5).unwrap(),
        );
    }
    // A label that is not a class index is an error on both backends.
    let (cl, gl) = both(&g, &[0.0; 6], &[2, 3]);
    let (cy, gy) = both(&g, &[1.0, 3.0], &[2]);
    assert!(matches!(
        cpu_be().cross_entropy_fwd(&cl, &cy),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        g.cross_entropy_fwd(&gl, &gy),
        Err(Error::Shape(_))
    ));
}

#[test]
fn backend_sgd_with_mask() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(35);
    let shape = [64, 3, 3, 3];
    let len: usize = shape.iter().product();
    let p = SgdParams {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 1e-4,
        nesterov: 1,
    };
    let (mut cw, mut gw) = both(&g, &normal(&mut r, len), &shape);
    let (mut cm, mut gm) = both(&g, &vec![0.0; len], &shape);
    let (cmask, gmask) = both(&g, &mask(&mut r, len, 0.1), &shape);
    for step in 0..3 {
        let (cg, gg) = both(&g, &normal(&mut r, len), &shape);
        cpu_be()
            .sgd_step(&mut cw, &cg, &mut cm, Some(&cmask), &p)
            .unwrap();
        g.sgd_step(&mut gw, &gg, &mut gm, Some(&gmask), &p).unwrap();
        assert_tensor_close(&format!("sgd w step {step}"), &gw, &cw);
        assert_tensor_close(&format!("sgd m step {step}"), &gm, &cm);
    }
}

#[test]
fn backend_pool_relu_elementwise() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(36);
    let p = pool_params((4, 8, 16, 16, 2, 2, 0));
    let (cx, gx) = both(
        &g,
        &tied(&mut r, p.x_shape().iter().product()),
        &p.x_shape(),
    );
    let (cdy, gdy) = both(
        &g,
        &normal(&mut r, p.y_shape().iter().product()),
        &p.y_shape(),
    );
    let (cy, ci) = cpu_be().maxpool2d_fwd(&cx, &p).unwrap();
    let (gy, gi) = g.maxpool2d_fwd(&gx, &p).unwrap();
    assert_tensor_close("maxpool y", &gy, &cy);
    assert_eq!(down(&gi), down(&ci), "maxpool idx");
    assert_tensor_close(
        "maxpool dx",
        &g.maxpool2d_bwd(&gdy, &gi, &p).unwrap(),
        &cpu_be().maxpool2d_bwd(&cdy, &ci, &p).unwrap(),
    );
    assert_tensor_close(
        "avgpool y",
        &g.avgpool2d_fwd(&gx, &p).unwrap(),
        &cpu_be().avgpool2d_fwd(&cx, &p).unwrap(),
    );
    assert_tensor_close(
        "avgpool dx",
        &g.avgpool2d_bwd(&gdy, &p).unwrap(),
        &cpu_be().avgpool2d_bwd(&cdy, &p).unwrap(),
    );
    let gr = g.relu_fwd(&gx).unwrap();
    let cr = cpu_be().relu_fwd(&cx).unwrap();
    assert_tensor_close("relu fwd", &gr, &cr);
    let (cd, gd) = both(&g, &normal(&mut r, cx.numel()), cx.shape());
    assert_tensor_close(
        "relu bwd",
        &g.relu_bwd(&gd, &gr).unwrap(),
        &cpu_be().relu_bwd(&cd, &cr).unwrap(),
    );
    assert_tensor_close(
        "add",
        &g.add(&gx, &gd).unwrap(),
        &cpu_be().add(&cx, &cd).unwrap(),
    );
    assert_tensor_close(
        "mul",
        &g.mul(&gx, &gd).unwrap(),
        &cpu_be().mul(&cx, &cd).unwrap(),
    );
    let (mut cyy, mut gyy) = (cd.clone(), gd.clone());
    cpu_be().axpby(2.0, &cx, 0.5, &mut cyy).unwrap();
    g.axpby(2.0, &gx, 0.5, &mut gyy).unwrap();
    assert_tensor_close("axpby", &gyy, &cyy);
    // Copy-on-write: gd shared its storage with gyy and must be unchanged.
    assert_tensor_close("axpby left the shared tensor alone", &gd, &cd);
}

#[test]
fn backend_errors_name_devices_and_shapes() {
    let g = gpu_or_skip!();
    let cpu_t = Tensor::from_vec(vec![1.0; 6], &[2, 3]).unwrap();
    let gpu_t = up(&g, &[1.0; 6], &[2, 3]);
    match g.relu_fwd(&cpu_t) {
        Err(Error::Device(m)) => assert!(m.contains("cuda:0") && m.contains("cpu"), "{m}"),
        other => panic!("expected a device error, got {other:?}"),
    }
    match g.add(&gpu_t, &up(&g, &[1.0; 6], &[3, 2])) {
        Err(Error::Shape(m)) => assert!(m.contains("[2, 3]") && m.contains("[3, 2]"), "{m}"),
        other => panic!("expected a shape error, got {other:?}"),
    }
    let p = conv_params(2, 3, 8, 8, 4, 3, 1, 1);
    match g.conv2d_fwd(&up(&g, &[0.0; 10], &[10]), &gpu_t, None, &p) {
        Err(Error::Shape(m)) => assert!(m.contains("conv2d_fwd: x"), "{m}"),
        other => panic!("expected a shape error, got {other:?}"),
    }
    let dev = g.device();
    assert_eq!(dev.name(), "cuda:0");
    assert!(gpu_t.device().same_as(&dev));
    assert_eq!(
        gpu_t.to_device(&Device::Cpu).unwrap().to_vec().unwrap(),
        vec![1.0; 6]
    );
}

#[test]
fn backend_empty_tensors_and_one_backend_per_gpu() {
    let g = gpu_or_skip!();
    // Separate Device::cuda(0) calls share one backend, so their tensors work together.
    let a = Device::cuda(0).unwrap();
    let b = Device::parse("cuda").unwrap();
    assert!(a.same_as(&b) && a.same_as(&g.device()));
    let x = Tensor::from_slice(&[1.0, -2.0], &[2], &a).unwrap();
    let y = Tensor::from_slice(&[3.0, 4.0], &[2], &b).unwrap();
    assert_eq!(down(&a.backend().add(&x, &y).unwrap()), vec![4.0, 2.0]);
    // Zero-element tensors: no zero-byte allocations, no launches, empty results.
    let e = up(&g, &[], &[0, 3]);
    assert_eq!(down(&e), Vec::<f32>::new());
    assert_eq!(down(&g.relu_fwd(&e).unwrap()), Vec::<f32>::new());
    assert_eq!(g.zeros(&[0]).unwrap().numel(), 0);
    assert_eq!(g.sum_f32(&e).unwrap(), 0.0);
    assert_tensor_close(
        "channel_sum of an empty batch",
        &g.channel_sum(&e).unwrap(),
        &cpu_be()
            .channel_sum(&Tensor::from_vec(vec![], &[0, 3]).unwrap())
            .unwrap(),
    );
}

// ---- no CUDA --------------------------------------------------------------------------------

#[test]
fn cuda_unavailable_is_a_clear_error() {
    match Device::cuda(0) {
        Ok(d) => {
            // A GPU machine: the device opens and names itself.
            assert_eq!(d.name(), "cuda:0");
            println!("CUDA is available here; the no-GPU error path is not exercised");
        }
        Err(e) => {
            assert!(
                !require_gpu(),
                "SUPTICKETS_REQUIRE_GPU=1 but Device::cuda(0) failed: {e}"
            );
            let msg = e.to_string();
            assert!(
                matches!(e, Error::Device(_)),
                "expected Error::Device, got {e:?}"
            );
            assert!(
                msg.contains("cuda:0"),
                "the error should name the device: {msg}"
            );
            assert!(
                msg.contains("driver") || msg.contains("NVRTC") || msg.contains("GPU"),
                "the error should say what is missing: {msg}"
            );
            assert!(
                msg.contains("install")
                    || msg.contains("--device cpu")
                    || msg.contains("LD_LIBRARY_PATH"),
                "the error should say what to do: {msg}"
            );
            match Device::parse("cuda") {
                Err(Error::Device(m)) => assert_eq!(m, msg.trim_start_matches("device error: ")),
                other => panic!("Device::parse(\"cuda\") should fail the same way, got {other:?}"),
            }
            assert!(Device::parse("cuda:1").is_err());
            println!("skipped: no GPU (checked the error: {msg})");
        }
    }
}

// ---- select (kernels/select.cu) -------------------------------------------------------------

use suptickets::backend::cpu::select::{segments, RADIX_PASSES};
use suptickets::backend::{Score, SelectAction, SelectGroup, SelectKey, SelectTarget};

/// Values with many exact duplicates (ties), zeros and both signs.
fn dup_values(r: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| (r.below(7) as f32 - 3.0) * 0.25).collect()
}

/// Every key kind: |x| or hash, eligible everywhere / active / inactive.
fn select_keys() -> Vec<SelectKey> {
    let mut keys = vec![];
    for (score, seed) in [(0, 0), (1, 0xDEAD_BEEF)] {
        for eligible in 0..3 {
            keys.push(SelectKey {
                seed,
                base: 1000,
                score,
                eligible,
            });
        }
    }
    keys
}

#[test]
fn parity_select_hist_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(40);
    for n in [1, 1000, 300_001] {
        for values in [normal(&mut r, n), dup_values(&mut r, n)] {
            let m = mask(&mut r, n, 0.3);
            let (sg, mg) = (up(&g, &values, &[n]), up(&g, &m, &[n]));
            for key in select_keys() {
                // First digit, then a digit under a prefix taken from an actual key.
                let k0 = suptickets::backend::cpu::select::select_key(
                    values[n / 2],
                    m[n / 2],
                    &key,
                    n / 2,
                );
                for (pass, (shift, bits)) in RADIX_PASSES.into_iter().enumerate() {
                    let pm = if pass == 0 {
                        0
                    } else {
                        !0u32 << (shift + bits)
                    };
                    let mut want = vec![3u32; 1 << bits];
                    cpu::select::select_hist_f32(
                        &values,
                        &m,
                        &key,
                        k0 & pm,
                        pm,
                        shift,
                        bits,
                        &mut want,
                    );
                    let mut got = vec![3u32; 1 << bits];
                    g.select_hist_f32(&sg, &mg, &key, k0 & pm, pm, shift, bits, &mut got)
                        .unwrap();
                    assert_eq!(got, want, "n {n} key {key:?} pass {pass}");
                }
            }
        }
    }
}

#[test]
fn parity_select_count_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(41);
    for n in [1, 5000, 1_000_003] {
        let values = dup_values(&mut r, n);
        let m = mask(&mut r, n, 0.5);
        let (sg, mg) = (up(&g, &values, &[n]), up(&g, &m, &[n]));
        for key in select_keys() {
            for (lo, hi) in [
                (2, u32::MAX),
                (0x3e80_0001, 0x3e80_0001),
                (0, 0),
                (1, 0x4000_0000),
            ] {
                for segs in [1, segments(n), 7] {
                    let mut want = vec![0u32; segs];
                    cpu::select::select_count_f32(&values, &m, &key, lo, hi, &mut want);
                    let mut got = vec![9u32; segs];
                    g.select_count_f32(&sg, &mg, &key, lo, hi, &mut got)
                        .unwrap();
                    assert_eq!(
                        got, want,
                        "n {n} key {key:?} [{lo:#x}, {hi:#x}] {segs} segments"
                    );
                }
            }
        }
    }
}

#[test]
fn parity_select_apply_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(42);
    for n in [1, 777, 400_000] {
        let w0 = dup_values(&mut r, n);
        let sc = dup_values(&mut r, n);
        let m0 = normal(&mut r, n);
        let k0 = mask(&mut r, n, 0.4);
        let w0: Vec<f32> = w0.iter().zip(&k0).map(|(w, k)| w * k).collect();
        for key in select_keys().into_iter().filter(|k| k.eligible != 0) {
            for action in [0u32, 1] {
                for with_score in [false, true] {
                    for with_m in [false, true] {
                        // Threshold at the key of 0.5 (many ties), taking some of them.
                        let t = if key.score == 0 {
                            0.5f32.to_bits() + 1
                        } else {
                            1 << 30
                        };
                        let segs = segments(n);
                        let tie_before: Vec<u32> = (0..segs as u32).map(|b| b * 3).collect();
                        let tie_take = (segs as u32 * 3) / 2 + 5;
                        let (mut w, mut k, mut m) = (w0.clone(), k0.clone(), m0.clone());
                        let mut want = vec![0u32; segs];
                        cpu::select::select_apply_f32(
                            with_score.then_some(&sc[..]),
                            &mut w,
                            &mut k,
                            with_m.then_some(&mut m[..]),
                            &key,
                            t,
                            &tie_before,
                            tie_take,
                            action,
                            &mut want,
                        );
                        let sg = up(&g, &sc, &[n]);
                        let (mut wg, mut kg, mut mg) =
                            (up(&g, &w0, &[n]), up(&g, &k0, &[n]), up(&g, &m0, &[n]));
                        let mut got = vec![0u32; segs];
                        g.select_apply_f32(
                            with_score.then_some(&sg),
                            &mut wg,
                            &mut kg,
                            with_m.then_some(&mut mg),
                            &key,
                            t,
                            &tie_before,
                            tie_take,
                            action,
                            &mut got,
                        )
                        .unwrap();
                        let what = format!(
                            "n {n} key {key:?} action {action} score {with_score} m {with_m}"
                        );
                        assert_eq!(got, want, "{what}: changed");
                        assert_eq!(down(&wg), w, "{what}: w");
                        assert_eq!(down(&kg), k, "{what}: mask");
                        assert_eq!(down(&mg), m, "{what}: momentum");
                    }
                }
            }
        }
    }
}

/// (weights, masks, momenta, scores) of a few layers, on the host.
type Layers = (Vec<Vec<f32>>, Vec<Vec<f32>>, Vec<Vec<f32>>, Vec<Vec<f32>>);

fn select_layers(r: &mut Rng, sizes: &[usize], dup: bool) -> Layers {
    let mut out: Layers = Default::default();
    for &n in sizes {
        let k = mask(r, n, 0.3);
        let v = |r: &mut Rng| if dup { dup_values(r, n) } else { normal(r, n) };
        out.0
            .push(v(r).iter().zip(&k).map(|(a, b)| a * b).collect());
        out.2
            .push(v(r).iter().zip(&k).map(|(a, b)| a * b).collect());
        out.3.push(v(r));
        out.1.push(k);
    }
    out
}

/// Runs `select_update` on `be` with the layers uploaded to `dev`; returns the new state and
/// the change counts.
fn run_select(
    dev: &Device,
    l: &Layers,
    global: bool,
    ks: &[usize],
    score: Score,
    with_score: bool,
    action: SelectAction,
) -> (Layers, Vec<Vec<usize>>) {
    let to = |v: &Vec<Vec<f32>>| -> Vec<Tensor> {
        v.iter()
            .map(|x| Tensor::from_slice(x, &[x.len()], dev).unwrap())
            .collect()
    };
    let (mut w, mut k, mut m, s) = (to(&l.0), to(&l.1), to(&l.2), to(&l.3));
    let mut targets: Vec<SelectTarget<'_>> = w
        .iter_mut()
        .zip(k.iter_mut())
        .zip(m.iter_mut())
        .zip(&s)
        .map(|(((w, k), m), s)| SelectTarget {
            score: with_score.then_some(s),
            weight: w,
            mask: k,
            momentum: Some(m),
        })
        .collect();
    let mut groups: Vec<SelectGroup<'_>> = if global {
        vec![SelectGroup {
            targets,
            k: ks[0],
            score,
        }]
    } else {
        let mut gs = vec![];
        for (i, t) in targets.drain(..).enumerate() {
            gs.push(SelectGroup {
                targets: vec![t],
                k: ks[i],
                score,
            });
        }
        gs
    };
    let changed = dev.backend().select_update(&mut groups, action).unwrap();
    drop(groups);
    let back = |v: &[Tensor]| v.iter().map(down).collect::<Vec<_>>();
    ((back(&w), back(&k), back(&m), vec![]), changed)
}

#[test]
fn backend_select_update_prune_and_grow() {
    let g = gpu_or_skip!();
    let gd = g.device();
    let mut r = Rng::new(43);
    for dup in [false, true] {
        let sizes = [3, 4096, 100_000, 1_200_000, 17];
        let l = select_layers(&mut r, &sizes, dup);
        let active: Vec<usize> =
            l.1.iter()
                .map(|k| k.iter().filter(|&&v| v != 0.0).count())
                .collect();
        let inactive: Vec<usize> = sizes.iter().zip(&active).map(|(n, a)| n - a).collect();
        let total_active: usize = active.iter().sum();
        let cases: Vec<(bool, Vec<usize>, SelectAction)> = vec![
            (true, vec![total_active / 2], SelectAction::Keep),
            (true, vec![0], SelectAction::Keep),
            (true, vec![total_active], SelectAction::Keep),
            (
                false,
                active.iter().map(|a| a / 3).collect(),
                SelectAction::Keep,
            ),
            (
                false,
                inactive.iter().map(|a| a / 4).collect(),
                SelectAction::Grow,
            ),
            (false, inactive.clone(), SelectAction::Grow),
            (false, vec![0; sizes.len()], SelectAction::Grow),
        ];
        for (global, ks, action) in cases {
            for (score, with_score) in [
                (Score::Abs, false),
                (Score::Abs, true),
                (Score::Hash(9), false),
            ] {
                let (want, wc) =
                    run_select(&Device::Cpu, &l, global, &ks, score, with_score, action);
                let (got, gc) = run_select(&gd, &l, global, &ks, score, with_score, action);
                let what = format!(
                    "dup {dup} global {global} ks {ks:?} {action:?} {score:?} score {with_score}"
                );
                assert_eq!(gc, wc, "{what}: changed");
                assert_eq!(got.0, want.0, "{what}: weights");
                assert_eq!(got.1, want.1, "{what}: masks");
                assert_eq!(got.2, want.2, "{what}: momenta");
            }
        }
    }
}

#[test]
fn backend_count_nonzero_and_select_errors() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(44);
    let xs: Vec<Vec<f32>> = [0, 1, 5000, 2_000_001]
        .iter()
        .map(|&n| {
            let mut v = mask(&mut r, n, 0.37);
            if n > 2 {
                v[0] = -0.0;
                v[1] = f32::NAN;
            }
            v
        })
        .collect();
    let cpu_t: Vec<Tensor> = xs
        .iter()
        .map(|x| Tensor::from_vec(x.clone(), &[x.len()]).unwrap())
        .collect();
    let gpu_t: Vec<Tensor> = xs.iter().map(|x| up(&g, x, &[x.len()])).collect();
    let want = cpu_be()
        .count_nonzero(&cpu_t.iter().collect::<Vec<_>>())
        .unwrap();
    let got = g.count_nonzero(&gpu_t.iter().collect::<Vec<_>>()).unwrap();
    assert_eq!(got, want);
    // k beyond the eligible positions: an error on both backends.
    let l = select_layers(&mut r, &[1000], false);
    let inactive = l.1[0].iter().filter(|&&v| v == 0.0).count();
    for dev in [Device::Cpu, g.device()] {
        let mut w = Tensor::from_slice(&l.0[0], &[1000], &dev).unwrap();
        let mut k = Tensor::from_slice(&l.1[0], &[1000], &dev).unwrap();
        let mut groups = vec![SelectGroup {
            targets: vec![SelectTarget {
                score: None,
                weight: &mut w,
                mask: &mut k,
                momentum: None,
            }],
            k: inactive + 1,
            score: Score::Abs,
        }];
        let e = dev
            .backend()
            .select_update(&mut groups, SelectAction::Grow)
            .unwrap_err();
        assert!(e.to_string().contains("eligible"), "{}: {e}", dev.name());
    }
}

// ---- superpose (kernels/superpose.cu) ---------------------------------------------------------

use suptickets::backend::{SuperposeGroup, SuperposeParams, SuperposeTarget};

/// Inputs of the superpose kernels: (S, W, mask, CAA counts) with ties among the averaged
/// values (quarter steps), zeros, both signs, and W zero off the mask.
fn superpose_inputs(r: &mut Rng, n: usize) -> SuperposeLayer {
    let s = dup_values(r, n);
    let m = mask(r, n, 0.4);
    let w: Vec<f32> = dup_values(r, n)
        .iter()
        .zip(&m)
        .map(|(a, b)| a * b)
        .collect();
    let c: Vec<f32> = (0..n).map(|_| r.below(4) as f32).collect();
    (s, w, m, c)
}

/// Every averaging rule: CIA (ticket 3), CIMA (β = 0.8, inexact coefficients), CAA.
fn superpose_params() -> Vec<SuperposeParams> {
    vec![
        SuperposeParams::cia(3),
        SuperposeParams::cima(0.8),
        SuperposeParams::caa(),
    ]
}

#[test]
fn parity_superpose_hist_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(50);
    for n in [1, 1000, 300_001] {
        let (s, w, m, c) = superpose_inputs(&mut r, n);
        let (sg, wg, mg, cg) = (
            up(&g, &s, &[n]),
            up(&g, &w, &[n]),
            up(&g, &m, &[n]),
            up(&g, &c, &[n]),
        );
        for p in superpose_params() {
            for with_mask in [false, true] {
                let (mh, md) = (with_mask.then_some(&m[..]), with_mask.then_some(&mg));
                // A real key as the prefix of the later passes.
                let (a, _) =
                    cpu::superpose::superpose_value(s[n / 2], w[n / 2], m[n / 2], c[n / 2], &p);
                let k0 = cpu::select::abs_key(a);
                for (pass, (shift, bits)) in RADIX_PASSES.into_iter().enumerate() {
                    let pm = if pass == 0 {
                        0
                    } else {
                        !0u32 << (shift + bits)
                    };
                    let mut want = vec![3u32; 1 << bits];
                    cpu::superpose::superpose_hist_f32(
                        &s,
                        &w,
                        mh,
                        Some(&c),
                        &p,
                        k0 & pm,
                        pm,
                        shift,
                        bits,
                        &mut want,
                    );
                    let mut got = vec![3u32; 1 << bits];
                    g.superpose_hist_f32(
                        &sg,
                        &wg,
                        md,
                        Some(&cg),
                        &p,
                        k0 & pm,
                        pm,
                        shift,
                        bits,
                        &mut got,
                    )
                    .unwrap();
                    assert_eq!(got, want, "n {n} {p:?} mask {with_mask} pass {pass}");
                }
            }
        }
    }
}

#[test]
fn parity_superpose_count_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(51);
    for n in [1, 5000, 1_000_003] {
        let (s, w, m, c) = superpose_inputs(&mut r, n);
        let (sg, wg, mg, cg) = (
            up(&g, &s, &[n]),
            up(&g, &w, &[n]),
            up(&g, &m, &[n]),
            up(&g, &c, &[n]),
        );
        for p in superpose_params() {
            for (lo, hi) in [
                (1, u32::MAX),
                (0x3e80_0001, 0x3e80_0001),
                (1, 1),
                (2, 0x3f00_0000),
            ] {
                for segs in [1, segments(n), 7] {
                    let mut want = vec![0u32; segs];
                    cpu::superpose::superpose_count_f32(
                        &s,
                        &w,
                        Some(&m),
                        Some(&c),
                        &p,
                        lo,
                        hi,
                        &mut want,
                    );
                    let mut got = vec![9u32; segs];
                    g.superpose_count_f32(&sg, &wg, Some(&mg), Some(&cg), &p, lo, hi, &mut got)
                        .unwrap();
                    assert_eq!(got, want, "n {n} {p:?} [{lo:#x}, {hi:#x}] {segs} segments");
                }
            }
        }
    }
}

#[test]
fn parity_superpose_apply_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(52);
    for n in [1, 777, 400_000] {
        let (s0, w, m, c0) = superpose_inputs(&mut r, n);
        for p in superpose_params() {
            for with_mask in [false, true] {
                for with_count in [false, true] {
                    // Threshold at the key of 0.5 (many ties), taking some of them.
                    let t = 0.5f32.to_bits() + 1;
                    let segs = segments(n);
                    let tie_before: Vec<u32> = (0..segs as u32).map(|b| b * 3).collect();
                    let tie_take = (segs as u32 * 3) / 2 + 5;
                    let (mut s, mut c) = (s0.clone(), c0.clone());
                    let mut want = vec![0u32; segs];
                    cpu::superpose::superpose_apply_f32(
                        &mut s,
                        &w,
                        with_mask.then_some(&m[..]),
                        with_count.then_some(&mut c[..]),
                        &p,
                        t,
                        &tie_before,
                        tie_take,
                        &mut want,
                    );
                    let (mut sg, wg, mg, mut cg) = (
                        up(&g, &s0, &[n]),
                        up(&g, &w, &[n]),
                        up(&g, &m, &[n]),
                        up(&g, &c0, &[n]),
                    );
                    let mut got = vec![0u32; segs];
                    g.superpose_apply_f32(
                        &mut sg,
                        &wg,
                        with_mask.then_some(&mg),
                        with_count.then_some(&mut cg),
                        &p,
                        t,
                        &tie_before,
                        tie_take,
                        &mut got,
                    )
                    .unwrap();
                    let what = format!("n {n} {p:?} mask {with_mask} count {with_count}");
                    assert_eq!(got, want, "{what}: kept");
                    assert_eq!(down(&sg), s, "{what}: S");
                    assert_eq!(down(&cg), c, "{what}: counts");
                }
            }
        }
    }
}

/// One layer of a superposition on the host: (S, W, mask, count).
type SuperposeLayer = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

/// What `run_superpose` returns: the new S and counts per layer, the kept counts per group.
type SuperposeOut = (Vec<Vec<f32>>, Vec<Vec<f32>>, Vec<Vec<usize>>);

/// Runs `superpose_update` on `dev` over layers (S, W, mask, count); returns the new S and
/// counts and the kept counts.
fn run_superpose(
    dev: &Device,
    layers: &[SuperposeLayer],
    global: bool,
    ks: &[usize],
    p: &SuperposeParams,
) -> SuperposeOut {
    let to = |x: &Vec<f32>| Tensor::from_slice(x, &[x.len()], dev).unwrap();
    let mut s: Vec<Tensor> = layers.iter().map(|l| to(&l.0)).collect();
    let w: Vec<Tensor> = layers.iter().map(|l| to(&l.1)).collect();
    let m: Vec<Tensor> = layers.iter().map(|l| to(&l.2)).collect();
    let mut c: Vec<Tensor> = layers.iter().map(|l| to(&l.3)).collect();
    let mut targets: Vec<SuperposeTarget<'_>> = s
        .iter_mut()
        .zip(&w)
        .zip(&m)
        .zip(c.iter_mut())
        .map(|(((s, w), m), c)| SuperposeTarget {
            s,
            w,
            mask: Some(m),
            count: Some(c),
        })
        .collect();
    let mut groups: Vec<SuperposeGroup<'_>> = if global {
        vec![SuperposeGroup { targets, k: ks[0] }]
    } else {
        targets
            .drain(..)
            .zip(ks)
            .map(|(t, &k)| SuperposeGroup {
                targets: vec![t],
                k,
            })
            .collect()
    };
    let kept = dev.backend().superpose_update(&mut groups, p).unwrap();
    drop(groups);
    (
        s.iter().map(down).collect(),
        c.iter().map(down).collect(),
        kept,
    )
}

#[test]
fn backend_superpose_update_global_and_layerwise() {
    let g = gpu_or_skip!();
    let gd = g.device();
    let mut r = Rng::new(53);
    let sizes = [3, 4096, 100_000, 1_200_000, 17];
    let layers: Vec<_> = sizes.iter().map(|&n| superpose_inputs(&mut r, n)).collect();
    let total: usize = sizes.iter().sum();
    let cases: Vec<(bool, Vec<usize>)> = vec![
        (true, vec![total / 10]),
        (true, vec![0]),
        (true, vec![total]),
        (false, sizes.iter().map(|n| n / 3).collect()),
        (false, sizes.iter().map(|n| n / 20 + 1).collect()),
    ];
    for p in superpose_params() {
        for (global, ks) in &cases {
            let want = run_superpose(&Device::Cpu, &layers, *global, ks, &p);
            let got = run_superpose(&gd, &layers, *global, ks, &p);
            let what = format!("{p:?} global {global} ks {ks:?}");
            assert_eq!(got.2, want.2, "{what}: kept");
            assert_eq!(got.0, want.0, "{what}: S");
            assert_eq!(got.1, want.1, "{what}: counts");
        }
    }
}

// ---- spconv (kernels/spconv.cu) -------------------------------------------------------------

use suptickets::backend::SparseWeight;

/// A CSR weight for `p` at about `density`, with row 1 (when there is one) left empty.
fn spconv_weight(r: &mut Rng, p: &Conv2dParams, density: f32) -> SparseWeight {
    let (rows, cols) = (p.c_out as usize, p.col_rows());
    let w = normal(r, rows * cols);
    let mut m = mask(r, rows * cols, density);
    if rows > 1 {
        m[cols..2 * cols].fill(0.0);
    }
    SparseWeight::from_masked(&w, &m, rows, cols).unwrap()
}

/// Geometries: stride 2 with padding, 1×1, a 2×2 map, a non-square kernel with stride 3, a
/// linear layer (1×1 on a 1×1 map), many images (long weight-gradient reductions) and a map
/// wide enough for the CPU backend's direct path.
fn spconv_cases() -> Vec<Conv2dParams> {
    let mut odd = conv_params(2, 2, 7, 6, 3, 2, 3, 1);
    odd.k_w = 3;
    odd.h_out = (odd.h_in + 2 * odd.pad - odd.k_h) / odd.stride + 1;
    odd.w_out = (odd.w_in + 2 * odd.pad - odd.k_w) / odd.stride + 1;
    vec![
        conv_params(2, 3, 9, 7, 5, 3, 2, 1),
        conv_params(3, 6, 5, 5, 8, 1, 1, 0),
        conv_params(4, 8, 2, 2, 6, 3, 1, 1),
        odd,
        conv_params(5, 40, 1, 1, 10, 1, 1, 0),
        conv_params(64, 4, 6, 6, 3, 3, 1, 1),
        conv_params(2, 8, 17, 18, 8, 3, 1, 1),
    ]
}

#[test]
fn parity_spconv_fwd_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(60);
    for p in spconv_cases() {
        for density in [0.3, 1.0, 0.0] {
            let w = spconv_weight(&mut r, &p, density);
            let x = normal(&mut r, p.x_shape().iter().product());
            let b = normal(&mut r, p.c_out as usize);
            let (gx, gb) = (up(&g, &x, &p.x_shape()), up(&g, &b, &[b.len()]));
            for bias in [false, true] {
                let mut y = vec![0.0; p.y_shape().iter().product()];
                let cb = bias.then_some(b.as_slice());
                cpu::spconv::spconv_fwd_f32(&x, &w.row_ptr, &w.col_idx, &w.values, cb, &p, &mut y);
                let mut gy = zeros(&g, &p.y_shape());
                let gbias = bias.then_some(&gb);
                g.spconv_fwd_f32(&gx, &w.row_ptr, &w.col_idx, &w.values, gbias, &p, &mut gy)
                    .unwrap();
                let what = format!("spconv fwd {p:?} density {density} bias {bias}");
                assert_close(&what, &down(&gy), &y);
            }
        }
    }
}

#[test]
fn parity_spconv_bwd_input_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(61);
    for p in spconv_cases() {
        for density in [0.3, 1.0, 0.0] {
            let wt = spconv_weight(&mut r, &p, density).transpose();
            let dy = normal(&mut r, p.y_shape().iter().product());
            let mut dx = vec![0.0; p.x_shape().iter().product()];
            cpu::spconv::spconv_bwd_input_f32(
                &dy,
                &wt.row_ptr,
                &wt.col_idx,
                &wt.values,
                &p,
                &mut dx,
            );
            let mut gdx = zeros(&g, &p.x_shape());
            let gdy = up(&g, &dy, &p.y_shape());
            g.spconv_bwd_input_f32(&gdy, &wt.row_ptr, &wt.col_idx, &wt.values, &p, &mut gdx)
                .unwrap();
            let what = format!("spconv bwd input {p:?} density {density}");
            assert_close(&what, &down(&gdx), &dx);
        }
    }
}

#[test]
fn parity_spconv_bwd_weight_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(62);
    for p in spconv_cases() {
        for density in [0.3, 1.0, 0.0] {
            let w = spconv_weight(&mut r, &p, density);
            let x = normal(&mut r, p.x_shape().iter().product());
            let dy = normal(&mut r, p.y_shape().iter().product());
            let mut dv = vec![0.0; w.nnz()];
            cpu::spconv::spconv_bwd_weight_f32(&x, &dy, &w.row_ptr, &w.col_idx, &p, &mut dv);
            let (gx, gdy) = (up(&g, &x, &p.x_shape()), up(&g, &dy, &p.y_shape()));
            let mut gdv = zeros(&g, &[w.nnz()]);
            g.spconv_bwd_weight_f32(&gx, &gdy, &w.row_ptr, &w.col_idx, &p, &mut gdv)
                .unwrap();
            let what = format!("spconv bwd weight {p:?} density {density}");
            assert_close(&what, &down(&gdv), &dv);
            // Deterministic: a second run gives the same bits.
            let mut again = zeros(&g, &[w.nnz()]);
            g.spconv_bwd_weight_f32(&gx, &gdy, &w.row_ptr, &w.col_idx, &p, &mut again)
                .unwrap();
            assert_eq!(down(&again), down(&gdv), "{what}: second run differs");
        }
    }
}

#[test]
fn parity_spconv_scatter_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(63);
    for (rows, cols, density) in [(5, 27, 0.3), (1, 1, 1.0), (7, 300, 0.05), (3, 4, 0.0)] {
        let mut m = mask(&mut r, rows * cols, density);
        if rows > 1 {
            m[cols..2 * cols].fill(0.0);
        }
        let w = SparseWeight::from_masked(&normal(&mut r, rows * cols), &m, rows, cols).unwrap();
        let vals = normal(&mut r, w.nnz());
        let mut dense = vec![f32::NAN; rows * cols];
        cpu::spconv::spconv_scatter_f32(&w.row_ptr, &w.col_idx, &vals, rows, cols, &mut dense);
        assert_eq!(dense, w.scatter_dense(&vals), "twin vs scatter_dense");
        let mut gd = up(&g, &vec![f32::NAN; rows * cols], &[rows, cols]);
        let gv = up(&g, &vals, &[vals.len()]);
        g.spconv_scatter_f32(&w.row_ptr, &w.col_idx, &gv, rows, cols, &mut gd)
            .unwrap();
        assert_eq!(down(&gd), dense, "scatter {rows}x{cols} density {density}");
    }
}

#[test]
fn backend_spconv_fwd_and_bwd() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(64);
    for p in spconv_cases() {
        for density in [0.1, 0.5] {
            let w = spconv_weight(&mut r, &p, density);
            let wt = w.transpose();
            let xs = normal(&mut r, p.x_shape().iter().product());
            let bs = normal(&mut r, p.c_out as usize);
            let dys = normal(&mut r, p.y_shape().iter().product());
            let (cx, gx) = both(&g, &xs, &p.x_shape());
            let (cb, gb) = both(&g, &bs, &[bs.len()]);
            let (cdy, gdy) = both(&g, &dys, &p.y_shape());
            let what = format!("{p:?} density {density}");
            // The CPU backend runs its tiled / direct paths (other summation orders).
            let tol = 1e-4;
            for bias in [false, true] {
                let got = g.spconv_fwd(&gx, &w, bias.then_some(&gb), &p).unwrap();
                let want = cpu_be()
                    .spconv_fwd(&cx, &w, bias.then_some(&cb), &p)
                    .unwrap();
                assert_eq!(got.shape(), want.shape());
                assert_close_tol(
                    &format!("spconv fwd {what}"),
                    &down(&got),
                    &down(&want),
                    tol,
                );
            }
            let got = g.spconv_bwd_input(&gdy, &wt, &p).unwrap();
            let want = cpu_be().spconv_bwd_input(&cdy, &wt, &p).unwrap();
            assert_eq!(got.shape(), want.shape());
            assert_close_tol(&format!("spconv dx {what}"), &down(&got), &down(&want), tol);
            let got = g.spconv_bwd_weight(&gx, &gdy, &w, &p).unwrap();
            let want = cpu_be().spconv_bwd_weight(&cx, &cdy, &w, &p).unwrap();
            assert_eq!(got.shape(), &p.w_shape()[..]);
            assert_eq!(got.shape(), want.shape());
            let (got, want) = (down(&got), down(&want));
            assert_close_tol(&format!("spconv dw {what}"), &got, &want, tol);
            let zero = w.scatter_dense(&vec![1.0; w.nnz()]);
            assert!(
                got.iter().zip(&zero).all(|(&v, &m)| m != 0.0 || v == 0.0),
                "spconv dw {what}: nonzero at an inactive position"
            );
        }
    }
}

#[test]
fn backend_spconv_errors_name_the_argument() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(65);
    let p = conv_params(2, 3, 6, 6, 4, 3, 1, 1);
    let w = spconv_weight(&mut r, &p, 0.5);
    let x = up(
        &g,
        &normal(&mut r, p.x_shape().iter().product()),
        &p.x_shape(),
    );
    let dy = up(
        &g,
        &normal(&mut r, p.y_shape().iter().product()),
        &p.y_shape(),
    );
    let expect_shape_err = |res: suptickets::Result<Tensor>, needle: &str| match res {
        Err(Error::Shape(m)) => assert!(m.contains(needle), "{needle:?} not in {m:?}"),
        other => panic!("expected a shape error naming {needle:?}, got {other:?}"),
    };
    expect_shape_err(g.spconv_fwd(&dy, &w, None, &p), "spconv_fwd: x");
    let bad_bias = up(&g, &[0.0; 3], &[3]);
    expect_shape_err(
        g.spconv_fwd(&x, &w, Some(&bad_bias), &p),
        "spconv_fwd: bias",
    );
    // w where its transpose belongs, and a CSR whose columns run past the weight.
    expect_shape_err(g.spconv_bwd_input(&dy, &w, &p), "transposed weight");
    let mut wide = w.clone();
    if let Some(c) = wide.col_idx.last_mut() {
        *c = p.col_rows() as u32;
    }
    expect_shape_err(
        g.spconv_bwd_weight(&x, &dy, &wide, &p),
        "spconv_bwd_weight: weight",
    );
    expect_shape_err(g.spconv_bwd_weight(&x, &x, &w, &p), "spconv_bwd_weight: dy");
    // The CPU backend rejects the same CSR.
    let cx = Tensor::from_vec(down(&x), &p.x_shape()).unwrap();
    let cdy = Tensor::from_vec(down(&dy), &p.y_shape()).unwrap();
    expect_shape_err(cpu_be().spconv_bwd_weight(&cx, &cdy, &wide, &p), "weight");
}

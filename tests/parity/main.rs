//! CPU ↔ CUDA parity: one `parity_<kernel>` test per registry kernel runs the CPU twin
//! (`suptickets::backend::cpu::<family>::<kernel>`) and the CUDA kernel (through the backend's
//! tensor-level entry point of the same name) on the same random inputs and compares them
//! (relative error ≤ 1e-4, argmax indices exactly); `backend_*` tests compare whole
//! [`Backend`] methods on `Device::Cpu` and `Device::cuda(0)`.
//!
//! Without a GPU every test prints `skipped: no GPU` and passes, unless
//! `SUPTICKETS_REQUIRE_GPU=1`, where it fails (that is how the GPU machine runs them).
//! `cuda_unavailable_is_a_clear_error` checks the error a machine without CUDA gets.
//!
//! Files: this one holds the harness (the shared backend, random inputs, comparisons); one file
//! per kernel family (`<family>.rs`, the family's `parity_<kernel>` tests and its whole-method
//! `backend_*` tests where it has its own: select, superpose, spconv); `backend.rs` the other
//! whole-method tests; `no_cuda.rs` the no-GPU error.

#![cfg(feature = "cuda")]

use std::sync::{Arc, OnceLock};

use suptickets::backend::cuda::CudaBackend;
use suptickets::backend::{cpu, Backend, Conv2dParams, Pool2dParams, SgdParams};
use suptickets::rng::Rng;
use suptickets::{Device, Error, Tensor};

// ---- harness ------------------------------------------------------------------------------

/// The shared CUDA backend (one per test binary, so each family compiles once), or None
/// after printing `skipped: no GPU` (a failure when SUPTICKETS_REQUIRE_GPU=1).
fn gpu() -> Option<Arc<CudaBackend>> {
    static GPU: OnceLock<std::result::Result<Arc<CudaBackend>, String>> = OnceLock::new();
    match GPU.get_or_init(|| CudaBackend::new(0).map_err(|e| e.to_string())) {
        Ok(g) => Some(g.clone()),
        Err(e) => {
            common::skip_no_gpu(e);
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

/// Uploads host data to both devices.
fn both(g: &CudaBackend, data: &[f32], shape: &[usize]) -> (Tensor, Tensor) {
    (
        Tensor::from_vec(data.to_vec(), shape).unwrap(),
        up(g, data, shape),
    )
}

/// The CPU backend.
fn cpu_be() -> &'static dyn Backend {
    &cpu::CPU
}

/// A random 0/1 mask of `n` entries with about `density` ones.
fn mask(r: &mut Rng, n: usize, density: f32) -> Vec<f32> {
    (0..n)
        .map(|_| if r.uniform() < density { 1.0 } else { 0.0 })
        .collect()
}

/// `n` random class labels in [0, k).
fn labels(r: &mut Rng, n: usize, k: usize) -> Vec<f32> {
    (0..n).map(|_| r.below(k as u64) as f32).collect()
}

/// The pooling parameters of a case (n, c, h, w, k, stride, pad).
fn pool_params(c: (usize, usize, usize, usize, usize, usize, usize)) -> Pool2dParams {
    Pool2dParams::new(c.0, c.1, c.2, c.3, c.4, c.5, c.6).expect("pool params")
}

/// Values on a coarse grid, so windows hold ties (the first maximum must win on both sides).
fn tied(r: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| (r.normal() * 2.0).round() / 2.0).collect()
}

/// Values with many exact duplicates (ties), zeros and both signs.
fn dup_values(r: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| (r.below(7) as f32 - 3.0) * 0.25).collect()
}

#[path = "../common/mod.rs"]
mod common;

mod backend;
mod batchnorm;
mod conv;
mod elementwise;
mod loss;
mod matmul;
mod no_cuda;
mod optim;
mod pool;
mod select;
mod spconv;
mod superpose;
mod tape;

//! The rayon CPU backend. Each family file holds the CPU twins of the CUDA kernels of the same
//! stem (`pub fn <kernel_name>` on slices, the reference semantics) and the fast paths the
//! backend actually runs. This file runs the shared input checks (`backend::check`),
//! allocates the outputs and dispatches.
//!
//! The convolution fast paths have files of their own: [`gemm`] (packed SGEMM with a 6×16
//! AVX2/FMA micro-kernel), [`conv_gemm`] (batched im2col + packed GEMM, every geometry) and
//! [`conv_indirect`] (im2col-free stride-1 forward / backward-input and backward-weight on
//! larger maps). Timings against PyTorch: `notes/cpu-conv-timings.md`.

pub mod batchnorm;
pub mod bn_act;
pub mod buffers;
pub mod conv;
pub mod conv_gemm;
pub mod conv_indirect;
pub mod elementwise;
pub mod gemm;
pub mod loss;
pub mod matmul;
pub mod optim;
pub mod pool;
pub mod radix;
pub mod select;
pub mod select_fast;
#[cfg(test)]
mod select_tests;
pub mod simd;
pub mod simd_gemm;
pub mod simd_indirect;
pub mod spconv;
pub mod spconv_direct;
pub mod spconv_tiled;
pub mod spmm;
pub mod superpose;

use rayon::prelude::*;

use crate::backend::{
    check, Backend, BnAct, BnActBackward, BnActSaved, BnBackward, BnForward, Conv2dParams, CsrPlan,
    CsrPlanRepr, HostCsrPlan, Pool2dParams, SelectAction, SelectGroup, SgdParams, SparseMatrix,
    SparseOperand, SparseWeight, SuperposeGroup, SuperposeParams,
};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::{numel, Tensor};

/// The CPU backend (stateless; use the [`CPU`] instance).
#[derive(Debug, Default)]
pub struct CpuBackend;

/// The CPU backend instance.
pub static CPU: CpuBackend = CpuBackend;

/// The host elements of `t`, or a device error naming the operation and argument.
fn host<'a>(t: &'a Tensor, op: &str, what: &str) -> Result<&'a [f32]> {
    t.as_cpu()
        .map_err(|e| Error::Device(format!("{op}: {what}: {e}")))
}

/// The host CSR of a sparse operand (a device one is an error naming `op` and `what`).
fn host_csr<'a>(w: SparseOperand<'a>, op: &str, what: &str) -> Result<&'a SparseWeight> {
    match w {
        SparseOperand::Host(w) => Ok(w),
        SparseOperand::Device(d) => Err(Error::Device(format!(
            "{op}: {what}: {d:?} lives on a device, the CPU backend needs a host CSR"
        ))),
    }
}

/// The host elements of an optional mask, checked to have `shape`.
fn mask_of<'a>(mask: Option<&'a Tensor>, shape: &[usize], op: &str) -> Result<Option<&'a [f32]>> {
    match mask {
        Some(m) => {
            check::shape(m, shape, op, "mask")?;
            Ok(Some(host(m, op, "mask")?))
        }
        None => Ok(None),
    }
}

/// Multiplies `dw` by `mask` (same length) in place.
fn apply_mask(dw: &mut [f32], mask: Option<&[f32]>) {
    if let Some(m) = mask {
        dw.par_chunks_mut(elementwise::CHUNK)
            .zip(m.par_chunks(elementwise::CHUNK))
            .for_each(|(d, m)| d.iter_mut().zip(m).for_each(|(d, &m)| *d *= m));
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        "cpu".into()
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn zeros(&self, shape: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(buffers::zeroed(numel(shape)), shape)
    }
    fn upload(&self, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(data.to_vec(), shape)
    }
    fn download(&self, t: &Tensor) -> Result<Vec<f32>> {
        Ok(t.as_cpu()?.to_vec())
    }

    // ---- conv -------------------------------------------------------------------------------
    fn conv2d_fwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        p: &Conv2dParams,
    ) -> Result<Tensor> {
        let op = "conv2d_fwd";
        check::conv2d_fwd(x, w, bias, p)?;
        let bias = bias.map(|b| host(b, op, "bias")).transpose()?;
        let mut y = buffers::reused(numel(&p.y_shape()));
        conv_gemm::conv2d_forward(host(x, op, "x")?, host(w, op, "weight")?, bias, p, &mut y);
        Tensor::from_vec(y, &p.y_shape())
    }
    fn conv2d_bwd_input(&self, dy: &Tensor, w: &Tensor, p: &Conv2dParams) -> Result<Tensor> {
        let op = "conv2d_bwd_input";
        check::conv2d_bwd_input(dy, w, p)?;
        let mut dx = buffers::reused(numel(&p.x_shape()));
        conv_gemm::conv2d_backward_input(host(dy, op, "dy")?, host(w, op, "weight")?, p, &mut dx);
        Tensor::from_vec(dx, &p.x_shape())
    }
    fn conv2d_bwd_weight(
        &self,
        x: &Tensor,
        dy: &Tensor,
        p: &Conv2dParams,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let op = "conv2d_bwd_weight";
        check::conv2d_bwd_weight(x, dy, p, mask)?;
        let mask = mask_of(mask, &p.w_shape(), op)?;
        let mut dw = buffers::reused(numel(&p.w_shape()));
        conv_gemm::conv2d_backward_weight(host(x, op, "x")?, host(dy, op, "dy")?, p, &mut dw);
        apply_mask(&mut dw, mask);
        Tensor::from_vec(dw, &p.w_shape())
    }
    fn channel_sum(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c, s) = check::ncs(x, "channel_sum")?;
        let mut out = buffers::reused(c);
        conv::channel_sum_f32(host(x, "channel_sum", "x")?, n, c, s, &mut out);
        Tensor::from_vec(out, &[c])
    }

    // ---- spconv -----------------------------------------------------------------------------
    fn spconv_fwd(
        &self,
        x: &Tensor,
        w: SparseOperand<'_>,
        bias: Option<&Tensor>,
        p: &Conv2dParams,
    ) -> Result<Tensor> {
        let op = "spconv_fwd";
        check::spconv_fwd(x, w, bias, p)?;
        let w = host_csr(w, op, "weight")?;
        let bias = bias.map(|b| host(b, op, "bias")).transpose()?;
        let x = host(x, op, "x")?;
        let mut y = buffers::reused(numel(&p.y_shape()));
        if spconv_direct::applies(p) {
            spconv_direct::forward(x, w, bias, p, &mut y);
        } else {
            spconv_tiled::forward(x, w, bias, p, &mut y);
        }
        Tensor::from_vec(y, &p.y_shape())
    }
    fn spconv_bwd_input(
        &self,
        dy: &Tensor,
        wt: SparseOperand<'_>,
        p: &Conv2dParams,
    ) -> Result<Tensor> {
        let op = "spconv_bwd_input";
        check::spconv_bwd_input(dy, wt, p)?;
        let wt = host_csr(wt, op, "transposed weight")?;
        let dy = host(dy, op, "dy")?;
        let mut dx = buffers::reused(numel(&p.x_shape()));
        if spconv_direct::applies(p) {
            spconv_direct::backward_input(dy, wt, p, &mut dx);
        } else {
            spconv_tiled::backward_input(dy, wt, p, &mut dx);
        }
        Tensor::from_vec(dx, &p.x_shape())
    }
    fn spconv_bwd_weight(
        &self,
        x: &Tensor,
        dy: &Tensor,
        w: SparseOperand<'_>,
        p: &Conv2dParams,
    ) -> Result<Tensor> {
        let op = "spconv_bwd_weight";
        check::spconv_bwd_weight(x, dy, w, p)?;
        let w = host_csr(w, op, "weight")?;
        let (x, dy) = (host(x, op, "x")?, host(dy, op, "dy")?);
        let dv = if spconv_direct::applies(p) {
            spconv_direct::backward_weight(x, dy, w, p)
        } else {
            spconv_tiled::backward_weight(x, dy, w, p)
        };
        Tensor::from_vec(w.scatter_dense(&dv), &p.w_shape())
    }
    fn csr_plan(&self, mask: &Tensor, rows: usize, cols: usize, nnz: usize) -> Result<CsrPlan> {
        let plan = HostCsrPlan::of_mask(host(mask, "csr_plan", "mask")?, rows, cols)?;
        if plan.nnz() != nnz {
            return Err(Error::Shape(format!(
                "csr_plan: the mask has {} active entries, the caller counted {nnz}",
                plan.nnz()
            )));
        }
        Ok(CsrPlan {
            rows,
            cols,
            nnz,
            repr: CsrPlanRepr::Host(plan),
        })
    }
    fn csr_gather(&self, plan: &CsrPlan, w: &Tensor, transposed: bool) -> Result<SparseMatrix> {
        let CsrPlanRepr::Host(h) = &plan.repr else {
            return Err(Error::Device(
                "csr_gather: the CSR structure lives on a device, the weight on the host".into(),
            ));
        };
        Ok(SparseMatrix::Host(
            h.gather(host(w, "csr_gather", "weight")?, transposed)?,
        ))
    }

    // ---- matmul -----------------------------------------------------------------------------
    fn linear_fwd(&self, x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let op = "linear_fwd";
        let (n, d_in, d_out) = check::linear_fwd(x, w, bias)?;
        let mut y = buffers::reused(n * d_out);
        let (xs, ws) = (host(x, op, "x")?, host(w, op, "weight")?);
        matmul::par_sgemm(
            false, true, n, d_out, d_in, xs, d_in, ws, d_in, &mut y, d_out,
        );
        if let Some(b) = bias {
            conv::bias_add_f32(&mut y, host(b, op, "bias")?, n, d_out, 1);
        }
        Tensor::from_vec(y, &[n, d_out])
    }
    fn linear_bwd_input(&self, dy: &Tensor, w: &Tensor) -> Result<Tensor> {
        let op = "linear_bwd_input";
        let (n, d_out, d_in) = check::linear_bwd_input(dy, w)?;
        let mut dx = buffers::reused(n * d_in);
        let (dys, ws) = (host(dy, op, "dy")?, host(w, op, "weight")?);
        matmul::par_sgemm(
            false, false, n, d_in, d_out, dys, d_out, ws, d_in, &mut dx, d_in,
        );
        Tensor::from_vec(dx, &[n, d_in])
    }
    fn linear_bwd_weight(&self, x: &Tensor, dy: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let op = "linear_bwd_weight";
        let (n, d_in, d_out) = check::linear_bwd_weight(x, dy, mask)?;
        let mask = mask_of(mask, &[d_out, d_in], op)?;
        let mut dw = buffers::reused(d_out * d_in);
        let (xs, dys) = (host(x, op, "x")?, host(dy, op, "dy")?);
        matmul::par_sgemm(
            true, false, d_out, d_in, n, dys, d_out, xs, d_in, &mut dw, d_in,
        );
        apply_mask(&mut dw, mask);
        Tensor::from_vec(dw, &[d_out, d_in])
    }

    // ---- batchnorm --------------------------------------------------------------------------
    fn batchnorm_fwd_train(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<BnForward> {
        let op = "batchnorm_fwd_train";
        let (n, c, s) = check::batchnorm(x, &[(gamma, "gamma"), (beta, "beta")], op)?;
        let xs = host(x, op, "x")?;
        let (mut mean, mut var, mut invstd) =
            (buffers::reused(c), buffers::reused(c), buffers::reused(c));
        batchnorm::bn_stats_f32(xs, n, c, s, &mut mean, &mut var);
        batchnorm::bn_invstd_f32(&var, eps, &mut invstd);
        let mut y = buffers::reused(xs.len());
        let (g, b) = (host(gamma, op, "gamma")?, host(beta, op, "beta")?);
        batchnorm::bn_fwd_f32(xs, n, c, s, &mean, &invstd, g, b, &mut y);
        Ok(BnForward {
            y: Tensor::from_vec(y, x.shape())?,
            mean: Tensor::from_vec(mean, &[c])?,
            var: Tensor::from_vec(var, &[c])?,
            invstd: Tensor::from_vec(invstd, &[c])?,
        })
    }
    fn batchnorm_fwd_eval(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        mean: &Tensor,
        var: &Tensor,
        eps: f32,
    ) -> Result<Tensor> {
        let op = "batchnorm_fwd_eval";
        let per_channel = [
            (gamma, "gamma"),
            (beta, "beta"),
            (mean, "mean"),
            (var, "var"),
        ];
        let (n, c, s) = check::batchnorm(x, &per_channel, op)?;
        let xs = host(x, op, "x")?;
        let mut invstd = buffers::reused(c);
        batchnorm::bn_invstd_f32(host(var, op, "var")?, eps, &mut invstd);
        let mut y = buffers::reused(xs.len());
        batchnorm::bn_fwd_f32(
            xs,
            n,
            c,
            s,
            host(mean, op, "mean")?,
            &invstd,
            host(gamma, op, "gamma")?,
            host(beta, op, "beta")?,
            &mut y,
        );
        Tensor::from_vec(y, x.shape())
    }
    fn batchnorm_bwd(
        &self,
        dy: &Tensor,
        x: &Tensor,
        gamma: &Tensor,
        mean: &Tensor,
        invstd: &Tensor,
    ) -> Result<BnBackward> {
        let op = "batchnorm_bwd";
        let per_channel = [(gamma, "gamma"), (mean, "mean"), (invstd, "invstd")];
        let (n, c, s) = check::batchnorm(x, &per_channel, op)?;
        check::same_shape(dy, x, op, "dy", "x")?;
        let (xs, dys) = (host(x, op, "x")?, host(dy, op, "dy")?);
        let (m, inv) = (host(mean, op, "mean")?, host(invstd, op, "invstd")?);
        let (mut sum_dy, mut sum_dy_xhat) = (buffers::reused(c), buffers::reused(c));
        batchnorm::bn_bwd_reduce_f32(dys, xs, n, c, s, m, inv, &mut sum_dy, &mut sum_dy_xhat);
        let mut dx = buffers::reused(xs.len());
        let g = host(gamma, op, "gamma")?;
        batchnorm::bn_bwd_dx_f32(dys, xs, n, c, s, m, inv, g, &sum_dy, &sum_dy_xhat, &mut dx);
        Ok(BnBackward {
            dx: Tensor::from_vec(dx, x.shape())?,
            dgamma: Tensor::from_vec(sum_dy_xhat, &[c])?,
            dbeta: Tensor::from_vec(sum_dy, &[c])?,
        })
    }

    fn bn_act_fwd_train(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        residual: Option<&Tensor>,
        relu: bool,
        eps: f32,
    ) -> Result<BnForward> {
        bn_act::fwd_train(x, gamma, beta, residual, relu, eps)
    }
    fn bn_act_bwd(&self, dy: &Tensor, saved: &BnActSaved, act: BnAct) -> Result<BnActBackward> {
        bn_act::bwd(dy, saved, act)
    }

    // ---- elementwise ------------------------------------------------------------------------
    fn relu_fwd(&self, x: &Tensor) -> Result<Tensor> {
        let xs = host(x, "relu_fwd", "x")?;
        let mut y = buffers::reused(xs.len());
        elementwise::relu_fwd_f32(xs, &mut y);
        Tensor::from_vec(y, x.shape())
    }
    fn relu_bwd(&self, dy: &Tensor, y: &Tensor) -> Result<Tensor> {
        let op = "relu_bwd";
        check::same_shape(dy, y, op, "dy", "y")?;
        let mut dx = buffers::reused(dy.numel());
        elementwise::relu_bwd_f32(host(dy, op, "dy")?, host(y, op, "y")?, &mut dx);
        Tensor::from_vec(dx, dy.shape())
    }
    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        check::same_shape(a, b, "add", "a", "b")?;
        let mut c = buffers::reused(a.numel());
        elementwise::add_f32(host(a, "add", "a")?, host(b, "add", "b")?, &mut c);
        Tensor::from_vec(c, a.shape())
    }
    fn mul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        check::same_shape(a, b, "mul", "a", "b")?;
        let mut c = buffers::reused(a.numel());
        elementwise::mul_f32(host(a, "mul", "a")?, host(b, "mul", "b")?, &mut c);
        Tensor::from_vec(c, a.shape())
    }
    fn axpby(&self, a: f32, x: &Tensor, b: f32, y: &mut Tensor) -> Result<()> {
        check::same_shape(x, y, "axpby", "x", "y")?;
        let xs = host(x, "axpby", "x")?;
        let ys = y
            .as_cpu_mut()
            .map_err(|e| Error::Device(format!("axpby: y: {e}")))?;
        elementwise::axpby_f32(a, xs, b, ys);
        Ok(())
    }
    fn copy_into(&self, x: &Tensor, dst: &mut Tensor, at: usize) -> Result<()> {
        let range = check::copy_into(x, dst, at)?;
        let xs = host(x, "copy_into", "x")?;
        let ds = dst
            .as_cpu_mut()
            .map_err(|e| Error::Device(format!("copy_into: dst: {e}")))?;
        ds[range].copy_from_slice(xs);
        Ok(())
    }

    // ---- pooling ----------------------------------------------------------------------------
    fn maxpool2d_fwd(&self, x: &Tensor, p: &Pool2dParams) -> Result<(Tensor, Tensor)> {
        let op = "maxpool2d_fwd";
        check::pool(x, p, true, op)?;
        let len = numel(&p.y_shape());
        let (mut y, mut idx) = (buffers::reused(len), buffers::reused(len));
        pool::maxpool2d_fwd_f32(host(x, op, "x")?, p, &mut y, &mut idx);
        Ok((
            Tensor::from_vec(y, &p.y_shape())?,
            Tensor::from_vec(idx, &p.y_shape())?,
        ))
    }
    fn maxpool2d_bwd(&self, dy: &Tensor, idx: &Tensor, p: &Pool2dParams) -> Result<Tensor> {
        let op = "maxpool2d_bwd";
        check::pool(dy, p, false, op)?;
        check::shape(idx, &p.y_shape(), op, "idx")?;
        let ids = host(idx, op, "idx")?;
        let plane = (p.h_in * p.w_in) as f32;
        if let Some(bad) = ids
            .par_iter()
            .find_any(|&&i| !(i >= 0.0 && i < plane && i.fract() == 0.0))
        {
            return Err(Error::Shape(format!(
                "{op}: idx holds {bad}, not a position in a {}x{} plane",
                p.h_in, p.w_in
            )));
        }
        let mut dx = buffers::reused(numel(&p.x_shape()));
        pool::maxpool2d_bwd_f32(host(dy, op, "dy")?, ids, p, &mut dx);
        Tensor::from_vec(dx, &p.x_shape())
    }
    fn avgpool2d_fwd(&self, x: &Tensor, p: &Pool2dParams) -> Result<Tensor> {
        let op = "avgpool2d_fwd";
        check::pool(x, p, true, op)?;
        let mut y = buffers::reused(numel(&p.y_shape()));
        pool::avgpool2d_fwd_f32(host(x, op, "x")?, p, &mut y);
        Tensor::from_vec(y, &p.y_shape())
    }
    fn avgpool2d_bwd(&self, dy: &Tensor, p: &Pool2dParams) -> Result<Tensor> {
        let op = "avgpool2d_bwd";
        check::pool(dy, p, false, op)?;
        let mut dx = buffers::reused(numel(&p.x_shape()));
        pool::avgpool2d_bwd_f32(host(dy, op, "dy")?, p, &mut dx);
        Tensor::from_vec(dx, &p.x_shape())
    }

    // ---- loss -------------------------------------------------------------------------------
    fn count_correct(&self, logprobs: &Tensor, labels: &Tensor, count: &mut Tensor) -> Result<()> {
        let op = "count_correct";
        let (n, k) = check::count_correct(logprobs, labels, count)?;
        let (lp, ls) = (host(logprobs, op, "logprobs")?, host(labels, op, "labels")?);
        let c = count
            .as_cpu_mut()
            .map_err(|e| Error::Device(format!("{op}: count: {e}")))?;
        loss::ce_correct_f32(lp, ls, n, k, c);
        Ok(())
    }
    fn cross_entropy_fwd(&self, logits: &Tensor, labels: &Tensor) -> Result<(Tensor, Tensor)> {
        let op = "cross_entropy_fwd";
        let (n, k) = check::cross_entropy(logits, labels, op, "logits")?;
        let ls = host(labels, op, "labels")?;
        check::labels(ls, k, op)?;
        let (mut lp, mut nll) = (buffers::reused(n * k), buffers::reused(n));
        loss::log_softmax_ce_fwd_f32(host(logits, op, "logits")?, ls, n, k, &mut lp, &mut nll);
        let mean = nll.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        Ok((
            Tensor::from_vec(vec![mean as f32], &[1])?,
            Tensor::from_vec(lp, &[n, k])?,
        ))
    }
    fn cross_entropy_bwd(&self, logprobs: &Tensor, labels: &Tensor, scale: f32) -> Result<Tensor> {
        let op = "cross_entropy_bwd";
        let (n, k) = check::cross_entropy(logprobs, labels, op, "logprobs")?;
        let ls = host(labels, op, "labels")?;
        check::labels(ls, k, op)?;
        let mut d = buffers::reused(n * k);
        let lps = host(logprobs, op, "logprobs")?;
        loss::log_softmax_ce_bwd_f32(lps, ls, n, k, scale / n.max(1) as f32, &mut d);
        Tensor::from_vec(d, &[n, k])
    }

    // ---- optimizer --------------------------------------------------------------------------
    fn sgd_step(
        &self,
        w: &mut Tensor,
        g: &Tensor,
        m: &mut Tensor,
        mask: Option<&Tensor>,
        p: &SgdParams,
    ) -> Result<()> {
        let op = "sgd_step";
        check::sgd_step(w, g, m, mask)?;
        let gs = host(g, op, "g")?;
        let ks = match mask {
            Some(k) => Some(host(k, op, "mask")?),
            None => None,
        };
        let map = |e: Error, what: &str| Error::Device(format!("{op}: {what}: {e}"));
        let ms = m.as_cpu_mut().map_err(|e| map(e, "m"))?;
        let ws = w.as_cpu_mut().map_err(|e| map(e, "w"))?;
        optim::sgd_step_f32(ws, gs, ms, ks, p);
        Ok(())
    }

    // ---- select -----------------------------------------------------------------------------
    fn count_nonzero(&self, xs: &[&Tensor]) -> Result<Vec<usize>> {
        xs.iter()
            .enumerate()
            .map(|(i, x)| {
                Ok(select::count_nonzero_f32(host(
                    x,
                    "count_nonzero",
                    &format!("tensor {i}"),
                )?))
            })
            .collect()
    }
    fn select_update(
        &self,
        groups: &mut [SelectGroup<'_>],
        action: SelectAction,
    ) -> Result<Vec<Vec<usize>>> {
        select_fast::select_update_fast(groups, action)
    }

    // ---- superpose --------------------------------------------------------------------------
    fn superpose_update(
        &self,
        groups: &mut [SuperposeGroup<'_>],
        p: &SuperposeParams,
    ) -> Result<Vec<Vec<usize>>> {
        superpose::superpose_update_cpu(groups, p)
    }
}

#[cfg(test)]
mod tests;

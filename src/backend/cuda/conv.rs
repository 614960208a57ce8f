//! Launch wrappers of kernels/conv.cu (`im2col_f32`, `col2im_f32`, `bias_add_f32`,
//! `channel_sum_f32`) and the convolution passes built from them and `sgemm_f32`:
//! - forward: per chunk of images, im2col + one batched SGEMM W·col (one GEMM per image,
//!   all in one launch), then bias_add; a 1×1 stride-1 unpadded convolution skips im2col;
//! - backward to the input: batched SGEMM Wᵀ·dY into columns, then col2im (gather, no atomics);
//! - backward to the weight: dW = Σ_images dY·colᵀ as a split-K SGEMM over the images into a
//!   few partial sums (enough blocks to fill the GPU), added up by channel_sum: deterministic.

use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

use super::matmul::Gemm;
use super::{check_len, cuda_err, to_i32, to_i64, CudaBackend};
use crate::backend::{check, Conv2dParams};
use crate::error::Result;
use crate::tensor::Tensor;

/// Most f32 a convolution's im2col workspace may hold by default (256 MiB); larger batches are
/// chunked.
pub const DEFAULT_COL_BUDGET: usize = 1 << 26;

static COL_BUDGET: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(DEFAULT_COL_BUDGET);

/// Sets the im2col workspace budget (in f32, for every CUDA convolution of the process from now
/// on): tests lower it to exercise the chunking on small shapes, which an interpreter (the
/// virtual GPU) can run.
pub fn set_im2col_budget(floats: usize) {
    COL_BUDGET.store(floats.max(1), std::sync::atomic::Ordering::Relaxed);
}

/// A 1×1, stride-1, unpadded convolution: the input already is its im2col matrix.
fn pointwise(p: &Conv2dParams) -> bool {
    p.k_h == 1 && p.k_w == 1 && p.stride == 1 && p.pad == 0
}

/// Images per chunk so that the columns of a chunk fit the workspace budget.
fn chunk(n: usize, per_image: usize) -> usize {
    (COL_BUDGET.load(std::sync::atomic::Ordering::Relaxed) / per_image.max(1))
        .clamp(1, n.max(1))
        .min(65_535)
}

impl CudaBackend {
    /// `im2col_f32` over `nimg` consecutive images.
    pub(crate) fn launch_im2col(
        &self,
        x: &CudaView<'_, f32>,
        p: &Conv2dParams,
        col: &mut CudaViewMut<'_, f32>,
        nimg: usize,
    ) -> Result<()> {
        p.check("im2col_f32")?;
        let img_in = (p.c_in * p.h_in * p.w_in) as usize;
        check_len(x.len(), nimg * img_in, "im2col_f32: x")?;
        check_len(
            col.len(),
            nimg * p.col_rows() * p.col_cols(),
            "im2col_f32: col",
        )?;
        let total = nimg * p.c_in as usize * p.col_cols();
        if total == 0 {
            return Ok(());
        }
        let nimg_i = to_i32(nimg, "im2col_f32: images")?;
        let f = self.loader.function("im2col_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(x).arg(p).arg(col).arg(&nimg_i);
        // SAFETY: arguments match `im2col_f32(const float*, Conv2dParams, float*, int)`; the
        // parameters are consistent and both buffers hold what `nimg` images need.
        unsafe { l.launch(self.cfg_1d(total)) }.map_err(cuda_err("launch im2col_f32"))?;
        Ok(())
    }

    /// `col2im_f32` over `nimg` consecutive images (overwrites `x`).
    pub(crate) fn launch_col2im(
        &self,
        col: &CudaView<'_, f32>,
        p: &Conv2dParams,
        x: &mut CudaViewMut<'_, f32>,
        nimg: usize,
    ) -> Result<()> {
        p.check("col2im_f32")?;
        let img_in = (p.c_in * p.h_in * p.w_in) as usize;
        check_len(
            col.len(),
            nimg * p.col_rows() * p.col_cols(),
            "col2im_f32: col",
        )?;
        check_len(x.len(), nimg * img_in, "col2im_f32: x")?;
        let total = nimg * img_in;
        if total == 0 {
            return Ok(());
        }
        let nimg_i = to_i32(nimg, "col2im_f32: images")?;
        let f = self.loader.function("col2im_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(col).arg(p).arg(x).arg(&nimg_i);
        // SAFETY: arguments match `col2im_f32(const float*, Conv2dParams, float*, int)`; the
        // parameters are consistent and both buffers hold what `nimg` images need.
        unsafe { l.launch(self.cfg_1d(total)) }.map_err(cuda_err("launch col2im_f32"))?;
        Ok(())
    }

    /// `bias_add_f32`: y[n, c, s] += bias[c].
    pub(crate) fn launch_bias_add(
        &self,
        y: &mut CudaViewMut<'_, f32>,
        bias: &CudaView<'_, f32>,
        n: usize,
        c: usize,
        s: usize,
    ) -> Result<()> {
        let total = n * c * s;
        check_len(y.len(), total, "bias_add_f32: y")?;
        check_len(bias.len(), c, "bias_add_f32: bias")?;
        if total == 0 {
            return Ok(());
        }
        let (ni, ci, si) = (
            to_i32(n, "bias_add n")?,
            to_i32(c, "bias_add c")?,
            to_i64(s),
        );
        let f = self.loader.function("bias_add_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(y).arg(bias).arg(&ni).arg(&ci).arg(&si);
        // SAFETY: arguments match `bias_add_f32(float*, const float*, int, int, i64)`; y holds
        // n*c*s elements and bias c.
        unsafe { l.launch(self.cfg_1d(total)) }.map_err(cuda_err("launch bias_add_f32"))?;
        Ok(())
    }

    /// `channel_sum_f32`: out[c] = Σ over n and s of x[n, c, s] (overwrites out).
    pub(crate) fn launch_channel_sum(
        &self,
        x: &CudaView<'_, f32>,
        n: usize,
        c: usize,
        s: usize,
        out: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        check_len(x.len(), n * c * s, "channel_sum_f32: x")?;
        check_len(out.len(), c, "channel_sum_f32: out")?;
        if c == 0 {
            return Ok(());
        }
        // Few values per channel: a thread per channel; many: a block per channel.
        let per_thread = (n * s <= 64) as i32;
        let cfg = if per_thread != 0 {
            self.cfg_1d(c)
        } else {
            self.cfg_per_block(c)
        };
        let (ni, ci, si) = (
            to_i32(n, "channel_sum n")?,
            to_i32(c, "channel_sum c")?,
            to_i64(s),
        );
        let f = self.loader.function("channel_sum_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(x)
            .arg(&ni)
            .arg(&ci)
            .arg(&si)
            .arg(out)
            .arg(&per_thread);
        // SAFETY: arguments match `channel_sum_f32(const float*, int, int, i64, float*, int)`;
        // x holds n*c*s elements and out c; the block size is a multiple of 32.
        unsafe { l.launch(cfg) }.map_err(cuda_err("launch channel_sum_f32"))?;
        Ok(())
    }

    /// Runs the CPU twin's `im2col_f32` on device tensors: x is ONE image [c_in, h_in, w_in],
    /// col is [c_in·k_h·k_w, h_out·w_out].
    pub fn im2col_f32(&self, x: &Tensor, p: &Conv2dParams, col: &mut Tensor) -> Result<()> {
        let xv = self.buf(x, "im2col_f32: x")?.view();
        let cb = self.buf_mut(col, "im2col_f32: col")?;
        self.launch_im2col(&xv, p, &mut cb.view_mut(), 1)
    }

    /// Runs the CPU twin's `col2im_f32` on device tensors: overwrites ONE image x with the sum
    /// of the column entries that read each pixel.
    pub fn col2im_f32(&self, col: &Tensor, p: &Conv2dParams, x: &mut Tensor) -> Result<()> {
        let cv = self.buf(col, "col2im_f32: col")?.view();
        let xb = self.buf_mut(x, "col2im_f32: x")?;
        self.launch_col2im(&cv, p, &mut xb.view_mut(), 1)
    }

    /// Runs the CPU twin's `bias_add_f32` on device tensors: y[n, c, s] += bias[c].
    pub fn bias_add_f32(
        &self,
        y: &mut Tensor,
        bias: &Tensor,
        n: usize,
        c: usize,
        s: usize,
    ) -> Result<()> {
        let bv = self.buf(bias, "bias_add_f32: bias")?.view();
        let yb = self.buf_mut(y, "bias_add_f32: y")?;
        self.launch_bias_add(&mut yb.view_mut(), &bv, n, c, s)
    }

    /// Runs the CPU twin's `channel_sum_f32` on device tensors: out[c] = Σ x[n, c, s].
    pub fn channel_sum_f32(
        &self,
        x: &Tensor,
        n: usize,
        c: usize,
        s: usize,
        out: &mut Tensor,
    ) -> Result<()> {
        let xv = self.buf(x, "channel_sum_f32: x")?.view();
        let ob = self.buf_mut(out, "channel_sum_f32: out")?;
        self.launch_channel_sum(&xv, n, c, s, &mut ob.view_mut())
    }
}

/// y = conv(x, w) + bias.
pub(super) fn conv2d_fwd(
    be: &CudaBackend,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: &Conv2dParams,
) -> Result<Tensor> {
    check::conv2d_fwd(x, w, bias, p)?;
    let n = p.n as usize;
    let (cout, kk, hw) = (p.c_out as usize, p.col_rows(), p.col_cols());
    let img_in = (p.c_in * p.h_in * p.w_in) as usize;
    let img_out = cout * hw;
    let xv = be.buf(x, "conv2d_fwd: x")?.view();
    let wv = be.buf(w, "conv2d_fwd: w")?.view();
    let mut y = be.alloc(n * img_out, "conv2d_fwd: y")?;
    // Y_i[c_out, hw] = W[c_out, kk] · col_i[kk, hw], one GEMM per image of the chunk.
    let gemm = |nb: usize, stride_b: usize| Gemm {
        batch: nb,
        groups: nb,
        stride_a: 0,
        stride_b,
        stride_c: img_out,
        ..Gemm::new(false, false, cout, hw, kk)
    };
    if n > 0 && img_out > 0 {
        if pointwise(p) {
            let nc = chunk(n, 1);
            for i0 in (0..n).step_by(nc) {
                let nb = nc.min(n - i0);
                be.launch_sgemm(
                    &gemm(nb, img_in),
                    &wv,
                    &xv.slice(i0 * img_in..(i0 + nb) * img_in),
                    &mut y.slice_mut(i0 * img_out..(i0 + nb) * img_out),
                )?;
            }
        } else {
            let nc = chunk(n, kk * hw);
            let mut col = be.alloc(nc * kk * hw, "conv2d_fwd: im2col workspace")?;
            for i0 in (0..n).step_by(nc) {
                let nb = nc.min(n - i0);
                be.launch_im2col(
                    &xv.slice(i0 * img_in..(i0 + nb) * img_in),
                    p,
                    &mut col.slice_mut(..nb * kk * hw),
                    nb,
                )?;
                be.launch_sgemm(
                    &gemm(nb, kk * hw),
                    &wv,
                    &col.slice(..nb * kk * hw),
                    &mut y.slice_mut(i0 * img_out..(i0 + nb) * img_out),
                )?;
            }
        }
    }
    if let Some(b) = bias {
        let bv = be.buf(b, "conv2d_fwd: bias")?.view();
        be.launch_bias_add(&mut y.view_mut(), &bv, n, cout, hw)?;
    }
    Ok(be.wrap(y, &p.y_shape()))
}

/// dx = transposed convolution of dy with w.
pub(super) fn conv2d_bwd_input(
    be: &CudaBackend,
    dy: &Tensor,
    w: &Tensor,
    p: &Conv2dParams,
) -> Result<Tensor> {
    check::conv2d_bwd_input(dy, w, p)?;
    let n = p.n as usize;
    let (cout, kk, hw) = (p.c_out as usize, p.col_rows(), p.col_cols());
    let img_in = (p.c_in * p.h_in * p.w_in) as usize;
    let img_out = cout * hw;
    let dyv = be.buf(dy, "conv2d_bwd_input: dy")?.view();
    let wv = be.buf(w, "conv2d_bwd_input: w")?.view();
    let mut dx = be.alloc(n * img_in, "conv2d_bwd_input: dx")?;
    // dcol_i[kk, hw] = W[c_out, kk]ᵀ · dY_i[c_out, hw], one GEMM per image of the chunk.
    let gemm = |nb: usize, stride_c: usize| Gemm {
        batch: nb,
        groups: nb,
        stride_a: 0,
        stride_b: img_out,
        stride_c,
        ..Gemm::new(true, false, kk, hw, cout)
    };
    if n > 0 && img_in > 0 {
        if pointwise(p) {
            let nc = chunk(n, 1);
            for i0 in (0..n).step_by(nc) {
                let nb = nc.min(n - i0);
                be.launch_sgemm(
                    &gemm(nb, img_in),
                    &wv,
                    &dyv.slice(i0 * img_out..(i0 + nb) * img_out),
                    &mut dx.slice_mut(i0 * img_in..(i0 + nb) * img_in),
                )?;
            }
        } else {
            let nc = chunk(n, kk * hw);
            let mut dcol = be.alloc(nc * kk * hw, "conv2d_bwd_input: column workspace")?;
            for i0 in (0..n).step_by(nc) {
                let nb = nc.min(n - i0);
                be.launch_sgemm(
                    &gemm(nb, kk * hw),
                    &wv,
                    &dyv.slice(i0 * img_out..(i0 + nb) * img_out),
                    &mut dcol.slice_mut(..nb * kk * hw),
                )?;
                be.launch_col2im(
                    &dcol.slice(..nb * kk * hw),
                    p,
                    &mut dx.slice_mut(i0 * img_in..(i0 + nb) * img_in),
                    nb,
                )?;
            }
        }
    }
    Ok(be.wrap(dx, &p.x_shape()))
}

/// dw = Σ over images of dY_i · col_iᵀ (masked to 0 where the mask is 0, when given).
pub(super) fn conv2d_bwd_weight(
    be: &CudaBackend,
    x: &Tensor,
    dy: &Tensor,
    p: &Conv2dParams,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    check::conv2d_bwd_weight(x, dy, p, mask)?;
    let n = p.n as usize;
    let (cout, kk, hw) = (p.c_out as usize, p.col_rows(), p.col_cols());
    let img_in = (p.c_in * p.h_in * p.w_in) as usize;
    let img_out = cout * hw;
    let wlen = cout * kk;
    let xv = be.buf(x, "conv2d_bwd_weight: x")?.view();
    let dyv = be.buf(dy, "conv2d_bwd_weight: dy")?.view();
    let mut dw = be.alloc_zeros(wlen, "conv2d_bwd_weight: dw")?;
    if n > 0 && wlen > 0 {
        // Split-K over the images: enough partial sums that the GEMM has about two blocks per
        // SM, at most one per image, and at most 2^24 floats (64 MiB) of partial sums.
        let tiles = cout.div_ceil(64) * kk.div_ceil(64);
        let max_groups = n.min((1 << 24) / wlen).max(1);
        let groups = (2 * be.sm_count as usize)
            .div_ceil(tiles)
            .clamp(1, max_groups);
        let mut partial = if groups > 1 {
            Some(be.alloc_zeros(groups * wlen, "conv2d_bwd_weight: partial sums")?)
        } else {
            None
        };
        // part_g[c_out, kk] += Σ_{i in group g} dY_i[c_out, hw] · col_i[kk, hw]ᵀ.
        let gemm = |nb: usize, stride_b: usize| Gemm {
            beta: 1.0,
            batch: nb,
            groups: groups.min(nb),
            stride_a: img_out,
            stride_b,
            stride_c: wlen,
            ..Gemm::new(false, true, cout, kk, hw)
        };
        let nc = if pointwise(p) {
            chunk(n, 1)
        } else {
            chunk(n, kk * hw)
        };
        let mut col = if pointwise(p) {
            None
        } else {
            Some(be.alloc(nc * kk * hw, "conv2d_bwd_weight: im2col workspace")?)
        };
        for i0 in (0..n).step_by(nc) {
            let nb = nc.min(n - i0);
            let dy_chunk = dyv.slice(i0 * img_out..(i0 + nb) * img_out);
            let x_chunk = xv.slice(i0 * img_in..(i0 + nb) * img_in);
            let mut target = match partial.as_mut() {
                Some(part) => part.view_mut(),
                None => dw.view_mut(),
            };
            match col.as_mut() {
                None => be.launch_sgemm(&gemm(nb, img_in), &dy_chunk, &x_chunk, &mut target)?,
                Some(col) => {
                    be.launch_im2col(&x_chunk, p, &mut col.slice_mut(..nb * kk * hw), nb)?;
                    be.launch_sgemm(
                        &gemm(nb, kk * hw),
                        &dy_chunk,
                        &col.slice(..nb * kk * hw),
                        &mut target,
                    )?;
                }
            }
        }
        if let Some(part) = partial.as_ref() {
            // dw[j] = Σ_g part[g, j]: a channel sum over [groups, wlen, 1].
            be.launch_channel_sum(&part.view(), groups, wlen, 1, &mut dw.view_mut())?;
        }
    }
    let dw = be.wrap(dw, &p.w_shape());
    match mask {
        Some(m) => super::elementwise::binary(be, "mul_f32", &dw, m),
        None => Ok(dw),
    }
}

/// Σ over every dimension but 1: [n, c, rest...] -> [c].
pub(super) fn channel_sum(be: &CudaBackend, x: &Tensor) -> Result<Tensor> {
    let (n, c, s) = check::ncs(x, "channel_sum")?;
    let xv = be.buf(x, "channel_sum: x")?.view();
    let mut out = be.alloc(c, "channel_sum: out")?;
    be.launch_channel_sum(&xv, n, c, s, &mut out.view_mut())?;
    Ok(be.wrap(out, &[c]))
}

//! Launch wrappers of kernels/elementwise.cu: ReLU forward/backward, add, mul, axpby and the
//! deterministic full sum.

use cudarc::driver::{CudaView, CudaViewMut, LaunchConfig, PushKernelArg};

use super::{check_len, cuda_err, to_i64, CudaBackend, BLOCK};
use crate::backend::check;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

impl CudaBackend {
    /// `relu_fwd_f32`: y = max(x, 0) over `y.len()` elements.
    pub(crate) fn launch_relu_fwd(
        &self,
        x: &CudaView<'_, f32>,
        y: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let len = y.len();
        check_len(x.len(), len, "relu_fwd_f32: x")?;
        if len == 0 {
            return Ok(());
        }
        let n = to_i64(len);
        let f = self.loader.function("relu_fwd_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(x).arg(y).arg(&n);
        // SAFETY: arguments match `relu_fwd_f32(const float*, float*, i64)`; both buffers hold
        // at least `len` elements.
        unsafe { l.launch(self.cfg_1d(len)) }.map_err(cuda_err("launch relu_fwd_f32"))?;
        Ok(())
    }

    /// `relu_bwd_f32`: dx = y > 0 ? dy : 0 over `dx.len()` elements.
    pub(crate) fn launch_relu_bwd(
        &self,
        dy: &CudaView<'_, f32>,
        y: &CudaView<'_, f32>,
        dx: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let len = dx.len();
        check_len(dy.len(), len, "relu_bwd_f32: dy")?;
        check_len(y.len(), len, "relu_bwd_f32: y")?;
        if len == 0 {
            return Ok(());
        }
        let n = to_i64(len);
        let f = self.loader.function("relu_bwd_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(dy).arg(y).arg(dx).arg(&n);
        // SAFETY: arguments match `relu_bwd_f32(const float*, const float*, float*, i64)`;
        // every buffer holds at least `len` elements.
        unsafe { l.launch(self.cfg_1d(len)) }.map_err(cuda_err("launch relu_bwd_f32"))?;
        Ok(())
    }

    /// `add_f32` or `mul_f32` (`name`): c = a ∘ b over `c.len()` elements.
    pub(crate) fn launch_binary(
        &self,
        name: &'static str,
        a: &CudaView<'_, f32>,
        b: &CudaView<'_, f32>,
        c: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        if name != "add_f32" && name != "mul_f32" {
            return Err(Error::Cuda(format!(
                "{name} is not a binary element-wise kernel"
            )));
        }
        let len = c.len();
        check_len(a.len(), len, name)?;
        check_len(b.len(), len, name)?;
        if len == 0 {
            return Ok(());
        }
        let n = to_i64(len);
        let f = self.loader.function(name)?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(a).arg(b).arg(c).arg(&n);
        // SAFETY: arguments match `add_f32` / `mul_f32(const float*, const float*, float*,
        // i64)`; every buffer holds at least `len` elements.
        unsafe { l.launch(self.cfg_1d(len)) }.map_err(cuda_err(format!("launch {name}")))?;
        Ok(())
    }

    /// `axpby_f32`: y = a·x + b·y over `y.len()` elements.
    pub(crate) fn launch_axpby(
        &self,
        a: f32,
        x: &CudaView<'_, f32>,
        b: f32,
        y: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let len = y.len();
        check_len(x.len(), len, "axpby_f32: x")?;
        if len == 0 {
            return Ok(());
        }
        let n = to_i64(len);
        let f = self.loader.function("axpby_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(&a).arg(x).arg(&b).arg(y).arg(&n);
        // SAFETY: arguments match `axpby_f32(float, const float*, float, float*, i64)`; both
        // buffers hold at least `len` elements.
        unsafe { l.launch(self.cfg_1d(len)) }.map_err(cuda_err("launch axpby_f32"))?;
        Ok(())
    }

    /// `sum_f32` with `blocks` blocks: out[b] = scale · Σ x over block b's segment.
    fn launch_sum_blocks(
        &self,
        x: &CudaView<'_, f32>,
        scale: f32,
        out: &mut CudaViewMut<'_, f32>,
        blocks: usize,
    ) -> Result<()> {
        check_len(out.len(), blocks, "sum_f32: out")?;
        let n = to_i64(x.len());
        let f = self.loader.function("sum_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(x).arg(&n).arg(&scale).arg(out);
        let cfg = LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: arguments match `sum_f32(const float*, i64, float, float*)`; the kernel
        // reads x[0..len) and writes out[0..blocks), and out holds `blocks` elements.
        unsafe { l.launch(cfg) }.map_err(cuda_err("launch sum_f32"))?;
        Ok(())
    }

    /// out[0] = scale · Σ x, deterministically: one pass of up to 1024 blocks writing partial
    /// sums, then one block over the partials (a single block when x is small).
    pub(crate) fn launch_sum(
        &self,
        x: &CudaView<'_, f32>,
        scale: f32,
        out: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        check_len(out.len(), 1, "sum_f32: out")?;
        let blocks = x.len().div_ceil(BLOCK as usize * 16).clamp(1, 1024);
        if blocks == 1 {
            return self.launch_sum_blocks(x, scale, out, 1);
        }
        let mut partial = self.alloc(blocks, "sum_f32: partial sums")?;
        self.launch_sum_blocks(x, 1.0, &mut partial.view_mut(), blocks)?;
        self.launch_sum_blocks(&partial.view(), scale, out, 1)
    }

    /// Runs the CPU twin's `relu_fwd_f32` on device tensors.
    pub fn relu_fwd_f32(&self, x: &Tensor, y: &mut Tensor) -> Result<()> {
        let xv = self.buf(x, "relu_fwd_f32: x")?.view();
        let yb = self.buf_mut(y, "relu_fwd_f32: y")?;
        self.launch_relu_fwd(&xv, &mut yb.view_mut())
    }

    /// Runs the CPU twin's `relu_bwd_f32` on device tensors.
    pub fn relu_bwd_f32(&self, dy: &Tensor, y: &Tensor, dx: &mut Tensor) -> Result<()> {
        let dyv = self.buf(dy, "relu_bwd_f32: dy")?.view();
        let yv = self.buf(y, "relu_bwd_f32: y")?.view();
        let dxb = self.buf_mut(dx, "relu_bwd_f32: dx")?;
        self.launch_relu_bwd(&dyv, &yv, &mut dxb.view_mut())
    }

    /// Runs the CPU twin's `add_f32` on device tensors: c = a + b.
    pub fn add_f32(&self, a: &Tensor, b: &Tensor, c: &mut Tensor) -> Result<()> {
        self.binary_into("add_f32", a, b, c)
    }

    /// Runs the CPU twin's `mul_f32` on device tensors: c = a · b.
    pub fn mul_f32(&self, a: &Tensor, b: &Tensor, c: &mut Tensor) -> Result<()> {
        self.binary_into("mul_f32", a, b, c)
    }

    fn binary_into(
        &self,
        name: &'static str,
        a: &Tensor,
        b: &Tensor,
        c: &mut Tensor,
    ) -> Result<()> {
        let av = self.buf(a, name)?.view();
        let bv = self.buf(b, name)?.view();
        let cb = self.buf_mut(c, name)?;
        self.launch_binary(name, &av, &bv, &mut cb.view_mut())
    }

    /// Runs the CPU twin's `axpby_f32` on device tensors: y = a·x + b·y (same shapes).
    pub fn axpby_f32(&self, a: f32, x: &Tensor, b: f32, y: &mut Tensor) -> Result<()> {
        check::same_shape(x, y, "axpby", "x", "y")?;
        let xv = self.buf(x, "axpby: x")?.view();
        let yb = self.buf_mut(y, "axpby: y")?;
        self.launch_axpby(a, &xv, b, &mut yb.view_mut())
    }

    /// `dst[at..at + x.numel()] = x` (flat), a device-to-device copy on the backend's stream.
    pub fn copy_into_f32(&self, x: &Tensor, dst: &mut Tensor, at: usize) -> Result<()> {
        let range = check::copy_into(x, dst, at)?;
        if range.is_empty() {
            return Ok(());
        }
        let xv = self.buf(x, "copy_into: x")?.view();
        let db = self.buf_mut(dst, "copy_into: dst")?;
        self.stream
            .memcpy_dtod(&xv, &mut db.slice_mut(range))
            .map_err(cuda_err("copy_into: device-to-device copy"))
    }

    /// Runs the CPU twin's `sum_f32` on a device tensor and returns the sum (the kernel writes
    /// it to a one-element device buffer, downloaded here).
    pub fn sum_f32(&self, x: &Tensor) -> Result<f32> {
        let xv = self.buf(x, "sum_f32: x")?.view();
        let mut out = self.alloc(1, "sum_f32: out")?;
        self.launch_sum(&xv, 1.0, &mut out.view_mut())?;
        let v = self
            .stream
            .clone_dtoh(&out.view())
            .map_err(cuda_err("sum_f32: download"))?;
        Ok(v[0])
    }
}

/// max(x, 0).
pub(super) fn relu_fwd(be: &CudaBackend, x: &Tensor) -> Result<Tensor> {
    let xv = be.buf(x, "relu_fwd: x")?.view();
    let mut y = be.alloc(x.numel(), "relu_fwd: y")?;
    be.launch_relu_fwd(&xv, &mut y.view_mut())?;
    Ok(be.wrap(y, x.shape()))
}

/// dy where y > 0, else 0.
pub(super) fn relu_bwd(be: &CudaBackend, dy: &Tensor, y: &Tensor) -> Result<Tensor> {
    check::same_shape(dy, y, "relu_bwd", "dy", "y")?;
    let dyv = be.buf(dy, "relu_bwd: dy")?.view();
    let yv = be.buf(y, "relu_bwd: y")?.view();
    let mut dx = be.alloc(dy.numel(), "relu_bwd: dx")?;
    be.launch_relu_bwd(&dyv, &yv, &mut dx.view_mut())?;
    Ok(be.wrap(dx, dy.shape()))
}

/// a + b or a · b (`name` is `add_f32` or `mul_f32`) into a new tensor.
pub(super) fn binary(
    be: &CudaBackend,
    name: &'static str,
    a: &Tensor,
    b: &Tensor,
) -> Result<Tensor> {
    check::same_shape(a, b, name, "a", "b")?;
    let av = be.buf(a, name)?.view();
    let bv = be.buf(b, name)?.view();
    let mut c = be.alloc(a.numel(), name)?;
    be.launch_binary(name, &av, &bv, &mut c.view_mut())?;
    Ok(be.wrap(c, a.shape()))
}

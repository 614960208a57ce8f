//! Launch wrappers of kernels/pool.cu (max and average pooling, forward and backward) and the
//! pooling passes of the backend.

use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

use super::{check_len, cuda_err, CudaBackend};
use crate::backend::{check, Pool2dParams};
use crate::error::Result;
use crate::tensor::{numel, Tensor};

impl CudaBackend {
    /// Launches one pooling kernel over `total` threads after the length checks: `name` with
    /// arguments (input views..., params, output views...).
    fn launch_pool(
        &self,
        name: &'static str,
        inputs: &[&CudaView<'_, f32>],
        p: &Pool2dParams,
        outputs: &mut [&mut CudaViewMut<'_, f32>],
        total: usize,
    ) -> Result<()> {
        if total == 0 {
            return Ok(());
        }
        let f = self.loader.function(name)?;
        let mut l = self.stream.launch_builder(&f);
        for v in inputs {
            l.arg(*v);
        }
        l.arg(p);
        for v in outputs.iter_mut() {
            l.arg(&mut **v);
        }
        // SAFETY: every caller passes the views in the order of the kernel's pointer
        // parameters in kernels/pool.cu (inputs, then Pool2dParams, then outputs), after
        // checking the parameters and that each view holds what the kernel indexes.
        unsafe { l.launch(self.cfg_1d(total)) }.map_err(cuda_err(format!("launch {name}")))?;
        Ok(())
    }

    /// `maxpool2d_fwd_f32`: y and argmax idx of each window.
    pub(crate) fn launch_maxpool_fwd<'a>(
        &self,
        x: &CudaView<'_, f32>,
        p: &Pool2dParams,
        y: &mut CudaViewMut<'a, f32>,
        idx: &mut CudaViewMut<'a, f32>,
    ) -> Result<()> {
        p.check("maxpool2d_fwd_f32")?;
        let (lin, lout) = (numel(&p.x_shape()), numel(&p.y_shape()));
        check_len(x.len(), lin, "maxpool2d_fwd_f32: x")?;
        check_len(y.len(), lout, "maxpool2d_fwd_f32: y")?;
        check_len(idx.len(), lout, "maxpool2d_fwd_f32: idx")?;
        self.launch_pool("maxpool2d_fwd_f32", &[x], p, &mut [y, idx], lout)
    }

    /// `maxpool2d_bwd_f32`: dx = Σ dy of the windows whose argmax is each pixel.
    pub(crate) fn launch_maxpool_bwd(
        &self,
        dy: &CudaView<'_, f32>,
        idx: &CudaView<'_, f32>,
        p: &Pool2dParams,
        dx: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        p.check("maxpool2d_bwd_f32")?;
        let (lin, lout) = (numel(&p.x_shape()), numel(&p.y_shape()));
        check_len(dy.len(), lout, "maxpool2d_bwd_f32: dy")?;
        check_len(idx.len(), lout, "maxpool2d_bwd_f32: idx")?;
        check_len(dx.len(), lin, "maxpool2d_bwd_f32: dx")?;
        self.launch_pool("maxpool2d_bwd_f32", &[dy, idx], p, &mut [dx], lin)
    }

    /// `avgpool2d_fwd_f32`: window sums / (k·k).
    pub(crate) fn launch_avgpool_fwd(
        &self,
        x: &CudaView<'_, f32>,
        p: &Pool2dParams,
        y: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        p.check("avgpool2d_fwd_f32")?;
        let (lin, lout) = (numel(&p.x_shape()), numel(&p.y_shape()));
        check_len(x.len(), lin, "avgpool2d_fwd_f32: x")?;
        check_len(y.len(), lout, "avgpool2d_fwd_f32: y")?;
        self.launch_pool("avgpool2d_fwd_f32", &[x], p, &mut [y], lout)
    }

    /// `avgpool2d_bwd_f32`: dx = Σ over covering windows of dy / (k·k).
    pub(crate) fn launch_avgpool_bwd(
        &self,
        dy: &CudaView<'_, f32>,
        p: &Pool2dParams,
        dx: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        p.check("avgpool2d_bwd_f32")?;
        let (lin, lout) = (numel(&p.x_shape()), numel(&p.y_shape()));
        check_len(dy.len(), lout, "avgpool2d_bwd_f32: dy")?;
        check_len(dx.len(), lin, "avgpool2d_bwd_f32: dx")?;
        self.launch_pool("avgpool2d_bwd_f32", &[dy], p, &mut [dx], lin)
    }

    /// Runs the CPU twin's `maxpool2d_fwd_f32` on device tensors.
    pub fn maxpool2d_fwd_f32(
        &self,
        x: &Tensor,
        p: &Pool2dParams,
        y: &mut Tensor,
        idx: &mut Tensor,
    ) -> Result<()> {
        let xv = self.buf(x, "maxpool2d_fwd_f32: x")?.view();
        let yb = self.buf_mut(y, "maxpool2d_fwd_f32: y")?;
        let ib = self.buf_mut(idx, "maxpool2d_fwd_f32: idx")?;
        self.launch_maxpool_fwd(&xv, p, &mut yb.view_mut(), &mut ib.view_mut())
    }

    /// Runs the CPU twin's `maxpool2d_bwd_f32` on device tensors (overwrites dx).
    pub fn maxpool2d_bwd_f32(
        &self,
        dy: &Tensor,
        idx: &Tensor,
        p: &Pool2dParams,
        dx: &mut Tensor,
    ) -> Result<()> {
        let dyv = self.buf(dy, "maxpool2d_bwd_f32: dy")?.view();
        let iv = self.buf(idx, "maxpool2d_bwd_f32: idx")?.view();
        let dxb = self.buf_mut(dx, "maxpool2d_bwd_f32: dx")?;
        self.launch_maxpool_bwd(&dyv, &iv, p, &mut dxb.view_mut())
    }

    /// Runs the CPU twin's `avgpool2d_fwd_f32` on device tensors.
    pub fn avgpool2d_fwd_f32(&self, x: &Tensor, p: &Pool2dParams, y: &mut Tensor) -> Result<()> {
        let xv = self.buf(x, "avgpool2d_fwd_f32: x")?.view();
        let yb = self.buf_mut(y, "avgpool2d_fwd_f32: y")?;
        self.launch_avgpool_fwd(&xv, p, &mut yb.view_mut())
    }

    /// Runs the CPU twin's `avgpool2d_bwd_f32` on device tensors (overwrites dx).
    pub fn avgpool2d_bwd_f32(&self, dy: &Tensor, p: &Pool2dParams, dx: &mut Tensor) -> Result<()> {
        let dyv = self.buf(dy, "avgpool2d_bwd_f32: dy")?.view();
        let dxb = self.buf_mut(dx, "avgpool2d_bwd_f32: dx")?;
        self.launch_avgpool_bwd(&dyv, p, &mut dxb.view_mut())
    }
}

/// Max-pool forward: (y, argmax positions).
pub(super) fn maxpool_fwd(
    be: &CudaBackend,
    x: &Tensor,
    p: &Pool2dParams,
) -> Result<(Tensor, Tensor)> {
    check::pool(x, p, true, "maxpool2d_fwd")?;
    let xv = be.buf(x, "maxpool2d_fwd: x")?.view();
    let lout = numel(&p.y_shape());
    let mut y = be.alloc(lout, "maxpool2d_fwd: y")?;
    let mut idx = be.alloc(lout, "maxpool2d_fwd: idx")?;
    be.launch_maxpool_fwd(&xv, p, &mut y.view_mut(), &mut idx.view_mut())?;
    Ok((be.wrap(y, &p.y_shape()), be.wrap(idx, &p.y_shape())))
}

/// Max-pool backward.
pub(super) fn maxpool_bwd(
    be: &CudaBackend,
    dy: &Tensor,
    idx: &Tensor,
    p: &Pool2dParams,
) -> Result<Tensor> {
    check::pool(dy, p, false, "maxpool2d_bwd")?;
    check::shape(idx, &p.y_shape(), "maxpool2d_bwd", "idx")?;
    let dyv = be.buf(dy, "maxpool2d_bwd: dy")?.view();
    let iv = be.buf(idx, "maxpool2d_bwd: idx")?.view();
    let mut dx = be.alloc(numel(&p.x_shape()), "maxpool2d_bwd: dx")?;
    be.launch_maxpool_bwd(&dyv, &iv, p, &mut dx.view_mut())?;
    Ok(be.wrap(dx, &p.x_shape()))
}

/// Average-pool forward.
pub(super) fn avgpool_fwd(be: &CudaBackend, x: &Tensor, p: &Pool2dParams) -> Result<Tensor> {
    check::pool(x, p, true, "avgpool2d_fwd")?;
    let xv = be.buf(x, "avgpool2d_fwd: x")?.view();
    let mut y = be.alloc(numel(&p.y_shape()), "avgpool2d_fwd: y")?;
    be.launch_avgpool_fwd(&xv, p, &mut y.view_mut())?;
    Ok(be.wrap(y, &p.y_shape()))
}

/// Average-pool backward.
pub(super) fn avgpool_bwd(be: &CudaBackend, dy: &Tensor, p: &Pool2dParams) -> Result<Tensor> {
    check::pool(dy, p, false, "avgpool2d_bwd")?;
    let dyv = be.buf(dy, "avgpool2d_bwd: dy")?.view();
    let mut dx = be.alloc(numel(&p.x_shape()), "avgpool2d_bwd: dx")?;
    be.launch_avgpool_bwd(&dyv, p, &mut dx.view_mut())?;
    Ok(be.wrap(dx, &p.x_shape()))
}

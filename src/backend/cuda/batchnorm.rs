//! Launch wrappers of kernels/batchnorm.cu and the batch-norm passes built from them. A tensor
//! [n, c, rest...] is viewed as n × c × s with s = product(rest).

use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

use super::{check_len, cuda_err, to_i32, to_i64, CudaBackend};
use crate::backend::{check, BnBackward, BnForward};
use crate::error::Result;
use crate::tensor::Tensor;

/// The (n, c, s) geometry as kernel arguments: n and c as i32, s as i64.
struct Ncs {
    n: i32,
    c: i32,
    s: i64,
    len: usize,
    channels: usize,
}

fn geometry(n: usize, c: usize, s: usize, what: &str) -> Result<Ncs> {
    Ok(Ncs {
        n: to_i32(n, &format!("{what}: n"))?,
        c: to_i32(c, &format!("{what}: c"))?,
        s: to_i64(s),
        len: n * c * s,
        channels: c,
    })
}

impl CudaBackend {
    /// `bn_stats_f32`: per-channel mean and biased variance of x[n, c, s].
    pub(crate) fn launch_bn_stats(
        &self,
        x: &CudaView<'_, f32>,
        (n, c, s): (usize, usize, usize),
        mean: &mut CudaViewMut<'_, f32>,
        var: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let g = geometry(n, c, s, "bn_stats_f32")?;
        check_len(x.len(), g.len, "bn_stats_f32: x")?;
        check_len(mean.len(), c, "bn_stats_f32: mean")?;
        check_len(var.len(), c, "bn_stats_f32: var")?;
        if c == 0 {
            return Ok(());
        }
        let f = self.loader.function("bn_stats_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(x).arg(&g.n).arg(&g.c).arg(&g.s).arg(mean).arg(var);
        // SAFETY: arguments match `bn_stats_f32(const float*, int, int, i64, float*, float*)`;
        // x holds n*c*s elements, mean and var c; the block size is a multiple of 32.
        unsafe { l.launch(self.cfg_per_block(g.channels)) }
            .map_err(cuda_err("launch bn_stats_f32"))?;
        Ok(())
    }

    /// `bn_invstd_f32`: invstd = 1 / sqrt(var + eps) over `invstd.len()` channels.
    pub(crate) fn launch_bn_invstd(
        &self,
        var: &CudaView<'_, f32>,
        eps: f32,
        invstd: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let c = invstd.len();
        check_len(var.len(), c, "bn_invstd_f32: var")?;
        if c == 0 {
            return Ok(());
        }
        let ci = to_i32(c, "bn_invstd_f32: c")?;
        let f = self.loader.function("bn_invstd_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(var).arg(&eps).arg(invstd).arg(&ci);
        // SAFETY: arguments match `bn_invstd_f32(const float*, float, float*, int)`; both
        // buffers hold c elements.
        unsafe { l.launch(self.cfg_1d(c)) }.map_err(cuda_err("launch bn_invstd_f32"))?;
        Ok(())
    }

    /// `bn_fwd_f32`: y = (x − mean) · invstd · gamma + beta per channel.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn launch_bn_fwd(
        &self,
        x: &CudaView<'_, f32>,
        (n, c, s): (usize, usize, usize),
        mean: &CudaView<'_, f32>,
        invstd: &CudaView<'_, f32>,
        gamma: &CudaView<'_, f32>,
        beta: &CudaView<'_, f32>,
        y: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let g = geometry(n, c, s, "bn_fwd_f32")?;
        check_len(x.len(), g.len, "bn_fwd_f32: x")?;
        check_len(y.len(), g.len, "bn_fwd_f32: y")?;
        for (v, what) in [
            (mean, "mean"),
            (invstd, "invstd"),
            (gamma, "gamma"),
            (beta, "beta"),
        ] {
            check_len(v.len(), c, &format!("bn_fwd_f32: {what}"))?;
        }
        if g.len == 0 {
            return Ok(());
        }
        let f = self.loader.function("bn_fwd_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(x).arg(&g.n).arg(&g.c).arg(&g.s);
        l.arg(mean).arg(invstd).arg(gamma).arg(beta).arg(y);
        // SAFETY: arguments match `bn_fwd_f32(const float*, int, int, i64, const float* x4,
        // float*)`; x and y hold n*c*s elements, the per-channel vectors c.
        unsafe { l.launch(self.cfg_1d(g.len)) }.map_err(cuda_err("launch bn_fwd_f32"))?;
        Ok(())
    }

    /// `bn_bwd_reduce_f32`: per channel Σ dy and Σ dy·xhat.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn launch_bn_bwd_reduce(
        &self,
        dy: &CudaView<'_, f32>,
        x: &CudaView<'_, f32>,
        (n, c, s): (usize, usize, usize),
        mean: &CudaView<'_, f32>,
        invstd: &CudaView<'_, f32>,
        sum_dy: &mut CudaViewMut<'_, f32>,
        sum_dy_xhat: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let g = geometry(n, c, s, "bn_bwd_reduce_f32")?;
        check_len(dy.len(), g.len, "bn_bwd_reduce_f32: dy")?;
        check_len(x.len(), g.len, "bn_bwd_reduce_f32: x")?;
        check_len(mean.len(), c, "bn_bwd_reduce_f32: mean")?;
        check_len(invstd.len(), c, "bn_bwd_reduce_f32: invstd")?;
        check_len(sum_dy.len(), c, "bn_bwd_reduce_f32: sum_dy")?;
        check_len(sum_dy_xhat.len(), c, "bn_bwd_reduce_f32: sum_dy_xhat")?;
        if c == 0 {
            return Ok(());
        }
        let f = self.loader.function("bn_bwd_reduce_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(dy).arg(x).arg(&g.n).arg(&g.c).arg(&g.s);
        l.arg(mean).arg(invstd).arg(sum_dy).arg(sum_dy_xhat);
        // SAFETY: arguments match `bn_bwd_reduce_f32(const float* x2, int, int, i64,
        // const float* x2, float* x2)`; dy and x hold n*c*s elements, the rest c.
        unsafe { l.launch(self.cfg_per_block(g.channels)) }
            .map_err(cuda_err("launch bn_bwd_reduce_f32"))?;
        Ok(())
    }

    /// `bn_bwd_dx_f32`: dx = gamma·invstd/(n·s) · (n·s·dy − Σdy − xhat·Σ(dy·xhat)).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn launch_bn_bwd_dx(
        &self,
        dy: &CudaView<'_, f32>,
        x: &CudaView<'_, f32>,
        (n, c, s): (usize, usize, usize),
        mean: &CudaView<'_, f32>,
        invstd: &CudaView<'_, f32>,
        gamma: &CudaView<'_, f32>,
        sum_dy: &CudaView<'_, f32>,
        sum_dy_xhat: &CudaView<'_, f32>,
        dx: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let g = geometry(n, c, s, "bn_bwd_dx_f32")?;
        check_len(dy.len(), g.len, "bn_bwd_dx_f32: dy")?;
        check_len(x.len(), g.len, "bn_bwd_dx_f32: x")?;
        check_len(dx.len(), g.len, "bn_bwd_dx_f32: dx")?;
        for (v, what) in [
            (mean, "mean"),
            (invstd, "invstd"),
            (gamma, "gamma"),
            (sum_dy, "sum_dy"),
            (sum_dy_xhat, "sum_dy_xhat"),
        ] {
            check_len(v.len(), c, &format!("bn_bwd_dx_f32: {what}"))?;
        }
        if g.len == 0 {
            return Ok(());
        }
        let f = self.loader.function("bn_bwd_dx_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(dy).arg(x).arg(&g.n).arg(&g.c).arg(&g.s);
        l.arg(mean)
            .arg(invstd)
            .arg(gamma)
            .arg(sum_dy)
            .arg(sum_dy_xhat)
            .arg(dx);
        // SAFETY: arguments match `bn_bwd_dx_f32(const float* x2, int, int, i64,
        // const float* x5, float*)`; dy, x and dx hold n*c*s elements, the rest c.
        unsafe { l.launch(self.cfg_1d(g.len)) }.map_err(cuda_err("launch bn_bwd_dx_f32"))?;
        Ok(())
    }

    /// Runs the CPU twin's `bn_stats_f32` on device tensors.
    #[allow(clippy::too_many_arguments)]
    pub fn bn_stats_f32(
        &self,
        x: &Tensor,
        n: usize,
        c: usize,
        s: usize,
        mean: &mut Tensor,
        var: &mut Tensor,
    ) -> Result<()> {
        let xv = self.buf(x, "bn_stats_f32: x")?.view();
        let mb = self.buf_mut(mean, "bn_stats_f32: mean")?;
        let vb = self.buf_mut(var, "bn_stats_f32: var")?;
        self.launch_bn_stats(&xv, (n, c, s), &mut mb.view_mut(), &mut vb.view_mut())
    }

    /// Runs the CPU twin's `bn_invstd_f32` on device tensors.
    pub fn bn_invstd_f32(&self, var: &Tensor, eps: f32, invstd: &mut Tensor) -> Result<()> {
        let vv = self.buf(var, "bn_invstd_f32: var")?.view();
        let ib = self.buf_mut(invstd, "bn_invstd_f32: invstd")?;
        self.launch_bn_invstd(&vv, eps, &mut ib.view_mut())
    }

    /// Runs the CPU twin's `bn_fwd_f32` on device tensors.
    #[allow(clippy::too_many_arguments)]
    pub fn bn_fwd_f32(
        &self,
        x: &Tensor,
        n: usize,
        c: usize,
        s: usize,
        mean: &Tensor,
        invstd: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        y: &mut Tensor,
    ) -> Result<()> {
        let xv = self.buf(x, "bn_fwd_f32: x")?.view();
        let mv = self.buf(mean, "bn_fwd_f32: mean")?.view();
        let iv = self.buf(invstd, "bn_fwd_f32: invstd")?.view();
        let gv = self.buf(gamma, "bn_fwd_f32: gamma")?.view();
        let bv = self.buf(beta, "bn_fwd_f32: beta")?.view();
        let yb = self.buf_mut(y, "bn_fwd_f32: y")?;
        self.launch_bn_fwd(&xv, (n, c, s), &mv, &iv, &gv, &bv, &mut yb.view_mut())
    }

    /// Runs the CPU twin's `bn_bwd_reduce_f32` on device tensors.
    #[allow(clippy::too_many_arguments)]
    pub fn bn_bwd_reduce_f32(
        &self,
        dy: &Tensor,
        x: &Tensor,
        n: usize,
        c: usize,
        s: usize,
        mean: &Tensor,
        invstd: &Tensor,
        sum_dy: &mut Tensor,
        sum_dy_xhat: &mut Tensor,
    ) -> Result<()> {
        let dyv = self.buf(dy, "bn_bwd_reduce_f32: dy")?.view();
        let xv = self.buf(x, "bn_bwd_reduce_f32: x")?.view();
        let mv = self.buf(mean, "bn_bwd_reduce_f32: mean")?.view();
        let iv = self.buf(invstd, "bn_bwd_reduce_f32: invstd")?.view();
        let sb = self.buf_mut(sum_dy, "bn_bwd_reduce_f32: sum_dy")?;
        let sxb = self.buf_mut(sum_dy_xhat, "bn_bwd_reduce_f32: sum_dy_xhat")?;
        self.launch_bn_bwd_reduce(
            &dyv,
            &xv,
            (n, c, s),
            &mv,
            &iv,
            &mut sb.view_mut(),
            &mut sxb.view_mut(),
        )
    }

    /// Runs the CPU twin's `bn_bwd_dx_f32` on device tensors.
    #[allow(clippy::too_many_arguments)]
    pub fn bn_bwd_dx_f32(
        &self,
        dy: &Tensor,
        x: &Tensor,
        n: usize,
        c: usize,
        s: usize,
        mean: &Tensor,
        invstd: &Tensor,
        gamma: &Tensor,
        sum_dy: &Tensor,
        sum_dy_xhat: &Tensor,
        dx: &mut Tensor,
    ) -> Result<()> {
        let dyv = self.buf(dy, "bn_bwd_dx_f32: dy")?.view();
        let xv = self.buf(x, "bn_bwd_dx_f32: x")?.view();
        let mv = self.buf(mean, "bn_bwd_dx_f32: mean")?.view();
        let iv = self.buf(invstd, "bn_bwd_dx_f32: invstd")?.view();
        let gv = self.buf(gamma, "bn_bwd_dx_f32: gamma")?.view();
        let sv = self.buf(sum_dy, "bn_bwd_dx_f32: sum_dy")?.view();
        let sxv = self.buf(sum_dy_xhat, "bn_bwd_dx_f32: sum_dy_xhat")?.view();
        let dxb = self.buf_mut(dx, "bn_bwd_dx_f32: dx")?;
        self.launch_bn_bwd_dx(
            &dyv,
            &xv,
            (n, c, s),
            &mv,
            &iv,
            &gv,
            &sv,
            &sxv,
            &mut dxb.view_mut(),
        )
    }
}

/// Training-mode forward: batch statistics, then normalise.
pub(super) fn fwd_train(
    be: &CudaBackend,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
) -> Result<BnForward> {
    let per_channel = [(gamma, "gamma"), (beta, "beta")];
    let (n, c, s) = check::batchnorm(x, &per_channel, "batchnorm_fwd_train")?;
    let xv = be.buf(x, "batchnorm_fwd_train: x")?.view();
    let gv = be.buf(gamma, "batchnorm_fwd_train: gamma")?.view();
    let bv = be.buf(beta, "batchnorm_fwd_train: beta")?.view();
    let mut mean = be.alloc(c, "batchnorm_fwd_train: mean")?;
    let mut var = be.alloc(c, "batchnorm_fwd_train: var")?;
    let mut invstd = be.alloc(c, "batchnorm_fwd_train: invstd")?;
    let mut y = be.alloc(x.numel(), "batchnorm_fwd_train: y")?;
    be.launch_bn_stats(&xv, (n, c, s), &mut mean.view_mut(), &mut var.view_mut())?;
    be.launch_bn_invstd(&var.view(), eps, &mut invstd.view_mut())?;
    be.launch_bn_fwd(
        &xv,
        (n, c, s),
        &mean.view(),
        &invstd.view(),
        &gv,
        &bv,
        &mut y.view_mut(),
    )?;
    Ok(BnForward {
        y: be.wrap(y, x.shape()),
        mean: be.wrap(mean, &[c]),
        var: be.wrap(var, &[c]),
        invstd: be.wrap(invstd, &[c]),
    })
}

/// Eval-mode forward with running statistics.
pub(super) fn fwd_eval(
    be: &CudaBackend,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    let per_channel = [
        (gamma, "gamma"),
        (beta, "beta"),
        (mean, "mean"),
        (var, "var"),
    ];
    let (n, c, s) = check::batchnorm(x, &per_channel, "batchnorm_fwd_eval")?;
    let xv = be.buf(x, "batchnorm_fwd_eval: x")?.view();
    let mut invstd = be.alloc(c, "batchnorm_fwd_eval: invstd")?;
    be.launch_bn_invstd(
        &be.buf(var, "batchnorm_fwd_eval: var")?.view(),
        eps,
        &mut invstd.view_mut(),
    )?;
    let mut y = be.alloc(x.numel(), "batchnorm_fwd_eval: y")?;
    be.launch_bn_fwd(
        &xv,
        (n, c, s),
        &be.buf(mean, "batchnorm_fwd_eval: mean")?.view(),
        &invstd.view(),
        &be.buf(gamma, "batchnorm_fwd_eval: gamma")?.view(),
        &be.buf(beta, "batchnorm_fwd_eval: beta")?.view(),
        &mut y.view_mut(),
    )?;
    Ok(be.wrap(y, x.shape()))
}

/// Backward of training-mode batch norm: dgamma = Σ dy·xhat, dbeta = Σ dy, and dx.
pub(super) fn bwd(
    be: &CudaBackend,
    dy: &Tensor,
    x: &Tensor,
    gamma: &Tensor,
    mean: &Tensor,
    invstd: &Tensor,
) -> Result<BnBackward> {
    let per_channel = [(gamma, "gamma"), (mean, "mean"), (invstd, "invstd")];
    let (n, c, s) = check::batchnorm(x, &per_channel, "batchnorm_bwd")?;
    check::same_shape(dy, x, "batchnorm_bwd", "dy", "x")?;
    let dyv = be.buf(dy, "batchnorm_bwd: dy")?.view();
    let xv = be.buf(x, "batchnorm_bwd: x")?.view();
    let mv = be.buf(mean, "batchnorm_bwd: mean")?.view();
    let iv = be.buf(invstd, "batchnorm_bwd: invstd")?.view();
    let gv = be.buf(gamma, "batchnorm_bwd: gamma")?.view();
    let mut sum_dy = be.alloc(c, "batchnorm_bwd: dbeta")?;
    let mut sum_dy_xhat = be.alloc(c, "batchnorm_bwd: dgamma")?;
    be.launch_bn_bwd_reduce(
        &dyv,
        &xv,
        (n, c, s),
        &mv,
        &iv,
        &mut sum_dy.view_mut(),
        &mut sum_dy_xhat.view_mut(),
    )?;
    let mut dx = be.alloc(x.numel(), "batchnorm_bwd: dx")?;
    be.launch_bn_bwd_dx(
        &dyv,
        &xv,
        (n, c, s),
        &mv,
        &iv,
        &gv,
        &sum_dy.view(),
        &sum_dy_xhat.view(),
        &mut dx.view_mut(),
    )?;
    Ok(BnBackward {
        dx: be.wrap(dx, x.shape()),
        dgamma: be.wrap(sum_dy_xhat, &[c]),
        dbeta: be.wrap(sum_dy, &[c]),
    })
}

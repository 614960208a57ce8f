//! Launch wrapper of kernels/optim.cu: the fused, masked SGD step.

use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

use super::{check_len, cuda_err, to_i64, CudaBackend};
use crate::backend::{check, SgdParams};
use crate::error::Result;
use crate::tensor::Tensor;

impl CudaBackend {
    /// `sgd_step_f32` over `w.len()` elements (see [`SgdParams`]); without a mask the kernel
    /// gets `has_mask = 0` and does not read its mask pointer.
    pub(crate) fn launch_sgd(
        &self,
        w: &mut CudaViewMut<'_, f32>,
        g: &CudaView<'_, f32>,
        m: &mut CudaViewMut<'_, f32>,
        mask: Option<&CudaView<'_, f32>>,
        p: &SgdParams,
    ) -> Result<()> {
        let len = w.len();
        check_len(g.len(), len, "sgd_step_f32: g")?;
        check_len(m.len(), len, "sgd_step_f32: m")?;
        if let Some(mk) = mask {
            check_len(mk.len(), len, "sgd_step_f32: mask")?;
        }
        if len == 0 {
            return Ok(());
        }
        let n = to_i64(len);
        let has_mask = mask.is_some() as i32;
        // Without a mask the kernel never reads the mask pointer (has_mask = 0); g stands in.
        let mask_arg = mask.unwrap_or(g);
        let f = self.loader.function("sgd_step_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(w).arg(g).arg(m).arg(mask_arg);
        l.arg(&has_mask).arg(p).arg(&n);
        // SAFETY: arguments match `sgd_step_f32(float*, const float*, float*, const float*,
        // int, SgdParams, i64)`; w, g, m (and the mask when given) hold `len` elements.
        unsafe { l.launch(self.cfg_1d(len)) }.map_err(cuda_err("launch sgd_step_f32"))?;
        Ok(())
    }

    /// Runs the CPU twin's `sgd_step_f32` on device tensors.
    pub fn sgd_step_f32(
        &self,
        w: &mut Tensor,
        g: &Tensor,
        m: &mut Tensor,
        mask: Option<&Tensor>,
        p: &SgdParams,
    ) -> Result<()> {
        let gv = self.buf(g, "sgd_step_f32: g")?.view();
        let mv = match mask {
            Some(t) => Some(self.buf(t, "sgd_step_f32: mask")?.view()),
            None => None,
        };
        let wb = self.buf_mut(w, "sgd_step_f32: w")?;
        let mb = self.buf_mut(m, "sgd_step_f32: m")?;
        self.launch_sgd(&mut wb.view_mut(), &gv, &mut mb.view_mut(), mv.as_ref(), p)
    }
}

/// One fused SGD step on w and its momentum m, then w, m *= mask.
pub(super) fn sgd_step(
    be: &CudaBackend,
    w: &mut Tensor,
    g: &Tensor,
    m: &mut Tensor,
    mask: Option<&Tensor>,
    p: &SgdParams,
) -> Result<()> {
    check::sgd_step(w, g, m, mask)?;
    be.buf(w, "sgd_step: w")?;
    be.sgd_step_f32(w, g, m, mask, p)
}

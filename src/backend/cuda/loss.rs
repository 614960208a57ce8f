//! Launch wrappers of kernels/loss.cu and the cross-entropy passes: the loss is the
//! deterministic `sum_f32` of the per-row NLL scaled by 1/n, computed on the device.

use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

use super::{check_len, cuda_err, to_i32, CudaBackend};
use crate::backend::check;
use crate::error::Result;
use crate::tensor::Tensor;

impl CudaBackend {
    /// `log_softmax_ce_fwd_f32`: row-wise log-softmax of logits [n, k] and per-row NLL.
    pub(crate) fn launch_ce_fwd(
        &self,
        logits: &CudaView<'_, f32>,
        labels: &CudaView<'_, f32>,
        (n, k): (usize, usize),
        logprobs: &mut CudaViewMut<'_, f32>,
        row_nll: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        check_len(logits.len(), n * k, "log_softmax_ce_fwd_f32: logits")?;
        check_len(logprobs.len(), n * k, "log_softmax_ce_fwd_f32: logprobs")?;
        check_len(labels.len(), n, "log_softmax_ce_fwd_f32: labels")?;
        check_len(row_nll.len(), n, "log_softmax_ce_fwd_f32: row_nll")?;
        if n == 0 {
            return Ok(());
        }
        let (ni, ki) = (
            to_i32(n, "cross entropy rows")?,
            to_i32(k, "cross entropy classes")?,
        );
        let f = self.loader.function("log_softmax_ce_fwd_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(logits)
            .arg(labels)
            .arg(&ni)
            .arg(&ki)
            .arg(logprobs)
            .arg(row_nll);
        // SAFETY: arguments match `log_softmax_ce_fwd_f32(const float* x2, int, int, float*
        // x2)`; logits and logprobs hold n*k elements, labels and row_nll n; the kernel only
        // indexes a row at its label after checking 0 <= label < k; block size 256.
        unsafe { l.launch(self.cfg_per_block(n)) }
            .map_err(cuda_err("launch log_softmax_ce_fwd_f32"))?;
        Ok(())
    }

    /// `ce_correct_f32`: count[0] += rows of logprobs [n, k] whose arg-max is the label.
    pub(crate) fn launch_ce_correct(
        &self,
        logprobs: &CudaView<'_, f32>,
        labels: &CudaView<'_, f32>,
        (n, k): (usize, usize),
        count: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        check_len(logprobs.len(), n * k, "ce_correct_f32: logprobs")?;
        check_len(labels.len(), n, "ce_correct_f32: labels")?;
        check_len(count.len(), 1, "ce_correct_f32: count")?;
        if n * k == 0 {
            return Ok(());
        }
        let (ni, ki) = (
            to_i32(n, "cross entropy rows")?,
            to_i32(k, "cross entropy classes")?,
        );
        let f = self.loader.function("ce_correct_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(logprobs).arg(labels).arg(&ni).arg(&ki).arg(count);
        // SAFETY: arguments match `ce_correct_f32(const float* x2, int, int, float*)`;
        // logprobs holds n*k elements, labels n, count 1; the kernel reads row r < n only.
        unsafe { l.launch(self.cfg_1d(n)) }.map_err(cuda_err("launch ce_correct_f32"))?;
        Ok(())
    }

    /// Runs the CPU twin's `ce_correct_f32` on device tensors (`count`: [1], accumulated).
    pub fn ce_correct_f32(
        &self,
        logprobs: &Tensor,
        labels: &Tensor,
        n: usize,
        k: usize,
        count: &mut Tensor,
    ) -> Result<()> {
        let pv = self.buf(logprobs, "ce_correct_f32: logprobs")?.view();
        let lv = self.buf(labels, "ce_correct_f32: labels")?.view();
        let cb = self.buf_mut(count, "ce_correct_f32: count")?;
        self.launch_ce_correct(&pv, &lv, (n, k), &mut cb.view_mut())
    }

    /// `log_softmax_ce_bwd_f32`: dlogits = scale · (exp(logprobs) − onehot(label)).
    pub(crate) fn launch_ce_bwd(
        &self,
        logprobs: &CudaView<'_, f32>,
        labels: &CudaView<'_, f32>,
        (n, k): (usize, usize),
        scale: f32,
        dlogits: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        check_len(logprobs.len(), n * k, "log_softmax_ce_bwd_f32: logprobs")?;
        check_len(dlogits.len(), n * k, "log_softmax_ce_bwd_f32: dlogits")?;
        check_len(labels.len(), n, "log_softmax_ce_bwd_f32: labels")?;
        if n * k == 0 {
            return Ok(());
        }
        let (ni, ki) = (
            to_i32(n, "cross entropy rows")?,
            to_i32(k, "cross entropy classes")?,
        );
        let f = self.loader.function("log_softmax_ce_bwd_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(logprobs)
            .arg(labels)
            .arg(&ni)
            .arg(&ki)
            .arg(&scale)
            .arg(dlogits);
        // SAFETY: arguments match `log_softmax_ce_bwd_f32(const float* x2, int, int, float,
        // float*)`; logprobs and dlogits hold n*k elements, labels n.
        unsafe { l.launch(self.cfg_1d(n * k)) }
            .map_err(cuda_err("launch log_softmax_ce_bwd_f32"))?;
        Ok(())
    }

    /// Runs the CPU twin's `log_softmax_ce_fwd_f32` on device tensors.
    pub fn log_softmax_ce_fwd_f32(
        &self,
        logits: &Tensor,
        labels: &Tensor,
        n: usize,
        k: usize,
        logprobs: &mut Tensor,
        row_nll: &mut Tensor,
    ) -> Result<()> {
        let xv = self.buf(logits, "log_softmax_ce_fwd_f32: logits")?.view();
        let lv = self.buf(labels, "log_softmax_ce_fwd_f32: labels")?.view();
        let pb = self.buf_mut(logprobs, "log_softmax_ce_fwd_f32: logprobs")?;
        let rb = self.buf_mut(row_nll, "log_softmax_ce_fwd_f32: row_nll")?;
        self.launch_ce_fwd(&xv, &lv, (n, k), &mut pb.view_mut(), &mut rb.view_mut())
    }

    /// Runs the CPU twin's `log_softmax_ce_bwd_f32` on device tensors.
    pub fn log_softmax_ce_bwd_f32(
        &self,
        logprobs: &Tensor,
        labels: &Tensor,
        n: usize,
        k: usize,
        scale: f32,
        dlogits: &mut Tensor,
    ) -> Result<()> {
        let pv = self
            .buf(logprobs, "log_softmax_ce_bwd_f32: logprobs")?
            .view();
        let lv = self.buf(labels, "log_softmax_ce_bwd_f32: labels")?.view();
        let db = self.buf_mut(dlogits, "log_softmax_ce_bwd_f32: dlogits")?;
        self.launch_ce_bwd(&pv, &lv, (n, k), scale, &mut db.view_mut())
    }
}

/// Adds the rows of logprobs [n, k] whose arg-max is the label to `count` ([1]) on the device.
pub(super) fn count_correct(
    be: &CudaBackend,
    logprobs: &Tensor,
    labels: &Tensor,
    count: &mut Tensor,
) -> Result<()> {
    let op = "count_correct";
    let (n, k) = check::count_correct(logprobs, labels, count)?;
    let pv = be.buf(logprobs, &format!("{op}: logprobs"))?.view();
    let lv = be.buf(labels, &format!("{op}: labels"))?.view();
    let cb = be.buf_mut(count, &format!("{op}: count"))?;
    be.launch_ce_correct(&pv, &lv, (n, k), &mut cb.view_mut())
}

/// (n, k) of `x` [n, k] (logits or log-probabilities, `what`) with labels [n] after the shared
/// shape checks. The label values are not read back (that would wait for the queued work every
/// step): batches are checked on the host before their upload (`Batch::to_tensors`), and a label
/// that is not a class index in [0, k) gives that row a NaN loss on the device, as the CPU twin.
fn check_ce(
    be: &CudaBackend,
    x: &Tensor,
    labels: &Tensor,
    op: &str,
    what: &str,
) -> Result<(usize, usize)> {
    let (n, k) = check::cross_entropy(x, labels, op, what)?;
    be.buf(x, &format!("{op}: {what}"))?;
    be.buf(labels, &format!("{op}: labels"))?;
    Ok((n, k))
}

/// (mean NLL as a [1] tensor, log-probabilities [n, k]); errors on empty logits; a label that
/// is not a class index makes the loss NaN (checked on the host when batches are built).
pub(super) fn cross_entropy_fwd(
    be: &CudaBackend,
    logits: &Tensor,
    labels: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let (n, k) = check_ce(be, logits, labels, "cross_entropy_fwd", "logits")?;
    let xv = be.buf(logits, "cross_entropy_fwd: logits")?.view();
    let lv = be.buf(labels, "cross_entropy_fwd: labels")?.view();
    let mut logprobs = be.alloc(n * k, "cross_entropy_fwd: logprobs")?;
    let mut row_nll = be.alloc(n, "cross_entropy_fwd: row losses")?;
    be.launch_ce_fwd(
        &xv,
        &lv,
        (n, k),
        &mut logprobs.view_mut(),
        &mut row_nll.view_mut(),
    )?;
    let mut loss = be.alloc(1, "cross_entropy_fwd: loss")?;
    be.launch_sum(&row_nll.view(), 1.0 / n as f32, &mut loss.view_mut())?;
    Ok((be.wrap(loss, &[1]), be.wrap(logprobs, &[n, k])))
}

/// d(scale · mean NLL)/d logits = scale/n · (softmax − onehot).
pub(super) fn cross_entropy_bwd(
    be: &CudaBackend,
    logprobs: &Tensor,
    labels: &Tensor,
    scale: f32,
) -> Result<Tensor> {
    let (n, k) = check_ce(be, logprobs, labels, "cross_entropy_bwd", "logprobs")?;
    let pv = be.buf(logprobs, "cross_entropy_bwd: logprobs")?.view();
    let lv = be.buf(labels, "cross_entropy_bwd: labels")?.view();
    let mut d = be.alloc(n * k, "cross_entropy_bwd: dlogits")?;
    let s = scale / n.max(1) as f32;
    be.launch_ce_bwd(&pv, &lv, (n, k), s, &mut d.view_mut())?;
    Ok(be.wrap(d, &[n, k]))
}

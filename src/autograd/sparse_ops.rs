//! The sparse conv and linear ops: the same maths as [`Tape::conv2d`] / [`Tape::linear`] with
//! the weight read through its mask in CSR form, so the forward pass, the backward pass to the
//! input and (unless the dense weight gradient is asked for, on RigL / GraNet / Sup-tickets
//! update steps) the weight gradient do work only for active weights.
//!
//! The ops take the mask's CSR structure ([`CsrPlan`], kept by the parameter between mask
//! updates) and gather the weight's current values into it where the weight lives
//! ([`Backend::csr_gather`](crate::backend::Backend::csr_gather)): the forward CSR, and the
//! transposed one when the backward pass to the input runs.

use std::sync::Arc;

use super::ops::{conv_params, with_bias_grad};
use super::{Tape, Var};
use crate::backend::{Conv2dParams, CsrPlan, SparseWeight};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The CSR of `w` ([rows, ...]) restricted to the active positions of `mask`, on the host
/// (device tensors are copied back; for benchmarks and tests).
pub fn sparse_weight_of(w: &Tensor, mask: &Tensor, rows: usize) -> Result<SparseWeight> {
    if w.shape() != mask.shape() {
        return Err(Error::Shape(format!(
            "sparse weight: mask shape {:?} differs from weight shape {:?}",
            mask.shape(),
            w.shape()
        )));
    }
    let cols = w.numel() / rows.max(1);
    match (w.as_cpu(), mask.as_cpu()) {
        (Ok(wv), Ok(mv)) => SparseWeight::from_masked(wv, mv, rows, cols),
        _ => SparseWeight::from_masked(&w.to_vec()?, &mask.to_vec()?, rows, cols),
    }
}

/// Errors unless `plan` is the structure of a mask shaped like `w`.
fn check_plan(plan: &CsrPlan, w: &Tensor, op: &str) -> Result<()> {
    if w.shape().first() != Some(&plan.rows) || w.numel() != plan.rows * plan.cols {
        return Err(Error::Shape(format!(
            "{op}: a {}x{} mask CSR for weight {:?}",
            plan.rows,
            plan.cols,
            w.shape()
        )));
    }
    Ok(())
}

impl Tape {
    /// [`Tape::conv2d`] through the sparse kernels; `plan` is the CSR structure of the
    /// weight's mask ([`crate::nn::Param::mask_csr`]), and `dense_weight_grad` asks for the
    /// weight gradient at every position.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_sparse(
        &mut self,
        x: Var,
        w: Var,
        bias: Option<Var>,
        stride: usize,
        pad: usize,
        plan: Arc<CsrPlan>,
        dense_weight_grad: bool,
    ) -> Result<Var> {
        let (xt, wt) = (self.value(x).clone(), self.value(w).clone());
        let p = conv_params(&xt, &wt, stride, pad)?;
        check_plan(&plan, &wt, "conv2d_sparse")?;
        let bt = bias.map(|b| self.value(b).clone());
        let sw = xt.backend().csr_gather(&plan, &wt, false)?;
        let y = xt
            .backend()
            .spconv_fwd(&xt, sw.operand(), bt.as_ref(), &p)?;
        let mut inputs = vec![x, w];
        inputs.extend(bias);
        Ok(self.push(
            y,
            &inputs,
            Box::new(move |dy, needs| {
                let be = dy.backend();
                let dx = if needs[0] {
                    let swt = be.csr_gather(&plan, &wt, true)?;
                    Some(be.spconv_bwd_input(dy, swt.operand(), &p)?)
                } else {
                    None
                };
                let dw = match (needs[1], dense_weight_grad) {
                    (false, _) => None,
                    (true, true) => Some(be.conv2d_bwd_weight(&xt, dy, &p, None)?),
                    (true, false) => Some(be.spconv_bwd_weight(&xt, dy, sw.operand(), &p)?),
                };
                with_bias_grad(be, dy, needs, dx, dw)
            }),
        ))
    }

    /// [`Tape::linear`] through the sparse kernels (the 1×1 conv on [n, in, 1, 1]); `plan` as
    /// in [`Tape::conv2d_sparse`].
    pub fn linear_sparse(
        &mut self,
        x: Var,
        w: Var,
        bias: Option<Var>,
        plan: Arc<CsrPlan>,
        dense_weight_grad: bool,
    ) -> Result<Var> {
        let (xt, wt) = (self.value(x).clone(), self.value(w).clone());
        let (n, d_in) = xt.dims2("linear_fwd: x")?;
        let (d_out, w_in) = wt.dims2("linear_fwd: weight")?;
        if w_in != d_in {
            return Err(Error::Shape(format!(
                "linear: weight {:?} does not fit input {:?}",
                wt.shape(),
                xt.shape()
            )));
        }
        let p = Conv2dParams::new(n, d_in, 1, 1, d_out, 1, 1, 0)?;
        check_plan(&plan, &wt, "linear_sparse")?;
        let bt = bias.map(|b| self.value(b).clone());
        let x4 = xt.reshape(&[n, d_in, 1, 1])?;
        let sw = xt.backend().csr_gather(&plan, &wt, false)?;
        let y = xt
            .backend()
            .spconv_fwd(&x4, sw.operand(), bt.as_ref(), &p)?
            .reshape(&[n, d_out])?;
        let mut inputs = vec![x, w];
        inputs.extend(bias);
        Ok(self.push(
            y,
            &inputs,
            Box::new(move |dy, needs| {
                let be = dy.backend();
                let dy4 = dy.reshape(&[n, d_out, 1, 1])?;
                let dx = if needs[0] {
                    let swt = be.csr_gather(&plan, &wt, true)?;
                    Some(
                        be.spconv_bwd_input(&dy4, swt.operand(), &p)?
                            .reshape(&[n, d_in])?,
                    )
                } else {
                    None
                };
                let dw = match (needs[1], dense_weight_grad) {
                    (false, _) => None,
                    (true, true) => Some(be.linear_bwd_weight(&xt, dy, None)?),
                    (true, false) => Some(
                        be.spconv_bwd_weight(&x4, &dy4, sw.operand(), &p)?
                            .reshape(&[d_out, d_in])?,
                    ),
                };
                with_bias_grad(be, dy, needs, dx, dw)
            }),
        ))
    }
}

//! The sparse conv and linear ops: the same maths as [`Tape::conv2d`] / [`Tape::linear`] with
//! the weight read through its mask in CSR form ([`SparseWeight`]), so the forward pass, the
//! backward pass to the input and (unless the dense weight gradient is asked for, on RigL /
//! GraNet / Sup-tickets update steps) the weight gradient do work only for active weights.

use std::sync::Arc;

use super::ops::{conv_params, with_bias_grad};
use super::{Tape, Var};
use crate::backend::{Conv2dParams, SparseWeight};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The CSR of `w` ([rows, ...]) restricted to the active positions of `mask`.
pub fn sparse_weight_of(w: &Tensor, mask: &Tensor, rows: usize) -> Result<SparseWeight> {
    Ok(sparse_weight_within(w, mask, rows, f64::INFINITY)?
        .expect("every density is within an infinite bound"))
}

/// [`sparse_weight_of`] when the mask's density is at most `max_density`, else None.
pub fn sparse_weight_within(
    w: &Tensor,
    mask: &Tensor,
    rows: usize,
    max_density: f64,
) -> Result<Option<SparseWeight>> {
    if w.shape() != mask.shape() {
        return Err(Error::Shape(format!(
            "sparse weight: mask shape {:?} differs from weight shape {:?}",
            mask.shape(),
            w.shape()
        )));
    }
    let cols = w.numel() / rows.max(1);
    match (w.as_cpu(), mask.as_cpu()) {
        (Ok(wv), Ok(mv)) => SparseWeight::from_masked_within(wv, mv, rows, cols, max_density),
        // Device tensors: the CSR is built on the host (see notes: a device-side build is
        // future work).
        _ => {
            SparseWeight::from_masked_within(&w.to_vec()?, &mask.to_vec()?, rows, cols, max_density)
        }
    }
}

impl Tape {
    /// [`Tape::conv2d`] through the sparse kernels; `sw` is the weight's CSR (the values of
    /// `w` at its mask, [`sparse_weight_of`]), and `dense_weight_grad` asks for the weight
    /// gradient at every position.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_sparse(
        &mut self,
        x: Var,
        w: Var,
        bias: Option<Var>,
        stride: usize,
        pad: usize,
        sw: Arc<SparseWeight>,
        dense_weight_grad: bool,
    ) -> Result<Var> {
        let (xt, wt) = (self.value(x).clone(), self.value(w).clone());
        let p = conv_params(&xt, &wt, stride, pad)?;
        let bt = bias.map(|b| self.value(b).clone());
        let y = xt.backend().spconv_fwd(&xt, &sw, bt.as_ref(), &p)?;
        let mut inputs = vec![x, w];
        inputs.extend(bias);
        Ok(self.push(
            y,
            &inputs,
            Box::new(move |dy, needs| {
                let be = dy.backend();
                let dx = if needs[0] {
                    Some(be.spconv_bwd_input(dy, &sw.transpose(), &p)?)
                } else {
                    None
                };
                let dw = match (needs[1], dense_weight_grad) {
                    (false, _) => None,
                    (true, true) => Some(be.conv2d_bwd_weight(&xt, dy, &p, None)?),
                    (true, false) => Some(be.spconv_bwd_weight(&xt, dy, &sw, &p)?),
                };
                with_bias_grad(be, dy, needs, dx, dw)
            }),
        ))
    }

    /// [`Tape::linear`] through the sparse kernels (the 1×1 conv on [n, in, 1, 1]); `sw` as in
    /// [`Tape::conv2d_sparse`].
    pub fn linear_sparse(
        &mut self,
        x: Var,
        w: Var,
        bias: Option<Var>,
        sw: Arc<SparseWeight>,
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
        let bt = bias.map(|b| self.value(b).clone());
        let x4 = xt.reshape(&[n, d_in, 1, 1])?;
        let y = xt
            .backend()
            .spconv_fwd(&x4, &sw, bt.as_ref(), &p)?
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
                    Some(
                        be.spconv_bwd_input(&dy4, &sw.transpose(), &p)?
                            .reshape(&[n, d_in])?,
                    )
                } else {
                    None
                };
                let dw = match (needs[1], dense_weight_grad) {
                    (false, _) => None,
                    (true, true) => Some(be.linear_bwd_weight(&xt, dy, None)?),
                    (true, false) => Some(
                        be.spconv_bwd_weight(&x4, &dy4, &sw, &p)?
                            .reshape(&[d_out, d_in])?,
                    ),
                };
                with_bias_grad(be, dy, needs, dx, dw)
            }),
        ))
    }
}

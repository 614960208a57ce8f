//! The sparse conv and linear ops: the same maths as [`Tape::conv2d`] / [`Tape::linear`] with
//! the weight read through its mask in CSR form ([`SparseWeight`]), so the forward pass, the
//! backward pass to the input and (unless the dense weight gradient is asked for, on RigL /
//! GraNet / Sup-tickets update steps) the weight gradient do work only for active weights.

use std::sync::Arc;

use super::{Tape, Var};
use crate::backend::{Conv2dParams, SparseWeight};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The CSR of `w` ([rows, ...]) restricted to the active positions of `mask`.
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
        // Device tensors: the CSR is built on the host (see notes: a device-side build is
        // future work).
        _ => SparseWeight::from_masked(&w.to_vec()?, &mask.to_vec()?, rows, cols),
    }
}

impl Tape {
    /// [`Tape::conv2d`] through the sparse kernels; `mask` gives the active weights, and
    /// `dense_weight_grad` asks for the weight gradient at every position.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_sparse(
        &mut self,
        x: Var,
        w: Var,
        bias: Option<Var>,
        stride: usize,
        pad: usize,
        mask: &Tensor,
        dense_weight_grad: bool,
    ) -> Result<Var> {
        let (xt, wt) = (self.value(x).clone(), self.value(w).clone());
        let (n, c_in, h, wd) = xt.dims4("conv2d input")?;
        let (c_out, wc_in, kh, kw) = wt.dims4("conv2d weight")?;
        if wc_in != c_in || kh != kw {
            return Err(Error::Shape(format!(
                "conv2d: weight {:?} does not fit input {:?}",
                wt.shape(),
                xt.shape()
            )));
        }
        let p = Conv2dParams::new(n, c_in, h, wd, c_out, kh, stride, pad)?;
        let sw = Arc::new(sparse_weight_of(&wt, mask, c_out)?);
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
                let mut out = vec![dx, dw];
                if needs.len() > 2 {
                    out.push(if needs[2] {
                        Some(be.channel_sum(dy)?)
                    } else {
                        None
                    });
                }
                Ok(out)
            }),
        ))
    }

    /// [`Tape::linear`] through the sparse kernels (the 1×1 conv on [n, in, 1, 1]).
    pub fn linear_sparse(
        &mut self,
        x: Var,
        w: Var,
        bias: Option<Var>,
        mask: &Tensor,
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
        let sw = Arc::new(sparse_weight_of(&wt, mask, d_out)?);
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
                let mut out = vec![dx, dw];
                if needs.len() > 2 {
                    out.push(if needs[2] {
                        Some(be.channel_sum(dy)?)
                    } else {
                        None
                    });
                }
                Ok(out)
            }),
        ))
    }
}

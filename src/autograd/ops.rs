//! The differentiable ops: each runs the forward kernel of the values' backend and records the
//! backward closure.

use super::{Tape, Var};
use crate::backend::{Backend, Conv2dParams, Pool2dParams};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The geometry of conv2d(x, w) with this stride and padding, or an error naming both shapes.
pub(super) fn conv_params(
    xt: &Tensor,
    wt: &Tensor,
    stride: usize,
    pad: usize,
) -> Result<Conv2dParams> {
    let (n, c_in, h, wd) = xt.dims4("conv2d input")?;
    let (c_out, wc_in, kh, kw) = wt.dims4("conv2d weight")?;
    if wc_in != c_in || kh != kw {
        return Err(Error::Shape(format!(
            "conv2d: weight {:?} does not fit input {:?}",
            wt.shape(),
            xt.shape()
        )));
    }
    Conv2dParams::new(n, c_in, h, wd, c_out, kh, stride, pad)
}

/// The backward outputs [dx, dw] of a conv or linear op, plus the bias gradient (the channel
/// sum of dy) when the op has a bias input.
pub(super) fn with_bias_grad(
    be: &dyn Backend,
    dy: &Tensor,
    needs: &[bool],
    dx: Option<Tensor>,
    dw: Option<Tensor>,
) -> Result<Vec<Option<Tensor>>> {
    let mut out = vec![dx, dw];
    if needs.len() > 2 {
        out.push(if needs[2] {
            Some(be.channel_sum(dy)?)
        } else {
            None
        });
    }
    Ok(out)
}

impl Tape {
    /// 2-d convolution of x [n,c_in,h,w] with w [c_out,c_in,k,k] (+ bias [c_out]). With a mask,
    /// the weight gradient may be computed only at active positions.
    pub fn conv2d(
        &mut self,
        x: Var,
        w: Var,
        bias: Option<Var>,
        stride: usize,
        pad: usize,
        mask: Option<&Tensor>,
    ) -> Result<Var> {
        let (xt, wt) = (self.value(x).clone(), self.value(w).clone());
        let p = conv_params(&xt, &wt, stride, pad)?;
        let bt = bias.map(|b| self.value(b).clone());
        let y = xt.backend().conv2d_fwd(&xt, &wt, bt.as_ref(), &p)?;
        let mask = mask.cloned();
        let mut inputs = vec![x, w];
        inputs.extend(bias);
        Ok(self.push(
            y,
            &inputs,
            Box::new(move |dy, needs| {
                let be = dy.backend();
                let dx = if needs[0] {
                    Some(be.conv2d_bwd_input(dy, &wt, &p)?)
                } else {
                    None
                };
                let dw = if needs[1] {
                    Some(be.conv2d_bwd_weight(&xt, dy, &p, mask.as_ref())?)
                } else {
                    None
                };
                with_bias_grad(be, dy, needs, dx, dw)
            }),
        ))
    }

    /// Fully connected layer: x [n,in] · w[out,in]^T + bias[out].
    pub fn linear(
        &mut self,
        x: Var,
        w: Var,
        bias: Option<Var>,
        mask: Option<&Tensor>,
    ) -> Result<Var> {
        let (xt, wt) = (self.value(x).clone(), self.value(w).clone());
        let bt = bias.map(|b| self.value(b).clone());
        let y = xt.backend().linear_fwd(&xt, &wt, bt.as_ref())?;
        let mask = mask.cloned();
        let mut inputs = vec![x, w];
        inputs.extend(bias);
        Ok(self.push(
            y,
            &inputs,
            Box::new(move |dy, needs| {
                let be = dy.backend();
                let dx = if needs[0] {
                    Some(be.linear_bwd_input(dy, &wt)?)
                } else {
                    None
                };
                let dw = if needs[1] {
                    Some(be.linear_bwd_weight(&xt, dy, mask.as_ref())?)
                } else {
                    None
                };
                with_bias_grad(be, dy, needs, dx, dw)
            }),
        ))
    }

    /// Training-mode batch norm over dimension 1; also returns the batch mean and biased
    /// variance (for the running statistics).
    pub fn batchnorm_train(
        &mut self,
        x: Var,
        gamma: Var,
        beta: Var,
        eps: f32,
    ) -> Result<(Var, Tensor, Tensor)> {
        let (xt, gt, bt) = (
            self.value(x).clone(),
            self.value(gamma).clone(),
            self.value(beta).clone(),
        );
        let f = xt.backend().batchnorm_fwd_train(&xt, &gt, &bt, eps)?;
        let (mean, invstd) = (f.mean.clone(), f.invstd.clone());
        let y = self.push(
            f.y,
            &[x, gamma, beta],
            Box::new(move |dy, _needs| {
                let b = dy.backend().batchnorm_bwd(dy, &xt, &gt, &mean, &invstd)?;
                Ok(vec![Some(b.dx), Some(b.dgamma), Some(b.dbeta)])
            }),
        );
        Ok((y, f.mean, f.var))
    }

    /// Eval-mode batch norm with fixed statistics (not differentiable: evaluation only).
    pub fn batchnorm_eval(
        &mut self,
        x: Var,
        gamma: Var,
        beta: Var,
        mean: &Tensor,
        var: &Tensor,
        eps: f32,
    ) -> Result<Var> {
        let (xt, gt, bt) = (self.value(x), self.value(gamma), self.value(beta));
        let y = xt
            .backend()
            .batchnorm_fwd_eval(xt, gt, bt, mean, var, eps)?;
        Ok(self.push(
            y,
            &[x, gamma, beta],
            Box::new(|_, _| {
                Err(Error::Config(
                    "backward through eval-mode batch norm is not supported; use training mode"
                        .into(),
                ))
            }),
        ))
    }

    /// max(x, 0).
    pub fn relu(&mut self, x: Var) -> Result<Var> {
        let xt = self.value(x);
        let y = xt.backend().relu_fwd(xt)?;
        let yt = y.clone();
        Ok(self.push(
            y,
            &[x],
            Box::new(move |dy, _| Ok(vec![Some(dy.backend().relu_bwd(dy, &yt)?)])),
        ))
    }

    /// a + b (residual connections).
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        let (at, bt) = (self.value(a), self.value(b));
        if at.shape() != bt.shape() {
            return Err(Error::Shape(format!(
                "add: shapes {:?} and {:?} differ",
                at.shape(),
                bt.shape()
            )));
        }
        let y = at.backend().add(at, bt)?;
        Ok(self.push(
            y,
            &[a, b],
            Box::new(|dy, _| Ok(vec![Some(dy.clone()), Some(dy.clone())])),
        ))
    }

    /// Max-pool with a square window.
    pub fn maxpool2d(&mut self, x: Var, k: usize, stride: usize, pad: usize) -> Result<Var> {
        let xt = self.value(x);
        let (n, c, h, w) = xt.dims4("maxpool2d input")?;
        let p = Pool2dParams::new(n, c, h, w, k, stride, pad)?;
        let (y, idx) = xt.backend().maxpool2d_fwd(xt, &p)?;
        Ok(self.push(
            y,
            &[x],
            Box::new(move |dy, _| Ok(vec![Some(dy.backend().maxpool2d_bwd(dy, &idx, &p)?)])),
        ))
    }

    /// Average pool with a square window (padding counted as zeros).
    pub fn avgpool2d(&mut self, x: Var, k: usize, stride: usize, pad: usize) -> Result<Var> {
        let xt = self.value(x);
        let (n, c, h, w) = xt.dims4("avgpool2d input")?;
        let p = Pool2dParams::new(n, c, h, w, k, stride, pad)?;
        let y = xt.backend().avgpool2d_fwd(xt, &p)?;
        Ok(self.push(
            y,
            &[x],
            Box::new(move |dy, _| Ok(vec![Some(dy.backend().avgpool2d_bwd(dy, &p)?)])),
        ))
    }

    /// Global average pool [n,c,h,w] -> [n,c].
    pub fn global_avgpool(&mut self, x: Var) -> Result<Var> {
        let (n, c, h, w) = self.value(x).dims4("global_avgpool input")?;
        if h != w {
            return Err(Error::Shape(format!(
                "global_avgpool: non-square input {h}x{w}"
            )));
        }
        let y = self.avgpool2d(x, h, h, 0)?;
        self.reshape(y, &[n, c])
    }

    /// The same values with another shape (e.g. flatten [n,c,1,1] -> [n,c]).
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        let xt = self.value(x);
        let in_shape = xt.shape().to_vec();
        let y = xt.reshape(shape)?;
        Ok(self.push(
            y,
            &[x],
            Box::new(move |dy, _| Ok(vec![Some(dy.reshape(&in_shape)?)])),
        ))
    }

    /// Flattens all dimensions after the first.
    pub fn flatten(&mut self, x: Var) -> Result<Var> {
        let s = self.value(x).shape().to_vec();
        let rest: usize = s[1..].iter().product();
        self.reshape(x, &[s[0], rest])
    }

    /// Mean cross-entropy of logits [n,k] against labels [n] (exact-integer f32). Returns the
    /// loss var (shape [1]) and the log-probabilities (for accuracy and calibration metrics).
    pub fn cross_entropy(&mut self, logits: Var, labels: &Tensor) -> Result<(Var, Tensor)> {
        let lt = self.value(logits);
        let (loss, logprobs) = lt.backend().cross_entropy_fwd(lt, labels)?;
        let (lp, lab) = (logprobs.clone(), labels.clone());
        // The output gradient is a host scale (1.0 when the loss is the root of backward).
        let v = self.push_scaled(
            loss,
            &[logits],
            Box::new(move |scale, _| {
                Ok(vec![Some(
                    lp.backend().cross_entropy_bwd(&lp, &lab, scale)?,
                )])
            }),
        )?;
        Ok((v, logprobs))
    }
}

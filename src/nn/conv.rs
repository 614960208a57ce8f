//! 2-d convolution layer (square kernel), Kaiming-normal initialised (fan-out, ReLU gain).

use super::forward::{Forward, Layer, LayerKind};
use super::param::{ParamId, ParamRole, ParamStore};
use crate::autograd::Var;
use crate::error::Result;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// A conv layer: weight [c_out, c_in, k, k], optional bias [c_out].
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// The weight parameter (maskable).
    pub weight: ParamId,
    /// The bias parameter, if any.
    pub bias: Option<ParamId>,
    /// Stride.
    pub stride: usize,
    /// Padding.
    pub pad: usize,
}

impl Conv2d {
    /// Creates the parameters `{name}.weight` (and `{name}.bias`) in `store`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        bias: bool,
        rng: &mut Rng,
    ) -> Result<Conv2d> {
        let std = (2.0 / (c_out * k * k) as f32).sqrt();
        let w: Vec<f32> = (0..c_out * c_in * k * k)
            .map(|_| rng.normal() * std)
            .collect();
        let weight = store.add_param(
            format!("{name}.weight"),
            Tensor::from_vec(w, &[c_out, c_in, k, k])?,
            ParamRole::Weight,
        );
        let bias = if bias {
            Some(store.add_param(
                format!("{name}.bias"),
                Tensor::from_vec(vec![0.0; c_out], &[c_out])?,
                ParamRole::Bias,
            ))
        } else {
            None
        };
        Ok(Conv2d {
            weight,
            bias,
            stride,
            pad,
        })
    }
}

impl Layer for Conv2d {
    fn forward(&self, f: &mut Forward, x: Var) -> Result<Var> {
        let w = f.param(self.weight);
        let b = self.bias.map(|b| f.param(b));
        let y = if let Some(sw) = f.sparse_weight(self.weight)? {
            let dense_grad = f.dense_weight_grads();
            f.tape
                .conv2d_sparse(x, w, b, self.stride, self.pad, sw, dense_grad)?
        } else {
            let mask = f.grad_mask(self.weight).cloned();
            f.tape
                .conv2d(x, w, b, self.stride, self.pad, mask.as_ref())?
        };
        let ys = f.tape.value(y).shape().to_vec();
        let ws = f.tape.value(w).shape().to_vec();
        let macs = (ys[1] * ys[2] * ys[3]) as u64 * (ws[1] * ws[2] * ws[3]) as u64;
        let xs = f.tape.value(x).shape().to_vec();
        let sp = (self.stride, self.pad);
        f.record(self.weight, LayerKind::Conv, &xs, &ys, sp, macs);
        Ok(y)
    }
}

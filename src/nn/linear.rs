//! Fully connected layer, initialised like PyTorch's `nn.Linear` (uniform ±1/√in).

use super::forward::{Forward, Layer, LayerKind};
use super::param::{ParamId, ParamRole, ParamStore};
use crate::autograd::Var;
use crate::error::Result;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// A linear layer: weight [out, in], optional bias [out].
#[derive(Clone, Debug)]
pub struct Linear {
    /// The weight parameter (maskable).
    pub weight: ParamId,
    /// The bias parameter, if any.
    pub bias: Option<ParamId>,
}

impl Linear {
    /// Creates `{name}.weight` (and `{name}.bias`) in `store`.
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
        rng: &mut Rng,
    ) -> Result<Linear> {
        let bound = 1.0 / (d_in as f32).sqrt();
        let mut u = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| (rng.uniform() * 2.0 - 1.0) * bound)
                .collect()
        };
        let weight = store.add_param(
            format!("{name}.weight"),
            Tensor::from_vec(u(d_out * d_in), &[d_out, d_in])?,
            ParamRole::Weight,
        );
        let bias = if bias {
            Some(store.add_param(
                format!("{name}.bias"),
                Tensor::from_vec(u(d_out), &[d_out])?,
                ParamRole::Bias,
            ))
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }
}

impl Layer for Linear {
    fn forward(&self, f: &mut Forward, x: Var) -> Result<Var> {
        let w = f.param(self.weight);
        let b = self.bias.map(|b| f.param(b));
        let y = if let Some(sw) = f.sparse_weight(self.weight)? {
            let dense_grad = f.dense_weight_grads();
            f.tape.linear_sparse(x, w, b, sw, dense_grad)?
        } else {
            let mask = f.grad_mask(self.weight).cloned();
            f.tape.linear(x, w, b, mask.as_ref())?
        };
        let ys = f.tape.value(y).shape().to_vec();
        let ws = f.tape.value(w).shape().to_vec();
        let xs = f.tape.value(x).shape().to_vec();
        let macs = (ws[0] * ws[1]) as u64;
        f.record(self.weight, LayerKind::Linear, &xs, &ys, (1, 0), macs);
        Ok(y)
    }
}

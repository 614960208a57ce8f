//! Batch normalisation over dimension 1 (BatchNorm2d and BatchNorm1d), with running
//! statistics updated in training mode like PyTorch (momentum 0.1, unbiased running variance).

use std::cell::Cell;

use super::forward::{Forward, Layer};
use super::param::{BufferId, ParamId, ParamRole, ParamStore};
use crate::autograd::Var;
use crate::error::Result;
use crate::tensor::Tensor;

/// A batch-norm layer.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    /// Scale (`{name}.weight`).
    pub gamma: ParamId,
    /// Shift (`{name}.bias`).
    pub beta: ParamId,
    /// `{name}.running_mean`.
    pub running_mean: BufferId,
    /// `{name}.running_var`.
    pub running_var: BufferId,
    /// Running-statistics momentum.
    pub momentum: f32,
    /// Added to the variance.
    pub eps: f32,
}

impl BatchNorm {
    /// Creates the parameters and buffers of a batch norm over `c` channels.
    pub fn new(store: &mut ParamStore, name: &str, c: usize) -> Result<BatchNorm> {
        Ok(BatchNorm {
            gamma: store.add_param(
                format!("{name}.weight"),
                Tensor::from_vec(vec![1.0; c], &[c])?,
                ParamRole::BnWeight,
            ),
            beta: store.add_param(
                format!("{name}.bias"),
                Tensor::from_vec(vec![0.0; c], &[c])?,
                ParamRole::BnBias,
            ),
            running_mean: store.add_buffer(
                format!("{name}.running_mean"),
                Tensor::from_vec(vec![0.0; c], &[c])?,
            ),
            running_var: store.add_buffer(
                format!("{name}.running_var"),
                Tensor::from_vec(vec![1.0; c], &[c])?,
            ),
            momentum: 0.1,
            eps: 1e-5,
        })
    }
}

thread_local! {
    /// The momentum every batch-norm layer uses on this thread instead of its own, if set.
    static MOMENTUM_OVERRIDE: Cell<Option<f32>> = const { Cell::new(None) };
}

impl BatchNorm {
    /// Runs `f` with the running-statistics momentum of every batch-norm layer forwarded in
    /// training mode on this thread replaced by `momentum` (restored afterwards, also on
    /// panic). `momentum = 1/n` on the n-th batch gives the cumulative average of the batch
    /// statistics, as PyTorch's `update_bn` (momentum None) does for Sup-tickets' BU.
    pub fn with_momentum<R>(momentum: f32, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<f32>);
        impl Drop for Restore {
            fn drop(&mut self) {
                MOMENTUM_OVERRIDE.with(|c| c.set(self.0));
            }
        }
        let _restore = Restore(MOMENTUM_OVERRIDE.with(|c| c.replace(Some(momentum))));
        f()
    }
}

impl BatchNorm {
    /// `relu(bn(x) + residual)`, the residual add and the ReLU each optional: one fused op in
    /// training mode (a single pass over the activations; `--sync-bn` keeps the unfused ops),
    /// the unfused ops in evaluation mode. Same values as running them one by one.
    pub fn forward_act(
        &self,
        f: &mut Forward,
        x: Var,
        residual: Option<Var>,
        relu: bool,
    ) -> Result<Var> {
        if !f.training() || crate::dist::sync_bn::active().is_some() {
            let mut y = self.forward(f, x)?;
            if let Some(r) = residual {
                y = f.tape.add(y, r)?;
            }
            return if relu { f.tape.relu(y) } else { Ok(y) };
        }
        let (g, b) = (f.param(self.gamma), f.param(self.beta));
        let s = f.tape.value(x).shape();
        let count = s.iter().product::<usize>() / s[1];
        let (y, mean, var) = f
            .tape
            .batchnorm_act_train((x, g, b), residual, relu, self.eps)?;
        self.update_running(f, &mean, &var, count)?;
        Ok(y)
    }

    /// Running statistics ← momentum-weighted batch statistics (unbiased variance).
    fn update_running(
        &self,
        f: &mut Forward,
        mean: &Tensor,
        var: &Tensor,
        count: usize,
    ) -> Result<()> {
        let m = MOMENTUM_OVERRIDE.with(|c| c.get()).unwrap_or(self.momentum);
        let unbias = if count > 1 {
            count as f32 / (count - 1) as f32
        } else {
            1.0
        };
        let be = mean.backend();
        be.axpby(m, mean, 1.0 - m, f.buffer_mut(self.running_mean))?;
        be.axpby(m * unbias, var, 1.0 - m, f.buffer_mut(self.running_var))
    }
}

/// Batch norm followed by ReLU, run as one fused op in training mode
/// ([`BatchNorm::forward_act`]); the parameters are the batch norm's.
#[derive(Clone, Debug)]
pub struct BatchNormRelu(pub BatchNorm);

impl Layer for BatchNormRelu {
    fn forward(&self, f: &mut Forward, x: Var) -> Result<Var> {
        self.0.forward_act(f, x, None, true)
    }
}

impl Layer for BatchNorm {
    fn forward(&self, f: &mut Forward, x: Var) -> Result<Var> {
        let (g, b) = (f.param(self.gamma), f.param(self.beta));
        if f.training() {
            // With `--sync-bn` over several processes: the global batch's statistics.
            let (y, mean, var, count) = match crate::dist::sync_bn::active() {
                Some(c) => {
                    crate::dist::sync_bn::batchnorm_train_sync(&mut f.tape, c, x, g, b, self.eps)?
                }
                None => {
                    let s = f.tape.value(x).shape();
                    let count = s.iter().product::<usize>() / s[1];
                    let (y, mean, var) = f.tape.batchnorm_train(x, g, b, self.eps)?;
                    (y, mean, var, count)
                }
            };
            self.update_running(f, &mean, &var, count)?;
            Ok(y)
        } else {
            let (mean, var) = (
                f.buffer(self.running_mean).clone(),
                f.buffer(self.running_var).clone(),
            );
            f.tape.batchnorm_eval(x, g, b, &mean, &var, self.eps)
        }
    }
}

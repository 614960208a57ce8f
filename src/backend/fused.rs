//! Batch norm fused with what follows it in a network: `y = relu(bn(x) + residual)`, where the
//! residual add and the ReLU are each optional. The types of [`Backend::bn_act_fwd_train`] and
//! [`Backend::bn_act_bwd`], and their reference compositions of the unfused ops (the trait's
//! default implementations, used by every backend that has no fused kernel of its own).
//!
//! A fused kernel must give the same values as the composition: the same arithmetic per
//! element (`x·scale + shift`, then `+ residual`, then `max(·, 0)`, each rounded to f32), and
//! in the backward pass the ReLU's gate `y > 0` applied to `dy` before batch norm's reductions.

use super::{check, Backend, BnBackward, BnForward};
use crate::error::Result;
use crate::tensor::Tensor;

/// What follows batch norm in a fused call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnAct {
    /// A residual input is added to batch norm's output (ResNet blocks).
    pub residual: bool,
    /// ReLU is applied last.
    pub relu: bool,
}

/// What the backward pass of a fused batch norm needs from its forward pass.
#[derive(Clone, Debug)]
pub struct BnActSaved {
    /// Batch norm's input.
    pub x: Tensor,
    /// The fused output `relu(bn(x) + residual)` (the ReLU's gate is `y > 0`).
    pub y: Tensor,
    /// Scale, shape [c].
    pub gamma: Tensor,
    /// Shift, shape [c].
    pub beta: Tensor,
    /// Batch mean, shape [c].
    pub mean: Tensor,
    /// 1 / sqrt(var + eps), shape [c].
    pub invstd: Tensor,
}

/// What the backward pass of a fused batch norm returns.
#[derive(Clone, Debug)]
pub struct BnActBackward {
    /// Gradients of batch norm's input and parameters.
    pub bn: BnBackward,
    /// Gradient of the residual input (dy after the ReLU's gate), when there is one.
    pub dresidual: Option<Tensor>,
}

/// The forward pass composed of the unfused ops: batch norm, add, ReLU.
pub fn bn_act_fwd_composed(
    be: &(impl Backend + ?Sized),
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    residual: Option<&Tensor>,
    relu: bool,
    eps: f32,
) -> Result<BnForward> {
    if let Some(r) = residual {
        check::same_shape(r, x, "bn_act_fwd_train", "residual", "x")?;
    }
    let mut f = be.batchnorm_fwd_train(x, gamma, beta, eps)?;
    if let Some(r) = residual {
        f.y = be.add(&f.y, r)?;
    }
    if relu {
        f.y = be.relu_fwd(&f.y)?;
    }
    Ok(f)
}

/// The backward pass composed of the unfused ops: the ReLU's backward, then batch norm's.
pub fn bn_act_bwd_composed(
    be: &(impl Backend + ?Sized),
    dy: &Tensor,
    s: &BnActSaved,
    act: BnAct,
) -> Result<BnActBackward> {
    let g = if act.relu {
        be.relu_bwd(dy, &s.y)?
    } else {
        dy.clone()
    };
    let bn = be.batchnorm_bwd(&g, &s.x, &s.gamma, &s.mean, &s.invstd)?;
    Ok(BnActBackward {
        bn,
        dresidual: act.residual.then_some(g),
    })
}

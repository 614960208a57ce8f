//! The SGD optimizer: momentum, optional Nesterov, L2 weight decay, and the mask applied to
//! weight and momentum after every step, all in the backend's fused `sgd_step` kernel.

use crate::backend::SgdParams;
use crate::error::{Error, Result};
use crate::nn::ParamStore;
use crate::tensor::Tensor;

/// SGD hyper-parameters (the learning rate is set per step by the schedule).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    /// Momentum factor (0.9 in the reference settings).
    pub momentum: f32,
    /// L2 weight decay (5e-4 in the reference settings).
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd {
            momentum: 0.9,
            weight_decay: 5e-4,
            nesterov: false,
        }
    }
}

impl Sgd {
    /// Updates every parameter that has a gradient, with learning rate `lr`.
    pub fn step(&self, store: &mut ParamStore, grads: &[Option<Tensor>], lr: f32) -> Result<()> {
        if grads.len() != store.params.len() {
            return Err(Error::Shape(format!(
                "sgd: {} gradients for {} parameters",
                grads.len(),
                store.params.len()
            )));
        }
        let p = SgdParams {
            lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            nesterov: self.nesterov as u32,
        };
        for (param, g) in store.params.iter_mut().zip(grads) {
            let Some(g) = g else { continue };
            if g.shape() != param.value.shape() {
                return Err(Error::Shape(format!(
                    "sgd: gradient of {} has shape {:?}, parameter {:?}",
                    param.name,
                    g.shape(),
                    param.value.shape()
                )));
            }
            let device = param.value.device();
            let be = device.backend();
            let mut m = match param.momentum.take() {
                Some(m) => m,
                None => be.zeros(param.value.shape())?,
            };
            let (value, mask) = param.value_mut_and_mask();
            be.sgd_step(value, g, &mut m, mask, &p)?;
            param.momentum = Some(m);
        }
        Ok(())
    }
}

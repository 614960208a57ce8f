//! Fused tape ops: training-mode batch norm with the residual add and ReLU that follow it, one
//! node instead of three (the backend fuses the passes over the activations; see
//! `backend::fused`).

use super::{Tape, Var};
use crate::backend::{BnAct, BnActSaved};
use crate::error::Result;
use crate::tensor::Tensor;

impl Tape {
    /// Training-mode batch norm over dimension 1, plus `residual` when given, then ReLU when
    /// `relu`: the value of `relu(batchnorm_train(x) + residual)` in one node. Also returns the
    /// batch mean and biased variance (for the running statistics).
    pub fn batchnorm_act_train(
        &mut self,
        (x, gamma, beta): (Var, Var, Var),
        residual: Option<Var>,
        relu: bool,
        eps: f32,
    ) -> Result<(Var, Tensor, Tensor)> {
        let (xt, gt, bt) = (
            self.value(x).clone(),
            self.value(gamma).clone(),
            self.value(beta).clone(),
        );
        // The backend checks the residual's shape (`check::same_shape`, naming it).
        let rt = residual.map(|r| self.value(r));
        let f = xt
            .backend()
            .bn_act_fwd_train(&xt, &gt, &bt, rt, relu, eps)?;
        let act = BnAct {
            residual: residual.is_some(),
            relu,
        };
        let saved = BnActSaved {
            x: xt,
            y: f.y.clone(),
            gamma: gt,
            beta: bt,
            mean: f.mean.clone(),
            invstd: f.invstd,
        };
        let mut inputs = vec![x, gamma, beta];
        inputs.extend(residual);
        let y = self.push(
            f.y,
            &inputs,
            Box::new(move |dy, _needs| {
                let b = dy.backend().bn_act_bwd(dy, &saved, act)?;
                let mut grads = vec![Some(b.bn.dx), Some(b.bn.dgamma), Some(b.bn.dbeta)];
                if act.residual {
                    grads.push(b.dresidual);
                }
                Ok(grads)
            }),
        );
        Ok((y, f.mean, f.var))
    }
}

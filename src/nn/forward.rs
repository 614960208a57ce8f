//! [`Forward`]: the context of one forward pass: the tape, the parameters (as tape variables,
//! created on first use), training or evaluation mode, and an optional trace of the conv and
//! linear layers run (shapes and multiply-adds, for FLOP accounting).

use std::sync::Arc;

use super::param::{BufferId, ParamId, ParamStore};
use crate::autograd::{Tape, Var};
use crate::backend::{sparse_policy, CsrPlan};
use crate::error::Result;
use crate::tensor::Tensor;

/// Kind of a traced layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// 2-d convolution.
    Conv,
    /// Fully connected.
    Linear,
}

/// One conv or linear layer as run in a traced forward pass.
#[derive(Clone, Debug)]
pub struct LayerTrace {
    /// The weight parameter.
    pub param: ParamId,
    /// Weight name (PyTorch naming).
    pub name: String,
    /// Conv or linear.
    pub kind: LayerKind,
    /// Weight shape.
    pub weight_shape: Vec<usize>,
    /// Output shape of one example.
    pub out_shape: Vec<usize>,
    /// Input shape of one example.
    pub in_shape: Vec<usize>,
    /// Stride and padding (1 and 0 for a linear layer).
    pub stride_pad: (usize, usize),
    /// Dense multiply-adds for one example.
    pub macs_per_example: u64,
}

/// One forward pass in progress.
pub struct Forward<'a> {
    /// The tape recording the pass.
    pub tape: Tape,
    store: &'a mut ParamStore,
    training: bool,
    vars: Vec<Option<Var>>,
    trace: Option<Vec<LayerTrace>>,
    dense_weight_grads: bool,
}

impl<'a> Forward<'a> {
    /// Starts a pass over `store`'s parameters. In training mode parameters get gradients
    /// and batch norm uses (and updates) batch statistics.
    pub fn new(store: &'a mut ParamStore, training: bool) -> Forward<'a> {
        let n = store.params.len();
        Forward {
            tape: Tape::new(),
            store,
            training,
            vars: vec![None; n],
            trace: None,
            dense_weight_grads: false,
        }
    }

    /// Records every conv and linear layer run (see [`Forward::take_trace`]).
    pub fn enable_trace(&mut self) {
        self.trace = Some(Vec::new());
    }

    /// True in training mode.
    pub fn training(&self) -> bool {
        self.training
    }

    /// The tape variable of parameter `id` (created on first use).
    pub fn param(&mut self, id: ParamId) -> Var {
        if let Some(v) = self.vars[id.0] {
            return v;
        }
        let t = self.store.params[id.0].value.clone();
        let v = if self.training {
            self.tape.variable(t)
        } else {
            self.tape.constant(t)
        };
        self.vars[id.0] = Some(v);
        v
    }

    /// The mask of parameter `id`, if it has one.
    pub fn mask(&self, id: ParamId) -> Option<&Tensor> {
        self.store.params[id.0].mask()
    }

    /// Asks for the dense gradient of every masked weight (RigL/GraNet update steps need
    /// |∂L/∂w| at inactive positions); otherwise it may be computed only on the mask.
    pub fn set_dense_weight_grads(&mut self, dense: bool) {
        self.dense_weight_grads = dense;
    }

    /// The mask to restrict parameter `id`'s weight gradient to (None: dense gradient).
    pub fn grad_mask(&self, id: ParamId) -> Option<&Tensor> {
        if self.dense_weight_grads {
            None
        } else {
            self.mask(id)
        }
    }

    /// True when this pass asks for the dense gradient of every masked weight.
    pub fn dense_weight_grads(&self) -> bool {
        self.dense_weight_grads
    }

    /// The CSR structure of parameter `id`'s mask when its layer should run the sparse
    /// kernels ([`crate::backend::sparse_policy`]: by the mask's density and the device), else
    /// None (no mask, or the dense kernels are chosen). Kept by the parameter until its mask
    /// changes ([`crate::nn::Param::mask_csr`]); the density comes from the mask's active count,
    /// also kept, so a dense layer costs nothing per step either.
    pub fn sparse_weight(&mut self, id: ParamId) -> Result<Option<Arc<CsrPlan>>> {
        let p = &mut self.store.params[id.0];
        let Some(mask) = p.mask() else {
            return Ok(None);
        };
        let Some(max) = sparse_policy::max_sparse_density(&mask.device()) else {
            return Ok(None);
        };
        let rows = p.value.shape().first().copied().unwrap_or(1);
        p.mask_csr(rows, max)
    }

    /// The buffer `id`.
    pub fn buffer(&self, id: BufferId) -> &Tensor {
        &self.store.buffer(id).value
    }

    /// Mutable buffer `id` (running statistics).
    pub fn buffer_mut(&mut self, id: BufferId) -> &mut Tensor {
        &mut self.store.buffer_mut(id).value
    }

    /// Adds a layer record if tracing.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        param: ParamId,
        kind: LayerKind,
        in_shape: &[usize],
        out_shape: &[usize],
        stride_pad: (usize, usize),
        macs_per_example: u64,
    ) {
        if let Some(t) = &mut self.trace {
            let p = &self.store.params[param.0];
            t.push(LayerTrace {
                param,
                name: p.name.clone(),
                kind,
                weight_shape: p.value.shape().to_vec(),
                out_shape: out_shape[1..].to_vec(),
                in_shape: in_shape[1..].to_vec(),
                stride_pad,
                macs_per_example,
            });
        }
    }

    /// The trace recorded so far (empty if tracing was not enabled).
    pub fn take_trace(&mut self) -> Vec<LayerTrace> {
        self.trace.take().unwrap_or_default()
    }

    /// Ends the pass: the tape and, per parameter, its tape variable (None if unused).
    pub fn finish(self) -> (Tape, Vec<Option<Var>>) {
        (self.tape, self.vars)
    }

    /// Convenience: a constant input on the tape.
    pub fn input(&mut self, x: Tensor) -> Var {
        self.tape.constant(x)
    }
}

/// A network component.
pub trait Layer: Send + Sync {
    /// Runs the layer on `x`.
    fn forward(&self, f: &mut Forward, x: Var) -> Result<Var>;
}

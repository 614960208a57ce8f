//! A small reverse-mode autograd tape: forward ops append a node holding a backward closure;
//! [`Tape::backward`] runs the closures in reverse and accumulates gradients.
//!
//! Values that do not need a gradient (data, labels) are *constants*; parameters are
//! *variables*. A node's backward closure is told which inputs need a gradient, so work for the
//! others (e.g. the input gradient of the first conv) is skipped.

mod fused_ops;
mod gradcheck;
mod ops;
pub mod sparse_ops;

pub use gradcheck::{check_gradients, GradCheckReport};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// A handle to a value on the tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var(usize);

impl Var {
    /// The index of the value on its tape.
    pub fn index(self) -> usize {
        self.0
    }
}

/// The backward function of one node: given the output gradient and which inputs need a
/// gradient, returns one optional gradient per input (in input order).
pub type BackwardFn = Box<dyn FnOnce(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>> + Send>;

struct Node {
    inputs: Vec<Var>,
    output: Var,
    backward: BackwardFn,
}

/// The tape: every value produced in a forward pass and how to differentiate it.
#[derive(Default)]
pub struct Tape {
    values: Vec<Tensor>,
    requires_grad: Vec<bool>,
    nodes: Vec<Node>,
}

/// Gradients after [`Tape::backward`], indexed by [`Var`].
pub struct Grads {
    grads: Vec<Option<Tensor>>,
}

impl Grads {
    /// The gradient of `v`, if it needed one and the loss depends on it.
    pub fn get(&self, v: Var) -> Option<&Tensor> {
        self.grads.get(v.0).and_then(|g| g.as_ref())
    }
    /// Takes the gradient of `v` out of the store.
    pub fn take(&mut self, v: Var) -> Option<Tensor> {
        self.grads.get_mut(v.0).and_then(|g| g.take())
    }
}

impl Tape {
    /// An empty tape.
    pub fn new() -> Tape {
        Tape::default()
    }

    /// Records a value that needs no gradient (input data, labels, fixed tensors).
    pub fn constant(&mut self, t: Tensor) -> Var {
        self.values.push(t);
        self.requires_grad.push(false);
        Var(self.values.len() - 1)
    }

    /// Records a leaf whose gradient is wanted (a parameter).
    pub fn variable(&mut self, t: Tensor) -> Var {
        self.values.push(t);
        self.requires_grad.push(true);
        Var(self.values.len() - 1)
    }

    /// The value of `v`.
    pub fn value(&self, v: Var) -> &Tensor {
        &self.values[v.0]
    }

    /// True if a gradient flows to `v`.
    pub fn requires_grad(&self, v: Var) -> bool {
        self.requires_grad[v.0]
    }

    /// Number of values recorded.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Appends the result of an op. If no input needs a gradient, no node is kept.
    pub fn push(&mut self, value: Tensor, inputs: &[Var], backward: BackwardFn) -> Var {
        let rg = inputs.iter().any(|v| self.requires_grad[v.0]);
        self.values.push(value);
        self.requires_grad.push(rg);
        let output = Var(self.values.len() - 1);
        if rg {
            self.nodes.push(Node {
                inputs: inputs.to_vec(),
                output,
                backward,
            });
        }
        output
    }

    /// Runs the backward pass from a one-element `loss`, consuming the tape (activations are
    /// freed as their nodes are processed).
    pub fn backward(self, loss: Var) -> Result<Grads> {
        let Tape {
            values,
            requires_grad,
            nodes,
        } = self;
        let seed_t = &values[loss.0];
        if seed_t.numel() != 1 {
            return Err(Error::Shape(format!(
                "backward: loss must have one element, got shape {:?}",
                seed_t.shape()
            )));
        }
        let seed = seed_t.backend().upload(&[1.0], seed_t.shape())?;
        drop(values);
        let mut grads: Vec<Option<Tensor>> = vec![None; requires_grad.len()];
        grads[loss.0] = Some(seed);
        for node in nodes.into_iter().rev() {
            let Some(dy) = grads[node.output.0].take() else {
                continue;
            };
            let needs: Vec<bool> = node.inputs.iter().map(|v| requires_grad[v.0]).collect();
            let dxs = (node.backward)(&dy, &needs)?;
            drop(dy);
            for ((input, need), dx) in node.inputs.iter().zip(&needs).zip(dxs) {
                let (Some(dx), true) = (dx, *need) else {
                    continue;
                };
                accumulate(&mut grads[input.0], dx)?;
            }
        }
        Ok(Grads { grads })
    }
}

fn accumulate(slot: &mut Option<Tensor>, dx: Tensor) -> Result<()> {
    match slot {
        None => *slot = Some(dx),
        Some(acc) => {
            if acc.shape() != dx.shape() {
                return Err(Error::Shape(format!(
                    "gradient accumulation: {:?} vs {:?}",
                    acc.shape(),
                    dx.shape()
                )));
            }
            let backend = dx.backend();
            backend.axpby(1.0, &dx, 1.0, acc)?;
        }
    }
    Ok(())
}

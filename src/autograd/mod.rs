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

/// The backward function of a node with a one-element output whose gradient it needs only as
/// a host number (e.g. the loss): given that gradient and which inputs need a gradient,
/// returns one optional gradient per input. At the root of [`Tape::backward`] the gradient is
/// 1.0 on the host: nothing is uploaded as the seed or read back as the scale.
pub type ScaledBackwardFn = Box<dyn FnOnce(f32, &[bool]) -> Result<Vec<Option<Tensor>>> + Send>;

/// How a node differentiates.
enum Backward {
    /// From the output gradient on the device.
    Tensor(BackwardFn),
    /// From the (one-element) output gradient as a host number.
    Scaled(ScaledBackwardFn),
}

struct Node {
    inputs: Vec<Var>,
    output: Var,
    backward: Backward,
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
        self.push_node(value, inputs, Backward::Tensor(backward))
    }

    /// Appends the one-element result of an op whose backward takes its output gradient as a
    /// host number (see [`ScaledBackwardFn`]); errors if `value` has more than one element.
    pub fn push_scaled(
        &mut self,
        value: Tensor,
        inputs: &[Var],
        backward: ScaledBackwardFn,
    ) -> Result<Var> {
        if value.numel() != 1 {
            return Err(Error::Shape(format!(
                "push_scaled: the output must have one element, got shape {:?}",
                value.shape()
            )));
        }
        Ok(self.push_node(value, inputs, Backward::Scaled(backward)))
    }

    fn push_node(&mut self, value: Tensor, inputs: &[Var], backward: Backward) -> Var {
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
    /// freed as their nodes are processed). The seed gradient 1.0 is given to the loss's node
    /// as a host number when it takes one ([`Tape::push_scaled`]); otherwise it is uploaded.
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
        let (seed_shape, seed_device) = (seed_t.shape().to_vec(), seed_t.device());
        let seed = || Tensor::from_slice(&[1.0], &seed_shape, &seed_device);
        drop(values);
        let mut grads: Vec<Option<Tensor>> = vec![None; requires_grad.len()];
        let mut seeded = false;
        for node in nodes.into_iter().rev() {
            let needs: Vec<bool> = node.inputs.iter().map(|v| requires_grad[v.0]).collect();
            let dxs = if node.output == loss {
                // Nothing recorded after the loss feeds it: its gradient is the seed alone.
                seeded = true;
                match node.backward {
                    Backward::Scaled(f) => f(1.0, &needs)?,
                    Backward::Tensor(f) => f(&seed()?, &needs)?,
                }
            } else {
                let Some(dy) = grads[node.output.0].take() else {
                    continue;
                };
                match node.backward {
                    Backward::Scaled(f) => f(dy.scalar()?, &needs)?,
                    Backward::Tensor(f) => f(&dy, &needs)?,
                }
            };
            for ((input, need), dx) in node.inputs.iter().zip(&needs).zip(dxs) {
                let (Some(dx), true) = (dx, *need) else {
                    continue;
                };
                accumulate(&mut grads[input.0], dx)?;
            }
        }
        if !seeded {
            // The loss is a leaf (or its node was not kept): its own gradient is the seed.
            grads[loss.0] = Some(seed()?);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The cross entropy differentiates from a host scale: 1.0 at the root, the output
    /// gradient (2.0 below `loss + loss`) inside the tape; the gradients differ by that factor.
    #[test]
    fn scaled_backward_at_the_root_and_inside() {
        let logits = Tensor::from_vec(vec![0.5, -1.0, 2.0, 0.0, 0.25, -0.5], &[2, 3]).unwrap();
        let labels = Tensor::from_vec(vec![2.0, 0.0], &[2]).unwrap();
        let grad = |doubled: bool| {
            let mut t = Tape::new();
            let x = t.variable(logits.clone());
            let (loss, _) = t.cross_entropy(x, &labels).unwrap();
            let root = if doubled {
                t.add(loss, loss).unwrap()
            } else {
                loss
            };
            t.backward(root).unwrap().get(x).unwrap().to_vec().unwrap()
        };
        let (one, two) = (grad(false), grad(true));
        for (a, b) in one.iter().zip(&two) {
            assert!((2.0 * a - b).abs() <= 1e-6, "{a} vs {b}");
        }
        // Row 0: softmax([0.5, -1, 2]) − onehot(2), over n = 2.
        let z: f64 = [0.5f64, -1.0, 2.0].iter().map(|v| v.exp()).sum();
        let want = (2.0f64.exp() / z - 1.0) / 2.0;
        assert!((one[2] as f64 - want).abs() < 1e-6, "{} vs {want}", one[2]);
    }

    /// A loss with no node of its own (a leaf) gets the seed 1.0 as its gradient.
    #[test]
    fn a_leaf_loss_gets_the_seed() {
        let mut t = Tape::new();
        let v = t.variable(Tensor::from_vec(vec![3.0], &[1]).unwrap());
        let g = t.backward(v).unwrap();
        assert_eq!(g.get(v).unwrap().to_vec().unwrap(), [1.0]);
        let mut t = Tape::new();
        let two = t.variable(Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap());
        let e = t.push_scaled(
            Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap(),
            &[two],
            Box::new(|_, _| Ok(vec![None])),
        );
        assert!(matches!(e, Err(Error::Shape(_))));
    }
}

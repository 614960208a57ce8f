//! Parameter-free layers (ReLU, pooling, flatten) and [`Sequential`].

use super::forward::{Forward, Layer};
use crate::autograd::Var;
use crate::error::Result;

/// max(x, 0).
#[derive(Clone, Copy, Debug, Default)]
pub struct Relu;

impl Layer for Relu {
    fn forward(&self, f: &mut Forward, x: Var) -> Result<Var> {
        f.tape.relu(x)
    }
}

/// Max-pool with a square window.
#[derive(Clone, Copy, Debug)]
pub struct MaxPool {
    /// Window.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Padding (-inf).
    pub pad: usize,
}

impl Layer for MaxPool {
    fn forward(&self, f: &mut Forward, x: Var) -> Result<Var> {
        f.tape.maxpool2d(x, self.k, self.stride, self.pad)
    }
}

/// Average pool over the whole spatial extent, then flatten to [n, c].
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalAvgPool;

impl Layer for GlobalAvgPool {
    fn forward(&self, f: &mut Forward, x: Var) -> Result<Var> {
        f.tape.global_avgpool(x)
    }
}

/// Flattens everything after the batch dimension.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flatten;

impl Layer for Flatten {
    fn forward(&self, f: &mut Forward, x: Var) -> Result<Var> {
        f.tape.flatten(x)
    }
}

/// Layers run one after another.
#[derive(Default)]
pub struct Sequential {
    /// The layers.
    pub layers: Vec<Box<dyn Layer>>,
}

impl Sequential {
    /// An empty sequence.
    pub fn new() -> Sequential {
        Sequential::default()
    }
    /// Appends a layer.
    pub fn push(&mut self, l: impl Layer + 'static) {
        self.layers.push(Box::new(l));
    }
}

impl Layer for Sequential {
    fn forward(&self, f: &mut Forward, mut x: Var) -> Result<Var> {
        for l in &self.layers {
            x = l.forward(f, x)?;
        }
        Ok(x)
    }
}

//! [`Network`]: a model's parameters and layers, with the training-step and inference entry
//! points.

use super::forward::{Forward, Layer, LayerTrace};
use super::param::ParamStore;
use crate::device::Device;
use crate::error::Result;
use crate::tensor::Tensor;

/// A built model.
pub struct Network {
    /// Architecture name as given to the builder (e.g. `resnet18`).
    pub arch: String,
    /// Number of output classes.
    pub num_classes: usize,
    /// Input shape of one example [c, h, w].
    pub input_shape: [usize; 3],
    /// Parameters and buffers.
    pub store: ParamStore,
    /// The layers, from input to logits.
    pub body: Box<dyn Layer>,
}

/// The result of a forward + backward pass.
pub struct StepOutput {
    /// Mean cross-entropy of the batch, shape [1], on the network's device (training reads it
    /// back only when it displays or ends an epoch; [`StepOutput::loss_value`] reads it now).
    pub loss: Tensor,
    /// Log-probabilities [n, classes].
    pub logprobs: Tensor,
    /// Gradient of each parameter (same order as `store.params`; None if unused).
    pub grads: Vec<Option<Tensor>>,
}

impl StepOutput {
    /// The loss as a host number (a device-to-host copy on a GPU).
    pub fn loss_value(&self) -> Result<f32> {
        self.loss.scalar()
    }
}

impl Network {
    /// The device holding the parameters.
    pub fn device(&self) -> Device {
        self.store
            .params
            .first()
            .map(|p| p.value.device())
            .unwrap_or(Device::Cpu)
    }

    /// Moves the whole model (values, masks, momenta, buffers) to `device`.
    pub fn to_device(&mut self, device: &Device) -> Result<()> {
        self.store.to_device(device)
    }

    /// Training-mode forward and backward on a batch x [n,c,h,w] with labels [n].
    /// Batch-norm running statistics are updated.
    pub fn forward_backward(&mut self, x: &Tensor, labels: &Tensor) -> Result<StepOutput> {
        self.forward_backward_with(x, labels, false)
    }

    /// Like [`Network::forward_backward`]; with `dense_weight_grads` every masked weight gets
    /// its dense gradient (inactive positions included), as RigL's regrowth needs.
    pub fn forward_backward_with(
        &mut self,
        x: &Tensor,
        labels: &Tensor,
        dense_weight_grads: bool,
    ) -> Result<StepOutput> {
        let mut f = Forward::new(&mut self.store, true);
        f.set_dense_weight_grads(dense_weight_grads);
        let xv = f.input(x.clone());
        let logits = self.body.forward(&mut f, xv)?;
        let (loss, logprobs) = f.tape.cross_entropy(logits, labels)?;
        let loss_value = f.tape.value(loss).clone();
        let (tape, vars) = f.finish();
        let mut grads = tape.backward(loss)?;
        let grads = vars
            .into_iter()
            .map(|v| v.and_then(|v| grads.take(v)))
            .collect();
        Ok(StepOutput {
            loss: loss_value,
            logprobs,
            grads,
        })
    }

    /// Eval-mode logits [n, classes] (running statistics, nothing recorded for backward).
    pub fn logits(&mut self, x: &Tensor) -> Result<Tensor> {
        let mut f = Forward::new(&mut self.store, false);
        let xv = f.input(x.clone());
        let y = self.body.forward(&mut f, xv)?;
        Ok(f.tape.value(y).clone())
    }

    /// Eval-mode log-probabilities [n, classes].
    pub fn logprobs(&mut self, x: &Tensor) -> Result<Tensor> {
        let logits = self.logits(x)?;
        let n = logits.shape()[0];
        let zeros = logits.backend().zeros(&[n])?;
        Ok(logits.backend().cross_entropy_fwd(&logits, &zeros)?.1)
    }

    /// Runs one eval-mode example through the model and returns every conv and linear layer
    /// with its shapes and multiply-adds (for FLOP accounting and reports).
    pub fn trace(&mut self) -> Result<Vec<LayerTrace>> {
        let [c, h, w] = self.input_shape;
        let x = Tensor::zeros(&[1, c, h, w], &self.device())?;
        let mut f = Forward::new(&mut self.store, false);
        f.enable_trace();
        let xv = f.input(x);
        self.body.forward(&mut f, xv)?;
        Ok(f.take_trace())
    }
}

//! Batch norm of the superposed ticket (docs/computation.md, Sup-tickets).
//!
//! - **AV** (the paper's method, default): [`BnAverager`] averages the running mean and variance
//!   across tickets with the same rule as the weights (CIA and CAA: the running mean over
//!   tickets, Eq. 4 applied to the statistics; CIMA: the exponential moving average), keeping
//!   one extra copy of the buffers.
//! - **BU** (the reference code's `--update_bn`): [`bn_update`] recomputes them with one
//!   training-mode forward pass over the data, as a cumulative average of the batch statistics
//!   (momentum 1/n on the n-th batch, like PyTorch's `torch.optim.swa_utils.update_bn`).

use super::superpose::{deep_copy, Averaging};
use crate::data::loader::Loader;
use crate::error::{Error, Result};
use crate::nn::{BatchNorm, BufferId, Forward, Network, ParamStore};
use crate::tensor::Tensor;

/// How the superposed ticket gets its batch-norm statistics.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
pub enum BnStrategy {
    /// Average the tickets' running statistics (the paper's AV).
    #[serde(rename = "av", alias = "average")]
    #[value(name = "av", alias = "average")]
    Average,
    /// Recompute them with one forward pass over the training data (BU).
    #[serde(rename = "bu", alias = "update")]
    #[value(name = "bu", alias = "update")]
    Update,
}

impl BnStrategy {
    /// Parses `av` / `average` or `bu` / `update`.
    pub fn parse(s: &str) -> Result<BnStrategy> {
        match s.trim().to_ascii_lowercase().as_str() {
            "av" | "average" => Ok(BnStrategy::Average),
            "bu" | "update" => Ok(BnStrategy::Update),
            _ => Err(Error::Config(format!(
                "--bn: unknown strategy {s:?}; expected av (average) or bu (update)"
            ))),
        }
    }

    /// `av` or `bu`.
    pub fn name(self) -> &'static str {
        match self {
            BnStrategy::Average => "av",
            BnStrategy::Update => "bu",
        }
    }
}

/// AV: the superposed batch-norm statistics, one copy of the store's buffers averaged over the
/// tickets.
#[derive(Clone, Debug)]
pub struct BnAverager {
    averaging: Averaging,
    buffers: Vec<(BufferId, String, Tensor)>,
    tickets: usize,
}

impl BnAverager {
    /// Starts from ticket 0's running statistics (a copy of every buffer of `store`).
    pub fn new(averaging: Averaging, store: &ParamStore) -> Result<BnAverager> {
        Ok(BnAverager {
            averaging,
            buffers: store
                .buffers
                .iter()
                .enumerate()
                .map(|(i, b)| Ok((BufferId(i), b.name.clone(), deep_copy(&b.value)?)))
                .collect::<Result<_>>()?,
            tickets: 1,
        })
    }

    /// The averaged statistics as `sup.bn.<name>` tensors for a checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.buffers
            .iter()
            .map(|(_, n, t)| (format!("sup.bn.{n}"), t.clone()))
            .collect()
    }

    /// Restores what [`BnAverager::state_tensors`] saved, after `tickets` tickets.
    pub fn load_state(
        &mut self,
        tickets: usize,
        get: &mut dyn FnMut(&str) -> Result<Option<Tensor>>,
    ) -> Result<()> {
        for (_, n, t) in &mut self.buffers {
            let name = format!("sup.bn.{n}");
            *t = get(&name)?.ok_or_else(|| {
                Error::Config(format!(
                    "the checkpoint has no Sup-tickets state tensor {name}"
                ))
            })?;
        }
        self.tickets = tickets;
        Ok(())
    }

    /// Tickets averaged so far, ticket 0 included.
    pub fn tickets(&self) -> usize {
        self.tickets
    }

    /// Averages ticket `k` (1..=K, in order)'s statistics into the copy: CIA and CAA
    /// R_k = (k·R_{k−1} + B_k)/(k + 1), CIMA R_k = β·R_{k−1} + (1 − β)·B_k.
    pub fn add_ticket(&mut self, k: usize, store: &ParamStore) -> Result<()> {
        if k != self.tickets {
            return Err(Error::Config(format!(
                "Sup-tickets BN: ticket {k} averaged after {} ticket(s); expected ticket {}",
                self.tickets, self.tickets
            )));
        }
        self.check_store(store)?;
        let (a_w, b_s) = self.averaging.dense_coefficients(k);
        for (id, _, t) in &mut self.buffers {
            let b = &store.buffer(*id).value;
            b.backend().axpby(a_w, b, b_s, t)?;
        }
        self.tickets += 1;
        Ok(())
    }

    fn check_store(&self, store: &ParamStore) -> Result<()> {
        if store.buffers.len() != self.buffers.len() {
            return Err(Error::Shape(format!(
                "Sup-tickets BN: the store has {} buffers, ticket 0 had {}",
                store.buffers.len(),
                self.buffers.len()
            )));
        }
        for (id, name, t) in &self.buffers {
            let b = store.buffer(*id);
            if &b.name != name {
                return Err(Error::Shape(format!(
                    "Sup-tickets BN: buffer {} is {}, expected {name}",
                    id.0, b.name
                )));
            }
            b.value
                .expect_shape(t.shape(), &format!("Sup-tickets BN: {name}"))?;
        }
        Ok(())
    }

    /// The averaged statistics, in store order: (buffer, name, value).
    pub fn buffers(&self) -> &[(BufferId, String, Tensor)] {
        &self.buffers
    }

    /// Writes the averaged statistics into `store`'s buffers.
    pub fn apply_to(&self, store: &mut ParamStore) -> Result<()> {
        self.check_store(store)?;
        for (id, _, t) in &self.buffers {
            store.buffer_mut(*id).value = t.clone();
        }
        Ok(())
    }

    /// Bytes held: one copy of the buffers.
    pub fn extra_bytes(&self) -> usize {
        std::mem::size_of::<f32>()
            * self
                .buffers
                .iter()
                .map(|(_, _, t)| t.numel())
                .sum::<usize>()
    }
}

/// BU: resets every batch norm's running statistics (`*.running_mean` to 0, `*.running_var`
/// to 1) and recomputes them as the cumulative average over `batches` of the batch statistics
/// (mean, unbiased variance), by one training-mode forward pass per batch with momentum 1/n
/// on the n-th batch (PyTorch's `update_bn`). Only the buffers change: no gradient is
/// computed, no parameter is touched. The labels of each batch are ignored. Returns the number
/// of batches seen.
pub fn bn_update(
    net: &mut Network,
    batches: impl IntoIterator<Item = (Tensor, Tensor)>,
) -> Result<usize> {
    reset_running_stats(&mut net.store)?;
    let mut n = 0usize;
    for (x, _labels) in batches {
        n += 1;
        forward_train(net, x, 1.0 / n as f32)?;
    }
    Ok(n)
}

/// [`bn_update`] over one epoch (`epoch` picks the shuffle and augmentation) of `loader`,
/// typically the training loader.
pub fn bn_update_loader(net: &mut Network, loader: &Loader, epoch: usize) -> Result<usize> {
    reset_running_stats(&mut net.store)?;
    let device = net.device();
    let [c, h, w] = net.input_shape;
    let mut n = 0usize;
    for b in loader.epoch(epoch) {
        n += 1;
        let x = Tensor::from_slice(&b.x, &[b.n, c, h, w], &device)?;
        forward_train(net, x, 1.0 / n as f32)?;
    }
    Ok(n)
}

/// One training-mode forward pass (batch statistics, running statistics updated with
/// `momentum`), nothing kept for a backward pass.
fn forward_train(net: &mut Network, x: Tensor, momentum: f32) -> Result<()> {
    let Network { store, body, .. } = net;
    BatchNorm::with_momentum(momentum, || {
        let mut f = Forward::new(store, true);
        let xv = f.input(x);
        body.forward(&mut f, xv).map(|_| ())
    })
}

/// Sets every `*.running_mean` buffer to 0 and every `*.running_var` buffer to 1 (PyTorch's
/// `reset_running_stats`).
fn reset_running_stats(store: &mut ParamStore) -> Result<()> {
    for b in &mut store.buffers {
        let fill = if b.name.ends_with("running_mean") {
            0.0
        } else if b.name.ends_with("running_var") {
            1.0
        } else {
            continue;
        };
        b.value = Tensor::full(b.value.shape(), fill, &b.value.device())?;
    }
    Ok(())
}

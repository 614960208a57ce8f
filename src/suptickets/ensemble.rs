//! The deep-ensemble baseline of the paper's appendix E (docs/computation.md, Sup-tickets): the
//! same K + 1 tickets as Sup-tickets, each KEPT (this baseline does store M copies, unlike
//! [`super::Superposer`]), and their softmax outputs averaged at test time. Reported next to the
//! ultimate ticket with the same metrics ([`crate::train::metrics`]).

use crate::data::loader::Loader;
use crate::error::{Error, Result};
use crate::nn::{Network, ParamStore};
use crate::tensor::Tensor;
use crate::train::metrics::{Metrics, MetricsAccumulator};

/// What [`Ensemble::evaluate`] reports.
#[derive(Clone, Debug, PartialEq)]
pub struct EnsembleReport {
    /// Accuracy, NLL and ECE of the averaged softmax.
    pub ensemble: Metrics,
    /// The same metrics of each ticket alone, in capture order.
    pub members: Vec<Metrics>,
}

/// The tickets of a run, each a full copy of the model's parameters (momentum dropped), masks
/// and batch-norm statistics.
#[derive(Clone, Debug, Default)]
pub struct Ensemble {
    members: Vec<ParamStore>,
}

impl Ensemble {
    /// An empty ensemble.
    pub fn new() -> Ensemble {
        Ensemble::default()
    }

    /// Keeps ticket `store` (call at every capture: ticket 0, then 1..=K). The copy shares
    /// storage with the training store until training writes it (copy-on-write), so the
    /// ticket is unaffected by later steps.
    pub fn add_ticket(&mut self, store: &ParamStore) -> Result<()> {
        if let Some(first) = self.members.first() {
            check_same_model(first, store)?;
        }
        let mut s = store.clone();
        for p in &mut s.params {
            p.momentum = None;
        }
        self.members.push(s);
        Ok(())
    }

    /// Number of tickets kept.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when no ticket was kept.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The kept tickets.
    pub fn members(&self) -> &[ParamStore] {
        &self.members
    }

    /// Bytes of the kept tickets (parameters, masks, buffers): the M copies this baseline
    /// pays for.
    pub fn bytes(&self) -> usize {
        let f = std::mem::size_of::<f32>();
        self.members
            .iter()
            .map(|s| {
                let p: usize = s
                    .params
                    .iter()
                    .map(|p| p.value.numel() + p.mask().map_or(0, |m| m.numel()))
                    .sum();
                let b: usize = s.buffers.iter().map(|b| b.value.numel()).sum();
                f * (p + b)
            })
            .sum()
    }

    /// Evaluates the ensemble on `batches` of (images `[n, c, h, w]`, labels `[n]`): every
    /// ticket's eval-mode softmax, averaged (as log(mean softmax), computed stably in f64),
    /// scored by accuracy, NLL and ECE; each ticket alone too. `net` is the model the tickets
    /// came from; its own parameters are lent out per ticket and restored before returning,
    /// also on error.
    pub fn evaluate(
        &mut self,
        net: &mut Network,
        batches: impl IntoIterator<Item = (Tensor, Tensor)>,
    ) -> Result<EnsembleReport> {
        if self.members.is_empty() {
            return Err(Error::Config("deep ensemble: no ticket was kept".into()));
        }
        for m in &self.members {
            check_same_model(&net.store, m)?;
        }
        let k = net.num_classes;
        let mut acc = MetricsAccumulator::new();
        let mut member_acc = vec![MetricsAccumulator::new(); self.members.len()];
        for (x, labels) in batches {
            let y = labels.to_vec()?;
            let n = y.len();
            // Σ_m softmax, accumulated as a log-sum-exp per entry.
            let mut lps: Vec<Vec<f32>> = Vec::with_capacity(self.members.len());
            for (m, ma) in self.members.iter_mut().zip(&mut member_acc) {
                std::mem::swap(&mut net.store, m);
                let out = net.logprobs(&x).and_then(|t| t.to_vec());
                std::mem::swap(&mut net.store, m);
                let lp = out?;
                ma.add(&lp, k, &y)?;
                lps.push(lp);
            }
            acc.add(&average_softmax_log(&lps, n * k), k, &y)?;
        }
        Ok(EnsembleReport {
            ensemble: acc.finish(),
            members: member_acc.iter().map(|a| a.finish()).collect(),
        })
    }

    /// [`Ensemble::evaluate`] over every batch of `loader` (an evaluation loader).
    pub fn evaluate_loader(
        &mut self,
        net: &mut Network,
        loader: &Loader,
    ) -> Result<EnsembleReport> {
        let device = net.device();
        let [c, h, w] = net.input_shape;
        // Streams one batch at a time; creating a tensor can fail (device memory): stop there.
        let mut failed: Option<Error> = None;
        let batches = loader.epoch(0).map_while(|b| {
            let pair = b.and_then(|b| {
                let x = Tensor::from_slice(&b.x, &[b.n, c, h, w], &device)?;
                Ok((x, Tensor::from_vec(b.y, &[b.n])?))
            });
            match pair {
                Ok(p) => Some(p),
                Err(e) => {
                    failed = Some(e);
                    None
                }
            }
        });
        let report = self.evaluate(net, batches);
        match failed {
            Some(e) => Err(e),
            None => report,
        }
    }
}

/// log of the mean over members of exp(lp) per entry (log-sum-exp in f64, minus ln M).
fn average_softmax_log(lps: &[Vec<f32>], len: usize) -> Vec<f32> {
    let m = lps.len() as f64;
    (0..len)
        .map(|i| {
            let max = lps
                .iter()
                .map(|lp| lp[i] as f64)
                .fold(f64::NEG_INFINITY, f64::max);
            if max == f64::NEG_INFINITY {
                return f32::NEG_INFINITY;
            }
            let s: f64 = lps.iter().map(|lp| (lp[i] as f64 - max).exp()).sum();
            (max + s.ln() - m.ln()) as f32
        })
        .collect()
}

/// Errors unless `b` has the parameters and buffers (names and shapes) of `a`.
fn check_same_model(a: &ParamStore, b: &ParamStore) -> Result<()> {
    if a.params.len() != b.params.len() || a.buffers.len() != b.buffers.len() {
        return Err(Error::Shape(format!(
            "deep ensemble: a ticket has {} parameters and {} buffers, the model {} and {}",
            b.params.len(),
            b.buffers.len(),
            a.params.len(),
            a.buffers.len()
        )));
    }
    for (p, q) in a.params.iter().zip(&b.params) {
        if p.name != q.name || p.value.shape() != q.value.shape() {
            return Err(Error::Shape(format!(
                "deep ensemble: parameter {} {:?} does not match {} {:?}",
                q.name,
                q.value.shape(),
                p.name,
                p.value.shape()
            )));
        }
    }
    for (p, q) in a.buffers.iter().zip(&b.buffers) {
        if p.name != q.name || p.value.shape() != q.value.shape() {
            return Err(Error::Shape(format!(
                "deep ensemble: buffer {} does not match {}",
                q.name, p.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_softmax_by_hand() {
        // Two members, one row of two classes: p = (0.2, 0.8) and (0.6, 0.4) -> (0.4, 0.6).
        let a: Vec<f32> = [0.2f32, 0.8].iter().map(|p| p.ln()).collect();
        let b: Vec<f32> = [0.6f32, 0.4].iter().map(|p| p.ln()).collect();
        let lp = average_softmax_log(&[a, b], 2);
        assert!((lp[0].exp() - 0.4).abs() < 1e-6);
        assert!((lp[1].exp() - 0.6).abs() < 1e-6);
        // Far in the tail: no underflow to -inf.
        let lp = average_softmax_log(&[vec![-1000.0], vec![-1001.0]], 1);
        assert!(
            lp[0].is_finite()
                && (lp[0] as f64 + 1000.0 - ((1.0 + (-1.0f64).exp()) / 2.0).ln()).abs() < 1e-3
        );
    }
}

//! The epoch's training losses, kept where the network lives: each step copies its loss (a
//! one-element device tensor) into its slot of a device buffer, and the buffer comes back to
//! the host only when the progress display shows or the epoch ends. The host then sums the
//! losses in step order in f64, weighted by each step's rows, exactly as a per-step read would,
//! and a non-finite loss is found there: the error names its epoch and step, and when it was
//! found. A loss already on the host (the CPU backend) is checked at its own step: reading it
//! costs nothing.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// One step of the record: what the host knows about it without reading the device.
struct StepInfo {
    /// The global step counter of the step.
    step: u64,
    /// The learning rate of its SGD step.
    lr: f32,
    /// The rows (examples) this process trained on.
    rows: usize,
}

/// The losses of one epoch's steps on the device, with each step's host-side facts.
pub struct LossRecord {
    losses: Tensor,
    steps: Vec<StepInfo>,
    epoch: usize,
    /// Check each loss when it is pushed (true on the host, where reading it is free).
    eager: bool,
}

impl LossRecord {
    /// An empty record for `steps` steps of epoch `epoch` (0-based) on `device`; on the CPU
    /// each loss is checked at its own step.
    pub fn new(steps: usize, epoch: usize, device: &Device) -> Result<LossRecord> {
        Ok(LossRecord {
            losses: Tensor::zeros(&[steps.max(1)], device)?,
            steps: Vec::with_capacity(steps),
            epoch,
            eager: matches!(device, Device::Cpu),
        })
    }

    /// The same record checking losses only when [`sum`](LossRecord::sum) reads them (what a
    /// device record does), whatever its device.
    pub fn deferred(mut self) -> LossRecord {
        self.eager = false;
        self
    }

    /// Records the next step's loss (shape [1], on the record's device; not read back), its
    /// global step counter, learning rate and rows.
    pub fn push(&mut self, loss: &Tensor, step: u64, lr: f32, rows: usize) -> Result<()> {
        let at = self.steps.len();
        if at >= self.losses.numel() {
            return Err(Error::Config(format!(
                "loss record of epoch {}: more than {} steps",
                self.epoch + 1,
                self.losses.numel()
            )));
        }
        loss.backend().copy_into(loss, &mut self.losses, at)?;
        self.steps.push(StepInfo { step, lr, rows });
        match (self.eager, loss.as_cpu()) {
            (true, Ok(&[v])) if !v.is_finite() => Err(self.diverged(v, &self.steps[at])),
            _ => Ok(()),
        }
    }

    /// Steps recorded so far.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// True before the first step.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Reads the losses back (one copy) and returns their sum weighted by rows, in step order
    /// (f64); a non-finite loss is an error naming the first such step.
    pub fn sum(&self) -> Result<f64> {
        if self.steps.is_empty() {
            return Ok(0.0);
        }
        let losses = self.losses.to_vec()?;
        let mut sum = 0.0f64;
        for (loss, info) in losses.iter().zip(&self.steps) {
            if !loss.is_finite() {
                return Err(self.diverged(*loss, info));
            }
            sum += *loss as f64 * info.rows as f64;
        }
        Ok(sum)
    }

    /// Whether a non-finite loss has been recorded: the error that names it, else `other`
    /// (for an error of a later step, which the divergence may have caused).
    pub fn explain(&self, other: Error) -> Error {
        match self.sum() {
            Err(e @ Error::Diverged(_)) => e,
            _ => other,
        }
    }

    fn diverged(&self, loss: f32, info: &StepInfo) -> Error {
        let last = self.steps.last().map_or(info.step, |s| s.step);
        let when = if last == info.step {
            "found at that step".to_string()
        } else {
            format!(
                "the device's loss is read back when progress shows and at the epoch's end: \
                 found after step {last}"
            )
        };
        Error::Diverged(format!(
            "loss {loss} at epoch {} step {} (lr {}); try a lower --lr ({when}, nothing of this \
             epoch was written)",
            self.epoch + 1,
            info.step,
            info.lr
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(v: f32) -> Tensor {
        Tensor::from_vec(vec![v], &[1]).unwrap()
    }

    #[test]
    fn sums_in_step_order_like_a_per_step_read() {
        let vals = [2.25_f32, 1.5, 0.333_333_34];
        let rows = [64usize, 64, 7];
        let mut r = LossRecord::new(3, 0, &Device::Cpu).unwrap();
        assert_eq!(r.sum().unwrap(), 0.0);
        let mut want = 0.0f64;
        for (i, (&v, &n)) in vals.iter().zip(&rows).enumerate() {
            r.push(&scalar(v), 10 + i as u64, 0.1, n).unwrap();
            want += v as f64 * n as f64;
            assert_eq!(r.sum().unwrap().to_bits(), want.to_bits());
        }
        assert_eq!(r.len(), 3);
        let e = r.push(&scalar(1.0), 13, 0.1, 1).unwrap_err().to_string();
        assert!(e.contains("more than 3 steps"), "{e}");
    }

    #[test]
    fn a_non_finite_loss_names_its_epoch_and_step() {
        let mut r = LossRecord::new(4, 2, &Device::Cpu).unwrap().deferred();
        r.push(&scalar(1.0), 20, 0.5, 8).unwrap();
        r.push(&scalar(f32::NAN), 21, 0.25, 8).unwrap();
        r.push(&scalar(f32::INFINITY), 22, 0.25, 8).unwrap();
        let e = r.sum().unwrap_err();
        assert!(matches!(e, Error::Diverged(_)), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("loss NaN at epoch 3 step 21 (lr 0.25)") && msg.contains("after step 22"),
            "{msg}"
        );
        let other = r.explain(Error::Config("later".into())).to_string();
        assert!(other.contains("step 21"), "{other}");
        // On the host, the step itself reports it.
        let mut eager = LossRecord::new(4, 2, &Device::Cpu).unwrap();
        eager.push(&scalar(1.0), 20, 0.5, 8).unwrap();
        let e = eager.push(&scalar(f32::NAN), 21, 0.25, 8).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("loss NaN at epoch 3 step 21 (lr 0.25)")
                && msg.contains("found at that step"),
            "{msg}"
        );
        let ok = LossRecord::new(1, 0, &Device::Cpu).unwrap();
        assert!(ok
            .explain(Error::Config("x".into()))
            .to_string()
            .contains('x'));
    }
}

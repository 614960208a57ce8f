//! [`DataParallel`]: what the training loop does differently on several ranks, in one place —
//! the shard of each global batch, the forward/backward on it (with `--sync-bn` inside the
//! synchronised batch-norm scope), the gradient average, the batch-norm buffers broadcast, the
//! mask checksum after every topology change and the all-reduced epoch metrics. With one
//! process every step is the plain one.

use std::ops::Range;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::grads::{all_reduce_grads, broadcast_buffers, Traffic};
use super::shard::{rows, shard_range, shard_weight};
use super::sync_bn::with_sync_bn;
use super::{checksum, world, Collective};
use crate::data::Batch;
use crate::device::Device;
use crate::error::Result;
use crate::nn::{Network, StepOutput};
use crate::tensor::Tensor;

/// The data-parallel part of a report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataParallelReport {
    /// Number of processes.
    pub processes: usize,
    /// Transport (`mpi`, `nccl`).
    pub transport: String,
    /// Batch norm synchronised across processes.
    pub sync_bn: bool,
    /// Gradient bytes all-reduced (this invocation).
    pub traffic: Traffic,
    /// Times the ranks compared their mask checksums and found them equal (this invocation;
    /// a disagreement ends the run).
    pub mask_checks: u64,
}

impl DataParallelReport {
    /// The report.md section.
    pub fn to_markdown(&self) -> String {
        let t = &self.traffic;
        format!(
            "## Data parallelism\n\n{} processes over {}{}. Gradient all-reduce per step \
             (f32 payload): {} B on {} sparse step(s) (active entries of masked gradients), {} B \
             on {} dense step(s); the full gradient is {} B. Masks compared across processes {} \
             time(s), always equal.\n\n",
            self.processes,
            self.transport,
            if self.sync_bn {
                ", synchronised batch norm"
            } else {
                ""
            },
            t.bytes_per_sparse_step(),
            t.sparse_steps,
            t.bytes_per_dense_step(),
            t.dense_steps,
            t.full_gradient_bytes,
            self.mask_checks
        )
    }
}

/// The data-parallel state of a run (see the module docs).
pub struct DataParallel {
    coll: Arc<dyn Collective>,
    sync_bn: bool,
    /// Gradient bytes all-reduced so far.
    pub traffic: Traffic,
    mask_changes: Option<u64>,
    mask_checks: u64,
}

/// One rank's step: its rows of the global batch and the forward/backward output on them,
/// with the gradients already averaged over the ranks.
pub struct ShardStep {
    /// The rows of the global batch this rank trained on.
    pub rows: Range<usize>,
    /// Loss (local mean) and log-probabilities of the rank's rows; the averaged gradients.
    pub out: StepOutput,
    /// The rank's labels, on the device.
    pub labels: Tensor,
}

impl DataParallel {
    /// The state over the process's [`world`]; `sync_bn` synchronises batch norm.
    pub fn new(sync_bn: bool) -> DataParallel {
        DataParallel::over(world(), sync_bn)
    }

    /// The state over collective `coll`.
    pub fn over(coll: Arc<dyn Collective>, sync_bn: bool) -> DataParallel {
        DataParallel {
            coll,
            sync_bn,
            traffic: Traffic::default(),
            mask_changes: None,
            mask_checks: 0,
        }
    }

    /// The collective.
    pub fn collective(&self) -> &dyn Collective {
        self.coll.as_ref()
    }

    /// Number of processes.
    pub fn size(&self) -> usize {
        self.coll.size()
    }

    /// True on rank 0 (which evaluates and writes).
    pub fn is_writer(&self) -> bool {
        self.coll.rank() == 0
    }

    /// The report part (None with one process).
    pub fn report(&self) -> Option<DataParallelReport> {
        (self.size() > 1).then(|| DataParallelReport {
            processes: self.size(),
            transport: self.coll.name().into(),
            sync_bn: self.sync_bn,
            traffic: self.traffic,
            mask_checks: self.mask_checks,
        })
    }

    /// Forward and backward on this rank's rows of the global batch `b` (images `[c, h, w]`),
    /// then the gradient average (whole gradients when `dense_grad`).
    pub fn step(
        &mut self,
        net: &mut Network,
        b: &Batch,
        device: &Device,
        dense_grad: bool,
    ) -> Result<ShardStep> {
        let [c, h, w] = net.input_shape;
        let (size, rank) = (self.coll.size(), self.coll.rank());
        let r = shard_range(b.n, rank, size);
        let n = r.len();
        let x = Tensor::from_slice(rows(&b.x, c * h * w, r.clone()), &[n, c, h, w], device)?;
        let y = Tensor::from_slice(rows(&b.y, 1, r.clone()), &[n], device)?;
        let sync = (self.sync_bn && size > 1).then(|| Arc::clone(&self.coll));
        let mut out = with_sync_bn(sync, || net.forward_backward_with(&x, &y, dense_grad))?;
        if size > 1 {
            all_reduce_grads(
                self.coll.as_ref(),
                &net.store,
                &mut out.grads,
                dense_grad,
                shard_weight(n, b.n),
                &mut self.traffic,
            )?;
        }
        Ok(ShardStep {
            rows: r,
            out,
            labels: y,
        })
    }

    /// After the optimiser step and the method's mask update of step `step`: rank 0's
    /// batch-norm buffers everywhere (without `--sync-bn`), and the masks compared across ranks
    /// whenever the method's count of mask changes moved.
    pub fn after_step(&mut self, net: &mut Network, mask_changes: u64, step: u64) -> Result<()> {
        if self.size() == 1 {
            return Ok(());
        }
        if !self.sync_bn {
            broadcast_buffers(self.coll.as_ref(), &mut net.store)?;
        }
        if self.mask_changes != Some(mask_changes) {
            self.mask_changes = Some(mask_changes);
            checksum::check_masks(
                self.coll.as_ref(),
                &net.store,
                &format!("after step {step}"),
            )?;
            self.mask_checks += 1;
        }
        Ok(())
    }

    /// Masks and parameters compared across ranks (at the start and after every epoch).
    pub fn check(&mut self, net: &Network, when: &str) -> Result<()> {
        if self.size() == 1 {
            return Ok(());
        }
        checksum::check_masks(self.coll.as_ref(), &net.store, when)?;
        self.mask_checks += 1;
        checksum::check_params(self.coll.as_ref(), &net.store, when)
    }

    /// Sums over the ranks of an epoch's (loss sum, correct, examples).
    pub fn epoch_totals(&self, loss_sum: f64, correct: usize, seen: usize) -> Result<[f64; 3]> {
        let mut v = [loss_sum, correct as f64, seen as f64];
        self.coll.all_reduce_f64(&mut v)?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::local::LocalGroup;
    use crate::models::{build, ModelConfig};
    use crate::rng::Rng;

    fn net() -> Network {
        build(&ModelConfig {
            name: "resnet18".into(),
            num_classes: 10,
            in_channels: 1,
            image_size: Some(32),
            width: 0.125,
            seed: 3,
        })
        .unwrap()
    }

    /// Two thread ranks at 4 rows each with synchronised batch norm: the forward pass is one
    /// process's at 8 rows, and so are the averaged gradients (up to rounding; see
    /// notes/dist.md on how far rounding carries in deep batch-norm networks).
    #[test]
    fn two_ranks_with_sync_bn_match_one_process() {
        let n = 8;
        let mut r = Rng::new(11);
        let b = Batch {
            x: (0..n * 32 * 32).map(|_| r.normal()).collect(),
            y: (0..n).map(|i| (i % 10) as f32).collect(),
            n,
            index: 0,
            indices: (0..n).collect(),
        };
        let mut one = net();
        let mut dp = DataParallel::over(Arc::new(crate::dist::Single), true);
        let want = dp.step(&mut one, &b, &Device::Cpu, false).unwrap().out;
        let got = LocalGroup::new(2).run(|c| {
            let mut net = net();
            let mut dp = DataParallel::over(c, true);
            let s = dp.step(&mut net, &b, &Device::Cpu, false).unwrap();
            (s.out.grads, s.out.logprobs.to_vec().unwrap(), s.rows)
        });
        let lp = want.logprobs.to_vec().unwrap();
        for (_, l, rows) in &got {
            let w = &lp[rows.start * 10..rows.end * 10];
            let d = w
                .iter()
                .zip(l)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(d < 1e-4, "log-probabilities of rows {rows:?} differ by {d}");
        }
        let got: Vec<_> = got.into_iter().map(|g| g.0).collect();
        for (i, w) in want.grads.iter().enumerate() {
            let w = w.as_ref().unwrap().to_vec().unwrap();
            let scale = w.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
            for g in &got {
                let g = g[i].as_ref().unwrap().to_vec().unwrap();
                let d = w
                    .iter()
                    .zip(&g)
                    .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(
                    d / scale < 1e-4,
                    "{}: {d} (scale {scale})",
                    one.store.params[i].name
                );
            }
        }
    }
}

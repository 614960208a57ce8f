//! Gradient averaging across ranks, aware of the masks: on an ordinary step of a sparse method
//! only the active entries of each masked weight's gradient travel (every rank holds the same
//! masks, so the positions need not be sent, and SGD masks the update anyway); on the steps
//! whose plan asks for the dense gradient (RigL and GraNet updates, Sup-tickets cycle starts)
//! the whole gradient travels. [`Traffic`] counts the bytes.

use serde::{Deserialize, Serialize};

use super::Collective;
use crate::error::{Error, Result};
use crate::nn::ParamStore;
use crate::tensor::Tensor;

/// Bytes all-reduced for gradients, by kind of step (f32 payload per rank, as sent to the
/// all-reduce; what the transport moves on the wire depends on its algorithm).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    /// Steps that sent only the active entries of masked gradients.
    pub sparse_steps: u64,
    /// Steps that sent every gradient entry.
    pub dense_steps: u64,
    /// Bytes of all sparse steps.
    pub sparse_bytes: u64,
    /// Bytes of all dense steps.
    pub dense_bytes: u64,
    /// Bytes of one step's full gradient (every parameter, dense).
    pub full_gradient_bytes: u64,
}

impl Traffic {
    /// Mean bytes of a sparse step (0 when there was none).
    pub fn bytes_per_sparse_step(&self) -> u64 {
        self.sparse_bytes / self.sparse_steps.max(1)
    }

    /// Mean bytes of a dense step (0 when there was none).
    pub fn bytes_per_dense_step(&self) -> u64 {
        self.dense_bytes / self.dense_steps.max(1)
    }

    fn record(&mut self, dense: bool, bytes: u64, full: u64) {
        self.full_gradient_bytes = full;
        if dense {
            self.dense_steps += 1;
            self.dense_bytes += bytes;
        } else {
            self.sparse_steps += 1;
            self.sparse_bytes += bytes;
        }
    }
}

/// Whether parameter `i`'s gradient travels packed (its active entries only).
fn packed(store: &ParamStore, i: usize, dense: bool) -> bool {
    !dense && store.params[i].mask().is_some()
}

/// The all-reduce buffer of a step: for every parameter that has a gradient, in order, its
/// values at the mask's nonzero positions (masked weights, unless `dense`) or all its values,
/// each multiplied by `weight`.
pub fn pack(
    store: &ParamStore,
    grads: &[Option<Tensor>],
    dense: bool,
    weight: f32,
) -> Result<Vec<f32>> {
    let mut buf = Vec::new();
    for (i, g) in grads.iter().enumerate() {
        let Some(g) = g else { continue };
        let gv = g.to_vec()?;
        if packed(store, i, dense) {
            let mask = store.params[i].mask().expect("packed").to_vec()?;
            if mask.len() != gv.len() {
                return Err(Error::Shape(format!(
                    "gradient all-reduce: {} has {} gradient entries and a mask of {}",
                    store.params[i].name,
                    gv.len(),
                    mask.len()
                )));
            }
            buf.extend(
                gv.iter()
                    .zip(&mask)
                    .filter(|(_, &m)| m != 0.0)
                    .map(|(&v, _)| v * weight),
            );
        } else {
            buf.extend(gv.iter().map(|&v| v * weight));
        }
    }
    Ok(buf)
}

/// The inverse of [`pack`] (without the weight): replaces every gradient by its values in `buf`
/// (zero at the inactive positions of a packed gradient).
pub fn unpack(
    store: &ParamStore,
    grads: &mut [Option<Tensor>],
    dense: bool,
    buf: &[f32],
) -> Result<()> {
    let mut at = 0;
    let short = || Error::Shape("gradient all-reduce: the reduced buffer is too short".into());
    for (i, g) in grads.iter_mut().enumerate() {
        let Some(g) = g else { continue };
        let n = g.numel();
        let vals = if packed(store, i, dense) {
            let mask = store.params[i].mask().expect("packed").to_vec()?;
            let mut v = vec![0.0f32; n];
            for (o, &m) in v.iter_mut().zip(&mask) {
                if m != 0.0 {
                    *o = *buf.get(at).ok_or_else(short)?;
                    at += 1;
                }
            }
            v
        } else {
            let v = buf.get(at..at + n).ok_or_else(short)?.to_vec();
            at += n;
            v
        };
        *g = Tensor::from_slice(&vals, g.shape(), &g.device())?;
    }
    if at != buf.len() {
        return Err(Error::Shape(format!(
            "gradient all-reduce: {} values reduced, {at} used",
            buf.len()
        )));
    }
    Ok(())
}

/// Replaces every rank's gradients by Σ_r weight_r · grads_r (`weight` is this rank's rows over
/// the global batch's, so the result is the gradient of the global batch's mean loss), packing
/// masked gradients unless `dense`. Gradients on a GPU are reduced in place on the device, whole.
pub fn all_reduce_grads(
    c: &dyn Collective,
    store: &ParamStore,
    grads: &mut [Option<Tensor>],
    dense: bool,
    weight: f32,
    traffic: &mut Traffic,
) -> Result<()> {
    let full: u64 = grads.iter().flatten().map(|g| 4 * g.numel() as u64).sum();
    let on_host = grads
        .iter()
        .flatten()
        .all(|g| matches!(g.device(), crate::device::Device::Cpu));
    if !on_host {
        for g in grads.iter_mut().flatten() {
            let dev = g.device();
            let x = g.clone();
            dev.backend().axpby(0.0, &x, weight, g)?;
            c.all_reduce_tensor(g)?;
        }
        traffic.record(true, full, full);
        return Ok(());
    }
    let mut buf = pack(store, grads, dense, weight)?;
    c.all_reduce_f32(&mut buf)?;
    unpack(store, grads, dense, &buf)?;
    traffic.record(dense, 4 * buf.len() as u64, full);
    Ok(())
}

/// Copies rank 0's batch-norm running statistics to every rank (as PyTorch's DDP does with
/// `broadcast_buffers=True`), so that evaluation, checkpoints and tickets see rank 0's.
pub fn broadcast_buffers(c: &dyn Collective, store: &mut ParamStore) -> Result<()> {
    if c.size() == 1 {
        return Ok(());
    }
    let mut buf: Vec<f32> = Vec::new();
    for b in &store.buffers {
        buf.extend(b.value.to_vec()?);
    }
    c.broadcast_f32(&mut buf)?;
    let mut at = 0;
    for b in &mut store.buffers {
        let n = b.value.numel();
        b.value = Tensor::from_slice(&buf[at..at + n], b.value.shape(), &b.value.device())?;
        at += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::Single;
    use crate::nn::ParamRole;

    fn store() -> ParamStore {
        let mut s = ParamStore::default();
        let w = s.add_param(
            "fc.weight",
            Tensor::from_vec(vec![1.0; 6], &[2, 3]).unwrap(),
            ParamRole::Weight,
        );
        s.add_param(
            "fc.bias",
            Tensor::from_vec(vec![0.0; 2], &[2]).unwrap(),
            ParamRole::Bias,
        );
        s.params[w.0].set_mask(Some(
            Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0], &[2, 3]).unwrap(),
        ));
        s
    }

    fn grads() -> Vec<Option<Tensor>> {
        vec![
            Some(Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap()),
            Some(Tensor::from_vec(vec![7.0, 8.0], &[2]).unwrap()),
        ]
    }

    #[test]
    fn pack_takes_active_entries_unless_dense() {
        let s = store();
        let g = grads();
        assert_eq!(
            pack(&s, &g, false, 0.5).unwrap(),
            vec![0.5, 2.0, 2.5, 3.5, 4.0]
        );
        assert_eq!(pack(&s, &g, true, 1.0).unwrap().len(), 8);
        // A parameter without a gradient takes no room.
        let g2 = vec![None, g[1].clone()];
        assert_eq!(pack(&s, &g2, false, 1.0).unwrap(), vec![7.0, 8.0]);
    }

    #[test]
    fn unpack_inverts_pack_on_the_mask() {
        let s = store();
        let mut g = grads();
        let buf = pack(&s, &g, false, 1.0).unwrap();
        unpack(&s, &mut g, false, &buf).unwrap();
        assert_eq!(
            g[0].as_ref().unwrap().to_vec().unwrap(),
            vec![1.0, 0.0, 0.0, 4.0, 5.0, 0.0]
        );
        assert_eq!(g[1].as_ref().unwrap().to_vec().unwrap(), vec![7.0, 8.0]);
        assert!(unpack(&s, &mut g, false, &buf[..4]).is_err());
        assert!(unpack(&s, &mut g, false, &[0.0; 6]).is_err());
    }

    #[test]
    fn traffic_counts_sparse_and_dense_steps() {
        let s = store();
        let mut t = Traffic::default();
        let mut g = grads();
        all_reduce_grads(&Single, &s, &mut g, false, 1.0, &mut t).unwrap();
        all_reduce_grads(&Single, &s, &mut g, false, 1.0, &mut t).unwrap();
        let mut g = grads();
        all_reduce_grads(&Single, &s, &mut g, true, 0.25, &mut t).unwrap();
        assert_eq!(g[1].as_ref().unwrap().to_vec().unwrap(), vec![1.75, 2.0]);
        assert_eq!((t.sparse_steps, t.dense_steps), (2, 1));
        assert_eq!(t.bytes_per_sparse_step(), 4 * 5);
        assert_eq!(t.bytes_per_dense_step(), 4 * 8);
        assert_eq!(t.full_gradient_bytes, 4 * 8);
    }
}

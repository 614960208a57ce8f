//! [`Nccl`]: the [`Collective`] of data-parallel training on GPUs, one process per GPU: NCCL
//! (cudarc's bindings, loaded at run time) all-reduces and broadcasts device tensors in place on
//! the backend's stream; MPI starts the processes, carries the NCCL id from rank 0 and does the
//! small host-side reductions (metrics, statistics, checksums).

use std::sync::{Arc, Mutex};

use cudarc::nccl::safe::{Comm, Id, ReduceOp};

use super::mpi::Mpi;
use super::Collective;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::{Storage, Tensor};

/// NCCL over this rank's GPU, with MPI beside it.
pub struct Nccl {
    comm: Mutex<Comm>,
    mpi: Mpi,
}

// SAFETY: the NCCL communicator is only used under `comm`'s lock; its stream is the backend's,
// whose kernels are enqueued from any thread already.
unsafe impl Send for Nccl {}
// SAFETY: as above.
unsafe impl Sync for Nccl {}

fn nccl_err(what: &str) -> impl Fn(cudarc::nccl::result::NcclError) -> Error + '_ {
    move |e| Error::Device(format!("NCCL {what}: {e:?}"))
}

impl Nccl {
    /// The communicator of every rank's GPU `cuda:<local rank>`: rank 0 makes the NCCL id, MPI
    /// broadcasts it, every rank joins.
    pub fn new(mpi: Mpi) -> Result<Nccl> {
        let local = super::launched().map_or(0, |l| l.2);
        let Device::Cuda(be) = Device::parse(&format!("cuda:{local}"))? else {
            return Err(Error::Device(format!("cuda:{local} is not a CUDA device")));
        };
        let mut bytes = [0f32; 128];
        if mpi.rank() == 0 {
            let id = Id::new().map_err(nccl_err("id"))?;
            for (b, &c) in bytes.iter_mut().zip(id.internal()) {
                *b = c as u8 as f32;
            }
        }
        mpi.broadcast_f32(&mut bytes)?;
        let mut internal = [0 as core::ffi::c_char; 128];
        for (c, &b) in internal.iter_mut().zip(&bytes) {
            *c = b as u8 as core::ffi::c_char;
        }
        let comm = Comm::from_rank(
            Arc::clone(be.stream()),
            mpi.rank(),
            mpi.size(),
            Id::uninit(internal),
        )
        .map_err(nccl_err("init"))?;
        Ok(Nccl {
            comm: Mutex::new(comm),
            mpi,
        })
    }

    fn with<R>(&self, f: impl FnOnce(&Comm) -> R) -> Result<R> {
        let c = self
            .comm
            .lock()
            .map_err(|_| Error::Device("NCCL: communicator lock poisoned".into()))?;
        Ok(f(&c))
    }
}

impl Collective for Nccl {
    fn rank(&self) -> usize {
        self.mpi.rank()
    }
    fn size(&self) -> usize {
        self.mpi.size()
    }
    fn name(&self) -> &'static str {
        "nccl"
    }
    fn all_reduce_f32(&self, buf: &mut [f32]) -> Result<()> {
        self.mpi.all_reduce_f32(buf)
    }
    fn all_reduce_f64(&self, buf: &mut [f64]) -> Result<()> {
        self.mpi.all_reduce_f64(buf)
    }
    fn broadcast_f32(&self, buf: &mut [f32]) -> Result<()> {
        self.mpi.broadcast_f32(buf)
    }
    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>> {
        self.mpi.all_gather_u64(value)
    }
    fn barrier(&self) -> Result<()> {
        self.mpi.barrier()
    }
    fn abort(&self, code: i32) {
        self.mpi.abort(code)
    }
    fn all_reduce_tensor(&self, t: &mut Tensor) -> Result<()> {
        match t.storage_mut() {
            Storage::Cuda(s) => self
                .with(|c| c.all_reduce_in_place(&mut s.buf.view_mut(), &ReduceOp::Sum))?
                .map(|_| ())
                .map_err(nccl_err("all-reduce")),
            Storage::Cpu(v) => self.mpi.all_reduce_f32(v),
        }
    }
    fn broadcast_tensor(&self, t: &mut Tensor) -> Result<()> {
        match t.storage_mut() {
            Storage::Cuda(s) => self
                .with(|c| c.broadcast_in_place(&mut s.buf.view_mut(), 0))?
                .map(|_| ())
                .map_err(nccl_err("broadcast")),
            Storage::Cpu(v) => self.mpi.broadcast_f32(v),
        }
    }
}

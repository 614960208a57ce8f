//! Data-parallel training: the small collective interface the training loop uses
//! ([`Collective`]), the process-wide world it talks to ([`world`]), and what data parallelism
//! adds to a step — sharding each global batch ([`shard`]), averaging gradients with sparse-aware
//! packing ([`grads`]), synchronised batch norm ([`sync_bn`]) and the mask checksum that fails a
//! run whose ranks disagree ([`checksum`]).
//!
//! The implementations: [`Single`] (one process; the default, no dependency), `mpi::Mpi` (cargo
//! feature `mpi`, for CPU processes and nodes) and `nccl::Nccl` (cargo feature `nccl`, one
//! process per GPU; MPI starts the processes and carries the NCCL id). A binary started by
//! `mpirun` picks its implementation in [`init`].

pub mod checksum;
pub mod data_parallel;
pub mod grads;
pub mod local;
#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(feature = "nccl")]
pub mod nccl;
pub mod shard;
pub mod sync_bn;

use std::sync::{Arc, RwLock};

pub use data_parallel::{DataParallel, DataParallelReport};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The collective operations of data-parallel training. Every rank calls the same operations in
/// the same order with buffers of the same lengths (the usual collective contract); a call made
/// by some ranks only blocks forever, which is why errors end the whole job ([`Collective::abort`]).
pub trait Collective: Send + Sync {
    /// This process's rank, in `0..size()`.
    fn rank(&self) -> usize;
    /// Number of processes.
    fn size(&self) -> usize;
    /// Short name of the transport (`single`, `mpi`, `nccl`).
    fn name(&self) -> &'static str;
    /// Element-wise sum over the ranks, in place, of host f32 values.
    fn all_reduce_f32(&self, buf: &mut [f32]) -> Result<()>;
    /// Element-wise sum over the ranks, in place, of host f64 values (metrics, statistics).
    fn all_reduce_f64(&self, buf: &mut [f64]) -> Result<()>;
    /// Copies rank 0's values into `buf` on every rank.
    fn broadcast_f32(&self, buf: &mut [f32]) -> Result<()>;
    /// Every rank's `value`, in rank order.
    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>>;
    /// Waits for every rank.
    fn barrier(&self) -> Result<()>;
    /// Ends every process of the job with exit code `code` (after an error on one rank, so that
    /// the others do not wait forever in a collective).
    fn abort(&self, code: i32);

    /// Element-wise sum over the ranks of a tensor, in place, wherever it lives. The default
    /// goes through host memory; a GPU transport reduces device buffers directly.
    fn all_reduce_tensor(&self, t: &mut Tensor) -> Result<()> {
        let mut v = t.to_vec()?;
        self.all_reduce_f32(&mut v)?;
        *t = Tensor::from_slice(&v, t.shape(), &t.device())?;
        Ok(())
    }

    /// Copies rank 0's tensor into `t` on every rank (same shape everywhere).
    fn broadcast_tensor(&self, t: &mut Tensor) -> Result<()> {
        let mut v = t.to_vec()?;
        self.broadcast_f32(&mut v)?;
        *t = Tensor::from_slice(&v, t.shape(), &t.device())?;
        Ok(())
    }
}

/// One process: every collective is the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn name(&self) -> &'static str {
        "single"
    }
    fn all_reduce_f32(&self, _buf: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn all_reduce_f64(&self, _buf: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn broadcast_f32(&self, _buf: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>> {
        Ok(vec![value])
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
    fn abort(&self, code: i32) {
        std::process::exit(code)
    }
    fn all_reduce_tensor(&self, _t: &mut Tensor) -> Result<()> {
        Ok(())
    }
    fn broadcast_tensor(&self, _t: &mut Tensor) -> Result<()> {
        Ok(())
    }
}

static WORLD: RwLock<Option<Arc<dyn Collective>>> = RwLock::new(None);

/// The process's world: the installed collective, or [`Single`].
pub fn world() -> Arc<dyn Collective> {
    WORLD
        .read()
        .ok()
        .and_then(|w| w.clone())
        .unwrap_or_else(|| Arc::new(Single))
}

/// True on the rank that writes checkpoints, logs, reports and progress (rank 0).
pub fn is_writer() -> bool {
    world().rank() == 0
}

/// Keeps a collective installed as the [`world`]; dropping it uninstalls it (and, with the last
/// reference, shuts the transport down, e.g. `MPI_Finalize`).
pub struct WorldGuard {
    _private: (),
}

impl WorldGuard {
    /// The installed world.
    pub fn world(&self) -> Arc<dyn Collective> {
        world()
    }
}

impl Drop for WorldGuard {
    fn drop(&mut self) {
        if let Ok(mut w) = WORLD.write() {
            w.take();
        }
    }
}

/// Installs `c` as the process's world until the guard is dropped.
pub fn install(c: Arc<dyn Collective>) -> WorldGuard {
    if let Ok(mut w) = WORLD.write() {
        *w = Some(c);
    }
    WorldGuard { _private: () }
}

/// The (rank, size, local rank) a launcher (`mpirun` of Open MPI, or a PMI launcher such as
/// MPICH's or Slurm's) gave this process, if any.
pub fn launched() -> Option<(usize, usize, usize)> {
    let get = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    let pairs = [
        (
            "OMPI_COMM_WORLD_RANK",
            "OMPI_COMM_WORLD_SIZE",
            "OMPI_COMM_WORLD_LOCAL_RANK",
        ),
        ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
        ("PMIX_RANK", "PMIX_SIZE", "PMIX_LOCAL_RANK"),
    ];
    pairs.iter().find_map(|(r, s, l)| {
        let (rank, size) = (get(r)?, get(s)?);
        Some((rank, size, get(l).unwrap_or(rank)))
    })
}

/// Starts the transport when the process was launched by `mpirun` with more than one process:
/// MPI for a CPU `device`, NCCL for `cuda`. Returns None (one process, [`Single`]) otherwise.
/// Errors when launched as several processes by a binary built without the needed feature —
/// they would otherwise train N independent copies into the same directory.
pub fn init(device: &str) -> Result<Option<WorldGuard>> {
    let Some((_, size, _)) = launched() else {
        return Ok(None);
    };
    if size <= 1 {
        return Ok(None);
    }
    let gpu = device.starts_with("cuda");
    start_transport(gpu, size).map(|c| Some(install(c)))
}

#[cfg(feature = "mpi")]
fn start_transport(gpu: bool, _size: usize) -> Result<Arc<dyn Collective>> {
    let mpi = mpi::Mpi::init()?;
    if gpu {
        #[cfg(feature = "nccl")]
        {
            return Ok(Arc::new(nccl::Nccl::new(mpi)?));
        }
        #[cfg(not(feature = "nccl"))]
        {
            mpi.abort_quietly();
            return Err(Error::Config(
                "--device cuda with several processes needs NCCL: build with \
                 `cargo build --release --features nccl`"
                    .into(),
            ));
        }
    }
    Ok(Arc::new(mpi))
}

#[cfg(not(feature = "mpi"))]
fn start_transport(gpu: bool, size: usize) -> Result<Arc<dyn Collective>> {
    Err(Error::Config(format!(
        "launched as {size} processes (mpirun), but this binary was built without data-parallel \
         support: build it with `cargo build --release --features {}`",
        if gpu { "nccl" } else { "mpi" }
    )))
}

/// The device of this rank: with several processes, plain `cuda` becomes `cuda:<local rank>`
/// (one GPU per process); anything else is kept.
pub fn rank_device(device: &str) -> String {
    match launched() {
        Some((_, size, local)) if size > 1 && device == "cuda" => format!("cuda:{local}"),
        _ => device.to_string(),
    }
}

/// The error of ranks that disagree on `what` (values gathered from every rank).
pub fn check_agree(what: &str, values: &[u64]) -> Result<()> {
    if values.windows(2).all(|w| w[0] == w[1]) {
        return Ok(());
    }
    let list: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(r, v)| format!("rank {r}: {v:016x}"))
        .collect();
    Err(Error::Config(format!(
        "data-parallel ranks diverged: {what} differ ({}); the run cannot continue",
        list.join(", ")
    )))
}

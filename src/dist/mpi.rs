//! [`Mpi`]: the [`Collective`] over MPI (the `mpi` crate over the system's MPI library, e.g.
//! Debian's Open MPI), for data-parallel training on CPU processes and nodes.

use std::sync::Mutex;

use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::Threading;

use super::Collective;
use crate::error::{Error, Result};

/// MPI_COMM_WORLD of an initialised MPI. MPI is initialised with `MPI_THREAD_SERIALIZED` and
/// every call goes through one lock, so any thread may call (one at a time).
pub struct Mpi {
    comm: Mutex<SimpleCommunicator>,
    rank: usize,
    size: usize,
    // Dropped last: MPI_Finalize.
    _universe: Universe,
}

// SAFETY: the communicator handle is only used under `comm`'s lock, and MPI was initialised
// with MPI_THREAD_SERIALIZED (checked in `init`), which allows calls from any thread as long as
// no two are concurrent.
unsafe impl Send for Mpi {}
// SAFETY: as above; `&Mpi` gives access to the communicator only through the lock.
unsafe impl Sync for Mpi {}

impl Mpi {
    /// Initialises MPI (once per process).
    pub fn init() -> Result<Mpi> {
        let (universe, level) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| Error::Config("MPI is already initialised in this process".into()))?;
        if level < Threading::Serialized {
            return Err(Error::Config(format!(
                "the MPI library provides thread level {level:?}; MPI_THREAD_SERIALIZED is needed"
            )));
        }
        let comm = universe.world();
        let (rank, size) = (comm.rank() as usize, comm.size() as usize);
        Ok(Mpi {
            comm: Mutex::new(comm),
            rank,
            size,
            _universe: universe,
        })
    }

    fn with<R>(&self, f: impl FnOnce(&SimpleCommunicator) -> R) -> Result<R> {
        let c = self
            .comm
            .lock()
            .map_err(|_| Error::Config("MPI: communicator lock poisoned".into()))?;
        Ok(f(&c))
    }

    /// Ends the job (MPI_Abort) with exit code 1; for errors found before the run starts.
    pub fn abort_quietly(&self) {
        self.abort(1)
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn name(&self) -> &'static str {
        "mpi"
    }
    fn all_reduce_f32(&self, buf: &mut [f32]) -> Result<()> {
        let send = buf.to_vec();
        self.with(|c| c.all_reduce_into(&send[..], buf, SystemOperation::sum()))
    }
    fn all_reduce_f64(&self, buf: &mut [f64]) -> Result<()> {
        let send = buf.to_vec();
        self.with(|c| c.all_reduce_into(&send[..], buf, SystemOperation::sum()))
    }
    fn broadcast_f32(&self, buf: &mut [f32]) -> Result<()> {
        self.with(|c| c.process_at_rank(0).broadcast_into(buf))
    }
    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>> {
        let mut out = vec![0u64; self.size];
        self.with(|c| c.all_gather_into(&value, &mut out[..]))?;
        Ok(out)
    }
    fn barrier(&self) -> Result<()> {
        self.with(|c| c.barrier())
    }
    fn abort(&self, code: i32) {
        // Without the lock: another thread may hold it inside a collective that never ends.
        let c = SimpleCommunicator::world();
        c.abort(code)
    }
}

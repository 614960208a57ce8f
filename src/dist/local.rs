//! [`LocalGroup`]: ranks as threads of one process, for testing the data-parallel logic
//! (sharding, gradient packing, synchronised batch norm) without MPI. Sums are taken in rank
//! order, so every rank gets the same bits.

use std::sync::{Arc, Barrier, Mutex};

use super::Collective;
use crate::error::Result;

struct Shared {
    slots: Mutex<Vec<Vec<f64>>>,
    barrier: Barrier,
}

/// A group of `size` thread ranks.
pub struct LocalGroup {
    size: usize,
    shared: Arc<Shared>,
}

/// One thread's rank of a [`LocalGroup`].
pub struct LocalRank {
    rank: usize,
    size: usize,
    shared: Arc<Shared>,
}

impl LocalGroup {
    /// A group of `size` ranks.
    pub fn new(size: usize) -> LocalGroup {
        LocalGroup {
            size,
            shared: Arc::new(Shared {
                slots: Mutex::new(vec![Vec::new(); size]),
                barrier: Barrier::new(size),
            }),
        }
    }

    /// Runs `f` on every rank, each in its own thread; returns the results in rank order.
    pub fn run<R: Send>(&self, f: impl Fn(Arc<dyn Collective>) -> R + Sync) -> Vec<R> {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..self.size)
                .map(|rank| {
                    let c: Arc<dyn Collective> = Arc::new(LocalRank {
                        rank,
                        size: self.size,
                        shared: Arc::clone(&self.shared),
                    });
                    let f = &f;
                    s.spawn(move || f(c))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("rank thread panicked"))
                .collect()
        })
    }
}

impl LocalRank {
    /// Every rank's `mine`, in rank order.
    fn exchange(&self, mine: Vec<f64>) -> Vec<Vec<f64>> {
        self.shared.slots.lock().expect("slots")[self.rank] = mine;
        self.shared.barrier.wait();
        let all = self.shared.slots.lock().expect("slots").clone();
        self.shared.barrier.wait();
        all
    }
}

impl Collective for LocalRank {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn name(&self) -> &'static str {
        "local"
    }
    fn all_reduce_f32(&self, buf: &mut [f32]) -> Result<()> {
        let all = self.exchange(buf.iter().map(|&v| v as f64).collect());
        for (i, o) in buf.iter_mut().enumerate() {
            *o = all.iter().fold(0.0f32, |acc, r| acc + r[i] as f32);
        }
        Ok(())
    }
    fn all_reduce_f64(&self, buf: &mut [f64]) -> Result<()> {
        let all = self.exchange(buf.to_vec());
        for (i, o) in buf.iter_mut().enumerate() {
            *o = all.iter().fold(0.0, |acc, r| acc + r[i]);
        }
        Ok(())
    }
    fn broadcast_f32(&self, buf: &mut [f32]) -> Result<()> {
        let all = self.exchange(buf.iter().map(|&v| v as f64).collect());
        for (o, &v) in buf.iter_mut().zip(&all[0]) {
            *o = v as f32;
        }
        Ok(())
    }
    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>> {
        // Two f64 halves carry the 64 bits exactly.
        let all = self.exchange(vec![(value >> 32) as f64, (value & 0xffff_ffff) as f64]);
        Ok(all
            .iter()
            .map(|v| ((v[0] as u64) << 32) | v[1] as u64)
            .collect())
    }
    fn barrier(&self) -> Result<()> {
        self.shared.barrier.wait();
        Ok(())
    }
    fn abort(&self, code: i32) {
        std::process::exit(code)
    }
}

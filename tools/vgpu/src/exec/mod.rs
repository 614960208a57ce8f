//! Kernel execution: blocks of threads interpreting a decoded [`Kernel`].
//!
//! Each block runs its threads one after another, each until it reaches a synchronisation
//! point ([`sync`]); blocks run in a fixed order on the calling thread, or on several host
//! threads when `workers > 1` (see [`launch`]).

pub mod alu;
pub mod float;
mod mem;
mod step;
mod sync;

use std::ops::AddAssign;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::memory::GlobalView;
use crate::ptx::inst::Kernel;
use step::{run_thread, tid, BlockInfo, Env, Stop};
use sync::{BarOutcome, St, Threads};

/// Launch geometry.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Blocks per grid (x, y, z).
    pub grid: [u32; 3],
    /// Threads per block (x, y, z).
    pub block: [u32; 3],
    /// Bytes of dynamic shared memory.
    pub dyn_shared: u32,
}

/// The class of a launch failure (maps to a CUDA error code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Out-of-bounds access; for global memory the address and width, so the driver can say
    /// where it is relative to the allocations.
    IllegalAddress(Option<(u64, usize)>),
    /// Misaligned access.
    Misaligned,
    /// Any other failure: synchronisation errors, traps, unimplemented instructions.
    Launch,
    /// An invalid launch configuration.
    Config,
}

/// A failed launch: its class and a message naming the kernel, block, thread and PTX line.
#[derive(Clone, Debug)]
pub struct Fault {
    /// The class.
    pub kind: FaultKind,
    /// What happened, where.
    pub msg: String,
}

/// Work counters of a launch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Instructions executed (summed over threads; guarded-off ones included).
    pub instructions: u64,
    /// Bytes loaded from global memory.
    pub global_load_bytes: u64,
    /// Bytes stored to global memory.
    pub global_store_bytes: u64,
    /// Shared-memory load instructions (per thread).
    pub shared_loads: u64,
    /// Shared-memory store instructions (per thread).
    pub shared_stores: u64,
    /// Atomic instructions (per thread).
    pub atomics: u64,
    /// Block barriers released.
    pub barriers: u64,
    /// Warp shuffles / votes resolved (per warp group).
    pub warp_syncs: u64,
}

impl AddAssign for Counters {
    fn add_assign(&mut self, o: Counters) {
        self.instructions += o.instructions;
        self.global_load_bytes += o.global_load_bytes;
        self.global_store_bytes += o.global_store_bytes;
        self.shared_loads += o.shared_loads;
        self.shared_stores += o.shared_stores;
        self.atomics += o.atomics;
        self.barriers += o.barriers;
        self.warp_syncs += o.warp_syncs;
    }
}

/// Limits the virtual device enforces on a launch.
pub const MAX_THREADS_PER_BLOCK: u32 = 1024;
/// Shared memory a block may use with the opt-in attribute (bytes).
pub const MAX_SHARED_OPTIN: u32 = 227 * 1024;

/// One block's buffers, reused across the blocks a worker runs.
struct Block<'k> {
    k: &'k Kernel,
    th: Threads,
    shared: Vec<u64>,
    shared_bytes: usize,
    local: Vec<u8>,
    fill: u8,
}

impl<'k> Block<'k> {
    fn new(k: &'k Kernel, n: usize, shared_bytes: usize, fill: u8) -> Block<'k> {
        Block {
            k,
            th: Threads {
                n,
                nregs: k.nregs.max(1),
                regs: vec![0; n * k.nregs.max(1)],
                pc: vec![0; n],
                state: vec![St::Ready; n],
            },
            shared: vec![0; shared_bytes.div_ceil(8)],
            shared_bytes,
            local: vec![0; n * k.local_bytes],
            fill,
        }
    }

    /// Runs the block `info.ctaid` to completion.
    fn run(
        &mut self,
        info: BlockInfo,
        global: &GlobalView,
        params: &[u8],
    ) -> Result<Counters, Fault> {
        self.th.regs.fill(0);
        self.th.pc.fill(0);
        self.th.state.fill(St::Ready);
        self.shared.fill(u64::from_ne_bytes([self.fill; 8]));
        self.local.fill(self.fill);
        let lb = self.k.local_bytes;
        // SAFETY: a u64 buffer viewed as its first `shared_bytes` bytes (<= 8 * len).
        let shared = unsafe {
            std::slice::from_raw_parts_mut(self.shared.as_mut_ptr() as *mut u8, self.shared_bytes)
        };
        let mut env = Env {
            code: &self.k.code,
            global,
            params,
            shared,
            info,
            hint: 0,
            c: Counters::default(),
            unsupported: &self.k.unsupported,
        };
        let th = &mut self.th;
        let nr = th.nregs;
        loop {
            for t in 0..th.n {
                if th.state[t] != St::Ready {
                    continue;
                }
                let regs = &mut th.regs[t * nr..(t + 1) * nr];
                let local = &mut self.local[t * lb..(t + 1) * lb];
                let stop = run_thread(&mut env, regs, local, t, &mut th.pc[t]);
                th.state[t] = match stop {
                    Ok(Stop::Bar) => St::Bar,
                    Ok(Stop::Warp) => St::Warp,
                    Ok(Stop::Exit) => St::Exited,
                    Err(e) => return Err(locate(self.k, th, &info, t, e)),
                };
            }
            let step = match th.resolve_warps(env.code, &mut env) {
                Ok(true) => continue,
                Ok(false) => th.barrier(env.code, &mut env),
                Err(e) => Err(e),
            };
            match step {
                Ok(BarOutcome::Done) => return Ok(env.c),
                Ok(BarOutcome::Released) => {}
                Err((t, e)) => return Err(locate(self.k, th, &info, t, e)),
            }
        }
    }
}

/// A fault of thread `t` with its kernel, block, thread and PTX line.
fn locate(k: &Kernel, th: &Threads, info: &BlockInfo, t: usize, (kind, msg): step::Err0) -> Fault {
    let [x, y, z] = tid(info, t);
    let [bx, by, bz] = info.ctaid;
    let line = k.code.get(th.pc[t] as usize).map_or(0, |i| i.line);
    Fault {
        kind,
        msg: format!(
            "{msg}\n  kernel {}, block ({bx},{by},{bz}), thread ({x},{y},{z}), PTX line {line}",
            k.name
        ),
    }
}

fn config_err(msg: String) -> Fault {
    Fault {
        kind: FaultKind::Config,
        msg,
    }
}

/// Checks a launch configuration against the device limits and the kernel.
fn check_config(k: &Kernel, cfg: &Config, params: &[u8]) -> Result<(usize, usize), Fault> {
    let threads: u64 = cfg.block.iter().map(|&v| v as u64).product();
    if cfg.grid.contains(&0) || cfg.block.contains(&0) {
        return Err(config_err(format!(
            "kernel {}: empty launch (grid {:?}, block {:?})",
            k.name, cfg.grid, cfg.block
        )));
    }
    if threads > MAX_THREADS_PER_BLOCK as u64
        || cfg.block[2] > 64
        || cfg.grid[1] > 65535
        || cfg.grid[2] > 65535
    {
        return Err(config_err(format!(
            "kernel {}: block {:?} / grid {:?} exceeds the device limits (1024 threads per block, \
             block z <= 64, grid y and z <= 65535)",
            k.name, cfg.block, cfg.grid
        )));
    }
    if let Some(m) = k.max_threads {
        if threads > m as u64 {
            return Err(config_err(format!(
                "kernel {}: {threads} threads exceed its .maxntid {m}",
                k.name
            )));
        }
    }
    let shared = k.shared_static + cfg.dyn_shared as usize;
    if shared > MAX_SHARED_OPTIN as usize {
        return Err(config_err(format!(
            "kernel {}: {shared} bytes of shared memory exceed the device's {MAX_SHARED_OPTIN}",
            k.name
        )));
    }
    if params.len() < k.param_bytes {
        return Err(config_err(format!(
            "kernel {}: {} bytes of parameters given, {} expected",
            k.name,
            params.len(),
            k.param_bytes
        )));
    }
    let dyn_start = if cfg.dyn_shared > 0 {
        k.shared_static.div_ceil(k.dyn_shared_align) * k.dyn_shared_align
    } else {
        k.shared_static
    };
    Ok((threads as usize, dyn_start + cfg.dyn_shared as usize))
}

/// Runs a kernel over the whole grid; `workers > 1` runs blocks on that many host threads
/// when the kernel is [`Kernel::parallel_safe`] (else in order on this thread).
/// `fill` is the byte uninitialised shared and local memory reads as.
pub fn launch(
    k: &Kernel,
    cfg: &Config,
    params: &[u8],
    global: &GlobalView,
    workers: usize,
    fill: u8,
    nsm: u32,
) -> Result<Counters, Fault> {
    let (threads, shared) = check_config(k, cfg, params)?;
    let [gx, gy, gz] = cfg.grid;
    let nblocks = gx as usize * gy as usize * gz as usize;
    let info = |b: usize| BlockInfo {
        ntid: cfg.block,
        ctaid: [
            (b % gx as usize) as u32,
            ((b / gx as usize) % gy as usize) as u32,
            (b / (gx as usize * gy as usize)) as u32,
        ],
        nctaid: cfg.grid,
        static_smem: k.shared_static as u32,
        dyn_smem: cfg.dyn_shared,
        nsm,
    };
    if workers <= 1 || nblocks == 1 || !k.parallel_safe {
        let mut blk = Block::new(k, threads, shared, fill);
        let mut total = Counters::default();
        for b in 0..nblocks {
            total += blk.run(info(b), global, params)?;
        }
        return Ok(total);
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let out: Mutex<(Counters, Option<(usize, Fault)>)> = Mutex::new((Counters::default(), None));
    std::thread::scope(|s| {
        for _ in 0..workers.min(nblocks) {
            s.spawn(|| {
                let mut blk = Block::new(k, threads, shared, fill);
                let mut mine = Counters::default();
                while !stop.load(Ordering::Relaxed) {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= nblocks {
                        break;
                    }
                    match blk.run(info(b), global, params) {
                        Ok(c) => mine += c,
                        Err(f) => {
                            stop.store(true, Ordering::Relaxed);
                            let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
                            if o.1.as_ref().is_none_or(|(fb, _)| b < *fb) {
                                o.1 = Some((b, f));
                            }
                        }
                    }
                }
                out.lock().unwrap_or_else(|p| p.into_inner()).0 += mine;
            });
        }
    });
    let (c, f) = out.into_inner().unwrap_or_else(|p| p.into_inner());
    match f {
        Some((_, f)) => Err(f),
        None => Ok(c),
    }
}

//! Work and traffic counters: per launch, per kernel, and host↔device copies.
//!
//! `VGPU_TRACE=<path>` appends one line per launch and per copy to `<path>`;
//! `VGPU_STATS=<path>` writes a per-kernel summary table there when the process exits
//! (`-` means stderr). Both are counts of work, not timings (the wall time of the
//! interpreter is listed for orientation only).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::time::Duration;

use crate::exec::{Config, Counters};

/// Kinds of copies and fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Copy {
    /// Host to device.
    HtoD,
    /// Device to host.
    DtoH,
    /// Device to device.
    DtoD,
    /// Memset.
    Memset,
}

impl Copy {
    fn name(self) -> &'static str {
        match self {
            Copy::HtoD => "htod",
            Copy::DtoH => "dtoh",
            Copy::DtoD => "dtod",
            Copy::Memset => "memset",
        }
    }
}

/// Totals for one kernel.
#[derive(Clone, Debug, Default)]
pub struct KernelTotals {
    /// Launches.
    pub launches: u64,
    /// Blocks run.
    pub blocks: u64,
    /// Summed counters.
    pub counters: Counters,
    /// Host time spent interpreting.
    pub wall: Duration,
}

/// All counters of the process.
#[derive(Default)]
pub struct Stats {
    /// Per kernel name.
    pub kernels: BTreeMap<String, KernelTotals>,
    /// (count, bytes) per copy kind: htod, dtoh, dtod, memset.
    pub copies: [(u64, u64); 4],
    /// Launches so far.
    pub launches: u64,
    /// Failed launches so far.
    pub failures: u64,
    trace: Option<File>,
}

fn open(var: &str) -> Option<File> {
    let path = std::env::var_os(var)?;
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .ok()
}

impl Stats {
    /// Counters, tracing to `$VGPU_TRACE` when set.
    pub fn from_env() -> Stats {
        Stats {
            trace: open("VGPU_TRACE"),
            ..Stats::default()
        }
    }

    /// Records a launch.
    pub fn launch(&mut self, name: &str, cfg: &Config, c: &Counters, wall: Duration, ok: bool) {
        self.launches += 1;
        if !ok {
            self.failures += 1;
        }
        let blocks = cfg.grid.iter().map(|&v| v as u64).product::<u64>();
        let k = self.kernels.entry(name.to_string()).or_default();
        k.launches += 1;
        k.blocks += blocks;
        k.counters += *c;
        k.wall += wall;
        if let Some(f) = &mut self.trace {
            let _ = writeln!(
                f,
                "launch {} {name} grid={:?} block={:?} dyn_smem={} instructions={} \
                 global_load_bytes={} global_store_bytes={} shared_loads={} shared_stores={} \
                 atomics={} barriers={} warp_syncs={} wall_us={}{}",
                self.launches,
                cfg.grid,
                cfg.block,
                cfg.dyn_shared,
                c.instructions,
                c.global_load_bytes,
                c.global_store_bytes,
                c.shared_loads,
                c.shared_stores,
                c.atomics,
                c.barriers,
                c.warp_syncs,
                wall.as_micros(),
                if ok { "" } else { " FAILED" }
            );
        }
    }

    /// Records a copy or memset of `bytes`.
    pub fn copy(&mut self, kind: Copy, bytes: u64) {
        let slot = &mut self.copies[kind as usize];
        slot.0 += 1;
        slot.1 += bytes;
        if let Some(f) = &mut self.trace {
            let _ = writeln!(f, "{} bytes={bytes}", kind.name());
        }
    }

    /// The per-kernel summary table.
    pub fn summary(&self) -> String {
        let mut s = String::from(
            "# vgpu summary: counters per kernel (instructions are per thread, summed)\n",
        );
        s += &format!(
            "{:<28} {:>8} {:>14} {:>14} {:>14} {:>12} {:>12} {:>10} {:>10}\n",
            "kernel",
            "launches",
            "instructions",
            "gld_bytes",
            "gst_bytes",
            "shared_ld",
            "shared_st",
            "atomics",
            "wall_ms"
        );
        let mut total = Counters::default();
        let mut wall = Duration::ZERO;
        for (name, k) in &self.kernels {
            let c = &k.counters;
            total += *c;
            wall += k.wall;
            s += &format!(
                "{:<28} {:>8} {:>14} {:>14} {:>14} {:>12} {:>12} {:>10} {:>10}\n",
                name,
                k.launches,
                c.instructions,
                c.global_load_bytes,
                c.global_store_bytes,
                c.shared_loads,
                c.shared_stores,
                c.atomics,
                k.wall.as_millis()
            );
        }
        let secs = wall.as_secs_f64().max(1e-9);
        s += &format!(
            "total: {} launches ({} failed), {} instructions in {:.2} s ({:.1} M instructions/s)\n",
            self.launches,
            self.failures,
            total.instructions,
            secs,
            total.instructions as f64 / secs / 1e6
        );
        for kind in [Copy::HtoD, Copy::DtoH, Copy::DtoD, Copy::Memset] {
            let (n, b) = self.copies[kind as usize];
            s += &format!("copies {}: {n} ({b} bytes)\n", kind.name());
        }
        s
    }

    /// Writes the summary to `$VGPU_STATS` (`-`: stderr) if set.
    pub fn write_summary(&self) {
        let Some(path) = std::env::var_os("VGPU_STATS") else {
            return;
        };
        if path == "-" {
            eprint!("{}", self.summary());
        } else if let Ok(mut f) = File::create(&path) {
            let _ = f.write_all(self.summary().as_bytes());
        }
    }
}

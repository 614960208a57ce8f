//! The CUDA driver API surface: state shared by the exported `cu*` functions.
//!
//! Everything happens synchronously on the calling thread under one device lock: a launch or
//! copy on any stream has completed when its call returns, so streams and events are trivially
//! ordered. A failed launch makes the context's error sticky (every later call returns it,
//! as on a GPU) unless `VGPU_NONSTICKY=1`; `cuDevicePrimaryCtxReset` clears it.
//!
//! Environment: `VGPU_WORKERS` (host threads running the blocks of kernels whose result
//! cannot depend on block order, default: the cores, at most 8; 1: blocks in order),
//! `VGPU_ALLOC_FILL` (`nan` = 0xFF bytes, the default; `zero`; or a byte like `0xAB`),
//! `VGPU_MEM_MB` (device memory, default 16384), `VGPU_SM_COUNT` (default 4), `VGPU_LOG`
//! (file that launch failures are appended to), `VGPU_QUIET=1` (no stderr), `VGPU_TRACE`,
//! `VGPU_STATS` (see [`crate::stats`]).

mod api_ctx;
mod api_exec;
mod api_mem;
mod errors;
pub mod stubs;

use std::collections::{HashMap, HashSet};
use std::ffi::c_int;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use crate::memory::DeviceMemory;
use crate::ptx::inst::Module;
use crate::stats::Stats;

pub use api_ctx::*;
pub use api_exec::*;
pub use api_mem::*;
pub use errors::{error_name, error_string};

/// A CUDA driver result code.
pub type CUresult = u32;

/// `CUDA_SUCCESS`.
pub const SUCCESS: CUresult = 0;
/// `CUDA_ERROR_INVALID_VALUE`.
pub const INVALID_VALUE: CUresult = 1;
/// `CUDA_ERROR_OUT_OF_MEMORY`.
pub const OUT_OF_MEMORY: CUresult = 2;
/// `CUDA_ERROR_NOT_INITIALIZED`.
pub const NOT_INITIALIZED: CUresult = 3;
/// `CUDA_ERROR_INVALID_DEVICE`.
pub const INVALID_DEVICE: CUresult = 101;
/// `CUDA_ERROR_INVALID_CONTEXT`.
pub const INVALID_CONTEXT: CUresult = 201;
/// `CUDA_ERROR_INVALID_PTX`.
pub const INVALID_PTX: CUresult = 218;
/// `CUDA_ERROR_INVALID_HANDLE`.
pub const INVALID_HANDLE: CUresult = 400;
/// `CUDA_ERROR_NOT_FOUND`.
pub const NOT_FOUND: CUresult = 500;
/// `CUDA_ERROR_ILLEGAL_ADDRESS`.
pub const ILLEGAL_ADDRESS: CUresult = 700;
/// `CUDA_ERROR_MISALIGNED_ADDRESS`.
pub const MISALIGNED_ADDRESS: CUresult = 716;
/// `CUDA_ERROR_LAUNCH_FAILED`.
pub const LAUNCH_FAILED: CUresult = 719;
/// `CUDA_ERROR_NOT_SUPPORTED`.
pub const NOT_SUPPORTED: CUresult = 801;
/// `CUDA_ERROR_UNKNOWN`.
pub const UNKNOWN: CUresult = 999;

/// The name the device reports.
pub const DEVICE_NAME: &str = "suptickets virtual GPU (PTX interpreter)";
/// Compute capability reported.
pub const COMPUTE_CAPABILITY: (c_int, c_int) = (9, 0);
/// Driver version reported (CUDA 12.9).
pub const DRIVER_VERSION: c_int = 12090;
/// The one (primary) context handle.
pub const CONTEXT: usize = 0x5C7C_0001;

/// Handle tags (high bits) of the handle kinds.
const MODULE_TAG: usize = 0x1000_0000;
const FUNCTION_TAG: usize = 0x2000_0000;
const STREAM_TAG: usize = 0x3000_0000;
const EVENT_TAG: usize = 0x4000_0000;

/// A loaded function: its module and the kernel's index in it.
#[derive(Clone)]
pub struct Function {
    /// The module.
    pub module: Arc<Module>,
    /// Index into `module.kernels`.
    pub index: usize,
}

/// The virtual device.
pub struct Device {
    /// Device memory.
    pub mem: DeviceMemory,
    modules: HashMap<usize, Arc<Module>>,
    functions: HashMap<usize, Function>,
    function_ids: HashMap<(usize, usize), usize>,
    streams: HashSet<usize>,
    events: HashMap<usize, Option<Instant>>,
    next_id: usize,
    /// Sticky error of the context (0 when healthy).
    pub sticky: CUresult,
    /// Counters.
    pub stats: Stats,
    /// Host threads running blocks.
    pub workers: usize,
    /// Fill byte of fresh memory.
    pub fill: u8,
    /// Reported SM count.
    pub sm_count: u32,
    /// Whether launch failures poison the context.
    pub sticky_errors: bool,
    /// Primary context retain count.
    pub primary_refs: usize,
}

fn env_num(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Host threads for blocks by default: the available cores, at most 8.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

fn fill_byte() -> u8 {
    match std::env::var("VGPU_ALLOC_FILL").as_deref().map(str::trim) {
        Ok("zero") | Ok("0") => 0,
        Ok(v) if v.starts_with("0x") => u8::from_str_radix(&v[2..], 16).unwrap_or(0xFF),
        _ => 0xFF,
    }
}

impl Device {
    fn from_env() -> Device {
        Device {
            mem: DeviceMemory::new(env_num("VGPU_MEM_MB", 16384) << 20, fill_byte()),
            modules: HashMap::new(),
            functions: HashMap::new(),
            function_ids: HashMap::new(),
            streams: HashSet::new(),
            events: HashMap::new(),
            next_id: 1,
            sticky: SUCCESS,
            stats: Stats::from_env(),
            workers: env_num("VGPU_WORKERS", default_workers()).max(1),
            fill: fill_byte(),
            sm_count: env_num("VGPU_SM_COUNT", 4).max(1) as u32,
            sticky_errors: std::env::var("VGPU_NONSTICKY").as_deref() != Ok("1"),
            primary_refs: 0,
        }
    }

    fn new_id(&mut self, tag: usize) -> usize {
        let id = tag | self.next_id;
        self.next_id += 1;
        id
    }

    /// Registers a parsed module, returning its handle.
    pub fn add_module(&mut self, m: Module) -> usize {
        let id = self.new_id(MODULE_TAG);
        self.modules.insert(id, Arc::new(m));
        id
    }

    /// Unloads a module (its functions stay valid for launches already holding them).
    pub fn remove_module(&mut self, id: usize) -> bool {
        self.function_ids.retain(|(m, _), _| *m != id);
        self.modules.remove(&id).is_some()
    }

    /// The handle of kernel `name` of module `id`.
    pub fn function(&mut self, id: usize, name: &str) -> Result<usize, CUresult> {
        let m = self.modules.get(&id).ok_or(INVALID_HANDLE)?.clone();
        let index = m
            .kernels
            .iter()
            .position(|k| k.name == name)
            .ok_or(NOT_FOUND)?;
        if let Some(f) = self.function_ids.get(&(id, index)) {
            return Ok(*f);
        }
        let f = self.new_id(FUNCTION_TAG);
        self.functions.insert(f, Function { module: m, index });
        self.function_ids.insert((id, index), f);
        Ok(f)
    }

    /// The function behind a handle.
    pub fn get_function(&self, f: usize) -> Option<Function> {
        self.functions.get(&f).cloned()
    }

    /// Creates a stream handle.
    pub fn new_stream(&mut self) -> usize {
        let id = self.new_id(STREAM_TAG);
        self.streams.insert(id);
        id
    }

    /// True for the null stream, the per-thread / legacy streams and created streams.
    pub fn valid_stream(&self, s: usize) -> bool {
        s <= 2 || self.streams.contains(&s)
    }

    /// Destroys a stream handle.
    pub fn remove_stream(&mut self, s: usize) -> bool {
        self.streams.remove(&s)
    }

    /// Creates an event handle.
    pub fn new_event(&mut self) -> usize {
        let id = self.new_id(EVENT_TAG);
        self.events.insert(id, None);
        id
    }

    /// The event's slot (recorded time).
    pub fn event_mut(&mut self, e: usize) -> Option<&mut Option<Instant>> {
        self.events.get_mut(&e)
    }

    /// Destroys an event handle.
    pub fn remove_event(&mut self, e: usize) -> bool {
        self.events.remove(&e).is_some()
    }

    /// Fails with the sticky error if the context is poisoned.
    pub fn check(&self) -> Result<(), CUresult> {
        if self.sticky != SUCCESS {
            Err(self.sticky)
        } else {
            Ok(())
        }
    }
}

static DEVICE: OnceLock<Mutex<Device>> = OnceLock::new();

/// The device, locked (a panic while it was held does not make it unusable).
pub fn device() -> MutexGuard<'static, Device> {
    DEVICE
        .get_or_init(|| Mutex::new(Device::from_env()))
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Reports a problem on stderr (unless `VGPU_QUIET=1`) and in `$VGPU_LOG`.
pub fn report(msg: &str) {
    if std::env::var("VGPU_QUIET").as_deref() != Ok("1") {
        eprintln!("vgpu: {msg}");
    }
    if let Some(path) = std::env::var_os("VGPU_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "vgpu: {msg}");
        }
    }
}

extern "C" fn write_summary_at_exit() {
    if let Some(m) = DEVICE.get() {
        if let Ok(d) = m.try_lock() {
            d.stats.write_summary();
        }
    }
}

extern "C" {
    fn atexit(cb: extern "C" fn()) -> c_int;
}

/// Registers the exit-time summary (once).
pub fn register_exit_summary() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // SAFETY: registering a plain `extern "C"` function with the C runtime.
        unsafe {
            atexit(write_summary_at_exit);
        }
    });
}

/// Runs an API function body, turning a panic into `CUDA_ERROR_UNKNOWN` with a message
/// (a panic must not unwind into the C caller).
pub fn guard(name: &str, f: impl FnOnce() -> CUresult) -> CUresult {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let what = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            report(&format!("internal error in {name}: {what}"));
            UNKNOWN
        }
    }
}

/// Writes `v` through `p` unless `p` is null (then `CUDA_ERROR_INVALID_VALUE`).
///
/// # Safety
/// `p` must be null or valid for a write of `T`.
pub unsafe fn out<T>(p: *mut T, v: T) -> CUresult {
    if p.is_null() {
        return INVALID_VALUE;
    }
    // SAFETY: non-null and valid per the caller's contract.
    unsafe { p.write(v) };
    SUCCESS
}

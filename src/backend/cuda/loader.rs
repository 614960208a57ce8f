//! NVRTC compilation of the kernel families and the per-backend module cache.
//!
//! Every family's source is `kernels/common.cuh`, the shared headers it uses
//! ([`SHARED_HEADERS`]) and `kernels/<family>.cu`, embedded with `include_str!`, so the crate
//! needs no CUDA toolkit to build. A backend compiles each family the first time one of its
//! kernels runs (PTX for the device's `compute_XY`, JIT-ed by the driver), loads the module
//! once and caches every function it looks up.
//!
//! [`compile_family`] and [`ptxas_report`] need only NVRTC (no driver, no GPU): the compile
//! test uses them to check every kernel on machines without a GPU.

use std::collections::HashMap;
use std::ffi::{c_char, CString};
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{result as nvrtc, Ptx};

use crate::backend::registry;
use crate::error::{Error, Result};

/// Helpers prepended to every family (block reductions, grid-stride loop, constants).
pub const COMMON_SOURCE: &str = include_str!("../../../kernels/common.cuh");

/// The `.cu` source of each family, in registry order.
pub const FAMILY_SOURCES: &[(&str, &str)] = &[
    ("conv", include_str!("../../../kernels/conv.cu")),
    ("spconv", include_str!("../../../kernels/spconv.cu")),
    ("matmul", include_str!("../../../kernels/matmul.cu")),
    ("batchnorm", include_str!("../../../kernels/batchnorm.cu")),
    (
        "elementwise",
        include_str!("../../../kernels/elementwise.cu"),
    ),
    ("pool", include_str!("../../../kernels/pool.cu")),
    ("loss", include_str!("../../../kernels/loss.cu")),
    ("optim", include_str!("../../../kernels/optim.cu")),
    ("select", include_str!("../../../kernels/select.cu")),
    ("superpose", include_str!("../../../kernels/superpose.cu")),
];

/// Device code shared by some families, prepended after `common.cuh` in this order: (file
/// under `kernels/`, source, the families that use it).
pub const SHARED_HEADERS: &[(&str, &str, &[&str])] = &[(
    "radix.cuh",
    include_str!("../../../kernels/radix.cuh"),
    &["select", "superpose"],
)];

/// What to install or set when NVRTC cannot be loaded.
pub const NVRTC_HINT: &str = "NVRTC (libnvrtc.so / libnvrtc.so.12) was not found on the \
     library path: install it with `pip install nvidia-cuda-nvrtc-cu12==12.9.86` (or a CUDA \
     toolkit) and put its lib folder on LD_LIBRARY_PATH, e.g. `source tools/nvrtc-env.sh`, or \
     set NVRTC_LIB_DIR before sourcing it";

/// True when cudarc can load NVRTC (probing never panics, unlike cudarc's first real call).
pub fn nvrtc_available() -> bool {
    // SAFETY: `is_culib_present` only tries `dlopen` on cudarc's candidate library names and
    // drops what it opened; it runs no library code besides the loader's initialisers.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// The full source NVRTC compiles for `family` (common helpers, its shared headers, the
/// family's `.cu`, each with a `#line` marker so that NVRTC errors name the right file), or
/// `None` for an unknown family.
pub fn family_source(family: &str) -> Option<String> {
    let (_, src) = FAMILY_SOURCES.iter().find(|(f, _)| *f == family)?;
    let mut out = format!("{COMMON_SOURCE}\n");
    for (file, header, users) in SHARED_HEADERS {
        if users.contains(&family) {
            out.push_str(&format!("#line 1 \"{file}\"\n{header}\n"));
        }
    }
    out.push_str(&format!("#line 1 \"{family}.cu\"\n{src}"));
    Some(out)
}

/// What one NVRTC compilation produced.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The PTX text (without the trailing NUL).
    pub ptx: String,
    /// NVRTC's program log: warnings, and with `--ptxas-options=-v` on a real `sm_XY` target
    /// the register, shared-memory and spill report of every kernel.
    pub log: String,
}

fn c_chars_to_string(v: &[c_char]) -> String {
    let bytes: Vec<u8> = v
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Compiles `family` with the given NVRTC options, returning PTX and the program log.
fn nvrtc_compile(family: &str, options: &[String]) -> Result<Compiled> {
    if !nvrtc_available() {
        return Err(Error::Device(format!(
            "cannot compile kernels/{family}.cu: {NVRTC_HINT}"
        )));
    }
    let src = family_source(family).ok_or_else(|| {
        Error::Config(format!(
            "unknown kernel family {family:?} (families: {:?})",
            registry::families()
        ))
    })?;
    let src = CString::new(src)
        .map_err(|_| Error::Cuda(format!("kernels/{family}.cu contains a NUL byte")))?;
    let name = CString::new(format!("{family}.cu")).expect("family names have no NUL");
    let prog = nvrtc::create_program(&src, Some(&name))
        .map_err(|e| Error::Cuda(format!("NVRTC create program for {family}.cu: {e:?}")))?;
    /// Destroys the program on every exit path.
    struct Guard(cudarc::nvrtc::sys::nvrtcProgram);
    impl Drop for Guard {
        fn drop(&mut self) {
            // SAFETY: the program was created by `create_program` above and is destroyed once.
            let _ = unsafe { nvrtc::destroy_program(self.0) };
        }
    }
    let guard = Guard(prog);
    // SAFETY: `guard.0` is a live program created above; the option strings outlive the call.
    let compiled = unsafe { nvrtc::compile_program(guard.0, options) };
    // SAFETY: the program is live; the log is available after a compile call, failed or not.
    let log = unsafe { nvrtc::get_program_log(guard.0) }
        .map(|l| c_chars_to_string(&l))
        .unwrap_or_default();
    if let Err(e) = compiled {
        return Err(Error::Cuda(format!(
            "NVRTC failed to compile kernels/{family}.cu with {options:?}: {e:?}\n{log}"
        )));
    }
    // SAFETY: the program is live and compiled successfully, so its PTX is available.
    let ptx = unsafe { nvrtc::get_ptx(guard.0) }
        .map_err(|e| Error::Cuda(format!("NVRTC get PTX of {family}.cu: {e:?}")))?;
    Ok(Compiled {
        ptx: c_chars_to_string(&ptx),
        log,
    })
}

/// Normalises `sm_90` / `compute_90` / `90` to the number `90`.
fn arch_number(arch: &str) -> Result<&str> {
    let n = arch
        .strip_prefix("sm_")
        .or_else(|| arch.strip_prefix("compute_"))
        .unwrap_or(arch);
    if n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Error::Config(format!(
            "bad GPU architecture {arch:?} (expected e.g. sm_90 or compute_90)"
        )));
    }
    Ok(n)
}

/// Compiles `family` to PTX for the virtual architecture of `arch` (`sm_90` or `compute_90`
/// both mean `--gpu-architecture=compute_90`). Needs NVRTC only, no GPU.
pub fn compile_family(family: &str, arch: &str) -> Result<String> {
    let n = arch_number(arch)?;
    Ok(nvrtc_compile(family, &[format!("--gpu-architecture=compute_{n}")])?.ptx)
}

/// Compiles `family` for the real architecture `sm_XY` of `arch` with `--ptxas-options=-v`,
/// so NVRTC also runs ptxas; returns the PTX and the log holding each kernel's registers,
/// shared memory, stack and spill stores/loads. Needs NVRTC only, no GPU.
pub fn ptxas_report(family: &str, arch: &str) -> Result<Compiled> {
    let n = arch_number(arch)?;
    nvrtc_compile(
        family,
        &[
            format!("--gpu-architecture=sm_{n}"),
            "--ptxas-options=-v".to_string(),
        ],
    )
}

/// The names of the `.entry` functions in a PTX text.
pub fn ptx_entries(ptx: &str) -> Vec<String> {
    ptx.lines()
        .filter_map(|l| {
            let rest = l.trim_start();
            let rest = rest
                .strip_prefix(".visible .entry ")
                .or_else(|| rest.strip_prefix(".entry "))?;
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

/// Compiles each family once per backend (lazily) and caches modules and functions.
pub(crate) struct Loader {
    ctx: Arc<CudaContext>,
    /// `compute_XY` of the device.
    arch: String,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
}

impl Loader {
    /// A loader for `ctx`, compiling for the device's compute capability.
    pub(crate) fn new(ctx: Arc<CudaContext>, major: i32, minor: i32) -> Loader {
        Loader {
            ctx,
            arch: format!("compute_{major}{minor}"),
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
        }
    }

    /// The kernel `name` (which must be in the registry), compiling its family on first use.
    pub(crate) fn function(&self, name: &'static str) -> Result<CudaFunction> {
        if let Some(f) = self.functions.lock().expect("loader lock").get(name) {
            return Ok(f.clone());
        }
        let family = registry::KERNELS
            .iter()
            .find(|k| k.name == name)
            .map(|k| k.family)
            .ok_or_else(|| Error::Cuda(format!("kernel {name} is not in the registry")))?;
        let module = self.module(family)?;
        let f = module
            .load_function(name)
            .map_err(|e| Error::Cuda(format!("load kernel {name} from {family}.cu: {e}")))?;
        self.functions
            .lock()
            .expect("loader lock")
            .insert(name, f.clone());
        Ok(f)
    }

    fn module(&self, family: &'static str) -> Result<Arc<CudaModule>> {
        // Holding the lock while compiling keeps two threads from compiling the same family.
        let mut modules = self.modules.lock().expect("loader lock");
        if let Some(m) = modules.get(family) {
            return Ok(m.clone());
        }
        let ptx = match nvrtc_compile(family, &[format!("--gpu-architecture={}", self.arch)]) {
            Ok(c) => c.ptx,
            // An NVRTC older than the GPU does not know its architecture: fall back to
            // compute_80 PTX, which the driver JIT-compiles for any newer GPU.
            Err(first) => {
                nvrtc_compile(family, &["--gpu-architecture=compute_80".to_string()])
                    .map_err(|_| first)?
                    .ptx
            }
        };
        let m = self
            .ctx
            .load_module(Ptx::from_src(ptx))
            .map_err(|e| Error::Cuda(format!("load module {family}.cu ({}): {e}", self.arch)))?;
        modules.insert(family, m.clone());
        Ok(m)
    }
}

//! `suptickets info`: version, backends, CUDA/NVRTC status and the kernel list.

use suptickets::error::Result;
use suptickets::models::MODEL_NAMES;

/// Prints what this build can run on.
pub fn cmd_info() -> Result<()> {
    say!("suptickets {}", env!("CARGO_PKG_VERSION"));
    say!("backends:");
    say!(
        "  cpu: available (rayon, {} threads)",
        rayon::current_num_threads()
    );
    match suptickets::Device::cuda(0) {
        #[cfg(feature = "cuda")]
        Ok(suptickets::Device::Cuda(b)) => {
            let (major, minor) = b.compute_capability();
            let total = b.mem_info().map(|(_, t)| t).unwrap_or(0);
            say!(
                "  cuda: available (cuda:0: {}, compute {major}.{minor}, {} SMs, {:.1} GiB)",
                b.gpu_name(),
                b.sm_count(),
                total as f64 / (1u64 << 30) as f64
            )
        }
        Ok(d) => say!("  cuda: available ({})", d.name()),
        Err(e) => say!("  cuda: unavailable: {e}"),
    }
    say!("  nvrtc: {}", nvrtc_status());
    say!("models: {}", MODEL_NAMES.join(", "));
    say!(
        "datasets: {}",
        suptickets::data::DatasetKind::ALL
            .map(|k| k.name())
            .join(", ")
    );
    let kernels = suptickets::backend::registry::KERNELS;
    say!("kernels ({}):", kernels.len());
    for k in kernels {
        say!("  {:<12} {:<24} {}", k.family, k.name, k.doc);
    }
    Ok(())
}

/// Whether the NVRTC library can be loaded, and its version.
fn nvrtc_status() -> String {
    #[cfg(feature = "cuda")]
    {
        // SAFETY: only probes for the shared library and asks it for its version.
        unsafe {
            if !cudarc::nvrtc::sys::is_culib_present() {
                return "not found (install the NVRTC library, e.g. `bash tools/setup.sh`, and put it on LD_LIBRARY_PATH)".into();
            }
            let (mut major, mut minor) = (0, 0);
            let r = cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor);
            if r == cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
                format!("available (version {major}.{minor})")
            } else {
                format!("library found but nvrtcVersion failed ({r:?})")
            }
        }
    }
    #[cfg(not(feature = "cuda"))]
    {
        "not built (the `cuda` feature is off)".into()
    }
}

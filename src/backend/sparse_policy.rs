//! Which kernels a masked conv or linear layer runs: the sparse ones (`spconv`, work only for
//! the active weights) or the dense ones (the masked weight multiplied densely).
//!
//! `auto` (the default) picks per layer and per step from the layer's density: sparse when the
//! density is at most the crossover. The crossover was measured, not guessed: on the 2-core
//! dev machine the sparse kernels beat the dense ones on every VGG-16/ResNet-18 conv shape up to
//! ~30-40% density and lose from ~35-50% on (`cargo run --release --example spconv_layers --
//! DENSITY 128`, `suptickets bench`, BENCHMARKS.md "Crossover"), so 0.3 keeps every layer on
//! its faster side with a margin. On CUDA `auto` stays dense until the GPU kernels are
//! measured on a GPU. `--sparse-kernels dense|sparse|auto` and `--sparse-crossover D` override.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use crate::device::Device;
use crate::error::{Error, Result};

/// The measured default crossover density (see the module doc).
pub const DEFAULT_CROSSOVER: f64 = 0.3;

/// Kernel choice for masked layers.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum SparseKernels {
    /// Sparse kernels when the layer's density is at most the crossover (CPU only).
    Auto,
    /// Always the dense kernels (the reference implementations' way).
    Dense,
    /// Always the sparse kernels for masked layers.
    Sparse,
}

impl SparseKernels {
    /// Parses `auto`, `dense` or `sparse`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(SparseKernels::Auto),
            "dense" => Ok(SparseKernels::Dense),
            "sparse" => Ok(SparseKernels::Sparse),
            _ => Err(Error::Config(format!(
                "sparse kernels: expected auto, dense or sparse, got {s:?}"
            ))),
        }
    }

    /// The name `parse` accepts.
    pub fn name(self) -> &'static str {
        match self {
            SparseKernels::Auto => "auto",
            SparseKernels::Dense => "dense",
            SparseKernels::Sparse => "sparse",
        }
    }
}

static MODE: AtomicU8 = AtomicU8::new(0);
static CROSSOVER: AtomicU32 = AtomicU32::new(0);

/// Sets the process-wide kernel choice.
pub fn set_sparse_kernels(mode: SparseKernels) {
    let v = match mode {
        SparseKernels::Auto => 0,
        SparseKernels::Dense => 1,
        SparseKernels::Sparse => 2,
    };
    MODE.store(v, Ordering::Relaxed);
}

/// The process-wide kernel choice.
pub fn sparse_kernels() -> SparseKernels {
    match MODE.load(Ordering::Relaxed) {
        1 => SparseKernels::Dense,
        2 => SparseKernels::Sparse,
        _ => SparseKernels::Auto,
    }
}

/// Sets the crossover density of `auto` (in (0, 1]).
pub fn set_crossover(d: f64) -> Result<()> {
    if !(d > 0.0 && d <= 1.0) {
        return Err(Error::Config(format!(
            "sparse crossover: expected a density in (0, 1], got {d}"
        )));
    }
    CROSSOVER.store((d as f32).to_bits(), Ordering::Relaxed);
    Ok(())
}

/// The crossover density of `auto`.
pub fn crossover() -> f64 {
    match CROSSOVER.load(Ordering::Relaxed) {
        0 => DEFAULT_CROSSOVER,
        b => f32::from_bits(b) as f64,
    }
}

/// The highest density at which a masked layer on this device runs the sparse kernels (None:
/// never).
pub fn max_sparse_density(device: &Device) -> Option<f64> {
    match sparse_kernels() {
        SparseKernels::Dense => None,
        SparseKernels::Sparse => Some(f64::INFINITY),
        SparseKernels::Auto => matches!(device, Device::Cpu).then(crossover),
    }
}

/// Whether a masked layer of this density on this device runs the sparse kernels.
pub fn use_sparse(density: f64, device: &Device) -> bool {
    max_sparse_density(device).is_some_and(|max| density <= max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_names_round_trip() {
        for m in [
            SparseKernels::Auto,
            SparseKernels::Dense,
            SparseKernels::Sparse,
        ] {
            assert_eq!(SparseKernels::parse(m.name()).unwrap(), m);
        }
        assert!(SparseKernels::parse("csr")
            .unwrap_err()
            .to_string()
            .contains("auto, dense or sparse"));
        assert!(set_crossover(0.0).is_err() && set_crossover(1.5).is_err());
    }
}

//! [`Device`]: which backend runs a computation (`cpu`, or `cuda[:N]`).

#[cfg(feature = "cuda")]
use std::sync::Arc;

use crate::backend::Backend;
#[allow(unused_imports)] // Error is used only without the cuda feature
use crate::error::{Error, Result};

/// A compute device. CPU is always available; CUDA when the crate is built with the `cuda`
/// feature and the machine has a driver and a GPU.
#[derive(Clone)]
pub enum Device {
    /// The rayon CPU backend.
    Cpu,
    /// A CUDA GPU.
    #[cfg(feature = "cuda")]
    Cuda(Arc<crate::backend::cuda::CudaBackend>),
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl Device {
    /// The CUDA device `ordinal`, or a clear error if CUDA is not usable here.
    pub fn cuda(ordinal: usize) -> Result<Device> {
        #[cfg(feature = "cuda")]
        {
            Ok(Device::Cuda(crate::backend::cuda::CudaBackend::new(
                ordinal,
            )?))
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = ordinal;
            Err(Error::Device(
                "this build has no CUDA support (rebuild with the `cuda` feature)".into(),
            ))
        }
    }

    /// Parses `cpu`, `cuda` or `cuda:N` (as given to `--device`).
    pub fn parse(s: &str) -> Result<Device> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Device::cuda(0),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Device::cuda(n),
                _ => Err(Error::Config(format!(
                    "--device: unknown device {s:?} (expected cpu, cuda or cuda:N)"
                ))),
            },
        }
    }

    /// The backend that runs kernels on this device.
    pub fn backend(&self) -> &dyn Backend {
        match self {
            Device::Cpu => &crate::backend::cpu::CPU,
            #[cfg(feature = "cuda")]
            Device::Cuda(b) => &**b,
        }
    }

    /// A short name: `cpu` or `cuda:N`.
    pub fn name(&self) -> String {
        self.backend().name()
    }

    /// True if both are the same device.
    pub fn same_as(&self, other: &Device) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            #[cfg(feature = "cuda")]
            (Device::Cuda(a), Device::Cuda(b)) => Arc::ptr_eq(a, b),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// True for the CPU.
    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }

    /// Waits until every queued kernel and copy has finished (a no-op on the CPU, whose kernels
    /// return when done). Timers must call this before they stop on an asynchronous device.
    pub fn synchronize(&self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            #[cfg(feature = "cuda")]
            Device::Cuda(b) => b.synchronize(),
        }
    }
}

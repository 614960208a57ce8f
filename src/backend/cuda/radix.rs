//! The CUDA backend's memory for the radix driver ([`crate::backend::radix`]): u32 device
//! buffers, and the launch shapes the radix kernels of the select and superpose families
//! share (grid-stride histograms, one block per segment for counts and applies).

use cudarc::driver::{CudaSlice, LaunchConfig};

use super::{cuda_err, CudaBackend, BLOCK};
use crate::backend::radix::RadixMemory;
use crate::error::{Error, Result};

impl CudaBackend {
    /// A zeroed u32 device buffer of at least one element.
    pub(super) fn alloc_u32(&self, len: usize, what: &str) -> Result<CudaSlice<u32>> {
        self.stream
            .alloc_zeros::<u32>(len.max(1))
            .map_err(cuda_err(format!("{what}: allocate {len} u32")))
    }

    /// Copies u32 host data to a new device buffer (one element at least).
    pub(super) fn upload_u32(&self, data: &[u32], what: &str) -> Result<CudaSlice<u32>> {
        if data.is_empty() {
            return self.alloc_u32(0, what);
        }
        self.stream
            .clone_htod(data)
            .map_err(cuda_err(format!("{what}: upload")))
    }

    /// Copies the first `len` elements of a u32 device buffer to the host.
    pub(super) fn download_u32(
        &self,
        buf: &CudaSlice<u32>,
        len: usize,
        what: &str,
    ) -> Result<Vec<u32>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        self.stream
            .clone_dtoh(&buf.slice(..len))
            .map_err(cuda_err(format!("{what}: download")))
    }

    /// The launch shape of a grid-stride histogram pass over `len` elements.
    pub(super) fn radix_hist_config(&self, len: usize) -> LaunchConfig {
        let blocks = len
            .div_ceil(BLOCK as usize * 8)
            .clamp(1, self.sm_count as usize * 4);
        LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

/// The launch shape of a count or apply pass over `g` segments (one block each), or an error
/// naming the kernel when `g` is outside 1..=65535.
pub(super) fn segment_config(g: usize, kernel: &str) -> Result<LaunchConfig> {
    if !(1..=65_535).contains(&g) {
        return Err(Error::Cuda(format!(
            "{kernel}: {g} segments (1..=65535 allowed)"
        )));
    }
    Ok(LaunchConfig {
        grid_dim: (g as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    })
}

impl RadixMemory for CudaBackend {
    type Buf = CudaSlice<u32>;
    fn zeros(&self, len: usize, what: &str) -> Result<CudaSlice<u32>> {
        self.alloc_u32(len, what)
    }
    fn clear(&self, buf: &mut CudaSlice<u32>, what: &str) -> Result<()> {
        self.stream
            .memset_zeros(buf)
            .map_err(cuda_err(format!("{what}: clear")))
    }
    fn upload(&self, data: &[u32], what: &str) -> Result<CudaSlice<u32>> {
        self.upload_u32(data, what)
    }
    fn download(&self, buf: &CudaSlice<u32>, len: usize, what: &str) -> Result<Vec<u32>> {
        self.download_u32(buf, len, what)
    }
}

//! A test-only virtual GPU: a `libcuda.so` replacement that runs the CUDA driver API on the
//! CPU, interpreting the PTX that NVRTC produces.
//!
//! - [`ptx`] parses PTX once per module into a compact decoded form;
//! - [`exec`] runs kernels: threads run until a synchronisation point (`bar.sync`,
//!   `shfl.sync`, `vote.sync`), which is then resolved for the warp or block; every memory
//!   access is checked against its allocation;
//! - [`memory`] holds device allocations at fake device addresses;
//! - [`driver`] exports the `cu*` functions cudarc 0.19 resolves from `libcuda.so`;
//! - [`stats`] keeps per-launch counters (`VGPU_TRACE`, `VGPU_STATS`).
//!
//! See `tools/vgpu/README.md` for the environment variables and `tools/vgpu-env.sh`.

pub mod driver;
pub mod exec;
pub mod memory;
pub mod ptx;
pub mod stats;

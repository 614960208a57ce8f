//! suptickets: sparse neural-network training from scratch with Sup-tickets
//! (Yin et al., UAI 2022), on a rayon CPU backend and a CUDA backend with hand-written kernels.

pub mod alloc_tuning;
pub mod autograd;
pub mod backend;
pub mod bench;
pub mod data;
pub mod device;
pub mod dist;
pub mod error;
pub mod models;
pub mod nn;
pub mod optim;
pub mod rng;
pub mod sparse;
pub mod suptickets;
pub mod tensor;
pub mod train;

pub use device::Device;
pub use error::{Error, Result};
pub use tensor::Tensor;

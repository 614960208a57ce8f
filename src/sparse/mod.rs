//! Sparse training: masks and layer-wise density allocation (more methods land with the
//! sparse-training issue).

pub mod density;

pub use density::{layer_counts, layer_densities, DensityInit};

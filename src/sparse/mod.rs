//! Sparse training: layer-wise density allocation and masks (prune/grow methods land with the
//! sparse-training issue).

pub mod density;
pub mod mask;

pub use density::{layer_counts, layer_densities, DensityInit};
pub use mask::{init_random_masks, layer_densities_of, LayerDensity, MaskInit};

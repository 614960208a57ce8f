//! Sparse training: layer-wise density allocation and masks, and the prune (Ψ) and grow (Φ)
//! primitives on top of one deterministic masked top-k ([`topk`]), and the training
//! methods built from them (docs/computation.md, Methods) ([`methods`]).

pub mod density;
pub mod explore;
pub mod grow;
pub mod mask;
pub mod methods;
pub mod prune;
pub mod topk;

pub use density::{layer_counts, layer_densities, DensityInit};
pub use explore::{explore, Explored, GrowBy, Regrown};
pub use grow::{grow_gradient, grow_random};
pub use mask::{init_random_masks, layer_densities_of, LayerDensity, MaskInit};
pub use methods::{
    DropSchedule, MethodKind, SnipScope, SparseConfig, SparseMethod, SparseState, UpdateReport,
};
pub use prune::{prune_count, prune_magnitude_global, prune_magnitude_layerwise};
pub use topk::{active_counts, select_layers, topk_reference, Plan, Scores};

//! What a method carries across a checkpoint ([`SparseState`]) and what one mask update did
//! ([`UpdateReport`]).

use serde::{Deserialize, Serialize};

/// What a method must carry across a checkpoint (stored in its metadata as `sparse`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct SparseState {
    /// The method's name.
    pub method: String,
    /// Masks have been drawn (set once, before the first step).
    pub initialised: bool,
    /// Exploration (prune-and-grow) updates done.
    pub updates: u64,
    /// GraNet gradual-pruning steps done.
    pub prune_steps: u64,
    /// The step of the last mask change (0: none yet).
    pub last_update_step: u64,
    /// Σ over the steps so far of the per-example training FLOPs of each step (docs/computation.md,
    /// FLOPs).
    pub flops_sum: f64,
    /// Steps counted in `flops_sum`.
    pub flops_steps: u64,
}

/// What one mask update did (returned by [`super::SparseMethod::after_step`]).
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateReport {
    /// The step after which the update ran.
    pub step: u64,
    /// GraNet: the global target density of this pruning step.
    pub target_density: Option<f64>,
    /// GraNet: weights removed per maskable layer by the global pruning.
    pub globally_pruned: Vec<usize>,
    /// The drop fraction of the exploration (None: no exploration at this step).
    pub drop_fraction: Option<f64>,
    /// Weights pruned per maskable layer by the exploration.
    pub pruned: Vec<usize>,
    /// Weights grown per maskable layer by the exploration.
    pub grown: Vec<usize>,
    /// Active weights per maskable layer afterwards.
    pub active: Vec<usize>,
}

//! The catalogue of methods, [`MethodKind`], and where each one's own rule lives
//! ([`MethodKind::rule`]).

use serde::{Deserialize, Serialize};

use super::rule::Rule;
use super::{dense, granet, rigl, set, snip, static_mask};
use crate::error::{Error, Result};

/// A sparse-training method (docs/computation.md, Methods), chosen by `--method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MethodKind {
    /// Plain dense SGD, no masks.
    #[default]
    Dense,
    /// A random ERK/ER/uniform mask that never changes.
    Static,
    /// SNIP: top-K of |g ⊙ w| on one training batch at initialisation, never changes.
    Snip,
    /// SET: every ΔT, per-layer magnitude prune and random regrowth.
    Set,
    /// RigL: every ΔT, per-layer magnitude prune and gradient regrowth.
    Rigl,
    /// GraNet: gradual global magnitude pruning from d_i to d_f, plus RigL's exploration.
    Granet,
}

impl MethodKind {
    /// Every method, in the order listed in messages.
    pub const ALL: [MethodKind; 6] = [
        MethodKind::Dense,
        MethodKind::Static,
        MethodKind::Snip,
        MethodKind::Set,
        MethodKind::Rigl,
        MethodKind::Granet,
    ];

    /// The name used by `--method`, configuration files and reports.
    pub fn name(self) -> &'static str {
        match self {
            MethodKind::Dense => "dense",
            MethodKind::Static => "static",
            MethodKind::Snip => "snip",
            MethodKind::Set => "set",
            MethodKind::Rigl => "rigl",
            MethodKind::Granet => "granet",
        }
    }

    /// Parses a method name (case-insensitive).
    pub fn parse(s: &str) -> Result<MethodKind> {
        let l = s.trim().to_ascii_lowercase();
        MethodKind::ALL
            .into_iter()
            .find(|m| m.name() == l)
            .ok_or_else(|| {
                Error::Config(format!(
                    "--method: unknown method {s:?}; expected one of: dense, static, snip, set, rigl, granet"
                ))
            })
    }

    /// True for every method with masks.
    pub fn is_sparse(self) -> bool {
        self != MethodKind::Dense
    }

    /// True for the methods that change the mask during training (SET, RigL, GraNet).
    pub fn explores(self) -> bool {
        self.rule().explores()
    }

    /// True for the methods that regrow by the dense gradient during training (RigL, GraNet).
    pub fn grows_by_gradient(self) -> bool {
        self.explores() && self.rule().grows_by_gradient()
    }

    /// What this method says about itself: its initial mask, its initial density, whether it
    /// explores and by what it regrows, whether it prunes gradually.
    pub(crate) fn rule(self) -> &'static dyn Rule {
        match self {
            MethodKind::Dense => &dense::Dense,
            MethodKind::Static => &static_mask::Static,
            MethodKind::Snip => &snip::Snip,
            MethodKind::Set => &set::Set,
            MethodKind::Rigl => &rigl::Rigl,
            MethodKind::Granet => &granet::Granet,
        }
    }
}

impl std::fmt::Display for MethodKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for MethodKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<MethodKind> {
        MethodKind::parse(s)
    }
}

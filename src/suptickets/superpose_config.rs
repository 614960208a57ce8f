//! What a [`super::Superposer`] does (docs/computation.md, Sup-tickets): the averaging rule (CIA,
//! CAA, CIMA), the re-pruning mode (global, layer-wise) and their configuration.

use crate::backend::SuperposeParams;
use crate::error::{Error, Result};

/// How tickets are averaged into the superposed ticket (docs/computation.md, Sup-tickets).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Averaging {
    /// Connection-independent averaging, Eq. 4 (the paper's choice):
    /// S_k = (k·S_{k−1} + W_k) / (k + 1).
    Cia,
    /// Connection-aware averaging: per connection, the mean over the tickets in which it was
    /// active (running sum / activation count). The running value is the re-pruned S, as for
    /// CIA: a connection pruned from S restarts from 0 with its count kept.
    Caa,
    /// Connection-independent moving averaging: S_k = β·S_{k−1} + (1 − β)·W_k.
    Cima {
        /// The decay β (paper default 0.8).
        beta: f32,
    },
}

/// CIMA's default decay β.
pub const DEFAULT_CIMA_BETA: f32 = 0.8;

impl Averaging {
    /// Parses `cia`, `caa` or `cima` (CIMA with decay `beta`).
    pub fn parse(s: &str, beta: f32) -> Result<Averaging> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cia" => Ok(Averaging::Cia),
            "caa" => Ok(Averaging::Caa),
            "cima" => {
                if !(beta > 0.0 && beta < 1.0) {
                    return Err(Error::Config(format!(
                        "--cima-beta must be in (0, 1), got {beta}"
                    )));
                }
                Ok(Averaging::Cima { beta })
            }
            _ => Err(Error::Config(format!(
                "--average: unknown method {s:?}; expected one of: cia, caa, cima"
            ))),
        }
    }

    /// `cia`, `caa` or `cima`.
    pub fn name(self) -> &'static str {
        match self {
            Averaging::Cia => "cia",
            Averaging::Caa => "caa",
            Averaging::Cima { .. } => "cima",
        }
    }

    /// The kernel parameters that average ticket `k` ≥ 1 into S.
    pub fn params(self, k: usize) -> SuperposeParams {
        match self {
            Averaging::Cia => SuperposeParams::cia(k),
            Averaging::Caa => SuperposeParams::caa(),
            Averaging::Cima { beta } => SuperposeParams::cima(beta),
        }
    }

    /// (weight of W_k, weight of S_{k−1}) for tensors averaged without a mask (non-maskable
    /// parameters, batch-norm statistics): CIA and CAA (every position always active) give
    /// 1/(k+1) and k/(k+1), CIMA 1 − β and β.
    pub fn dense_coefficients(self, k: usize) -> (f32, f32) {
        match self {
            Averaging::Cia | Averaging::Caa => {
                let k = k as f64;
                ((1.0 / (k + 1.0)) as f32, (k / (k + 1.0)) as f32)
            }
            Averaging::Cima { beta } => (1.0 - beta, beta),
        }
    }
}

impl std::fmt::Display for Averaging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Averaging::Cima { beta } => write!(f, "cima(beta={beta})"),
            a => f.write_str(a.name()),
        }
    }
}

/// The averaging rule of `--average` (CIMA's β is its own option, `--cima-beta`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum AverageKind {
    /// Cumulative iterative averaging.
    Cia,
    /// Cumulative arithmetic averaging.
    Caa,
    /// Cumulative iterative moving averaging with β.
    Cima,
}

impl AverageKind {
    /// The rule with CIMA's `beta`.
    pub fn with_beta(self, beta: f32) -> Averaging {
        match self {
            AverageKind::Cia => Averaging::Cia,
            AverageKind::Caa => Averaging::Caa,
            AverageKind::Cima => Averaging::Cima { beta },
        }
    }
}

/// How the superposed ticket is re-pruned (docs/computation.md, Sup-tickets).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Reprune {
    /// Keep the K largest |S| over all masked tensors together (the reference code).
    Global,
    /// Keep, in each masked tensor, as many of the largest |S| as the ticket's mask has active
    /// positions there.
    Layerwise,
}

impl Reprune {
    /// Parses `global` or `layerwise`.
    pub fn parse(s: &str) -> Result<Reprune> {
        match s.trim().to_ascii_lowercase().as_str() {
            "global" => Ok(Reprune::Global),
            "layerwise" | "layer" | "per-layer" => Ok(Reprune::Layerwise),
            _ => Err(Error::Config(format!(
                "--reprune: unknown mode {s:?}; expected global or layerwise"
            ))),
        }
    }

    /// `global` or `layerwise`.
    pub fn name(self) -> &'static str {
        match self {
            Reprune::Global => "global",
            Reprune::Layerwise => "layerwise",
        }
    }
}

/// What a [`Superposer`] does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SuperposeConfig {
    /// The averaging rule.
    pub averaging: Averaging,
    /// The re-pruning mode.
    pub reprune: Reprune,
    /// Target density d of the global re-pruning over all maskable tensors: the masked tensors
    /// keep K = round(d·ΣN) − (elements of maskable tensors without a mask, which stay dense)
    /// positions. `None`: as many as the ticket's masks have active positions. Not used by
    /// the layerwise mode.
    pub density: Option<f64>,
    /// The first maskable tensor is frozen dense (`--dense-first-layer`): averaged and kept
    /// whole, outside every re-pruning, although it carries an all-ones mask.
    pub frozen_first: bool,
}

impl SuperposeConfig {
    /// The paper's configuration: CIA, global re-pruning to the ticket's active count.
    pub fn paper() -> SuperposeConfig {
        SuperposeConfig {
            averaging: Averaging::Cia,
            reprune: Reprune::Global,
            density: None,
            frozen_first: false,
        }
    }
}

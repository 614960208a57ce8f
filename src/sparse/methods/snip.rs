//! SNIP (Lee et al., 2019): the initial mask keeps the top-K connections by sensitivity
//! |∂L/∂w ⊙ w| on the run's first training batch, globally or per layer ([`SnipScope`]), and
//! never changes (a Sup-tickets cycle start regrows by the default |dense gradient|).

use serde::{Deserialize, Serialize};

use super::config::SparseConfig;
use super::layers::Layers;
use super::rule::Rule;
use crate::backend::SelectAction;
use crate::error::{Error, Result};
use crate::nn::Network;
use crate::sparse::density::{layer_counts, layer_densities};
use crate::sparse::topk::{select_layers, Plan, Scores};
use crate::tensor::Tensor;
use crate::train::hooks::FirstBatch;

/// Which top-K SNIP takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SnipScope {
    /// One top-K over all maskable tensors together (the SNIP paper).
    #[default]
    Global,
    /// Per layer, with the counts of the `--init` density allocation.
    Layer,
}

impl SnipScope {
    /// `global` or `layer`.
    pub fn name(self) -> &'static str {
        match self {
            SnipScope::Global => "global",
            SnipScope::Layer => "layer",
        }
    }

    /// Parses `global` or `layer`.
    pub fn parse(s: &str) -> Result<SnipScope> {
        match s.trim().to_ascii_lowercase().as_str() {
            "global" => Ok(SnipScope::Global),
            "layer" | "layerwise" | "per-layer" => Ok(SnipScope::Layer),
            _ => Err(Error::Config(format!(
                "--snip-scope: unknown scope {s:?}; expected global or layer"
            ))),
        }
    }
}

/// SNIP: connection sensitivity at initialisation.
pub(crate) struct Snip;

impl Rule for Snip {
    /// SNIP's top-K of |g ⊙ w| on the first training batch: a training-mode forward and
    /// backward of the dense network whose batch-norm statistics update is undone.
    fn init_mask(
        &self,
        cfg: &SparseConfig,
        layers: &Layers,
        net: &mut Network,
        first_batch: FirstBatch,
    ) -> Result<()> {
        let (x, y) = first_batch()?;
        let scores = sensitivity(layers, net, &x, &y)?;
        let d = cfg.density();
        let counts: Vec<usize>;
        let plan = match cfg.snip_scope {
            SnipScope::Global => Plan::Global(layers.global_budget(d)),
            SnipScope::Layer => {
                let shapes: Vec<Vec<usize>> = net
                    .store
                    .maskable_ids()
                    .iter()
                    .map(|&id| net.store.param(id).value.shape().to_vec())
                    .collect();
                let dens = layer_densities(&shapes, d, cfg.init, cfg.dense_first_layer)?;
                // The frozen layer keeps its all-ones mask: it takes no part in the selection.
                counts = layer_counts(&shapes, &dens)
                    .into_iter()
                    .zip(&layers.frozen)
                    .filter(|(_, &f)| !f)
                    .map(|(c, _)| c)
                    .collect();
                Plan::PerLayer(&counts)
            }
        };
        layers.without_frozen(&mut net.store, |s| {
            select_layers(s, Scores::Tensors(&scores), plan, SelectAction::Keep)
        })?;
        Ok(())
    }
}

/// |∂L/∂w ⊙ w| of every non-frozen maskable tensor on (x, y), indexed like `store.params`; gives
/// every maskable tensor an all-ones mask (the frozen ones keep it).
fn sensitivity(
    layers: &Layers,
    net: &mut Network,
    x: &Tensor,
    y: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    let buffers = net.store.buffers.clone();
    let out = net.forward_backward_with(x, y, true)?;
    net.store.buffers = buffers;
    let ids = net.store.maskable_ids();
    let mut scores: Vec<Option<Tensor>> = vec![None; net.store.params.len()];
    for (l, &id) in ids.iter().enumerate() {
        let p = &mut net.store.params[id.0];
        p.set_mask(Some(Tensor::full(p.value.shape(), 1.0, &p.value.device())?));
        if layers.frozen[l] {
            continue;
        }
        let g = out.grads[id.0]
            .as_ref()
            .ok_or_else(|| Error::Config(format!("snip: no gradient for {}", p.name)))?;
        scores[id.0] = Some(p.value.backend().mul(g, &p.value)?);
    }
    Ok(scores)
}

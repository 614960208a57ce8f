//! FLOP accounting (RigL convention, docs/computation.md, FLOPs): from a traced forward pass
//! ([`Network::trace`]), the dense forward FLOPs of one example f_D = 2·Σ multiply-adds of every
//! conv and linear layer, the per-layer table (parameters, FLOPs, density), the sparse forward
//! FLOPs f_S = Σ_l d_l·FLOPs_l, and training FLOPs per example per step by method.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::nn::{LayerKind, Network};

/// One conv or linear layer of the FLOP table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerFlops {
    /// Weight name (PyTorch naming), e.g. `layer1.0.conv1.weight`.
    pub name: String,
    /// `conv` or `linear`.
    pub kind: String,
    /// Weight shape (`[c_out, c_in, k, k]` or `[out, in]`).
    pub shape: Vec<usize>,
    /// Output shape of one example (`[c, h, w]` or `[out]`).
    pub out_shape: Vec<usize>,
    /// Weights in the tensor.
    pub params: usize,
    /// Nonzero weights (from the mask; all of them without one).
    pub nonzero: usize,
    /// Dense forward FLOPs of one example (2 per multiply-add).
    pub flops: u64,
    /// Fraction of weights kept: nonzeros of the mask / numel, or 1 without a mask.
    pub density: f64,
    /// 1 − density.
    #[serde(default)]
    pub sparsity: f64,
}

impl LayerFlops {
    /// Sets the nonzero count and the density and sparsity that follow from it.
    pub fn set_nonzero(&mut self, nonzero: usize) {
        self.nonzero = nonzero;
        self.density = if self.params == 0 {
            1.0
        } else {
            nonzero as f64 / self.params as f64
        };
        self.sparsity = 1.0 - self.density;
    }

    /// Forward FLOPs of one example at this layer's density, d·FLOPs.
    pub fn sparse_flops(&self) -> f64 {
        self.density * self.flops as f64
    }
}

/// The FLOP table of a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlopsTable {
    /// Every conv and linear layer, in execution order.
    pub layers: Vec<LayerFlops>,
    /// All trainable parameters (biases and batch norm included).
    pub params: usize,
    /// Parameters of the maskable tensors (conv and linear weights).
    pub maskable_params: usize,
}

/// How a model is trained, for the training-FLOPs formulas (the method of `--method`).
pub use crate::sparse::methods::MethodKind as Method;

/// Training FLOPs of one example for one step (RigL convention, docs/computation.md, FLOPs), from
/// the sparse and dense forward FLOPs f_S and f_D: dense 3f_D; static, SNIP and SET 3f_S; RigL and
/// GraNet (3f_S·ΔT + 2f_S + f_D)/(ΔT + 1) while exploring with interval ΔT (`exploring = Some(ΔT)`:
/// one dense gradient every ΔT steps, amortised), 3f_S otherwise. `Some(0)` is a step that computes
/// the dense gradient itself (2f_S + f_D: a Sup-tickets cycle start). The one place the formula is
/// written: the sparse methods, the cycles and the report all call it.
pub fn step_flops(method: Method, f_s: f64, f_d: f64, exploring: Option<usize>) -> f64 {
    match (method, exploring) {
        (Method::Dense, _) => 3.0 * f_d,
        (Method::Rigl | Method::Granet, Some(dt)) => {
            let dt = dt as f64;
            (3.0 * f_s * dt + 2.0 * f_s + f_d) / (dt + 1.0)
        }
        _ => 3.0 * f_s,
    }
}

impl FlopsTable {
    /// Traces `net` (one eval-mode example; batch-norm statistics are not changed) and reads each
    /// layer's density from its mask.
    pub fn of(net: &mut Network) -> Result<FlopsTable> {
        let trace = net.trace()?;
        let mut layers = Vec::with_capacity(trace.len());
        for t in trace {
            let p = net.store.param(t.param);
            let params = p.value.numel();
            let nonzero = match p.mask() {
                Some(m) => m.to_vec()?.iter().filter(|&&v| v != 0.0).count(),
                None => params,
            };
            layers.push(LayerFlops {
                name: t.name,
                kind: match t.kind {
                    LayerKind::Conv => "conv".into(),
                    LayerKind::Linear => "linear".into(),
                },
                shape: t.weight_shape,
                out_shape: t.out_shape,
                params,
                nonzero,
                flops: 2 * t.macs_per_example,
                density: if params == 0 {
                    1.0
                } else {
                    nonzero as f64 / params as f64
                },
                sparsity: 0.0,
            });
            let l = layers.last_mut().expect("just pushed");
            l.sparsity = 1.0 - l.density;
        }
        Ok(FlopsTable {
            layers,
            params: net.store.num_params(),
            maskable_params: net.store.num_maskable(),
        })
    }

    /// Sets every layer to density `d` with exactly round(d·N_l) nonzeros (docs/computation.md,
    /// Masks: uniform), for what-if accounting without masks.
    pub fn with_uniform_density(mut self, density: f64) -> Result<FlopsTable> {
        if !(0.0..=1.0).contains(&density) {
            return Err(Error::Config(format!(
                "--sparsity must be in [0, 1], got a density of {density}"
            )));
        }
        for l in &mut self.layers {
            l.set_nonzero((density * l.params as f64).round() as usize);
        }
        Ok(self)
    }

    /// Sets the nonzero count of the layers named in `counts` (weight name, nonzeros), e.g.
    /// from the density allocation ([`crate::sparse::layer_counts`]) without drawing masks.
    pub fn with_nonzero(mut self, counts: &[(String, usize)]) -> Result<FlopsTable> {
        for (name, n) in counts {
            let l = self
                .layers
                .iter_mut()
                .find(|l| &l.name == name)
                .ok_or_else(|| Error::Config(format!("no traced layer {name}")))?;
            l.set_nonzero((*n).min(l.params));
        }
        Ok(self)
    }

    /// f_D: dense forward FLOPs of one example.
    pub fn flops_dense(&self) -> u64 {
        self.layers.iter().map(|l| l.flops).sum()
    }

    /// f_S = Σ_l d_l·FLOPs_l: sparse forward FLOPs of one example.
    pub fn flops_sparse(&self) -> f64 {
        self.layers.iter().map(LayerFlops::sparse_flops).sum()
    }

    /// Nonzero weights over the traced layers.
    pub fn nonzero(&self) -> usize {
        self.layers.iter().map(|l| l.nonzero).sum()
    }

    /// Training FLOPs of one example per step under `method` at the table's densities, outside
    /// exploration (see [`step_flops`]).
    pub fn train_flops_per_step(&self, method: Method) -> f64 {
        step_flops(method, self.flops_sparse(), self.flops_dense() as f64, None)
    }

    /// Training FLOPs of `method` as a multiple of dense training (3·f_D).
    pub fn train_flops_multiple(&self, method: Method) -> f64 {
        let d = self.train_flops_per_step(Method::Dense);
        if d == 0.0 {
            1.0
        } else {
            self.train_flops_per_step(method) / d
        }
    }

    /// Test (inference) FLOPs as a multiple of dense inference, f_S/f_D.
    pub fn test_flops_multiple(&self) -> f64 {
        let d = self.flops_dense() as f64;
        if d == 0.0 {
            1.0
        } else {
            self.flops_sparse() / d
        }
    }

    /// The table as plain text: one row per layer and a total row.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{:<40} {:<18} {:>12} {:>12} {:>16} {:>8} {:>8}\n",
            "layer", "shape", "params", "nonzero", "FLOPs", "density", "sparsity"
        );
        for l in &self.layers {
            s += &format!(
                "{:<40} {:<18} {:>12} {:>12} {:>16} {:>8.4} {:>8.4}\n",
                l.name,
                shape_str(&l.shape),
                l.params,
                l.nonzero,
                l.flops,
                l.density,
                l.sparsity
            );
        }
        let (p, nz) = (
            self.layers.iter().map(|l| l.params).sum::<usize>(),
            self.nonzero(),
        );
        s += &format!(
            "{:<40} {:<18} {:>12} {:>12} {:>16} {:>8.4} {:>8.4}\n",
            "total (conv+linear)",
            "",
            p,
            nz,
            self.flops_dense(),
            if p == 0 { 1.0 } else { nz as f64 / p as f64 },
            if p == 0 {
                0.0
            } else {
                1.0 - nz as f64 / p as f64
            }
        );
        s += &format!(
            "parameters: {} (maskable {}), dense forward FLOPs/example f_D = {} ({:.4} GFLOP), \
             sparse f_S = {:.0} ({:.4} of dense)\n",
            self.params,
            self.maskable_params,
            self.flops_dense(),
            self.flops_dense() as f64 / 1e9,
            self.flops_sparse(),
            self.test_flops_multiple()
        );
        s
    }

    /// The table as Markdown.
    pub fn to_markdown(&self) -> String {
        layers_markdown(&self.layers)
    }

    /// The JSON object of `suptickets flops --json`:
    /// `{"params","maskable_params","flops_dense","flops_sparse","layers":[{"name","shape","params","flops","density"}]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "params": self.params,
            "maskable_params": self.maskable_params,
            "flops_dense": self.flops_dense(),
            "flops_sparse": self.flops_sparse(),
            "train_flops_multiple": self.train_flops_multiple(if self.test_flops_multiple() < 1.0 { Method::Static } else { Method::Dense }),
            "test_flops_multiple": self.test_flops_multiple(),
            "layers": self.layers.iter().map(|l| serde_json::json!({
                "name": l.name,
                "kind": l.kind,
                "shape": l.shape,
                "out_shape": l.out_shape,
                "params": l.params,
                "nonzero": l.nonzero,
                "flops": l.flops,
                "density": l.density,
                "sparsity": l.sparsity,
            })).collect::<Vec<_>>(),
        })
    }
}

/// `64x3x3x3` style shape string.
pub fn shape_str(s: &[usize]) -> String {
    s.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

/// The per-layer table as Markdown (the paper's Table 11): name, shape, params, nonzeros,
/// FLOPs, density and sparsity, and a total row.
pub fn layers_markdown(layers: &[LayerFlops]) -> String {
    let mut s = String::from(
        "| layer | shape | params | nonzero | FLOPs | density | sparsity |\n|---|---|---:|---:|---:|---:|---:|\n",
    );
    for l in layers {
        s += &format!(
            "| `{}` | {} | {} | {} | {} | {:.4} | {:.4} |\n",
            l.name,
            shape_str(&l.shape),
            l.params,
            l.nonzero,
            l.flops,
            l.density,
            l.sparsity
        );
    }
    let p: usize = layers.iter().map(|l| l.params).sum();
    let nz: usize = layers.iter().map(|l| l.nonzero).sum();
    let d = if p == 0 { 1.0 } else { nz as f64 / p as f64 };
    s += &format!(
        "| **total** | | {} | {} | {} | {:.4} | {:.4} |\n",
        p,
        nz,
        layers.iter().map(|l| l.flops).sum::<u64>(),
        d,
        1.0 - d
    );
    s
}

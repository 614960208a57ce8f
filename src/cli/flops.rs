//! `suptickets flops`: the per-layer parameter and FLOP table of a model, dense or at a global
//! sparsity (the density allocation only; no masks drawn).

use clap::Args;

use suptickets::error::{Error, Result};
use suptickets::models::{build, ModelConfig};
use suptickets::sparse::density::{layer_counts, layer_densities, DensityInit};
use suptickets::train::FlopsTable;

/// `flops` arguments.
#[derive(Args, Debug)]
pub struct FlopsArgs {
    /// Model name.
    #[arg(long)]
    model: String,
    /// Output classes.
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Input size HxWxC (default 32x32x3; 224x224x3 for resnet50-imagenet).
    #[arg(long, value_name = "HxWxC")]
    input: Option<String>,
    /// Channel multiplier.
    #[arg(long, default_value_t = 1.0)]
    width: f32,
    /// Global sparsity of the maskable tensors (0 = dense).
    #[arg(long, default_value_t = 0.0)]
    sparsity: f64,
    /// Layer-wise density allocation for --sparsity: uniform, er or erk.
    #[arg(long, default_value = "erk")]
    init: String,
    /// Keep the first conv dense under --sparsity.
    #[arg(long)]
    dense_first_layer: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Parses `HxWxC` (or `HxW`, with C = 3).
fn parse_input(s: &str) -> Result<(usize, usize, usize)> {
    let v: Vec<std::result::Result<usize, _>> = s.split(['x', 'X']).map(str::parse).collect();
    match v[..] {
        [Ok(h), Ok(w), Ok(c)] if h > 0 && w > 0 && c > 0 => Ok((h, w, c)),
        [Ok(h), Ok(w)] if h > 0 && w > 0 => Ok((h, w, 3)),
        _ => Err(Error::Config(format!(
            "--input: expected HxWxC (e.g. 32x32x3), got {s:?}"
        ))),
    }
}

/// Prints the table of `a.model`.
pub fn cmd_flops(a: FlopsArgs) -> Result<()> {
    let (h, w, c) = match &a.input {
        Some(s) => parse_input(s)?,
        None => {
            let s = if a.model.eq_ignore_ascii_case("resnet50-imagenet") {
                224
            } else {
                32
            };
            (s, s, 3)
        }
    };
    if h != w {
        return Err(Error::Config(format!(
            "--input: the models take square images, got {h}x{w}"
        )));
    }
    if !(0.0..1.0).contains(&a.sparsity) {
        return Err(Error::Config(format!(
            "--sparsity must be in [0, 1), got {}",
            a.sparsity
        )));
    }
    let init = DensityInit::parse(&a.init)?;
    let mut net = build(&ModelConfig {
        name: a.model.clone(),
        num_classes: a.classes,
        in_channels: c,
        image_size: Some(h),
        width: a.width,
        seed: 0,
    })?;
    let mut table = FlopsTable::of(&mut net)?;
    if a.sparsity > 0.0 || a.dense_first_layer {
        // The density allocation (docs/computation.md, Masks) (exact counts round(d_l · N_l)); no
        // masks drawn.
        let ids = net.store.maskable_ids();
        let shapes: Vec<Vec<usize>> = ids
            .iter()
            .map(|&id| net.store.param(id).value.shape().to_vec())
            .collect();
        let dens = layer_densities(&shapes, 1.0 - a.sparsity, init, a.dense_first_layer)?;
        let counts = layer_counts(&shapes, &dens);
        let named: Vec<(String, usize)> = ids
            .iter()
            .zip(counts)
            .map(|(&id, k)| (net.store.param(id).name.clone(), k))
            .collect();
        table = table.with_nonzero(&named)?;
    }
    if a.json {
        say!(
            "{}",
            serde_json::to_string_pretty(&table.to_json())
                .map_err(|e| Error::Config(e.to_string()))?
        );
    } else {
        say!(
            "{} ({} classes, input {h}x{w}x{c}, width {}{})",
            net.arch,
            a.classes,
            a.width,
            if a.sparsity > 0.0 || a.dense_first_layer {
                format!(
                    ", sparsity {} {}{}",
                    a.sparsity,
                    a.init,
                    if a.dense_first_layer {
                        ", dense first layer"
                    } else {
                        ""
                    }
                )
            } else {
                String::new()
            }
        );
        say!("{}", table.to_text().trim_end());
    }
    Ok(())
}

//! Wide ResNet WRN-d-k for CIFAR (Zagoruyko & Komodakis), as in the sparse-training code bases:
//! pre-activation basic blocks, widths 16 → 16k/32k/64k, (d−4)/6 blocks per group, a bias-free
//! 1×1 `convShortcut` when the channel count changes, final BN-ReLU, global average pool and
//! `fc` with bias; dropout 0. Names: `conv1`, `block1.layer.0.bn1`, ..., `bn1`, `fc`.

use crate::autograd::Var;
use crate::error::{Error, Result};
use crate::nn::{
    BatchNorm, BatchNormRelu, Conv2d, Forward, GlobalAvgPool, Layer, Linear, Network, ParamStore,
    Sequential,
};
use crate::rng::Rng;

/// One pre-activation block.
struct WideBlock {
    bn1: BatchNorm,
    conv1: Conv2d,
    bn2: BatchNorm,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
}

impl Layer for WideBlock {
    fn forward(&self, f: &mut Forward, x: Var) -> Result<Var> {
        let a = self.bn1.forward_act(f, x, None, true)?;
        let y = self.conv1.forward(f, a)?;
        let y = self.bn2.forward_act(f, y, None, true)?;
        let y = self.conv2.forward(f, y)?;
        // With a projection, the shortcut takes the pre-activated input (as the reference).
        let s = match &self.shortcut {
            Some(c) => c.forward(f, a)?,
            None => x,
        };
        f.tape.add(y, s)
    }
}

/// Builds WRN-`depth`-`k` for `size`×`size` inputs, channels further scaled by `width`.
pub fn wide_resnet(
    depth: usize,
    k: usize,
    num_classes: usize,
    in_channels: usize,
    size: usize,
    width: f32,
    rng: &mut Rng,
) -> Result<Network> {
    if depth < 10 || !(depth - 4).is_multiple_of(6) || k == 0 {
        return Err(Error::Config(format!(
            "wrn-{depth}-{k}: depth must be 6n+4 (10, 16, 22, 28, 40, ...) and k ≥ 1"
        )));
    }
    let n = (depth - 4) / 6;
    let widths = [16, 16 * k, 32 * k, 64 * k].map(|c| super::scaled(c, width));
    let mut store = ParamStore::default();
    let mut body = Sequential::new();
    body.push(Conv2d::new(
        &mut store,
        "conv1",
        in_channels,
        widths[0],
        3,
        1,
        1,
        false,
        rng,
    )?);
    let mut c_in = widths[0];
    for g in 0..3 {
        let c_out = widths[g + 1];
        for b in 0..n {
            let stride = if b == 0 && g > 0 { 2 } else { 1 };
            let name = format!("block{}.layer.{b}", g + 1);
            let s: &mut ParamStore = &mut store;
            let shortcut = if c_in != c_out {
                Some(Conv2d::new(
                    s,
                    &format!("{name}.convShortcut"),
                    c_in,
                    c_out,
                    1,
                    stride,
                    0,
                    false,
                    rng,
                )?)
            } else {
                None
            };
            body.push(WideBlock {
                bn1: BatchNorm::new(s, &format!("{name}.bn1"), c_in)?,
                conv1: Conv2d::new(
                    s,
                    &format!("{name}.conv1"),
                    c_in,
                    c_out,
                    3,
                    stride,
                    1,
                    false,
                    rng,
                )?,
                bn2: BatchNorm::new(s, &format!("{name}.bn2"), c_out)?,
                conv2: Conv2d::new(
                    s,
                    &format!("{name}.conv2"),
                    c_out,
                    c_out,
                    3,
                    1,
                    1,
                    false,
                    rng,
                )?,
                shortcut,
            });
            c_in = c_out;
        }
    }
    body.push(BatchNormRelu(BatchNorm::new(&mut store, "bn1", c_in)?));
    body.push(GlobalAvgPool);
    body.push(Linear::new(&mut store, "fc", c_in, num_classes, true, rng)?);
    Ok(Network {
        arch: format!("wrn-{depth}-{k}"),
        num_classes,
        input_shape: [in_channels, size, size],
        store,
        body: Box::new(body),
    })
}

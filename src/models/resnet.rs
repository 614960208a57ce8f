//! ResNets: the CIFAR variant (3×3 stem, no max-pool; basic blocks for 18/34, bottlenecks for
//! 50/101/152; `kuangliu/pytorch-cifar` naming: `layer1.0.conv1`, `shortcut.0`, `linear`) and
//! the ImageNet variant (7×7 stride-2 stem and 3×3 max-pool; torchvision naming:
//! `downsample.0`, `fc`).

use crate::autograd::Var;
use crate::error::{Error, Result};
use crate::nn::{
    BatchNorm, BatchNormRelu, Conv2d, Forward, GlobalAvgPool, Layer, Linear, MaxPool, Network,
    ParamStore, Sequential,
};
use crate::rng::Rng;

/// conv + BN on a residual shortcut.
struct Projection {
    conv: Conv2d,
    bn: BatchNorm,
}

impl Projection {
    fn forward(&self, f: &mut Forward, x: Var) -> Result<Var> {
        let y = self.conv.forward(f, x)?;
        self.bn.forward(f, y)
    }
}

/// Two 3×3 convs with a residual connection.
struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    shortcut: Option<Projection>,
}

impl Layer for BasicBlock {
    fn forward(&self, f: &mut Forward, x: Var) -> Result<Var> {
        let y = self.conv1.forward(f, x)?;
        let y = self.bn1.forward_act(f, y, None, true)?;
        let y = self.conv2.forward(f, y)?;
        let s = match &self.shortcut {
            Some(p) => p.forward(f, x)?,
            None => x,
        };
        // relu(bn2(y) + s) as one fused op.
        self.bn2.forward_act(f, y, Some(s), true)
    }
}

/// 1×1 → 3×3 (strided) → 1×1 (×4 channels) with a residual connection.
struct Bottleneck {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Conv2d,
    bn3: BatchNorm,
    shortcut: Option<Projection>,
}

impl Layer for Bottleneck {
    fn forward(&self, f: &mut Forward, x: Var) -> Result<Var> {
        let mut y = x;
        for (conv, bn) in [(&self.conv1, &self.bn1), (&self.conv2, &self.bn2)] {
            y = conv.forward(f, y)?;
            y = bn.forward_act(f, y, None, true)?;
        }
        let y = self.conv3.forward(f, y)?;
        let s = match &self.shortcut {
            Some(p) => p.forward(f, x)?,
            None => x,
        };
        // relu(bn3(y) + s) as one fused op.
        self.bn3.forward_act(f, y, Some(s), true)
    }
}

/// Which stem and naming convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResNetStyle {
    /// 3×3 stride-1 stem, no max-pool, `shortcut.*`, classifier `linear`.
    Cifar,
    /// 7×7 stride-2 stem + max-pool, `downsample.*`, classifier `fc` with bias.
    ImageNet,
}

/// Block kind and blocks per stage for a depth.
fn layout(depth: usize) -> Result<(bool, [usize; 4])> {
    Ok(match depth {
        18 => (false, [2, 2, 2, 2]),
        34 => (false, [3, 4, 6, 3]),
        50 => (true, [3, 4, 6, 3]),
        101 => (true, [3, 4, 23, 3]),
        152 => (true, [3, 8, 36, 3]),
        _ => {
            return Err(Error::Config(format!(
                "resnet depth {depth} is not one of 18, 34, 50, 101, 152"
            )))
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn projection(
    store: &mut ParamStore,
    name: &str,
    style: ResNetStyle,
    c_in: usize,
    c_out: usize,
    stride: usize,
    rng: &mut Rng,
) -> Result<Projection> {
    let sc = if style == ResNetStyle::Cifar {
        "shortcut"
    } else {
        "downsample"
    };
    Ok(Projection {
        conv: Conv2d::new(
            store,
            &format!("{name}.{sc}.0"),
            c_in,
            c_out,
            1,
            stride,
            0,
            false,
            rng,
        )?,
        bn: BatchNorm::new(store, &format!("{name}.{sc}.1"), c_out)?,
    })
}

/// A bias-free `k`×`k` conv named `name`.
#[allow(clippy::too_many_arguments)]
fn conv(
    store: &mut ParamStore,
    name: &str,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    rng: &mut Rng,
) -> Result<Conv2d> {
    Conv2d::new(store, name, c_in, c_out, k, stride, pad, false, rng)
}

/// The projection shortcut of block `name` when its stride or channel count changes.
fn shortcut(
    store: &mut ParamStore,
    name: &str,
    style: ResNetStyle,
    (c_in, c_out): (usize, usize),
    stride: usize,
    rng: &mut Rng,
) -> Result<Option<Projection>> {
    if stride != 1 || c_in != c_out {
        Ok(Some(projection(
            store, name, style, c_in, c_out, stride, rng,
        )?))
    } else {
        Ok(None)
    }
}

/// Basic block `name` (`c_in` → `planes` channels); its parameters are created shortcut first,
/// then conv1, bn1, conv2, bn2.
fn basic_block(
    s: &mut ParamStore,
    name: &str,
    style: ResNetStyle,
    (c_in, planes): (usize, usize),
    stride: usize,
    rng: &mut Rng,
) -> Result<BasicBlock> {
    let shortcut = shortcut(s, name, style, (c_in, planes), stride, rng)?;
    Ok(BasicBlock {
        conv1: conv(s, &format!("{name}.conv1"), c_in, planes, 3, stride, 1, rng)?,
        bn1: BatchNorm::new(s, &format!("{name}.bn1"), planes)?,
        conv2: conv(s, &format!("{name}.conv2"), planes, planes, 3, 1, 1, rng)?,
        bn2: BatchNorm::new(s, &format!("{name}.bn2"), planes)?,
        shortcut,
    })
}

/// Bottleneck block `name` (`c_in` → 4·`planes` channels); its parameters are created shortcut
/// first, then conv1, bn1, conv2, bn2, conv3, bn3.
fn bottleneck_block(
    s: &mut ParamStore,
    name: &str,
    style: ResNetStyle,
    (c_in, planes): (usize, usize),
    stride: usize,
    rng: &mut Rng,
) -> Result<Bottleneck> {
    let c_out = planes * 4;
    let shortcut = shortcut(s, name, style, (c_in, c_out), stride, rng)?;
    Ok(Bottleneck {
        conv1: conv(s, &format!("{name}.conv1"), c_in, planes, 1, 1, 0, rng)?,
        bn1: BatchNorm::new(s, &format!("{name}.bn1"), planes)?,
        conv2: conv(
            s,
            &format!("{name}.conv2"),
            planes,
            planes,
            3,
            stride,
            1,
            rng,
        )?,
        bn2: BatchNorm::new(s, &format!("{name}.bn2"), planes)?,
        conv3: conv(s, &format!("{name}.conv3"), planes, c_out, 1, 1, 0, rng)?,
        bn3: BatchNorm::new(s, &format!("{name}.bn3"), c_out)?,
        shortcut,
    })
}

/// The stem: conv1 (3×3 stride 1, or 7×7 stride 2 for ImageNet), bn1, ReLU, and the ImageNet
/// max-pool.
fn push_stem(
    body: &mut Sequential,
    store: &mut ParamStore,
    style: ResNetStyle,
    (in_channels, c0): (usize, usize),
    rng: &mut Rng,
) -> Result<()> {
    match style {
        ResNetStyle::Cifar => body.push(conv(store, "conv1", in_channels, c0, 3, 1, 1, rng)?),
        ResNetStyle::ImageNet => body.push(conv(store, "conv1", in_channels, c0, 7, 2, 3, rng)?),
    }
    body.push(BatchNormRelu(BatchNorm::new(store, "bn1", c0)?));
    if style == ResNetStyle::ImageNet {
        body.push(MaxPool {
            k: 3,
            stride: 2,
            pad: 1,
        });
    }
    Ok(())
}

/// Builds a ResNet of `depth` for `size`×`size` inputs with channels scaled by `width`.
/// CIFAR ResNet-50+ has a bias-free classifier (as the reference code, 23,520,832 parameters);
/// ResNet-18/34 and the ImageNet variant have a bias.
pub fn resnet(
    depth: usize,
    style: ResNetStyle,
    num_classes: usize,
    in_channels: usize,
    size: usize,
    width: f32,
    rng: &mut Rng,
) -> Result<Network> {
    let (bottleneck, blocks) = layout(depth)?;
    let mut store = ParamStore::default();
    let mut body = Sequential::new();
    let c0 = super::scaled(64, width);
    push_stem(&mut body, &mut store, style, (in_channels, c0), rng)?;
    let mut c_in = c0;
    for (stage, &n) in blocks.iter().enumerate() {
        let planes = super::scaled(64 << stage, width);
        for b in 0..n {
            let stride = if b == 0 && stage > 0 { 2 } else { 1 };
            let name = format!("layer{}.{b}", stage + 1);
            let s = &mut store;
            if bottleneck {
                body.push(bottleneck_block(
                    s,
                    &name,
                    style,
                    (c_in, planes),
                    stride,
                    rng,
                )?);
                c_in = planes * 4;
            } else {
                body.push(basic_block(s, &name, style, (c_in, planes), stride, rng)?);
                c_in = planes;
            }
        }
    }
    body.push(GlobalAvgPool);
    let (fc_name, fc_bias) = match style {
        ResNetStyle::Cifar => ("linear", !bottleneck),
        ResNetStyle::ImageNet => ("fc", true),
    };
    body.push(Linear::new(
        &mut store,
        fc_name,
        c_in,
        num_classes,
        fc_bias,
        rng,
    )?);
    let arch = match style {
        ResNetStyle::Cifar => format!("resnet{depth}"),
        ResNetStyle::ImageNet => format!("resnet{depth}-imagenet"),
    };
    Ok(Network {
        arch,
        num_classes,
        input_shape: [in_channels, size, size],
        store,
        body: Box::new(body),
    })
}

//! VGG-16, the "vgg-like" CIFAR variant of the sparse-training code bases: 13 conv 3×3 (pad 1,
//! bias) each followed by BN and ReLU, five 2×2 max-pools, and the head
//! Linear(512,512)-ReLU-BN1d-Linear(512,C). Parameter names follow the PyTorch module
//! (`features.{i}.*`, `classifier.{i}.*`).

use crate::error::Result;
use crate::nn::{
    BatchNorm, BatchNormRelu, Conv2d, Flatten, Linear, MaxPool, Network, ParamStore, Relu,
    Sequential,
};
use crate::rng::Rng;

/// `None` is a 2×2 max-pool.
const CONFIG_D: [Option<usize>; 18] = [
    Some(64),
    Some(64),
    None,
    Some(128),
    Some(128),
    None,
    Some(256),
    Some(256),
    Some(256),
    None,
    Some(512),
    Some(512),
    Some(512),
    None,
    Some(512),
    Some(512),
    Some(512),
    None,
];

/// Builds VGG-16 for `size`×`size` inputs (`size` divisible by 32) with channels scaled by `width`.
pub fn vgg16(
    num_classes: usize,
    in_channels: usize,
    size: usize,
    width: f32,
    rng: &mut Rng,
) -> Result<Network> {
    let mut store = ParamStore::default();
    let mut body = Sequential::new();
    let mut c_in = in_channels;
    // `i` is the index in PyTorch's `features` Sequential: conv, BN, ReLU take three slots.
    let mut i = 0;
    for v in CONFIG_D {
        match v {
            None => {
                body.push(MaxPool {
                    k: 2,
                    stride: 2,
                    pad: 0,
                });
                i += 1;
            }
            Some(c) => {
                let c = super::scaled(c, width);
                body.push(Conv2d::new(
                    &mut store,
                    &format!("features.{i}"),
                    c_in,
                    c,
                    3,
                    1,
                    1,
                    true,
                    rng,
                )?);
                body.push(BatchNormRelu(BatchNorm::new(
                    &mut store,
                    &format!("features.{}", i + 1),
                    c,
                )?));
                c_in = c;
                i += 3;
            }
        }
    }
    // After five pools a 32×32 input is 1×1; larger inputs flatten to c·(size/32)².
    let flat = c_in * (size / 32) * (size / 32);
    let hidden = super::scaled(512, width);
    body.push(Flatten);
    body.push(Linear::new(
        &mut store,
        "classifier.0",
        flat,
        hidden,
        true,
        rng,
    )?);
    body.push(Relu);
    body.push(BatchNorm::new(&mut store, "classifier.2", hidden)?);
    body.push(Linear::new(
        &mut store,
        "classifier.3",
        hidden,
        num_classes,
        true,
        rng,
    )?);
    Ok(Network {
        arch: "vgg16".into(),
        num_classes,
        input_shape: [in_channels, size, size],
        store,
        body: Box::new(body),
    })
}

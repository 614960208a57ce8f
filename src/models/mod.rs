//! The model zoo and the name parser used by every subcommand (`--model`).

mod resnet;
mod vgg;
mod wide_resnet;

pub use resnet::{resnet, ResNetStyle};
pub use vgg::vgg16;
pub use wide_resnet::wide_resnet;

use crate::error::{Error, Result};
use crate::nn::Network;
use crate::rng::Rng;

/// The model names accepted by [`build`] (`wrn-D-K` stands for any valid depth and widen factor).
pub const MODEL_NAMES: &[&str] = &[
    "vgg16",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnet50-imagenet",
    "wrn-D-K (e.g. wrn-28-10, wrn-16-4)",
];

/// Channel count `c` scaled by a width multiplier (at least 1).
pub fn scaled(c: usize, width: f32) -> usize {
    ((c as f32 * width).round() as usize).max(1)
}

/// What to build.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// Model name (see [`MODEL_NAMES`]).
    pub name: String,
    /// Output classes.
    pub num_classes: usize,
    /// Input channels (3 for CIFAR, 1 for Fashion-MNIST).
    pub in_channels: usize,
    /// Input height and width; `None` picks 32 (224 for `resnet50-imagenet`).
    pub image_size: Option<usize>,
    /// Channel multiplier (1.0 = the reference model).
    pub width: f32,
    /// Initialisation seed.
    pub seed: u64,
}

impl ModelConfig {
    /// The reference model `name` for 32×32 RGB input.
    pub fn new(name: &str, num_classes: usize) -> ModelConfig {
        ModelConfig {
            name: name.into(),
            num_classes,
            in_channels: 3,
            image_size: None,
            width: 1.0,
            seed: 0,
        }
    }
}

/// Builds the named model with parameters initialised from `cfg.seed`.
pub fn build(cfg: &ModelConfig) -> Result<Network> {
    if !(cfg.width > 0.0 && cfg.width.is_finite()) {
        return Err(Error::Config(format!(
            "--width must be positive, got {}",
            cfg.width
        )));
    }
    if cfg.num_classes < 2 {
        return Err(Error::Config(format!(
            "a classifier needs at least 2 classes, got {}",
            cfg.num_classes
        )));
    }
    let mut rng = Rng::derive(cfg.seed, 0x1417);
    let name = cfg.name.to_ascii_lowercase();
    let (c, k, w) = (cfg.num_classes, cfg.in_channels, cfg.width);
    let size = cfg
        .image_size
        .unwrap_or(if name == "resnet50-imagenet" { 224 } else { 32 });
    if name == "vgg16" {
        if !size.is_multiple_of(32) {
            return Err(Error::Config(format!(
                "vgg16 needs an input size divisible by 32, got {size}"
            )));
        }
        return vgg16(c, k, size, w, &mut rng);
    }
    if name == "resnet50-imagenet" {
        return resnet(50, ResNetStyle::ImageNet, c, k, size, w, &mut rng);
    }
    if let Some(d) = name
        .strip_prefix("resnet")
        .and_then(|d| d.parse::<usize>().ok())
    {
        return resnet(d, ResNetStyle::Cifar, c, k, size, w, &mut rng);
    }
    if let Some(rest) = name.strip_prefix("wrn-") {
        let parts: Vec<Option<usize>> = rest.split('-').map(|p| p.parse().ok()).collect();
        if let [Some(d), Some(kk)] = parts[..] {
            return wide_resnet(d, kk, c, k, size, w, &mut rng);
        }
    }
    Err(Error::Config(format!(
        "unknown model {:?}; expected one of: {}",
        cfg.name,
        MODEL_NAMES.join(", ")
    )))
}

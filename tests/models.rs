//! Model construction: parameter counts against the reference models (torchvision;
//! docs/computation.md, Models), PyTorch-style names, and bad names.

use suptickets::models::{build, ModelConfig};

fn params(name: &str, classes: usize) -> usize {
    build(&ModelConfig::new(name, classes))
        .unwrap()
        .store
        .num_params()
}

#[test]
fn vgg16_parameter_count() {
    assert_eq!(params("vgg16", 10), 14_991_946);
    // 100 classes: the last Linear(512, C) grows by 90 × 513.
    assert_eq!(params("vgg16", 100), 14_991_946 + 90 * 513);
}

#[test]
fn resnet18_parameter_count() {
    assert_eq!(params("resnet18", 10), 11_173_962);
    assert_eq!(params("resnet18", 100), 11_173_962 + 90 * 513);
}

#[test]
fn resnet50_parameter_count() {
    // Bias-free classifier, as in the reference CIFAR code.
    assert_eq!(params("resnet50", 10), 23_520_832);
    assert_eq!(params("resnet50", 100), 23_520_832 + 90 * 2048);
}

#[test]
fn wrn_28_10_parameter_count() {
    assert_eq!(params("wrn-28-10", 10), 36_479_194);
    assert_eq!(params("wrn-28-10", 100), 36_479_194 + 90 * 641);
}

#[test]
fn resnet50_imagenet_parameter_count_matches_torchvision() {
    assert_eq!(params("resnet50-imagenet", 1000), 25_557_032);
}

#[test]
fn resnet34_parameter_count() {
    // kuangliu/pytorch-cifar ResNet34 with 10 classes.
    assert_eq!(params("resnet34", 10), 21_282_122);
}

#[test]
fn pytorch_names() {
    let net = build(&ModelConfig::new("resnet18", 10)).unwrap();
    let names: Vec<&str> = net.store.params.iter().map(|p| p.name.as_str()).collect();
    for n in [
        "conv1.weight",
        "bn1.weight",
        "layer1.0.conv1.weight",
        "layer2.0.shortcut.0.weight",
        "layer2.0.shortcut.1.bias",
        "linear.weight",
        "linear.bias",
    ] {
        assert!(names.contains(&n), "missing {n}");
    }
    let b: Vec<&str> = net.store.buffers.iter().map(|b| b.name.as_str()).collect();
    assert!(b.contains(&"bn1.running_mean") && b.contains(&"layer4.1.bn2.running_var"));
    let vgg = build(&ModelConfig::new("vgg16", 10)).unwrap();
    let names: Vec<&str> = vgg.store.params.iter().map(|p| p.name.as_str()).collect();
    for n in [
        "features.0.weight",
        "features.0.bias",
        "features.1.weight",
        "features.40.weight",
        "classifier.0.weight",
        "classifier.2.weight",
        "classifier.3.bias",
    ] {
        assert!(names.contains(&n), "missing {n} in {names:?}");
    }
    let wrn = build(&ModelConfig::new("wrn-16-4", 10)).unwrap();
    assert!(wrn
        .store
        .find("block1.layer.0.convShortcut.weight")
        .is_some());
    assert!(wrn.store.find("block3.layer.1.bn2.weight").is_some());
    assert!(wrn.store.find("fc.bias").is_some());
}

#[test]
fn maskable_tensors_are_conv_and_linear_weights() {
    let net = build(&ModelConfig::new("resnet18", 10)).unwrap();
    for p in &net.store.params {
        assert_eq!(
            p.is_maskable(),
            p.name.ends_with("weight") && p.value.shape().len() >= 2,
            "{}",
            p.name
        );
    }
    // 20 convs + 1 linear.
    assert_eq!(net.store.maskable_ids().len(), 21);
}

#[test]
fn width_scales_channels() {
    let mut cfg = ModelConfig::new("resnet18", 10);
    cfg.width = 0.25;
    let net = build(&cfg).unwrap();
    assert_eq!(net.store.params[0].value.shape(), &[16, 3, 3, 3]);
}

#[test]
fn bad_model_names_are_clear_errors() {
    for bad in ["vgg17", "resnet20", "wrn-27-10", "wrn-28", "lenet"] {
        let e = build(&ModelConfig::new(bad, 10)).err().unwrap().to_string();
        assert!(
            e.contains(bad.split('-').next().unwrap()) || e.contains("depth"),
            "{e}"
        );
    }
    let mut cfg = ModelConfig::new("vgg16", 10);
    cfg.width = 0.0;
    assert!(build(&cfg).is_err());
}

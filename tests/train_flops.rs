//! FLOP accounting against hand-computed per-layer numbers (2 FLOPs per multiply-add, conv and
//! linear layers only, as the PyTorch peer counts): VGG-16 ≈ 0.626 and ResNet-18 ≈ 1.111
//! GFLOP per 32×32 image.

use suptickets::models::{build, ModelConfig};
use suptickets::sparse::density::DensityInit;
use suptickets::sparse::mask::{init_random_masks, MaskInit};
use suptickets::train::flops::{FlopsTable, Method};

fn table(name: &str) -> FlopsTable {
    let mut net = build(&ModelConfig::new(name, 10)).unwrap();
    FlopsTable::of(&mut net).unwrap()
}

/// 2 · c_in · c_out · k² · (h·w) of a conv producing an h×w map.
fn conv(c_in: u64, c_out: u64, k: u64, hw: u64) -> u64 {
    2 * c_in * c_out * k * k * hw * hw
}

#[test]
fn vgg16_per_layer_flops() {
    let t = table("vgg16");
    let expected: Vec<u64> = vec![
        conv(3, 64, 3, 32),
        conv(64, 64, 3, 32),
        conv(64, 128, 3, 16),
        conv(128, 128, 3, 16),
        conv(128, 256, 3, 8),
        conv(256, 256, 3, 8),
        conv(256, 256, 3, 8),
        conv(256, 512, 3, 4),
        conv(512, 512, 3, 4),
        conv(512, 512, 3, 4),
        conv(512, 512, 3, 2),
        conv(512, 512, 3, 2),
        conv(512, 512, 3, 2),
        2 * 512 * 512,
        2 * 512 * 10,
    ];
    let got: Vec<u64> = t.layers.iter().map(|l| l.flops).collect();
    assert_eq!(got, expected);
    assert_eq!(t.layers[0].flops, 2 * 3 * 64 * 9 * 1024);
    assert_eq!(t.layers[0].name, "features.0.weight");
    assert_eq!(t.layers[0].shape, vec![64, 3, 3, 3]);
    assert_eq!(t.layers[0].params, 64 * 3 * 9);
    let total = t.flops_dense();
    assert_eq!(total, expected.iter().sum::<u64>());
    let g = total as f64 / 1e9;
    assert!((g - 0.626).abs() < 0.0015, "VGG-16 {g} GFLOP");
    // dense: every density 1, multiples 1
    assert!(t.layers.iter().all(|l| l.density == 1.0));
    assert_eq!(t.flops_sparse(), total as f64);
    assert_eq!(t.train_flops_multiple(Method::Dense), 1.0);
    assert_eq!(t.test_flops_multiple(), 1.0);
    assert_eq!(t.params, 14_991_946);
}

#[test]
fn resnet18_per_layer_flops() {
    let t = table("resnet18");
    let mut expected = vec![("conv1.weight".to_string(), conv(3, 64, 3, 32))];
    for b in 0..2 {
        for c in 1..=2 {
            expected.push((format!("layer1.{b}.conv{c}.weight"), conv(64, 64, 3, 32)));
        }
    }
    for (l, c_in, c, hw) in [(2, 64, 128, 16), (3, 128, 256, 8), (4, 256, 512, 4)] {
        expected.push((format!("layer{l}.0.conv1.weight"), conv(c_in, c, 3, hw)));
        expected.push((format!("layer{l}.0.conv2.weight"), conv(c, c, 3, hw)));
        expected.push((
            format!("layer{l}.0.shortcut.0.weight"),
            conv(c_in, c, 1, hw),
        ));
        expected.push((format!("layer{l}.1.conv1.weight"), conv(c, c, 3, hw)));
        expected.push((format!("layer{l}.1.conv2.weight"), conv(c, c, 3, hw)));
    }
    expected.push(("linear.weight".to_string(), 2 * 512 * 10));
    let got: Vec<(String, u64)> = t.layers.iter().map(|l| (l.name.clone(), l.flops)).collect();
    assert_eq!(got, expected);
    let total = t.flops_dense();
    assert_eq!(total, 2 * 555_422_720);
    let g = total as f64 / 1e9;
    assert!((g - 1.111).abs() < 0.001, "ResNet-18 {g} GFLOP");
}

#[test]
fn sparse_flops_follow_the_masks() {
    let mut net = build(&ModelConfig::new("resnet18", 10)).unwrap();
    let cfg = MaskInit {
        sparsity: 0.9,
        init: DensityInit::Uniform,
        dense_first_layer: false,
        seed: 1,
    };
    init_random_masks(&mut net.store, &cfg).unwrap();
    let t = FlopsTable::of(&mut net).unwrap();
    for l in &t.layers {
        assert_eq!(
            l.nonzero,
            (0.1 * l.params as f64).round() as usize,
            "{}",
            l.name
        );
        assert!((l.density - 0.1).abs() < 1e-3, "{} {}", l.name, l.density);
    }
    let fs: f64 = t.layers.iter().map(|l| l.density * l.flops as f64).sum();
    assert!((t.flops_sparse() - fs).abs() < 1e-3);
    assert!((t.test_flops_multiple() - 0.1).abs() < 1e-3);
    assert!((t.train_flops_multiple(Method::Static) - 0.1).abs() < 1e-3);
    assert_eq!(t.train_flops_multiple(Method::Dense), 1.0);
    // the analytic uniform density gives the same table
    let dense = table("resnet18").with_uniform_density(0.1).unwrap();
    assert_eq!(
        dense.layers.iter().map(|l| l.nonzero).collect::<Vec<_>>(),
        t.layers.iter().map(|l| l.nonzero).collect::<Vec<_>>()
    );
    assert!(table("vgg16").with_uniform_density(1.5).is_err());
}

#[test]
fn json_has_the_documented_keys() {
    let j = table("wrn-16-1").to_json();
    for k in [
        "params",
        "maskable_params",
        "flops_dense",
        "flops_sparse",
        "layers",
    ] {
        assert!(j.get(k).is_some(), "{k}");
    }
    let l = &j["layers"][0];
    for k in ["name", "shape", "params", "flops", "density"] {
        assert!(l.get(k).is_some(), "{k}");
    }
}

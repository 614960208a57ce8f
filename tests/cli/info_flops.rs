//! `info`, `flops` and `train --help`: the backends and kernels listed, the FLOP table and its
//! JSON, and the model names in the help.

use super::*;

#[test]
fn info_lists_backends_and_kernels() {
    let o = run(&["info"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains(env!("CARGO_PKG_VERSION")), "{s}");
    assert!(s.contains("cpu: available (rayon,"), "{s}");
    assert!(s.contains("cuda:"), "{s}");
    assert!(s.contains("nvrtc:"), "{s}");
    for k in suptickets::backend::registry::KERNELS {
        assert!(s.contains(k.name), "kernel {} missing", k.name);
    }
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn flops_table_and_json() {
    let o = run(&["flops", "--model", "vgg16", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["params"], 14_991_946);
    assert_eq!(
        j["flops_dense"].as_u64().unwrap(),
        j["flops_sparse"].as_f64().unwrap() as u64
    );
    let first = &j["layers"][0];
    assert_eq!(first["name"], "features.0.weight");
    assert_eq!(first["flops"], 2 * 3 * 64 * 9 * 1024);
    assert_eq!(first["shape"], serde_json::json!([64, 3, 3, 3]));
    assert_eq!(first["density"], 1.0);

    let o = run(&[
        "flops",
        "--model",
        "resnet18",
        "--classes",
        "100",
        "--input",
        "32x32x1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(
        s.contains("conv1.weight") && s.contains("linear.weight") && s.contains("total"),
        "{s}"
    );

    sparse_flops();
    flops_errors();
}

/// `flops` at a sparsity: the sparse/dense ratio, the dense first layer, ER on VGG-16.
fn sparse_flops() {
    let o = run(&[
        "flops",
        "--model",
        "resnet18",
        "--sparsity",
        "0.9",
        "--init",
        "uniform",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ratio = j["flops_sparse"].as_f64().unwrap() / j["flops_dense"].as_f64().unwrap();
    assert!((ratio - 0.1).abs() < 1e-3, "{ratio}");

    // the density allocation with a dense first layer: ERK counts it against the budget
    let o = run(&[
        "flops",
        "--model",
        "resnet18",
        "--width",
        "0.25",
        "--sparsity",
        "0.9",
        "--dense-first-layer",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let layers = j["layers"].as_array().unwrap();
    assert_eq!(layers[0]["density"], 1.0);
    assert_eq!(layers[0]["sparsity"], 0.0);
    let (nz, total) = layers.iter().fold((0u64, 0u64), |(a, b), l| {
        (
            a + l["nonzero"].as_u64().unwrap(),
            b + l["params"].as_u64().unwrap(),
        )
    });
    assert!(
        (nz as f64 - 0.1 * total as f64).abs() <= layers.len() as f64,
        "{nz} of {total}"
    );
    let o = run(&[
        "flops",
        "--model",
        "vgg16",
        "--sparsity",
        "0.95",
        "--init",
        "er",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("sparsity"), "{}", stdout(&o));
}

/// `flops` with a bad sparsity, density allocation, model or input shape fails clearly.
fn flops_errors() {
    fails_clearly(
        &run(&["flops", "--model", "vgg16", "--sparsity", "1.2"]),
        "--sparsity",
    );
    fails_clearly(
        &run(&[
            "flops",
            "--model",
            "vgg16",
            "--sparsity",
            "0.9",
            "--init",
            "xyz",
        ]),
        "--init",
    );

    fails_clearly(&run(&["flops", "--model", "alexnet"]), "unknown model");
    fails_clearly(
        &run(&["flops", "--model", "vgg16", "--input", "32by32"]),
        "--input",
    );
}

#[test]
fn train_help_lists_every_model() {
    let o = run(&["train", "--help"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let help = stdout(&o);
    for name in suptickets::models::MODEL_NAMES {
        let name = name.split_whitespace().next().unwrap();
        assert!(
            help.contains(&format!("`{name}`")),
            "train --help lacks {name}:\n{help}"
        );
    }
    assert!(
        !help.contains("suptickets::"),
        "an internal path in train --help:\n{help}"
    );
}

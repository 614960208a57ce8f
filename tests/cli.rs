//! The `suptickets` binary end to end: `info`, a one-epoch `train` on a small Fashion-MNIST
//! subset and its outputs, `eval` reproducing the report, `flops`, and clear non-panicking
//! errors for bad input. Data-dependent tests print a skip message when the Fashion-MNIST files
//! are missing, unless `CI` is set.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_suptickets"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run suptickets")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts a clean failure: non-zero exit, no panic, and `needle` in the message.
fn fails_clearly(o: &Output, needle: &str) {
    let e = stderr(o);
    assert!(!o.status.success(), "expected failure, stderr: {e}");
    assert!(!e.contains("panicked"), "panic: {e}");
    assert!(e.contains(needle), "expected {needle:?} in: {e}");
}

fn have_data() -> bool {
    match suptickets::data::load(
        suptickets::data::DatasetKind::FashionMnist,
        None,
        suptickets::data::Split::Test,
    ) {
        Ok(_) => true,
        Err(e) if std::env::var_os("CI").is_none() => {
            println!("skipped: Fashion-MNIST not available ({e}); run tools/setup.sh");
            false
        }
        Err(e) => panic!("CI needs Fashion-MNIST: {e}"),
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("suptickets-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

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
fn bad_flags_fail_clearly() {
    fails_clearly(
        &run(&[
            "train",
            "--model",
            "alexnet",
            "--quiet",
            "--out",
            tmp("bad-model").to_str().unwrap(),
        ]),
        "unknown model",
    );
    fails_clearly(
        &run(&["train", "--dataset", "mnist", "--quiet"]),
        "unknown dataset",
    );
    fails_clearly(
        &run(&["train", "--schedule", "linear", "--quiet"]),
        "linear",
    );
    fails_clearly(&run(&["train", "--epochs", "0", "--quiet"]), "--epochs");
    // sparse-method flags
    fails_clearly(
        &run(&["train", "--method", "lottery", "--quiet"]),
        "--method",
    );
    fails_clearly(
        &run(&["train", "--sparsity", "0.9", "--quiet"]),
        "--sparsity has no effect with --method dense",
    );
    fails_clearly(
        &run(&["train", "--method", "rigl", "--sparsity", "1.0", "--quiet"]),
        "--sparsity must be in [0, 1)",
    );
    fails_clearly(
        &run(&["train", "--method", "set", "--sparsity=-0.1", "--quiet"]),
        "--sparsity",
    );
    fails_clearly(
        &run(&[
            "train",
            "--method",
            "granet",
            "--sparsity",
            "0.8",
            "--initial-density",
            "0.1",
            "--quiet",
        ]),
        "--initial-density",
    );
    fails_clearly(
        &run(&[
            "train",
            "--method",
            "static",
            "--update-interval",
            "10",
            "--quiet",
        ]),
        "--update-interval has no effect with --method static",
    );
    fails_clearly(
        &run(&[
            "train",
            "--method",
            "rigl",
            "--drop-fraction",
            "2",
            "--quiet",
        ]),
        "--drop-fraction",
    );
    fails_clearly(
        &run(&[
            "train",
            "--method",
            "rigl",
            "--drop-schedule",
            "linear",
            "--quiet",
        ]),
        "--drop-schedule",
    );
    fails_clearly(
        &run(&[
            "train",
            "--method",
            "rigl",
            "--explore-until",
            "1.5",
            "--quiet",
        ]),
        "--explore-until",
    );
    fails_clearly(
        &run(&[
            "train",
            "--method",
            "snip",
            "--snip-scope",
            "net",
            "--quiet",
        ]),
        "--snip-scope",
    );
    fails_clearly(&run(&["train", "--no-such-flag"]), "--no-such-flag");

    // an unknown key in the TOML file is named
    let dir = tmp("bad-toml");
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.toml");
    std::fs::write(&f, "model = \"wrn-10-1\"\nlearning_rate = 0.1\n").unwrap();
    fails_clearly(
        &run(&["train", "--config", f.to_str().unwrap(), "--quiet"]),
        "learning_rate",
    );
    fails_clearly(
        &run(&["train", "--config", dir.join("nope.toml").to_str().unwrap()]),
        "nope.toml",
    );

    // CUDA on a machine without a GPU (or a build without CUDA): a clear device error
    if suptickets::Device::cuda(0).is_err() {
        fails_clearly(&run(&["train", "--device", "cuda", "--quiet"]), "error:");
        let o = run(&["train", "--device", "cuda", "--quiet"]);
        assert!(stderr(&o).to_lowercase().contains("cuda"), "{}", stderr(&o));
    }
    fails_clearly(&run(&["train", "--device", "tpu", "--quiet"]), "tpu");

    // a data directory that does not exist
    let missing = dir.join("no-data-here");
    let o = run(&[
        "train",
        "--data-dir",
        missing.to_str().unwrap(),
        "--model",
        "wrn-10-1",
        "--quiet",
        "--out",
        dir.join("run").to_str().unwrap(),
    ]);
    fails_clearly(&o, "no-data-here");

    fails_clearly(
        &run(&[
            "eval",
            "--checkpoint",
            dir.join("none.safetensors").to_str().unwrap(),
        ]),
        "none.safetensors",
    );
    std::fs::write(dir.join("junk.safetensors"), b"not a checkpoint").unwrap();
    fails_clearly(
        &run(&[
            "eval",
            "--checkpoint",
            dir.join("junk.safetensors").to_str().unwrap(),
        ]),
        "junk.safetensors",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn train_one_epoch_writes_everything_and_eval_reproduces_it() {
    if !have_data() {
        return;
    }
    let dir = tmp("train");
    let cfg = dir.join("cfg.toml");
    std::fs::create_dir_all(&dir).unwrap();
    // the file sets a wrong width that the flag overrides
    std::fs::write(
        &cfg,
        "model = \"wrn-10-1\"\nwidth = 3.0\nschedule = \"constant\"\nlr = 0.05\n",
    )
    .unwrap();
    let out = dir.join("run");
    let o = run(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--width",
        "0.5",
        "--epochs",
        "1",
        "--limit-train",
        "512",
        "--limit-test",
        "256",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
    for f in [
        "log.jsonl",
        "report.json",
        "report.md",
        "lr.svg",
        "curves.svg",
        "checkpoint.safetensors",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert!(!out.join("checkpoint.safetensors.tmp").exists());
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    for k in [
        "epoch",
        "lr",
        "train_loss",
        "train_acc",
        "test_acc",
        "test_nll",
        "test_ece",
        "images_per_sec",
        "seconds",
    ] {
        assert!(lines[0].get(k).is_some(), "log.jsonl lacks {k}");
    }
    assert_eq!(lines[0]["lr"].as_f64().unwrap(), 0.05);

    let r = json(&out.join("report.json"));
    for k in [
        "test_accuracy",
        "test_nll",
        "test_ece",
        "params",
        "params_nonzero",
        "sparsity",
        "train_flops_multiple",
        "test_flops_multiple",
        "wall_seconds",
        "model",
        "config",
        "layers",
    ] {
        assert!(r.get(k).is_some(), "report.json lacks {k}");
    }
    assert_eq!(r["test_examples"], 256);
    assert_eq!(r["model"]["width"], 0.5);
    assert_eq!(r["config"]["lr"].as_f64().unwrap() as f32, 0.05);
    assert_eq!(r["sparsity"], 0.0);
    assert_eq!(r["params"], r["params_nonzero"]);
    assert_eq!(r["train_flops_multiple"], 1.0);
    assert!(std::fs::read_to_string(out.join("lr.svg"))
        .unwrap()
        .starts_with("<svg"));
    assert!(std::fs::read_to_string(out.join("report.md"))
        .unwrap()
        .contains("test accuracy"));

    let o = run(&[
        "eval",
        "--checkpoint",
        out.join("checkpoint.safetensors").to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for k in ["test_accuracy", "test_nll", "test_ece", "test_examples"] {
        assert_eq!(e[k], r[k], "eval {k} differs from report.json");
    }
    // a run directory works too, and the text form prints the accuracy
    let o = run(&["eval", "--checkpoint", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("accuracy"));
    // eval of a checkpoint with a missing data directory fails clearly
    fails_clearly(
        &run(&[
            "eval",
            "--checkpoint",
            out.to_str().unwrap(),
            "--data-dir",
            dir.join("nothing").to_str().unwrap(),
        ]),
        "nothing",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sparse_train_reports_method_flops_and_layer_sparsity() {
    if !have_data() {
        return;
    }
    let dir = tmp("rigl");
    let o = run(&[
        "train",
        "--model",
        "wrn-10-1",
        "--epochs",
        "1",
        "--limit-train",
        "256",
        "--limit-test",
        "128",
        "--batch-size",
        "64",
        "--method",
        "rigl",
        "--sparsity",
        "0.9",
        "--update-interval",
        "1",
        "--drop-schedule",
        "cosine",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&dir.join("report.json"));
    assert_eq!(r["method"], "rigl");
    assert_eq!(r["update_interval"], 1);
    // 4 steps, horizon 3: updates after steps 1 and 2
    assert_eq!(r["mask_updates"], 2);
    assert!((r["sparsity"].as_f64().unwrap() - 0.9).abs() < 1e-3);
    let train = r["train_flops_multiple"].as_f64().unwrap();
    let test = r["test_flops_multiple"].as_f64().unwrap();
    assert!(test < 1.0 && train > test && train < 1.0, "{train} {test}");
    let l = &r["layers"][1];
    assert!(l.get("sparsity").is_some() && l.get("params").is_some() && l.get("flops").is_some());
    assert_eq!(r["config"]["method"], "rigl");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("| method | rigl |") && md.contains("sparsity"),
        "{md}"
    );
    let toml = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(toml.contains("method = \"rigl\""), "{toml}");
    let _ = std::fs::remove_dir_all(&dir);
}

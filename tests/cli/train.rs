//! A one-epoch `train` and its outputs, `eval` reproducing the report, and a sparse run's
//! method, FLOPs and layer sparsity.

use super::*;

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
    check_run_files(&out);
    let r = check_report(&out);
    check_eval(&out, &dir, &r);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The files of a finished one-epoch run, and the fields of its one `log.jsonl` line.
fn check_run_files(out: &Path) {
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
}

/// `report.json` of the dense one-epoch run: its fields and values; returned for `eval`.
fn check_report(out: &Path) -> serde_json::Value {
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
    r
}

/// `eval` reproduces the report's metrics, takes a run directory, and fails clearly on a
/// missing data directory.
fn check_eval(out: &Path, dir: &Path, r: &serde_json::Value) {
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

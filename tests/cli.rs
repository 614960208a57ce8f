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

mod common;
use common::{have_data, tmp_dir};

fn tmp(name: &str) -> PathBuf {
    tmp_dir("cli", name)
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
}

#[test]
fn bad_files_and_devices_fail_clearly() {
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

/// Active mask entries and nonzero weights over the maskable tensors of a checkpoint, and
/// the maskable parameter count.
fn mask_counts(path: &Path) -> (usize, usize, usize) {
    let (net, _) = suptickets::train::checkpoint::load(path).unwrap();
    let (mut active, mut nonzero, mut total) = (0, 0, 0);
    for p in net.store.params.iter().filter(|p| p.is_maskable()) {
        let v = p.value.to_vec().unwrap();
        total += v.len();
        nonzero += v.iter().filter(|&&x| x != 0.0).count();
        active += match &p.mask {
            Some(m) => m.to_vec().unwrap().iter().filter(|&&x| x != 0.0).count(),
            None => v.len(),
        };
    }
    (active, nonzero, total)
}

fn sup_args<'a>(dir: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "train",
        "--model",
        "wrn-10-1",
        "--epochs",
        "3",
        "--limit-train",
        "1024",
        "--limit-test",
        "256",
        "--batch-size",
        "128",
        "--method",
        "rigl",
        "--sparsity",
        "0.9",
        "--suptickets",
        "--cycle-epochs",
        "1",
        "--cycle-fraction",
        "0.67",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ];
    // A flag given in `extra` replaces the default one (with its value).
    for f in extra.iter().filter(|f| f.starts_with("--")) {
        if let Some(i) = v.iter().position(|x| x == f) {
            if v.get(i + 1).is_some_and(|x| !x.starts_with("--")) {
                v.drain(i..i + 2);
            }
        }
    }
    v.extend_from_slice(extra);
    v
}

#[test]
fn suptickets_train_reports_tickets_ultimate_and_ensemble() {
    if !have_data() {
        return;
    }
    let dir = tmp("sup");
    // 3 epochs, C = 1, r = 0.67: 1 normal epoch + 2 cycles, tickets W_0, W_1, W_2
    let o = run(&sup_args(&dir, &["--ensemble"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("ticket W_0") && out.contains("ticket W_2") && out.contains("ultimate S_2"),
        "{out}"
    );
    let r = json(&dir.join("report.json"));
    let t = r["tickets"].as_array().unwrap();
    assert_eq!(t.len(), 3, "{t:?}");
    for (k, e) in t.iter().enumerate() {
        assert_eq!(e["ticket"], k);
        assert_eq!(e["epoch"], k + 1);
        for m in ["accuracy", "nll", "ece"] {
            assert!(e[m].as_f64().unwrap().is_finite(), "{e}");
        }
    }
    let u = &r["ultimate"];
    assert_eq!(u["tickets"], 3);
    assert_eq!(u["averaging"], "cia");
    assert_eq!(u["bn"], "av");
    assert_eq!(r["test_accuracy"], u["accuracy"]);
    assert_eq!(r["test_nll"], u["nll"]);
    assert_eq!(r["ensemble"]["members"], 3);
    assert!(r["ensemble"]["accuracy"].as_f64().unwrap() > 0.0);
    // The ultimate ticket in the checkpoint has exactly the training masks' active count.
    let (ua, unz, total) = mask_counts(&dir.join("checkpoint.safetensors"));
    let (la, _, ltotal) = mask_counts(&dir.join("last.safetensors"));
    assert_eq!(total, ltotal);
    assert_eq!(ua, la, "ultimate {ua} vs trained {la} active");
    assert_eq!(
        unz, ua,
        "every kept weight is nonzero, every pruned one zero"
    );
    assert_eq!(u["nonzero"], ua);
    assert_eq!(u["density"].as_f64().unwrap(), ua as f64 / total as f64);
    assert!((u["density"].as_f64().unwrap() - 0.1).abs() < 1e-3);
    // FLOPs: the cycles and their dense gradients are counted.
    let train = r["train_flops_multiple"].as_f64().unwrap();
    assert!(train > 0.0 && train < 1.0, "{train}");
    // eval evaluates the ultimate ticket by default
    let e = run(&["eval", "--checkpoint", dir.to_str().unwrap(), "--json"]);
    assert!(e.status.success(), "{}", stderr(&e));
    let ev: serde_json::Value = serde_json::from_str(&stdout(&e)).unwrap();
    assert_eq!(ev["test_accuracy"], r["test_accuracy"]);
    assert_eq!(ev["test_nll"], r["test_nll"]);
    for f in ["tickets.svg", "lr.svg", "report.md"] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("Tickets vs ultimate") && md.contains("ultimate S_2"),
        "{md}"
    );
    let lr = std::fs::read_to_string(dir.join("lr.svg")).unwrap();
    assert!(lr.contains("ticket captures") && lr.matches("<circle").count() >= 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn suptickets_resume_and_bu() {
    if !have_data() {
        return;
    }
    // Resume inside the normal phase works and matches the uninterrupted run
    // (3 epochs, r = 0.34: P = 2, one cycle); BU batch norm and layerwise CAA.
    let extra = [
        "--cycle-fraction",
        "0.34",
        "--bn",
        "bu",
        "--average",
        "caa",
        "--reprune",
        "layerwise",
        "--limit-train",
        "256",
    ];
    let a = tmp("sup-full");
    let o = run(&sup_args(&a, &extra));
    assert!(o.status.success(), "{}", stderr(&o));
    let b = tmp("sup-half");
    let mut args = sup_args(&b, &extra);
    args.extend_from_slice(&["--stop-after", "1"]);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["train", "--resume", b.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (ra, rb) = (json(&a.join("report.json")), json(&b.join("report.json")));
    assert_eq!(ra["ultimate"]["bn"], "bu");
    assert_eq!(ra["ultimate"]["reprune"], "layerwise");
    assert_eq!(ra["tickets"].as_array().unwrap().len(), 2);
    assert_eq!(ra["test_accuracy"], rb["test_accuracy"]);
    assert_eq!(ra["test_nll"], rb["test_nll"]);
    assert_eq!(
        mask_counts(&a.join("checkpoint.safetensors")).0,
        mask_counts(&a.join("last.safetensors")).0
    );
    // Resume inside the cyclic phase (1 normal epoch + 2 cycles, stopped after epoch 2, i.e.
    // after ticket 1): the superposition state comes from the checkpoint's sup.* tensors and
    // the result matches the uninterrupted run.
    let caa = ["--limit-train", "256", "--average", "caa"];
    let full = tmp("sup-cyclic-full");
    let o = run(&sup_args(&full, &caa));
    assert!(o.status.success(), "{}", stderr(&o));
    let c = tmp("sup-cyclic");
    let mut args = caa.to_vec();
    args.extend_from_slice(&["--stop-after", "2"]);
    let o = run(&sup_args(&c, &args));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["train", "--resume", c.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (rf, rc) = (
        json(&full.join("report.json")),
        json(&c.join("report.json")),
    );
    assert_eq!(rf["tickets"], rc["tickets"]);
    assert_eq!(rf["ultimate"], rc["ultimate"]);
    assert_eq!(rf["test_accuracy"], rc["test_accuracy"]);
    assert_eq!(rf["test_nll"], rc["test_nll"]);
    let tf = (rf["train_flops_multiple"].as_f64().unwrap()
        - rc["train_flops_multiple"].as_f64().unwrap())
    .abs();
    assert!(tf < 1e-9, "{tf}");
    // --ensemble reads the tickets back from tickets/W_k.safetensors, so a run stopped inside
    // the cycles resumes to the uninterrupted ensemble (it was refused before).
    let ens_full = tmp("sup-cyclic-ens-full");
    let mut args = caa.to_vec();
    args.push("--ensemble");
    let o = run(&sup_args(&ens_full, &args));
    assert!(o.status.success(), "{}", stderr(&o));
    let e = tmp("sup-cyclic-ens");
    args.extend_from_slice(&["--stop-after", "2"]);
    let o = run(&sup_args(&e, &args));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["train", "--resume", e.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (rf, re) = (
        json(&ens_full.join("report.json")),
        json(&e.join("report.json")),
    );
    assert!(rf["ensemble"]["accuracy"].is_number(), "{rf}");
    assert_eq!(rf["ensemble"], re["ensemble"]);
    assert_eq!(rf["test_accuracy"], re["test_accuracy"]);
    for d in [a, b, c, e, full, ens_full] {
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[test]
fn compare_prints_base_and_suptickets() {
    if !have_data() {
        return;
    }
    let dir = tmp("compare");
    let o = run(&[
        "compare",
        "--method",
        "set",
        "--sparsity",
        "0.8",
        "--model",
        "wrn-10-1",
        "--epochs",
        "2",
        "--cycle-epochs",
        "1",
        "--cycle-fraction",
        "0.5",
        "--limit-train",
        "256",
        "--limit-test",
        "128",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let row = |name: &str| out.lines().any(|l| l.starts_with(name) && l.contains('%'));
    assert!(row("base") && row("suptickets"), "{out}");
    assert!(
        out.contains("train FLOPs") && out.contains("wall s"),
        "{out}"
    );
    let rb = json(&dir.join("base/report.json"));
    let rs = json(&dir.join("suptickets/report.json"));
    assert!(rb.get("tickets").is_none());
    assert_eq!(rs["tickets"].as_array().unwrap().len(), 2);
    assert_eq!(rb["config"]["seed"], rs["config"]["seed"]);
    assert_eq!(rb["epochs_completed"], rs["epochs_completed"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn suptickets_bad_values_fail_clearly() {
    let dir = tmp("sup-bad");
    let d = dir.to_str().unwrap();
    for r in ["0", "1.5", "-0.2"] {
        let flag = format!("--cycle-fraction={r}");
        fails_clearly(
            &run(&[
                "train",
                "--method",
                "rigl",
                "--suptickets",
                &flag,
                "--out",
                d,
            ]),
            "--cycle-fraction must be in (0, 1]",
        );
    }
    fails_clearly(
        &run(&["train", "--suptickets", "--out", d]),
        "--suptickets needs a sparse --method",
    );
    fails_clearly(
        &run(&[
            "train",
            "--method",
            "rigl",
            "--cycle-epochs",
            "2",
            "--out",
            d,
        ]),
        "without --suptickets",
    );
    fails_clearly(
        &run(&[
            "train",
            "--method",
            "rigl",
            "--suptickets",
            "--cycle-epochs",
            "1",
            "--average",
            "median",
            "--out",
            d,
        ]),
        "median",
    );
    fails_clearly(
        &run(&["compare", "--method", "dense", "--out", d]),
        "--suptickets needs a sparse --method",
    );
    assert!(
        !dir.exists(),
        "a rejected configuration must not create its output"
    );
}

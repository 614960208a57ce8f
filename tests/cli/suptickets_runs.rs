//! Sup-tickets from the command line: tickets, the ultimate ticket and the ensemble, resume and
//! BU, `compare`, and bad values.

use super::*;

/// Active mask entries and nonzero weights over the maskable tensors of a checkpoint, and
/// the maskable parameter count.
fn mask_counts(path: &Path) -> (usize, usize, usize) {
    let (net, _) = suptickets::train::checkpoint::load(path).unwrap();
    let (mut active, mut nonzero, mut total) = (0, 0, 0);
    for p in net.store.params.iter().filter(|p| p.is_maskable()) {
        let v = p.value.to_vec().unwrap();
        total += v.len();
        nonzero += v.iter().filter(|&&x| x != 0.0).count();
        active += match p.mask() {
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

//! Whole Sup-tickets runs on real Fashion-MNIST (small subsets): what the cycles may and may not
//! change, the tickets on disk, and the run's contract under kills at every file write.
//!
//! The CUDA variants run where a GPU is usable (`skipped: no GPU` otherwise; a failure when
//! `SUPTICKETS_REQUIRE_GPU=1`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{have_data, have_gpu, tmp_dir};

use suptickets::sparse::methods::MethodKind;
use suptickets::train::checkpoint::Checkpoint;
use suptickets::train::trainer::{ticket_path, CHECKPOINT_FILE, LAST_FILE};
use suptickets::train::{train, ScheduleKind, TrainConfig};

fn tmp(name: &str) -> PathBuf {
    tmp_dir("run", name)
}

/// The bug check, made exact: RigL at 90% with one cycle whose learning rate is 0, so
/// that only the cycle-start exploration can change a weight.
fn bugcheck(device: &str, out: &Path) -> TrainConfig {
    TrainConfig {
        model: "resnet18".into(),
        width: 0.0625,
        dataset: "fashion-mnist".into(),
        epochs: 3,
        // Small enough for the virtual GPU (tools/test-vgpu.sh: 2 steps an epoch of 4 images,
        // RigL updates in epochs 1-2, then the cycle); ERK's dense layers do not depend on the
        // data, and the checks below hold for any number of steps.
        batch_size: 4,
        limit_train: Some(8),
        limit_test: Some(8),
        schedule: ScheduleKind::Cosine,
        method: MethodKind::Rigl,
        sparsity: Some(0.9),
        dense_first_layer: true,
        suptickets: true,
        cycle_epochs: 1,
        cycle_fraction: 0.4,
        cycle_lr_low: 0.0,
        cycle_lr_high: 0.0,
        device: device.into(),
        out: Some(out.to_path_buf()),
        progress: false,
        ..TrainConfig::default()
    }
}

fn tensors(path: &Path) -> BTreeMap<String, Vec<f32>> {
    Checkpoint::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .tensors
        .into_iter()
        .map(|(k, (_, v))| (k, v))
        .collect()
}

/// Every all-ones-mask layer (ERK's dense layers, the `--dense-first-layer` conv) is bit for bit
/// what it was at W_0; in the sparse layers every connection active before and after the
/// exploration keeps its weight bit for bit, new ones start at 0, and each layer keeps its count.
fn check_cycles_leave_dense_layers_untouched(device: &str) {
    let out = tmp(&format!("bugcheck-{}", device.replace(':', "")));
    let r = train(&bugcheck(device, &out)).unwrap();
    assert_eq!(r.tickets.as_ref().map(Vec::len), Some(2), "W_0 and W_1");
    let w0 = tensors(&ticket_path(&out, 0));
    let last = tensors(&out.join(LAST_FILE));
    let (mut dense_layers, mut sparse_layers, mut survivors) = (0, 0, 0usize);
    for (name, mask0) in w0.iter().filter(|(k, _)| k.ends_with(".mask")) {
        let weight = name.trim_end_matches(".mask");
        let (a, b) = (&w0[weight], &last[weight]);
        let mask1 = &last[name.as_str()];
        if mask0.iter().all(|&m| m == 1.0) {
            dense_layers += 1;
            assert_eq!(mask0, mask1, "{weight}: a dense layer's mask changed");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_eq!(x.to_bits(), y.to_bits(), "{weight}[{i}]: {x} became {y}");
            }
            continue;
        }
        sparse_layers += 1;
        let count = |m: &[f32]| m.iter().filter(|&&v| v != 0.0).count();
        assert_eq!(count(mask0), count(mask1), "{weight}: active count changed");
        for i in 0..a.len() {
            match (mask0[i] != 0.0, mask1[i] != 0.0) {
                (true, true) => {
                    survivors += 1;
                    assert_eq!(a[i].to_bits(), b[i].to_bits(), "{weight}[{i}] survivor");
                }
                (false, true) => assert_eq!(b[i], 0.0, "{weight}[{i}] grown"),
                (_, false) => assert_eq!(b[i], 0.0, "{weight}[{i}] inactive"),
            }
        }
    }
    assert!(
        dense_layers >= 2,
        "ERK leaves dense layers here: {dense_layers}"
    );
    assert!(sparse_layers >= 10 && survivors > 0);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn cycles_leave_dense_layers_untouched_cpu() {
    if have_data() {
        check_cycles_leave_dense_layers_untouched("cpu");
    }
}

#[test]
fn cycles_leave_dense_layers_untouched_cuda() {
    if have_data() && have_gpu() {
        check_cycles_leave_dense_layers_untouched("cuda");
    }
}

/// A small Sup-tickets run with the ensemble, for the kill test.
fn small(out: &Path) -> Vec<String> {
    let args = "train --model wrn-10-1 --dataset fashion-mnist --epochs 3 --batch-size 64 \
                --limit-train 192 --limit-test 128 --schedule cosine --seed 3 --method rigl \
                --sparsity 0.8 --suptickets --cycle-epochs 1 --cycle-fraction 0.4 --ensemble --quiet";
    let mut v: Vec<String> = args.split_whitespace().map(String::from).collect();
    v.push("--out".into());
    v.push(out.display().to_string());
    v
}

fn run_bin(args: &[String], abort_after: Option<usize>) -> std::process::Output {
    // SUPTICKETS_BIN: the binary where the test executable runs away from its build tree (the
    // GPU machine's pack).
    let bin = std::env::var("SUPTICKETS_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_suptickets").to_string());
    let mut c = Command::new(bin);
    c.args(args);
    if let Some(n) = abort_after {
        c.env("SUPTICKETS_ABORT_AFTER_WRITE", n.to_string());
    }
    c.output().expect("run suptickets")
}

fn report(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report.json");
    serde_json::from_str(&text).unwrap()
}

/// Killing a Sup-tickets run (with `--ensemble`) right after each of its file writes leaves a
/// run that either resumes to the uninterrupted result or is already complete: never one that
/// `eval` mistakes for finished, and never one that refuses to resume.
#[test]
fn a_kill_after_any_write_resumes_or_is_complete() {
    if !have_data() {
        return;
    }
    let full = tmp("kill-full");
    let o = run_bin(&small(&full), None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = report(&full);
    let want_ck = tensors(&full.join(CHECKPOINT_FILE));
    assert!(want["ensemble"]["accuracy"].is_number(), "{want}");
    let mut n = 1;
    loop {
        let dir = tmp(&format!("kill-{n}"));
        let o = run_bin(&small(&dir), Some(n));
        if o.status.success() {
            // n is past the last write: every kill point has been tried.
            assert!(n > 10, "only {n} writes?");
            let _ = std::fs::remove_dir_all(&dir);
            break;
        }
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains("aborting after write"), "{stderr}");
        let finished = Checkpoint::read(&dir.join(CHECKPOINT_FILE))
            .map(|c| c.meta.sup_tickets.is_none() && c.meta.epoch >= 3)
            .unwrap_or(false);
        if finished {
            assert_eq!(
                report(&dir)["test_accuracy"],
                want["test_accuracy"],
                "kill {n}"
            );
        } else {
            if dir.join(CHECKPOINT_FILE).exists() {
                let e = run_bin(
                    &[
                        "eval".into(),
                        "--checkpoint".into(),
                        dir.display().to_string(),
                    ],
                    None,
                );
                let trained = Checkpoint::read(&dir.join(CHECKPOINT_FILE))
                    .unwrap()
                    .meta
                    .epoch;
                if trained >= 3 {
                    assert!(!e.status.success(), "kill {n}: eval took an unfinished run");
                }
            }
            let resume = vec![
                "train".to_string(),
                "--resume".into(),
                dir.display().to_string(),
                "--quiet".into(),
            ];
            let r = run_bin(&resume, None);
            // A kill before the first checkpoint leaves nothing to resume: start again.
            let r = if !dir.join(CHECKPOINT_FILE).exists() {
                run_bin(&small(&dir), None)
            } else {
                r
            };
            assert!(
                r.status.success(),
                "kill {n}: {}",
                String::from_utf8_lossy(&r.stderr)
            );
            let got = report(&dir);
            for key in ["test_accuracy", "test_nll", "sparsity"] {
                assert_eq!(got[key], want[key], "kill {n}: {key}");
            }
            assert_eq!(got["ensemble"], want["ensemble"], "kill {n}: ensemble");
            assert_eq!(
                tensors(&dir.join(CHECKPOINT_FILE)),
                want_ck,
                "kill {n}: final checkpoint"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
        n += 1;
        assert!(n < 60, "more writes than expected");
    }
    let _ = std::fs::remove_dir_all(&full);
}

/// `suptickets superpose` over a finished run's saved tickets, with the run's own settings,
/// reproduces the run's ultimate ticket exactly; other settings give the same density.
#[test]
fn superpose_saved_tickets_reproduces_the_run() {
    if !have_data() {
        return;
    }
    let dir = tmp("resuperpose");
    let o = run_bin(&small(&dir), None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = report(&dir);
    let sup = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "superpose".to_string(),
            "--run".into(),
            dir.display().to_string(),
            "--json".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let o = run_bin(&args, None);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        serde_json::from_str(text.lines().last().unwrap()).unwrap()
    };
    let same = sup(&[]);
    assert_eq!(same["metrics"]["accuracy"], want["test_accuracy"]);
    assert_eq!(same["metrics"]["nll"], want["test_nll"]);
    assert_eq!(same["tickets"], 2);
    for extra in [
        &["--average", "caa"][..],
        &["--average", "cima"],
        &["--bn", "bu"],
        &["--reprune", "layerwise"],
    ] {
        let r = sup(extra);
        let d = r["density"].as_f64().unwrap();
        assert!((d - 0.2).abs() < 1e-3, "{extra:?}: density {d}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

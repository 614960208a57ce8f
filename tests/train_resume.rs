//! Resuming is exact on the CPU: 2 epochs in one go end with bit-for-bit the same checkpoint
//! (weights, masks, momenta, batch-norm statistics, method state) as 1 epoch, stop, and 1
//! resumed epoch, for dense training and for sparse methods whose mask updates fire in both
//! halves (RigL, SET, GraNet).

use std::path::PathBuf;

use suptickets::sparse::methods::{MethodKind, SparseState};
use suptickets::train::checkpoint::Checkpoint;
use suptickets::train::report::read_log;
use suptickets::train::trainer::{CHECKPOINT_FILE, LOG_FILE};
use suptickets::train::{resume, train, ScheduleKind, TrainConfig};

mod common;
use common::{have_data, tmp_dir};

fn tmp(name: &str) -> PathBuf {
    tmp_dir("resume", name)
}

fn base() -> TrainConfig {
    TrainConfig {
        model: "wrn-10-1".into(),
        dataset: "fashion-mnist".into(),
        epochs: 2,
        batch_size: 64,
        limit_train: Some(320),
        limit_test: Some(128),
        schedule: ScheduleKind::Cosine,
        seed: 5,
        progress: false,
        ..TrainConfig::default()
    }
}

#[test]
fn resumed_run_matches_uninterrupted_run_bit_for_bit() {
    if !have_data() {
        return;
    }
    check_resume(base(), "dense");
}

/// RigL with ΔT = 2 on 5 steps per epoch: updates after steps 2 and 4 (first half) and 6
/// (second half; the horizon is 0.75 · 10 = 7).
#[test]
fn resumed_rigl_run_matches_uninterrupted_run_bit_for_bit() {
    if !have_data() {
        return;
    }
    let cfg = TrainConfig {
        method: MethodKind::Rigl,
        sparsity: Some(0.8),
        update_interval: Some(2),
        ..base()
    };
    let (mid, end) = check_resume(cfg, "rigl");
    assert_eq!((mid.updates, end.updates), (2, 3));
}

#[test]
fn resumed_set_and_granet_runs_match_uninterrupted_runs_bit_for_bit() {
    if !have_data() {
        return;
    }
    let cfg = TrainConfig {
        method: MethodKind::Set,
        sparsity: Some(0.8),
        update_interval: Some(2),
        ..base()
    };
    let (mid, end) = check_resume(cfg, "set");
    assert_eq!((mid.updates, end.updates), (2, 3));
    // GraNet: pruning steps i = 1..4 (prune end 1.6 epochs = 8 steps), at steps 2, 4 | 6, 8
    let cfg = TrainConfig {
        method: MethodKind::Granet,
        sparsity: Some(0.9),
        update_interval: Some(2),
        prune_end_epoch: Some(1.6),
        ..base()
    };
    let (mid, end) = check_resume(cfg, "granet");
    assert_eq!((mid.prune_steps, end.prune_steps), (2, 4));
    assert_eq!((mid.updates, end.updates), (2, 3));
}

/// Runs `base` for 2 epochs in one go and as 1 + 1 resumed, requires bit-identical
/// checkpoints, logs and reports, and returns the method state at the middle and the end.
fn check_resume(base: TrainConfig, tag: &str) -> (SparseState, SparseState) {
    let dir_a = tmp(&format!("resume-{tag}-a"));
    let dir_b = tmp(&format!("resume-{tag}-b"));
    let a = train(&TrainConfig {
        out: Some(dir_a.clone()),
        ..base.clone()
    })
    .unwrap();
    assert!(a.finished);

    let cfg_b = TrainConfig {
        out: Some(dir_b.clone()),
        ..base.clone()
    };
    let half = train(&TrainConfig {
        stop_after: Some(1),
        ..cfg_b.clone()
    })
    .unwrap();
    assert!(!half.finished);
    assert_eq!(half.epochs_completed, 1);
    let mid = Checkpoint::read(&dir_b.join(CHECKPOINT_FILE)).unwrap();
    assert_eq!(mid.meta.epoch, 1);
    assert_eq!(mid.meta.step, 5);
    let b = resume(&cfg_b, &dir_b).unwrap();
    assert!(b.finished);

    let ca = Checkpoint::read(&dir_a.join(CHECKPOINT_FILE)).unwrap();
    let cb = Checkpoint::read(&dir_b.join(CHECKPOINT_FILE)).unwrap();
    assert_eq!(ca.meta.epoch, 2);
    assert_eq!(ca.meta.step, cb.meta.step);
    assert_eq!(ca.meta.rng, cb.meta.rng);
    assert_eq!(
        ca.tensors.keys().collect::<Vec<_>>(),
        cb.tensors.keys().collect::<Vec<_>>()
    );
    assert!(ca.tensors.keys().any(|k| k.ends_with(".momentum")));
    assert!(ca.tensors.keys().any(|k| k.ends_with(".running_var")));
    for (name, (shape, va)) in &ca.tensors {
        let (sb, vb) = &cb.tensors[name];
        assert_eq!(shape, sb, "{name}");
        let bits_a: Vec<u32> = va.iter().map(|v| v.to_bits()).collect();
        let bits_b: Vec<u32> = vb.iter().map(|v| v.to_bits()).collect();
        assert!(bits_a == bits_b, "tensor {name} differs after resume");
    }
    // same final metrics, and the resumed log holds both epochs
    assert_eq!(a.test_accuracy, b.test_accuracy);
    assert_eq!(a.test_nll, b.test_nll);
    assert_eq!(a.train_flops_multiple, b.train_flops_multiple);
    assert_eq!(a.test_flops_multiple, b.test_flops_multiple);
    assert_eq!(a.sparsity, b.sparsity);
    assert_eq!(a.method, b.method);
    assert_eq!(ca.meta.sparse, cb.meta.sparse);
    if base.method.is_sparse() {
        assert!(ca.tensors.keys().any(|k| k.ends_with(".mask")));
        assert!(a.sparsity > 0.5, "{}", a.sparsity);
        assert!(a.train_flops_multiple < 1.0);
    }
    let la = read_log(&dir_a.join(LOG_FILE)).unwrap();
    let lb = read_log(&dir_b.join(LOG_FILE)).unwrap();
    assert_eq!(la.len(), 2);
    assert_eq!(lb.len(), 2);
    for (x, y) in la.iter().zip(&lb) {
        assert_eq!(
            (x.epoch, x.step, x.lr, x.train_loss, x.test_acc),
            (y.epoch, y.step, y.lr, y.train_loss, y.test_acc)
        );
    }
    let _ = std::fs::remove_dir_all(&dir_a);
    let _ = std::fs::remove_dir_all(&dir_b);
    (
        mid.meta.sparse.clone().expect("method state"),
        ca.meta.sparse.clone().expect("method state"),
    )
}

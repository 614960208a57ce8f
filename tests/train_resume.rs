//! Resuming is exact on the CPU: 2 epochs in one go end with bit-for-bit the same checkpoint
//! (weights, momenta, batch-norm statistics) as 1 epoch, stop, and 1 resumed epoch.

use std::path::PathBuf;

use suptickets::data::{load, DatasetKind, Split};
use suptickets::train::checkpoint::Checkpoint;
use suptickets::train::report::read_log;
use suptickets::train::trainer::{CHECKPOINT_FILE, LOG_FILE};
use suptickets::train::{resume, train, ScheduleKind, TrainConfig};

fn have_data() -> bool {
    match load(DatasetKind::FashionMnist, None, Split::Test) {
        Ok(_) => true,
        Err(e) if std::env::var_os("CI").is_none() => {
            println!("skipped: Fashion-MNIST not available ({e}); run tools/setup.sh");
            false
        }
        Err(e) => panic!("CI needs Fashion-MNIST: {e}"),
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("suptickets-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn resumed_run_matches_uninterrupted_run_bit_for_bit() {
    if !have_data() {
        return;
    }
    let base = TrainConfig {
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
    };
    let dir_a = tmp("resume-a");
    let dir_b = tmp("resume-b");
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
}

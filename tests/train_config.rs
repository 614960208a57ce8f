//! The Sup-tickets settings of a training configuration: the budget split, the learning rate
//! of every iteration (Eq. 3 inside the cycles) and the checks naming each flag.

use suptickets::sparse::methods::MethodKind;
use suptickets::suptickets::{Budget, SupSchedule};
use suptickets::train::trainer::iteration_lr;
use suptickets::train::TrainConfig;

#[test]
fn iteration_lr_follows_eq3_in_the_cycles() {
    // E = 10, C = 2, r = 0.4: P = 6 normal epochs, K = 2 cycles, 5 iterations per epoch.
    let cfg = TrainConfig {
        epochs: 10,
        method: MethodKind::Rigl,
        suptickets: true,
        cycle_epochs: 2,
        cycle_fraction: 0.4,
        ..TrainConfig::default()
    };
    cfg.validate().unwrap();
    let ipe = 5;
    let b = cfg.sup_budget().unwrap().unwrap();
    assert_eq!(b, Budget::new(10, 2, 0.4).unwrap());
    assert_eq!((b.normal_epochs, b.tickets), (6, 2));
    let sched = cfg.lr_schedule();
    assert_eq!(
        sched.epochs, 6,
        "the base schedule spans the normal phase only"
    );
    let ss = SupSchedule::new(b, ipe, cfg.cycle_lr_low, cfg.cycle_lr_high).unwrap();
    let (a1, a2) = (0.001f64, 0.005f64);
    let p = 6 * ipe;
    let l = 2 * ipe;
    for it in 0..10 * ipe {
        let lr = iteration_lr(&sched, Some(&ss), it, ipe) as f64;
        if it < p {
            assert_eq!(lr as f32, sched.lr_at(it, ipe), "normal phase, it {it}");
        } else {
            let tau = ((it - p) % l + 1) as f64 / l as f64;
            let want = if tau <= 0.5 {
                (1.0 - 2.0 * tau) * a1 + 2.0 * tau * a2
            } else {
                (2.0 - 2.0 * tau) * a2 + (2.0 * tau - 1.0) * a1
            };
            assert!((lr - want).abs() < 1e-7, "it {it}: {lr} vs {want}");
        }
    }
    // the last iteration of each cycle is at α1, mid-cycle at α2
    assert!((iteration_lr(&sched, Some(&ss), p + l - 1, ipe) as f64 - a1).abs() < 1e-9);
    assert!((iteration_lr(&sched, Some(&ss), p + ipe - 1, ipe) as f64 - a2).abs() < 1e-9);
    assert_eq!(ss.capture(p - 1), Some(0));
    assert_eq!(ss.cycle_start(p), Some(1));
    assert_eq!(ss.capture(p + 2 * l - 1), Some(2));
}

#[test]
fn suptickets_settings_are_checked() {
    let err = |c: TrainConfig| c.validate().unwrap_err().to_string();
    let rigl = TrainConfig {
        method: MethodKind::Rigl,
        suptickets: true,
        epochs: 10,
        cycle_epochs: 1,
        ..TrainConfig::default()
    };
    rigl.validate().unwrap();
    for r in [0.0, -0.1, 1.5, f64::NAN] {
        assert!(err(TrainConfig {
            cycle_fraction: r,
            ..rigl.clone()
        })
        .contains("--cycle-fraction"));
    }
    assert!(err(TrainConfig {
        method: MethodKind::Dense,
        ..rigl.clone()
    })
    .contains("sparse --method"));
    assert!(err(TrainConfig {
        suptickets: false,
        ..rigl.clone()
    })
    .contains("--cycle-epochs has no effect without --suptickets"));
    let toml_err = |t: &str| TrainConfig::from_toml(t).unwrap_err().to_string();
    assert!(toml_err("average = \"mean\"\n").contains("mean"));
    assert!(toml_err("bn = \"xx\"\n").contains("bn"));
    assert!(err(TrainConfig {
        cycle_fraction: 1.0,
        ..rigl.clone()
    })
    .contains("normal phase"));
    let toml =
        "method = \"set\"\nsuptickets = true\ncycle_epochs = 1\naverage = \"caa\"\nbn = \"bu\"\n";
    let c = TrainConfig::from_toml(toml).unwrap();
    c.validate().unwrap();
    assert_eq!(TrainConfig::from_toml(&c.to_toml()).unwrap(), c);
}

#[test]
fn each_option_is_named_in_its_own_message() {
    let err = |c: TrainConfig| c.validate().unwrap_err().to_string();
    assert!(err(TrainConfig {
        gamma: -1.0,
        ..TrainConfig::default()
    })
    .contains("--gamma"));
    assert!(err(TrainConfig {
        eval_batch_size: 0,
        ..TrainConfig::default()
    })
    .contains("--eval-batch-size"));
    let sup = TrainConfig {
        method: MethodKind::Rigl,
        suptickets: true,
        epochs: 10,
        cycle_epochs: 1,
        ..TrainConfig::default()
    };
    assert!(err(TrainConfig {
        cycle_epochs: 0,
        ..sup.clone()
    })
    .contains("--cycle-epochs"));
    let e = err(TrainConfig {
        cycle_lr_low: 0.01,
        cycle_lr_high: 0.001,
        ..sup
    });
    assert!(
        e.contains("--cycle-lr-low") && e.contains("--cycle-lr-high"),
        "{e}"
    );
}

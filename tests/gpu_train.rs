//! The CUDA training path against the CPU one: the same short run (RigL with mask updates,
//! then a Sup-tickets cycle and the superposition) on both devices. Kernels sum in different
//! orders, so losses agree to float tolerance, not bit for bit; every selection keeps exact
//! per-layer counts on both devices, and one step from identical state selects the same
//! positions except where a rounding-level gap decides.
//!
//! Skipped without a GPU (`skipped: no GPU`); a failure under `SUPTICKETS_REQUIRE_GPU=1`.

use std::path::PathBuf;

mod common;
use common::{have_data, have_gpu, tmp_dir};

use suptickets::models::{build, ModelConfig};
use suptickets::optim::Sgd;
use suptickets::rng::Rng;
use suptickets::sparse::methods::MethodKind;
use suptickets::sparse::methods::{SparseConfig, SparseMethod};
use suptickets::train::checkpoint::Checkpoint;
use suptickets::train::report::read_log;
use suptickets::train::trainer::{ticket_path, CHECKPOINT_FILE, LOG_FILE};
use suptickets::train::{train, ScheduleKind, TrainConfig};
use suptickets::{Device, Tensor};

/// Fashion-MNIST and a usable GPU (each absence prints why the test skips).
fn ready() -> bool {
    have_data() && have_gpu()
}

fn out(tag: &str) -> PathBuf {
    tmp_dir("gpu", tag)
}

fn config(device: &str) -> TrainConfig {
    TrainConfig {
        model: "resnet18".into(),
        width: 0.0625,
        dataset: "fashion-mnist".into(),
        epochs: 3,
        // 2 steps an epoch of 4 images, 16 test images: RigL updates in epochs 1-2 (W_0),
        // then one Sup-tickets cycle (W_1) and the superposition, in a few minutes on the
        // virtual GPU (tools/test-vgpu.sh); the interpreter's time grows with the images.
        batch_size: 4,
        limit_train: Some(8),
        limit_test: Some(16),
        schedule: ScheduleKind::Cosine,
        method: MethodKind::Rigl,
        sparsity: Some(0.9),
        update_interval: Some(2),
        suptickets: true,
        cycle_epochs: 1,
        cycle_fraction: 0.4,
        device: device.into(),
        out: Some(out(device)),
        progress: false,
        seed: 11,
        ..TrainConfig::default()
    }
}

/// Fraction of positions where two 0/1 masks agree.
fn agreement(a: &[f32], b: &[f32]) -> f64 {
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    same as f64 / a.len().max(1) as f64
}

#[test]
fn cuda_training_matches_the_cpu_run() {
    if !ready() {
        return;
    }
    let (cc, gc) = (config("cpu"), config("cuda"));
    let (cr, gr) = (train(&cc).unwrap(), train(&gc).unwrap());
    let (cdir, gdir) = (cc.out.clone().unwrap(), gc.out.clone().unwrap());
    let (clog, glog) = (
        read_log(&cdir.join(LOG_FILE)).unwrap(),
        read_log(&gdir.join(LOG_FILE)).unwrap(),
    );
    assert_eq!(clog.len(), glog.len());
    let rel = |a: f64, b: f64| (a - b).abs() / a.abs().max(1e-6);
    for (c, g) in clog.iter().zip(&glog) {
        let loss_rel = rel(c.train_loss, g.train_loss);
        let (cn, gn) = (c.test_nll.unwrap(), g.test_nll.unwrap());
        println!(
            "epoch {}: train loss cpu {:.6} cuda {:.6} (rel {loss_rel:.2e}), test nll cpu {cn:.6} \
             cuda {gn:.6}, test acc cpu {:?} cuda {:?}",
            c.epoch, c.train_loss, g.train_loss, c.test_acc, g.test_acc
        );
        // Seen on an H200 with 4 steps of 32 images an epoch: rel 9.3e-4, 1.8e-2, 2.3e-2 after
        // epochs 1-3, lr 0.1 from a random start where rounding differences grow fast; on the
        // virtual GPU with this configuration: 0, 8.1e-7, 1.9e-7. The exact check is
        // `one_rigl_step_matches_the_cpu_step`.
        assert!(
            loss_rel < 5e-2,
            "epoch {}: train loss differs by {loss_rel:e}",
            c.epoch
        );
        // The test set is small (16 images, accuracy near chance this early): the evaluated
        // NLL is the finer comparison of the two models.
        assert!(
            rel(cn, gn) < 5e-2,
            "epoch {}: test NLL cpu {cn} cuda {gn}",
            c.epoch
        );
    }
    assert!(
        (cr.sparsity - gr.sparsity).abs() < 1e-9,
        "same exact density"
    );
    assert!((cr.test_accuracy - gr.test_accuracy).abs() < 0.1);
    assert!(
        rel(cr.test_nll, gr.test_nll) < 5e-2,
        "final test NLL cpu {} cuda {}",
        cr.test_nll,
        gr.test_nll
    );
    // W_0 (after the RigL updates): per-layer active counts exact on both devices; the
    // ultimate ticket (global re-pruning moves counts between layers by magnitude): the total.
    // Which positions are active is not compared here: after several updates in a run this
    // chaotic, regrowth follows gradients that rounding has already moved (seen on an H200: 67%
    // agreement in one layer of W_0); the position-exact check is
    // `one_rigl_step_matches_the_cpu_step`.
    let active = |m: &[f32]| m.iter().filter(|&&v| v != 0.0).count();
    let masks = |p: &std::path::Path| -> Vec<(String, usize)> {
        let c = Checkpoint::read(p).unwrap();
        c.tensors
            .iter()
            .filter(|(k, _)| k.ends_with(".mask"))
            .map(|(k, (_, m))| (k.clone(), active(m)))
            .collect()
    };
    assert_eq!(
        masks(&ticket_path(&cdir, 0)),
        masks(&ticket_path(&gdir, 0)),
        "W_0 per-layer active counts"
    );
    let total = |v: Vec<(String, usize)>| v.iter().map(|(_, n)| n).sum::<usize>();
    assert_eq!(
        total(masks(&cdir.join(CHECKPOINT_FILE))),
        total(masks(&gdir.join(CHECKPOINT_FILE))),
        "ultimate ticket: total active"
    );
    let _ = std::fs::remove_dir_all(&cdir);
    let _ = std::fs::remove_dir_all(&gdir);
}

/// One training step with a RigL update (dense gradient, per-layer prune and gradient regrowth)
/// from identical weights and masks on both devices: the loss, the updated weights and the new
/// masks agree (masks exactly, except where the selection threshold falls on a gradient gap of
/// rounding size).
#[test]
fn one_rigl_step_matches_the_cpu_step() {
    if !ready() {
        return;
    }
    let gpu = Device::cuda(0).unwrap();
    let mut r = Rng::new(5);
    const N: usize = 16;
    let x: Vec<f32> = (0..N * 32 * 32).map(|_| r.normal()).collect();
    let y: Vec<f32> = (0..N).map(|_| r.below(10) as f32).collect();
    let mut nets = Vec::new();
    for dev in [Device::Cpu, gpu] {
        let mut mc = ModelConfig::new("resnet18", 10);
        mc.width = 0.0625;
        mc.in_channels = 1;
        mc.seed = 9;
        let mut net = build(&mc).unwrap();
        let cfg = SparseConfig {
            update_interval: 1,
            seed: 4,
            ..SparseConfig::new(MethodKind::Rigl, 0.9, 1, 4)
        };
        let mut m = SparseMethod::new(cfg, &mut net, 4, 4).unwrap();
        m.init_masks(&mut net, None).unwrap();
        net.to_device(&dev).unwrap();
        let xt = Tensor::from_slice(&x, &[N, 1, 32, 32], &dev).unwrap();
        let yt = Tensor::from_slice(&y, &[N], &dev).unwrap();
        assert!(m.needs_dense_grad(1));
        let out = net.forward_backward_with(&xt, &yt, true).unwrap();
        Sgd::default()
            .step(&mut net.store, &out.grads, 0.05)
            .unwrap();
        let rep = m
            .after_step(1, &mut net, &out.grads)
            .unwrap()
            .expect("an update");
        nets.push((net, out.loss_value().unwrap(), rep));
    }
    let ((cn, cl, crep), (gn, gl, grep)) = (&nets[0], &nets[1]);
    assert!(
        (cl - gl).abs() <= 1e-4 * cl.abs(),
        "loss cpu {cl} cuda {gl}"
    );
    assert_eq!(crep.pruned, grep.pruned, "pruned counts");
    assert_eq!(crep.active, grep.active, "active counts");
    for id in cn.store.maskable_ids() {
        let (c, g) = (cn.store.param(id), gn.store.param(id));
        let (cm, gm) = (
            c.mask().unwrap().to_vec().unwrap(),
            g.mask().unwrap().to_vec().unwrap(),
        );
        let a = agreement(&cm, &gm);
        assert!(a > 0.999, "{}: masks agree on {a:.5}", c.name);
        let (cw, gw) = (c.value.to_vec().unwrap(), g.value.to_vec().unwrap());
        for i in 0..cw.len() {
            if cm[i] == gm[i] {
                assert!(
                    (cw[i] - gw[i]).abs() <= 1e-4 * cw[i].abs().max(1e-2),
                    "{}[{i}]: cpu {} cuda {}",
                    c.name,
                    cw[i],
                    gw[i]
                );
            }
        }
    }
}

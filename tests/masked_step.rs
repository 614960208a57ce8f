//! Real training steps with masks: after every fused SGD step the weights and momentum are
//! zero off the mask, and each layer's active count is unchanged.

use suptickets::models::{build, ModelConfig};
use suptickets::optim::Sgd;
use suptickets::rng::Rng;
use suptickets::sparse::{init_random_masks, DensityInit, MaskInit};
use suptickets::Tensor;

#[test]
fn masked_sgd_keeps_weights_and_momentum_on_the_mask() {
    let mut c = ModelConfig::new("vgg16", 10);
    c.width = 0.125;
    let mut net = build(&c).unwrap();
    let layers = init_random_masks(
        &mut net.store,
        &MaskInit {
            sparsity: 0.9,
            init: DensityInit::Erk,
            dense_first_layer: false,
            seed: 9,
        },
    )
    .unwrap();
    let mut r = Rng::new(2);
    let x = Tensor::from_vec(
        (0..16 * 3 * 32 * 32).map(|_| r.normal()).collect(),
        &[16, 3, 32, 32],
    )
    .unwrap();
    let y = Tensor::from_vec((0..16).map(|i| (i % 10) as f32).collect(), &[16]).unwrap();
    for opt in [
        Sgd::default(),
        Sgd {
            nesterov: true,
            ..Sgd::default()
        },
    ] {
        for _ in 0..2 {
            let out = net.forward_backward(&x, &y).unwrap();
            opt.step(&mut net.store, &out.grads, 0.1).unwrap();
        }
        for (id, l) in net.store.maskable_ids().into_iter().zip(&layers) {
            let p = net.store.param(id);
            let m = p.mask().unwrap().to_vec().unwrap();
            let w = p.value.to_vec().unwrap();
            let mom = p.momentum.as_ref().unwrap().to_vec().unwrap();
            assert_eq!(
                m.iter().filter(|&&v| v == 1.0).count(),
                l.active,
                "{}",
                p.name
            );
            for i in 0..m.len() {
                if m[i] == 0.0 {
                    assert!(
                        w[i] == 0.0 && mom[i] == 0.0,
                        "{} at {i}: w {} m {}",
                        p.name,
                        w[i],
                        mom[i]
                    );
                }
            }
            // Training moved the active weights.
            assert!(w.iter().zip(&m).any(|(w, m)| *m == 1.0 && *w != 0.0));
        }
    }
}

#[test]
fn dense_weight_gradients_on_request() {
    let mut c = ModelConfig::new("resnet18", 10);
    c.width = 0.125;
    let mut net = build(&c).unwrap();
    init_random_masks(
        &mut net.store,
        &MaskInit {
            sparsity: 0.9,
            init: DensityInit::Erk,
            dense_first_layer: false,
            seed: 4,
        },
    )
    .unwrap();
    let mut r = Rng::new(3);
    let x = Tensor::from_vec(
        (0..8 * 3 * 32 * 32).map(|_| r.normal()).collect(),
        &[8, 3, 32, 32],
    )
    .unwrap();
    let y = Tensor::from_vec((0..8).map(|i| (i % 10) as f32).collect(), &[8]).unwrap();
    let masked = net.forward_backward_with(&x, &y, false).unwrap();
    let dense = net.forward_backward_with(&x, &y, true).unwrap();
    for id in net.store.maskable_ids() {
        let m = net.store.param(id).mask().unwrap().to_vec().unwrap();
        let gm = masked.grads[id.0].as_ref().unwrap().to_vec().unwrap();
        let gd = dense.grads[id.0].as_ref().unwrap().to_vec().unwrap();
        let mut inactive_nonzero = 0;
        for i in 0..m.len() {
            if m[i] == 1.0 {
                assert!((gm[i] - gd[i]).abs() <= 1e-4 * (1.0 + gd[i].abs()), "{i}");
            } else if gd[i] != 0.0 {
                inactive_nonzero += 1;
            }
        }
        // The dense gradient is informative off the mask too (what RigL grows by); ERK may
        // leave a small layer fully dense, with nothing off the mask.
        if m.contains(&0.0) {
            assert!(inactive_nonzero > 0, "{}", net.store.param(id).name);
        }
    }
}

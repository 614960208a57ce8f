//! One exploration step: every layer keeps its count on a real ResNet-18 (width 0.25), and
//! `--regrown keep` / `zero` by hand.

use super::*;

#[test]
fn exploration_step_keeps_every_layer_count_on_resnet18() {
    for dev in devices() {
        let mut c = ModelConfig::new("resnet18", 10);
        c.width = 0.25;
        let mut net = build(&c).unwrap();
        net.to_device(&dev).unwrap();
        let cfg = MaskInit {
            sparsity: 0.8,
            init: DensityInit::Erk,
            dense_first_layer: false,
            seed: 3,
        };
        init_random_masks(&mut net.store, &cfg).unwrap();
        let mut r = Rng::new(8);
        // Momenta on the mask (as after SGD steps) and dense random gradients.
        for p in &mut net.store.params {
            let n = p.value.numel();
            let mut m: Vec<f32> = (0..n).map(|_| r.normal()).collect();
            if let Some(k) = p.mask() {
                for (m, k) in m.iter_mut().zip(k.to_vec().unwrap()) {
                    *m *= k;
                }
            }
            p.momentum = Some(Tensor::from_slice(&m, p.value.shape(), &dev).unwrap());
        }
        let g: Vec<Option<Tensor>> = net
            .store
            .params
            .iter()
            .map(|p| {
                let v: Vec<f32> = (0..p.value.numel()).map(|_| r.normal()).collect();
                Some(Tensor::from_slice(&v, p.value.shape(), &dev).unwrap())
            })
            .collect();
        let before = active_counts(&net.store).unwrap();
        for (step, p) in [0.5, 0.3].into_iter().enumerate() {
            let removed = prune_magnitude_layerwise(&mut net.store, p).unwrap();
            let mid = active_counts(&net.store).unwrap();
            for l in 0..before.len() {
                assert_eq!(removed[l], prune_count(p, before[l]), "layer {l}");
                assert_eq!(mid[l], before[l] - removed[l]);
            }
            let grown = match step {
                0 => grow_gradient(&mut net.store, &g, &removed).unwrap(),
                _ => grow_random(&mut net.store, &removed, 99).unwrap(),
            };
            assert_eq!(grown, removed);
            assert_eq!(
                active_counts(&net.store).unwrap(),
                before,
                "{} step {step}: every layer keeps its count",
                dev.name()
            );
            // The weight and the momentum are zero wherever the mask is.
            for id in net.store.maskable_ids() {
                let p = net.store.param(id);
                let k = p.mask().unwrap().to_vec().unwrap();
                let w = p.value.to_vec().unwrap();
                let m = p.momentum.as_ref().unwrap().to_vec().unwrap();
                for i in 0..k.len() {
                    assert!(k[i] == 1.0 || (w[i] == 0.0 && m[i] == 0.0), "{}", p.name);
                }
            }
        }
    }
}

/// The one exploration step by hand: a connection pruned and regrown in the same step keeps its
/// weight and momentum under `Regrown::Keep` (the references) and restarts at 0 under
/// `Regrown::Zero`; a fully dense layer is untouched either way; new connections start at 0.
#[test]
fn explore_step_regrown_keep_and_zero_by_hand() {
    for dev in devices() {
        for regrown in [Regrown::Keep, Regrown::Zero] {
            let what = format!("{} {regrown:?}", dev.name());
            let mut s = store(
                &dev,
                &[
                    // p = 0.5 of 2 active prunes index 1 (|0.5|); the gradient regrows it
                    // (|9|) — ties none — and nothing else.
                    layer(
                        &[3.0, 0.5, 0.0, 0.0],
                        &[1.0, 1.0, 0.0, 0.0],
                        Some(&[1.0, 2.0, 0.0, 0.0]),
                    ),
                    // p = 0.5 of 2 prunes index 0 (|0.2|); the gradient grows index 3, new.
                    layer(
                        &[0.2, 0.7, 0.0, 0.0],
                        &[1.0, 1.0, 0.0, 0.0],
                        Some(&[4.0, 5.0, 0.0, 0.0]),
                    ),
                    // dense: untouched.
                    layer(&[0.1, -0.2, 0.3], &[1.0, 1.0, 1.0], Some(&[7.0, 8.0, 9.0])),
                ],
            );
            let g = grads(
                &dev,
                &s,
                &[
                    vec![0.0, 9.0, 1.0, 2.0],
                    vec![0.0, 0.0, 1.0, 6.0],
                    vec![5.0, 5.0, 5.0],
                ],
            );
            let done = explore(&mut s, 0.5, GrowBy::Gradient(&g), &[], regrown).unwrap();
            assert_eq!(done.pruned, vec![1, 1, 0], "{what}");
            assert_eq!(done.grown, vec![1, 1, 0], "{what}");
            let (w, k, m) = host(&s);
            let kept = if regrown == Regrown::Keep { 0.5 } else { 0.0 };
            let kept_m = if regrown == Regrown::Keep { 2.0 } else { 0.0 };
            assert_eq!(k[0], vec![1.0, 1.0, 0.0, 0.0], "{what}");
            assert_eq!(w[0], vec![3.0, kept, 0.0, 0.0], "{what}");
            assert_eq!(
                m[0].as_ref().unwrap(),
                &vec![1.0, kept_m, 0.0, 0.0],
                "{what}"
            );
            assert_eq!(k[1], vec![0.0, 1.0, 0.0, 1.0], "{what}");
            assert_eq!(w[1], vec![0.0, 0.7, 0.0, 0.0], "{what}");
            assert_eq!(m[1].as_ref().unwrap(), &vec![0.0, 5.0, 0.0, 0.0], "{what}");
            assert_eq!(w[2], vec![0.1, -0.2, 0.3], "{what}");
            assert_eq!(k[2], vec![1.0, 1.0, 1.0], "{what}");
            assert_eq!(m[2].as_ref().unwrap(), &vec![7.0, 8.0, 9.0], "{what}");
        }
    }
}

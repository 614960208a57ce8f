//! The prune (Ψ) and grow (Φ) primitives (docs/computation.md, Methods) through the public sparse
//! API, on the CPU and, when a GPU is present, on `cuda:0` too (the same expectations must hold
//! there; the kernel-level CPU ↔ CUDA comparisons are in `tests/parity/`).
//!
//! Hand-made cases pin the exact semantics (counts, ties to the lower flat index, k = 0,
//! k = all, weight and momentum zeroed); random cases compare against a brute-force sort; the
//! random grow is checked for determinism and uniformity; an exploration step keeps every
//! layer's count on a real ResNet-18 (width 0.25).

use suptickets::models::{build, ModelConfig};
use suptickets::nn::{ParamRole, ParamStore};
use suptickets::rng::Rng;
use suptickets::sparse::{
    active_counts, explore, grow_gradient, grow_random, init_random_masks, prune_count,
    prune_magnitude_global, prune_magnitude_layerwise, topk_reference, DensityInit, GrowBy,
    MaskInit, Regrown,
};
use suptickets::{Device, Tensor};

mod common;

/// The CPU, and `cuda:0` when this machine has a usable GPU.
fn devices() -> Vec<Device> {
    let mut d = vec![Device::Cpu];
    d.extend(common::gpu_device());
    d
}

/// One maskable layer: weight, mask and optional momentum, as flat host vectors.
struct Layer {
    w: Vec<f32>,
    mask: Vec<f32>,
    m: Option<Vec<f32>>,
}

fn layer(w: &[f32], mask: &[f32], m: Option<&[f32]>) -> Layer {
    Layer {
        w: w.to_vec(),
        mask: mask.to_vec(),
        m: m.map(|m| m.to_vec()),
    }
}

/// A store with the given maskable layers (1-d weights), each followed by a bias (not
/// maskable), on `dev`.
fn store(dev: &Device, layers: &[Layer]) -> ParamStore {
    let mut s = ParamStore::default();
    for (i, l) in layers.iter().enumerate() {
        let n = l.w.len();
        let id = s.add_param(
            format!("layer{i}.weight"),
            Tensor::from_slice(&l.w, &[n], dev).unwrap(),
            ParamRole::Weight,
        );
        let p = &mut s.params[id.0];
        p.mask = Some(Tensor::from_slice(&l.mask, &[n], dev).unwrap());
        p.momentum =
            l.m.as_ref()
                .map(|m| Tensor::from_slice(m, &[n], dev).unwrap());
        s.add_param(
            format!("layer{i}.bias"),
            Tensor::from_slice(&[0.5], &[1], dev).unwrap(),
            ParamRole::Bias,
        );
    }
    s
}

/// (weights, masks, momenta) of the maskable layers, on the host.
type Host = (Vec<Vec<f32>>, Vec<Vec<f32>>, Vec<Option<Vec<f32>>>);

fn host(s: &ParamStore) -> Host {
    let mut out: Host = Default::default();
    for id in s.maskable_ids() {
        let p = s.param(id);
        out.0.push(p.value.to_vec().unwrap());
        out.1.push(p.mask.as_ref().unwrap().to_vec().unwrap());
        out.2.push(p.momentum.as_ref().map(|m| m.to_vec().unwrap()));
    }
    out
}

/// Gradients indexed like `store.params`: `g[l]` for maskable layer l, a constant for biases.
fn grads(dev: &Device, s: &ParamStore, g: &[Vec<f32>]) -> Vec<Option<Tensor>> {
    let mut l = 0;
    s.params
        .iter()
        .map(|p| {
            if p.is_maskable() {
                l += 1;
                Some(Tensor::from_slice(&g[l - 1], p.value.shape(), dev).unwrap())
            } else {
                Some(Tensor::full(p.value.shape(), 9.0, dev).unwrap())
            }
        })
        .collect()
}

fn ones(n: usize) -> Vec<f32> {
    vec![1.0; n]
}

// ---- magnitude prune, per layer -----------------------------------------------------------------

#[test]
fn layerwise_prune_by_hand_with_ties_to_the_lower_index() {
    for dev in devices() {
        let what = dev.name();
        let mut s = store(
            &dev,
            &[
                // active |w|: 0.5, 0.1, 0.3, 0.3, 0.2 (index 3 inactive). p = 0.5 removes
                // ceil(2.5) = 3: keep 0.5 (0) and the first 0.3 (2); 0.3 at 4 loses the tie.
                layer(
                    &[0.5, -0.1, 0.3, 0.0, -0.3, 0.2],
                    &[1.0, 1.0, 1.0, 0.0, 1.0, 1.0],
                    Some(&[1.0, 2.0, 3.0, 0.0, 5.0, 6.0]),
                ),
                // All equal: remove ceil(0.5 · 7) = 4 of 7, keep the 3 lowest indices.
                layer(&[2.0; 7], &ones(7), None),
            ],
        );
        let removed = prune_magnitude_layerwise(&mut s, 0.5).unwrap();
        assert_eq!(removed, vec![3, 4], "{what}");
        let (w, k, m) = host(&s);
        assert_eq!(k[0], vec![1.0, 0.0, 1.0, 0.0, 0.0, 0.0], "{what}");
        assert_eq!(w[0], vec![0.5, 0.0, 0.3, 0.0, 0.0, 0.0], "{what}");
        assert_eq!(
            m[0].as_ref().unwrap(),
            &vec![1.0, 0.0, 3.0, 0.0, 0.0, 0.0],
            "{what}"
        );
        assert_eq!(k[1], vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0], "{what}");
        assert_eq!(w[1], vec![2.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0], "{what}");
        assert!(m[1].is_none());
        // Biases are untouched.
        assert_eq!(s.params[1].value.to_vec().unwrap(), vec![0.5]);
    }
}

#[test]
fn layerwise_prune_zero_and_all() {
    for dev in devices() {
        let l = || {
            vec![
                layer(&[0.3, -0.2, 0.0, 0.7], &[1.0, 1.0, 0.0, 1.0], None),
                layer(&[1.0, 2.0], &ones(2), Some(&[0.1, 0.2])),
            ]
        };
        let mut s = store(&dev, &l());
        assert_eq!(prune_magnitude_layerwise(&mut s, 0.0).unwrap(), vec![0, 0]);
        assert_eq!(host(&s).1, vec![vec![1.0, 1.0, 0.0, 1.0], ones(2)]);
        assert_eq!(host(&s).0[0], vec![0.3, -0.2, 0.0, 0.7]);
        let mut s = store(&dev, &l());
        assert_eq!(prune_magnitude_layerwise(&mut s, 1.0).unwrap(), vec![3, 2]);
        let (w, k, m) = host(&s);
        assert!(k.iter().flatten().all(|&v| v == 0.0), "{}", dev.name());
        assert!(w.iter().flatten().all(|&v| v == 0.0));
        assert_eq!(m[1].as_ref().unwrap(), &vec![0.0, 0.0]);
        assert!(prune_magnitude_layerwise(&mut s, 1.5).is_err());
    }
}

#[test]
fn layerwise_prune_removes_ceil_p_times_active_from_every_layer() {
    let mut r = Rng::new(3);
    for dev in devices() {
        let sizes = [1, 2, 10, 333, 20_000, 70_001];
        let layers: Vec<Layer> = sizes
            .iter()
            .map(|&n| {
                let mask: Vec<f32> = (0..n).map(|_| (r.uniform() < 0.4) as u8 as f32).collect();
                let w: Vec<f32> = mask.iter().map(|&k| k * r.normal()).collect();
                Layer { w, mask, m: None }
            })
            .collect();
        for p in [0.05, 0.3, 0.5, 0.7, 0.999] {
            let mut s = store(&dev, &layers);
            let before = active_counts(&s).unwrap();
            let removed = prune_magnitude_layerwise(&mut s, p).unwrap();
            let after = active_counts(&s).unwrap();
            for l in 0..sizes.len() {
                let want = (p * before[l] as f64 - 1e-9).ceil() as usize;
                assert_eq!(removed[l], want, "{} p {p} layer {l}", dev.name());
                assert_eq!(removed[l], prune_count(p, before[l]));
                assert_eq!(after[l], before[l] - removed[l]);
                // The survivors are the largest |w| of the layer (brute force).
                let eligible: Vec<bool> = layers[l].mask.iter().map(|&v| v != 0.0).collect();
                let keep = topk_reference(&layers[l].w, &eligible, before[l] - want);
                let want_mask: Vec<f32> = keep.iter().map(|&b| b as u8 as f32).collect();
                assert_eq!(host(&s).1[l], want_mask, "{} p {p} layer {l}", dev.name());
            }
        }
    }
}

// ---- magnitude prune, global ---------------------------------------------------------------------

/// Checks a global prune against a brute-force sort of the concatenated |w|.
fn check_global(dev: &Device, layers: &[Layer], density: f64) {
    let mut s = store(dev, layers);
    let total: usize = layers.iter().map(|l| l.w.len()).sum();
    let w: Vec<f32> = layers.iter().flat_map(|l| l.w.clone()).collect();
    let eligible: Vec<bool> = layers
        .iter()
        .flat_map(|l| l.mask.iter().map(|&v| v != 0.0))
        .collect();
    let active = eligible.iter().filter(|&&e| e).count();
    let k = ((density * total as f64).round() as usize).min(active);
    let removed = prune_magnitude_global(&mut s, density).unwrap();
    assert_eq!(removed.iter().sum::<usize>(), active - k, "{}", dev.name());
    let keep = topk_reference(&w, &eligible, k);
    let (w1, k1, _) = host(&s);
    let (w1, k1): (Vec<f32>, Vec<f32>) = (w1.concat(), k1.concat());
    assert_eq!(
        k1.iter().filter(|&&v| v != 0.0).count(),
        k,
        "{} keeps exactly K",
        dev.name()
    );
    for i in 0..total {
        assert_eq!(
            k1[i],
            keep[i] as u8 as f32,
            "{} density {density} at {i}",
            dev.name()
        );
        assert_eq!(w1[i], if keep[i] { w[i] } else { 0.0 });
    }
    // The threshold: every kept |w| ≥ every pruned active |w|.
    let kept_min = (0..total)
        .filter(|&i| keep[i])
        .map(|i| w[i].abs())
        .fold(f32::INFINITY, f32::min);
    let pruned_max = (0..total)
        .filter(|&i| eligible[i] && !keep[i])
        .map(|i| w[i].abs())
        .fold(0.0, f32::max);
    assert!(k == 0 || active == k || kept_min >= pruned_max);
}

#[test]
fn global_prune_matches_a_brute_force_sort() {
    let mut r = Rng::new(11);
    for dev in devices() {
        for dup in [false, true] {
            let sizes = [27, 4_608, 150_000, 10, 36_864];
            let layers: Vec<Layer> = sizes
                .iter()
                .map(|&n| {
                    let mask: Vec<f32> = (0..n).map(|_| (r.uniform() < 0.3) as u8 as f32).collect();
                    let w = mask
                        .iter()
                        .map(|&k| {
                            k * if dup {
                                (r.below(9) as f32 - 4.0) * 0.125
                            } else {
                                r.normal()
                            }
                        })
                        .collect();
                    Layer { w, mask, m: None }
                })
                .collect();
            for density in [0.0, 0.01, 0.1, 0.2, 0.3, 0.9] {
                check_global(&dev, &layers, density);
            }
        }
    }
}

#[test]
fn global_prune_all_equal_keeps_the_lowest_flat_indices() {
    for dev in devices() {
        let layers = [
            layer(&[1.0; 4], &ones(4), None),
            layer(&[-1.0; 6], &ones(6), Some(&[3.0; 6])),
        ];
        let mut s = store(&dev, &layers);
        // K = round(0.6 · 10) = 6: all of layer 0 and the first 2 of layer 1.
        assert_eq!(prune_magnitude_global(&mut s, 0.6).unwrap(), vec![0, 4]);
        let (_, k, m) = host(&s);
        assert_eq!(k[0], ones(4));
        assert_eq!(k[1], vec![1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(m[1].as_ref().unwrap(), &vec![3.0, 3.0, 0.0, 0.0, 0.0, 0.0]);
        // Density 1: K above the active count removes nothing.
        assert_eq!(prune_magnitude_global(&mut s, 1.0).unwrap(), vec![0, 0]);
        assert_eq!(prune_magnitude_global(&mut s, 0.0).unwrap(), vec![4, 2]);
        assert!(host(&s).1.iter().flatten().all(|&v| v == 0.0));
    }
}

// ---- gradient grow ------------------------------------------------------------------------------

#[test]
fn gradient_grow_by_hand_only_inactive_positions() {
    for dev in devices() {
        let what = dev.name();
        // Inactive: 1, 3, 4, 6. |g| there: 0.9, 0.2, 0.9, 0.5; the big |g| at active 0 and 2
        // must not count. Grow 3: 1 and 4 (tie at 0.9, both), then 6.
        let mut s = store(
            &dev,
            &[layer(
                &[0.4, 0.0, -0.6, 0.0, 0.0, 0.1, 0.0],
                &[1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0],
                Some(&[0.1, 7.0, 0.2, 7.0, 7.0, 0.3, 7.0]),
            )],
        );
        let g = grads(&dev, &s, &[vec![5.0, -0.9, 5.0, 0.2, 0.9, 5.0, -0.5]]);
        assert_eq!(grow_gradient(&mut s, &g, &[3]).unwrap(), vec![3], "{what}");
        let (w, k, m) = host(&s);
        assert_eq!(k[0], vec![1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0], "{what}");
        assert_eq!(w[0], vec![0.4, 0.0, -0.6, 0.0, 0.0, 0.1, 0.0], "{what}");
        // New positions get momentum 0; the old active ones keep theirs; the rest untouched.
        assert_eq!(
            m[0].as_ref().unwrap(),
            &vec![0.1, 0.0, 0.2, 7.0, 0.0, 0.3, 0.0],
            "{what}"
        );
    }
}

#[test]
fn gradient_grow_with_zero_gradients_takes_the_lowest_inactive_indices() {
    for dev in devices() {
        let mask = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let mut s = store(
            &dev,
            &[
                layer(&[1.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 3.0], &mask, None),
                layer(&[0.0; 5], &[0.0; 5], None),
            ],
        );
        let g = grads(&dev, &s, &[vec![0.0; 8], vec![0.0; 5]]);
        assert_eq!(grow_gradient(&mut s, &g, &[3, 5]).unwrap(), vec![3, 5]);
        let (_, k, _) = host(&s);
        assert_eq!(
            k[0],
            vec![1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0],
            "{}",
            dev.name()
        );
        assert_eq!(k[1], ones(5));
        // k = 0 changes nothing; more than the inactive count is an error.
        assert_eq!(grow_gradient(&mut s, &g, &[0, 0]).unwrap(), vec![0, 0]);
        assert!(grow_gradient(&mut s, &g, &[3, 0]).is_err());
        assert!(
            grow_gradient(&mut s, &g, &[1]).is_err(),
            "one count per layer"
        );
        assert!(
            grow_gradient(&mut s, &g[..1], &[0, 0]).is_err(),
            "one gradient per param"
        );
    }
}

#[test]
fn gradient_grow_matches_a_brute_force_sort_and_zeroes_new_state() {
    let mut r = Rng::new(21);
    for dev in devices() {
        let sizes = [50, 4_000, 123_457];
        let layers: Vec<Layer> = sizes
            .iter()
            .map(|&n| {
                let mask: Vec<f32> = (0..n).map(|_| (r.uniform() < 0.2) as u8 as f32).collect();
                // Nonzero weights and momenta off the mask too, to see them zeroed on growth.
                let w = (0..n).map(|_| r.normal()).collect();
                let m = Some((0..n).map(|_| r.normal()).collect());
                Layer { w, mask, m }
            })
            .collect();
        let gs: Vec<Vec<f32>> = sizes
            .iter()
            .map(|&n| (0..n).map(|_| (r.below(50) as f32 - 25.0) * 0.01).collect())
            .collect();
        let mut s = store(&dev, &layers);
        let g = grads(&dev, &s, &gs);
        let counts = [7, 1_000, 30_000];
        assert_eq!(grow_gradient(&mut s, &g, &counts).unwrap(), counts.to_vec());
        let (w, k, m) = host(&s);
        for l in 0..sizes.len() {
            let inactive: Vec<bool> = layers[l].mask.iter().map(|&v| v == 0.0).collect();
            let pick = topk_reference(&gs[l], &inactive, counts[l]);
            for i in 0..sizes[l] {
                let was = layers[l].mask[i];
                let (m0, w0) = (layers[l].m.as_ref().unwrap()[i], layers[l].w[i]);
                if pick[i] {
                    assert_eq!(
                        (k[l][i], w[l][i], m[l].as_ref().unwrap()[i]),
                        (1.0, 0.0, 0.0)
                    );
                } else {
                    assert_eq!((k[l][i], w[l][i], m[l].as_ref().unwrap()[i]), (was, w0, m0));
                }
            }
        }
    }
}

// ---- random and momentum grow ---------------------------------------------------------------------

#[test]
fn random_grow_is_deterministic_per_seed_and_only_picks_inactive() {
    let mut r = Rng::new(5);
    for dev in devices() {
        let layers: Vec<Layer> = [300, 20_000]
            .iter()
            .map(|&n| {
                let mask: Vec<f32> = (0..n).map(|_| (r.uniform() < 0.5) as u8 as f32).collect();
                let w = mask.iter().map(|&k| k * r.normal()).collect();
                Layer { w, mask, m: None }
            })
            .collect();
        let run = |seed: u64| {
            let mut s = store(&dev, &layers);
            assert_eq!(
                grow_random(&mut s, &[40, 3_000], seed).unwrap(),
                vec![40, 3_000]
            );
            host(&s).1
        };
        let (a, b, c) = (run(1), run(1), run(2));
        assert_eq!(a, b, "same seed, same picks");
        assert_ne!(a[0], c[0], "another seed, other picks");
        assert_ne!(a[1], c[1]);
        for (l, layer) in layers.iter().enumerate() {
            for (i, &was) in layer.mask.iter().enumerate() {
                assert!(
                    was == 0.0 || a[l][i] == 1.0,
                    "an active position stays active"
                );
            }
        }
        // Identical on every device.
        if !dev.is_cpu() {
            let mut s = store(&Device::Cpu, &layers);
            grow_random(&mut s, &[40, 3_000], 1).unwrap();
            assert_eq!(
                host(&s).1,
                a,
                "CPU and {} grow the same positions",
                dev.name()
            );
        }
    }
}

#[test]
fn random_grow_is_uniform() {
    // 100 000 inactive positions, 20 000 grown: each of 100 blocks of 1 000 expects 200.
    let n = 100_000;
    let (bins, grow) = (100, 20_000);
    for dev in devices() {
        for seed in [1, 7] {
            let mut s = store(&dev, &[layer(&vec![0.0; n], &vec![0.0; n], None)]);
            grow_random(&mut s, &[grow], seed).unwrap();
            let k = &host(&s).1[0];
            let expect = grow as f64 / bins as f64;
            let chi2: f64 = k
                .chunks(n / bins)
                .map(|c| {
                    let o = c.iter().filter(|&&v| v != 0.0).count() as f64;
                    (o - expect).powi(2) / expect
                })
                .sum();
            // 99 degrees of freedom: P(chi2 > 148) ≈ 0.001.
            assert!(
                chi2 < 148.0,
                "{} seed {seed}: chi-square {chi2}",
                dev.name()
            );
            // Odd and even positions alike (no lattice bias).
            let odd = k.iter().skip(1).step_by(2).filter(|&&v| v != 0.0).count() as f64;
            assert!((odd - grow as f64 / 2.0).abs() < 4.0 * (grow as f64 / 4.0).sqrt());
        }
    }
}

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
            if let Some(k) = &p.mask {
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
                let k = p.mask.as_ref().unwrap().to_vec().unwrap();
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

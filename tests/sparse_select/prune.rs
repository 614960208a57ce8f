//! Magnitude pruning (Ψ), per layer and global: hand-made cases, k = 0 and k = all, and a
//! brute-force sort.

use super::*;

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

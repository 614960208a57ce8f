//! Regrowth (Φ) by gradient and at random: only inactive positions, ties to the lower index,
//! new state zeroed, determinism and uniformity.

use super::*;

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

//! Parity of the `select` family (kernels/select.cu and src/backend/cpu/select.rs).

use super::*;

use suptickets::backend::cpu::select::{segments, RADIX_PASSES};
use suptickets::backend::{Score, SelectAction, SelectGroup, SelectKey, SelectTarget};

/// Every key kind: |x| or hash, eligible everywhere / active / inactive.
fn select_keys() -> Vec<SelectKey> {
    let mut keys = vec![];
    for (score, seed) in [(0, 0), (1, 0xDEAD_BEEF)] {
        for eligible in 0..3 {
            keys.push(SelectKey {
                seed,
                base: 1000,
                score,
                eligible,
            });
        }
    }
    keys
}

#[test]
fn parity_select_hist_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(40);
    for n in [1, 1000, 300_001] {
        for values in [normal(&mut r, n), dup_values(&mut r, n)] {
            let m = mask(&mut r, n, 0.3);
            let (sg, mg) = (up(&g, &values, &[n]), up(&g, &m, &[n]));
            for key in select_keys() {
                // First digit, then a digit under a prefix taken from an actual key.
                let k0 = suptickets::backend::cpu::select::select_key(
                    values[n / 2],
                    m[n / 2],
                    &key,
                    n / 2,
                );
                for (pass, (shift, bits)) in RADIX_PASSES.into_iter().enumerate() {
                    let pm = if pass == 0 {
                        0
                    } else {
                        !0u32 << (shift + bits)
                    };
                    let mut want = vec![3u32; 1 << bits];
                    cpu::select::select_hist_f32(
                        &values,
                        &m,
                        &key,
                        k0 & pm,
                        pm,
                        shift,
                        bits,
                        &mut want,
                    );
                    let mut got = vec![3u32; 1 << bits];
                    g.select_hist_f32(&sg, &mg, &key, k0 & pm, pm, shift, bits, &mut got)
                        .unwrap();
                    assert_eq!(got, want, "n {n} key {key:?} pass {pass}");
                }
            }
        }
    }
}

#[test]
fn parity_select_count_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(41);
    for n in [1, 5000, 1_000_003] {
        let values = dup_values(&mut r, n);
        let m = mask(&mut r, n, 0.5);
        let (sg, mg) = (up(&g, &values, &[n]), up(&g, &m, &[n]));
        for key in select_keys() {
            for (lo, hi) in [
                (2, u32::MAX),
                (0x3e80_0001, 0x3e80_0001),
                (0, 0),
                (1, 0x4000_0000),
            ] {
                for segs in [1, segments(n), 7] {
                    let mut want = vec![0u32; segs];
                    cpu::select::select_count_f32(&values, &m, &key, lo, hi, &mut want);
                    let mut got = vec![9u32; segs];
                    g.select_count_f32(&sg, &mg, &key, lo, hi, &mut got)
                        .unwrap();
                    assert_eq!(
                        got, want,
                        "n {n} key {key:?} [{lo:#x}, {hi:#x}] {segs} segments"
                    );
                }
            }
        }
    }
}

#[test]
fn parity_select_apply_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(42);
    for n in [1, 777, 400_000] {
        let w0 = dup_values(&mut r, n);
        let sc = dup_values(&mut r, n);
        let m0 = normal(&mut r, n);
        let k0 = mask(&mut r, n, 0.4);
        let w0: Vec<f32> = w0.iter().zip(&k0).map(|(w, k)| w * k).collect();
        for key in select_keys().into_iter().filter(|k| k.eligible != 0) {
            for action in [0u32, 1] {
                for with_score in [false, true] {
                    for with_m in [false, true] {
                        // Threshold at the key of 0.5 (many ties), taking some of them.
                        let t = if key.score == 0 {
                            0.5f32.to_bits() + 1
                        } else {
                            1 << 30
                        };
                        let segs = segments(n);
                        let tie_before: Vec<u32> = (0..segs as u32).map(|b| b * 3).collect();
                        let tie_take = (segs as u32 * 3) / 2 + 5;
                        let (mut w, mut k, mut m) = (w0.clone(), k0.clone(), m0.clone());
                        let mut want = vec![0u32; segs];
                        cpu::select::select_apply_f32(
                            with_score.then_some(&sc[..]),
                            &mut w,
                            &mut k,
                            with_m.then_some(&mut m[..]),
                            &key,
                            t,
                            &tie_before,
                            tie_take,
                            action,
                            &mut want,
                        );
                        let sg = up(&g, &sc, &[n]);
                        let (mut wg, mut kg, mut mg) =
                            (up(&g, &w0, &[n]), up(&g, &k0, &[n]), up(&g, &m0, &[n]));
                        let mut got = vec![0u32; segs];
                        g.select_apply_f32(
                            with_score.then_some(&sg),
                            &mut wg,
                            &mut kg,
                            with_m.then_some(&mut mg),
                            &key,
                            t,
                            &tie_before,
                            tie_take,
                            action,
                            &mut got,
                        )
                        .unwrap();
                        let what = format!(
                            "n {n} key {key:?} action {action} score {with_score} m {with_m}"
                        );
                        assert_eq!(got, want, "{what}: changed");
                        assert_eq!(down(&wg), w, "{what}: w");
                        assert_eq!(down(&kg), k, "{what}: mask");
                        assert_eq!(down(&mg), m, "{what}: momentum");
                    }
                }
            }
        }
    }
}

/// (weights, masks, momenta, scores) of a few layers, on the host.
type Layers = (Vec<Vec<f32>>, Vec<Vec<f32>>, Vec<Vec<f32>>, Vec<Vec<f32>>);

fn select_layers(r: &mut Rng, sizes: &[usize], dup: bool) -> Layers {
    let mut out: Layers = Default::default();
    for &n in sizes {
        let k = mask(r, n, 0.3);
        let v = |r: &mut Rng| if dup { dup_values(r, n) } else { normal(r, n) };
        out.0
            .push(v(r).iter().zip(&k).map(|(a, b)| a * b).collect());
        out.2
            .push(v(r).iter().zip(&k).map(|(a, b)| a * b).collect());
        out.3.push(v(r));
        out.1.push(k);
    }
    out
}

/// Runs `select_update` on `be` with the layers uploaded to `dev`; returns the new state and
/// the change counts.
fn run_select(
    dev: &Device,
    l: &Layers,
    global: bool,
    ks: &[usize],
    score: Score,
    with_score: bool,
    action: SelectAction,
) -> (Layers, Vec<Vec<usize>>) {
    let to = |v: &Vec<Vec<f32>>| -> Vec<Tensor> {
        v.iter()
            .map(|x| Tensor::from_slice(x, &[x.len()], dev).unwrap())
            .collect()
    };
    let (mut w, mut k, mut m, s) = (to(&l.0), to(&l.1), to(&l.2), to(&l.3));
    let mut targets: Vec<SelectTarget<'_>> = w
        .iter_mut()
        .zip(k.iter_mut())
        .zip(m.iter_mut())
        .zip(&s)
        .map(|(((w, k), m), s)| SelectTarget {
            score: with_score.then_some(s),
            weight: w,
            mask: k,
            momentum: Some(m),
        })
        .collect();
    let mut groups: Vec<SelectGroup<'_>> = if global {
        vec![SelectGroup {
            targets,
            k: ks[0],
            score,
        }]
    } else {
        let mut gs = vec![];
        for (i, t) in targets.drain(..).enumerate() {
            gs.push(SelectGroup {
                targets: vec![t],
                k: ks[i],
                score,
            });
        }
        gs
    };
    let changed = dev.backend().select_update(&mut groups, action).unwrap();
    drop(groups);
    let back = |v: &[Tensor]| v.iter().map(down).collect::<Vec<_>>();
    ((back(&w), back(&k), back(&m), vec![]), changed)
}

#[test]
fn backend_select_update_prune_and_grow() {
    let g = gpu_or_skip!();
    let gd = g.device();
    let mut r = Rng::new(43);
    for dup in [false, true] {
        let sizes = [3, 4096, 100_000, 1_200_000, 17];
        let l = select_layers(&mut r, &sizes, dup);
        let active: Vec<usize> =
            l.1.iter()
                .map(|k| k.iter().filter(|&&v| v != 0.0).count())
                .collect();
        let inactive: Vec<usize> = sizes.iter().zip(&active).map(|(n, a)| n - a).collect();
        let total_active: usize = active.iter().sum();
        let cases: Vec<(bool, Vec<usize>, SelectAction)> = vec![
            (true, vec![total_active / 2], SelectAction::Keep),
            (true, vec![0], SelectAction::Keep),
            (true, vec![total_active], SelectAction::Keep),
            (
                false,
                active.iter().map(|a| a / 3).collect(),
                SelectAction::Keep,
            ),
            (
                false,
                inactive.iter().map(|a| a / 4).collect(),
                SelectAction::Grow,
            ),
            (false, inactive.clone(), SelectAction::Grow),
            (false, vec![0; sizes.len()], SelectAction::Grow),
        ];
        for (global, ks, action) in cases {
            for (score, with_score) in [
                (Score::Abs, false),
                (Score::Abs, true),
                (Score::Hash(9), false),
            ] {
                let (want, wc) =
                    run_select(&Device::Cpu, &l, global, &ks, score, with_score, action);
                let (got, gc) = run_select(&gd, &l, global, &ks, score, with_score, action);
                let what = format!(
                    "dup {dup} global {global} ks {ks:?} {action:?} {score:?} score {with_score}"
                );
                assert_eq!(gc, wc, "{what}: changed");
                assert_eq!(got.0, want.0, "{what}: weights");
                assert_eq!(got.1, want.1, "{what}: masks");
                assert_eq!(got.2, want.2, "{what}: momenta");
            }
        }
    }
}

#[test]
fn backend_count_nonzero_and_select_errors() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(44);
    let xs: Vec<Vec<f32>> = [0, 1, 5000, 2_000_001]
        .iter()
        .map(|&n| {
            let mut v = mask(&mut r, n, 0.37);
            if n > 2 {
                v[0] = -0.0;
                v[1] = f32::NAN;
            }
            v
        })
        .collect();
    let cpu_t: Vec<Tensor> = xs
        .iter()
        .map(|x| Tensor::from_vec(x.clone(), &[x.len()]).unwrap())
        .collect();
    let gpu_t: Vec<Tensor> = xs.iter().map(|x| up(&g, x, &[x.len()])).collect();
    let want = cpu_be()
        .count_nonzero(&cpu_t.iter().collect::<Vec<_>>())
        .unwrap();
    let got = g.count_nonzero(&gpu_t.iter().collect::<Vec<_>>()).unwrap();
    assert_eq!(got, want);
    // k beyond the eligible positions: an error on both backends.
    let l = select_layers(&mut r, &[1000], false);
    let inactive = l.1[0].iter().filter(|&&v| v == 0.0).count();
    for dev in [Device::Cpu, g.device()] {
        let mut w = Tensor::from_slice(&l.0[0], &[1000], &dev).unwrap();
        let mut k = Tensor::from_slice(&l.1[0], &[1000], &dev).unwrap();
        let mut groups = vec![SelectGroup {
            targets: vec![SelectTarget {
                score: None,
                weight: &mut w,
                mask: &mut k,
                momentum: None,
            }],
            k: inactive + 1,
            score: Score::Abs,
        }];
        let e = dev
            .backend()
            .select_update(&mut groups, SelectAction::Grow)
            .unwrap_err();
        assert!(e.to_string().contains("eligible"), "{}: {e}", dev.name());
    }
}

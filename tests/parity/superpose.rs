//! Parity of the `superpose` family (kernels/superpose.cu and src/backend/cpu/superpose.rs).

use super::*;

use suptickets::backend::cpu::select::{segments, RADIX_PASSES};
use suptickets::backend::{SuperposeGroup, SuperposeParams, SuperposeTarget};

/// Inputs of the superpose kernels: (S, W, mask, CAA counts) with ties among the averaged
/// values (quarter steps), zeros, both signs, and W zero off the mask.
fn superpose_inputs(r: &mut Rng, n: usize) -> SuperposeLayer {
    let s = dup_values(r, n);
    let m = mask(r, n, 0.4);
    let w: Vec<f32> = dup_values(r, n)
        .iter()
        .zip(&m)
        .map(|(a, b)| a * b)
        .collect();
    let c: Vec<f32> = (0..n).map(|_| r.below(4) as f32).collect();
    (s, w, m, c)
}

/// Every averaging rule: CIA (ticket 3), CIMA (β = 0.8, inexact coefficients), CAA.
fn superpose_params() -> Vec<SuperposeParams> {
    vec![
        SuperposeParams::cia(3),
        SuperposeParams::cima(0.8),
        SuperposeParams::caa(),
    ]
}

#[test]
fn parity_superpose_hist_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(50);
    for n in [1, 1000, 300_001] {
        let (s, w, m, c) = superpose_inputs(&mut r, n);
        let (sg, wg, mg, cg) = (
            up(&g, &s, &[n]),
            up(&g, &w, &[n]),
            up(&g, &m, &[n]),
            up(&g, &c, &[n]),
        );
        for p in superpose_params() {
            for with_mask in [false, true] {
                let (mh, md) = (with_mask.then_some(&m[..]), with_mask.then_some(&mg));
                // A real key as the prefix of the later passes.
                let (a, _) =
                    cpu::superpose::superpose_value(s[n / 2], w[n / 2], m[n / 2], c[n / 2], &p);
                let k0 = cpu::select::abs_key(a);
                for (pass, (shift, bits)) in RADIX_PASSES.into_iter().enumerate() {
                    let pm = if pass == 0 {
                        0
                    } else {
                        !0u32 << (shift + bits)
                    };
                    let mut want = vec![3u32; 1 << bits];
                    cpu::superpose::superpose_hist_f32(
                        &s,
                        &w,
                        mh,
                        Some(&c),
                        &p,
                        k0 & pm,
                        pm,
                        shift,
                        bits,
                        &mut want,
                    );
                    let mut got = vec![3u32; 1 << bits];
                    g.superpose_hist_f32(
                        &sg,
                        &wg,
                        md,
                        Some(&cg),
                        &p,
                        k0 & pm,
                        pm,
                        shift,
                        bits,
                        &mut got,
                    )
                    .unwrap();
                    assert_eq!(got, want, "n {n} {p:?} mask {with_mask} pass {pass}");
                }
            }
        }
    }
}

#[test]
fn parity_superpose_count_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(51);
    for n in [1, 5000, 1_000_003] {
        let (s, w, m, c) = superpose_inputs(&mut r, n);
        let (sg, wg, mg, cg) = (
            up(&g, &s, &[n]),
            up(&g, &w, &[n]),
            up(&g, &m, &[n]),
            up(&g, &c, &[n]),
        );
        for p in superpose_params() {
            for (lo, hi) in [
                (1, u32::MAX),
                (0x3e80_0001, 0x3e80_0001),
                (1, 1),
                (2, 0x3f00_0000),
            ] {
                for segs in [1, segments(n), 7] {
                    let mut want = vec![0u32; segs];
                    cpu::superpose::superpose_count_f32(
                        &s,
                        &w,
                        Some(&m),
                        Some(&c),
                        &p,
                        lo,
                        hi,
                        &mut want,
                    );
                    let mut got = vec![9u32; segs];
                    g.superpose_count_f32(&sg, &wg, Some(&mg), Some(&cg), &p, lo, hi, &mut got)
                        .unwrap();
                    assert_eq!(got, want, "n {n} {p:?} [{lo:#x}, {hi:#x}] {segs} segments");
                }
            }
        }
    }
}

#[test]
fn parity_superpose_apply_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(52);
    for n in [1, 777, 400_000] {
        let (s0, w, m, c0) = superpose_inputs(&mut r, n);
        for p in superpose_params() {
            for with_mask in [false, true] {
                for with_count in [false, true] {
                    // Threshold at the key of 0.5 (many ties), taking some of them.
                    let t = 0.5f32.to_bits() + 1;
                    let segs = segments(n);
                    let tie_before: Vec<u32> = (0..segs as u32).map(|b| b * 3).collect();
                    let tie_take = (segs as u32 * 3) / 2 + 5;
                    let (mut s, mut c) = (s0.clone(), c0.clone());
                    let mut want = vec![0u32; segs];
                    cpu::superpose::superpose_apply_f32(
                        &mut s,
                        &w,
                        with_mask.then_some(&m[..]),
                        with_count.then_some(&mut c[..]),
                        &p,
                        t,
                        &tie_before,
                        tie_take,
                        &mut want,
                    );
                    let (mut sg, wg, mg, mut cg) = (
                        up(&g, &s0, &[n]),
                        up(&g, &w, &[n]),
                        up(&g, &m, &[n]),
                        up(&g, &c0, &[n]),
                    );
                    let mut got = vec![0u32; segs];
                    g.superpose_apply_f32(
                        &mut sg,
                        &wg,
                        with_mask.then_some(&mg),
                        with_count.then_some(&mut cg),
                        &p,
                        t,
                        &tie_before,
                        tie_take,
                        &mut got,
                    )
                    .unwrap();
                    let what = format!("n {n} {p:?} mask {with_mask} count {with_count}");
                    assert_eq!(got, want, "{what}: kept");
                    assert_eq!(down(&sg), s, "{what}: S");
                    assert_eq!(down(&cg), c, "{what}: counts");
                }
            }
        }
    }
}

/// One layer of a superposition on the host: (S, W, mask, count).
type SuperposeLayer = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

/// What `run_superpose` returns: the new S and counts per layer, the kept counts per group.
type SuperposeOut = (Vec<Vec<f32>>, Vec<Vec<f32>>, Vec<Vec<usize>>);

/// Runs `superpose_update` on `dev` over layers (S, W, mask, count); returns the new S and
/// counts and the kept counts.
fn run_superpose(
    dev: &Device,
    layers: &[SuperposeLayer],
    global: bool,
    ks: &[usize],
    p: &SuperposeParams,
) -> SuperposeOut {
    let to = |x: &Vec<f32>| Tensor::from_slice(x, &[x.len()], dev).unwrap();
    let mut s: Vec<Tensor> = layers.iter().map(|l| to(&l.0)).collect();
    let w: Vec<Tensor> = layers.iter().map(|l| to(&l.1)).collect();
    let m: Vec<Tensor> = layers.iter().map(|l| to(&l.2)).collect();
    let mut c: Vec<Tensor> = layers.iter().map(|l| to(&l.3)).collect();
    let mut targets: Vec<SuperposeTarget<'_>> = s
        .iter_mut()
        .zip(&w)
        .zip(&m)
        .zip(c.iter_mut())
        .map(|(((s, w), m), c)| SuperposeTarget {
            s,
            w,
            mask: Some(m),
            count: Some(c),
        })
        .collect();
    let mut groups: Vec<SuperposeGroup<'_>> = if global {
        vec![SuperposeGroup { targets, k: ks[0] }]
    } else {
        targets
            .drain(..)
            .zip(ks)
            .map(|(t, &k)| SuperposeGroup {
                targets: vec![t],
                k,
            })
            .collect()
    };
    let kept = dev.backend().superpose_update(&mut groups, p).unwrap();
    drop(groups);
    (
        s.iter().map(down).collect(),
        c.iter().map(down).collect(),
        kept,
    )
}

#[test]
fn backend_superpose_update_global_and_layerwise() {
    let g = gpu_or_skip!();
    let gd = g.device();
    let mut r = Rng::new(53);
    let sizes = [3, 4096, 100_000, 1_200_000, 17];
    let layers: Vec<_> = sizes.iter().map(|&n| superpose_inputs(&mut r, n)).collect();
    let total: usize = sizes.iter().sum();
    let cases: Vec<(bool, Vec<usize>)> = vec![
        (true, vec![total / 10]),
        (true, vec![0]),
        (true, vec![total]),
        (false, sizes.iter().map(|n| n / 3).collect()),
        (false, sizes.iter().map(|n| n / 20 + 1).collect()),
    ];
    for p in superpose_params() {
        for (global, ks) in &cases {
            let want = run_superpose(&Device::Cpu, &layers, *global, ks, &p);
            let got = run_superpose(&gd, &layers, *global, ks, &p);
            let what = format!("{p:?} global {global} ks {ks:?}");
            assert_eq!(got.2, want.2, "{what}: kept");
            assert_eq!(got.0, want.0, "{what}: S");
            assert_eq!(got.1, want.1, "{what}: counts");
        }
    }
}

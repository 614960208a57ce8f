//! The select drivers against each other and against a brute-force sort: the CPU fast path
//! ([`select_update_fast`]) and the radix driver over the kernel twins
//! ([`select_update_reference`]) pick the same positions as "sort eligible keys descending,
//! ties to the lower flat index, take k".

use super::select::{abs_key, count_nonzero_f32, hash_key, select_key, select_update_reference};
use super::select_fast::select_update_fast;
use crate::backend::{Score, SelectTarget};
use crate::backend::{SelectAction, SelectGroup, SelectKey};
use crate::error::Result;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Brute force: sort eligible (key, index) and take the first k.
fn brute(keys: &[u32], k: usize) -> Vec<bool> {
    let mut idx: Vec<usize> = (0..keys.len()).filter(|&i| keys[i] != 0).collect();
    idx.sort_by(|&a, &b| keys[b].cmp(&keys[a]).then(a.cmp(&b)));
    let mut sel = vec![false; keys.len()];
    for &i in &idx[..k] {
        sel[i] = true;
    }
    sel
}

struct State {
    w: Vec<Tensor>,
    mask: Vec<Tensor>,
    m: Vec<Tensor>,
    score: Vec<Tensor>,
}

fn state(r: &mut Rng, sizes: &[usize], dup: bool, density: f32) -> State {
    let v = |r: &mut Rng, n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                if dup {
                    (r.below(5) as f32 - 2.0) * 0.5
                } else {
                    r.normal()
                }
            })
            .collect()
    };
    let mut s = State {
        w: vec![],
        mask: vec![],
        m: vec![],
        score: vec![],
    };
    for &n in sizes {
        let mask: Vec<f32> = (0..n)
            .map(|_| (r.uniform() < density) as u8 as f32)
            .collect();
        let w: Vec<f32> = v(r, n).iter().zip(&mask).map(|(a, b)| a * b).collect();
        let m: Vec<f32> = v(r, n).iter().zip(&mask).map(|(a, b)| a * b).collect();
        s.w.push(Tensor::from_vec(w, &[n]).unwrap());
        s.mask.push(Tensor::from_vec(mask, &[n]).unwrap());
        s.m.push(Tensor::from_vec(m, &[n]).unwrap());
        s.score.push(Tensor::from_vec(v(r, n), &[n]).unwrap());
    }
    s
}

/// A select driver (fast or reference).
type Driver = fn(&mut [SelectGroup<'_>], SelectAction) -> Result<Vec<Vec<usize>>>;

/// (weights, masks, momenta, change counts) after a select.
type Outcome = (Vec<Vec<f32>>, Vec<Vec<f32>>, Vec<Vec<f32>>, Vec<usize>);

/// Runs one single-group select with `f` and returns the new state.
fn run(
    s: &State,
    k: usize,
    score: Score,
    with_score: bool,
    action: SelectAction,
    f: Driver,
) -> Outcome {
    let (mut w, mut mask, mut m) = (s.w.clone(), s.mask.clone(), s.m.clone());
    let targets = w
        .iter_mut()
        .zip(mask.iter_mut())
        .zip(m.iter_mut())
        .zip(&s.score)
        .map(|(((w, mask), m), sc)| SelectTarget {
            score: with_score.then_some(sc),
            weight: w,
            mask,
            momentum: Some(m),
        })
        .collect();
    let mut groups = [SelectGroup { targets, k, score }];
    let changed = f(&mut groups, action).unwrap().remove(0);
    let v = |t: &[Tensor]| t.iter().map(|t| t.to_vec().unwrap()).collect::<Vec<_>>();
    (v(&w), v(&mask), v(&m), changed)
}

/// The keys of the whole group (flat), as the selection sees them before the update.
fn group_keys_flat(s: &State, score: Score, with_score: bool, action: SelectAction) -> Vec<u32> {
    let mut out = vec![];
    let mut base = 0;
    for t in 0..s.w.len() {
        let (w, mask, sc) = (
            s.w[t].as_cpu().unwrap(),
            s.mask[t].as_cpu().unwrap(),
            s.score[t].as_cpu().unwrap(),
        );
        let key = SelectKey {
            seed: match score {
                Score::Hash(x) => x,
                Score::Abs => 0,
            },
            base,
            score: matches!(score, Score::Hash(_)) as u32,
            eligible: if action == SelectAction::Keep { 1 } else { 2 },
        };
        for i in 0..w.len() {
            let src = if with_score { sc[i] } else { w[i] };
            out.push(select_key(src, mask[i], &key, i));
        }
        base += w.len() as i64;
    }
    out
}

fn check_case(sizes: &[usize], dup: bool, density: f32, seed: u64) {
    let mut r = Rng::new(seed);
    let s = state(&mut r, sizes, dup, density);
    for action in [SelectAction::Keep, SelectAction::Grow] {
        for (score, with_score) in [
            (Score::Abs, false),
            (Score::Abs, true),
            (Score::Hash(seed * 7 + 1), false),
        ] {
            let keys = group_keys_flat(&s, score, with_score, action);
            let eligible = keys.iter().filter(|&&k| k != 0).count();
            for k in [0, 1, eligible / 3, eligible / 2 + 1, eligible] {
                let want = brute(&keys, k);
                let fast = run(&s, k, score, with_score, action, select_update_fast);
                let refr = run(&s, k, score, with_score, action, select_update_reference);
                assert_eq!(fast.0, refr.0, "w: {sizes:?} {action:?} {score:?} k={k}");
                assert_eq!(fast.1, refr.1, "mask: {sizes:?} {action:?} {score:?} k={k}");
                assert_eq!(fast.2, refr.2, "m");
                assert_eq!(fast.3, refr.3, "changed");
                // Against brute force: the new mask, flattened.
                let mask0: Vec<f32> = s.mask.iter().flat_map(|t| t.to_vec().unwrap()).collect();
                let mask1: Vec<f32> = fast.1.concat();
                let w1: Vec<f32> = fast.0.concat();
                let w0: Vec<f32> = s.w.iter().flat_map(|t| t.to_vec().unwrap()).collect();
                for i in 0..keys.len() {
                    let expect = match action {
                        SelectAction::Keep => {
                            if mask0[i] != 0.0 && !want[i] {
                                0.0
                            } else {
                                mask0[i]
                            }
                        }
                        SelectAction::Grow => {
                            if want[i] {
                                1.0
                            } else {
                                mask0[i]
                            }
                        }
                    };
                    assert_eq!(
                        mask1[i], expect,
                        "{sizes:?} {action:?} {score:?} k={k} i={i}"
                    );
                    let ew = if mask0[i] != mask1[i] { 0.0 } else { w0[i] };
                    assert_eq!(w1[i], ew);
                }
                let n: usize = fast.3.iter().sum();
                assert_eq!(
                    n,
                    if action == SelectAction::Keep {
                        eligible - k
                    } else {
                        k
                    }
                );
            }
        }
    }
}

#[test]
fn fast_path_matches_twins_and_brute_force_small_groups() {
    check_case(&[7, 100, 1, 333], false, 0.3, 1);
    check_case(&[50, 50, 50], true, 0.5, 2);
}

#[test]
fn fast_path_matches_twins_and_brute_force_large_groups() {
    // Above SMALL_GROUP: the histogram path, with distinct values and heavy duplicates
    // (ties split inside a chunk and across tensors).
    check_case(&[70_000, 3, 300_000], false, 0.2, 3);
    check_case(&[200_000, 90_001], true, 0.6, 4);
}

#[test]
fn keep_saturates_and_grow_beyond_the_eligible_count_fails() {
    let mut r = Rng::new(9);
    for sizes in [&[500usize, 20][..], &[40_000, 9_000]] {
        let s = state(&mut r, sizes, false, 0.3);
        let n: usize = sizes.iter().sum();
        let keep_all = run(
            &s,
            n,
            Score::Abs,
            false,
            SelectAction::Keep,
            select_update_fast,
        );
        let keep_ref = run(
            &s,
            n,
            Score::Abs,
            false,
            SelectAction::Keep,
            select_update_reference,
        );
        assert_eq!(keep_all.3, vec![0; sizes.len()], "nothing pruned");
        assert_eq!(keep_all.1, keep_ref.1);
        let v = |t: &[Tensor]| t.iter().map(|t| t.to_vec().unwrap()).collect::<Vec<_>>();
        assert_eq!(keep_all.0, v(&s.w));
        for f in [select_update_fast, select_update_reference] {
            let (mut w, mut k) = (s.w[0].clone(), s.mask[0].clone());
            let inactive = k.to_vec().unwrap().iter().filter(|&&v| v == 0.0).count();
            let mut g = [SelectGroup {
                targets: vec![SelectTarget {
                    score: None,
                    weight: &mut w,
                    mask: &mut k,
                    momentum: None,
                }],
                k: inactive + 1,
                score: Score::Abs,
            }];
            let e = f(&mut g, SelectAction::Grow).unwrap_err();
            assert!(e.to_string().contains("eligible"), "{e}");
        }
    }
}

#[test]
fn keys_order_like_magnitudes() {
    let xs = [0.0f32, -0.0, 1e-45, 0.5, -0.75, 1.0, f32::INFINITY];
    for w in xs.windows(2) {
        assert!(abs_key(w[0]) <= abs_key(w[1]), "{w:?}");
    }
    assert_eq!(abs_key(0.0), abs_key(-0.0));
    assert_eq!(abs_key(0.0), 1);
    assert!(abs_key(f32::NAN) > abs_key(f32::INFINITY));
    assert!((1..=1u32 << 31).contains(&hash_key(3, 5)));
    assert_ne!(hash_key(3, 5), hash_key(4, 5));
    assert_eq!(count_nonzero_f32(&[0.0, -0.0, 1.0, f32::NAN, -2.0]), 3);
}

//! Sup-tickets superposition (docs/computation.md, Sup-tickets): the CPU twins of
//! `kernels/superpose.cu` and the reference driver the CPU backend runs: the one radix driver
//! ([`crate::backend::radix::radix_update`], which the CUDA backend runs with the kernels) over the
//! twins.
//!
//! Every position gets the averaged value A of [`superpose_value`] (CIA / CIMA / CAA, see
//! [`SuperposeParams`]) and the key [`abs_key`]`(A)` (every position eligible), so "re-prune to
//! k" is the select family's "keep the k largest keys, ties to the lower flat index". The
//! averaged values are computed on the fly in every pass and never stored: three histogram
//! passes, a tie-count pass only when the ties at the threshold are split, then one fused pass
//! that writes S = A at the kept positions, 0 elsewhere, and the CAA counts.

use rayon::prelude::*;

use super::radix::{count_by, hist_by};
use super::select::abs_key;
use crate::backend::radix::{
    radix_update, segment_bounds, segments, BufOf, HostMemory, RadixKeys, RadixState, Threshold,
    TieWalk,
};
use crate::backend::{SelectAction, SuperposeGroup, SuperposeParams};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The averaged value of one position and its new activation count (twin of the kernels'
/// `st_superpose_value`). `method` 0: A = (a·S + b·W) / d, count unchanged. `method` 1 (CAA):
/// where `mask` ≠ 0, n' = n + 1 and A = (n·S + W) / n'; elsewhere A = S, n' = n. Each
/// operation is rounded once, as the kernels' `_rn` intrinsics.
#[inline(always)]
pub fn superpose_value(s: f32, w: f32, mask: f32, n: f32, p: &SuperposeParams) -> (f32, f32) {
    if p.method == 1 {
        if mask != 0.0 {
            let n1 = n + 1.0;
            ((n * s + w) / n1, n1)
        } else {
            (s, n)
        }
    } else {
        ((p.a * s + p.b * w) / p.d, n)
    }
}

/// The averaged value at `i` (no mask: active; no count: 0).
#[inline(always)]
fn value_at(
    s: &[f32],
    w: &[f32],
    mask: Option<&[f32]>,
    count: Option<&[f32]>,
    p: &SuperposeParams,
    i: usize,
) -> (f32, f32) {
    let mk = mask.map_or(1.0, |m| m[i]);
    let n = count.map_or(0.0, |c| c[i]);
    superpose_value(s[i], w[i], mk, n, p)
}

fn check_lens(op: &str, len: usize, w: usize, mask: Option<usize>, count: Option<usize>) {
    assert!(
        w == len && mask.is_none_or(|m| m == len) && count.is_none_or(|c| c == len),
        "{op}: lengths differ"
    );
}

/// Twin of `superpose_hist_f32`: for every averaged value whose key ([`abs_key`]) matches
/// `prefix` under `prefix_mask`, adds 1 to `hist[(key >> shift) & (2^bits − 1)]` (accumulated,
/// not overwritten, so the tensors of a group share one histogram). `mask` None: every
/// position active; `count` None: counts of 0 (and CAA needs them).
#[allow(clippy::too_many_arguments)]
pub fn superpose_hist_f32(
    s: &[f32],
    w: &[f32],
    mask: Option<&[f32]>,
    count: Option<&[f32]>,
    p: &SuperposeParams,
    prefix: u32,
    prefix_mask: u32,
    shift: u32,
    bits: u32,
    hist: &mut [u32],
) {
    let op = "superpose_hist_f32";
    check_lens(
        op,
        s.len(),
        w.len(),
        mask.map(|m| m.len()),
        count.map(|c| c.len()),
    );
    let key_at = |i: usize| abs_key(value_at(s, w, mask, count, p, i).0);
    hist_by(op, s.len(), key_at, prefix, prefix_mask, shift, bits, hist);
}

/// Twin of `superpose_count_f32`: `counts[b]` = number of averaged values whose key is in
/// `[lo, hi]` in segment b of `counts.len()` segments.
#[allow(clippy::too_many_arguments)]
pub fn superpose_count_f32(
    s: &[f32],
    w: &[f32],
    mask: Option<&[f32]>,
    count: Option<&[f32]>,
    p: &SuperposeParams,
    lo: u32,
    hi: u32,
    counts: &mut [u32],
) {
    let op = "superpose_count_f32";
    check_lens(
        op,
        s.len(),
        w.len(),
        mask.map(|m| m.len()),
        count.map(|c| c.len()),
    );
    let key_at = |i: usize| abs_key(value_at(s, w, mask, count, p, i).0);
    count_by(s.len(), key_at, lo, hi, counts);
}

/// Twin of `superpose_apply_f32`. Segment b of `kept.len()` segments walks its elements in
/// order; a key equal to `t` gets the rank `tie_before[b]` + (ties earlier in the segment), and
/// an element is selected when its key > t, or it equals t with a rank < `tie_take`. Every
/// element gets `s[i]` = selected ? A : 0 and, with `count`, its new activation count;
/// `kept[b]` = elements of segment b selected.
#[allow(clippy::too_many_arguments)]
pub fn superpose_apply_f32(
    s: &mut [f32],
    w: &[f32],
    mask: Option<&[f32]>,
    count: Option<&mut [f32]>,
    p: &SuperposeParams,
    t: u32,
    tie_before: &[u32],
    tie_take: u32,
    kept: &mut [u32],
) {
    let len = s.len();
    let op = "superpose_apply_f32";
    check_lens(
        op,
        len,
        w.len(),
        mask.map(|m| m.len()),
        count.as_ref().map(|c| c.len()),
    );
    assert_eq!(tie_before.len(), kept.len(), "{op}: lengths differ");
    let g = kept.len();
    // Split s (and the counts) at the segment bounds, so segments run in parallel.
    let mut s_parts = Vec::with_capacity(g);
    let mut c_parts: Vec<Option<&mut [f32]>> = Vec::with_capacity(g);
    let (mut s_rest, mut c_rest) = (s, count);
    for b in 0..g {
        let (a, e) = segment_bounds(b, g, len);
        let (head, tail) = std::mem::take(&mut s_rest).split_at_mut(e - a);
        s_parts.push(head);
        s_rest = tail;
        match c_rest.take() {
            Some(c) => {
                let (head, tail) = c.split_at_mut(e - a);
                c_parts.push(Some(head));
                c_rest = Some(tail);
            }
            None => c_parts.push(None),
        }
    }
    let thr = Threshold { key: t, tie_take };
    s_parts
        .into_par_iter()
        .zip(c_parts)
        .zip(kept.par_iter_mut())
        .enumerate()
        .for_each(|(b, ((sp, mut cp), kb))| {
            let (a, _) = segment_bounds(b, g, len);
            let mut walk = TieWalk::new(thr, tie_before[b]);
            let mut n = 0u32;
            for (j, sv) in sp.iter_mut().enumerate() {
                let i = a + j;
                let mk = mask.map_or(1.0, |m| m[i]);
                let c0 = cp.as_ref().map_or(0.0, |c| c[j]);
                let (v, c1) = superpose_value(*sv, w[i], mk, c0, p);
                let sel = walk.select(abs_key(v));
                *sv = if sel { v } else { 0.0 };
                if let Some(c) = cp.as_deref_mut() {
                    c[j] = c1;
                }
                n += sel as u32;
            }
            *kb = n;
        });
}

// ---- the driver -----------------------------------------------------------------------------

/// Checks shapes, sizes and the CAA counts of every group (devices are checked where the data
/// is touched).
pub fn check_superpose_groups(groups: &[SuperposeGroup<'_>], p: &SuperposeParams) -> Result<()> {
    if p.method > 1 {
        return Err(Error::Config(format!(
            "superpose: unknown averaging method {} (0: CIA/CIMA, 1: CAA)",
            p.method
        )));
    }
    if p.method == 0 && !(p.d != 0.0 && p.a.is_finite() && p.b.is_finite() && p.d.is_finite()) {
        return Err(Error::Config(format!(
            "superpose: bad averaging coefficients {p:?}"
        )));
    }
    for (gi, g) in groups.iter().enumerate() {
        let mut total = 0usize;
        for (ti, t) in g.targets.iter().enumerate() {
            let shape = t.s.shape();
            let what = |name: &str| format!("superpose group {gi}, target {ti}: {name}");
            t.w.expect_shape(shape, &what("ticket weight (against S)"))?;
            if let Some(m) = t.mask {
                m.expect_shape(shape, &what("mask (against S)"))?;
            }
            match &t.count {
                Some(c) => c.expect_shape(shape, &what("count (against S)"))?,
                None if p.method == 1 => {
                    return Err(Error::Config(what(
                        "CAA needs the per-connection activation counts",
                    )))
                }
                None => {}
            }
            total += t.s.numel();
        }
        if total >= u32::MAX as usize {
            return Err(Error::Shape(format!(
                "superpose group {gi}: {total} elements; a group must hold fewer than 2^32"
            )));
        }
        if g.k > total {
            return Err(Error::Shape(format!(
                "superpose group {gi}: k = {} exceeds its {total} elements",
                g.k
            )));
        }
    }
    Ok(())
}

/// Host slices of one target for reading: (s, w, mask, count).
#[allow(clippy::type_complexity)]
fn read_slices<'a>(
    t: &'a crate::backend::SuperposeTarget<'_>,
    op: &str,
) -> Result<(&'a [f32], &'a [f32], Option<&'a [f32]>, Option<&'a [f32]>)> {
    let host = |x: &'a Tensor, what: &str| {
        x.as_cpu()
            .map_err(|e| Error::Device(format!("{op}: {what}: {e}")))
    };
    Ok((
        host(t.s, "S")?,
        host(t.w, "ticket weight")?,
        t.mask.map(|m| host(m, "mask")).transpose()?,
        t.count.as_deref().map(|c| host(c, "count")).transpose()?,
    ))
}

/// The superpose family's keys over host tensors, for the radix driver: the kernel twins as
/// its passes.
struct SuperposeTwins<'g, 'a> {
    groups: &'g mut [SuperposeGroup<'a>],
    p: SuperposeParams,
}

impl RadixKeys for SuperposeTwins<'_, '_> {
    type Mem = HostMemory;
    fn mem(&self) -> &HostMemory {
        &HostMemory
    }
    fn op(&self) -> &'static str {
        "superpose_update"
    }
    fn groups(&self) -> usize {
        self.groups.len()
    }
    fn k(&self, g: usize) -> usize {
        self.groups[g].k
    }
    fn lens(&self, g: usize) -> Vec<usize> {
        self.groups[g].targets.iter().map(|t| t.s.numel()).collect()
    }
    fn hist(
        &self,
        g: usize,
        t: usize,
        st: &RadixState,
        shift: u32,
        bits: u32,
        hist: &mut Vec<u32>,
        at: usize,
    ) -> Result<()> {
        let (s, w, m, c) = read_slices(&self.groups[g].targets[t], self.op())?;
        let h = &mut hist[at..at + (1 << bits)];
        let (prefix, pmask) = (st.prefix, st.prefix_mask);
        superpose_hist_f32(s, w, m, c, &self.p, prefix, pmask, shift, bits, h);
        Ok(())
    }
    fn count(&self, g: usize, t: usize, key: u32, counts: &mut Vec<u32>, at: usize) -> Result<()> {
        let (s, w, m, c) = read_slices(&self.groups[g].targets[t], self.op())?;
        let n = segments(s.len());
        superpose_count_f32(s, w, m, c, &self.p, key, key, &mut counts[at..at + n]);
        Ok(())
    }
    fn apply(
        &mut self,
        g: usize,
        t: usize,
        thr: Threshold,
        tie_before: &BufOf<Self>,
        out: &mut BufOf<Self>,
        at: usize,
    ) -> Result<()> {
        let op = self.op();
        let target = &mut self.groups[g].targets[t];
        let dev = |e: Error, what: &str| Error::Device(format!("{op}: {what}: {e}"));
        let w = target.w.as_cpu().map_err(|e| dev(e, "ticket weight"))?;
        let m = target
            .mask
            .map(|m| m.as_cpu())
            .transpose()
            .map_err(|e| dev(e, "mask"))?;
        let c = match target.count.as_deref_mut() {
            Some(c) => Some(c.as_cpu_mut().map_err(|e| dev(e, "count"))?),
            None => None,
        };
        let s = target.s.as_cpu_mut().map_err(|e| dev(e, "S"))?;
        let n = segments(s.len());
        let (tb, kept) = (&tie_before[at..at + n], &mut out[at..at + n]);
        superpose_apply_f32(s, w, m, c, &self.p, thr.key, tb, thr.tie_take, kept);
        Ok(())
    }
}

/// [`crate::backend::Backend::superpose_update`] on host tensors: the radix driver over the
/// kernel twins, i.e. exactly the passes and host logic of the CUDA backend. The CPU backend
/// runs it; it is also the oracle of the CUDA backend.
pub fn superpose_update_cpu(
    groups: &mut [SuperposeGroup<'_>],
    p: &SuperposeParams,
) -> Result<Vec<Vec<usize>>> {
    check_superpose_groups(groups, p)?;
    radix_update(&mut SuperposeTwins { groups, p: *p }, SelectAction::Keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::SuperposeTarget;
    use crate::rng::Rng;

    /// Brute force: the k largest |A| (ties to the lower flat index) keep A, the rest get 0.
    fn brute(a: &[f32], k: usize) -> Vec<f32> {
        let mut idx: Vec<usize> = (0..a.len()).collect();
        idx.sort_by(|&x, &y| abs_key(a[y]).cmp(&abs_key(a[x])).then(x.cmp(&y)));
        let mut out = vec![0.0; a.len()];
        for &i in &idx[..k] {
            out[i] = a[i];
        }
        out
    }

    #[test]
    fn values_by_hand() {
        // CIA, ticket 2: (2·3 + 6) / 3 = 4.
        assert_eq!(
            superpose_value(3.0, 6.0, 1.0, 0.0, &SuperposeParams::cia(2)).0,
            4.0
        );
        // CIMA β = 0.75: 0.75·4 + 0.25·8 = 5.
        assert_eq!(
            superpose_value(4.0, 8.0, 0.0, 0.0, &SuperposeParams::cima(0.75)).0,
            5.0
        );
        // CAA: active with count 3: (3·2 + 6) / 4 = 3, count 4; inactive: unchanged.
        assert_eq!(
            superpose_value(2.0, 6.0, 1.0, 3.0, &SuperposeParams::caa()),
            (3.0, 4.0)
        );
        assert_eq!(
            superpose_value(2.0, 0.0, 0.0, 3.0, &SuperposeParams::caa()),
            (2.0, 3.0)
        );
    }

    /// Runs the driver on `sizes` tensors as one group (or one group each) and checks it
    /// against the brute force over the concatenation.
    fn check(sizes: &[usize], dup: bool, global: bool, p: SuperposeParams, seed: u64) {
        let mut r = Rng::new(seed);
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
        let mut s: Vec<Tensor> = vec![];
        let mut w: Vec<Tensor> = vec![];
        let mut m: Vec<Tensor> = vec![];
        let mut c: Vec<Tensor> = vec![];
        for &n in sizes {
            let mask: Vec<f32> = (0..n).map(|_| (r.uniform() < 0.4) as u8 as f32).collect();
            let wv: Vec<f32> = v(&mut r, n).iter().zip(&mask).map(|(a, b)| a * b).collect();
            s.push(Tensor::from_vec(v(&mut r, n), &[n]).unwrap());
            w.push(Tensor::from_vec(wv, &[n]).unwrap());
            m.push(Tensor::from_vec(mask, &[n]).unwrap());
            c.push(Tensor::from_vec((0..n).map(|_| r.below(4) as f32).collect(), &[n]).unwrap());
        }
        // Expected averaged values and counts.
        let mut avg: Vec<Vec<f32>> = vec![];
        let mut cnt: Vec<Vec<f32>> = vec![];
        for t in 0..sizes.len() {
            let (sv, wv, mv, cv) = (
                s[t].to_vec().unwrap(),
                w[t].to_vec().unwrap(),
                m[t].to_vec().unwrap(),
                c[t].to_vec().unwrap(),
            );
            let (a, n): (Vec<f32>, Vec<f32>) = (0..sv.len())
                .map(|i| superpose_value(sv[i], wv[i], mv[i], cv[i], &p))
                .unzip();
            avg.push(a);
            cnt.push(n);
        }
        let total: usize = sizes.iter().sum();
        let ks: Vec<usize> = if global {
            vec![total / 3]
        } else {
            sizes.iter().map(|n| n / 2).collect()
        };
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
                .zip(&ks)
                .map(|(t, &k)| SuperposeGroup {
                    targets: vec![t],
                    k,
                })
                .collect()
        };
        let kept = superpose_update_cpu(&mut groups, &p).unwrap();
        drop(groups);
        let got: Vec<Vec<f32>> = s.iter().map(|t| t.to_vec().unwrap()).collect();
        if global {
            let want = brute(&avg.concat(), ks[0]);
            assert_eq!(got.concat(), want, "{sizes:?} {p:?}");
            assert_eq!(kept[0].iter().sum::<usize>(), ks[0]);
        } else {
            for t in 0..sizes.len() {
                assert_eq!(got[t], brute(&avg[t], ks[t]), "{sizes:?} {p:?} layer {t}");
                assert_eq!(kept[t][0], ks[t]);
            }
        }
        for t in 0..sizes.len() {
            let want = if p.method == 1 {
                &cnt[t]
            } else {
                &c[t].to_vec().unwrap()
            };
            assert_eq!(&c[t].to_vec().unwrap(), want);
        }
    }

    #[test]
    fn driver_matches_brute_force() {
        for p in [
            SuperposeParams::cia(3),
            SuperposeParams::cima(0.8),
            SuperposeParams::caa(),
        ] {
            for global in [true, false] {
                check(&[7, 100, 1, 333], false, global, p, 1);
                check(&[50, 50, 50], true, global, p, 2);
                check(&[70_000, 3, 9000], true, global, p, 3);
                check(&[100_003], false, global, p, 4);
            }
        }
    }

    #[test]
    fn k_zero_clears_and_errors_are_clear() {
        let mut s = Tensor::from_vec(vec![1.0, -2.0], &[2]).unwrap();
        let w = Tensor::from_vec(vec![3.0, 0.0], &[2]).unwrap();
        let mut groups = vec![SuperposeGroup {
            targets: vec![SuperposeTarget {
                s: &mut s,
                w: &w,
                mask: None,
                count: None,
            }],
            k: 0,
        }];
        assert_eq!(
            superpose_update_cpu(&mut groups, &SuperposeParams::cia(1)).unwrap(),
            vec![vec![0]]
        );
        let e = superpose_update_cpu(&mut groups, &SuperposeParams::caa()).unwrap_err();
        assert!(e.to_string().contains("CAA"), "{e}");
        groups[0].k = 3;
        let e = superpose_update_cpu(&mut groups, &SuperposeParams::cia(1)).unwrap_err();
        assert!(e.to_string().contains("k = 3"), "{e}");
        drop(groups);
        assert_eq!(s.to_vec().unwrap(), vec![0.0, 0.0]);
    }
}

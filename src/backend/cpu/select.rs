//! Deterministic masked top-k (docs/computation.md, Methods): the select family's keys, the CPU
//! twins of `kernels/select.cu`, and the reference driver: the one radix driver
//! ([`crate::backend::radix::radix_update`], which the CUDA backend runs with the kernels) over the
//! twins.
//!
//! Every position i of a group's tensors gets a u32 key (see [`select_key`]): 0 when the
//! position is not eligible, otherwise 1 + an order-preserving image of its score, so that
//! "the k best" is "the k largest keys, ties to the lower flat index". The flat index is the
//! offset in the concatenation of the group's tensors ([`SelectKey::base`] + i).
//!
//! The CPU backend runs the fast path of `select_fast` instead, which finds the same (unique)
//! selection with fewer passes; `select_tests` checks both against a brute-force sort.
//!
//! [`SelectAction::Keep`] keeps min(k, eligible) positions (pruning to a budget above the
//! active count keeps everything); [`SelectAction::Grow`] with k above the eligible count is an
//! error, so growth is always exact.

use rayon::prelude::*;

use super::radix::{count_by, hist_by};
use crate::backend::radix::{
    radix_update, segment_bounds, BufOf, HostMemory, RadixKeys, RadixState, Threshold, TieWalk,
};
pub use crate::backend::radix::{segments, RADIX_PASSES};
use crate::backend::{SelectAction, SelectGroup, SelectKey};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

// ---- keys -----------------------------------------------------------------------------------

/// SplitMix64's increment (the golden ratio in 64-bit fixed point).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The key of a random score: 1 + the top 31 bits of SplitMix64's output at counter `gi` of
/// stream `seed`, i.e. a score in [0, 1) with 31 bits, shifted past the "ineligible" key 0.
#[inline(always)]
pub fn hash_key(seed: u64, gi: u64) -> u32 {
    let mut z = seed.wrapping_add(gi.wrapping_add(1).wrapping_mul(GOLDEN));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 33) as u32 + 1
}

/// The key of a magnitude score: 1 + the bit pattern of |x| (non-negative floats order like
/// their bits; NaN ranks above +inf, -0.0 equals +0.0).
#[inline(always)]
pub fn abs_key(x: f32) -> u32 {
    (x.to_bits() & 0x7fff_ffff) + 1
}

/// The key of position `i` of a tensor: 0 if it is not eligible under `k.eligible` (by its mask
/// value), else [`abs_key`] of `score` or [`hash_key`] of (seed, base + i).
#[inline(always)]
pub fn select_key(score: f32, mask: f32, k: &SelectKey, i: usize) -> u32 {
    let eligible = match k.eligible {
        0 => true,
        1 => mask != 0.0,
        _ => mask == 0.0,
    };
    if !eligible {
        0
    } else if k.score == 1 {
        hash_key(k.seed, (k.base as u64).wrapping_add(i as u64))
    } else {
        abs_key(score)
    }
}

/// The kernel key parameters of a group's targets: (key, score read from the weight?).
pub fn group_keys(group: &SelectGroup<'_>, action: SelectAction) -> Vec<(SelectKey, bool)> {
    let (score, seed) = match group.score {
        crate::backend::Score::Abs => (0, 0),
        crate::backend::Score::Hash(s) => (1, s),
    };
    let eligible = match action {
        SelectAction::Keep => 1,
        SelectAction::Grow => 2,
    };
    let mut base = 0usize;
    group
        .targets
        .iter()
        .map(|t| {
            let key = SelectKey {
                seed,
                base: base as i64,
                score,
                eligible,
            };
            base += t.weight.numel();
            (key, score == 0 && t.score.is_none())
        })
        .collect()
}

/// Checks shapes and sizes of every group (devices are checked where the data is touched).
pub fn check_groups(groups: &[SelectGroup<'_>]) -> Result<()> {
    for (gi, g) in groups.iter().enumerate() {
        let mut total = 0usize;
        for (ti, t) in g.targets.iter().enumerate() {
            let shape = t.weight.shape();
            let what = |name: &str| format!("select group {gi}, target {ti}: {name}");
            t.mask
                .expect_shape(shape, &what("mask (against the weight)"))?;
            if let Some(s) = t.score {
                s.expect_shape(shape, &what("score (against the weight)"))?;
            }
            if let Some(m) = &t.momentum {
                m.expect_shape(shape, &what("momentum (against the weight)"))?;
            }
            total += t.weight.numel();
        }
        if total >= u32::MAX as usize {
            return Err(Error::Shape(format!(
                "select group {gi}: {total} elements; a group must hold fewer than 2^32"
            )));
        }
        if g.k > total {
            return Err(Error::Shape(format!(
                "select group {gi}: k = {} exceeds its {total} elements",
                g.k
            )));
        }
    }
    Ok(())
}

// ---- kernel twins ---------------------------------------------------------------------------

/// Twin of `select_hist_f32`: for every key (of `score` or the hash, eligibility by `mask`)
/// whose bits under `prefix_mask` equal `prefix`, adds 1 to `hist[(key >> shift) & (2^bits −
/// 1)]` (the histogram is accumulated, not overwritten, so several tensors can share it).
#[allow(clippy::too_many_arguments)]
pub fn select_hist_f32(
    score: &[f32],
    mask: &[f32],
    key: &SelectKey,
    prefix: u32,
    prefix_mask: u32,
    shift: u32,
    bits: u32,
    hist: &mut [u32],
) {
    assert_eq!(score.len(), mask.len(), "select_hist_f32: lengths differ");
    let key_at = |i: usize| select_key(score[i], mask[i], key, i);
    hist_by(
        "select_hist_f32",
        mask.len(),
        key_at,
        prefix,
        prefix_mask,
        shift,
        bits,
        hist,
    );
}

/// Twin of `select_count_f32`: `counts[b]` = number of keys in `[lo, hi]` in segment b of
/// `counts.len()` segments (see [`segments`]).
pub fn select_count_f32(
    score: &[f32],
    mask: &[f32],
    key: &SelectKey,
    lo: u32,
    hi: u32,
    counts: &mut [u32],
) {
    assert_eq!(score.len(), mask.len(), "select_count_f32: lengths differ");
    count_by(
        mask.len(),
        |i| select_key(score[i], mask[i], key, i),
        lo,
        hi,
        counts,
    );
}

/// Twin of `select_apply_f32`. Segment b of `changed.len()` segments walks its elements in
/// order; a key equal to `t` gets the rank `tie_before[b]` + (ties earlier in the segment), and
/// an element is selected when its key > t, or it equals t with a rank < `tie_take`.
/// `action` 0 (keep/prune): an eligible (key ≠ 0) element that is not selected gets mask 0,
/// weight 0 and momentum 0. `action` 1 (grow): a selected element gets mask 1, weight 0 and
/// momentum 0. `changed[b]` = elements of segment b rewritten. `score` None reads the scores
/// from `w` (magnitude pruning).
#[allow(clippy::too_many_arguments)]
pub fn select_apply_f32(
    score: Option<&[f32]>,
    w: &mut [f32],
    mask: &mut [f32],
    mut m: Option<&mut [f32]>,
    key: &SelectKey,
    t: u32,
    tie_before: &[u32],
    tie_take: u32,
    action: u32,
    changed: &mut [u32],
) {
    let len = w.len();
    assert!(
        mask.len() == len
            && score.is_none_or(|s| s.len() == len)
            && m.as_ref().is_none_or(|m| m.len() == len)
            && tie_before.len() == changed.len(),
        "select_apply_f32: lengths differ"
    );
    let g = changed.len();
    let thr = Threshold { key: t, tie_take };
    for (b, ch) in changed.iter_mut().enumerate() {
        let (a, e) = segment_bounds(b, g, len);
        let mut walk = TieWalk::new(thr, tie_before[b]);
        let mut n = 0u32;
        for i in a..e {
            let s = score.map_or(w[i], |s| s[i]);
            let k = select_key(s, mask[i], key, i);
            let sel = walk.select(k);
            let rewrite = if action == 0 { k != 0 && !sel } else { sel };
            if rewrite {
                w[i] = 0.0;
                mask[i] = if action == 0 { 0.0 } else { 1.0 };
                if let Some(m) = m.as_deref_mut() {
                    m[i] = 0.0;
                }
                n += 1;
            }
        }
        *ch = n;
    }
}

// ---- the reference driver -------------------------------------------------------------------

/// Host slices of one target for reading: (score or weight, mask).
pub(super) fn read_slices<'a>(
    t: &'a crate::backend::SelectTarget<'_>,
    op: &str,
) -> Result<(&'a [f32], &'a [f32])> {
    let host = |x: &'a Tensor, what: &str| {
        x.as_cpu()
            .map_err(|e| Error::Device(format!("{op}: {what}: {e}")))
    };
    let score = match t.score {
        Some(s) => host(s, "score")?,
        None => host(t.weight, "weight")?,
    };
    Ok((score, host(t.mask, "mask")?))
}

/// Mutable host slices of one target: (score if separate, weight, mask, momentum).
#[allow(clippy::type_complexity)]
pub(super) fn write_slices<'a>(
    t: &'a mut crate::backend::SelectTarget<'_>,
    op: &str,
) -> Result<(
    Option<&'a [f32]>,
    &'a mut [f32],
    &'a mut [f32],
    Option<&'a mut [f32]>,
)> {
    let dev = |e: Error, what: &str| Error::Device(format!("{op}: {what}: {e}"));
    let score = match t.score {
        Some(s) => Some(s.as_cpu().map_err(|e| dev(e, "score"))?),
        None => None,
    };
    let w = t.weight.as_cpu_mut().map_err(|e| dev(e, "weight"))?;
    let mask = t.mask.as_cpu_mut().map_err(|e| dev(e, "mask"))?;
    let m = match t.momentum.as_deref_mut() {
        Some(m) => Some(m.as_cpu_mut().map_err(|e| dev(e, "momentum"))?),
        None => None,
    };
    Ok((score, w, mask, m))
}

/// The select family's keys over host tensors, for the radix driver: the kernel twins as its
/// passes.
struct SelectTwins<'g, 'a> {
    groups: &'g mut [SelectGroup<'a>],
    /// Per group and target: the key parameters, and whether the score is the weight.
    keys: Vec<Vec<(SelectKey, bool)>>,
    action: SelectAction,
}

impl RadixKeys for SelectTwins<'_, '_> {
    type Mem = HostMemory;
    fn mem(&self) -> &HostMemory {
        &HostMemory
    }
    fn op(&self) -> &'static str {
        "select_update"
    }
    fn groups(&self) -> usize {
        self.groups.len()
    }
    fn k(&self, g: usize) -> usize {
        self.groups[g].k
    }
    fn lens(&self, g: usize) -> Vec<usize> {
        self.groups[g]
            .targets
            .iter()
            .map(|t| t.weight.numel())
            .collect()
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
        let (s, m) = read_slices(&self.groups[g].targets[t], self.op())?;
        let key = &self.keys[g][t].0;
        let h = &mut hist[at..at + (1 << bits)];
        select_hist_f32(s, m, key, st.prefix, st.prefix_mask, shift, bits, h);
        Ok(())
    }
    fn count(&self, g: usize, t: usize, key: u32, counts: &mut Vec<u32>, at: usize) -> Result<()> {
        let target = &self.groups[g].targets[t];
        let (s, m) = read_slices(target, self.op())?;
        let n = segments(target.weight.numel());
        select_count_f32(s, m, &self.keys[g][t].0, key, key, &mut counts[at..at + n]);
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
        let key = self.keys[g][t].0;
        let grow = (self.action == SelectAction::Grow) as u32;
        let (s, w, mask, m) = write_slices(&mut self.groups[g].targets[t], "select_update")?;
        let n = segments(w.len());
        let (tb, ch) = (&tie_before[at..at + n], &mut out[at..at + n]);
        select_apply_f32(s, w, mask, m, &key, thr.key, tb, thr.tie_take, grow, ch);
        Ok(())
    }
}

/// [`crate::backend::Backend::select_update`] on host tensors: the radix driver over the
/// kernel twins, i.e. exactly the passes and host logic of the CUDA backend. The oracle for
/// the fast path and for the CUDA backend.
pub fn select_update_reference(
    groups: &mut [SelectGroup<'_>],
    action: SelectAction,
) -> Result<Vec<Vec<usize>>> {
    check_groups(groups)?;
    let keys = groups.iter().map(|g| group_keys(g, action)).collect();
    radix_update(
        &mut SelectTwins {
            groups,
            keys,
            action,
        },
        action,
    )
}

/// Number of nonzero entries (NaN counts, -0.0 does not), as `select_count_f32` with every
/// position eligible and keys in [2, u32::MAX].
pub fn count_nonzero_f32(x: &[f32]) -> usize {
    x.par_chunks(super::elementwise::CHUNK)
        .map(|c| c.iter().filter(|&&v| v != 0.0).count())
        .sum()
}

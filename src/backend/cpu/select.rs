//! Deterministic masked top-k (SPEC §3 prune and grow): the CPU twins of `kernels/select.cu`,
//! the host-side radix logic shared with the CUDA backend, a reference driver built from the
//! twins, and the fast path the CPU backend runs.
//!
//! Every position i of a group's tensors gets a u32 key (see [`select_key`]): 0 when the
//! position is not eligible, otherwise 1 + an order-preserving image of its score, so that
//! "the k best" is "the k largest keys, ties to the lower flat index". The flat index is the
//! offset in the concatenation of the group's tensors ([`SelectKey::base`] + i).
//!
//! The kernels find the k-th largest key T by a most-significant-digit radix select
//! ([`RADIX_PASSES`]: 11 + 11 + 10 bits, one histogram pass each, [`RadixState`] walks the
//! histogram on the host), so nothing is sorted and only histograms leave the device. Then
//! `select_count_f32` counts the keys equal to T per segment, the host turns the counts into
//! exclusive offsets ([`tie_offsets`]), and `select_apply_f32` takes every key > T plus the
//! first `tie_take` keys equal to T in flat order, ranking ties inside a segment in order.
//!
//! The CPU backend runs [`select_update_fast`] instead: a 16-bit histogram, a second 16-bit
//! histogram inside the chosen bucket, a tie scan only when ties are split, and a branch-free
//! apply pass; the result is identical (the selection is unique), which the tests check
//! against the twins' driver.
//!
//! [`SelectAction::Keep`] keeps min(k, eligible) positions (pruning to a budget above the
//! active count keeps everything); [`SelectAction::Grow`] with k above the eligible count is an
//! error, so growth is always exact.

use rayon::prelude::*;

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

// ---- shared host logic ----------------------------------------------------------------------

/// The radix passes over a 32-bit key, most significant digit first: (shift, bits).
pub const RADIX_PASSES: [(u32, u32); 3] = [(21, 11), (10, 11), (0, 10)];

/// Most bins a `select_hist_f32` pass may have (11 bits; the kernel's shared histogram).
pub const MAX_HIST_BITS: u32 = 11;

/// Elements per segment of `select_count_f32` / `select_apply_f32`, before the cap.
pub const SEGMENT: usize = 4096;

/// Segments of a tensor of `len` elements in the count and apply kernels (one CUDA block
/// each): ceil(len / [`SEGMENT`]) clamped to 1..=1024. Segment b is
/// `[b·len/G, (b+1)·len/G)`.
pub fn segments(len: usize) -> usize {
    len.div_ceil(SEGMENT).clamp(1, 1024)
}

/// The bounds of segment `b` of `g` over `len` elements.
#[inline]
fn segment(b: usize, g: usize, len: usize) -> (usize, usize) {
    (
        (b as u128 * len as u128 / g as u128) as usize,
        ((b as u128 + 1) * len as u128 / g as u128) as usize,
    )
}

/// The k-th largest key of a group (`key`) and how many keys equal to it are selected, in flat
/// order (`tie_take`); every larger key is selected too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Threshold {
    /// The threshold key T (`u32::MAX`, which no key reaches, when k = 0).
    pub key: u32,
    /// Keys equal to T selected, the lowest flat indices first.
    pub tie_take: u32,
}

impl Threshold {
    /// The threshold that selects nothing.
    pub const NONE: Threshold = Threshold {
        key: u32::MAX,
        tie_take: 0,
    };
}

/// The state of one group's radix select between histogram passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RadixState {
    /// Bits of T fixed so far.
    pub prefix: u32,
    /// Which bits of `prefix` are fixed.
    pub prefix_mask: u32,
    /// Rank of T among the keys that match the prefix (1 = the largest).
    pub need: u64,
    /// Keys in the bin chosen by the last pass (after the last pass: the keys equal to T).
    pub in_bin: u64,
}

impl RadixState {
    /// Starts a select of the `k`-th largest key (k ≥ 1).
    pub fn new(k: usize) -> RadixState {
        RadixState {
            prefix: 0,
            prefix_mask: 0,
            need: k as u64,
            in_bin: 0,
        }
    }

    /// Fixes the digit at `shift` from the histogram of that digit over the keys matching the
    /// prefix (`hist.len()` is a power of two): the bin holding the `need`-th largest key.
    pub fn narrow(&mut self, hist: &[u32], shift: u32) -> Result<()> {
        debug_assert!(hist.len().is_power_of_two());
        let mut need = self.need;
        for b in (0..hist.len()).rev() {
            let c = hist[b] as u64;
            if need <= c {
                self.prefix |= (b as u32) << shift;
                self.prefix_mask |= (hist.len() as u32 - 1) << shift;
                self.need = need;
                self.in_bin = c;
                return Ok(());
            }
            need -= c;
        }
        Err(Error::Shape(format!(
            "select: the histogram holds {} keys, fewer than the {} still needed",
            hist.iter().map(|&c| c as u64).sum::<u64>(),
            self.need
        )))
    }

    /// The threshold once every digit is fixed. T = 0 (the ineligible key) means the group has
    /// fewer than k eligible positions: an error for [`SelectAction::Grow`], "keep them all"
    /// for [`SelectAction::Keep`]. When every key equal to T is taken, `tie_take` is
    /// `u32::MAX` (so no tie count is needed).
    pub fn threshold(&self, k: usize, action: SelectAction) -> Result<Threshold> {
        if self.prefix == 0 {
            return match action {
                SelectAction::Keep => Ok(Threshold {
                    key: 1,
                    tie_take: u32::MAX,
                }),
                SelectAction::Grow => Err(Error::Shape(format!(
                    "select: k = {k} exceeds the number of eligible positions"
                ))),
            };
        }
        Ok(Threshold {
            key: self.prefix,
            tie_take: if self.need == self.in_bin {
                u32::MAX
            } else {
                self.need as u32
            },
        })
    }
}

/// [`tie_offsets`] of every group at once: `segs[g]` lists the segment lengths of group `g`'s
/// targets, `counts` the per-segment tie counts of all groups concatenated in that order; the
/// result is the per-segment offsets, flattened the same way.
pub fn segment_tie_offsets(segs: &[Vec<usize>], counts: &[u32]) -> Vec<u32> {
    let mut before = Vec::with_capacity(counts.len());
    let mut at = 0;
    for s in segs {
        let per_target: Vec<Vec<u32>> = s
            .iter()
            .map(|&n| {
                let c = counts[at..at + n].to_vec();
                at += n;
                c
            })
            .collect();
        before.extend(tie_offsets(&per_target).into_iter().flatten());
    }
    before
}

/// Exclusive prefix sums of per-segment tie counts across a group's targets in flat order:
/// `out[t][b]` = keys equal to T before segment b of target t.
pub fn tie_offsets(counts: &[Vec<u32>]) -> Vec<Vec<u32>> {
    let mut run = 0u32;
    counts
        .iter()
        .map(|c| {
            c.iter()
                .map(|&n| {
                    let before = run;
                    run += n;
                    before
                })
                .collect()
        })
        .collect()
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
    assert!(
        (1..=MAX_HIST_BITS).contains(&bits) && hist.len() >= 1 << bits,
        "select_hist_f32: bits = {bits}, hist of {}",
        hist.len()
    );
    assert_eq!(score.len(), mask.len(), "select_hist_f32: lengths differ");
    let nb = 1usize << bits;
    let partial = score
        .par_chunks(1 << 16)
        .zip(mask.par_chunks(1 << 16))
        .enumerate()
        .map(|(c, (s, m))| {
            let mut h = vec![0u32; nb];
            for (j, (&s, &m)) in s.iter().zip(m).enumerate() {
                let k = select_key(s, m, key, (c << 16) + j);
                if k & prefix_mask == prefix {
                    h[((k >> shift) as usize) & (nb - 1)] += 1;
                }
            }
            h
        })
        .reduce(
            || vec![0u32; nb],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            },
        );
    hist[..nb]
        .iter_mut()
        .zip(&partial)
        .for_each(|(h, p)| *h += p);
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
    let (len, g) = (score.len(), counts.len());
    counts.par_iter_mut().enumerate().for_each(|(b, c)| {
        let (a, e) = segment(b, g, len);
        *c = (a..e)
            .filter(|&i| (lo..=hi).contains(&select_key(score[i], mask[i], key, i)))
            .count() as u32;
    });
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
    for (b, ch) in changed.iter_mut().enumerate() {
        let (a, e) = segment(b, g, len);
        let mut ties = tie_before[b];
        let mut n = 0u32;
        for i in a..e {
            let s = score.map_or(w[i], |s| s[i]);
            let k = select_key(s, mask[i], key, i);
            let sel = k > t || (k == t && ties < tie_take);
            if k == t {
                ties += 1;
            }
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

// ---- drivers --------------------------------------------------------------------------------

/// Host slices of one target for reading: (score or weight, mask).
fn read_slices<'a>(
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
fn write_slices<'a>(
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

/// [`crate::backend::Backend::select_update`] on host tensors through the kernel twins, with
/// exactly the host logic of the CUDA backend (radix passes, tie counts, ordered apply). The
/// oracle for the fast path and for the CUDA backend.
pub fn select_update_reference(
    groups: &mut [SelectGroup<'_>],
    action: SelectAction,
) -> Result<Vec<Vec<usize>>> {
    let op = "select_update";
    check_groups(groups)?;
    let mut out = Vec::with_capacity(groups.len());
    for g in groups.iter_mut() {
        let keys = group_keys(g, action);
        if g.k == 0 && action == SelectAction::Grow {
            out.push(vec![0; g.targets.len()]);
            continue;
        }
        let thr = if g.k == 0 {
            Threshold::NONE
        } else {
            let mut st = RadixState::new(g.k);
            for (shift, bits) in RADIX_PASSES {
                let mut hist = vec![0u32; 1 << bits];
                for (t, (key, _)) in g.targets.iter().zip(&keys) {
                    let (s, m) = read_slices(t, op)?;
                    select_hist_f32(s, m, key, st.prefix, st.prefix_mask, shift, bits, &mut hist);
                }
                st.narrow(&hist, shift)?;
            }
            st.threshold(g.k, action)?
        };
        let mut counts = Vec::with_capacity(g.targets.len());
        for (t, (key, _)) in g.targets.iter().zip(&keys) {
            let mut c = vec![0u32; segments(t.weight.numel())];
            if thr.tie_take > 0 && thr.tie_take < u32::MAX {
                let (s, m) = read_slices(t, op)?;
                select_count_f32(s, m, key, thr.key, thr.key, &mut c);
            }
            counts.push(c);
        }
        let before = tie_offsets(&counts);
        let mut changed = Vec::with_capacity(g.targets.len());
        for ((t, (key, _)), tb) in g.targets.iter_mut().zip(&keys).zip(&before) {
            let (s, w, mask, m) = write_slices(t, op)?;
            let mut ch = vec![0u32; tb.len()];
            select_apply_f32(
                s,
                w,
                mask,
                m,
                key,
                thr.key,
                tb,
                thr.tie_take,
                (action == SelectAction::Grow) as u32,
                &mut ch,
            );
            changed.push(ch.iter().map(|&c| c as usize).sum());
        }
        out.push(changed);
    }
    Ok(out)
}

/// Number of nonzero entries (NaN counts, -0.0 does not), as `select_count_f32` with every
/// position eligible and keys in [2, u32::MAX].
pub fn count_nonzero_f32(x: &[f32]) -> usize {
    x.par_chunks(super::elementwise::CHUNK)
        .map(|c| c.iter().filter(|&&v| v != 0.0).count())
        .sum()
}

// ---- the fast path ----------------------------------------------------------------------------

/// A key function specialised for one group (score kind and eligibility fixed at compile time).
trait KeyFn: Copy + Send + Sync {
    /// The key of a position with this score and mask value at flat index `gi`.
    fn key(&self, score: f32, mask: f32, gi: u64) -> u32;
}

/// |score| keys; `ACTIVE` selects among mask ≠ 0, else among mask = 0.
#[derive(Clone, Copy)]
struct AbsKey<const ACTIVE: bool>;

impl<const ACTIVE: bool> KeyFn for AbsKey<ACTIVE> {
    #[inline(always)]
    fn key(&self, score: f32, mask: f32, _gi: u64) -> u32 {
        let k = abs_key(score);
        if (mask != 0.0) == ACTIVE {
            k
        } else {
            0
        }
    }
}

/// Hash keys; `ACTIVE` as for [`AbsKey`].
#[derive(Clone, Copy)]
struct HashKey<const ACTIVE: bool>(u64);

impl<const ACTIVE: bool> KeyFn for HashKey<ACTIVE> {
    #[inline(always)]
    fn key(&self, _score: f32, mask: f32, gi: u64) -> u32 {
        if (mask != 0.0) == ACTIVE {
            hash_key(self.0, gi)
        } else {
            0
        }
    }
}

/// Elements per task of the fast path's read passes.
const FAST_CHUNK: usize = 1 << 17;

/// Elements per block whose eligible keys are compacted before the histogram update.
const SUB: usize = 1024;

/// Groups at most this large are selected by gathering their keys (no histograms).
const SMALL_GROUP: usize = 1 << 14;

/// Bins of the fast path's 16-bit histograms (keys ≤ 2^31, so key >> 16 ≤ 2^15).
const BINS: usize = 1 << 16;

/// The selection of the fast path: key > `t`, or key == `t` and flat index < `cut`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cut {
    t: u32,
    cut: u64,
}

impl Cut {
    /// Selects nothing.
    const NONE: Cut = Cut {
        t: u32::MAX,
        cut: 0,
    };
    /// Selects every eligible position (every key ≥ 1).
    const ALL: Cut = Cut {
        t: 1,
        cut: u64::MAX,
    };
}

/// Read-only view of one target: (scores, mask, flat index of its first element).
type Src<'a> = (&'a [f32], &'a [f32], u64);

/// Keys of a block of at most [`SUB`] elements starting at flat index `gi0` into `out`
/// (branch-free; vectorised for magnitude keys).
#[inline(always)]
fn block_keys<K: KeyFn>(kf: K, s: &[f32], m: &[f32], gi0: u64, out: &mut [u32; SUB]) -> usize {
    let n = s.len().min(SUB);
    let (s, m, out) = (&s[..n], &m[..n], &mut out[..n]);
    for j in 0..n {
        out[j] = kf.key(s[j], m[j], gi0 + j as u64);
    }
    n
}

/// Adds 1 to `h[key >> 16]` for every eligible key of the elements (`s`, `m`) starting at flat
/// index `gi0`. Eligible keys are first compacted (branch-free), so the ineligible majority of
/// a sparse layer costs no histogram update. Returns the eligible count.
#[inline(always)]
fn hist_hi<K: KeyFn>(kf: K, s: &[f32], m: &[f32], gi0: u64, h: &mut [u32]) -> u64 {
    let h = &mut h[..BINS];
    let mut keys = [0u32; SUB];
    let mut buf = [0u32; SUB];
    let mut eligible = 0u64;
    for (b, (s, m)) in s.chunks(SUB).zip(m.chunks(SUB)).enumerate() {
        let len = block_keys(kf, s, m, gi0 + (b * SUB) as u64, &mut keys);
        let mut n = 0usize;
        for &k in &keys[..len] {
            buf[n & (SUB - 1)] = k;
            n += (k != 0) as usize;
        }
        for &k in &buf[..n] {
            h[(k >> 16) as usize & (BINS - 1)] += 1;
        }
        eligible += n as u64;
    }
    eligible
}

/// Elements per block of [`hist_lo`] whose keys are checked for the bucket before any
/// histogram update.
const PROBE: usize = 64;

/// Adds 1 to `h[key & 0xffff]` for every key with `key >> 16 == bucket` (key ≠ 0); blocks of
/// [`PROBE`] keys without such a key are skipped after a branch-free check.
#[inline(always)]
fn hist_lo<K: KeyFn>(kf: K, s: &[f32], m: &[f32], gi0: u64, bucket: u32, h: &mut [u32]) {
    let h = &mut h[..BINS];
    let hit = |k: u32| k >> 16 == bucket && k != 0;
    let mut keys = [0u32; SUB];
    for (b, (s, m)) in s.chunks(SUB).zip(m.chunks(SUB)).enumerate() {
        let len = block_keys(kf, s, m, gi0 + (b * SUB) as u64, &mut keys);
        for probe in keys[..len].chunks(PROBE) {
            if !probe.iter().fold(false, |any, &k| any | hit(k)) {
                continue;
            }
            for &k in probe {
                if hit(k) {
                    h[(k & 0xffff) as usize] += 1;
                }
            }
        }
    }
}

/// Walks a histogram from the top: the bin holding the `need`-th largest key, and the rank
/// of that key inside the bin.
fn walk(h: &[u32], need: u64) -> (usize, u64) {
    let mut need = need;
    for b in (0..h.len()).rev() {
        if need <= h[b] as u64 {
            return (b, need);
        }
        need -= h[b] as u64;
    }
    unreachable!("the histogram holds at least `need` keys")
}

/// Finds the fast path's selection of the `k` largest keys (k ≥ 1) over `srcs`; with fewer
/// than k eligible keys, every eligible position (`keep_all`) or an error.
fn fast_threshold<K: KeyFn>(kf: K, srcs: &[Src<'_>], k: usize, keep_all: bool) -> Result<Cut> {
    let total: usize = srcs.iter().map(|s| s.0.len()).sum();
    let too_few = |have: u64| -> Result<Cut> {
        if keep_all {
            Ok(Cut::ALL)
        } else {
            Err(Error::Shape(format!(
                "select: k = {k} exceeds the {have} eligible positions of the group"
            )))
        }
    };
    if total <= SMALL_GROUP {
        let mut keys: Vec<(u32, u64)> = Vec::new();
        for &(s, m, base) in srcs {
            for (i, (&s, &m)) in s.iter().zip(m).enumerate() {
                let gi = base + i as u64;
                let key = kf.key(s, m, gi);
                if key != 0 {
                    keys.push((key, gi));
                }
            }
        }
        if keys.len() < k {
            return too_few(keys.len() as u64);
        }
        let (_, &mut (t, gi), _) =
            keys.select_nth_unstable_by(k - 1, |a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        return Ok(Cut { t, cut: gi + 1 });
    }
    // Chunks of at most FAST_CHUNK elements over all targets, in flat order.
    let chunks: Vec<(usize, usize, usize)> = srcs
        .iter()
        .enumerate()
        .flat_map(|(t, s)| {
            let n = s.0.len();
            (0..n.div_ceil(FAST_CHUNK))
                .map(move |c| (t, c * FAST_CHUNK, n.min((c + 1) * FAST_CHUNK)))
        })
        .collect();
    let add = |mut a: (Vec<u32>, u64), b: (Vec<u32>, u64)| {
        a.0.iter_mut().zip(&b.0).for_each(|(a, b)| *a += b);
        (a.0, a.1 + b.1)
    };
    // Pass 1: histogram of key >> 16 over eligible positions (one histogram per rayon job).
    let (hi, eligible) = chunks
        .par_iter()
        .fold(
            || (vec![0u32; BINS], 0u64),
            |(mut h, n), &(t, a, e)| {
                let (s, m, base) = srcs[t];
                let got = hist_hi(kf, &s[a..e], &m[a..e], base + a as u64, &mut h);
                (h, n + got)
            },
        )
        .reduce(|| (vec![0u32; BINS], 0), add);
    if eligible < k as u64 {
        return too_few(eligible);
    }
    let (bucket, need) = walk(&hi, k as u64);
    // Pass 2: histogram of the low 16 bits inside the bucket.
    let bucket = bucket as u32;
    let (lo, _) = chunks
        .par_iter()
        .fold(
            || (vec![0u32; BINS], 0u64),
            |(mut h, n), &(t, a, e)| {
                let (s, m, base) = srcs[t];
                hist_lo(kf, &s[a..e], &m[a..e], base + a as u64, bucket, &mut h);
                (h, n)
            },
        )
        .reduce(|| (vec![0u32; BINS], 0), add);
    let (low, mut need) = walk(&lo, need);
    let t = (bucket << 16) | low as u32;
    if need == lo[low] as u64 {
        return Ok(Cut { t, cut: u64::MAX });
    }
    // Pass 3 (ties split): per-chunk counts of key == t, then scan the chunk holding the
    // need-th tie.
    let ties: Vec<u64> = chunks
        .par_iter()
        .map(|&(ti, a, e)| {
            let (s, m, base) = srcs[ti];
            (a..e)
                .filter(|&i| kf.key(s[i], m[i], base + i as u64) == t)
                .count() as u64
        })
        .collect();
    for (c, &n) in ties.iter().enumerate() {
        if need > n {
            need -= n;
            continue;
        }
        let (ti, a, e) = chunks[c];
        let (s, m, base) = srcs[ti];
        for i in a..e {
            if kf.key(s[i], m[i], base + i as u64) == t {
                need -= 1;
                if need == 0 {
                    return Ok(Cut {
                        t,
                        cut: base + i as u64 + 1,
                    });
                }
            }
        }
    }
    unreachable!("the tie counts add up to at least the ties needed")
}

/// Applies the action to a range where a key is selected iff key ≥ `tt`; branch-free, so
/// the loop vectorises for magnitude keys. Returns the elements rewritten.
#[inline(always)]
fn apply_range<K: KeyFn, const GROW: bool>(
    kf: K,
    score: Option<&[f32]>,
    w: &mut [f32],
    mask: &mut [f32],
    m: Option<&mut [f32]>,
    gi0: u64,
    tt: u32,
) -> usize {
    let new_mask = if GROW { 1.0f32 } else { 0.0 };
    let rewrite = |s: f32, mk: f32, gi: u64| {
        let k = kf.key(s, mk, gi);
        let sel = k >= tt;
        if GROW {
            sel
        } else {
            k != 0 && !sel
        }
    };
    let mut n = 0u32;
    let len = w.len();
    let (w, mask) = (&mut w[..len], &mut mask[..len]);
    macro_rules! body {
        ($s:expr, $j:ident) => {{
            let r = rewrite($s, mask[$j], gi0 + $j as u64);
            w[$j] = if r { 0.0 } else { w[$j] };
            mask[$j] = if r { new_mask } else { mask[$j] };
            n += r as u32;
            r
        }};
    }
    match (score, m) {
        (None, None) => {
            for j in 0..len {
                body!(w[j], j);
            }
        }
        (Some(s), None) => {
            let s = &s[..len];
            for j in 0..len {
                body!(s[j], j);
            }
        }
        (None, Some(m)) => {
            let m = &mut m[..len];
            for j in 0..len {
                let r = body!(w[j], j);
                m[j] = if r { 0.0 } else { m[j] };
            }
        }
        (Some(s), Some(m)) => {
            let (s, m) = (&s[..len], &mut m[..len]);
            for j in 0..len {
                let r = body!(s[j], j);
                m[j] = if r { 0.0 } else { m[j] };
            }
        }
    }
    n as usize
}

/// Applies the action to one chunk starting at flat index `gi0`, splitting it where the tie
/// cut falls (before the cut, ties are selected: key ≥ t; after it, key > t).
#[allow(clippy::too_many_arguments)]
fn apply_chunk<K: KeyFn>(
    kf: K,
    score: Option<&[f32]>,
    w: &mut [f32],
    mask: &mut [f32],
    m: Option<&mut [f32]>,
    gi0: u64,
    cut: Cut,
    grow: bool,
) -> usize {
    let len = w.len();
    let split = cut.cut.saturating_sub(gi0).min(len as u64) as usize;
    let (w0, w1) = w.split_at_mut(split);
    let (k0, k1) = mask.split_at_mut(split);
    let (s0, s1) = match score {
        Some(s) => {
            let (a, b) = s.split_at(split);
            (Some(a), Some(b))
        }
        None => (None, None),
    };
    let (m0, m1) = match m {
        Some(m) => {
            let (a, b) = m.split_at_mut(split);
            (Some(a), Some(b))
        }
        None => (None, None),
    };
    let strict = cut.t.saturating_add(1);
    if grow {
        apply_range::<K, true>(kf, s0, w0, k0, m0, gi0, cut.t)
            + apply_range::<K, true>(kf, s1, w1, k1, m1, gi0 + split as u64, strict)
    } else {
        apply_range::<K, false>(kf, s0, w0, k0, m0, gi0, cut.t)
            + apply_range::<K, false>(kf, s1, w1, k1, m1, gi0 + split as u64, strict)
    }
}

/// One group on the fast path with a specialised key function.
fn fast_group<K: KeyFn>(
    kf: K,
    g: &mut SelectGroup<'_>,
    action: SelectAction,
    op: &str,
) -> Result<Vec<usize>> {
    let grow = action == SelectAction::Grow;
    if g.k == 0 && grow {
        return Ok(vec![0; g.targets.len()]);
    }
    let cut = if g.k == 0 {
        Cut::NONE
    } else {
        let mut srcs = Vec::with_capacity(g.targets.len());
        let mut base = 0u64;
        for t in &g.targets {
            let (s, m) = read_slices(t, op)?;
            srcs.push((s, m, base));
            base += s.len() as u64;
        }
        fast_threshold(kf, &srcs, g.k, !grow)?
    };
    let mut out = Vec::with_capacity(g.targets.len());
    let mut base = 0u64;
    for t in g.targets.iter_mut() {
        let (score, w, mask, m) = write_slices(t, op)?;
        let len = w.len();
        let ch = super::elementwise::CHUNK;
        let ms: Vec<Option<&mut [f32]>> = match m {
            Some(m) => m.chunks_mut(ch).map(Some).collect(),
            None => (0..len.div_ceil(ch)).map(|_| None).collect(),
        };
        let n: usize = w
            .par_chunks_mut(ch)
            .zip(mask.par_chunks_mut(ch))
            .zip(ms)
            .enumerate()
            .map(|(c, ((w, mk), m))| {
                let s = score.map(|s| &s[c * ch..c * ch + w.len()]);
                apply_chunk(kf, s, w, mk, m, base + (c * ch) as u64, cut, grow)
            })
            .sum();
        out.push(n);
        base += len as u64;
    }
    Ok(out)
}

/// The CPU backend's [`crate::backend::Backend::select_update`]: same selection as
/// [`select_update_reference`] in two read passes per group (a third only when the ties at the
/// threshold are split) and one write pass.
pub fn select_update_fast(
    groups: &mut [SelectGroup<'_>],
    action: SelectAction,
) -> Result<Vec<Vec<usize>>> {
    let op = "select_update";
    check_groups(groups)?;
    groups
        .iter_mut()
        .map(|g| match (g.score, action) {
            (crate::backend::Score::Abs, SelectAction::Keep) => {
                fast_group(AbsKey::<true>, g, action, op)
            }
            (crate::backend::Score::Abs, SelectAction::Grow) => {
                fast_group(AbsKey::<false>, g, action, op)
            }
            (crate::backend::Score::Hash(s), SelectAction::Keep) => {
                fast_group(HashKey::<true>(s), g, action, op)
            }
            (crate::backend::Score::Hash(s), SelectAction::Grow) => {
                fast_group(HashKey::<false>(s), g, action, op)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Score, SelectTarget};
    use crate::rng::Rng;

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
    fn group_keys_flat(
        s: &State,
        score: Score,
        with_score: bool,
        action: SelectAction,
    ) -> Vec<u32> {
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
    fn radix_state_walks_from_the_top() {
        let mut st = RadixState::new(3);
        // bins: 3 -> 1 key, 2 -> 0, 1 -> 5 keys: the 3rd largest is in bin 1, 2nd there.
        st.narrow(&[4, 5, 0, 1], 4).unwrap();
        assert_eq!((st.prefix, st.prefix_mask, st.need), (1 << 4, 3 << 4, 2));
        assert!(RadixState::new(11).narrow(&[4, 5, 0, 1], 0).is_err());
        assert!(RadixState::new(1).threshold(1, SelectAction::Grow).is_err());
        assert_eq!(
            RadixState::new(1).threshold(1, SelectAction::Keep).unwrap(),
            Threshold {
                key: 1,
                tie_take: u32::MAX
            }
        );
    }

    #[test]
    fn tie_offsets_are_exclusive_across_targets() {
        assert_eq!(
            tie_offsets(&[vec![1, 0, 2], vec![3], vec![0, 1]]),
            vec![vec![0, 1, 1], vec![3], vec![6, 6]]
        );
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
}

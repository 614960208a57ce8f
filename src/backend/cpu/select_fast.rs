//! The CPU backend's select driver ([`select_update_fast`]): the same selection as the radix
//! driver over the kernel twins (`select::select_update_reference`, which the CUDA backend
//! runs with the kernels), found with fewer passes over memory. A 16-bit histogram of the keys,
//! a second 16-bit histogram inside the chosen bucket, a tie scan only when the ties at the
//! threshold are split, and a branch-free apply pass; groups of at most [`SMALL_GROUP`]
//! positions gather their keys instead. The selection is unique (the k largest keys, ties to
//! the lower flat index), so both drivers give bit-identical results; `select_tests` checks it.

use rayon::prelude::*;

use super::select::{abs_key, check_groups, hash_key, read_slices, write_slices};
use crate::backend::{SelectAction, SelectGroup};
use crate::error::{Error, Result};

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
    if total <= SMALL_GROUP {
        return gather_threshold(kf, srcs, k, keep_all);
    }
    let chunks = chunks_of(srcs);
    // Pass 1: histogram of key >> 16 over eligible positions (one histogram per rayon job).
    let (hi, eligible) = histogram(srcs, &chunks, |s, m, gi0, h| hist_hi(kf, s, m, gi0, h));
    if eligible < k as u64 {
        return too_few(k, eligible, keep_all);
    }
    let (bucket, need) = walk(&hi, k as u64);
    // Pass 2: histogram of the low 16 bits inside the bucket.
    let bucket = bucket as u32;
    let (lo, _) = histogram(srcs, &chunks, |s, m, gi0, h| {
        hist_lo(kf, s, m, gi0, bucket, h);
        0
    });
    let (low, need) = walk(&lo, need);
    let t = (bucket << 16) | low as u32;
    if need == lo[low] as u64 {
        return Ok(Cut { t, cut: u64::MAX });
    }
    Ok(tie_cut(kf, srcs, &chunks, t, need))
}

/// The outcome of a selection with only `have` < `k` eligible positions: all of them
/// (`keep_all`) or an error.
fn too_few(k: usize, have: u64, keep_all: bool) -> Result<Cut> {
    if keep_all {
        Ok(Cut::ALL)
    } else {
        Err(Error::Shape(format!(
            "select: k = {k} exceeds the {have} eligible positions of the group"
        )))
    }
}

/// [`fast_threshold`] for a small group: gathers the eligible keys and selects the k-th.
fn gather_threshold<K: KeyFn>(kf: K, srcs: &[Src<'_>], k: usize, keep_all: bool) -> Result<Cut> {
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
        return too_few(k, keys.len() as u64, keep_all);
    }
    let (_, &mut (t, gi), _) =
        keys.select_nth_unstable_by(k - 1, |a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    Ok(Cut { t, cut: gi + 1 })
}

/// Chunks `(target, start, end)` of at most [`FAST_CHUNK`] elements over all targets, in flat
/// order.
fn chunks_of(srcs: &[Src<'_>]) -> Vec<(usize, usize, usize)> {
    srcs.iter()
        .enumerate()
        .flat_map(|(t, s)| {
            let n = s.0.len();
            (0..n.div_ceil(FAST_CHUNK))
                .map(move |c| (t, c * FAST_CHUNK, n.min((c + 1) * FAST_CHUNK)))
        })
        .collect()
}

/// One parallel histogram pass: `fill(scores, mask, first flat index, histogram)` adds a
/// chunk's keys to a histogram of [`BINS`] bins and returns a count; the histograms and counts
/// of all chunks are summed.
fn histogram<F>(srcs: &[Src<'_>], chunks: &[(usize, usize, usize)], fill: F) -> (Vec<u32>, u64)
where
    F: Fn(&[f32], &[f32], u64, &mut [u32]) -> u64 + Sync,
{
    let add = |mut a: (Vec<u32>, u64), b: (Vec<u32>, u64)| {
        a.0.iter_mut().zip(&b.0).for_each(|(a, b)| *a += b);
        (a.0, a.1 + b.1)
    };
    chunks
        .par_iter()
        .fold(
            || (vec![0u32; BINS], 0u64),
            |(mut h, n), &(t, a, e)| {
                let (s, m, base) = srcs[t];
                let got = fill(&s[a..e], &m[a..e], base + a as u64, &mut h[..]);
                (h, n + got)
            },
        )
        .reduce(|| (vec![0u32; BINS], 0), add)
}

/// Pass 3 (ties at key `t` split): per-chunk counts of key == t, then a scan of the chunk
/// holding the `need`-th tie; the cut is just past it.
fn tie_cut<K: KeyFn>(
    kf: K,
    srcs: &[Src<'_>],
    chunks: &[(usize, usize, usize)],
    t: u32,
    mut need: u64,
) -> Cut {
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
                    return Cut {
                        t,
                        cut: base + i as u64 + 1,
                    };
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

/// The CPU backend's [`crate::backend::Backend::select_update`]: the selection of
/// [`select_update_reference`](super::select::select_update_reference) in two read passes per
/// group (a third only when the ties at the threshold are split) and one write pass.
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

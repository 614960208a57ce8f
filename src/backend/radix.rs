//! The one radix-select driver of the engine: "keep (or grow) the k largest u32 keys of a group
//! of tensors, ties to the lower flat index", for any key function and on any backend.
//!
//! Every position of a group's targets has a u32 key (0: not eligible); the flat index of a
//! position is its offset in the concatenation of the group's targets. The select family
//! keys |weight|, |score| or a hash under a mask (`cpu::select`, `kernels/select.cu`); the
//! superpose family keys the averaged value |A| of every position (`cpu::superpose`,
//! `kernels/superpose.cu`). [`radix_update`] runs the same host logic for both, on both
//! backends:
//!   1. three histogram passes ([`RADIX_PASSES`]: 11 + 11 + 10 bits, most significant digit
//!      first), every group at once, one histogram copy per pass; [`RadixState`] walks each
//!      histogram and fixes one digit of T, the k-th largest key;
//!   2. when the keys equal to T are split (some taken, some not), a count of them per
//!      segment ([`segments`]), one copy back; [`segment_tie_offsets`] turns the counts into
//!      exclusive offsets across the group's targets in flat order;
//!   3. one apply pass per target: every key > T and the first `tie_take` keys equal to T are
//!      selected, and the family's action is applied; per-segment counts come back in one copy.
//!
//! A family supplies the three per-target passes ([`RadixKeys`]); a backend supplies its u32
//! buffers ([`RadixMemory`]: host vectors on the CPU, device buffers on CUDA), so the only data
//! crossing a device boundary are the small histograms and per-segment counts.

use crate::backend::SelectAction;
use crate::error::{Error, Result};

/// The radix passes over a 32-bit key, most significant digit first: (shift, bits).
pub const RADIX_PASSES: [(u32, u32); 3] = [(21, 11), (10, 11), (0, 10)];

/// Most bins a histogram pass may have (11 bits; the kernels' shared histogram).
pub const MAX_HIST_BITS: u32 = 11;

/// Bins reserved per group in a driver's batched histogram buffer.
pub const HIST_SLOT: usize = 1 << MAX_HIST_BITS;

/// Elements per segment of the count and apply passes, before the cap.
pub const SEGMENT: usize = 4096;

/// Segments of a tensor of `len` elements in the count and apply passes (one CUDA block
/// each): ceil(len / [`SEGMENT`]) clamped to 1..=1024. Segment b is
/// `[b·len/G, (b+1)·len/G)` ([`segment_bounds`]).
pub fn segments(len: usize) -> usize {
    len.div_ceil(SEGMENT).clamp(1, 1024)
}

/// The bounds `[b·len/g, (b+1)·len/g)` of segment `b` of `g` over `len` elements.
#[inline]
pub fn segment_bounds(b: usize, g: usize, len: usize) -> (usize, usize) {
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
    /// Keys equal to T selected, the lowest flat indices first (`u32::MAX`: all of them).
    pub tie_take: u32,
}

impl Threshold {
    /// The threshold that selects nothing.
    pub const NONE: Threshold = Threshold {
        key: u32::MAX,
        tie_take: 0,
    };

    /// True when some but not all keys equal to T are selected, so the ties must be ranked.
    pub fn splits_ties(&self) -> bool {
        self.tie_take > 0 && self.tie_take < u32::MAX
    }
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

/// [`tie_offsets`] of every group at once: `segs[g]` lists the segment counts of group `g`'s
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

/// The ranking of one segment's keys in flat order, as the apply kernels do it: a key equal to
/// T gets the rank `tie_before` + (ties earlier in the segment), and a key is selected when it
/// is > T, or equals T with a rank < `tie_take`.
#[derive(Clone, Copy, Debug)]
pub struct TieWalk {
    t: u32,
    ties: u32,
    tie_take: u32,
}

impl TieWalk {
    /// Starts a segment with `tie_before` keys equal to `thr.key` before it in flat order.
    pub fn new(thr: Threshold, tie_before: u32) -> TieWalk {
        TieWalk {
            t: thr.key,
            ties: tie_before,
            tie_take: thr.tie_take,
        }
    }

    /// Whether the next key of the segment is selected.
    #[inline(always)]
    pub fn select(&mut self, k: u32) -> bool {
        let sel = k > self.t || (k == self.t && self.ties < self.tie_take);
        if k == self.t {
            self.ties += 1;
        }
        sel
    }
}

/// The u32 buffers of a backend that a radix driver runs on (host vectors on the CPU, device
/// buffers on CUDA). A range of a buffer is passed to the passes as (buffer, offset, length).
pub trait RadixMemory {
    /// A u32 buffer.
    type Buf;
    /// A zeroed buffer of `len` elements (at least one is allocated).
    fn zeros(&self, len: usize, what: &str) -> Result<Self::Buf>;
    /// Zeroes a buffer.
    fn clear(&self, buf: &mut Self::Buf, what: &str) -> Result<()>;
    /// A buffer holding `data`.
    fn upload(&self, data: &[u32], what: &str) -> Result<Self::Buf>;
    /// The first `len` elements of a buffer, on the host.
    fn download(&self, buf: &Self::Buf, len: usize, what: &str) -> Result<Vec<u32>>;
}

/// Buffer type of a family's memory.
pub type BufOf<K> = <<K as RadixKeys>::Mem as RadixMemory>::Buf;

/// One family's keys over its groups of targets, and the three per-target passes over them
/// (the kernels, or their CPU twins). Target `t` of group `g` holds `lens(g)[t]` positions.
pub trait RadixKeys {
    /// The backend memory the passes write into.
    type Mem: RadixMemory;
    /// The backend memory.
    fn mem(&self) -> &Self::Mem;
    /// The operation's name, for errors.
    fn op(&self) -> &'static str;
    /// Number of groups.
    fn groups(&self) -> usize;
    /// The number of positions group `g` selects.
    fn k(&self, g: usize) -> usize;
    /// Positions of each target of group `g`.
    fn lens(&self, g: usize) -> Vec<usize>;
    /// Adds, for every key of target (g, t) whose bits under `st.prefix_mask` equal
    /// `st.prefix`, 1 to bin `(key >> shift) & (2^bits − 1)` of `hist[at..at + 2^bits]`.
    #[allow(clippy::too_many_arguments)]
    fn hist(
        &self,
        g: usize,
        t: usize,
        st: &RadixState,
        shift: u32,
        bits: u32,
        hist: &mut BufOf<Self>,
        at: usize,
    ) -> Result<()>;
    /// Writes into `counts[at..at + n]` (n = [`segments`] of the target) the number of keys
    /// equal to `key` in each segment of target (g, t).
    fn count(
        &self,
        g: usize,
        t: usize,
        key: u32,
        counts: &mut BufOf<Self>,
        at: usize,
    ) -> Result<()>;
    /// Applies the selection of `thr` to target (g, t), segment b ranking its ties from
    /// `tie_before[at + b]` on ([`TieWalk`]), and writes the count the family reports per
    /// segment (positions rewritten or kept) into `out[at + b]`.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        g: usize,
        t: usize,
        thr: Threshold,
        tie_before: &BufOf<Self>,
        out: &mut BufOf<Self>,
        at: usize,
    ) -> Result<()>;
}

/// Runs the three radix passes of every group (see the module doc) and returns, per group and
/// per target, the family's apply count. Growing (`SelectAction::Grow`) zero positions
/// leaves a group untouched; keeping zero positions applies "select nothing".
pub fn radix_update<K: RadixKeys + ?Sized>(
    keys: &mut K,
    action: SelectAction,
) -> Result<Vec<Vec<usize>>> {
    let op = keys.op();
    let ng = keys.groups();
    let lens: Vec<Vec<usize>> = (0..ng).map(|g| keys.lens(g)).collect();
    let ks: Vec<usize> = (0..ng).map(|g| keys.k(g)).collect();
    let skip: Vec<bool> = ks
        .iter()
        .map(|&k| action == SelectAction::Grow && k == 0)
        .collect();
    let thresholds = thresholds(keys, &lens, &ks, action)?;

    // 2. Tie counts per segment (only where the ties are split), one copy back.
    let segs: Vec<Vec<usize>> = lens
        .iter()
        .map(|l| l.iter().map(|&n| segments(n)).collect())
        .collect();
    let total: usize = segs.iter().flatten().sum();
    let mem_op = |what: &str| format!("{op}: {what}");
    let mut counts = keys.mem().zeros(total, &mem_op("tie counts"))?;
    let mut any_ties = false;
    let mut at = 0;
    for g in 0..ng {
        for (t, (&len, &n)) in lens[g].iter().zip(&segs[g]).enumerate() {
            if thresholds[g].splits_ties() && !skip[g] && len > 0 {
                keys.count(g, t, thresholds[g].key, &mut counts, at)?;
                any_ties = true;
            }
            at += n;
        }
    }
    let host_counts = if any_ties {
        keys.mem().download(&counts, total, &mem_op("tie counts"))?
    } else {
        vec![0; total]
    };
    let before = segment_tie_offsets(&segs, &host_counts);
    let before = keys.mem().upload(&before, &mem_op("tie offsets"))?;

    // 3. Apply, one copy of the per-segment counts back.
    let mut out = keys.mem().zeros(total, &mem_op("apply counts"))?;
    let mut at = 0;
    for g in 0..ng {
        for (t, (&len, &n)) in lens[g].iter().zip(&segs[g]).enumerate() {
            if !skip[g] && len > 0 {
                keys.apply(g, t, thresholds[g], &before, &mut out, at)?;
            }
            at += n;
        }
    }
    let host_out = keys.mem().download(&out, total, &mem_op("apply counts"))?;
    let mut at = 0;
    Ok(segs
        .iter()
        .map(|s| {
            s.iter()
                .map(|&n| {
                    let c = host_out[at..at + n].iter().map(|&c| c as usize).sum();
                    at += n;
                    c
                })
                .collect()
        })
        .collect())
}

/// Pass 1 of [`radix_update`]: the threshold of every group, from three histogram passes over
/// every selecting group at once (one histogram copy per pass).
fn thresholds<K: RadixKeys + ?Sized>(
    keys: &K,
    lens: &[Vec<usize>],
    ks: &[usize],
    action: SelectAction,
) -> Result<Vec<Threshold>> {
    let op = keys.op();
    let selecting: Vec<usize> = (0..ks.len()).filter(|&g| ks[g] > 0).collect();
    let mut states: Vec<RadixState> = ks.iter().map(|&k| RadixState::new(k)).collect();
    if !selecting.is_empty() {
        let what = format!("{op}: histograms");
        let slots = selecting.len() * HIST_SLOT;
        let mut hist = keys.mem().zeros(slots, &what)?;
        for (shift, bits) in RADIX_PASSES {
            keys.mem().clear(&mut hist, &what)?;
            for (slot, &g) in selecting.iter().enumerate() {
                for (t, &len) in lens[g].iter().enumerate() {
                    if len > 0 {
                        keys.hist(g, t, &states[g], shift, bits, &mut hist, slot * HIST_SLOT)?;
                    }
                }
            }
            let h = keys.mem().download(&hist, slots, &what)?;
            for (slot, &g) in selecting.iter().enumerate() {
                let at = slot * HIST_SLOT;
                states[g]
                    .narrow(&h[at..at + (1 << bits)], shift)
                    .map_err(|e| Error::Shape(format!("{op}: group {g}: {e}")))?;
            }
        }
    }
    ks.iter()
        .enumerate()
        .map(|(g, &k)| {
            if k == 0 {
                Ok(Threshold::NONE)
            } else {
                states[g]
                    .threshold(k, action)
                    .map_err(|e| Error::Shape(format!("{op}: group {g}: {e}")))
            }
        })
        .collect()
}

/// Host memory: the CPU backend's [`RadixMemory`].
#[derive(Clone, Copy, Debug, Default)]
pub struct HostMemory;

impl RadixMemory for HostMemory {
    type Buf = Vec<u32>;
    fn zeros(&self, len: usize, _what: &str) -> Result<Vec<u32>> {
        Ok(vec![0; len.max(1)])
    }
    fn clear(&self, buf: &mut Vec<u32>, _what: &str) -> Result<()> {
        buf.fill(0);
        Ok(())
    }
    fn upload(&self, data: &[u32], _what: &str) -> Result<Vec<u32>> {
        let mut v = data.to_vec();
        if v.is_empty() {
            v.push(0);
        }
        Ok(v)
    }
    fn download(&self, buf: &Vec<u32>, len: usize, _what: &str) -> Result<Vec<u32>> {
        Ok(buf[..len].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            segment_tie_offsets(&[vec![2, 1], vec![1]], &[1, 0, 2, 5]),
            vec![0, 1, 1, 0]
        );
    }

    #[test]
    fn tie_walk_takes_the_first_ties_in_order() {
        let thr = Threshold {
            key: 5,
            tie_take: 3,
        };
        let mut w = TieWalk::new(thr, 1);
        let got: Vec<bool> = [5, 9, 5, 4, 5, 5].iter().map(|&k| w.select(k)).collect();
        assert_eq!(got, [true, true, true, false, false, false]);
        let mut none = TieWalk::new(Threshold::NONE, 0);
        assert!(!none.select(u32::MAX - 1) && !none.select(1));
    }
}

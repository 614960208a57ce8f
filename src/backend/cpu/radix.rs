//! The read passes of the radix driver ([`crate::backend::radix`]) on the host, over any key
//! function: the bodies of the select and superpose kernel twins' histogram and count passes
//! (`select_hist_f32` / `superpose_hist_f32`, `select_count_f32` / `superpose_count_f32`).
//! The apply passes rank their ties with [`crate::backend::radix::TieWalk`].

use rayon::prelude::*;

use crate::backend::radix::{segment_bounds, MAX_HIST_BITS};

/// Elements per rayon task of [`hist_by`].
const CHUNK: usize = 1 << 16;

/// For every position i < `len` whose key `key(i)` matches `prefix` under `prefix_mask`, adds 1
/// to `hist[(key >> shift) & (2^bits − 1)]` (accumulated, not overwritten, so the tensors of a
/// group share one histogram). Integer sums: the result does not depend on the order.
#[allow(clippy::too_many_arguments)]
pub fn hist_by(
    op: &str,
    len: usize,
    key: impl Fn(usize) -> u32 + Sync,
    prefix: u32,
    prefix_mask: u32,
    shift: u32,
    bits: u32,
    hist: &mut [u32],
) {
    assert!(
        (1..=MAX_HIST_BITS).contains(&bits) && hist.len() >= 1 << bits,
        "{op}: bits = {bits}, hist of {}",
        hist.len()
    );
    let nb = 1usize << bits;
    let partial = (0..len.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let mut h = vec![0u32; nb];
            for i in c * CHUNK..len.min((c + 1) * CHUNK) {
                let k = key(i);
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

/// `counts[b]` = number of positions of segment b (of `counts.len()` segments over `len`,
/// [`segment_bounds`]) whose key `key(i)` is in `[lo, hi]`.
pub fn count_by(
    len: usize,
    key: impl Fn(usize) -> u32 + Sync,
    lo: u32,
    hi: u32,
    counts: &mut [u32],
) {
    let g = counts.len();
    counts.par_iter_mut().enumerate().for_each(|(b, c)| {
        let (a, e) = segment_bounds(b, g, len);
        *c = (a..e).filter(|&i| (lo..=hi).contains(&key(i))).count() as u32;
    });
}

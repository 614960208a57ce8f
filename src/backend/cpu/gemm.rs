//! A packed single-threaded SGEMM for the convolution fast paths: operands are packed into
//! micro-panels (A: MR rows interleaved, B: NR columns interleaved, both over the full k), so
//! callers can pack straight from im2col or from images without an intermediate matrix, and
//! pack a weight once per call for every thread. The micro-kernels are dispatched at run time
//! ([`simd::isa`]): AVX-512 computes 12×32 tiles over two panels of each operand (24 zmm
//! accumulators), AVX2/FMA 6×16 tiles (twelve ymm accumulators, the BLIS Zen shape), other
//! CPUs a portable 6×16 kernel; both SIMD kernels are one generic body (`simd::tile`).

use crate::backend::cpu::simd::{self, Isa};
use crate::backend::cpu::simd_gemm as k;

/// Rows of a micro-tile (A panel width).
pub const MR: usize = 6;
/// Columns of a micro-tile (B panel width).
pub const NR: usize = 16;
/// k-block: one B micro-panel (KC × NR floats, 16 KiB) stays in L1.
const KC: usize = 256;
/// m-block: MC × KC floats of A (96 KiB) stay in L2.
const MC: usize = 96;

/// Length of a packed A for an m×k operand: ceil(m/MR) panels of k×MR.
pub fn packed_a_len(m: usize, k: usize) -> usize {
    m.div_ceil(MR) * MR * k
}

/// Length of a packed B for a k×n operand: ceil(n/NR) panels of k×NR.
pub fn packed_b_len(k: usize, n: usize) -> usize {
    n.div_ceil(NR) * NR * k
}

/// Packs A (m×k, element (i, p) = `a(i, p)`) into `ap`: panel `i / MR`, then p, then i % MR;
/// rows past m are zero.
pub fn pack_a(m: usize, k: usize, a: impl Fn(usize, usize) -> f32, ap: &mut [f32]) {
    for (panel, dst) in ap[..packed_a_len(m, k)]
        .chunks_exact_mut((MR * k).max(1))
        .enumerate()
    {
        let i0 = panel * MR;
        let rows = MR.min(m - i0);
        for p in 0..k {
            let d = &mut dst[p * MR..(p + 1) * MR];
            for (r, v) in d.iter_mut().enumerate() {
                *v = if r < rows { a(i0 + r, p) } else { 0.0 };
            }
        }
    }
}

/// Packs A given as a row-major matrix with leading dimension `lda` (A(i, p) = a[i·lda + p]).
pub fn pack_a_rows(m: usize, k: usize, a: &[f32], lda: usize, ap: &mut [f32]) {
    for (panel, dst) in ap[..packed_a_len(m, k)]
        .chunks_exact_mut((MR * k).max(1))
        .enumerate()
    {
        let i0 = panel * MR;
        let rows = MR.min(m - i0);
        for r in 0..MR {
            if r < rows {
                let src = &a[(i0 + r) * lda..(i0 + r) * lda + k];
                for (p, &v) in src.iter().enumerate() {
                    dst[p * MR + r] = v;
                }
            } else {
                for p in 0..k {
                    dst[p * MR + r] = 0.0;
                }
            }
        }
    }
}

/// Packs A (m×k) row by row: `row(i, buf)` writes row i of A into `buf` (length k, caller
/// scratch of at least k).
pub fn pack_a_by_rows(
    m: usize,
    k: usize,
    buf: &mut [f32],
    ap: &mut [f32],
    mut row: impl FnMut(usize, &mut [f32]),
) {
    let buf = &mut buf[..k];
    for (panel, dst) in ap[..packed_a_len(m, k)]
        .chunks_exact_mut((MR * k).max(1))
        .enumerate()
    {
        let i0 = panel * MR;
        for r in 0..MR {
            if i0 + r < m {
                row(i0 + r, buf);
                for (p, &v) in buf.iter().enumerate() {
                    dst[p * MR + r] = v;
                }
            } else {
                for p in 0..k {
                    dst[p * MR + r] = 0.0;
                }
            }
        }
    }
}

/// Packs A given transposed: A(i, p) = a[p·lda + i] (A is the transpose of a k×m matrix).
pub fn pack_a_cols(m: usize, k: usize, a: &[f32], lda: usize, ap: &mut [f32]) {
    for (panel, dst) in ap[..packed_a_len(m, k)]
        .chunks_exact_mut((MR * k).max(1))
        .enumerate()
    {
        let i0 = panel * MR;
        let rows = MR.min(m - i0);
        for p in 0..k {
            let d = &mut dst[p * MR..(p + 1) * MR];
            d[..rows].copy_from_slice(&a[p * lda + i0..p * lda + i0 + rows]);
            d[rows..].fill(0.0);
        }
    }
}

/// Packs B (k×n) row by row: `row(p, buf)` writes row p of B into `buf` (length n rounded up
/// to NR; the tail past n is zeroed before the call). `buf` is caller scratch of that length.
pub fn pack_b_by_rows(
    k: usize,
    n: usize,
    buf: &mut [f32],
    bp: &mut [f32],
    mut row: impl FnMut(usize, &mut [f32]),
) {
    let np = n.div_ceil(NR);
    let buf = &mut buf[..np * NR];
    buf[n..].fill(0.0);
    for p in 0..k {
        row(p, &mut buf[..n]);
        for q in 0..np {
            bp[(q * k + p) * NR..(q * k + p + 1) * NR].copy_from_slice(&buf[q * NR..(q + 1) * NR]);
        }
    }
}

/// Packs B (k×n) given as NR-row blocks of its transpose: `rows(j0, block)` writes rows
/// j0..j0+NR of Bᵀ (each of length k, row r at `block[r·k..]`; rows past n are zeroed before
/// the call) into `block` (caller scratch of NR·k).
pub fn pack_b_by_cols(
    k: usize,
    n: usize,
    block: &mut [f32],
    bp: &mut [f32],
    mut rows: impl FnMut(usize, &mut [f32]),
) {
    let block = &mut block[..NR * k];
    for q in 0..n.div_ceil(NR) {
        let valid = NR.min(n - q * NR);
        block[valid * k..].fill(0.0);
        rows(q * NR, &mut block[..valid * k]);
        transpose_to_panel(block, k, &mut bp[q * k * NR..(q + 1) * k * NR]);
    }
}

/// dst[p·NR + r] = block[r·k + p] for r < NR, p < k (NR rows of length k into one B panel).
fn transpose_to_panel(block: &[f32], k: usize, dst: &mut [f32]) {
    assert!(block.len() >= NR * k && dst.len() >= NR * k);
    let mut p0 = 0;
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx") {
            // SAFETY: AVX is available; the asserts above bound every access.
            unsafe { transpose_to_panel_avx(block, k, dst) };
            p0 = k / 8 * 8;
        }
    }
    for p in p0..k {
        for r in 0..NR {
            dst[p * NR + r] = block[r * k + p];
        }
    }
}

/// The 8-column steps of [`transpose_to_panel`] with 8×8 AVX transposes (the tail k % 8 is
/// left to the caller).
///
/// # Safety
/// AVX must be available, `block.len() ≥ NR·k` and `dst.len() ≥ NR·k`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_to_panel_avx(block: &[f32], k: usize, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let (src, out) = (block.as_ptr(), dst.as_mut_ptr());
    for p in (0..k / 8 * 8).step_by(8) {
        for rb in (0..NR).step_by(8) {
            // SAFETY: rows rb..rb+8 < NR, columns p..p+8 ≤ k: inside block; the stores go to
            // rows p..p+8 < k of the panel, lanes rb..rb+8 < NR: inside dst.
            unsafe {
                let r: [__m256; 8] =
                    std::array::from_fn(|i| _mm256_loadu_ps(src.add((rb + i) * k + p)));
                let t0 = _mm256_unpacklo_ps(r[0], r[1]);
                let t1 = _mm256_unpackhi_ps(r[0], r[1]);
                let t2 = _mm256_unpacklo_ps(r[2], r[3]);
                let t3 = _mm256_unpackhi_ps(r[2], r[3]);
                let t4 = _mm256_unpacklo_ps(r[4], r[5]);
                let t5 = _mm256_unpackhi_ps(r[4], r[5]);
                let t6 = _mm256_unpacklo_ps(r[6], r[7]);
                let t7 = _mm256_unpackhi_ps(r[6], r[7]);
                let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let cols = [
                    _mm256_permute2f128_ps::<0x20>(u0, u4),
                    _mm256_permute2f128_ps::<0x20>(u1, u5),
                    _mm256_permute2f128_ps::<0x20>(u2, u6),
                    _mm256_permute2f128_ps::<0x20>(u3, u7),
                    _mm256_permute2f128_ps::<0x31>(u0, u4),
                    _mm256_permute2f128_ps::<0x31>(u1, u5),
                    _mm256_permute2f128_ps::<0x31>(u2, u6),
                    _mm256_permute2f128_ps::<0x31>(u3, u7),
                ];
                for (j, c) in cols.iter().enumerate() {
                    _mm256_storeu_ps(out.add((p + j) * NR + rb), *c);
                }
            }
        }
    }
}

/// C[m×n] (row-major, leading dimension `ldc`) = A·B, or += A·B when `accumulate`, from a
/// packed A ([`pack_a`]) and a packed B ([`pack_b_by_rows`] / [`pack_b_by_cols`]).
#[allow(clippy::too_many_arguments)]
pub fn gemm_packed(
    m: usize,
    n: usize,
    k: usize,
    ap: &[f32],
    bp: &[f32],
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        ap.len() >= packed_a_len(m, k) && bp.len() >= packed_b_len(k, n),
        "gemm_packed: packed operands too short"
    );
    assert!(
        ldc >= n && c.len() >= (m - 1) * ldc + n,
        "gemm_packed: C too short"
    );
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                c[i * ldc..i * ldc + n].fill(0.0);
            }
        }
        return;
    }
    let ks = Kernels::for_isa(simd::isa());
    gemm_packed_with(&ks, m, n, k, ap, bp, c, ldc, accumulate);
}

/// [`gemm_packed`] with the given kernels (checked by the caller).
#[allow(clippy::too_many_arguments)]
fn gemm_packed_with(
    ks: &Kernels,
    m: usize,
    n: usize,
    k: usize,
    ap: &[f32],
    bp: &[f32],
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    let (a_stride, b_stride) = (k * MR, k * NR);
    for pc in (0..k).step_by(KC) {
        let kc = KC.min(k - pc);
        let acc = accumulate || pc > 0;
        for ic in (0..m).step_by(MC) {
            let rows = ic..ic + MC.min(m - ic);
            let a_at = |ir: usize| ap[(ir / MR) * a_stride + pc * MR..].as_ptr();
            let b_at = |jr: usize| bp[(jr / NR) * b_stride + pc * NR..].as_ptr();
            walk_tiles(rows, n, ks, |ir, jr, part| {
                let c_off = ir * ldc + jr;
                let Some((mr, nr)) = part else {
                    // SAFETY: a and b hold kc·MR and kc·NR floats per panel from these offsets
                    // (full panels, checked by the caller), and the kernel's tile at c_off lies
                    // inside c since the tile fits in m×n and n ≤ ldc.
                    unsafe {
                        (ks.big)(
                            kc,
                            [a_at(ir), b_at(jr)],
                            [a_stride, b_stride],
                            c[c_off..].as_mut_ptr(),
                            ldc,
                            acc,
                        )
                    };
                    return;
                };
                let mut tile = [0.0f32; MR * NR];
                let whole = mr == MR && nr == NR;
                let (dst, ld, add) = if whole {
                    (c[c_off..].as_mut_ptr(), ldc, acc)
                } else {
                    (tile.as_mut_ptr(), NR, false)
                };
                // SAFETY: as above for a and b; the MR×NR tile is inside c when whole, else the
                // local tile.
                unsafe { (ks.base)(kc, [a_at(ir), b_at(jr)], [a_stride, b_stride], dst, ld, add) };
                if !whole {
                    for r in 0..mr {
                        let row = &mut c[c_off + r * ldc..c_off + r * ldc + nr];
                        for (d, &t) in row.iter_mut().zip(&tile[r * NR..r * NR + nr]) {
                            *d = if acc { *d + t } else { t };
                        }
                    }
                }
            });
        }
    }
}

/// Visits the output rows `rows` × columns 0..n in the tiles of `ks`: `tile(ir, jr, None)`
/// for each whole `ks.rows × ks.cols` tile, and `tile(ir, jr, Some((mr, nr)))` for each MR×NR
/// (or smaller, mr ≤ MR, nr ≤ NR) tile of the remainder. `rows.start` must be a multiple of MR.
pub(crate) fn walk_tiles<K>(
    rows: std::ops::Range<usize>,
    n: usize,
    ks: &Kernels<K>,
    mut tile: impl FnMut(usize, usize, Option<(usize, usize)>),
) {
    for jr in (0..n).step_by(ks.cols) {
        for ir in rows.clone().step_by(ks.rows) {
            if ir + ks.rows <= rows.end && jr + ks.cols <= n {
                tile(ir, jr, None);
                continue;
            }
            for j in (jr..n.min(jr + ks.cols)).step_by(NR) {
                for i in (ir..rows.end.min(ir + ks.rows)).step_by(MR) {
                    tile(i, j, Some((MR.min(rows.end - i), NR.min(n - j))));
                }
            }
        }
    }
}

/// A packed micro-kernel: the tile at `c` (row stride `ldc`) = or += Σ_{p<k} A(i, p)·B(p, j),
/// where A row i lies in the packed A panel at `ptr[0] + (i / MR)·stride[0]` (element p·MR +
/// i % MR) and B column j in the packed B panel at `ptr[1] + (j / NR)·stride[1]` (element
/// p·NR + j % NR).
pub(crate) type Kernel = unsafe fn(usize, [*const f32; 2], [usize; 2], *mut f32, usize, bool);

/// The micro-kernels of one instruction set: `big` computes `rows × cols` tiles (multiples of
/// MR × NR), `base` MR × NR tiles (`K` is the kernels' function type, [`Kernel`] by default).
pub(crate) struct Kernels<K = Kernel> {
    /// Rows of a `big` tile.
    pub rows: usize,
    /// Columns of a `big` tile.
    pub cols: usize,
    /// The large-tile kernel.
    pub big: K,
    /// The MR × NR kernel.
    pub base: K,
}

impl Kernels {
    /// The packed kernels for `isa`: AVX-512 12×32 (24 zmm accumulators) with a 6×16 base,
    /// AVX2 6×16 (twelve ymm accumulators), or the portable 6×16.
    pub(crate) fn for_isa(isa: Isa) -> Kernels {
        let (rows, cols, big, base): (usize, usize, Kernel, Kernel) = match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => (2 * MR, 2 * NR, k::kernel_avx512_big, k::kernel_avx512_base),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => (MR, NR, k::kernel_avx2, k::kernel_avx2),
            _ => (MR, NR, k::kernel_portable, k::kernel_portable),
        };
        Kernels {
            rows,
            cols,
            big,
            base,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn packed_gemm_matches_naive_with_edges() {
        let mut r = Rng::new(8);
        for &(m, n, k) in &[
            (1, 1, 1),
            (6, 16, 3),
            (13, 35, 300),
            (97, 17, 257),
            (7, 50, 0),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| r.normal()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| r.normal()).collect();
            let ldc = n + 3;
            let mut c: Vec<f32> = (0..m * ldc).map(|_| r.normal()).collect();
            let c0 = c.clone();
            // A packed three ways must agree.
            let mut ap = vec![f32::NAN; packed_a_len(m, k)];
            pack_a_rows(m, k, &a, k, &mut ap);
            let mut ap2 = vec![f32::NAN; packed_a_len(m, k)];
            pack_a(m, k, |i, p| a[i * k + p], &mut ap2);
            assert_eq!(ap, ap2);
            let at: Vec<f32> = (0..k * m).map(|q| a[(q % m) * k + q / m]).collect();
            pack_a_cols(m, k, &at, m, &mut ap2);
            assert_eq!(ap, ap2);
            let mut abuf = vec![0.0; k];
            pack_a_by_rows(m, k, &mut abuf, &mut ap2, |i, row| {
                row.copy_from_slice(&a[i * k..(i + 1) * k])
            });
            assert_eq!(ap, ap2);
            // B packed by rows and by columns must agree.
            let mut bp = vec![f32::NAN; packed_b_len(k, n)];
            let mut buf = vec![0.0; n.div_ceil(NR) * NR];
            pack_b_by_rows(k, n, &mut buf, &mut bp, |p, row| {
                row.copy_from_slice(&b[p * n..(p + 1) * n])
            });
            let mut bp2 = vec![f32::NAN; packed_b_len(k, n)];
            let mut blk = vec![0.0; NR * k];
            pack_b_by_cols(k, n, &mut blk, &mut bp2, |j0, rows| {
                for (r, row) in rows.chunks_exact_mut(k.max(1)).enumerate() {
                    for (p, v) in row.iter_mut().enumerate() {
                        *v = b[p * n + j0 + r];
                    }
                }
            });
            if k > 0 {
                assert_eq!(bp, bp2);
            }
            for accumulate in [false, true] {
                c.copy_from_slice(&c0);
                gemm_packed(m, n, k, &ap, &bp, &mut c, ldc, accumulate);
                for i in 0..m {
                    for j in 0..ldc {
                        let got = c[i * ldc + j];
                        if j >= n {
                            assert_eq!(got, c0[i * ldc + j]);
                            continue;
                        }
                        let mut s: f64 = (0..k)
                            .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                            .sum();
                        if accumulate {
                            s += c0[i * ldc + j] as f64;
                        }
                        assert!(
                            (got as f64 - s).abs() < 1e-3 * (1.0 + s.abs()),
                            "{m}x{n}x{k} ({i},{j}): {got} vs {s}"
                        );
                    }
                }
            }
        }
    }

    /// Every instruction set this CPU has against the portable kernel, on shapes that hit the
    /// big tiles, the base tiles and partial tiles (AVX-512 is skipped, with a note, elsewhere).
    #[test]
    fn isa_kernels_match_portable() {
        let mut r = Rng::new(9);
        let isas = [Isa::Avx2, Isa::Avx512];
        for &isa in &isas {
            if isa > simd::detected() {
                eprintln!(
                    "isa_kernels_match_portable: skipped {}: not on this CPU",
                    isa.name()
                );
            }
        }
        for &(m, n, k) in &[
            (12, 32, 5),
            (30, 70, 260),
            (97, 33, 17),
            (200, 64, 300),
            (5, 9, 3),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| r.normal()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| r.normal()).collect();
            let mut ap = vec![0.0; packed_a_len(m, k)];
            pack_a_rows(m, k, &a, k, &mut ap);
            let mut bp = vec![0.0; packed_b_len(k, n)];
            let mut buf = vec![0.0; n.div_ceil(NR) * NR];
            pack_b_by_rows(k, n, &mut buf, &mut bp, |p, row| {
                row.copy_from_slice(&b[p * n..(p + 1) * n])
            });
            let ldc = n + 1;
            let c0: Vec<f32> = (0..m * ldc).map(|_| r.normal()).collect();
            for accumulate in [false, true] {
                let mut want = c0.clone();
                let ks = Kernels::for_isa(Isa::Portable);
                gemm_packed_with(&ks, m, n, k, &ap, &bp, &mut want, ldc, accumulate);
                for &isa in isas.iter().filter(|&&i| i <= simd::detected()) {
                    let mut got = c0.clone();
                    let ks = Kernels::for_isa(isa);
                    gemm_packed_with(&ks, m, n, k, &ap, &bp, &mut got, ldc, accumulate);
                    for (q, (&g, &w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                            "{} {m}x{n}x{k} at {q}: {g} vs {w}",
                            isa.name()
                        );
                    }
                }
            }
        }
    }
}

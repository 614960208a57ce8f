//! A packed single-threaded SGEMM for the convolution fast paths: operands are packed into
//! micro-panels (A: MR rows interleaved, B: NR columns interleaved, both over the full k), so
//! callers can pack straight from im2col or from images without an intermediate matrix, and
//! pack a weight once per call for every thread. The 6×16 AVX2/FMA micro-kernel keeps twelve
//! 8-wide accumulators in registers (the BLIS Zen shape); other CPUs use a portable kernel.

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
    let kernel = select_kernel();
    let mut pc = 0;
    while pc < k {
        let kc = KC.min(k - pc);
        let acc = accumulate || pc > 0;
        let mut ic = 0;
        while ic < m {
            let mc = MC.min(m - ic);
            for jr in (0..n).step_by(NR) {
                let nr = NR.min(n - jr);
                let b = &bp[(jr / NR) * k * NR + pc * NR..];
                for ir in (ic..ic + mc).step_by(MR) {
                    let mr = MR.min(m - ir);
                    let a = &ap[(ir / MR) * k * MR + pc * MR..];
                    let c_off = ir * ldc + jr;
                    if mr == MR && nr == NR {
                        // SAFETY: a has kc·MR and b kc·NR elements from these offsets (full
                        // panels, checked above), and the MR×NR tile at c_off lies inside c
                        // since ir + MR ≤ m and jr + NR ≤ n ≤ ldc.
                        unsafe {
                            kernel(
                                kc,
                                a.as_ptr(),
                                b.as_ptr(),
                                c[c_off..].as_mut_ptr(),
                                ldc,
                                acc,
                            )
                        };
                    } else {
                        let mut tile = [0.0f32; MR * NR];
                        // SAFETY: as above for a and b; the tile is a full MR×NR buffer.
                        unsafe { kernel(kc, a.as_ptr(), b.as_ptr(), tile.as_mut_ptr(), NR, false) };
                        for r in 0..mr {
                            let row = &mut c[c_off + r * ldc..c_off + r * ldc + nr];
                            for (d, &t) in row.iter_mut().zip(&tile[r * NR..r * NR + nr]) {
                                *d = if acc { *d + t } else { t };
                            }
                        }
                    }
                }
            }
            ic += mc;
        }
        pc += kc;
    }
}

/// A micro-kernel: C tile (MR×NR at `c`, row stride `ldc`) = or += Σ_p a[p·MR + i]·b[p·NR + j].
type Kernel = unsafe fn(usize, *const f32, *const f32, *mut f32, usize, bool);

/// The fastest micro-kernel this CPU supports.
fn select_kernel() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return kernel_avx2;
        }
    }
    kernel_portable
}

/// Portable micro-kernel (auto-vectorised).
///
/// # Safety
/// `a` must hold k·MR and `b` k·NR readable floats; the MR×NR tile at `c` with row stride
/// `ldc` must be writable.
unsafe fn kernel_portable(
    k: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let mut acc = [[0.0f32; NR]; MR];
    // SAFETY: the caller guarantees the extents.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(a, k * MR),
            std::slice::from_raw_parts(b, k * NR),
        )
    };
    for p in 0..k {
        let bv = &b[p * NR..(p + 1) * NR];
        for (i, row) in acc.iter_mut().enumerate() {
            let av = a[p * MR + i];
            for (x, &bb) in row.iter_mut().zip(bv) {
                *x += av * bb;
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            // SAFETY: inside the caller's MR×NR tile.
            unsafe {
                let d = c.add(i * ldc + j);
                *d = if accumulate { *d + v } else { v };
            }
        }
    }
}

/// AVX2 + FMA 6×16 micro-kernel: twelve ymm accumulators, two B loads and six broadcasts per k.
///
/// # Safety
/// As [`kernel_portable`], and the CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2(
    k: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    // SAFETY: all loads are inside a[..k·MR] and b[..k·NR], all stores inside the C tile, as
    // the caller guarantees.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); 2 * MR];
        let (mut a, mut b) = (a, b);
        for _ in 0..k {
            let b0 = _mm256_loadu_ps(b);
            let b1 = _mm256_loadu_ps(b.add(8));
            for i in 0..MR {
                let av = _mm256_broadcast_ss(&*a.add(i));
                acc[2 * i] = _mm256_fmadd_ps(av, b0, acc[2 * i]);
                acc[2 * i + 1] = _mm256_fmadd_ps(av, b1, acc[2 * i + 1]);
            }
            a = a.add(MR);
            b = b.add(NR);
        }
        for i in 0..MR {
            let row = c.add(i * ldc);
            let (mut v0, mut v1) = (acc[2 * i], acc[2 * i + 1]);
            if accumulate {
                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(row));
                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(row.add(8)));
            }
            _mm256_storeu_ps(row, v0);
            _mm256_storeu_ps(row.add(8), v1);
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
}

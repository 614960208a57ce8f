//! The two inner kernels of the sparse convolution, on tiles of [`T`] = 64 contiguous columns:
//! - [`spmm_row`]: acc[j] = Σ_e vals[e] · base[offs[e] + j] (one sparse row times a dense tile,
//!   eight 8-wide accumulators, one broadcast and eight loads + FMAs per entry);
//! - [`sddmm_row`]: out[e] += Σ_j g[j] · base[offs[e] + j] (dot products of one dense row with
//!   the tile rows an entry selects, four entries at a time).
//!
//! `offs` are element offsets, so the same kernels serve an im2col tile (offset = column · T)
//! and a padded image read in place (offset = channel plane + kernel row · width + kernel
//! column). AVX2/FMA when the CPU has it (checked at run time), portable loops otherwise.

/// Columns of a tile (eight 8-wide vectors).
pub const T: usize = 64;

/// acc[j] = Σ_e vals[e] · base[offs[e] + j] for j < T.
///
/// # Panics
/// If some `offs[e] + T` exceeds `base.len()`.
#[inline]
pub fn spmm_row(offs: &[u32], vals: &[f32], base: &[f32], acc: &mut [f32; T]) {
    let max = offs.iter().copied().max().unwrap_or(0) as usize;
    assert!(
        offs.is_empty() || max + T <= base.len(),
        "spmm_row: offset past the tile"
    );
    // SAFETY: every read lies inside `base` (checked above).
    unsafe { spmm_row_unchecked(offs, vals, base.as_ptr(), acc) }
}

/// [`spmm_row`] without the bounds check.
///
/// # Safety
/// `base.add(offs[e] + j)` must be readable for every entry e and j < T.
#[inline]
pub unsafe fn spmm_row_unchecked(offs: &[u32], vals: &[f32], base: *const f32, acc: &mut [f32; T]) {
    #[cfg(target_arch = "x86_64")]
    if simd::available() {
        simd::spmm_row(offs, vals, base, acc);
        return;
    }
    acc.fill(0.0);
    for (&o, &v) in offs.iter().zip(vals) {
        let src = std::slice::from_raw_parts(base.add(o as usize), T);
        for (a, &x) in acc.iter_mut().zip(src) {
            *a += v * x;
        }
    }
}

/// out[e] += Σ_{j<T} g[j] · base[offs[e] + j] for every entry e.
///
/// # Panics
/// If `g` is shorter than T or some `offs[e] + T` exceeds `base.len()`.
#[inline]
pub fn sddmm_row(g: &[f32], offs: &[u32], base: &[f32], out: &mut [f32]) {
    let max = offs.iter().copied().max().unwrap_or(0) as usize;
    assert!(
        g.len() >= T && out.len() == offs.len(),
        "sddmm_row: lengths"
    );
    assert!(
        offs.is_empty() || max + T <= base.len(),
        "sddmm_row: offset past the tile"
    );
    // SAFETY: as checked above; g has at least T elements.
    unsafe { sddmm_row_unchecked(g.as_ptr(), offs, base.as_ptr(), out) }
}

/// [`sddmm_row`] without the bounds checks.
///
/// # Safety
/// `g` must point to T readable floats and `base.add(offs[e] + j)` be readable for every
/// entry e and j < T; `out.len() == offs.len()`.
#[inline]
pub unsafe fn sddmm_row_unchecked(g: *const f32, offs: &[u32], base: *const f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd::available() {
        simd::sddmm_row(g, offs, base, out);
        return;
    }
    let g = std::slice::from_raw_parts(g, T);
    for (o, &c) in out.iter_mut().zip(offs) {
        let src = std::slice::from_raw_parts(base.add(c as usize), T);
        *o += g.iter().zip(src).map(|(a, b)| a * b).sum::<f32>();
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::T;
    use std::arch::x86_64::*;

    /// AVX2 and FMA are available (std caches the check).
    #[inline]
    pub fn available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn spmm_row(offs: &[u32], vals: &[f32], b: *const f32, acc: &mut [f32; T]) {
        let mut a = [_mm256_setzero_ps(); 8];
        for (&c, &v) in offs.iter().zip(vals) {
            let w = _mm256_set1_ps(v);
            let p = b.add(c as usize);
            for (i, ai) in a.iter_mut().enumerate() {
                *ai = _mm256_fmadd_ps(w, _mm256_loadu_ps(p.add(8 * i)), *ai);
            }
        }
        for (i, ai) in a.iter().enumerate() {
            _mm256_storeu_ps(acc.as_mut_ptr().add(8 * i), *ai);
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum4(a0: __m256, a1: __m256, a2: __m256, a3: __m256) -> __m128 {
        let t = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
        _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1))
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn sddmm_row(g: *const f32, offs: &[u32], b: *const f32, out: &mut [f32]) {
        let n = offs.len();
        let mut e = 0;
        while e + 4 <= n {
            let p = [
                b.add(offs[e] as usize),
                b.add(offs[e + 1] as usize),
                b.add(offs[e + 2] as usize),
                b.add(offs[e + 3] as usize),
            ];
            let mut a = [_mm256_setzero_ps(); 4];
            let mut c = [_mm256_setzero_ps(); 4];
            for j in (0..T).step_by(16) {
                let g0 = _mm256_loadu_ps(g.add(j));
                let g1 = _mm256_loadu_ps(g.add(j + 8));
                for q in 0..4 {
                    a[q] = _mm256_fmadd_ps(g0, _mm256_loadu_ps(p[q].add(j)), a[q]);
                    c[q] = _mm256_fmadd_ps(g1, _mm256_loadu_ps(p[q].add(j + 8)), c[q]);
                }
            }
            let s = hsum4(
                _mm256_add_ps(a[0], c[0]),
                _mm256_add_ps(a[1], c[1]),
                _mm256_add_ps(a[2], c[2]),
                _mm256_add_ps(a[3], c[3]),
            );
            let o = _mm_loadu_ps(out.as_ptr().add(e));
            _mm_storeu_ps(out.as_mut_ptr().add(e), _mm_add_ps(o, s));
            e += 4;
        }
        while e < n {
            let p = b.add(offs[e] as usize);
            let mut a = _mm256_setzero_ps();
            for j in (0..T).step_by(8) {
                a = _mm256_fmadd_ps(_mm256_loadu_ps(g.add(j)), _mm256_loadu_ps(p.add(j)), a);
            }
            let z = _mm256_setzero_ps();
            out[e] += _mm_cvtss_f32(hsum4(a, z, z, z));
            e += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_plain_loops() {
        let base: Vec<f32> = (0..300)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let offs = [0u32, 5, 17, 100, 236, 3, 9];
        let vals = [0.5f32, -1.0, 2.0, 0.25, -0.75, 1.5, 3.0];
        let mut acc = [0f32; T];
        spmm_row(&offs, &vals, &base, &mut acc);
        for (j, &a) in acc.iter().enumerate() {
            let r: f32 = offs
                .iter()
                .zip(&vals)
                .map(|(&o, &v)| v * base[o as usize + j])
                .sum();
            assert!((a - r).abs() < 1e-4, "spmm {j}: {a} vs {r}");
        }
        let g: Vec<f32> = (0..T).map(|j| (j as f32 - 30.0) / 17.0).collect();
        let mut out = vec![1.0f32; offs.len()];
        sddmm_row(&g, &offs, &base, &mut out);
        for (e, &o) in offs.iter().enumerate() {
            let r: f32 = 1.0 + (0..T).map(|j| g[j] * base[o as usize + j]).sum::<f32>();
            assert!((out[e] - r).abs() < 1e-4, "sddmm {e}: {} vs {r}", out[e]);
        }
    }
}

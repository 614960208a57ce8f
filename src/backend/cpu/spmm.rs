//! The two inner kernels of the sparse convolution, on tiles of [`T`] = 64 contiguous columns:
//! - [`spmm_row`]: acc[j] = Σ_e vals[e] · base[offs[e] + j] (one sparse row times a dense tile,
//!   eight 8-wide accumulators, one broadcast and eight loads + FMAs per entry);
//! - [`sddmm_row`]: out[e] += Σ_j g[j] · base[offs[e] + j] (dot products of one dense row with
//!   the tile rows an entry selects, four entries at a time).
//!
//! `offs` are element offsets, so the same kernels serve an im2col tile (offset = column · T)
//! and a padded image read in place (offset = channel plane + kernel row · width + kernel
//! column). Both are written once, generic over the vector width, and dispatched at run time
//! ([`crate::backend::cpu::simd::isa`]): AVX-512, AVX2/FMA, or portable loops.

use crate::backend::cpu::simd::{isa, Isa};

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
    spmm_row_isa(isa(), offs, vals, base, acc)
}

/// [`spmm_row_unchecked`] with the kernel of `isa` (at most [`crate::backend::cpu::simd::detected`]).
///
/// # Safety
/// As [`spmm_row_unchecked`], and the CPU must support `isa`.
#[inline]
unsafe fn spmm_row_isa(isa: Isa, offs: &[u32], vals: &[f32], base: *const f32, acc: &mut [f32; T]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => return simd::spmm_row_avx512(offs, vals, base, acc),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => return simd::spmm_row_avx2(offs, vals, base, acc),
        _ => {}
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
    sddmm_row_isa(isa(), g, offs, base, out)
}

/// [`sddmm_row_unchecked`] with the kernel of `isa`.
///
/// # Safety
/// As [`sddmm_row_unchecked`], and the CPU must support `isa`.
#[inline]
unsafe fn sddmm_row_isa(isa: Isa, g: *const f32, offs: &[u32], base: *const f32, out: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => return simd::sddmm_row_avx512(g, offs, base, out),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => return simd::sddmm_row_avx2(g, offs, base, out),
        _ => {}
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
    use crate::backend::cpu::simd::{Avx2, Avx512, Simd};
    use std::arch::x86_64::*;

    /// acc = Σ_e vals[e] · b[offs[e]..][..T] with NV vectors per tile row and U independent
    /// accumulator sets (consecutive entries alternate between them, hiding the FMA latency).
    ///
    /// # Safety
    /// As [`super::spmm_row_unchecked`], on a CPU with `S`'s features; NV·LANES = T.
    #[inline(always)]
    unsafe fn spmm_body<S: Simd, const NV: usize, const U: usize>(
        offs: &[u32],
        vals: &[f32],
        b: *const f32,
        acc: &mut [f32; T],
    ) {
        debug_assert_eq!(NV * S::LANES, T);
        let mut a = [[S::zero(); NV]; U];
        let step = |a: &mut [S::V; NV], o: u32, v: &f32| {
            let w = S::splat(v);
            let p = b.add(o as usize);
            for (i, ai) in a.iter_mut().enumerate() {
                *ai = S::fma(w, S::load(p.add(i * S::LANES)), *ai);
            }
        };
        let (oc, vc) = (offs.chunks_exact(U), vals.chunks_exact(U));
        let (orest, vrest) = (oc.remainder(), vc.remainder());
        for (o, v) in oc.zip(vc) {
            for (u, set) in a.iter_mut().enumerate() {
                step(set, o[u], &v[u]);
            }
        }
        for (&o, v) in orest.iter().zip(vrest) {
            step(&mut a[0], o, v);
        }
        for i in 0..NV {
            let mut s = a[0][i];
            for set in &a[1..] {
                s = S::add(s, set[i]);
            }
            S::store(acc.as_mut_ptr().add(i * S::LANES), s);
        }
    }

    /// out[e] += Σ_j g[j] · b[offs[e] + j], four entries at a time with two accumulators each.
    ///
    /// # Safety
    /// As [`super::sddmm_row_unchecked`], on a CPU with `S`'s features; NV·LANES = T, NV even.
    #[inline(always)]
    unsafe fn sddmm_body<S: Simd, const NV: usize>(
        g: *const f32,
        offs: &[u32],
        b: *const f32,
        out: &mut [f32],
    ) {
        debug_assert!(NV * S::LANES == T && NV.is_multiple_of(2));
        let n = offs.len();
        let l = S::LANES;
        let mut e = 0;
        while e + 4 <= n {
            let p: [*const f32; 4] = std::array::from_fn(|q| b.add(offs[e + q] as usize));
            let mut a = [S::zero(); 4];
            let mut c = [S::zero(); 4];
            for j in (0..NV).step_by(2) {
                let g0 = S::load(g.add(j * l));
                let g1 = S::load(g.add((j + 1) * l));
                for q in 0..4 {
                    a[q] = S::fma(g0, S::load(p[q].add(j * l)), a[q]);
                    c[q] = S::fma(g1, S::load(p[q].add((j + 1) * l)), c[q]);
                }
            }
            let s = S::hsum4(std::array::from_fn(|q| S::add(a[q], c[q])));
            let o = _mm_loadu_ps(out.as_ptr().add(e));
            _mm_storeu_ps(out.as_mut_ptr().add(e), _mm_add_ps(o, s));
            e += 4;
        }
        while e < n {
            let p = b.add(offs[e] as usize);
            let mut a = S::zero();
            for j in 0..NV {
                a = S::fma(S::load(g.add(j * l)), S::load(p.add(j * l)), a);
            }
            let z = S::zero();
            out[e] += _mm_cvtss_f32(S::hsum4([a, z, z, z]));
            e += 1;
        }
    }

    /// [`spmm_body`] for AVX2: eight ymm accumulators.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn spmm_row_avx2(offs: &[u32], vals: &[f32], b: *const f32, acc: &mut [f32; T]) {
        spmm_body::<Avx2, 8, 1>(offs, vals, b, acc)
    }

    /// [`spmm_body`] for AVX-512: two sets of four zmm accumulators.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn spmm_row_avx512(offs: &[u32], vals: &[f32], b: *const f32, acc: &mut [f32; T]) {
        spmm_body::<Avx512, 4, 2>(offs, vals, b, acc)
    }

    /// [`sddmm_body`] for AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn sddmm_row_avx2(g: *const f32, offs: &[u32], b: *const f32, out: &mut [f32]) {
        sddmm_body::<Avx2, 8>(g, offs, b, out)
    }

    /// [`sddmm_body`] for AVX-512.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn sddmm_row_avx512(g: *const f32, offs: &[u32], b: *const f32, out: &mut [f32]) {
        sddmm_body::<Avx512, 4>(g, offs, b, out)
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

    /// Every instruction set this CPU has against the portable loops (AVX-512 is skipped,
    /// with a note, on CPUs without it), with entry counts around the unroll widths.
    #[test]
    fn isa_kernels_match_portable() {
        use crate::backend::cpu::simd::detected;
        let mut r = crate::rng::Rng::new(5);
        let base: Vec<f32> = (0..2000).map(|_| r.normal()).collect();
        let g: Vec<f32> = (0..T).map(|_| r.normal()).collect();
        for isa in [Isa::Avx2, Isa::Avx512] {
            if isa > detected() {
                eprintln!(
                    "spmm isa_kernels_match_portable: skipped {}: not on this CPU",
                    isa.name()
                );
                continue;
            }
            for n in [0usize, 1, 2, 3, 4, 5, 7, 8, 9, 33] {
                let offs: Vec<u32> = (0..n).map(|e| ((e * 211) % 1900) as u32).collect();
                let vals: Vec<f32> = (0..n).map(|_| r.normal()).collect();
                let (mut want, mut got) = ([0f32; T], [0f32; T]);
                // SAFETY: every offset + T ≤ 1964 < base.len(); isa ≤ detected().
                unsafe {
                    spmm_row_isa(Isa::Portable, &offs, &vals, base.as_ptr(), &mut want);
                    spmm_row_isa(isa, &offs, &vals, base.as_ptr(), &mut got);
                }
                for j in 0..T {
                    assert!(
                        (want[j] - got[j]).abs() < 1e-4 * (1.0 + want[j].abs()),
                        "spmm {n} {j}"
                    );
                }
                let (mut want, mut got) = (vals.clone(), vals.clone());
                // SAFETY: as above; g holds T floats.
                unsafe {
                    sddmm_row_isa(Isa::Portable, g.as_ptr(), &offs, base.as_ptr(), &mut want);
                    sddmm_row_isa(isa, g.as_ptr(), &offs, base.as_ptr(), &mut got);
                }
                for e in 0..n {
                    assert!(
                        (want[e] - got[e]).abs() < 1e-4 * (1.0 + want[e].abs()),
                        "sddmm {n} {e}"
                    );
                }
            }
        }
    }
}

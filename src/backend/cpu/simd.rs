//! Run-time ISA dispatch and vector-width-generic kernel bodies.
//!
//! The build targets x86-64-v3 (AVX2 + FMA, `.cargo/config.toml`); AVX-512 is detected at run
//! time ([`isa`]). Each hot kernel is written once, generic over `Simd` (an associated vector
//! type and the handful of operations the kernels use), and instantiated twice behind
//! `#[target_feature]` wrappers: `Avx2` (`__m256`, 8 lanes) and `Avx512` (`__m512`, 16
//! lanes). The bodies and the trait methods are `#[inline(always)]`, so each instance compiles
//! to straight vector code inside its wrapper, and the AVX2 instance exercises the same logic
//! on every machine the AVX-512 one runs on.
//!
//! `SUPTICKETS_ISA=avx2` (or `portable`) caps the dispatch below what the CPU has, to compare
//! the paths side by side in one binary.

use std::sync::OnceLock;

/// The vector instruction set the CPU kernels run with, in increasing order of width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// No SIMD intrinsics (the auto-vectorised loops).
    Portable,
    /// AVX2 + FMA, 8 floats per vector.
    Avx2,
    /// AVX-512F (with AVX2 + FMA), 16 floats per vector.
    Avx512,
}

impl Isa {
    /// The name `SUPTICKETS_ISA` accepts and reports print.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

/// The widest instruction set this CPU supports (ignoring `SUPTICKETS_ISA`).
pub fn detected() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        if avx2 && is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if avx2 {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

/// The instruction set the kernels dispatch to: [`detected`], capped by the environment
/// variable `SUPTICKETS_ISA` (`portable`, `avx2`, `avx512`) when set. Decided once.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let cap = match std::env::var("SUPTICKETS_ISA").as_deref() {
            Ok("portable") => Isa::Portable,
            Ok("avx2") => Isa::Avx2,
            _ => Isa::Avx512,
        };
        detected().min(cap)
    })
}

/// A SIMD register of f32 lanes and the operations the kernels need. Every method is unsafe:
/// the caller must run on a CPU with the instance's features (inside a `#[target_feature]`
/// function enabling them) and pass valid pointers.
#[cfg(target_arch = "x86_64")]
pub(crate) trait Simd {
    /// The vector register type.
    type V: Copy;
    /// f32 lanes per vector.
    const LANES: usize;
    /// All lanes zero.
    unsafe fn zero() -> Self::V;
    /// All lanes `*p` (a broadcast load).
    unsafe fn splat(p: *const f32) -> Self::V;
    /// LANES floats from `p` (unaligned).
    unsafe fn load(p: *const f32) -> Self::V;
    /// Stores LANES floats to `p` (unaligned).
    unsafe fn store(p: *mut f32, v: Self::V);
    /// a·b + c, fused.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// a + b.
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// The four horizontal sums of `v`, as one 4-lane vector.
    unsafe fn hsum4(v: [Self::V; 4]) -> std::arch::x86_64::__m128;
}

/// AVX2 + FMA: `__m256`.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx2;

/// AVX-512F: `__m512`.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx512;

#[cfg(target_arch = "x86_64")]
mod impls {
    use super::{Avx2, Avx512, Simd};
    use std::arch::x86_64::*;

    impl Simd for Avx2 {
        type V = __m256;
        const LANES: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> __m256 {
            _mm256_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> __m256 {
            // SAFETY: the caller guarantees p is readable and AVX is enabled.
            unsafe { _mm256_broadcast_ss(&*p) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            // SAFETY: the caller guarantees 8 readable floats at p.
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            // SAFETY: the caller guarantees 8 writable floats at p.
            unsafe { _mm256_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            _mm256_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn hsum4(v: [__m256; 4]) -> __m128 {
            let t = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
            _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1))
        }
    }

    impl Simd for Avx512 {
        type V = __m512;
        const LANES: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> __m512 {
            // SAFETY: the caller guarantees p is readable and AVX-512F is enabled.
            unsafe { _mm512_set1_ps(*p) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            // SAFETY: the caller guarantees 16 readable floats at p.
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            // SAFETY: the caller guarantees 16 writable floats at p.
            unsafe { _mm512_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            _mm512_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn hsum4(v: [__m512; 4]) -> __m128 {
            // Fold each 512-bit vector to 256 bits, then the AVX2 reduction.
            let half = |x: __m512| {
                let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x)));
                _mm256_add_ps(_mm512_castps512_ps256(x), hi)
            };
            // SAFETY: the caller enables AVX-512F (which implies AVX2).
            unsafe { Avx2::hsum4([half(v[0]), half(v[1]), half(v[2]), half(v[3])]) }
        }
    }
}

/// The body of every GEMM micro-kernel: the R × (NV·LANES) tile at `c` (row stride `ldc`) =
/// or += Σ_{p<k} A(i, p) · B(p, ·), where `a(p, i)` is the address of A(i, p) and `b(p, v)`
/// the address of the v-th vector of row p of B. R·NV accumulators stay in registers; per k
/// step NV vector loads of B and R broadcasts of A feed R·NV FMAs.
///
/// # Safety
/// The CPU must support `S`'s features (call from a `#[target_feature]` function enabling
/// them); every address `a` and `b` return for p < k must be readable (LANES floats for `b`)
/// and the tile at `c` writable.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn tile<S: Simd, const R: usize, const NV: usize>(
    k: usize,
    a: impl Fn(usize, usize) -> *const f32,
    b: impl Fn(usize, usize) -> *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: every access is one the caller guarantees.
    unsafe {
        let mut acc = [[S::zero(); NV]; R];
        for p in 0..k {
            let bv: [S::V; NV] = std::array::from_fn(|v| S::load(b(p, v)));
            for (i, row) in acc.iter_mut().enumerate() {
                let av = S::splat(a(p, i));
                for (x, &bb) in row.iter_mut().zip(&bv) {
                    *x = S::fma(av, bb, *x);
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            let dst = c.add(i * ldc);
            for (v, &x) in row.iter().enumerate() {
                let d = dst.add(v * S::LANES);
                S::store(d, if accumulate { S::add(x, S::load(d)) } else { x });
            }
        }
    }
}

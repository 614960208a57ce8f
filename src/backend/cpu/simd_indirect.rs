//! The micro-kernels of the im2col-free convolution ([`super::conv_indirect`]), one generic
//! body (`simd::tile`) instantiated for AVX2 and AVX-512 and chosen at run time:
//! - indirect B (forward / backward-input): `C(i, j) = Σ_p A(i, p) · b[offs[p] + j]`, A packed,
//!   B read in place from a padded image (the tile's columns are consecutive output pixels);
//! - indirect A (backward-weight): `C(i, j) = Σ_p rows[i][pix[p]] · B(p, j)`, A read in place
//!   from padded images, B packed.

use crate::backend::cpu::gemm::{Kernels, MR, NR};
use crate::backend::cpu::simd::{self, Isa};
#[cfg(target_arch = "x86_64")]
use crate::backend::cpu::simd::{Avx2, Avx512, Simd};

/// An indirect-B kernel: the tile at `c` (row stride `ldc`) = or += Σ_{p<k} A(i, p) ·
/// `b[offs[p] + j]`, A row i in the packed panel at `a + (i / MR)·a_stride` (element
/// p·MR + i % MR).
pub(crate) type IndirectB =
    unsafe fn(usize, *const f32, usize, *const f32, *const usize, *mut f32, usize, bool);

/// An indirect-A kernel: the MR-row tile at `c` (row stride `ldc`) = or += Σ_{p<k}
/// `rows[i][pix[p]]` · B(p, j), B column j in the packed panel at `b + (j / NR)·b_stride`
/// (element p·NR + j % NR).
pub(crate) type IndirectA =
    unsafe fn(usize, &[*const f32; MR], *const usize, *const f32, usize, *mut f32, usize, bool);

/// The indirect-B kernels for output rows `w_out` wide (a multiple of NR): AVX-512 12×32
/// when `w_out` is a multiple of 32, else 12×16, with a 6×16 base; AVX2 6×16. None without
/// AVX2.
pub(crate) fn indirect_b_kernels(isa: Isa, w_out: usize) -> Option<Kernels<IndirectB>> {
    #[cfg(target_arch = "x86_64")]
    {
        let wide = w_out.is_multiple_of(2 * NR);
        match isa {
            Isa::Avx512 => Some(Kernels {
                rows: 2 * MR,
                cols: if wide { 2 * NR } else { NR },
                big: if wide { b_avx512_12x32 } else { b_avx512_12x16 },
                base: b_avx512_6x16,
            }),
            Isa::Avx2 => Some(Kernels {
                rows: MR,
                cols: NR,
                big: b_avx2,
                base: b_avx2,
            }),
            Isa::Portable => None,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, w_out);
        None
    }
}

/// The indirect-A kernels: AVX-512 6×64 (24 zmm accumulators) with a 6×16 base, AVX2 6×16.
/// None without AVX2.
pub(crate) fn indirect_a_kernels(isa: Isa) -> Option<Kernels<IndirectA>> {
    #[cfg(target_arch = "x86_64")]
    {
        match isa {
            Isa::Avx512 => Some(Kernels {
                rows: MR,
                cols: 4 * NR,
                big: a_avx512_6x64,
                base: a_avx512_6x16,
            }),
            Isa::Avx2 => Some(Kernels {
                rows: MR,
                cols: NR,
                big: a_avx2,
                base: a_avx2,
            }),
            Isa::Portable => None,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        None
    }
}

/// The generic indirect-B tile (R rows, NV vectors of consecutive columns).
///
/// # Safety
/// As [`IndirectB`] for an R × NV·LANES tile, on a CPU with `S`'s features.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn b_tile<S: Simd, const R: usize, const NV: usize>(
    k: usize,
    a: *const f32,
    a_stride: usize,
    b: *const f32,
    offs: *const usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: the addresses below are the ones the caller guarantees readable.
    unsafe {
        simd::tile::<S, R, NV>(
            k,
            |p, i| a.add((i / MR) * a_stride + p * MR + i % MR),
            |p, v| b.add(*offs.add(p) + v * S::LANES),
            c,
            ldc,
            accumulate,
        )
    }
}

/// The generic indirect-A tile (MR rows, NV vectors of columns over packed B panels).
///
/// # Safety
/// As [`IndirectA`] for an MR × NV·LANES tile, on a CPU with `S`'s features.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn a_tile<S: Simd, const NV: usize>(
    k: usize,
    rows: &[*const f32; MR],
    pix: *const usize,
    b: *const f32,
    b_stride: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let rows = *rows;
    // SAFETY: the addresses below are the ones the caller guarantees readable.
    unsafe {
        simd::tile::<S, MR, NV>(
            k,
            |p, i| rows[i].add(*pix.add(p)),
            |p, v| {
                let j = v * S::LANES;
                b.add((j / NR) * b_stride + p * NR + j % NR)
            },
            c,
            ldc,
            accumulate,
        )
    }
}

/// Declares one `#[target_feature]` instance of a generic tile: `instance!(tile, Type,
/// (params), (args), name, "features", [generics])`.
macro_rules! instance {
    ($tile:ident, $ty:ty, $params:tt, $args:tt, $name:ident, $feat:literal, [$($g:tt),*]) => {
        /// One instance of the generic tile.
        ///
        /// # Safety
        #[doc = concat!("As [`", stringify!($ty), "`] for this tile, with ", $feat, " available.")]
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feat)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name $params {
            // SAFETY: forwarded from the caller.
            unsafe { $tile::<$($g),*> $args }
        }
    };
}

/// Declares several [`instance`]s sharing a tile, type, parameters and arguments.
macro_rules! instances {
    ($tile:ident, $ty:ty, $params:tt, $args:tt, $(($name:ident, $feat:literal, $g:tt)),* $(,)?) => {
        $(instance!($tile, $ty, $params, $args, $name, $feat, $g);)*
    };
}

instances!(
    b_tile,
    IndirectB,
    (k: usize, a: *const f32, s: usize, b: *const f32, o: *const usize, c: *mut f32, l: usize, acc: bool),
    (k, a, s, b, o, c, l, acc),
    (b_avx2, "avx2,fma", [Avx2, MR, 2]),
    (b_avx512_6x16, "avx512f,avx2,fma", [Avx512, MR, 1]),
    (b_avx512_12x16, "avx512f,avx2,fma", [Avx512, 12, 1]),
    (b_avx512_12x32, "avx512f,avx2,fma", [Avx512, 12, 2]),
);

instances!(
    a_tile,
    IndirectA,
    (k: usize, r: &[*const f32; MR], x: *const usize, b: *const f32, s: usize, c: *mut f32, l: usize, acc: bool),
    (k, r, x, b, s, c, l, acc),
    (a_avx2, "avx2,fma", [Avx2, 2]),
    (a_avx512_6x16, "avx512f,avx2,fma", [Avx512, 1]),
    (a_avx512_6x64, "avx512f,avx2,fma", [Avx512, 4]),
);

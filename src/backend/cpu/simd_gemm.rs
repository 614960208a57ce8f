//! The packed GEMM micro-kernels of [`super::gemm`]: a portable 6×16 kernel and the instances
//! of the one generic body (`simd::tile`) for AVX2 (6×16) and AVX-512 (12×32 over two panels
//! of each operand, and 6×16 for the edges), chosen at run time by `super::gemm::Kernels`.

use crate::backend::cpu::gemm::{MR, NR};
#[cfg(target_arch = "x86_64")]
use crate::backend::cpu::simd::{self, Avx2, Avx512, Simd};

/// Portable micro-kernel (auto-vectorised), MR×NR.
///
/// # Safety
/// The A panel at `ptr[0]` must hold k·MR and the B panel at `ptr[1]` k·NR readable floats;
/// the MR×NR tile at `c` with row stride `ldc` must be writable.
pub(crate) unsafe fn kernel_portable(
    k: usize,
    ptr: [*const f32; 2],
    _: [usize; 2],
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let mut acc = [[0.0f32; NR]; MR];
    // SAFETY: the caller guarantees the extents.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(ptr[0], k * MR),
            std::slice::from_raw_parts(ptr[1], k * NR),
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

/// The generic packed tile: [`simd::tile`] with A and B read from packed panels.
///
/// # Safety
/// As [`super::gemm::Kernel`], for an R × NV·LANES tile, on a CPU with `S`'s features.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn packed_tile<S: Simd, const R: usize, const NV: usize>(
    k: usize,
    ptr: [*const f32; 2],
    stride: [usize; 2],
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let [a, b] = ptr;
    // SAFETY: the addresses below are the packed elements the caller guarantees.
    unsafe {
        simd::tile::<S, R, NV>(
            k,
            |p, i| a.add((i / MR) * stride[0] + p * MR + i % MR),
            |p, v| {
                let j = v * S::LANES;
                b.add((j / NR) * stride[1] + p * NR + j % NR)
            },
            c,
            ldc,
            accumulate,
        )
    }
}

/// AVX2 + FMA 6×16 micro-kernel: twelve ymm accumulators, two B loads and six broadcasts per k.
///
/// # Safety
/// As [`super::gemm::Kernel`] for an MR×NR tile, and the CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn kernel_avx2(
    k: usize,
    ptr: [*const f32; 2],
    stride: [usize; 2],
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: forwarded from the caller.
    unsafe { packed_tile::<Avx2, MR, 2>(k, ptr, stride, c, ldc, accumulate) }
}

/// AVX-512 6×16 micro-kernel (the edges of [`kernel_avx512_big`]'s tiling).
///
/// # Safety
/// As [`super::gemm::Kernel`] for an MR×NR tile, and the CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn kernel_avx512_base(
    k: usize,
    ptr: [*const f32; 2],
    stride: [usize; 2],
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: forwarded from the caller.
    unsafe { packed_tile::<Avx512, MR, 1>(k, ptr, stride, c, ldc, accumulate) }
}

/// AVX-512 12×32 micro-kernel over two A and two B panels: 24 zmm accumulators, two B loads
/// and twelve broadcasts per k.
///
/// # Safety
/// As [`super::gemm::Kernel`] for a 2·MR × 2·NR tile, and the CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn kernel_avx512_big(
    k: usize,
    ptr: [*const f32; 2],
    stride: [usize; 2],
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: forwarded from the caller.
    unsafe { packed_tile::<Avx512, { 2 * MR }, 2>(k, ptr, stride, c, ldc, accumulate) }
}

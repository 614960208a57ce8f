//! Stride-1 convolution without im2col (an "indirect" GEMM, after Dukhan 2019): each image is
//! zero-padded once, and the micro-kernel reads its B operand straight from the padded image
//! through a table of per-tap offsets, since for stride 1 the NR output pixels of a tile that
//! lie in one output row read NR contiguous input values for every (ci, kh, kw). This removes
//! the im2col/packing pass (K·h_out·w_out floats per image), which costs as much as a third of
//! the GEMM when c_out is small. It serves the forward pass and, with flipped and transposed
//! weights, the backward-input pass of stride-1 layers whose output width is a multiple of NR.
//!
//! The backward-weight pass uses the same idea the other way round, for any stride:
//! dWᵀ [K, c_out] = col [K, P] · dYᵀ [P, c_out], where the micro-kernel broadcasts its A values
//! (col) straight from the padded images, row i of a panel at a per-tap offset and pixel p at
//! a per-pixel offset, and only dYᵀ is packed.

use rayon::prelude::*;

use crate::backend::cpu::conv_gemm::{group_channel_row, group_size, with_scratch};
use crate::backend::cpu::gemm::{self, MR, NR};
use crate::backend::cpu::simd::{self, Isa};
use crate::backend::cpu::simd_indirect::{indirect_a_kernels, indirect_b_kernels};
use crate::backend::Conv2dParams;

/// k-block (taps per micro-kernel call).
const KC: usize = 256;
/// m-block (output channels whose packed weights stay in L2).
const MC: usize = 96;

/// True when this path can run a stride-1 convolution whose output rows are `w_out` wide.
fn usable(w_out: u32) -> bool {
    w_out > 0 && (w_out as usize).is_multiple_of(NR) && simd::isa() >= Isa::Avx2
}

/// True when [`forward`] handles this geometry.
pub fn forward_applies(p: &Conv2dParams) -> bool {
    p.stride == 1 && p.k_h == p.k_w && usable(p.w_out)
}

/// True when [`backward_input`] handles this geometry.
pub fn backward_input_applies(p: &Conv2dParams) -> bool {
    p.stride == 1 && p.k_h == p.k_w && p.pad < p.k_h && usable(p.w_in)
}

/// y = w ⋆ x for a stride-1 geometry accepted by [`forward_applies`] (no bias).
pub fn forward(x: &[f32], w: &[f32], p: &Conv2dParams, y: &mut [f32]) {
    let (c_out, kk) = (p.c_out as usize, p.col_rows());
    let mut wp = vec![0.0; gemm::packed_a_len(c_out, kk)];
    gemm::pack_a_rows(c_out, kk, w, kk, &mut wp);
    let g = Geometry {
        c: p.c_in as usize,
        h: p.h_in as usize,
        w: p.w_in as usize,
        k: p.k_h as usize,
        pad: p.pad as usize,
        c_out,
    };
    conv_s1(&g, x, &wp, y);
}

/// dx = the transposed convolution of dy with w, for a geometry accepted by
/// [`backward_input_applies`]: a stride-1 convolution of dy with pad k−1−pad and the weight
/// w'[ci, co, kh, kw] = w[co, ci, k−1−kh, k−1−kw].
pub fn backward_input(dy: &[f32], w: &[f32], p: &Conv2dParams, dx: &mut [f32]) {
    let (c_in, c_out, k) = (p.c_in as usize, p.c_out as usize, p.k_h as usize);
    let kk = c_out * k * k;
    let mut wp = vec![0.0; gemm::packed_a_len(c_in, kk)];
    gemm::pack_a(
        c_in,
        kk,
        |ci, q| {
            let (co, t) = (q / (k * k), q % (k * k));
            let (kh, kw) = (t / k, t % k);
            w[((co * c_in + ci) * k + (k - 1 - kh)) * k + (k - 1 - kw)]
        },
        &mut wp,
    );
    let g = Geometry {
        c: c_out,
        h: p.h_out as usize,
        w: p.w_out as usize,
        k,
        pad: k - 1 - p.pad as usize,
        c_out: c_in,
    };
    conv_s1(&g, dy, &wp, dx);
}

/// True when [`backward_weight`] handles this geometry: any stride, given AVX2 and FMA, but
/// only for output maps of at least 64 pixels; on smaller maps a k-block spans many images,
/// the broadcasts hit a new cache line each, and packing col is faster (measured: 512→512 at
/// 2×2, 18 ms packed vs 29 ms indirect; at 32×32 73 ms packed vs 54 ms indirect).
pub fn backward_weight_applies(p: &Conv2dParams) -> bool {
    usable(NR as u32) && p.col_cols() >= 64 && p.col_rows() > 0
}

/// dw [c_out, K] = Σ over images of dy · colᵀ, computed as dwᵀ = col · dyᵀ with col read from
/// the padded images. One partial dwᵀ per thread over a contiguous part of the batch, added in
/// a fixed order (deterministic for a given thread count).
pub fn backward_weight(x: &[f32], dy: &[f32], p: &Conv2dParams, dw: &mut [f32]) {
    let (n, c_in, c_out) = (p.n as usize, p.c_in as usize, p.c_out as usize);
    let (kk, hw, k_h, k_w) = (p.col_rows(), p.col_cols(), p.k_h as usize, p.k_w as usize);
    let (h_in, w_in, pad, s) = (
        p.h_in as usize,
        p.w_in as usize,
        p.pad as usize,
        p.stride as usize,
    );
    let (hp, wpd) = (h_in + 2 * pad, w_in + 2 * pad);
    let (img_in, img_pad) = (c_in * h_in * w_in, c_in * hp * wpd);
    let g = group_size(p);
    let parts = rayon::current_num_threads().clamp(1, n.div_ceil(g));
    let per_part = n.div_ceil(parts).div_ceil(g) * g;
    // Offset of each im2col row (tap) in a padded image, and of each pixel of a full group.
    let row_off: Vec<usize> = (0..kk)
        .map(|r| {
            let (ci, t) = (r / (k_h * k_w), r % (k_h * k_w));
            ci * hp * wpd + (t / k_w) * wpd + t % k_w
        })
        .collect();
    let pix_off: Vec<usize> = (0..g * hw)
        .map(|q| {
            let (j, o) = (q / hw, q % hw);
            let (oh, ow) = (o / p.w_out as usize, o % p.w_out as usize);
            j * img_pad + oh * s * wpd + ow * s
        })
        .collect();
    let geo = Geometry {
        c: c_in,
        h: h_in,
        w: w_in,
        k: k_h,
        pad,
        c_out,
    };
    let partials: Vec<Vec<f32>> = (0..n.div_ceil(per_part))
        .into_par_iter()
        .map(|part| {
            let mut acc = vec![0.0f32; kk * c_out];
            let (i0, i1) = (part * per_part, ((part + 1) * per_part).min(n));
            for gi in (i0..i1).step_by(g) {
                let gn = g.min(i1 - gi);
                let cols = gn * hw;
                let xs = &x[gi * img_in..(gi + gn) * img_in];
                let dys = &dy[gi * c_out * hw..(gi + gn) * c_out * hw];
                let lens = [gn * img_pad, gemm::packed_b_len(cols, c_out), NR * cols];
                with_scratch(lens, |[xp, bp, buf]| {
                    for j in 0..gn {
                        pad_image(
                            &xs[j * img_in..(j + 1) * img_in],
                            &geo,
                            &mut xp[j * img_pad..(j + 1) * img_pad],
                        );
                    }
                    gemm::pack_b_by_cols(cols, c_out, buf, bp, |co0, rows| {
                        for (i, row) in rows.chunks_exact_mut(cols).enumerate() {
                            group_channel_row(dys, gn, c_out, hw, co0 + i, row);
                        }
                    });
                    indirect_a_gemm(
                        simd::isa(),
                        kk,
                        c_out,
                        &row_off,
                        &pix_off[..cols],
                        xp,
                        bp,
                        &mut acc,
                        gi > i0,
                    );
                });
            }
            acc
        })
        .collect();
    for (r, row) in partials[0].chunks_exact(c_out).enumerate() {
        for (co, &v) in row.iter().enumerate() {
            dw[co * kk + r] = v;
        }
    }
    for part in &partials[1..] {
        for (r, row) in part.chunks_exact(c_out).enumerate() {
            for (co, &v) in row.iter().enumerate() {
                dw[co * kk + r] += v;
            }
        }
    }
}

/// C [m, n] (row stride n) = or += A · B where `A(i, q) = xp[row_off[i] + pix_off[q]]` and B is
/// packed ([`gemm::pack_b_by_cols`]) over k = pix_off.len(), with the kernels of `isa`.
#[allow(clippy::too_many_arguments)]
fn indirect_a_gemm(
    isa: Isa,
    m: usize,
    n: usize,
    row_off: &[usize],
    pix_off: &[usize],
    xp: &[f32],
    bp: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    let k = pix_off.len();
    let reach =
        row_off.iter().max().copied().unwrap_or(0) + pix_off.iter().max().copied().unwrap_or(0);
    assert!(reach < xp.len() && bp.len() >= gemm::packed_b_len(k, n) && c.len() >= m * n);
    let ks = indirect_a_kernels(isa).expect("indirect convolution without AVX2");
    let b_stride = k * NR;
    for pc in (0..k).step_by(KC) {
        let kc = KC.min(k - pc);
        let po = &pix_off[pc..pc + kc];
        let acc = accumulate || pc > 0;
        for ic in (0..m).step_by(MC) {
            gemm::walk_tiles(ic..ic + MC.min(m - ic), n, &ks, |ir, jr, part| {
                let mr = part.map_or(MR, |(mr, _)| mr);
                // Rows past m repeat row ir (a valid address); their results are dropped.
                let rows: [*const f32; MR] = std::array::from_fn(|i| {
                    xp[row_off[if i < mr { ir + i } else { ir }]..].as_ptr()
                });
                let b = bp[(jr / NR) * b_stride + pc * NR..].as_ptr();
                let c_off = ir * n + jr;
                let Some((mr, nr)) = part else {
                    // SAFETY: every A read is xp[row_off[i] + pix_off[q]] ≤ reach < xp.len()
                    // (asserted); each B panel holds kc·NR floats from b; the tile at c_off
                    // (row stride n) lies inside c as it fits in m × n.
                    unsafe {
                        (ks.big)(
                            kc,
                            &rows,
                            po.as_ptr(),
                            b,
                            b_stride,
                            c[c_off..].as_mut_ptr(),
                            n,
                            acc,
                        )
                    };
                    return;
                };
                let mut tile = [0.0f32; MR * NR];
                // SAFETY: as above, for an MR×NR tile into the local buffer.
                unsafe {
                    (ks.base)(
                        kc,
                        &rows,
                        po.as_ptr(),
                        b,
                        b_stride,
                        tile.as_mut_ptr(),
                        NR,
                        false,
                    )
                };
                for r in 0..mr {
                    let row = &mut c[c_off + r * n..c_off + r * n + nr];
                    for (d, &t) in row.iter_mut().zip(&tile[r * NR..r * NR + nr]) {
                        *d = if acc { *d + t } else { t };
                    }
                }
            });
        }
    }
}

/// A stride-1 convolution: input [n, c, h, w], k×k kernel, zero padding `pad`, `c_out`
/// output channels.
struct Geometry {
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    pad: usize,
    c_out: usize,
}

/// The batched stride-1 convolution of `input` with a packed weight `wp` (c_out × c·k·k) into
/// `out` [n, c_out, h_o, w_o], in parallel over images.
fn conv_s1(g: &Geometry, input: &[f32], wp: &[f32], out: &mut [f32]) {
    let (hp, wpd) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    let (h_o, w_o) = (hp + 1 - g.k, wpd + 1 - g.k);
    let (img_in, img_out) = (g.c * g.h * g.w, g.c_out * h_o * w_o);
    let kk = g.c * g.k * g.k;
    if img_out == 0 || input.is_empty() {
        out.fill(0.0);
        return;
    }
    // Offset of tap (ci, kh, kw) from a tile's first input value, in the padded image.
    let offs: Vec<usize> = (0..kk)
        .map(|q| {
            let (ci, t) = (q / (g.k * g.k), q % (g.k * g.k));
            ci * hp * wpd + (t / g.k) * wpd + t % g.k
        })
        .collect();
    out.par_chunks_mut(img_out)
        .zip(input.par_chunks(img_in))
        .for_each(|(out, x)| {
            with_scratch([g.c * hp * wpd, 0, 0], |[xp, _, _]| {
                pad_image(x, g, xp);
                image_gemm(simd::isa(), g, wp, xp, &offs, out);
            });
        });
}

/// Copies one image [c, h, w] into `xp` [c, h+2·pad, w+2·pad] with a zero border.
fn pad_image(x: &[f32], g: &Geometry, xp: &mut [f32]) {
    let (hp, wpd) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    for ci in 0..g.c {
        let plane = &mut xp[ci * hp * wpd..(ci + 1) * hp * wpd];
        plane[..g.pad * wpd].fill(0.0);
        plane[(g.pad + g.h) * wpd..].fill(0.0);
        for h in 0..g.h {
            let row = &mut plane[(g.pad + h) * wpd..(g.pad + h + 1) * wpd];
            row[..g.pad].fill(0.0);
            row[g.pad + g.w..].fill(0.0);
            row[g.pad..g.pad + g.w]
                .copy_from_slice(&x[(ci * g.h + h) * g.w..(ci * g.h + h + 1) * g.w]);
        }
    }
}

/// out [c_out, h_o·w_o] = W · col(xp) for one padded image, blocked like [`gemm::gemm_packed`],
/// with the micro-kernels of `isa` (at least AVX2).
fn image_gemm(isa: Isa, g: &Geometry, wp: &[f32], xp: &[f32], offs: &[usize], out: &mut [f32]) {
    let (hp, wpd) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    let (h_o, w_o) = (hp + 1 - g.k, wpd + 1 - g.k);
    let (m, kk, hw) = (g.c_out, offs.len(), h_o * w_o);
    let ks = indirect_b_kernels(isa, w_o).expect("indirect convolution without AVX2");
    assert!(w_o.is_multiple_of(ks.cols) && out.len() >= m * hw);
    // The largest offset a tile reads from its base.
    let reach = offs.iter().max().copied().unwrap_or(0);
    let a_stride = kk * MR;
    for pc in (0..kk).step_by(KC) {
        let kc = KC.min(kk - pc);
        let offs = &offs[pc..pc + kc];
        let acc = pc > 0;
        for ic in (0..m).step_by(MC) {
            gemm::walk_tiles(ic..ic + MC.min(m - ic), hw, &ks, |ir, j, part| {
                // Column tiles never straddle output rows (w_o is a multiple of their width).
                let base = (j / w_o) * wpd + j % w_o;
                let width = part.map_or(ks.cols, |_| NR);
                assert!(base + reach + width <= xp.len());
                let a = wp[(ir / MR) * a_stride + pc * MR..].as_ptr();
                let b = xp[base..].as_ptr();
                let c_off = ir * hw + j;
                let Some((mr, nr)) = part else {
                    // SAFETY: the packed panels from a hold kc·MR floats each; every B read is
                    // at base + offs[p] + (< width) < base + reach + width, inside xp; the
                    // tile at c_off (row stride hw) fits in out as it fits in m × hw.
                    unsafe {
                        (ks.big)(
                            kc,
                            a,
                            a_stride,
                            b,
                            offs.as_ptr(),
                            out[c_off..].as_mut_ptr(),
                            hw,
                            acc,
                        )
                    };
                    return;
                };
                let mut tile = [0.0f32; MR * NR];
                // SAFETY: as above, for an MR×NR tile into the local buffer.
                unsafe {
                    (ks.base)(
                        kc,
                        a,
                        a_stride,
                        b,
                        offs.as_ptr(),
                        tile.as_mut_ptr(),
                        NR,
                        false,
                    )
                };
                for r in 0..mr {
                    let row = &mut out[c_off + r * hw..c_off + r * hw + nr];
                    for (d, &t) in row.iter_mut().zip(&tile[r * NR..r * NR + nr]) {
                        *d = if acc { *d + t } else { t };
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The AVX-512 indirect kernels against the AVX2 ones (skipped, with a note, on CPUs
    /// without AVX-512; the AVX2 ones are checked against the naive convolution in conv_gemm).
    #[test]
    fn avx512_indirect_kernels_match_avx2() {
        if simd::detected() < Isa::Avx512 {
            eprintln!("avx512_indirect_kernels_match_avx2: skipped: no AVX-512 on this CPU");
            return;
        }
        let mut r = Rng::new(3);
        // Output widths 32 (12×32 tiles) and 16 (12×16); c_out with partial row tiles.
        for &(c, h, c_out) in &[(5, 32, 20), (7, 16, 13), (3, 16, 64)] {
            let g = Geometry {
                c,
                h,
                w: h,
                k: 3,
                pad: 1,
                c_out,
            };
            let kk = c * 9;
            let (hp, wpd) = (h + 2, h + 2);
            let offs: Vec<usize> = (0..kk)
                .map(|q| (q / 9) * hp * wpd + (q % 9 / 3) * wpd + q % 3)
                .collect();
            let x: Vec<f32> = (0..c * h * h).map(|_| r.normal()).collect();
            let mut xp = vec![0.0; c * hp * wpd];
            pad_image(&x, &g, &mut xp);
            let wp: Vec<f32> = (0..gemm::packed_a_len(c_out, kk))
                .map(|_| r.normal())
                .collect();
            let run = |isa| {
                let mut out = vec![0.0; c_out * h * h];
                image_gemm(isa, &g, &wp, &xp, &offs, &mut out);
                out
            };
            close(&run(Isa::Avx512), &run(Isa::Avx2), "image_gemm");
            // Indirect A: m = kk taps, n = c_out columns, k = h·h pixels.
            let pix: Vec<usize> = (0..h * h).map(|q| (q / h) * wpd + q % h).collect();
            let bp: Vec<f32> = (0..gemm::packed_b_len(pix.len(), 4 * c_out))
                .map(|_| r.normal())
                .collect();
            let c0: Vec<f32> = (0..kk * 4 * c_out).map(|_| r.normal()).collect();
            for accumulate in [false, true] {
                let run = |isa| {
                    let mut out = c0.clone();
                    indirect_a_gemm(
                        isa,
                        kk,
                        4 * c_out,
                        &offs,
                        &pix,
                        &xp,
                        &bp,
                        &mut out,
                        accumulate,
                    );
                    out
                };
                close(&run(Isa::Avx512), &run(Isa::Avx2), "indirect_a_gemm");
            }
        }
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        for (q, (&x, &y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "{what} at {q}: {x} vs {y}"
            );
        }
    }
}

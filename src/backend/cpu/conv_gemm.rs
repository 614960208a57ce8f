//! The batched convolution the backend runs: im2col fused into the packing of the GEMM
//! operand ([`super::gemm`]), groups of images per GEMM (so small feature maps still give wide
//! matrices), rayon over groups, per-thread scratch buffers reused across calls, and the
//! weight packed once per call for all threads.
//!
//! Per group of g images with K = c_in·k_h·k_w and P = g·h_out·w_out columns:
//! - forward: Y [c_out, P] = W [c_out, K] · col [K, P];
//! - backward-input: dcol [K, P] = Wᵀ · dY [c_out, P], then col2im per image;
//! - backward-weight: dW [c_out, K] += dY [c_out, P] · colᵀ [P, K], one partial per thread,
//!   added in a fixed order.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::backend::cpu::conv::{bias_add_f32, im2col_row, valid_range};
use crate::backend::cpu::conv_indirect;
use crate::backend::cpu::gemm::{self, MR, NR};
use crate::backend::Conv2dParams;

/// Aim for at least this many GEMM columns (images × output pixels) per group.
const GROUP_COLS: usize = 256;

thread_local! {
    /// Per-thread scratch buffers, grown on demand and reused across calls.
    static SCRATCH: RefCell<[Vec<f32>; 3]> = const { RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// Runs `f` with three per-thread scratch slices of the given lengths (contents unspecified).
/// `f` must not re-enter rayon (another task on this thread would find the scratch borrowed).
pub(crate) fn with_scratch<R>(lens: [usize; 3], f: impl FnOnce([&mut [f32]; 3]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let [a, b, c] = &mut *s;
        for (v, &l) in [&mut *a, &mut *b, &mut *c].into_iter().zip(&lens) {
            if v.len() < l {
                v.resize(l, 0.0);
            }
        }
        f([&mut a[..lens[0]], &mut b[..lens[1]], &mut c[..lens[2]]])
    })
}

/// Images per group for this geometry and batch.
pub(crate) fn group_size(p: &Conv2dParams) -> usize {
    let n = p.n as usize;
    let per_thread = n.div_ceil(rayon::current_num_threads()).max(1);
    GROUP_COLS
        .div_ceil(p.col_cols().max(1))
        .clamp(1, per_thread)
}

/// Use a gather table instead of row copies when output rows are shorter than this.
const TABLE_BELOW_W_OUT: u32 = 16;

/// How one im2col row of one image is read: row copies for wide stride-1 maps (the twin's
/// [`im2col_row`]), or, for small or strided maps where per-row overheads dominate, a table
/// giving for each kernel tap and output pixel the input offset in the plane (`u32::MAX` in
/// the padding).
struct Im2col<'a> {
    p: &'a Conv2dParams,
    table: Option<Vec<u32>>,
}

impl<'a> Im2col<'a> {
    fn new(p: &'a Conv2dParams) -> Self {
        if p.stride == 1 && p.w_out >= TABLE_BELOW_W_OUT {
            return Im2col { p, table: None };
        }
        let (h_in, w_in, s, pad) = (
            p.h_in as isize,
            p.w_in as isize,
            p.stride as isize,
            p.pad as isize,
        );
        let mut t = Vec::with_capacity((p.k_h * p.k_w) as usize * p.col_cols());
        for kh in 0..p.k_h as isize {
            for kw in 0..p.k_w as isize {
                for oh in 0..p.h_out as isize {
                    for ow in 0..p.w_out as isize {
                        let (ih, iw) = (oh * s + kh - pad, ow * s + kw - pad);
                        let inside = ih >= 0 && ih < h_in && iw >= 0 && iw < w_in;
                        t.push(if inside {
                            (ih * w_in + iw) as u32
                        } else {
                            u32::MAX
                        });
                    }
                }
            }
        }
        Im2col { p, table: Some(t) }
    }

    /// The input plane of row `r` in image `x`, and the row's table slice (if any).
    fn plane_and_taps<'x>(&self, x: &'x [f32], r: usize) -> (&'x [f32], &[u32]) {
        let taps = (self.p.k_h * self.p.k_w) as usize;
        let (plane, hw) = ((self.p.h_in * self.p.w_in) as usize, self.p.col_cols());
        let ci = r / taps;
        let t = self
            .table
            .as_deref()
            .map_or(&[][..], |t| &t[(r % taps) * hw..(r % taps + 1) * hw]);
        (&x[ci * plane..(ci + 1) * plane], t)
    }

    /// Row `r` of the im2col matrix of one image `x` into `dst` (h_out·w_out).
    fn row(&self, x: &[f32], r: usize, dst: &mut [f32]) {
        if self.table.is_none() {
            return im2col_row(x, self.p, r, dst);
        }
        let (plane, taps) = self.plane_and_taps(x, r);
        for (d, &i) in dst.iter_mut().zip(taps) {
            *d = plane.get(i as usize).copied().unwrap_or(0.0);
        }
    }

    /// Row `r` of the im2col matrix of a group of images `x` (length g·h_out·w_out).
    fn group_row(&self, x: &[f32], g: usize, r: usize, row: &mut [f32]) {
        let (hw, img) = (
            self.p.col_cols(),
            (self.p.c_in * self.p.h_in * self.p.w_in) as usize,
        );
        for j in 0..g {
            self.row(
                &x[j * img..(j + 1) * img],
                r,
                &mut row[j * hw..(j + 1) * hw],
            );
        }
    }

    /// Adds rows `r0..r0 + rows.len() / ldc` of a column matrix (row stride `ldc`, this image's
    /// columns first) into image `x` (the col2im of those rows, accumulated).
    fn add_rows(&self, rows: &[f32], ldc: usize, r0: usize, x: &mut [f32]) {
        let hw = self.p.col_cols();
        let n_rows = rows.len().div_ceil(ldc);
        if self.table.is_none() {
            return add_rows_copying(rows, ldc, r0, n_rows, self.p, x);
        }
        let plane_len = (self.p.h_in * self.p.w_in) as usize;
        let taps = (self.p.k_h * self.p.k_w) as usize;
        for i in 0..n_rows {
            let r = r0 + i;
            let ci = r / taps;
            let t = &self.table.as_deref().unwrap_or(&[])[(r % taps) * hw..(r % taps + 1) * hw];
            let plane = &mut x[ci * plane_len..(ci + 1) * plane_len];
            for (&v, &idx) in rows[i * ldc..i * ldc + hw].iter().zip(t) {
                if let Some(d) = plane.get_mut(idx as usize) {
                    *d += v;
                }
            }
        }
    }
}

/// [`Im2col::add_rows`] for wide stride-1 maps: row-segment additions.
fn add_rows_copying(
    rows: &[f32],
    ldc: usize,
    r0: usize,
    n_rows: usize,
    p: &Conv2dParams,
    x: &mut [f32],
) {
    let (h_in, w_in) = (p.h_in as usize, p.w_in as usize);
    let (k_h, k_w, pad) = (p.k_h as usize, p.k_w as usize, p.pad as usize);
    let (h_out, w_out) = (p.h_out as usize, p.w_out as usize);
    for i in 0..n_rows {
        let r = r0 + i;
        let (ci, kh, kw) = (r / (k_h * k_w), (r / k_w) % k_h, r % k_w);
        let (oh0, oh1) = valid_range(kh, p, h_in, h_out);
        let (ow0, ow1) = valid_range(kw, p, w_in, w_out);
        let plane = &mut x[ci * h_in * w_in..(ci + 1) * h_in * w_in];
        let src = &rows[i * ldc..];
        for oh in oh0..oh1 {
            let srow = &src[oh * w_out + ow0..oh * w_out + ow1];
            let iw0 = (oh + kh - pad) * w_in + ow0 + kw - pad;
            for (d, &v) in plane[iw0..iw0 + srow.len()].iter_mut().zip(srow) {
                *d += v;
            }
        }
    }
}

/// Row `ch` of the matrix [c, g·hw] formed by `g` images [g, c, hw] side by side.
pub(crate) fn group_channel_row(
    images: &[f32],
    g: usize,
    c: usize,
    hw: usize,
    ch: usize,
    row: &mut [f32],
) {
    for j in 0..g {
        row[j * hw..(j + 1) * hw]
            .copy_from_slice(&images[(j * c + ch) * hw..(j * c + ch + 1) * hw]);
    }
}

/// Scatters a matrix [c, g·hw] back into `g` images [g, c, hw].
fn scatter(matrix: &[f32], images: &mut [f32], g: usize, c: usize, hw: usize) {
    for j in 0..g {
        for ch in 0..c {
            images[(j * c + ch) * hw..(j * c + ch + 1) * hw]
                .copy_from_slice(&matrix[(ch * g + j) * hw..(ch * g + j + 1) * hw]);
        }
    }
}

/// Forward convolution of a batch: y [n, c_out, h_out, w_out] = w ⋆ x (+ bias).
pub fn conv2d_forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, p: &Conv2dParams, y: &mut [f32]) {
    forward_with(x, w, bias, p, y, true)
}

/// [`conv2d_forward`], optionally without the indirect path (to test the packed one).
fn forward_with(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    p: &Conv2dParams,
    y: &mut [f32],
    indirect: bool,
) {
    let (c_out, kk, hw) = (p.c_out as usize, p.col_rows(), p.col_cols());
    let img_in = (p.c_in * p.h_in * p.w_in) as usize;
    if y.is_empty() {
        return;
    }
    if kk == 0 || img_in == 0 {
        y.fill(0.0);
    } else if indirect && conv_indirect::forward_applies(p) {
        conv_indirect::forward(x, w, p, y);
    } else {
        forward_gemm(x, w, p, y);
    }
    if let Some(b) = bias {
        bias_add_f32(y, b, p.n as usize, c_out, hw);
    }
}

/// The GEMM part of [`conv2d_forward`] (K > 0).
fn forward_gemm(x: &[f32], w: &[f32], p: &Conv2dParams, y: &mut [f32]) {
    let (c_out, kk, hw) = (p.c_out as usize, p.col_rows(), p.col_cols());
    let img_in = (p.c_in * p.h_in * p.w_in) as usize;
    let mut wp = vec![0.0; gemm::packed_a_len(c_out, kk)];
    gemm::pack_a_rows(c_out, kk, w, kk, &mut wp);
    let plan = Im2col::new(p);
    let g = group_size(p);
    y.par_chunks_mut(g * c_out * hw)
        .zip(x.par_chunks(g * img_in))
        .for_each(|(y, x)| {
            let g = y.len() / (c_out * hw);
            let cols = g * hw;
            let out_len = if g == 1 { 0 } else { c_out * cols };
            let lens = [
                gemm::packed_b_len(kk, cols),
                cols.div_ceil(NR) * NR,
                out_len,
            ];
            with_scratch(lens, |[bp, row, out]| {
                gemm::pack_b_by_rows(kk, cols, row, bp, |r, row| plan.group_row(x, g, r, row));
                if g == 1 {
                    gemm::gemm_packed(c_out, cols, kk, &wp, bp, y, cols, false);
                } else {
                    gemm::gemm_packed(c_out, cols, kk, &wp, bp, out, cols, false);
                    scatter(out, y, g, c_out, hw);
                }
            });
        });
}

/// Gradient of the input: dx = col2im(wᵀ · dy), per group of images.
pub fn conv2d_backward_input(dy: &[f32], w: &[f32], p: &Conv2dParams, dx: &mut [f32]) {
    backward_input_with(dy, w, p, dx, true)
}

/// [`conv2d_backward_input`], optionally without the indirect path.
fn backward_input_with(dy: &[f32], w: &[f32], p: &Conv2dParams, dx: &mut [f32], indirect: bool) {
    let (c_out, kk, hw) = (p.c_out as usize, p.col_rows(), p.col_cols());
    let img_in = (p.c_in * p.h_in * p.w_in) as usize;
    if dx.is_empty() {
        return;
    }
    if c_out == 0 || hw == 0 {
        dx.fill(0.0);
        return;
    }
    if indirect && conv_indirect::backward_input_applies(p) {
        return conv_indirect::backward_input(dy, w, p, dx);
    }
    // A = Wᵀ [K, c_out]: A(i, p) = w[p·K + i].
    let mut wp = vec![0.0; gemm::packed_a_len(kk, c_out)];
    gemm::pack_a_cols(kk, c_out, w, kk, &mut wp);
    let plan = Im2col::new(p);
    let g = group_size(p);
    dx.par_chunks_mut(g * img_in)
        .zip(dy.par_chunks(g * c_out * hw))
        .for_each(|(dx, dy)| {
            let g = dx.len() / img_in;
            let cols = g * hw;
            let chunk = dcol_chunk_rows(p, cols);
            let lens = [
                gemm::packed_b_len(c_out, cols),
                cols.div_ceil(NR) * NR,
                chunk.min(kk) * cols,
            ];
            with_scratch(lens, |[bp, row, dcol]| {
                gemm::pack_b_by_rows(c_out, cols, row, bp, |co, row| {
                    group_channel_row(dy, g, c_out, hw, co, row)
                });
                dx.fill(0.0);
                for r0 in (0..kk).step_by(chunk) {
                    let rows = chunk.min(kk - r0);
                    let dcol = &mut dcol[..rows * cols];
                    let a = &wp[(r0 / MR) * c_out * MR..];
                    gemm::gemm_packed(rows, cols, c_out, a, bp, dcol, cols, false);
                    for j in 0..g {
                        let x = &mut dx[j * img_in..(j + 1) * img_in];
                        plan.add_rows(&dcol[j * hw..], cols, r0, x);
                    }
                }
            });
        });
}

/// Rows of dcol computed and folded back into the images at a time in the backward-input
/// pass: whole input channels, a multiple of MR (so the packed Wᵀ can be entered at a panel
/// boundary), about `DCOL_CHUNK` floats in all so the chunk stays in L2.
fn dcol_chunk_rows(p: &Conv2dParams, cols: usize) -> usize {
    const DCOL_CHUNK: usize = 1 << 16;
    let taps = (p.k_h * p.k_w) as usize;
    let (mut a, mut b) = (MR, taps);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    let step = taps * (MR / a);
    (DCOL_CHUNK / cols.max(1) / step).max(1) * step
}

/// Gradient of the weight: dw [c_out, c_in·k_h·k_w] = Σ over images of dy · colᵀ. The batch
/// is split into one contiguous part per thread, each accumulates its own partial sum, and
/// the partials are added in order (deterministic for a given thread count).
pub fn conv2d_backward_weight(x: &[f32], dy: &[f32], p: &Conv2dParams, dw: &mut [f32]) {
    backward_weight_with(x, dy, p, dw, true)
}

/// [`conv2d_backward_weight`], optionally without the indirect path.
fn backward_weight_with(x: &[f32], dy: &[f32], p: &Conv2dParams, dw: &mut [f32], indirect: bool) {
    let (n, c_out, kk, hw) = (p.n as usize, p.c_out as usize, p.col_rows(), p.col_cols());
    let img_in = (p.c_in * p.h_in * p.w_in) as usize;
    dw.fill(0.0);
    if n == 0 || hw == 0 || dw.is_empty() {
        return;
    }
    if indirect && conv_indirect::backward_weight_applies(p) {
        return conv_indirect::backward_weight(x, dy, p, dw);
    }
    let plan = Im2col::new(p);
    let g = group_size(p);
    let parts = rayon::current_num_threads().clamp(1, n.div_ceil(g));
    let per_part = n.div_ceil(parts).div_ceil(g) * g;
    let partials: Vec<Vec<f32>> = (0..n.div_ceil(per_part))
        .into_par_iter()
        .map(|part| {
            let mut acc = vec![0.0f32; c_out * kk];
            let (i0, i1) = (part * per_part, ((part + 1) * per_part).min(n));
            for gi in (i0..i1).step_by(g) {
                let gn = g.min(i1 - gi);
                let cols = gn * hw;
                let xs = &x[gi * img_in..(gi + gn) * img_in];
                let dys = &dy[gi * c_out * hw..(gi + gn) * c_out * hw];
                let lens = [
                    gemm::packed_a_len(c_out, cols),
                    gemm::packed_b_len(cols, kk),
                    (NR * cols).max(cols.div_ceil(NR) * NR),
                ];
                with_scratch(lens, |[ap, bp, buf]| {
                    // A = dY [c_out, P]; B = colᵀ [P, K], packed from NR im2col rows at a time.
                    gemm::pack_a_by_rows(c_out, cols, buf, ap, |co, row| {
                        group_channel_row(dys, gn, c_out, hw, co, row)
                    });
                    gemm::pack_b_by_cols(cols, kk, buf, bp, |r0, rows| {
                        for (i, row) in rows.chunks_exact_mut(cols).enumerate() {
                            plan.group_row(xs, gn, r0 + i, row);
                        }
                    });
                    gemm::gemm_packed(c_out, kk, cols, ap, bp, &mut acc, kk, gi > i0);
                });
            }
            acc
        })
        .collect();
    for part in &partials {
        for (d, &v) in dw.iter_mut().zip(part) {
            *d += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::conv::tests::{close, conv_naive, dot, rand, CASES};
    use crate::backend::cpu::conv::{col2im_f32, im2col_f32};
    use crate::rng::Rng;

    #[test]
    fn cases_cover_every_path() {
        let ps: Vec<Conv2dParams> = CASES
            .iter()
            .map(|&(n, ci, h, w, co, k, s, pad)| {
                Conv2dParams::new(n, ci, h, w, co, k, s, pad).unwrap()
            })
            .collect();
        if crate::backend::cpu::simd::isa() >= crate::backend::cpu::simd::Isa::Avx2 {
            assert!(ps.iter().any(conv_indirect::forward_applies));
            assert!(ps.iter().any(conv_indirect::backward_input_applies));
            assert!(ps
                .iter()
                .any(|p| conv_indirect::backward_weight_applies(p) && p.stride == 2));
        }
        assert!(ps
            .iter()
            .any(|p| !conv_indirect::forward_applies(p) && Im2col::new(p).table.is_none()));
        assert!(ps.iter().any(|p| Im2col::new(p).table.is_some()));
    }

    #[test]
    fn forward_matches_naive() {
        let mut r = Rng::new(1);
        for &(n, ci, h, w, co, k, s, pad) in CASES {
            let p = Conv2dParams::new(n, ci, h, w, co, k, s, pad).unwrap();
            let x = rand(&mut r, n * ci * h * w);
            let wt = rand(&mut r, co * ci * k * k);
            let bias = rand(&mut r, co);
            let mut want = conv_naive(&x, &wt, &p);
            bias_add_f32(&mut want, &bias, n, co, p.col_cols());
            for indirect in [true, false] {
                let mut y = vec![f32::NAN; p.y_shape().iter().product()];
                forward_with(&x, &wt, Some(&bias), &p, &mut y, indirect);
                close(&y, &want, 1e-4, "conv2d_forward");
            }
        }
    }

    #[test]
    fn backward_passes_are_adjoint_to_forward() {
        // <conv(x, w), g> = <x, bwd_input(g, w)> = <w, bwd_weight(x, g)>.
        let mut r = Rng::new(2);
        for &(n, ci, h, w, co, k, s, pad) in CASES {
            let p = Conv2dParams::new(n, ci, h, w, co, k, s, pad).unwrap();
            let x = rand(&mut r, n * ci * h * w);
            let wt = rand(&mut r, co * ci * k * k);
            let y = conv_naive(&x, &wt, &p);
            let g = rand(&mut r, y.len());
            let mut dx = vec![f32::NAN; x.len()];
            conv2d_backward_input(&g, &wt, &p, &mut dx);
            let mut dw = vec![f32::NAN; wt.len()];
            conv2d_backward_weight(&x, &g, &p, &mut dw);
            // The packed (non-indirect) paths agree.
            let mut dx2 = vec![f32::NAN; x.len()];
            backward_input_with(&g, &wt, &p, &mut dx2, false);
            close(&dx2, &dx, 1e-4, "packed backward-input");
            let mut dw2 = vec![f32::NAN; wt.len()];
            backward_weight_with(&x, &g, &p, &mut dw2, false);
            close(&dw2, &dw, 1e-4, "packed backward-weight");
            let l = dot(&y, &g);
            let tol = 1e-3 * (1.0 + l.abs());
            assert!(
                (dot(&x, &dx) - l).abs() < tol,
                "dx: {} vs {l}",
                dot(&x, &dx)
            );
            assert!(
                (dot(&wt, &dw) - l).abs() < tol,
                "dw: {} vs {l}",
                dot(&wt, &dw)
            );
            // And element-wise against the twins (per-image im2col/col2im + naive products).
            let (kk, hw) = (p.col_rows(), p.col_cols());
            let mut dw_ref = vec![0.0f64; wt.len()];
            let mut dx_ref = vec![0.0f32; x.len()];
            for b in 0..n {
                let mut col = vec![0.0; kk * hw];
                im2col_f32(&x[b * ci * h * w..(b + 1) * ci * h * w], &p, &mut col);
                let gb = &g[b * co * hw..(b + 1) * co * hw];
                let mut dcol = vec![0.0f32; kk * hw];
                for o in 0..co {
                    for q in 0..kk {
                        for j in 0..hw {
                            dw_ref[o * kk + q] += gb[o * hw + j] as f64 * col[q * hw + j] as f64;
                            dcol[q * hw + j] += wt[o * kk + q] * gb[o * hw + j];
                        }
                    }
                }
                col2im_f32(&dcol, &p, &mut dx_ref[b * ci * h * w..(b + 1) * ci * h * w]);
            }
            let dw_ref: Vec<f32> = dw_ref.iter().map(|&v| v as f32).collect();
            close(&dw, &dw_ref, 1e-4, "conv2d_backward_weight");
            close(&dx, &dx_ref, 1e-4, "conv2d_backward_input");
        }
    }
}

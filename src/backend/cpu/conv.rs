//! 2-d convolution as im2col + GEMM. The twins (`im2col_f32`, `col2im_f32`, `bias_add_f32`,
//! `channel_sum_f32`) work on one image or one tensor; the `conv2d_*` fast paths the backend
//! runs process groups of images (so that small feature maps still give the GEMM wide
//! matrices) in parallel, with per-thread scratch buffers.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::backend::cpu::matmul::sgemm_f32;
use crate::backend::Conv2dParams;

/// The output positions `o` in [0, out) whose input coordinate `o·stride + k − pad` lies in
/// [0, size), as a half-open range.
fn valid_range(k: usize, p: &Conv2dParams, size: usize, out: usize) -> (usize, usize) {
    let (s, pad) = (p.stride as usize, p.pad as usize);
    // o·s + k ≥ pad  ⇔  o ≥ ceil((pad − k) / s)
    let lo = if pad > k { (pad - k).div_ceil(s) } else { 0 };
    // o·s + k − pad ≤ size − 1  ⇔  o ≤ (size − 1 + pad − k) / s
    let hi = if size + pad > k {
        ((size - 1 + pad - k) / s + 1).min(out)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// im2col of one image into a column matrix whose rows have stride `ldc` (≥ h_out·w_out).
fn im2col_strided(x: &[f32], p: &Conv2dParams, col: &mut [f32], ldc: usize) {
    let (c_in, h_in, w_in) = (p.c_in as usize, p.h_in as usize, p.w_in as usize);
    let (k_h, k_w, s, pad) = (
        p.k_h as usize,
        p.k_w as usize,
        p.stride as usize,
        p.pad as usize,
    );
    let (h_out, w_out) = (p.h_out as usize, p.w_out as usize);
    for ci in 0..c_in {
        let plane = &x[ci * h_in * w_in..(ci + 1) * h_in * w_in];
        for kh in 0..k_h {
            let (oh0, oh1) = valid_range(kh, p, h_in, h_out);
            for kw in 0..k_w {
                let (ow0, ow1) = valid_range(kw, p, w_in, w_out);
                let row = (ci * k_h + kh) * k_w + kw;
                let dst = &mut col[row * ldc..row * ldc + h_out * w_out];
                dst[..oh0 * w_out].fill(0.0);
                dst[oh1 * w_out..].fill(0.0);
                for oh in oh0..oh1 {
                    let d = &mut dst[oh * w_out..(oh + 1) * w_out];
                    d[..ow0].fill(0.0);
                    d[ow1..].fill(0.0);
                    let src = &plane[(oh * s + kh - pad) * w_in..];
                    let iw0 = ow0 * s + kw - pad;
                    if s == 1 {
                        d[ow0..ow1].copy_from_slice(&src[iw0..iw0 + (ow1 - ow0)]);
                    } else {
                        for (j, v) in d[ow0..ow1].iter_mut().enumerate() {
                            *v = src[iw0 + j * s];
                        }
                    }
                }
            }
        }
    }
}

/// col2im of a column matrix whose rows have stride `ldc` into one image (overwritten).
fn col2im_strided(col: &[f32], ldc: usize, p: &Conv2dParams, x: &mut [f32]) {
    let (c_in, h_in, w_in) = (p.c_in as usize, p.h_in as usize, p.w_in as usize);
    let (k_h, k_w, s, pad) = (
        p.k_h as usize,
        p.k_w as usize,
        p.stride as usize,
        p.pad as usize,
    );
    let (h_out, w_out) = (p.h_out as usize, p.w_out as usize);
    x[..c_in * h_in * w_in].fill(0.0);
    for ci in 0..c_in {
        let plane = &mut x[ci * h_in * w_in..(ci + 1) * h_in * w_in];
        for kh in 0..k_h {
            let (oh0, oh1) = valid_range(kh, p, h_in, h_out);
            for kw in 0..k_w {
                let (ow0, ow1) = valid_range(kw, p, w_in, w_out);
                let row = (ci * k_h + kh) * k_w + kw;
                let src = &col[row * ldc..row * ldc + h_out * w_out];
                for oh in oh0..oh1 {
                    let srow = &src[oh * w_out + ow0..oh * w_out + ow1];
                    let dst = &mut plane[(oh * s + kh - pad) * w_in..];
                    let iw0 = ow0 * s + kw - pad;
                    if s == 1 {
                        for (d, &v) in dst[iw0..iw0 + srow.len()].iter_mut().zip(srow) {
                            *d += v;
                        }
                    } else {
                        for (j, &v) in srow.iter().enumerate() {
                            dst[iw0 + j * s] += v;
                        }
                    }
                }
            }
        }
    }
}

/// im2col of ONE image x [c_in, h_in, w_in] into col [c_in·k_h·k_w, h_out·w_out]; row
/// `(ci·k_h + kh)·k_w + kw`, column `oh·w_out + ow`; zeros where the window hits padding.
pub fn im2col_f32(x: &[f32], p: &Conv2dParams, col: &mut [f32]) {
    assert!(
        x.len() == (p.c_in * p.h_in * p.w_in) as usize && col.len() == p.col_rows() * p.col_cols(),
        "im2col_f32: lengths do not match params"
    );
    im2col_strided(x, p, col, p.col_cols());
}

/// col2im: overwrites ONE image x [c_in, h_in, w_in] with the sum of every column entry that
/// reads it (the adjoint of [`im2col_f32`]).
pub fn col2im_f32(col: &[f32], p: &Conv2dParams, x: &mut [f32]) {
    assert!(
        x.len() == (p.c_in * p.h_in * p.w_in) as usize && col.len() == p.col_rows() * p.col_cols(),
        "col2im_f32: lengths do not match params"
    );
    col2im_strided(col, p.col_cols(), p, x);
}

/// y[n, c, s] += bias[c].
pub fn bias_add_f32(y: &mut [f32], bias: &[f32], n: usize, c: usize, s: usize) {
    assert!(
        y.len() == n * c * s && bias.len() == c,
        "bias_add_f32: lengths"
    );
    if y.is_empty() {
        return;
    }
    y.par_chunks_mut(c * s).for_each(|img| {
        for (plane, &b) in img.chunks_mut(s).zip(bias) {
            plane.iter_mut().for_each(|v| *v += b);
        }
    });
}

/// out[c] = Σ over n and s of x[n, c, s], accumulated in f64 in a fixed order.
pub fn channel_sum_f32(x: &[f32], n: usize, c: usize, s: usize, out: &mut [f32]) {
    assert!(
        x.len() == n * c * s && out.len() == c,
        "channel_sum_f32: lengths"
    );
    out.par_iter_mut().enumerate().for_each(|(ch, o)| {
        let mut acc = 0.0f64;
        for img in 0..n {
            let b = (img * c + ch) * s;
            acc += x[b..b + s].iter().map(|&v| v as f64).sum::<f64>();
        }
        *o = acc as f32;
    });
}

// ---- fast paths ---------------------------------------------------------------------------

/// Aim for at least this many GEMM columns (images × output pixels) per group.
const GROUP_COLS: usize = 256;

thread_local! {
    /// Per-thread scratch buffers (column matrix, gathered output/gradient), reused across calls.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` with two per-thread scratch slices of at least `a` and `b` elements (contents
/// unspecified). `f` must not re-enter rayon.
fn with_scratch<R>(a: usize, b: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let (sa, sb) = &mut *s;
        if sa.len() < a {
            sa.resize(a, 0.0);
        }
        if sb.len() < b {
            sb.resize(b, 0.0);
        }
        f(&mut sa[..a], &mut sb[..b])
    })
}

/// Images per group for this geometry and batch.
fn group_size(p: &Conv2dParams) -> usize {
    let n = p.n as usize;
    let per_thread = n.div_ceil(rayon::current_num_threads()).max(1);
    GROUP_COLS
        .div_ceil(p.col_cols().max(1))
        .clamp(1, per_thread)
}

/// True when the column matrix of an image is the image itself (1×1, stride 1, no padding).
fn is_pointwise(p: &Conv2dParams) -> bool {
    p.k_h == 1 && p.k_w == 1 && p.stride == 1 && p.pad == 0
}

/// Fills `col` [K, g·hw] with the column matrices of the `g` images of `x`.
fn group_im2col(x: &[f32], g: usize, p: &Conv2dParams, col: &mut [f32]) {
    let (hw, img) = (p.col_cols(), (p.c_in * p.h_in * p.w_in) as usize);
    for j in 0..g {
        im2col_strided(&x[j * img..(j + 1) * img], p, &mut col[j * hw..], g * hw);
    }
}

/// Gathers `g` images [g, c, hw] into a matrix [c, g·hw].
fn gather(images: &[f32], matrix: &mut [f32], g: usize, c: usize, hw: usize) {
    for j in 0..g {
        for ch in 0..c {
            matrix[(ch * g + j) * hw..(ch * g + j + 1) * hw]
                .copy_from_slice(&images[(j * c + ch) * hw..(j * c + ch + 1) * hw]);
        }
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
    let (c_out, kk, hw) = (p.c_out as usize, p.col_rows(), p.col_cols());
    let img_in = (p.c_in * p.h_in * p.w_in) as usize;
    if y.is_empty() {
        return;
    }
    if kk == 0 {
        y.fill(0.0);
    } else {
        let g = group_size(p);
        y.par_chunks_mut(g * c_out * hw)
            .zip(x.par_chunks(g * img_in))
            .for_each(|(y, x)| {
                let g = y.len() / (c_out * hw);
                let cols = g * hw;
                let direct = g == 1;
                let col_len = if is_pointwise(p) && direct {
                    0
                } else {
                    kk * cols
                };
                let out_len = if direct { 0 } else { c_out * cols };
                with_scratch(col_len, out_len, |col, out| {
                    let col: &[f32] = if col_len == 0 {
                        x
                    } else {
                        group_im2col(x, g, p, col);
                        col
                    };
                    let dst: &mut [f32] = if direct { &mut *y } else { &mut *out };
                    sgemm_f32(
                        false, false, c_out, cols, kk, 1.0, w, kk, col, cols, 0.0, dst, cols,
                    );
                    if !direct {
                        scatter(out, y, g, c_out, hw);
                    }
                });
            });
    }
    if let Some(b) = bias {
        bias_add_f32(y, b, p.n as usize, c_out, hw);
    }
}

/// Gradient of the input: dx = col2im(wᵀ · dy), per image.
pub fn conv2d_backward_input(dy: &[f32], w: &[f32], p: &Conv2dParams, dx: &mut [f32]) {
    let (c_out, kk, hw) = (p.c_out as usize, p.col_rows(), p.col_cols());
    let img_in = (p.c_in * p.h_in * p.w_in) as usize;
    if dx.is_empty() {
        return;
    }
    if c_out == 0 || hw == 0 {
        dx.fill(0.0);
        return;
    }
    let g = group_size(p);
    dx.par_chunks_mut(g * img_in)
        .zip(dy.par_chunks(g * c_out * hw))
        .for_each(|(dx, dy)| {
            let g = dx.len() / img_in;
            let cols = g * hw;
            let direct = g == 1;
            let gather_len = if direct { 0 } else { c_out * cols };
            let col_len = if is_pointwise(p) && direct {
                0
            } else {
                kk * cols
            };
            with_scratch(col_len, gather_len, |col, gathered| {
                let dym: &[f32] = if direct {
                    dy
                } else {
                    gather(dy, gathered, g, c_out, hw);
                    gathered
                };
                if col_len == 0 {
                    sgemm_f32(
                        true, false, kk, cols, c_out, 1.0, w, kk, dym, cols, 0.0, dx, cols,
                    );
                } else {
                    sgemm_f32(
                        true, false, kk, cols, c_out, 1.0, w, kk, dym, cols, 0.0, col, cols,
                    );
                    for j in 0..g {
                        col2im_strided(
                            &col[j * hw..],
                            cols,
                            p,
                            &mut dx[j * img_in..(j + 1) * img_in],
                        );
                    }
                }
            });
        });
}

/// Gradient of the weight: dw [c_out, c_in·k_h·k_w] = Σ over images of dy · colᵀ. The batch
/// is split into one contiguous part per thread, each accumulates its own partial sum, and
/// the partials are added in order (deterministic for a given thread count).
pub fn conv2d_backward_weight(x: &[f32], dy: &[f32], p: &Conv2dParams, dw: &mut [f32]) {
    let (n, c_out, kk, hw) = (p.n as usize, p.c_out as usize, p.col_rows(), p.col_cols());
    let img_in = (p.c_in * p.h_in * p.w_in) as usize;
    dw.fill(0.0);
    if n == 0 || hw == 0 || dw.is_empty() {
        return;
    }
    let g = group_size(p);
    let parts = rayon::current_num_threads().clamp(1, n.div_ceil(g));
    let per_part = n.div_ceil(parts).div_ceil(g) * g;
    let partials: Vec<Vec<f32>> = (0..n.div_ceil(per_part))
        .into_par_iter()
        .map(|part| {
            let mut acc = vec![0.0f32; c_out * kk];
            let (i0, i1) = (part * per_part, ((part + 1) * per_part).min(n));
            let mut first = true;
            for gi in (i0..i1).step_by(g) {
                let gn = g.min(i1 - gi);
                let cols = gn * hw;
                let xs = &x[gi * img_in..(gi + gn) * img_in];
                let dys = &dy[gi * c_out * hw..(gi + gn) * c_out * hw];
                let direct = gn == 1;
                let col_len = if is_pointwise(p) && direct {
                    0
                } else {
                    kk * cols
                };
                let gather_len = if direct { 0 } else { c_out * cols };
                with_scratch(col_len, gather_len, |col, gathered| {
                    let colm: &[f32] = if col_len == 0 {
                        xs
                    } else {
                        group_im2col(xs, gn, p, col);
                        col
                    };
                    let dym: &[f32] = if direct {
                        dys
                    } else {
                        gather(dys, gathered, gn, c_out, hw);
                        gathered
                    };
                    let beta = if first { 0.0 } else { 1.0 };
                    sgemm_f32(
                        false, true, c_out, kk, cols, 1.0, dym, cols, colm, cols, beta, &mut acc,
                        kk,
                    );
                });
                first = false;
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
    use crate::rng::Rng;

    fn rand(r: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| r.normal()).collect()
    }

    /// Direct 7-loop convolution (f64 accumulation).
    fn conv_naive(x: &[f32], w: &[f32], p: &Conv2dParams) -> Vec<f32> {
        let [n, ci, hi, wi] = p.x_shape();
        let [co, _, kh, kw] = p.w_shape();
        let (ho, wo, s, pad) = (
            p.h_out as usize,
            p.w_out as usize,
            p.stride as isize,
            p.pad as isize,
        );
        let mut y = vec![0.0; n * co * ho * wo];
        for b in 0..n {
            for o in 0..co {
                for oh in 0..ho {
                    for ow in 0..wo {
                        let mut acc = 0.0f64;
                        for c in 0..ci {
                            for a in 0..kh {
                                for bb in 0..kw {
                                    let h = oh as isize * s - pad + a as isize;
                                    let ww = ow as isize * s - pad + bb as isize;
                                    if h >= 0 && (h as usize) < hi && ww >= 0 && (ww as usize) < wi
                                    {
                                        acc += x
                                            [((b * ci + c) * hi + h as usize) * wi + ww as usize]
                                            as f64
                                            * w[((o * ci + c) * kh + a) * kw + bb] as f64;
                                    }
                                }
                            }
                        }
                        y[((b * co + o) * ho + oh) * wo + ow] = acc as f32;
                    }
                }
            }
        }
        y
    }

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
    }

    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    /// (n, c_in, h, w, c_out, k, stride, pad).
    type Case = (usize, usize, usize, usize, usize, usize, usize, usize);

    /// Awkward geometries: odd channels, non-square, stride 2, pad 0/1/3, k 1/3/7.
    const CASES: &[Case] = &[
        (3, 3, 7, 5, 5, 3, 1, 1),
        (2, 5, 9, 6, 4, 3, 2, 1),
        (4, 4, 6, 7, 3, 1, 1, 0),
        (2, 3, 6, 5, 2, 1, 2, 0),
        (2, 2, 11, 9, 3, 7, 2, 3),
        (5, 3, 4, 4, 6, 3, 1, 0),
        (1, 1, 3, 3, 1, 3, 1, 1),
        (17, 3, 2, 2, 5, 3, 1, 1),
    ];

    #[test]
    fn im2col_col2im_are_adjoint() {
        let mut r = Rng::new(4);
        for &(_, ci, h, w, co, k, s, pad) in CASES {
            let p = Conv2dParams::new(1, ci, h, w, co, k, s, pad).unwrap();
            let x = rand(&mut r, ci * h * w);
            let mut col = vec![f32::NAN; p.col_rows() * p.col_cols()];
            im2col_f32(&x, &p, &mut col);
            let g = rand(&mut r, col.len());
            let mut dx = vec![f32::NAN; x.len()];
            col2im_f32(&g, &p, &mut dx);
            let (l, rr) = (dot(&col, &g), dot(&x, &dx));
            assert!((l - rr).abs() < 1e-3 * (1.0 + l.abs()), "{l} vs {rr}");
        }
    }

    #[test]
    fn forward_matches_naive() {
        let mut r = Rng::new(1);
        for &(n, ci, h, w, co, k, s, pad) in CASES {
            let p = Conv2dParams::new(n, ci, h, w, co, k, s, pad).unwrap();
            let x = rand(&mut r, n * ci * h * w);
            let wt = rand(&mut r, co * ci * k * k);
            let bias = rand(&mut r, co);
            let mut y = vec![f32::NAN; p.y_shape().iter().product()];
            conv2d_forward(&x, &wt, Some(&bias), &p, &mut y);
            let mut want = conv_naive(&x, &wt, &p);
            bias_add_f32(&mut want, &bias, n, co, p.col_cols());
            close(&y, &want, 1e-4, "conv2d_forward");
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

    #[test]
    fn channel_sum_and_bias_add() {
        let x: Vec<f32> = (0..2 * 3 * 4).map(|i| i as f32).collect();
        let mut out = vec![0.0; 3];
        channel_sum_f32(&x, 2, 3, 4, &mut out);
        assert_eq!(out, [6.0 + 54.0, 22.0 + 70.0, 38.0 + 86.0]);
        let mut y = vec![0.0; 6];
        bias_add_f32(&mut y, &[1.0, 2.0, 3.0], 1, 3, 2);
        assert_eq!(y, [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
    }
}

//! The convolution twins: `im2col_f32` / `col2im_f32` on one image, `bias_add_f32` and
//! `channel_sum_f32` on a batch, and the row-wise im2col / strided col2im they share with the
//! batched fast path in [`super::conv_gemm`].

use rayon::prelude::*;

use crate::backend::Conv2dParams;

/// The output positions `o` in [0, out) whose input coordinate `o·stride + k − pad` lies in
/// [0, size), as a half-open range.
pub(crate) fn valid_range(k: usize, p: &Conv2dParams, size: usize, out: usize) -> (usize, usize) {
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

/// Row `r = (ci·k_h + kh)·k_w + kw` of the im2col matrix of ONE image x [c_in, h_in, w_in],
/// written to `dst` (h_out·w_out elements; zeros where the window hits padding).
pub(crate) fn im2col_row(x: &[f32], p: &Conv2dParams, r: usize, dst: &mut [f32]) {
    let (h_in, w_in) = (p.h_in as usize, p.w_in as usize);
    let (k_h, k_w, s, pad) = (
        p.k_h as usize,
        p.k_w as usize,
        p.stride as usize,
        p.pad as usize,
    );
    let (h_out, w_out) = (p.h_out as usize, p.w_out as usize);
    let (ci, kh, kw) = (r / (k_h * k_w), (r / k_w) % k_h, r % k_w);
    let plane = &x[ci * h_in * w_in..(ci + 1) * h_in * w_in];
    let (oh0, oh1) = valid_range(kh, p, h_in, h_out);
    let (ow0, ow1) = valid_range(kw, p, w_in, w_out);
    let dst = &mut dst[..h_out * w_out];
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

/// col2im of a column matrix whose rows have stride `ldc` into one image (overwritten).
pub(crate) fn col2im_strided(col: &[f32], ldc: usize, p: &Conv2dParams, x: &mut [f32]) {
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
    let hw = p.col_cols();
    for (r, row) in col.chunks_exact_mut(hw.max(1)).enumerate() {
        im2col_row(x, p, r, row);
    }
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

/// `y[n, c, s] += bias[c]`.
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

/// `out[c] = Σ over n and s of x[n, c, s]`, accumulated in f64 in a fixed order.
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rng::Rng;

    pub(crate) fn rand(r: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| r.normal()).collect()
    }

    /// Direct 7-loop convolution (f64 accumulation).
    pub(crate) fn conv_naive(x: &[f32], w: &[f32], p: &Conv2dParams) -> Vec<f32> {
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

    pub(crate) fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
    }

    pub(crate) fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    /// (n, c_in, h, w, c_out, k, stride, pad).
    pub(crate) type Case = (usize, usize, usize, usize, usize, usize, usize, usize);

    /// Awkward geometries: odd channels, non-square, stride 2, pad 0/1/3, k 1/3/7, small and
    /// wide maps.
    pub(crate) const CASES: &[Case] = &[
        (3, 3, 7, 5, 5, 3, 1, 1),
        (2, 5, 9, 6, 4, 3, 2, 1),
        (4, 4, 6, 7, 3, 1, 1, 0),
        (2, 3, 6, 5, 2, 1, 2, 0),
        (2, 2, 11, 9, 3, 7, 2, 3),
        (5, 3, 4, 4, 6, 3, 1, 0),
        (1, 1, 3, 3, 1, 3, 1, 1),
        (17, 3, 2, 2, 5, 3, 1, 1),
        // Wide stride-1 maps (row-copy im2col path); the second has enough input channels
        // for the backward-input pass to work in several chunks.
        (2, 3, 18, 17, 4, 3, 1, 1),
        (2, 40, 18, 17, 3, 3, 1, 1),
        (1, 2, 20, 19, 3, 7, 1, 3),
        (3, 4, 16, 16, 5, 1, 1, 0),
        // Stride 1 with output (and input) width a multiple of 16: the indirect path, with
        // a k-block split (K > 256), an m-block split (c_out > 96) and a partial MR tile.
        (2, 5, 5, 16, 7, 3, 1, 1),
        (2, 3, 6, 34, 4, 3, 1, 0),
        (1, 2, 4, 16, 13, 5, 1, 2),
        (1, 30, 3, 16, 100, 3, 1, 1),
        // Maps of at least 64 outputs (indirect backward-weight): stride 2, and several
        // groups of images per thread with a short last group.
        (3, 3, 17, 20, 5, 3, 2, 1),
        (9, 2, 8, 8, 3, 3, 1, 1),
    ];

    #[test]
    fn im2col_matches_definition() {
        let mut r = Rng::new(6);
        for &(_, ci, h, w, co, k, s, pad) in CASES {
            let p = Conv2dParams::new(1, ci, h, w, co, k, s, pad).unwrap();
            let x = rand(&mut r, ci * h * w);
            let mut col = vec![f32::NAN; p.col_rows() * p.col_cols()];
            im2col_f32(&x, &p, &mut col);
            let (ho, wo) = (p.h_out as usize, p.w_out as usize);
            for c in 0..ci {
                for a in 0..k {
                    for b in 0..k {
                        for oh in 0..ho {
                            for ow in 0..wo {
                                let ih = (oh * s + a) as isize - pad as isize;
                                let iw = (ow * s + b) as isize - pad as isize;
                                let inside =
                                    ih >= 0 && ih < h as isize && iw >= 0 && iw < w as isize;
                                let want = if inside {
                                    x[(c * h + ih as usize) * w + iw as usize]
                                } else {
                                    0.0
                                };
                                assert_eq!(
                                    col[((c * k + a) * k + b) * ho * wo + oh * wo + ow],
                                    want
                                );
                            }
                        }
                    }
                }
            }
        }
    }

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

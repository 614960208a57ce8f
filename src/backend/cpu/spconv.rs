//! The sparse convolution twins (family `spconv`): conv2d with a weight in CSR form
//! ([`crate::backend::SparseWeight`], rows = output channels, columns = (c_in, k_h, k_w) in
//! im2col order). These are the reference semantics the CUDA kernels of `kernels/spconv.cu`
//! follow (same loops, same summation order per output, except that the CUDA weight gradient
//! adds 32 strided partial sums in a fixed tree); the CPU backend runs the fast paths of
//! [`super::spconv_tiled`] and [`super::spconv_direct`]. A linear layer is the 1×1 case on a
//! 1×1 map.

use crate::backend::Conv2dParams;

/// Decodes a column of the im2col order into (c, r, s).
#[inline]
fn decode(col: usize, p: &Conv2dParams) -> (usize, usize, usize) {
    let (kh, kw) = (p.k_h as usize, p.k_w as usize);
    (col / (kh * kw), (col / kw) % kh, col % kw)
}

/// y[n, o, yo, xo] = bias[o] + Σ over the entries e of row o (ascending) of
/// values[e] · x[n, c, yo·stride + r − pad, xo·stride + s − pad] (0 outside the image).
pub fn spconv_fwd_f32(
    x: &[f32],
    row_ptr: &[u32],
    col_idx: &[u32],
    values: &[f32],
    bias: Option<&[f32]>,
    p: &Conv2dParams,
    y: &mut [f32],
) {
    let [n, c_in, h, w] = p.x_shape();
    let [_, c_out, ho, wo] = p.y_shape();
    let (st, pad) = (p.stride as i64, p.pad as i64);
    assert_eq!(y.len(), n * c_out * ho * wo, "spconv_fwd_f32: y length");
    for b in 0..n {
        for o in 0..c_out {
            for yo in 0..ho {
                for xo in 0..wo {
                    let mut acc = bias.map_or(0.0, |bv| bv[o]);
                    for e in row_ptr[o] as usize..row_ptr[o + 1] as usize {
                        let (c, r, s) = decode(col_idx[e] as usize, p);
                        let iy = yo as i64 * st + r as i64 - pad;
                        let ix = xo as i64 * st + s as i64 - pad;
                        if iy >= 0 && iy < h as i64 && ix >= 0 && ix < w as i64 {
                            let xi = ((b * c_in + c) * h + iy as usize) * w + ix as usize;
                            acc += values[e] * x[xi];
                        }
                    }
                    y[((b * c_out + o) * ho + yo) * wo + xo] = acc;
                }
            }
        }
    }
}

/// dx[n, c, yi, xi] = Σ over r, s (ascending) and the entries e of row (c, r, s) of the
/// TRANSPOSED weight (columns = output channels o, ascending) of
/// t_values[e] · dy[n, o, yo, xo] where yo·stride + r − pad = yi and xo·stride + s − pad = xi.
pub fn spconv_bwd_input_f32(
    dy: &[f32],
    t_row_ptr: &[u32],
    t_col_idx: &[u32],
    t_values: &[f32],
    p: &Conv2dParams,
    dx: &mut [f32],
) {
    let [n, c_in, h, w] = p.x_shape();
    let [_, c_out, ho, wo] = p.y_shape();
    let (kh, kw) = (p.k_h as usize, p.k_w as usize);
    let (st, pad) = (p.stride as i64, p.pad as i64);
    assert_eq!(
        dx.len(),
        n * c_in * h * w,
        "spconv_bwd_input_f32: dx length"
    );
    for b in 0..n {
        for c in 0..c_in {
            for yi in 0..h {
                for xi in 0..w {
                    let mut acc = 0.0f32;
                    for r in 0..kh {
                        let ty = yi as i64 + pad - r as i64;
                        if ty < 0 || ty % st != 0 || ty / st >= ho as i64 {
                            continue;
                        }
                        for s in 0..kw {
                            let tx = xi as i64 + pad - s as i64;
                            if tx < 0 || tx % st != 0 || tx / st >= wo as i64 {
                                continue;
                            }
                            let (yo, xo) = ((ty / st) as usize, (tx / st) as usize);
                            let k = (c * kh + r) * kw + s;
                            for e in t_row_ptr[k] as usize..t_row_ptr[k + 1] as usize {
                                let o = t_col_idx[e] as usize;
                                acc += t_values[e] * dy[((b * c_out + o) * ho + yo) * wo + xo];
                            }
                        }
                    }
                    dx[((b * c_in + c) * h + yi) * w + xi] = acc;
                }
            }
        }
    }
}

/// dvalues[e] = Σ over n, yo, xo (in that order) of dy[n, o, yo, xo] ·
/// x[n, c, yo·stride + r − pad, xo·stride + s − pad] for entry e = (o, (c, r, s)): the weight
/// gradient at the active positions only.
pub fn spconv_bwd_weight_f32(
    x: &[f32],
    dy: &[f32],
    row_ptr: &[u32],
    col_idx: &[u32],
    p: &Conv2dParams,
    dvalues: &mut [f32],
) {
    let [n, c_in, h, w] = p.x_shape();
    let [_, c_out, ho, wo] = p.y_shape();
    let (st, pad) = (p.stride as i64, p.pad as i64);
    assert_eq!(
        dvalues.len(),
        col_idx.len(),
        "spconv_bwd_weight_f32: one value per entry"
    );
    for o in 0..c_out {
        for e in row_ptr[o] as usize..row_ptr[o + 1] as usize {
            let (c, r, s) = decode(col_idx[e] as usize, p);
            let mut acc = 0.0f32;
            for b in 0..n {
                for yo in 0..ho {
                    let iy = yo as i64 * st + r as i64 - pad;
                    if iy < 0 || iy >= h as i64 {
                        continue;
                    }
                    for xo in 0..wo {
                        let ix = xo as i64 * st + s as i64 - pad;
                        if ix < 0 || ix >= w as i64 {
                            continue;
                        }
                        let xi = ((b * c_in + c) * h + iy as usize) * w + ix as usize;
                        acc += dy[((b * c_out + o) * ho + yo) * wo + xo] * x[xi];
                    }
                }
            }
            dvalues[e] = acc;
        }
    }
}

/// dense[r, c] = values[e] of the last entry e of row r at column c, 0 where row r has none:
/// the dense row-major [rows, cols] matrix of a CSR given in parts (what
/// [`SparseWeight::scatter_dense`](crate::backend::SparseWeight::scatter_dense) computes), e.g.
/// the dense-shaped weight gradient from the entry gradients.
pub fn spconv_scatter_f32(
    row_ptr: &[u32],
    col_idx: &[u32],
    values: &[f32],
    rows: usize,
    cols: usize,
    dense: &mut [f32],
) {
    assert_eq!(dense.len(), rows * cols, "spconv_scatter_f32: dense length");
    dense.fill(0.0);
    for r in 0..rows {
        for e in row_ptr[r] as usize..row_ptr[r + 1] as usize {
            dense[r * cols + col_idx[e] as usize] = values[e];
        }
    }
}

/// Test support: checks a fast path of the sparse convolution against these twins.
#[cfg(test)]
pub(crate) mod check {
    use super::*;
    use crate::backend::SparseWeight;
    use crate::rng::Rng;

    /// A fast path's forward pass.
    pub(crate) type Fwd = fn(&[f32], &SparseWeight, Option<&[f32]>, &Conv2dParams, &mut [f32]);

    /// The three passes of a fast path.
    pub(crate) struct FastPath {
        pub fwd: Fwd,
        pub bwd_input: fn(&[f32], &SparseWeight, &Conv2dParams, &mut [f32]),
        pub bwd_weight: fn(&[f32], &[f32], &SparseWeight, &Conv2dParams) -> Vec<f32>,
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-3 * (1.0 + x.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    /// Random input, weight, mask of density `d`, bias and dy for `p`; the fast path's three
    /// passes must equal the twins' (outputs start at a nonzero value, so every element must
    /// be written).
    pub(crate) fn against_twins(f: &FastPath, p: &Conv2dParams, d: f32, seed: u64) {
        let mut r = Rng::new(seed);
        let x: Vec<f32> = (0..p.x_shape().iter().product::<usize>())
            .map(|_| r.normal())
            .collect();
        let (c_out, kk) = (p.c_out as usize, p.col_rows());
        let w: Vec<f32> = (0..c_out * kk).map(|_| r.normal()).collect();
        let m: Vec<f32> = (0..c_out * kk)
            .map(|_| (r.uniform() < d) as u8 as f32)
            .collect();
        let bias: Vec<f32> = (0..c_out).map(|_| r.normal()).collect();
        let sw = SparseWeight::from_masked(&w, &m, c_out, kk).unwrap();
        let ys = p.y_shape().iter().product::<usize>();
        let (mut y0, mut y1) = (vec![0f32; ys], vec![7f32; ys]);
        spconv_fwd_f32(
            &x,
            &sw.row_ptr,
            &sw.col_idx,
            &sw.values,
            Some(&bias),
            p,
            &mut y0,
        );
        (f.fwd)(&x, &sw, Some(&bias), p, &mut y1);
        close(&y0, &y1, "forward");
        let dy: Vec<f32> = (0..ys).map(|_| r.normal()).collect();
        let swt = sw.transpose();
        let (mut d0, mut d1) = (vec![0f32; x.len()], vec![7f32; x.len()]);
        spconv_bwd_input_f32(&dy, &swt.row_ptr, &swt.col_idx, &swt.values, p, &mut d0);
        (f.bwd_input)(&dy, &swt, p, &mut d1);
        close(&d0, &d1, "backward_input");
        let mut g0 = vec![0f32; sw.nnz()];
        spconv_bwd_weight_f32(&x, &dy, &sw.row_ptr, &sw.col_idx, p, &mut g0);
        close(&g0, &(f.bwd_weight)(&x, &dy, &sw, p), "backward_weight");
    }
}

/// How a mask is read as lines for a CSR (rows, or columns for the transposed CSR): `lines`
/// lines of `len` elements, element j of line l at `l * line_stride + j * elem_stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CsrLines {
    /// Number of lines (CSR rows).
    pub lines: usize,
    /// Elements per line (CSR columns).
    pub len: usize,
    /// Distance between the first elements of consecutive lines.
    pub line_stride: usize,
    /// Distance between consecutive elements of a line.
    pub elem_stride: usize,
}

impl CsrLines {
    /// The rows of a row-major [rows, cols] matrix (its CSR).
    pub fn rows(rows: usize, cols: usize) -> CsrLines {
        CsrLines {
            lines: rows,
            len: cols,
            line_stride: cols,
            elem_stride: 1,
        }
    }

    /// The columns of a row-major [rows, cols] matrix (the CSR of its transpose).
    pub fn cols(rows: usize, cols: usize) -> CsrLines {
        CsrLines {
            lines: cols,
            len: rows,
            line_stride: 1,
            elem_stride: cols,
        }
    }

    /// Position of element j of line l.
    fn at(&self, l: usize, j: usize) -> usize {
        l * self.line_stride + j * self.elem_stride
    }
}

/// counts[l] = the active (nonzero, NaN included) mask entries of line l.
pub fn csr_count_f32(mask: &[f32], v: CsrLines, counts: &mut [u32]) {
    for (l, c) in counts[..v.lines].iter_mut().enumerate() {
        *c = (0..v.len).filter(|&j| mask[v.at(l, j)] != 0.0).count() as u32;
    }
}

/// row_ptr[0] = 0 and row_ptr[i + 1] = counts[0] + ... + counts[i].
pub fn csr_scan_u32(counts: &[u32], row_ptr: &mut [u32]) {
    row_ptr[0] = 0;
    for (i, &c) in counts.iter().enumerate() {
        row_ptr[i + 1] = row_ptr[i] + c;
    }
}

/// The active entries of each line l in ascending element order at row_ptr[l]..: the element
/// index as the column, `w` at the same position as the value.
pub fn csr_fill_f32(
    w: &[f32],
    mask: &[f32],
    row_ptr: &[u32],
    v: CsrLines,
    col_idx: &mut [u32],
    values: &mut [f32],
) {
    for (l, &start) in row_ptr[..v.lines].iter().enumerate() {
        let mut e = start as usize;
        for j in 0..v.len {
            let i = v.at(l, j);
            if mask[i] != 0.0 {
                col_idx[e] = j as u32;
                values[e] = w[i];
                e += 1;
            }
        }
    }
}

/// values[e] = `w` at the position of entry e of a structure [`csr_fill_f32`] built for the
/// same view: line l's entries are row_ptr[l]..row_ptr[l + 1], entry e is element col_idx[e]
/// of its line.
pub fn csr_gather_f32(
    w: &[f32],
    row_ptr: &[u32],
    col_idx: &[u32],
    v: CsrLines,
    values: &mut [f32],
) {
    for l in 0..v.lines {
        for e in row_ptr[l] as usize..row_ptr[l + 1] as usize {
            values[e] = w[v.at(l, col_idx[e] as usize)];
        }
    }
}

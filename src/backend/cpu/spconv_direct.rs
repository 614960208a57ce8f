//! The im2col-free sparse convolution for stride 1 on maps at least 16 wide: the input image is
//! zero-padded once and read in place.
//!
//! With the padded width Wp, output position q = yo·Wp + xo (xo < Wp, the last k_w − 1 columns of
//! each row are computed and discarded) reads input element c·Hp·Wp + q + r·Wp + s for weight
//! (c, r, s): for a fixed weight, 64 consecutive q read 64 consecutive inputs. So a tile of the
//! output is Σ_e w_e · xpad[off_e + q0 ..] with a per-entry offset, the
//! [`super::spmm::spmm_row`] kernel, and no im2col at all. The backward to the input is the same
//! with dy padded by k − 1 − pad and the flipped, transposed weight; the backward to the
//! weights dots the padded-width dy row with the shifted input rows ([`super::spmm::sddmm_row`]).
//! Work units are single images.

use rayon::prelude::*;

use super::spconv_tiled::fixed_partition_sum;
use super::spmm::{sddmm_row_unchecked, spmm_row_unchecked, T};
use crate::backend::{Conv2dParams, SparseWeight};

/// True when this path handles the geometry: stride 1, pad < k, and an output at least 16
/// wide (on 8×8 maps the padded rows fill 64-column tiles badly and the tiled path is as fast
/// at 5% density and 1.3-2× faster at 20%: `examples/spconv_layers.rs`, BENCHMARKS.md).
pub fn applies(p: &Conv2dParams) -> bool {
    p.stride == 1 && p.w_out >= 16 && p.pad < p.k_h && p.k_h == p.k_w
}

/// Floats past the end of a padded image that the last tile may read (they are zero).
fn slack(p: &Conv2dParams) -> usize {
    T + p.k_w as usize + 1
}

/// Zero-pads `src` ([ch, h, w]) by `pad` on every side into `dst` ([ch, h+2pad, w+2pad] +
/// any slack, which stays zero).
pub(crate) fn pad_image(src: &[f32], ch: usize, h: usize, w: usize, pad: usize, dst: &mut [f32]) {
    let (hp, wp) = (h + 2 * pad, w + 2 * pad);
    dst.fill(0.0);
    for c in 0..ch {
        for y in 0..h {
            let d = &mut dst[(c * hp + y + pad) * wp + pad..][..w];
            d.copy_from_slice(&src[(c * h + y) * w..][..w]);
        }
    }
}

/// The offset of each CSR entry (c, r, s) inside a padded image with planes hp × wp:
/// c·hp·wp + r·wp + s.
fn input_offsets(sw: &SparseWeight, k: usize, hp: usize, wp: usize) -> Vec<u32> {
    sw.col_idx
        .iter()
        .map(|&col| {
            let col = col as usize;
            let (c, r, s) = (col / (k * k), (col / k) % k, col % k);
            ((c * hp + r) * wp + s) as u32
        })
        .collect()
}

/// Writes the valid part of a padded-width tile (positions q0..q0+T of rows Wp wide, valid
/// columns < `w`, valid rows < `h`) into plane `dst` ([h, w]), adding `bias`.
fn store_tile(
    acc: &[f32; T],
    bias: f32,
    q0: usize,
    wp: usize,
    h: usize,
    w: usize,
    dst: &mut [f32],
) {
    let end = (q0 + T).min(h * wp);
    let mut q = q0;
    while q < end {
        let (y, x) = (q / wp, q % wp);
        let row_end = (y * wp + wp).min(end);
        if x < w {
            let l = (w - x).min(row_end - q);
            for (d, &a) in dst[y * w + x..][..l]
                .iter_mut()
                .zip(&acc[q - q0..q - q0 + l])
            {
                *d = a + bias;
            }
        }
        q = row_end;
    }
}

/// y = conv(x, sparse w) + bias (see [`applies`]).
pub fn forward(
    x: &[f32],
    sw: &SparseWeight,
    bias: Option<&[f32]>,
    p: &Conv2dParams,
    y: &mut [f32],
) {
    assert!(applies(p), "spconv_direct: geometry {p:?}");
    let [n, c_in, h, w] = p.x_shape();
    let [_, c_out, ho, wo] = p.y_shape();
    let (k, pad) = (p.k_w as usize, p.pad as usize);
    let (hp, wp) = (h + 2 * pad, w + 2 * pad);
    assert!(
        sw.rows == c_out && sw.cols == p.col_rows(),
        "spconv_direct: weight shape"
    );
    let offs = input_offsets(sw, k, hp, wp);
    assert!(
        x.len() == n * c_in * h * w && y.len() == n * c_out * ho * wo,
        "spconv_direct forward: lengths"
    );
    let plen = c_in * hp * wp + slack(p);
    let lq = ho * wp;
    y.par_chunks_mut(c_out * ho * wo)
        .zip(x.par_chunks(c_in * h * w))
        .for_each_init(
            || vec![0f32; plen],
            |xp, (yi, xi)| {
                pad_image(xi, c_in, h, w, pad, xp);
                let mut acc = [0f32; T];
                for o in 0..c_out {
                    let (e0, e1) = (sw.row_ptr[o] as usize, sw.row_ptr[o + 1] as usize);
                    let bo = bias.map_or(0.0, |b| b[o]);
                    for q0 in (0..lq).step_by(T) {
                        // SAFETY: off + q0 + T ≤ c_in·hp·wp + slack (see `slack`).
                        unsafe {
                            spmm_row_unchecked(
                                &offs[e0..e1],
                                &sw.values[e0..e1],
                                xp.as_ptr().add(q0),
                                &mut acc,
                            )
                        };
                        store_tile(
                            &acc,
                            bo,
                            q0,
                            wp,
                            ho,
                            wo,
                            &mut yi[o * ho * wo..(o + 1) * ho * wo],
                        );
                    }
                }
            },
        );
}

/// dx = transposed conv of dy with the sparse weight; `swt` is `sw.transpose()`.
pub fn backward_input(dy: &[f32], swt: &SparseWeight, p: &Conv2dParams, dx: &mut [f32]) {
    assert!(applies(p), "spconv_direct: geometry {p:?}");
    let [n, c_in, h, w] = p.x_shape();
    let [_, c_out, ho, wo] = p.y_shape();
    let (k, pad) = (p.k_w as usize, p.pad as usize);
    let pp = k - 1 - pad;
    let (hp, wp) = (ho + 2 * pp, wo + 2 * pp);
    let kk = k * k;
    assert!(
        swt.rows == p.col_rows() && swt.cols == c_out,
        "spconv_direct: transposed weight shape"
    );
    // Entry e of row (c, r, s), column o, reads dy_pad[o, yi + k−1−r, xi + k−1−s].
    let mut offs = vec![0u32; swt.nnz()];
    for row in 0..swt.rows {
        let (r, s) = ((row / k) % k, row % k);
        let (e0, e1) = (swt.row_ptr[row] as usize, swt.row_ptr[row + 1] as usize);
        for (off, &o) in offs[e0..e1].iter_mut().zip(&swt.col_idx[e0..e1]) {
            let o = o as usize;
            assert!(o < c_out, "spconv_direct: column out of range");
            *off = ((o * hp + k - 1 - r) * wp + k - 1 - s) as u32;
        }
    }
    assert!(
        dy.len() == n * c_out * ho * wo && dx.len() == n * c_in * h * w,
        "spconv_direct backward_input: lengths"
    );
    let plen = c_out * hp * wp + slack(p);
    let lq = h * wp;
    dx.par_chunks_mut(c_in * h * w)
        .zip(dy.par_chunks(c_out * ho * wo))
        .for_each_init(
            || vec![0f32; plen],
            |dp, (dxi, dyi)| {
                pad_image(dyi, c_out, ho, wo, pp, dp);
                let mut acc = [0f32; T];
                for c in 0..c_in {
                    let (e0, e1) = (
                        swt.row_ptr[c * kk] as usize,
                        swt.row_ptr[(c + 1) * kk] as usize,
                    );
                    let plane = &mut dxi[c * h * w..(c + 1) * h * w];
                    if e0 == e1 {
                        plane.fill(0.0);
                        continue;
                    }
                    for q0 in (0..lq).step_by(T) {
                        // SAFETY: off + q0 + T ≤ c_out·hp·wp + slack.
                        unsafe {
                            spmm_row_unchecked(
                                &offs[e0..e1],
                                &swt.values[e0..e1],
                                dp.as_ptr().add(q0),
                                &mut acc,
                            )
                        };
                        store_tile(&acc, 0.0, q0, wp, h, w, plane);
                    }
                }
            },
        );
}

/// The weight gradient at the active entries of `sw` (one value per entry, CSR order).
pub fn backward_weight(x: &[f32], dy: &[f32], sw: &SparseWeight, p: &Conv2dParams) -> Vec<f32> {
    assert!(applies(p), "spconv_direct: geometry {p:?}");
    let [n, c_in, h, w] = p.x_shape();
    let [_, c_out, ho, wo] = p.y_shape();
    let (k, pad) = (p.k_w as usize, p.pad as usize);
    let (hp, wp) = (h + 2 * pad, w + 2 * pad);
    assert!(
        sw.rows == c_out && sw.cols == p.col_rows(),
        "spconv_direct: weight shape"
    );
    let offs = input_offsets(sw, k, hp, wp);
    assert!(
        x.len() == n * c_in * h * w && dy.len() == n * c_out * ho * wo,
        "spconv_direct backward_weight: lengths"
    );
    let lq = ho * wp;
    // dy rows in the padded width (zeros in the discarded columns), T floats of zero slack.
    let glen = lq.div_ceil(T) * T;
    fixed_partition_sum(n, sw.nnz(), |i0, i1, dv| {
        let mut xp = vec![0f32; c_in * hp * wp + slack(p)];
        let mut gw = vec![0f32; c_out * glen];
        for i in i0..i1 {
            pad_image(
                &x[i * c_in * h * w..][..c_in * h * w],
                c_in,
                h,
                w,
                pad,
                &mut xp,
            );
            let dyi = &dy[i * c_out * ho * wo..][..c_out * ho * wo];
            for o in 0..c_out {
                let g = &mut gw[o * glen..(o + 1) * glen];
                for yo in 0..ho {
                    g[yo * wp..yo * wp + wo].copy_from_slice(&dyi[(o * ho + yo) * wo..][..wo]);
                }
            }
            for o in 0..c_out {
                let (e0, e1) = (sw.row_ptr[o] as usize, sw.row_ptr[o + 1] as usize);
                if e0 == e1 {
                    continue;
                }
                for q0 in (0..lq).step_by(T) {
                    // SAFETY: gw row o has glen ≥ q0 + T floats; off + q0 + T is inside xp.
                    unsafe {
                        sddmm_row_unchecked(
                            gw.as_ptr().add(o * glen + q0),
                            &offs[e0..e1],
                            xp.as_ptr().add(q0),
                            &mut dv[e0..e1],
                        )
                    };
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::spconv::check::{against_twins, FastPath};
    use super::*;

    const DIRECT: FastPath = FastPath {
        fwd: forward,
        bwd_input: backward_input,
        bwd_weight: backward_weight,
    };

    #[allow(clippy::too_many_arguments)]
    fn case(
        n: usize,
        c_in: usize,
        hw: usize,
        c_out: usize,
        k: usize,
        pad: usize,
        d: f32,
        seed: u64,
    ) {
        let p = Conv2dParams::new(n, c_in, hw, hw, c_out, k, 1, pad).unwrap();
        assert!(applies(&p));
        against_twins(&DIRECT, &p, d, seed);
    }

    #[test]
    fn direct_matches_the_twins() {
        case(3, 5, 19, 6, 3, 1, 0.3, 1); // 19 wide: tiles straddle rows
        case(2, 4, 18, 3, 3, 0, 0.5, 2); // valid conv (pad 0)
        case(2, 6, 16, 5, 1, 0, 0.4, 3); // 1x1
        case(1, 3, 16, 4, 3, 1, 0.0, 4); // empty weight
        case(2, 8, 16, 8, 3, 1, 1.0, 5); // dense mask
        case(1, 2, 17, 2, 5, 2, 0.6, 6); // 5x5
    }
}

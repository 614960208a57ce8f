//! The CPU fast path of the sparse convolution: work only for the active weights, in all three
//! passes, on column tiles of the im2col matrix.
//!
//! The output positions (n, yo, xo) of a batch are cut into work units of whole images (one
//! image when its map has at least [`T`] positions, else enough images to fill a tile), and a
//! unit's positions into tiles of `T` = 64 columns. Per tile:
//! - forward: the tile of the im2col matrix B [K, T] (K = c_in·k_h·k_w) is built from the input,
//!   then each output channel o accumulates Σ_e w_e · B[col_e] over its CSR row in eight AVX
//!   registers (one broadcast and eight loads + FMAs per active weight; no im2col of the batch);
//! - backward to the input: the tile of dy is gathered into G [c_out, T]; each row k of the
//!   transposed CSR gives Σ_e w_e · G[o_e], added straight into dx (col2im of one row);
//! - backward to the weights (SDDMM): for every active entry (o, k), Σ_j G[o, j] · B[k, j],
//!   four entries at a time; each thread sums a fixed contiguous range of units and the
//!   partial sums are added in range order, so the result depends only on the thread count.
//!
//! Units are independent (no two write the same output or input image), so they run in parallel
//! with rayon. The reference semantics are the twins in [`super::spconv`].

use rayon::prelude::*;

use super::spconv_direct::pad_image;
use super::spmm::{sddmm_row_unchecked, spmm_row_unchecked, T};
use crate::backend::{Conv2dParams, SparseWeight};

/// Images per work unit for an output map of `hw` positions.
pub(crate) fn images_per_unit(hw: usize) -> usize {
    if hw >= T {
        1
    } else {
        (T / hw.max(1)).max(1)
    }
}

/// Marks a tile column that reads padding (or lies past the unit's last column).
const PAD: u32 = u32::MAX;

/// The gather table of one tile: for kernel position rs = r·k_w + s and tile column j, the
/// offset of the input element in the unit's images relative to channel c's plane of image 0
/// (img·c_in·h·w + iy·w + ix; add c·h·w), or [`PAD`].
fn gather_table(p: &Conv2dParams, j0: usize, len: usize, tab: &mut Vec<u32>) {
    let (c_in, h, w) = (p.c_in as usize, p.h_in as usize, p.w_in as usize);
    let (kh, kw, st, pad) = (
        p.k_h as usize,
        p.k_w as usize,
        p.stride as usize,
        p.pad as i64,
    );
    let (ho, wo) = (p.h_out as usize, p.w_out as usize);
    tab.clear();
    tab.resize(kh * kw * T, PAD);
    for j in 0..len {
        let q = j0 + j;
        let (img, pix) = (q / (ho * wo), q % (ho * wo));
        let (yo, xo) = (pix / wo, pix % wo);
        for r in 0..kh {
            let iy = (yo * st + r) as i64 - pad;
            if iy < 0 || iy >= h as i64 {
                continue;
            }
            for s in 0..kw {
                let ix = (xo * st + s) as i64 - pad;
                if ix < 0 || ix >= w as i64 {
                    continue;
                }
                tab[(r * kw + s) * T + j] =
                    (img * c_in * h * w) as u32 + (iy as usize * w + ix as usize) as u32;
            }
        }
    }
}

/// Builds the im2col tile B [K, T] (row k = (c·k_h + r)·k_w + s) of the unit images `x_unit`
/// from a [`gather_table`].
fn build_b(x_unit: &[f32], p: &Conv2dParams, tab: &[u32], b: &mut [f32]) {
    let (c_in, hw_in) = (p.c_in as usize, (p.h_in * p.w_in) as usize);
    let kk = (p.k_h * p.k_w) as usize;
    for c in 0..c_in {
        let plane = &x_unit[c * hw_in..];
        for rs in 0..kk {
            let t = &tab[rs * T..(rs + 1) * T];
            let row = &mut b[(c * kk + rs) * T..(c * kk + rs + 1) * T];
            for (v, &o) in row.iter_mut().zip(t) {
                *v = if o == PAD { 0.0 } else { plane[o as usize] };
            }
        }
    }
}

/// Adds row k of a tile into the unit's input gradient (the adjoint of [`build_b`] for one
/// row).
fn col2im_row(vals: &[f32; T], k: usize, p: &Conv2dParams, tab: &[u32], dx_unit: &mut [f32]) {
    let (hw_in, kk) = ((p.h_in * p.w_in) as usize, (p.k_h * p.k_w) as usize);
    let (c, rs) = (k / kk, k % kk);
    let plane = &mut dx_unit[c * hw_in..];
    for (&o, &v) in tab[rs * T..(rs + 1) * T].iter().zip(vals) {
        if o != PAD {
            plane[o as usize] += v;
        }
    }
}

/// True when every tile is made of whole images, the stride is 1 and output rows are at least
/// 8 wide (one vector): the tile rows are then copied from zero-padded images
/// ([`build_b_rows`]) instead of gathered through a table. Measured at 5% density, batch 128
/// (`examples/spconv_layers.rs`, quiet): 8×8 maps 5-25% faster this way; on 4×4 and 2×2
/// maps the short row copies are 10-50% slower than the gather table, so those keep it.
fn row_tiles(p: &Conv2dParams) -> bool {
    let hw = (p.h_out * p.w_out) as usize;
    p.stride == 1 && p.w_out >= 8 && hw <= T && T.is_multiple_of(hw) && p.pad < p.k_h
}

/// Zero-pads the `imgs` images of `xu` ([imgs, c, h, w]) into `xp` ([imgs, c, h+2pad, w+2pad]).
fn pad_unit(xu: &[f32], imgs: usize, c: usize, h: usize, w: usize, pad: usize, xp: &mut Vec<f32>) {
    xp.resize(imgs * c * (h + 2 * pad) * (w + 2 * pad), 0.0);
    pad_image(xu, imgs * c, h, w, pad, xp);
}

/// The im2col tile of `imgs` whole images from their padded copy `xp` (stride 1): row
/// (c, r, s), image i, output row yo is xp[i, c, yo + r, s .. s + w_out].
fn build_b_rows(xp: &[f32], p: &Conv2dParams, imgs: usize, b: &mut [f32]) {
    let (c_in, kh, kw) = (p.c_in as usize, p.k_h as usize, p.k_w as usize);
    let (ho, wo) = (p.h_out as usize, p.w_out as usize);
    let (hp, wp) = ((p.h_in + 2 * p.pad) as usize, (p.w_in + 2 * p.pad) as usize);
    let len = imgs * ho * wo;
    for c in 0..c_in {
        for r in 0..kh {
            for s in 0..kw {
                let row = &mut b[((c * kh + r) * kw + s) * T..][..T];
                row[len..].fill(0.0);
                for i in 0..imgs {
                    for yo in 0..ho {
                        let src = &xp[((i * c_in + c) * hp + yo + r) * wp + s..][..wo];
                        row[(i * ho + yo) * wo..][..wo].copy_from_slice(src);
                    }
                }
            }
        }
    }
}

/// Adds tile row k (`vals`) of `imgs` whole images into their padded input gradient `dxp`
/// (the adjoint of [`build_b_rows`] for one row).
fn col2im_row_padded(vals: &[f32; T], k: usize, p: &Conv2dParams, imgs: usize, dxp: &mut [f32]) {
    let (c_in, kh, kw) = (p.c_in as usize, p.k_h as usize, p.k_w as usize);
    let (ho, wo) = (p.h_out as usize, p.w_out as usize);
    let (hp, wp) = ((p.h_in + 2 * p.pad) as usize, (p.w_in + 2 * p.pad) as usize);
    let (c, r, s) = (k / (kh * kw), (k / kw) % kh, k % kw);
    for i in 0..imgs {
        for yo in 0..ho {
            let dst = &mut dxp[((i * c_in + c) * hp + yo + r) * wp + s..][..wo];
            for (d, &v) in dst.iter_mut().zip(&vals[(i * ho + yo) * wo..][..wo]) {
                *d += v;
            }
        }
    }
}

/// Gathers the tile of a [g, ch, hw] tensor (columns j0..j0+len of the unit) into G [ch, T]
/// (zero past `len`).
fn gather_tile(src: &[f32], ch: usize, hw: usize, j0: usize, len: usize, g: &mut [f32]) {
    for o in 0..ch {
        let row = &mut g[o * T..(o + 1) * T];
        row[len..].fill(0.0);
        let mut j = j0;
        while j < j0 + len {
            let (img, pix) = (j / hw, j % hw);
            let l = (hw - pix).min(j0 + len - j);
            let s = &src[(img * ch + o) * hw + pix..][..l];
            row[j - j0..j - j0 + l].copy_from_slice(s);
            j += l;
        }
    }
}

#[allow(clippy::too_many_arguments)]
/// Writes `acc[..len]` (+ bias) as channel `o` of columns j0..j0+len of a [g, ch, hw] tensor.
fn scatter_row(
    acc: &[f32; T],
    bias: f32,
    o: usize,
    ch: usize,
    hw: usize,
    j0: usize,
    len: usize,
    dst: &mut [f32],
) {
    let mut j = j0;
    while j < j0 + len {
        let (img, pix) = (j / hw, j % hw);
        let l = (hw - pix).min(j0 + len - j);
        let d = &mut dst[(img * ch + o) * hw + pix..][..l];
        for (dv, &a) in d.iter_mut().zip(&acc[j - j0..j - j0 + l]) {
            *dv = a + bias;
        }
        j += l;
    }
}

/// The tile offsets (column · T) of every entry of a CSR, after checking it fits `rows`×`cols`.
pub(crate) fn tile_offsets(sw: &SparseWeight, rows: usize, cols: usize) -> Vec<u32> {
    assert!(
        sw.rows == rows && sw.cols == cols && sw.row_ptr.len() == rows + 1,
        "spconv: sparse weight {}x{} does not fit the expected {rows}x{cols}",
        sw.rows,
        sw.cols
    );
    sw.col_idx
        .iter()
        .map(|&c| {
            assert!(
                (c as usize) < cols,
                "spconv: column {c} out of range {cols}"
            );
            c * T as u32
        })
        .collect()
}

/// Entries e0..e1 of row r.
#[inline]
fn span(sw: &SparseWeight, r: usize) -> (usize, usize) {
    (sw.row_ptr[r] as usize, sw.row_ptr[r + 1] as usize)
}

/// y = conv(x, sparse w) + bias over the whole batch (any geometry).
pub fn forward(
    x: &[f32],
    sw: &SparseWeight,
    bias: Option<&[f32]>,
    p: &Conv2dParams,
    y: &mut [f32],
) {
    let [n, c_in, h, w] = p.x_shape();
    let [_, c_out, ho, wo] = p.y_shape();
    let (hw, k) = (ho * wo, p.col_rows());
    let offs = tile_offsets(sw, c_out, k);
    let g = images_per_unit(hw);
    let (x_unit, y_unit) = (g * c_in * h * w, g * c_out * hw);
    assert!(
        x.len() == n * c_in * h * w && y.len() == n * c_out * hw,
        "spconv forward: lengths"
    );
    y.par_chunks_mut(y_unit)
        .zip(x.par_chunks(x_unit))
        .for_each_init(
            || (vec![0f32; k * T], Vec::new(), Vec::new()),
            |(b, tab, xp), (yu, xu)| {
                let imgs = xu.len() / (c_in * h * w);
                let cols = imgs * hw;
                let rows = row_tiles(p);
                if rows {
                    pad_unit(xu, imgs, c_in, h, w, p.pad as usize, xp);
                }
                let mut acc = [0f32; T];
                for j0 in (0..cols).step_by(T) {
                    let len = T.min(cols - j0);
                    if rows {
                        build_b_rows(xp, p, imgs, b);
                    } else {
                        gather_table(p, j0, len, tab);
                        build_b(xu, p, tab, b);
                    }
                    for o in 0..c_out {
                        let (e0, e1) = span(sw, o);
                        // SAFETY: offsets are column·T with column < k, and b holds k·T floats.
                        unsafe {
                            spmm_row_unchecked(
                                &offs[e0..e1],
                                &sw.values[e0..e1],
                                b.as_ptr(),
                                &mut acc,
                            )
                        };
                        let bo = bias.map_or(0.0, |bv| bv[o]);
                        scatter_row(&acc, bo, o, c_out, hw, j0, len, yu);
                    }
                }
            },
        );
}

/// dx = transposed conv of dy with the sparse weight; `swt` is `sw.transpose()` (rows = the
/// im2col rows k, columns = output channels).
pub fn backward_input(dy: &[f32], swt: &SparseWeight, p: &Conv2dParams, dx: &mut [f32]) {
    let [n, c_in, h, w] = p.x_shape();
    let [_, c_out, ho, wo] = p.y_shape();
    let hw = ho * wo;
    let offs = tile_offsets(swt, p.col_rows(), c_out);
    let g = images_per_unit(hw);
    let (x_unit, y_unit) = (g * c_in * h * w, g * c_out * hw);
    assert!(
        dy.len() == n * c_out * hw && dx.len() == n * c_in * h * w,
        "spconv backward_input: lengths"
    );
    dx.par_chunks_mut(x_unit)
        .zip(dy.par_chunks(y_unit))
        .for_each_init(
            || (vec![0f32; c_out * T], Vec::new(), Vec::new()),
            |(gt, tab, dxp), (dxu, dyu)| {
                dxu.fill(0.0);
                let imgs = dyu.len() / (c_out * hw);
                let cols = imgs * hw;
                let rows = row_tiles(p);
                let pad = p.pad as usize;
                let (hp, wp) = (h + 2 * pad, w + 2 * pad);
                if rows {
                    dxp.clear();
                    dxp.resize(imgs * c_in * hp * wp, 0.0);
                }
                let mut acc = [0f32; T];
                for j0 in (0..cols).step_by(T) {
                    let len = T.min(cols - j0);
                    if !rows {
                        gather_table(p, j0, len, tab);
                    }
                    gather_tile(dyu, c_out, hw, j0, len, gt);
                    for kk in 0..swt.rows {
                        let (e0, e1) = span(swt, kk);
                        if e0 == e1 {
                            continue;
                        }
                        // SAFETY: offsets are o·T with o < c_out, and gt holds c_out·T floats.
                        unsafe {
                            spmm_row_unchecked(
                                &offs[e0..e1],
                                &swt.values[e0..e1],
                                gt.as_ptr(),
                                &mut acc,
                            )
                        };
                        if rows {
                            col2im_row_padded(&acc, kk, p, imgs, dxp);
                        } else {
                            col2im_row(&acc, kk, p, tab, dxu);
                        }
                    }
                }
                if rows {
                    for plane in 0..imgs * c_in {
                        for y in 0..h {
                            dxu[(plane * h + y) * w..][..w]
                                .copy_from_slice(&dxp[(plane * hp + y + pad) * wp + pad..][..w]);
                        }
                    }
                }
            },
        );
}

/// The weight gradient at the active entries of `sw` (one value per entry, CSR order).
pub fn backward_weight(x: &[f32], dy: &[f32], sw: &SparseWeight, p: &Conv2dParams) -> Vec<f32> {
    let [n, c_in, h, w] = p.x_shape();
    let [_, c_out, ho, wo] = p.y_shape();
    let (hw, k) = (ho * wo, p.col_rows());
    let offs = tile_offsets(sw, c_out, k);
    assert!(
        x.len() == n * c_in * h * w && dy.len() == n * c_out * hw,
        "spconv backward_weight: lengths"
    );
    let g = images_per_unit(hw);
    let units = n.div_ceil(g);
    fixed_partition_sum(units, sw.nnz(), |u0, u1, dv| {
        let mut b = vec![0f32; k * T];
        let mut gt = vec![0f32; c_out * T];
        let mut tab = Vec::new();
        let mut xp = Vec::new();
        let rows = row_tiles(p);
        for u in u0..u1 {
            let imgs = g.min(n - u * g);
            let xu = &x[u * g * c_in * h * w..][..imgs * c_in * h * w];
            let dyu = &dy[u * g * c_out * hw..][..imgs * c_out * hw];
            let cols = imgs * hw;
            if rows {
                pad_unit(xu, imgs, c_in, h, w, p.pad as usize, &mut xp);
            }
            for j0 in (0..cols).step_by(T) {
                let len = T.min(cols - j0);
                if rows {
                    build_b_rows(&xp, p, imgs, &mut b);
                } else {
                    gather_table(p, j0, len, &mut tab);
                    build_b(xu, p, &tab, &mut b);
                }
                gather_tile(dyu, c_out, hw, j0, len, &mut gt);
                for o in 0..c_out {
                    let (e0, e1) = span(sw, o);
                    // SAFETY: gt row o has T floats; offsets are column·T inside b.
                    unsafe {
                        sddmm_row_unchecked(
                            gt[o * T..].as_ptr(),
                            &offs[e0..e1],
                            b.as_ptr(),
                            &mut dv[e0..e1],
                        )
                    };
                }
            }
        }
    })
}

/// Splits 0..units into one contiguous range per rayon thread, lets `work(u0, u1, acc)` add
/// into a zeroed accumulator of `len` floats per range, and sums the accumulators in range
/// order: the result depends on the thread count only, never on scheduling.
pub(crate) fn fixed_partition_sum(
    units: usize,
    len: usize,
    work: impl Fn(usize, usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    let parts = rayon::current_num_threads().clamp(1, units.max(1));
    let partials: Vec<Vec<f32>> = (0..parts)
        .into_par_iter()
        .map(|part| {
            let mut acc = vec![0f32; len];
            work(units * part / parts, units * (part + 1) / parts, &mut acc);
            acc
        })
        .collect();
    let mut it = partials.into_iter();
    let mut total = it.next().unwrap_or_else(|| vec![0f32; len]);
    for part in it {
        for (t, v) in total.iter_mut().zip(part) {
            *t += v;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::super::spconv::check::{against_twins, FastPath};
    use super::*;

    const TILED: FastPath = FastPath {
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
        st: usize,
        pad: usize,
        d: f32,
        seed: u64,
    ) {
        let p = Conv2dParams::new(n, c_in, hw, hw, c_out, k, st, pad).unwrap();
        against_twins(&TILED, &p, d, seed);
    }

    #[test]
    fn tiled_matches_the_twins_on_every_geometry() {
        case(3, 4, 9, 5, 3, 1, 1, 0.3, 1); // multi-tile rows, padding
        case(2, 3, 8, 6, 3, 2, 1, 0.5, 2); // stride 2
        case(5, 8, 2, 7, 3, 1, 1, 0.2, 3); // 2x2 maps: several images per tile
        case(4, 6, 5, 4, 1, 2, 0, 0.6, 4); // 1x1 stride-2 shortcut
        case(70, 9, 1, 10, 1, 1, 0, 0.4, 5); // linear as 1x1 on 1x1 maps, 2 units
        case(2, 3, 7, 4, 7, 2, 3, 0.3, 6); // 7x7 s2 p3 stem
        case(1, 2, 12, 3, 3, 1, 0, 0.0, 7); // empty weight
        case(2, 16, 8, 16, 3, 1, 1, 1.0, 8); // fully dense mask
        case(7, 5, 4, 6, 3, 1, 1, 0.3, 9); // 4x4 maps, a partial last unit
        case(3, 6, 8, 5, 3, 1, 1, 0.3, 11); // 8x8 maps: row tiles
        case(3, 4, 3, 5, 3, 1, 1, 0.5, 10); // 3x3 maps: 64 % 9 != 0, gather tables
    }
}

//! Parity of the `spconv` family (kernels/spconv.cu and src/backend/cpu/spconv.rs).

use super::*;

use suptickets::backend::{SparseMatrix, SparseWeight};

/// A CSR weight for `p` at about `density`, with row 1 (when there is one) left empty.
fn spconv_weight(r: &mut Rng, p: &Conv2dParams, density: f32) -> SparseWeight {
    let (rows, cols) = (p.c_out as usize, p.col_rows());
    let w = normal(r, rows * cols);
    let mut m = mask(r, rows * cols, density);
    if rows > 1 {
        m[cols..2 * cols].fill(0.0);
    }
    SparseWeight::from_masked(&w, &m, rows, cols).unwrap()
}

/// Geometries: stride 2 with padding, 1×1, a 2×2 map, a non-square kernel with stride 3, a
/// linear layer (1×1 on a 1×1 map), many images (long weight-gradient reductions) and a map
/// wide enough for the CPU backend's direct path.
fn spconv_cases() -> Vec<Conv2dParams> {
    let mut odd = conv_params(2, 2, 7, 6, 3, 2, 3, 1);
    odd.k_w = 3;
    odd.h_out = (odd.h_in + 2 * odd.pad - odd.k_h) / odd.stride + 1;
    odd.w_out = (odd.w_in + 2 * odd.pad - odd.k_w) / odd.stride + 1;
    vec![
        conv_params(2, 3, 9, 7, 5, 3, 2, 1),
        conv_params(3, 6, 5, 5, 8, 1, 1, 0),
        conv_params(4, 8, 2, 2, 6, 3, 1, 1),
        odd,
        conv_params(5, 40, 1, 1, 10, 1, 1, 0),
        conv_params(64, 4, 6, 6, 3, 3, 1, 1),
        conv_params(2, 8, 17, 18, 8, 3, 1, 1),
    ]
}

#[test]
fn parity_spconv_fwd_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(60);
    for p in spconv_cases() {
        for density in [0.3, 1.0, 0.0] {
            let w = spconv_weight(&mut r, &p, density);
            let x = normal(&mut r, p.x_shape().iter().product());
            let b = normal(&mut r, p.c_out as usize);
            let (gx, gb) = (up(&g, &x, &p.x_shape()), up(&g, &b, &[b.len()]));
            for bias in [false, true] {
                let mut y = vec![0.0; p.y_shape().iter().product()];
                let cb = bias.then_some(b.as_slice());
                cpu::spconv::spconv_fwd_f32(&x, &w.row_ptr, &w.col_idx, &w.values, cb, &p, &mut y);
                let mut gy = zeros(&g, &p.y_shape());
                let gbias = bias.then_some(&gb);
                g.spconv_fwd_f32(&gx, &w.row_ptr, &w.col_idx, &w.values, gbias, &p, &mut gy)
                    .unwrap();
                let what = format!("spconv fwd {p:?} density {density} bias {bias}");
                assert_close(&what, &down(&gy), &y);
            }
        }
    }
}

#[test]
fn parity_spconv_bwd_input_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(61);
    for p in spconv_cases() {
        for density in [0.3, 1.0, 0.0] {
            let wt = spconv_weight(&mut r, &p, density).transpose();
            let dy = normal(&mut r, p.y_shape().iter().product());
            let mut dx = vec![0.0; p.x_shape().iter().product()];
            cpu::spconv::spconv_bwd_input_f32(
                &dy,
                &wt.row_ptr,
                &wt.col_idx,
                &wt.values,
                &p,
                &mut dx,
            );
            let mut gdx = zeros(&g, &p.x_shape());
            let gdy = up(&g, &dy, &p.y_shape());
            g.spconv_bwd_input_f32(&gdy, &wt.row_ptr, &wt.col_idx, &wt.values, &p, &mut gdx)
                .unwrap();
            let what = format!("spconv bwd input {p:?} density {density}");
            assert_close(&what, &down(&gdx), &dx);
        }
    }
}

#[test]
fn parity_spconv_bwd_weight_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(62);
    for p in spconv_cases() {
        for density in [0.3, 1.0, 0.0] {
            let w = spconv_weight(&mut r, &p, density);
            let x = normal(&mut r, p.x_shape().iter().product());
            let dy = normal(&mut r, p.y_shape().iter().product());
            let mut dv = vec![0.0; w.nnz()];
            cpu::spconv::spconv_bwd_weight_f32(&x, &dy, &w.row_ptr, &w.col_idx, &p, &mut dv);
            let (gx, gdy) = (up(&g, &x, &p.x_shape()), up(&g, &dy, &p.y_shape()));
            let mut gdv = zeros(&g, &[w.nnz()]);
            g.spconv_bwd_weight_f32(&gx, &gdy, &w.row_ptr, &w.col_idx, &p, &mut gdv)
                .unwrap();
            let what = format!("spconv bwd weight {p:?} density {density}");
            assert_close(&what, &down(&gdv), &dv);
            // Deterministic: a second run gives the same bits.
            let mut again = zeros(&g, &[w.nnz()]);
            g.spconv_bwd_weight_f32(&gx, &gdy, &w.row_ptr, &w.col_idx, &p, &mut again)
                .unwrap();
            assert_eq!(down(&again), down(&gdv), "{what}: second run differs");
        }
    }
}

#[test]
fn parity_spconv_scatter_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(63);
    for (rows, cols, density) in [(5, 27, 0.3), (1, 1, 1.0), (7, 300, 0.05), (3, 4, 0.0)] {
        let mut m = mask(&mut r, rows * cols, density);
        if rows > 1 {
            m[cols..2 * cols].fill(0.0);
        }
        let w = SparseWeight::from_masked(&normal(&mut r, rows * cols), &m, rows, cols).unwrap();
        let vals = normal(&mut r, w.nnz());
        let mut dense = vec![f32::NAN; rows * cols];
        cpu::spconv::spconv_scatter_f32(&w.row_ptr, &w.col_idx, &vals, rows, cols, &mut dense);
        assert_eq!(dense, w.scatter_dense(&vals), "twin vs scatter_dense");
        let mut gd = up(&g, &vec![f32::NAN; rows * cols], &[rows, cols]);
        let gv = up(&g, &vals, &[vals.len()]);
        g.spconv_scatter_f32(&w.row_ptr, &w.col_idx, &gv, rows, cols, &mut gd)
            .unwrap();
        assert_eq!(down(&gd), dense, "scatter {rows}x{cols} density {density}");
    }
}

#[test]
fn backend_spconv_fwd_and_bwd() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(64);
    for p in spconv_cases() {
        for density in [0.1, 0.5] {
            let w = spconv_weight(&mut r, &p, density);
            let wt = w.transpose();
            let xs = normal(&mut r, p.x_shape().iter().product());
            let bs = normal(&mut r, p.c_out as usize);
            let dys = normal(&mut r, p.y_shape().iter().product());
            let (cx, gx) = both(&g, &xs, &p.x_shape());
            let (cb, gb) = both(&g, &bs, &[bs.len()]);
            let (cdy, gdy) = both(&g, &dys, &p.y_shape());
            let what = format!("{p:?} density {density}");
            // The CPU backend runs its tiled / direct paths (other summation orders).
            let tol = 1e-4;
            for bias in [false, true] {
                let got = g
                    .spconv_fwd(&gx, (&w).into(), bias.then_some(&gb), &p)
                    .unwrap();
                let want = cpu_be()
                    .spconv_fwd(&cx, (&w).into(), bias.then_some(&cb), &p)
                    .unwrap();
                assert_eq!(got.shape(), want.shape());
                assert_close_tol(
                    &format!("spconv fwd {what}"),
                    &down(&got),
                    &down(&want),
                    tol,
                );
            }
            let got = g.spconv_bwd_input(&gdy, (&wt).into(), &p).unwrap();
            let want = cpu_be().spconv_bwd_input(&cdy, (&wt).into(), &p).unwrap();
            assert_eq!(got.shape(), want.shape());
            assert_close_tol(&format!("spconv dx {what}"), &down(&got), &down(&want), tol);
            let got = g.spconv_bwd_weight(&gx, &gdy, (&w).into(), &p).unwrap();
            let want = cpu_be()
                .spconv_bwd_weight(&cx, &cdy, (&w).into(), &p)
                .unwrap();
            assert_eq!(got.shape(), &p.w_shape()[..]);
            assert_eq!(got.shape(), want.shape());
            let (got, want) = (down(&got), down(&want));
            assert_close_tol(&format!("spconv dw {what}"), &got, &want, tol);
            let zero = w.scatter_dense(&vec![1.0; w.nnz()]);
            assert!(
                got.iter().zip(&zero).all(|(&v, &m)| m != 0.0 || v == 0.0),
                "spconv dw {what}: nonzero at an inactive position"
            );
        }
    }
}

#[test]
fn backend_spconv_errors_name_the_argument() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(65);
    let p = conv_params(2, 3, 6, 6, 4, 3, 1, 1);
    let w = spconv_weight(&mut r, &p, 0.5);
    let x = up(
        &g,
        &normal(&mut r, p.x_shape().iter().product()),
        &p.x_shape(),
    );
    let dy = up(
        &g,
        &normal(&mut r, p.y_shape().iter().product()),
        &p.y_shape(),
    );
    let expect_shape_err = |res: suptickets::Result<Tensor>, needle: &str| match res {
        Err(Error::Shape(m)) => assert!(m.contains(needle), "{needle:?} not in {m:?}"),
        other => panic!("expected a shape error naming {needle:?}, got {other:?}"),
    };
    expect_shape_err(g.spconv_fwd(&dy, (&w).into(), None, &p), "spconv_fwd: x");
    let bad_bias = up(&g, &[0.0; 3], &[3]);
    expect_shape_err(
        g.spconv_fwd(&x, (&w).into(), Some(&bad_bias), &p),
        "spconv_fwd: bias",
    );
    // w where its transpose belongs, and a CSR whose columns run past the weight.
    expect_shape_err(
        g.spconv_bwd_input(&dy, (&w).into(), &p),
        "transposed weight",
    );
    let mut wide = w.clone();
    if let Some(c) = std::sync::Arc::make_mut(&mut wide.col_idx).last_mut() {
        *c = p.col_rows() as u32;
    }
    expect_shape_err(
        g.spconv_bwd_weight(&x, &dy, (&wide).into(), &p),
        "spconv_bwd_weight: weight",
    );
    expect_shape_err(
        g.spconv_bwd_weight(&x, &x, (&w).into(), &p),
        "spconv_bwd_weight: dy",
    );
    // The CPU backend rejects the same CSR.
    let cx = Tensor::from_vec(down(&x), &p.x_shape()).unwrap();
    let cdy = Tensor::from_vec(down(&dy), &p.y_shape()).unwrap();
    expect_shape_err(
        cpu_be().spconv_bwd_weight(&cx, &cdy, (&wide).into(), &p),
        "weight",
    );
}

/// Masks for the CSR build: about `density` active, a NaN (active) and an empty row and column.
fn csr_masks(r: &mut Rng) -> Vec<(usize, usize, Vec<f32>)> {
    let mut out = Vec::new();
    for (rows, cols, density) in [
        (5, 27, 0.3),
        (1, 1, 1.0),
        (7, 300, 0.05),
        (3, 4, 0.0),
        (40, 9, 0.5),
    ] {
        let mut m = mask(r, rows * cols, density);
        if rows > 1 && cols > 1 {
            m[cols..2 * cols].fill(0.0);
            for row in 0..rows {
                m[row * cols + 1] = 0.0;
            }
            m[0] = f32::NAN;
        }
        out.push((rows, cols, m));
    }
    out
}

fn both_views(rows: usize, cols: usize) -> [cpu::spconv::CsrLines; 2] {
    [
        cpu::spconv::CsrLines::rows(rows, cols),
        cpu::spconv::CsrLines::cols(rows, cols),
    ]
}

#[test]
fn parity_csr_count_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(65);
    for (rows, cols, m) in csr_masks(&mut r) {
        for v in both_views(rows, cols) {
            let mut want = vec![u32::MAX; v.lines];
            cpu::spconv::csr_count_f32(&m, v, &mut want);
            let brute: Vec<u32> = (0..v.lines)
                .map(|l| {
                    (0..v.len)
                        .filter(|&j| m[l * v.line_stride + j * v.elem_stride] != 0.0)
                        .count() as u32
                })
                .collect();
            assert_eq!(want, brute, "twin {v:?}");
            let mut got = vec![u32::MAX; v.lines];
            g.csr_count_f32(&up(&g, &m, &[m.len()]), v, &mut got)
                .unwrap();
            assert_eq!(got, want, "counts {v:?}");
        }
    }
}

#[test]
fn parity_csr_scan_u32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(66);
    // Lengths below, at and above the block size, so chunks are empty, single and several.
    for n in [0usize, 1, 7, 256, 257, 1000, 4608] {
        let counts: Vec<u32> = (0..n).map(|_| r.below(50) as u32).collect();
        let mut want = vec![u32::MAX; n + 1];
        cpu::spconv::csr_scan_u32(&counts, &mut want);
        assert_eq!(want[n], counts.iter().sum::<u32>(), "twin total n{n}");
        let mut got = vec![u32::MAX; n + 1];
        g.csr_scan_u32(&counts, &mut got).unwrap();
        assert_eq!(got, want, "scan n{n}");
    }
}

#[test]
fn parity_csr_fill_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(67);
    for (rows, cols, m) in csr_masks(&mut r) {
        let w = normal(&mut r, rows * cols);
        let host = SparseWeight::from_masked(&w, &m, rows, cols).unwrap();
        let (gw, gm) = (up(&g, &w, &[w.len()]), up(&g, &m, &[m.len()]));
        for (v, want) in both_views(rows, cols)
            .into_iter()
            .zip([host.clone(), host.transpose()])
        {
            let mut counts = vec![0; v.lines];
            cpu::spconv::csr_count_f32(&m, v, &mut counts);
            let mut row_ptr = vec![0; v.lines + 1];
            cpu::spconv::csr_scan_u32(&counts, &mut row_ptr);
            assert_eq!(row_ptr, *want.row_ptr, "offsets {v:?}");
            let nnz = want.nnz();
            let (mut ci, mut vals) = (vec![u32::MAX; nnz], vec![f32::NAN; nnz]);
            cpu::spconv::csr_fill_f32(&w, &m, &row_ptr, v, &mut ci, &mut vals);
            assert_eq!(
                (&ci, &vals),
                (&*want.col_idx, &want.values),
                "twin vs host build {v:?}"
            );
            let (mut gci, mut gvals) = (vec![u32::MAX; nnz], vec![f32::NAN; nnz]);
            g.csr_fill_f32((&gw, &gm), &row_ptr, v, &mut gci, &mut gvals)
                .unwrap();
            assert_eq!((gci, gvals), (ci, vals), "fill {v:?}");
        }
        // The whole device build (count, scan, fill) equals the host CSR and its transpose.
        assert_eq!(g.csr_of_mask(&gw, &gm, rows, cols, false).unwrap(), host);
        assert_eq!(
            g.csr_of_mask(&gw, &gm, rows, cols, true).unwrap(),
            host.transpose()
        );
    }
}

#[test]
fn parity_csr_gather_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(68);
    for (rows, cols, m) in csr_masks(&mut r) {
        // Two weights on one structure: the values follow the weight, the structure the mask.
        for _ in 0..2 {
            let w = normal(&mut r, rows * cols);
            let host = SparseWeight::from_masked(&w, &m, rows, cols).unwrap();
            let gw = up(&g, &w, &[w.len()]);
            for (v, want) in both_views(rows, cols)
                .into_iter()
                .zip([host.clone(), host.transpose()])
            {
                let mut vals = vec![f32::NAN; want.nnz()];
                cpu::spconv::csr_gather_f32(&w, &want.row_ptr, &want.col_idx, v, &mut vals);
                assert_eq!(vals, want.values, "twin vs host build {v:?}");
                let mut got = vec![f32::NAN; want.nnz()];
                g.csr_gather_f32(&gw, &m, &want.row_ptr, &want.col_idx, v, &mut got)
                    .unwrap();
                assert_eq!(got, vals, "gather {v:?}");
            }
        }
    }
    // A structure that is not the mask's is refused before the kernel writes through it.
    let (rows, cols, m) = csr_masks(&mut r).remove(0);
    let host = SparseWeight::from_masked(&m, &m, rows, cols).unwrap();
    let mut bad = host.row_ptr.to_vec();
    bad[rows] += 1;
    let gw = up(&g, &m, &[m.len()]);
    let mut out = vec![0.0; host.nnz()];
    let v = cpu::spconv::CsrLines::rows(rows, cols);
    let e = g.csr_gather_f32(&gw, &m, &bad, &host.col_idx, v, &mut out);
    assert!(matches!(e, Err(Error::Shape(_))), "{e:?}");
}

/// The backend's kept structure (`csr_plan`) with values regathered (`csr_gather`) equals the
/// host build from the weight and mask, forward and transposed, on both backends; the CUDA one
/// hands out device operands the spconv passes take as they are.
#[test]
fn backend_csr_plan_and_gather() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(69);
    for (rows, cols, m) in csr_masks(&mut r) {
        let nnz = m.iter().filter(|&&v| v != 0.0).count();
        let (cm, gm) = both(&g, &m, &[rows, cols]);
        let (cplan, gplan) = (
            cpu_be().csr_plan(&cm, rows, cols, nnz).unwrap(),
            g.csr_plan(&gm, rows, cols, nnz).unwrap(),
        );
        let wrong = g
            .csr_plan(&gm, rows, cols, nnz + 1)
            .unwrap_err()
            .to_string();
        assert!(wrong.contains("caller counted"), "{wrong}");
        for _ in 0..2 {
            let w = normal(&mut r, rows * cols);
            let host = SparseWeight::from_masked(&w, &m, rows, cols).unwrap();
            let (cw, gw) = both(&g, &w, &[rows, cols]);
            for (t, want) in [(false, host.clone()), (true, host.transpose())] {
                let c = cpu_be().csr_gather(&cplan, &cw, t).unwrap();
                assert_eq!(g.csr_to_host(&c).unwrap(), want, "cpu {rows}x{cols} t {t}");
                let d = g.csr_gather(&gplan, &gw, t).unwrap();
                assert!(matches!(d, SparseMatrix::Device(_)), "a device operand");
                assert_eq!(g.csr_to_host(&d).unwrap(), want, "cuda {rows}x{cols} t {t}");
            }
        }
        // Each backend refuses the other's structure.
        let e = cpu_be().csr_gather(&gplan, &cm, false).unwrap_err();
        assert!(matches!(e, Error::Device(_)), "{e:?}");
        assert!(g.csr_gather(&cplan, &gm, false).is_err());
    }
}

/// The spconv passes on device operands (kept structure, values gathered on the device) agree
/// with the same passes on the uploaded host CSR.
#[test]
fn backend_spconv_on_device_operands() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(70);
    for p in spconv_cases() {
        let (rows, cols) = (p.c_out as usize, p.col_rows());
        let w = normal(&mut r, rows * cols);
        let m = mask(&mut r, rows * cols, 0.3);
        let nnz = m.iter().filter(|&&v| v != 0.0).count();
        let host = SparseWeight::from_masked(&w, &m, rows, cols).unwrap();
        let (gw, gm) = (up(&g, &w, &[rows, cols]), up(&g, &m, &[rows, cols]));
        let plan = g.csr_plan(&gm, rows, cols, nnz).unwrap();
        let (dw, dwt) = (
            g.csr_gather(&plan, &gw, false).unwrap(),
            g.csr_gather(&plan, &gw, true).unwrap(),
        );
        let x = up(
            &g,
            &normal(&mut r, p.x_shape().iter().product()),
            &p.x_shape(),
        );
        let dy = up(
            &g,
            &normal(&mut r, p.y_shape().iter().product()),
            &p.y_shape(),
        );
        let what = format!("{p:?}");
        let (a, b) = (
            g.spconv_fwd(&x, dw.operand(), None, &p).unwrap(),
            g.spconv_fwd(&x, (&host).into(), None, &p).unwrap(),
        );
        assert_eq!(down(&a), down(&b), "fwd {what}");
        let ht = host.transpose();
        let (a, b) = (
            g.spconv_bwd_input(&dy, dwt.operand(), &p).unwrap(),
            g.spconv_bwd_input(&dy, (&ht).into(), &p).unwrap(),
        );
        assert_eq!(down(&a), down(&b), "dx {what}");
        let (a, b) = (
            g.spconv_bwd_weight(&x, &dy, dw.operand(), &p).unwrap(),
            g.spconv_bwd_weight(&x, &dy, (&host).into(), &p).unwrap(),
        );
        assert_eq!(down(&a), down(&b), "dw {what}");
        // The forward CSR where the transposed one belongs is named.
        if rows != cols {
            let e = g.spconv_bwd_input(&dy, dw.operand(), &p).unwrap_err();
            assert!(e.to_string().contains("transposed weight"), "{e}");
        }
    }
}

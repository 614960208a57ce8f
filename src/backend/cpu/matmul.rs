//! Dense matrix multiplication: the `sgemm_f32` twin (row-major, transpose flags, leading
//! dimensions) on top of `matrixmultiply`, which takes arbitrary strides so transposes are free,
//! and a row-parallel variant for the linear layers.

use rayon::prelude::*;

/// Row-major `C[m, n] = alpha · op(A) · op(B) + beta · C`.
///
/// `op(A)` is m×k: A is stored m×k with leading dimension `lda` (row stride), or, if `trans_a`,
/// k×m with leading dimension `lda`. Likewise `op(B)` is k×n (stored n×k if `trans_b`). When
/// `beta == 0`, C is overwritten and its old contents (NaNs included) are ignored.
///
/// Panics if a slice is too short for the given sizes and leading dimensions.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_f32(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    let (a_rows, a_cols) = if trans_a { (k, m) } else { (m, k) };
    let (b_rows, b_cols) = if trans_b { (n, k) } else { (k, n) };
    check_operand("A", a.len(), a_rows, a_cols, lda);
    check_operand("B", b.len(), b_rows, b_cols, ldb);
    check_operand("C", c.len(), m, n, ldc);
    // Strides of op(A) (m×k) and op(B) (k×n) in elements.
    let (rsa, csa) = if trans_a { (1, lda) } else { (lda, 1) };
    let (rsb, csb) = if trans_b { (1, ldb) } else { (ldb, 1) };
    // SAFETY: the checks above guarantee every index (i*rs + j*cs) touched for i < rows and
    // j < cols lies inside the slices; C is borrowed mutably so it aliases nothing.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        );
    }
}

/// `C[m, n] = op(A) · op(B)` (C overwritten, row-major with leading dimension `ldc`, at least
/// `m · ldc` long), split into row blocks that run in parallel when the product is large.
#[allow(clippy::too_many_arguments)]
pub fn par_sgemm(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    let threads = rayon::current_num_threads();
    if m < 2 || n == 0 || threads < 2 || m * n * k < (1 << 18) {
        sgemm_f32(trans_a, trans_b, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc);
        return;
    }
    let rows = m.div_ceil(threads);
    c[..m * ldc]
        .par_chunks_mut(rows * ldc)
        .enumerate()
        .for_each(|(blk, c)| {
            let i0 = blk * rows;
            let mb = c.len() / ldc;
            let a = if trans_a { &a[i0..] } else { &a[i0 * lda..] };
            sgemm_f32(trans_a, trans_b, mb, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc);
        });
}

/// Panics unless a `rows × cols` row-major matrix with leading dimension `ld` fits in `len`.
fn check_operand(what: &str, len: usize, rows: usize, cols: usize, ld: usize) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        ld >= cols,
        "sgemm_f32: leading dimension of {what} ({ld}) < its columns ({cols})"
    );
    assert!(
        (rows - 1) * ld + cols <= len,
        "sgemm_f32: {what} needs {} elements, slice has {len}",
        (rows - 1) * ld + cols
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn rand(r: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| r.normal()).collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn naive(
        ta: bool,
        tb: bool,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: &[f32],
        lda: usize,
        b: &[f32],
        ldb: usize,
        beta: f32,
        c: &mut [f32],
        ldc: usize,
    ) {
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    let av = if ta { a[p * lda + i] } else { a[i * lda + p] };
                    let bv = if tb { b[j * ldb + p] } else { b[p * ldb + j] };
                    s += av as f64 * bv as f64;
                }
                let old = if beta == 0.0 {
                    0.0
                } else {
                    beta * c[i * ldc + j]
                };
                c[i * ldc + j] = alpha * s as f32 + old;
            }
        }
    }

    #[test]
    fn matches_naive_all_transposes() {
        let mut r = Rng::new(11);
        // par_sgemm against sgemm_f32 on a product large enough to be split.
        let (m, n, k) = (67, 45, 130);
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = rand(&mut r, m * k);
            let b = rand(&mut r, n * k);
            let (lda, ldb) = (if ta { m } else { k }, if tb { k } else { n });
            let mut c1 = vec![f32::NAN; m * n];
            let mut c2 = vec![0.0; m * n];
            par_sgemm(ta, tb, m, n, k, &a, lda, &b, ldb, &mut c1, n);
            sgemm_f32(ta, tb, m, n, k, 1.0, &a, lda, &b, ldb, 0.0, &mut c2, n);
            assert_eq!(c1, c2);
        }
        for &(m, n, k) in &[(1, 1, 1), (7, 5, 3), (33, 17, 65), (4, 129, 9)] {
            for ta in [false, true] {
                for tb in [false, true] {
                    for &(alpha, beta) in &[(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25)] {
                        let lda = if ta { m } else { k } + 3;
                        let ldb = if tb { k } else { n } + 2;
                        let ldc = n + 1;
                        let a_rows = if ta { k } else { m };
                        let b_rows = if tb { n } else { k };
                        let a = rand(&mut r, a_rows * lda);
                        let b = rand(&mut r, b_rows * ldb);
                        let mut c = rand(&mut r, m * ldc);
                        if beta == 0.0 {
                            c[0] = f32::NAN;
                        }
                        let mut want = c.clone();
                        naive(
                            ta, tb, m, n, k, alpha, &a, lda, &b, ldb, beta, &mut want, ldc,
                        );
                        sgemm_f32(ta, tb, m, n, k, alpha, &a, lda, &b, ldb, beta, &mut c, ldc);
                        for i in 0..m {
                            for j in 0..n {
                                let (g, w) = (c[i * ldc + j], want[i * ldc + j]);
                                assert!(
                                    (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                                    "{m}x{n}x{k} ta={ta} tb={tb}: {g} vs {w}"
                                );
                            }
                            // Padding columns of C are untouched.
                            for j in n..ldc {
                                assert_eq!(c[i * ldc + j].to_bits(), want[i * ldc + j].to_bits());
                            }
                        }
                    }
                }
            }
        }
    }
}

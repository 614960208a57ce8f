//! Parity of the `matmul` family (kernels/matmul.cu and src/backend/cpu/matmul.rs).

use super::*;

#[test]
fn parity_sgemm_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(5);
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        for (m, n, k, alpha, beta) in [
            (70, 33, 37, 0.7, 0.3),
            (128, 64, 300, 1.0, 0.0),
            (1, 1, 1, 2.0, 1.0),
        ] {
            let (ar, ac) = if ta { (k, m) } else { (m, k) };
            let (br, bc) = if tb { (n, k) } else { (k, n) };
            let (lda, ldb, ldc) = (ac + 3, bc + 1, n + 2);
            let a = normal(&mut r, ar * lda);
            let b = normal(&mut r, br * ldb);
            let c0 = normal(&mut r, m * ldc);
            let mut c = c0.clone();
            cpu::matmul::sgemm_f32(ta, tb, m, n, k, alpha, &a, lda, &b, ldb, beta, &mut c, ldc);
            let mut gc = up(&g, &c0, &[c0.len()]);
            g.sgemm_f32(
                ta,
                tb,
                m,
                n,
                k,
                alpha,
                &up(&g, &a, &[a.len()]),
                lda,
                &up(&g, &b, &[b.len()]),
                ldb,
                beta,
                &mut gc,
                ldc,
            )
            .unwrap();
            assert_close(
                &format!("sgemm ta={ta} tb={tb} m{m} n{n} k{k} alpha {alpha} beta {beta}"),
                &down(&gc),
                &c,
            );
        }
    }
    // beta = 0 overwrites a C full of NaN.
    let (a, b) = (normal(&mut r, 6), normal(&mut r, 6));
    let mut c = vec![f32::NAN; 4];
    cpu::matmul::sgemm_f32(false, false, 2, 2, 3, 1.0, &a, 3, &b, 2, 0.0, &mut c, 2);
    let mut gc = up(&g, &[f32::NAN; 4], &[4]);
    g.sgemm_f32(
        false,
        false,
        2,
        2,
        3,
        1.0,
        &up(&g, &a, &[6]),
        3,
        &up(&g, &b, &[6]),
        2,
        0.0,
        &mut gc,
        2,
    )
    .unwrap();
    assert_close("sgemm beta=0 over NaN", &down(&gc), &c);
}

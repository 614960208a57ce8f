//! Parity of the `batchnorm` family (kernels/batchnorm.cu and src/backend/cpu/batchnorm.rs).

use super::*;

/// Random BN inputs: x (offset from 0 so the mean matters), dy, gamma, beta.
fn bn_inputs(
    r: &mut Rng,
    n: usize,
    c: usize,
    s: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let x = uniform(r, n * c * s, 0.5, 3.0);
    let dy = normal(r, n * c * s);
    let gamma = uniform(r, c, 0.5, 1.5);
    let beta = normal(r, c);
    (x, dy, gamma, beta)
}

const BN_SHAPES: [(usize, usize, usize); 3] = [(8, 6, 49), (64, 5, 1), (2, 3, 1000)];

#[test]
fn parity_bn_stats_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(6);
    for (n, c, s) in BN_SHAPES {
        let (x, ..) = bn_inputs(&mut r, n, c, s);
        let (mut mean, mut var) = (vec![0.0; c], vec![0.0; c]);
        cpu::batchnorm::bn_stats_f32(&x, n, c, s, &mut mean, &mut var);
        let (mut gm, mut gv) = (zeros(&g, &[c]), zeros(&g, &[c]));
        g.bn_stats_f32(&up(&g, &x, &[n, c, s]), n, c, s, &mut gm, &mut gv)
            .unwrap();
        assert_close(&format!("bn mean n{n} c{c} s{s}"), &down(&gm), &mean);
        assert_close(&format!("bn var n{n} c{c} s{s}"), &down(&gv), &var);
    }
}

#[test]
fn parity_bn_invstd_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(7);
    let var = uniform(&mut r, 300, 0.0, 4.0);
    let mut inv = vec![0.0; 300];
    cpu::batchnorm::bn_invstd_f32(&var, 1e-5, &mut inv);
    let mut gi = zeros(&g, &[300]);
    g.bn_invstd_f32(&up(&g, &var, &[300]), 1e-5, &mut gi)
        .unwrap();
    assert_close("bn invstd", &down(&gi), &inv);
}

#[test]
fn parity_bn_fwd_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(8);
    for (n, c, s) in BN_SHAPES {
        let (x, _, gamma, beta) = bn_inputs(&mut r, n, c, s);
        let mean = uniform(&mut r, c, 1.0, 2.0);
        let invstd = uniform(&mut r, c, 0.5, 2.0);
        let mut y = vec![0.0; x.len()];
        cpu::batchnorm::bn_fwd_f32(&x, n, c, s, &mean, &invstd, &gamma, &beta, &mut y);
        let mut gy = zeros(&g, &[n, c, s]);
        g.bn_fwd_f32(
            &up(&g, &x, &[n, c, s]),
            n,
            c,
            s,
            &up(&g, &mean, &[c]),
            &up(&g, &invstd, &[c]),
            &up(&g, &gamma, &[c]),
            &up(&g, &beta, &[c]),
            &mut gy,
        )
        .unwrap();
        assert_close(&format!("bn fwd n{n} c{c} s{s}"), &down(&gy), &y);
    }
}

#[test]
fn parity_bn_bwd_reduce_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(9);
    for (n, c, s) in BN_SHAPES {
        let (x, dy, ..) = bn_inputs(&mut r, n, c, s);
        let mean = uniform(&mut r, c, 1.0, 2.0);
        let invstd = uniform(&mut r, c, 0.5, 2.0);
        let (mut sd, mut sdx) = (vec![0.0; c], vec![0.0; c]);
        cpu::batchnorm::bn_bwd_reduce_f32(&dy, &x, n, c, s, &mean, &invstd, &mut sd, &mut sdx);
        let (mut gsd, mut gsdx) = (zeros(&g, &[c]), zeros(&g, &[c]));
        g.bn_bwd_reduce_f32(
            &up(&g, &dy, &[n, c, s]),
            &up(&g, &x, &[n, c, s]),
            n,
            c,
            s,
            &up(&g, &mean, &[c]),
            &up(&g, &invstd, &[c]),
            &mut gsd,
            &mut gsdx,
        )
        .unwrap();
        assert_close(&format!("bn sum_dy n{n} c{c} s{s}"), &down(&gsd), &sd);
        assert_close(
            &format!("bn sum_dy_xhat n{n} c{c} s{s}"),
            &down(&gsdx),
            &sdx,
        );
    }
}

#[test]
fn parity_bn_bwd_dx_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(10);
    for (n, c, s) in BN_SHAPES {
        let (x, dy, gamma, _) = bn_inputs(&mut r, n, c, s);
        let mean = uniform(&mut r, c, 1.0, 2.0);
        let invstd = uniform(&mut r, c, 0.5, 2.0);
        let sd = normal(&mut r, c);
        let sdx = normal(&mut r, c);
        let mut dx = vec![0.0; x.len()];
        cpu::batchnorm::bn_bwd_dx_f32(&dy, &x, n, c, s, &mean, &invstd, &gamma, &sd, &sdx, &mut dx);
        let mut gdx = zeros(&g, &[n, c, s]);
        g.bn_bwd_dx_f32(
            &up(&g, &dy, &[n, c, s]),
            &up(&g, &x, &[n, c, s]),
            n,
            c,
            s,
            &up(&g, &mean, &[c]),
            &up(&g, &invstd, &[c]),
            &up(&g, &gamma, &[c]),
            &up(&g, &sd, &[c]),
            &up(&g, &sdx, &[c]),
            &mut gdx,
        )
        .unwrap();
        assert_close(&format!("bn dx n{n} c{c} s{s}"), &down(&gdx), &dx);
    }
}

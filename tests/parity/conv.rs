//! Parity of the `conv` family (kernels/conv.cu and src/backend/cpu/conv.rs).

use super::*;

#[test]
fn parity_im2col_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(1);
    for p in [
        conv_params(1, 3, 11, 9, 4, 3, 2, 1),
        conv_params(1, 5, 8, 8, 2, 1, 1, 0),
        conv_params(1, 2, 7, 6, 3, 5, 1, 2),
    ] {
        let x = normal(&mut r, (p.c_in * p.h_in * p.w_in) as usize);
        let mut col = vec![0.0; p.col_rows() * p.col_cols()];
        cpu::conv::im2col_f32(&x, &p, &mut col);
        let mut gcol = zeros(&g, &[p.col_rows(), p.col_cols()]);
        g.im2col_f32(&up(&g, &x, &[x.len()]), &p, &mut gcol)
            .unwrap();
        assert_close(&format!("im2col {p:?}"), &down(&gcol), &col);
    }
}

#[test]
fn parity_col2im_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(2);
    for p in [
        conv_params(1, 3, 11, 9, 4, 3, 2, 1),
        conv_params(1, 4, 9, 9, 2, 3, 1, 1),
        conv_params(1, 2, 10, 7, 3, 2, 3, 1),
    ] {
        let col = normal(&mut r, p.col_rows() * p.col_cols());
        let mut x = vec![0.0; (p.c_in * p.h_in * p.w_in) as usize];
        cpu::conv::col2im_f32(&col, &p, &mut x);
        let mut gx = up(&g, &vec![f32::NAN; x.len()], &[x.len()]);
        g.col2im_f32(&up(&g, &col, &[col.len()]), &p, &mut gx)
            .unwrap();
        assert_close(&format!("col2im {p:?}"), &down(&gx), &x);
    }
}

#[test]
fn parity_bias_add_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(3);
    let (n, c, s) = (3, 5, 37);
    let y0 = normal(&mut r, n * c * s);
    let bias = normal(&mut r, c);
    let mut y = y0.clone();
    cpu::conv::bias_add_f32(&mut y, &bias, n, c, s);
    let mut gy = up(&g, &y0, &[n, c, s]);
    g.bias_add_f32(&mut gy, &up(&g, &bias, &[c]), n, c, s)
        .unwrap();
    assert_close("bias_add", &down(&gy), &y);
}

#[test]
fn parity_channel_sum_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(4);
    // Small n·s (a thread per channel) and large n·s (a block per channel).
    for (n, c, s) in [(4, 300, 1), (16, 7, 333), (2, 3, 20)] {
        let x = normal(&mut r, n * c * s);
        let mut out = vec![0.0; c];
        cpu::conv::channel_sum_f32(&x, n, c, s, &mut out);
        let mut gout = zeros(&g, &[c]);
        g.channel_sum_f32(&up(&g, &x, &[n, c, s]), n, c, s, &mut gout)
            .unwrap();
        assert_close(&format!("channel_sum n{n} c{c} s{s}"), &down(&gout), &out);
    }
}

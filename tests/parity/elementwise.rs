//! Parity of the `elementwise` family (kernels/elementwise.cu and src/backend/cpu/elementwise.rs).

use super::*;

const EW_LEN: usize = 100_003;

#[test]
fn parity_relu_fwd_f32() {
    let g = gpu_or_skip!();
    let mut x = normal(&mut Rng::new(11), EW_LEN);
    x[17] = f32::NAN;
    let mut y = vec![0.0; EW_LEN];
    cpu::elementwise::relu_fwd_f32(&x, &mut y);
    let mut gy = zeros(&g, &[EW_LEN]);
    g.relu_fwd_f32(&up(&g, &x, &[EW_LEN]), &mut gy).unwrap();
    assert_close("relu fwd", &down(&gy), &y);
}

#[test]
fn parity_relu_bwd_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(12);
    let (dy, y) = (normal(&mut r, EW_LEN), normal(&mut r, EW_LEN));
    let mut dx = vec![0.0; EW_LEN];
    cpu::elementwise::relu_bwd_f32(&dy, &y, &mut dx);
    let mut gdx = zeros(&g, &[EW_LEN]);
    g.relu_bwd_f32(&up(&g, &dy, &[EW_LEN]), &up(&g, &y, &[EW_LEN]), &mut gdx)
        .unwrap();
    assert_close("relu bwd", &down(&gdx), &dx);
}

#[test]
fn parity_add_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(13);
    let (a, b) = (normal(&mut r, EW_LEN), normal(&mut r, EW_LEN));
    let mut c = vec![0.0; EW_LEN];
    cpu::elementwise::add_f32(&a, &b, &mut c);
    let mut gc = zeros(&g, &[EW_LEN]);
    g.add_f32(&up(&g, &a, &[EW_LEN]), &up(&g, &b, &[EW_LEN]), &mut gc)
        .unwrap();
    assert_close("add", &down(&gc), &c);
}

#[test]
fn parity_mul_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(14);
    let (a, b) = (normal(&mut r, EW_LEN), normal(&mut r, EW_LEN));
    let mut c = vec![0.0; EW_LEN];
    cpu::elementwise::mul_f32(&a, &b, &mut c);
    let mut gc = zeros(&g, &[EW_LEN]);
    g.mul_f32(&up(&g, &a, &[EW_LEN]), &up(&g, &b, &[EW_LEN]), &mut gc)
        .unwrap();
    assert_close("mul", &down(&gc), &c);
}

#[test]
fn parity_axpby_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(15);
    let (x, y0) = (normal(&mut r, EW_LEN), normal(&mut r, EW_LEN));
    let mut y = y0.clone();
    cpu::elementwise::axpby_f32(0.3, &x, -1.7, &mut y);
    let mut gy = up(&g, &y0, &[EW_LEN]);
    g.axpby_f32(0.3, &up(&g, &x, &[EW_LEN]), -1.7, &mut gy)
        .unwrap();
    assert_close("axpby", &down(&gy), &y);
}

#[test]
fn parity_sum_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(16);
    for len in [0, 1, 1000, 4096, 1_000_003] {
        let x = normal(&mut r, len);
        let want = cpu::elementwise::sum_f32(&x);
        let got = g.sum_f32(&up(&g, &x, &[len])).unwrap();
        // Sums of ±1 values cancel: compare against the sum of magnitudes' scale.
        let scale = (len as f32).sqrt().max(1.0);
        assert!(
            (got - want).abs() <= 1e-4 * scale.max(want.abs()),
            "sum of {len}: cuda {got} vs cpu {want}"
        );
    }
}

//! Parity of the `optim` family (kernels/optim.cu and src/backend/cpu/optim.rs).

use super::*;

#[test]
fn parity_sgd_step_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(23);
    let len = 50_001;
    for nesterov in [0, 1] {
        for masked in [false, true] {
            let p = SgdParams {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 5e-4,
                nesterov,
            };
            let (w0, gr, m0) = (
                normal(&mut r, len),
                normal(&mut r, len),
                normal(&mut r, len),
            );
            let mk = mask(&mut r, len, 0.2);
            let (mut w, mut m) = (w0.clone(), m0.clone());
            cpu::optim::sgd_step_f32(&mut w, &gr, &mut m, masked.then_some(&mk[..]), &p);
            let (mut gw, mut gm) = (up(&g, &w0, &[len]), up(&g, &m0, &[len]));
            let gmask = up(&g, &mk, &[len]);
            g.sgd_step_f32(
                &mut gw,
                &up(&g, &gr, &[len]),
                &mut gm,
                masked.then_some(&gmask),
                &p,
            )
            .unwrap();
            let what = format!("sgd nesterov={nesterov} masked={masked}");
            assert_close(&format!("{what}: w"), &down(&gw), &w);
            assert_close(&format!("{what}: m"), &down(&gm), &m);
        }
    }
}

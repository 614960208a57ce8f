//! Parity of the `pool` family (kernels/pool.cu and src/backend/cpu/pool.rs).

use super::*;

/// Pooling cases: (n, c, h, w, k, stride, pad).
const POOLS: [(usize, usize, usize, usize, usize, usize, usize); 4] = [
    (2, 3, 8, 8, 2, 2, 0),
    (2, 2, 7, 9, 3, 2, 1),
    (1, 3, 5, 5, 3, 1, 1),
    (2, 2, 6, 5, 2, 1, 1),
];

#[test]
fn parity_maxpool2d_fwd_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(17);
    for case in POOLS {
        let p = pool_params(case);
        let lin = p.x_shape().iter().product::<usize>();
        let lout = p.y_shape().iter().product::<usize>();
        let mut x = tied(&mut r, lin);
        x[3] = f32::NAN;
        let (mut y, mut idx) = (vec![0.0; lout], vec![0.0; lout]);
        cpu::pool::maxpool2d_fwd_f32(&x, &p, &mut y, &mut idx);
        let (mut gy, mut gi) = (zeros(&g, &p.y_shape()), zeros(&g, &p.y_shape()));
        g.maxpool2d_fwd_f32(&up(&g, &x, &p.x_shape()), &p, &mut gy, &mut gi)
            .unwrap();
        assert_close(&format!("maxpool y {p:?}"), &down(&gy), &y);
        assert_eq!(down(&gi), idx, "maxpool argmax {p:?}");
    }
}

#[test]
fn parity_maxpool2d_bwd_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(18);
    for case in POOLS {
        let p = pool_params(case);
        let lin = p.x_shape().iter().product::<usize>();
        let lout = p.y_shape().iter().product::<usize>();
        let x = tied(&mut r, lin);
        let (mut y, mut idx) = (vec![0.0; lout], vec![0.0; lout]);
        cpu::pool::maxpool2d_fwd_f32(&x, &p, &mut y, &mut idx);
        let dy = normal(&mut r, lout);
        let mut dx = vec![0.0; lin];
        cpu::pool::maxpool2d_bwd_f32(&dy, &idx, &p, &mut dx);
        let mut gdx = up(&g, &vec![f32::NAN; lin], &p.x_shape());
        g.maxpool2d_bwd_f32(
            &up(&g, &dy, &p.y_shape()),
            &up(&g, &idx, &p.y_shape()),
            &p,
            &mut gdx,
        )
        .unwrap();
        assert_close(&format!("maxpool dx {p:?}"), &down(&gdx), &dx);
    }
}

#[test]
fn parity_avgpool2d_fwd_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(19);
    for case in POOLS {
        let p = pool_params(case);
        let lin = p.x_shape().iter().product::<usize>();
        let x = normal(&mut r, lin);
        let mut y = vec![0.0; p.y_shape().iter().product::<usize>()];
        cpu::pool::avgpool2d_fwd_f32(&x, &p, &mut y);
        let mut gy = zeros(&g, &p.y_shape());
        g.avgpool2d_fwd_f32(&up(&g, &x, &p.x_shape()), &p, &mut gy)
            .unwrap();
        assert_close(&format!("avgpool y {p:?}"), &down(&gy), &y);
    }
}

#[test]
fn parity_avgpool2d_bwd_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(20);
    for case in POOLS {
        let p = pool_params(case);
        let lin = p.x_shape().iter().product::<usize>();
        let dy = normal(&mut r, p.y_shape().iter().product::<usize>());
        let mut dx = vec![0.0; lin];
        cpu::pool::avgpool2d_bwd_f32(&dy, &p, &mut dx);
        let mut gdx = up(&g, &vec![f32::NAN; lin], &p.x_shape());
        g.avgpool2d_bwd_f32(&up(&g, &dy, &p.y_shape()), &p, &mut gdx)
            .unwrap();
        assert_close(&format!("avgpool dx {p:?}"), &down(&gdx), &dx);
    }
}

//! Backend-level tests of the CPU backend: shape validation (errors, never panics) and the
//! tensor-level wrappers against their slice twins.

use super::*;
use crate::rng::Rng;

fn rand(r: &mut Rng, shape: &[usize]) -> Tensor {
    let v = (0..numel(shape)).map(|_| r.normal()).collect();
    Tensor::from_vec(v, shape).unwrap()
}

fn shape_err<T>(r: Result<T>, needle: &str) {
    match r {
        Err(Error::Shape(m)) => assert!(m.contains(needle), "message {m:?} lacks {needle:?}"),
        Err(e) => panic!("expected a shape error, got {e}"),
        Ok(_) => panic!("expected a shape error mentioning {needle:?}"),
    }
}

#[test]
fn conv_shape_errors_name_the_argument() {
    let mut r = Rng::new(1);
    let p = Conv2dParams::new(2, 3, 5, 5, 4, 3, 1, 1).unwrap();
    let x = rand(&mut r, &p.x_shape());
    let w = rand(&mut r, &p.w_shape());
    let bad_w = rand(&mut r, &[4, 3, 3, 2]);
    shape_err(CPU.conv2d_fwd(&x, &bad_w, None, &p), "weight");
    shape_err(CPU.conv2d_fwd(&w, &w, None, &p), "x");
    shape_err(
        CPU.conv2d_fwd(&x, &w, Some(&rand(&mut r, &[3])), &p),
        "bias",
    );
    let y = CPU.conv2d_fwd(&x, &w, None, &p).unwrap();
    shape_err(CPU.conv2d_bwd_input(&x, &w, &p), "dy");
    shape_err(CPU.conv2d_bwd_weight(&x, &y, &p, Some(&x)), "mask");
    let mut q = p;
    q.stride = 0;
    shape_err(
        CPU.conv2d_fwd(&x, &w, None, &q),
        "inconsistent convolution parameters",
    );
    q = p;
    q.h_out = 7;
    shape_err(
        CPU.conv2d_fwd(&x, &w, None, &q),
        "inconsistent convolution parameters",
    );
}

#[test]
fn masked_weight_gradients_are_zero_off_mask() {
    let mut r = Rng::new(2);
    let p = Conv2dParams::new(3, 2, 6, 6, 3, 3, 2, 1).unwrap();
    let x = rand(&mut r, &p.x_shape());
    let dy = rand(&mut r, &p.y_shape());
    let mv: Vec<f32> = (0..numel(&p.w_shape())).map(|i| (i % 2) as f32).collect();
    let mask = Tensor::from_vec(mv.clone(), &p.w_shape()).unwrap();
    let dense = CPU
        .conv2d_bwd_weight(&x, &dy, &p, None)
        .unwrap()
        .to_vec()
        .unwrap();
    let masked = CPU
        .conv2d_bwd_weight(&x, &dy, &p, Some(&mask))
        .unwrap()
        .to_vec()
        .unwrap();
    for i in 0..mv.len() {
        assert_eq!(masked[i], dense[i] * mv[i]);
    }
    let xl = rand(&mut r, &[5, 7]);
    let dyl = rand(&mut r, &[5, 3]);
    let ml = Tensor::from_vec(
        (0..21).map(|i| (i % 3 == 0) as u8 as f32).collect(),
        &[3, 7],
    )
    .unwrap();
    let d = CPU
        .linear_bwd_weight(&xl, &dyl, Some(&ml))
        .unwrap()
        .to_vec()
        .unwrap();
    assert!(d.iter().enumerate().all(|(i, &v)| i % 3 == 0 || v == 0.0));
}

#[test]
fn linear_matches_loops() {
    let mut r = Rng::new(3);
    let (n, di, dout) = (70, 65, 130);
    let x = rand(&mut r, &[n, di]);
    let w = rand(&mut r, &[dout, di]);
    let b = rand(&mut r, &[dout]);
    let dy = rand(&mut r, &[n, dout]);
    let (xs, ws, bs, dys) = (
        x.to_vec().unwrap(),
        w.to_vec().unwrap(),
        b.to_vec().unwrap(),
        dy.to_vec().unwrap(),
    );
    let y = CPU.linear_fwd(&x, &w, Some(&b)).unwrap().to_vec().unwrap();
    let dx = CPU.linear_bwd_input(&dy, &w).unwrap().to_vec().unwrap();
    let dw = CPU
        .linear_bwd_weight(&x, &dy, None)
        .unwrap()
        .to_vec()
        .unwrap();
    let tol = |v: f64| 1e-4 * (1.0 + v.abs());
    for i in 0..n {
        for o in 0..dout {
            let s: f64 = (0..di)
                .map(|j| xs[i * di + j] as f64 * ws[o * di + j] as f64)
                .sum();
            let want = s + bs[o] as f64;
            assert!((y[i * dout + o] as f64 - want).abs() < tol(want));
        }
        for j in 0..di {
            let s: f64 = (0..dout)
                .map(|o| dys[i * dout + o] as f64 * ws[o * di + j] as f64)
                .sum();
            assert!((dx[i * di + j] as f64 - s).abs() < tol(s));
        }
    }
    for o in 0..dout {
        for j in 0..di {
            let s: f64 = (0..n)
                .map(|i| dys[i * dout + o] as f64 * xs[i * di + j] as f64)
                .sum();
            assert!((dw[o * di + j] as f64 - s).abs() < tol(s));
        }
    }
    shape_err(CPU.linear_fwd(&x, &dy, None), "weight");
    shape_err(
        CPU.linear_bwd_weight(&x, &rand(&mut r, &[4, dout]), None),
        "dy",
    );
}

#[test]
fn cross_entropy_backend() {
    let logits = Tensor::from_vec(vec![1.0, 2.0, 3.0, 0.0, 0.0, 0.0], &[2, 3]).unwrap();
    let labels = Tensor::from_vec(vec![2.0, 0.0], &[2]).unwrap();
    let (loss, lp) = CPU.cross_entropy_fwd(&logits, &labels).unwrap();
    let lse = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
    let want = ((lse - 3.0) + 3f64.ln()) / 2.0;
    assert!((loss.scalar().unwrap() as f64 - want).abs() < 1e-6);
    let d = CPU
        .cross_entropy_bwd(&lp, &labels, 2.0)
        .unwrap()
        .to_vec()
        .unwrap();
    // scale / n = 1: softmax - onehot.
    assert!((d[3] as f64 - (1.0 / 3.0 - 1.0)).abs() < 1e-6);
    assert!((d.iter().sum::<f32>()).abs() < 1e-6);
    let bad = Tensor::from_vec(vec![3.0, 0.0], &[2]).unwrap();
    shape_err(CPU.cross_entropy_fwd(&logits, &bad), "labels[0]");
    let frac = Tensor::from_vec(vec![0.0, 0.5], &[2]).unwrap();
    shape_err(CPU.cross_entropy_bwd(&lp, &frac, 1.0), "labels[1]");
}

#[test]
fn batchnorm_backend_handles_1d_and_2d() {
    let mut r = Rng::new(4);
    for shape in [vec![6, 5], vec![3, 4, 3, 5]] {
        let x = rand(&mut r, &shape);
        let c = shape[1];
        let gamma = rand(&mut r, &[c]);
        let beta = rand(&mut r, &[c]);
        let f = CPU.batchnorm_fwd_train(&x, &gamma, &beta, 1e-5).unwrap();
        let ev = CPU
            .batchnorm_fwd_eval(&x, &gamma, &beta, &f.mean, &f.var, 1e-5)
            .unwrap();
        let (a, b) = (f.y.to_vec().unwrap(), ev.to_vec().unwrap());
        assert!(a.iter().zip(&b).all(|(a, b)| (a - b).abs() < 1e-5));
        let dy = rand(&mut r, &shape);
        let g = CPU
            .batchnorm_bwd(&dy, &x, &gamma, &f.mean, &f.invstd)
            .unwrap();
        // dx is orthogonal to constants per channel (Σ dx = 0 per channel).
        let s: usize = shape[2..].iter().product();
        let dx = g.dx.to_vec().unwrap();
        for ch in 0..c {
            let tot: f32 = (0..shape[0])
                .flat_map(|i| (0..s).map(move |j| (i * c + ch) * s + j))
                .map(|k| dx[k])
                .sum();
            assert!(tot.abs() < 1e-4, "{tot}");
        }
        assert_eq!(g.dbeta.shape(), &[c]);
        shape_err(
            CPU.batchnorm_fwd_train(&x, &rand(&mut r, &[c + 1]), &beta, 1e-5),
            "gamma",
        );
    }
    shape_err(
        CPU.batchnorm_fwd_train(
            &rand(&mut r, &[4]),
            &rand(&mut r, &[4]),
            &rand(&mut r, &[4]),
            1e-5,
        ),
        "2 dimensions",
    );
}

#[test]
fn pool_and_elementwise_backend() {
    let mut r = Rng::new(5);
    let p = Pool2dParams::new(2, 3, 6, 5, 2, 2, 0).unwrap();
    let x = rand(&mut r, &p.x_shape());
    let (y, idx) = CPU.maxpool2d_fwd(&x, &p).unwrap();
    let dx = CPU.maxpool2d_bwd(&y, &idx, &p).unwrap();
    assert_eq!(dx.shape(), &p.x_shape());
    let bad_idx = Tensor::from_vec(vec![-1.0; idx.numel()], idx.shape()).unwrap();
    shape_err(CPU.maxpool2d_bwd(&y, &bad_idx, &p), "idx");
    shape_err(CPU.avgpool2d_fwd(&y, &p), "x");
    let a = rand(&mut r, &[3, 4]);
    shape_err(CPU.add(&a, &x), "b shape");
    let mut yy = a.clone();
    CPU.axpby(2.0, &a, 1.0, &mut yy).unwrap();
    let (av, yv) = (a.to_vec().unwrap(), yy.to_vec().unwrap());
    assert!(av.iter().zip(&yv).all(|(a, y)| *y == 3.0 * a));
    let mut w = rand(&mut r, &[3, 4]);
    let mut m = CPU.zeros(&[3, 4]).unwrap();
    let sp = SgdParams {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.0,
        nesterov: 0,
    };
    shape_err(CPU.sgd_step(&mut w, &x, &mut m, None, &sp), "g");
    CPU.sgd_step(&mut w, &a, &mut m, None, &sp).unwrap();
    assert_eq!(m.to_vec().unwrap(), av);
}

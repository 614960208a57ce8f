//! The fused batch-norm kernels against the composition of the unfused ones: bit-identical
//! values and gradients, on odd shapes, with and without residual and ReLU.

use super::*;
use crate::backend::cpu::batchnorm::{bn_bwd_dx_f32, bn_bwd_reduce_f32, bn_fwd_f32};
use crate::backend::cpu::elementwise::{add_f32, relu_bwd_f32, relu_fwd_f32};
use crate::backend::fused::bn_act_fwd_composed;
use crate::backend::Backend;
use crate::rng::Rng;

fn rand(r: &mut Rng, n: usize, scale: f32, shift: f32) -> Vec<f32> {
    (0..n).map(|_| r.normal() * scale + shift).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

const SHAPES: [(usize, usize, usize); 4] = [(3, 4, 17), (2, 3, 1), (5, 2, 64), (1, 1, 1)];

/// Random input, dy, residual, gamma (some negative) and beta for one shape.
struct Case {
    x: Vec<f32>,
    dy: Vec<f32>,
    res: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

fn case(seed: u64, (n, c, s): (usize, usize, usize)) -> Case {
    let mut r = Rng::new(seed);
    let len = n * c * s;
    Case {
        x: rand(&mut r, len, 2.0, 0.3),
        dy: rand(&mut r, len, 1.0, 0.0),
        res: rand(&mut r, len, 1.0, 0.0),
        gamma: rand(&mut r, c, 1.0, 0.2),
        beta: rand(&mut r, c, 0.5, 0.0),
    }
}

#[test]
fn forward_kernel_matches_unfused_ops_bit_for_bit() {
    for (i, &shape) in SHAPES.iter().enumerate() {
        let k = case(i as u64, shape);
        let (n, c, s) = shape;
        let (mut mean, mut var, mut inv) = (vec![0.0; c], vec![0.0; c], vec![0.0; c]);
        bn_stats_f32(&k.x, n, c, s, &mut mean, &mut var);
        bn_invstd_f32(&var, 1e-5, &mut inv);
        let p = BnAffine {
            mean: &mean,
            invstd: &inv,
            gamma: &k.gamma,
            beta: &k.beta,
        };
        for residual in [false, true] {
            for relu in [false, true] {
                let mut want = vec![0.0; k.x.len()];
                bn_fwd_f32(&k.x, n, c, s, &mean, &inv, &k.gamma, &k.beta, &mut want);
                if residual {
                    let bn = want.clone();
                    add_f32(&bn, &k.res, &mut want);
                }
                if relu {
                    let pre = want.clone();
                    relu_fwd_f32(&pre, &mut want);
                }
                let mut got = vec![f32::NAN; k.x.len()];
                let res = residual.then_some(&k.res[..]);
                bn_act_fwd_f32(&k.x, shape, &p, res, relu, &mut got);
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{shape:?} res {residual} relu {relu}"
                );
            }
        }
    }
}

#[test]
fn relu_backward_kernels_match_unfused_ops_bit_for_bit() {
    for (i, &shape) in SHAPES.iter().enumerate() {
        let k = case(10 + i as u64, shape);
        let (n, c, s) = shape;
        let (mut mean, mut var, mut inv) = (vec![0.0; c], vec![0.0; c], vec![0.0; c]);
        bn_stats_f32(&k.x, n, c, s, &mut mean, &mut var);
        bn_invstd_f32(&var, 1e-5, &mut inv);
        let p = BnAffine {
            mean: &mean,
            invstd: &inv,
            gamma: &k.gamma,
            beta: &k.beta,
        };
        // Unfused: y = relu(bn(x)); g = relu_bwd(dy, y); batch norm's backward on g.
        let (mut bn, mut y, mut g) = (
            vec![0.0; k.x.len()],
            vec![0.0; k.x.len()],
            vec![0.0; k.x.len()],
        );
        bn_fwd_f32(&k.x, n, c, s, &mean, &inv, &k.gamma, &k.beta, &mut bn);
        relu_fwd_f32(&bn, &mut y);
        relu_bwd_f32(&k.dy, &y, &mut g);
        assert!(g.contains(&0.0) && g.iter().any(|&v| v != 0.0) || k.x.len() == 1);
        let (mut sd, mut sdx) = (vec![0.0; c], vec![0.0; c]);
        bn_bwd_reduce_f32(&g, &k.x, n, c, s, &mean, &inv, &mut sd, &mut sdx);
        let mut dx = vec![0.0; k.x.len()];
        bn_bwd_dx_f32(&g, &k.x, n, c, s, &mean, &inv, &k.gamma, &sd, &sdx, &mut dx);
        // Fused.
        let (mut fsd, mut fsdx) = (vec![f32::NAN; c], vec![f32::NAN; c]);
        bn_relu_bwd_reduce_f32(&k.dy, &k.x, shape, &p, &mut fsd, &mut fsdx);
        let mut fdx = vec![f32::NAN; k.x.len()];
        bn_relu_bwd_dx_f32(&k.dy, &k.x, shape, &p, (&fsd, &fsdx), &mut fdx);
        assert_eq!(bits(&fsd), bits(&sd), "{shape:?} sum_dy");
        assert_eq!(bits(&fsdx), bits(&sdx), "{shape:?} sum_dy_xhat");
        assert_eq!(bits(&fdx), bits(&dx), "{shape:?} dx");
    }
}

fn tensor(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape).unwrap()
}

fn same(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(
        bits(&a.to_vec().unwrap()),
        bits(&b.to_vec().unwrap()),
        "{what}"
    );
}

#[test]
fn backend_fused_ops_match_the_default_composition() {
    let k = case(21, (4, 3, 10));
    let shape = [4, 3, 2, 5];
    let (x, dy, res) = (
        tensor(&k.x, &shape),
        tensor(&k.dy, &shape),
        tensor(&k.res, &shape),
    );
    let (gamma, beta) = (tensor(&k.gamma, &[3]), tensor(&k.beta, &[3]));
    for residual in [false, true] {
        for relu in [false, true] {
            let what = format!("residual {residual} relu {relu}");
            let r = residual.then_some(&res);
            let f = CPU
                .bn_act_fwd_train(&x, &gamma, &beta, r, relu, 1e-5)
                .unwrap();
            let w = bn_act_fwd_composed(&CPU, &x, &gamma, &beta, r, relu, 1e-5).unwrap();
            for (a, b, t) in [
                (&f.y, &w.y, "y"),
                (&f.mean, &w.mean, "mean"),
                (&f.var, &w.var, "var"),
            ] {
                same(a, b, &format!("{what}: {t}"));
            }
            same(&f.invstd, &w.invstd, &format!("{what}: invstd"));
            let saved = BnActSaved {
                x: x.clone(),
                y: f.y.clone(),
                gamma: gamma.clone(),
                beta: beta.clone(),
                mean: f.mean.clone(),
                invstd: f.invstd.clone(),
            };
            let act = BnAct { residual, relu };
            let got = CPU.bn_act_bwd(&dy, &saved, act).unwrap();
            let want = bn_act_bwd_composed(&CPU, &dy, &saved, act).unwrap();
            same(&got.bn.dx, &want.bn.dx, &format!("{what}: dx"));
            same(&got.bn.dgamma, &want.bn.dgamma, &format!("{what}: dgamma"));
            same(&got.bn.dbeta, &want.bn.dbeta, &format!("{what}: dbeta"));
            assert_eq!(got.dresidual.is_some(), residual, "{what}");
            if let (Some(a), Some(b)) = (&got.dresidual, &want.dresidual) {
                same(a, b, &format!("{what}: dresidual"));
            }
        }
    }
}

#[test]
fn residual_of_another_shape_is_an_error_naming_it() {
    let x = tensor(&[1.0; 12], &[2, 3, 2]);
    let r = tensor(&[1.0; 6], &[2, 3, 1]);
    let (g, b) = (tensor(&[1.0; 3], &[3]), tensor(&[0.0; 3], &[3]));
    let e = CPU
        .bn_act_fwd_train(&x, &g, &b, Some(&r), true, 1e-5)
        .unwrap_err();
    assert!(e.to_string().contains("residual"), "{e}");
    // The composed default (what other backends run) names it the same way.
    let e = bn_act_fwd_composed(&CPU, &x, &g, &b, Some(&r), true, 1e-5).unwrap_err();
    assert!(e.to_string().contains("residual"), "{e}");
}

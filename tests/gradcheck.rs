//! Every op's backward against central finite differences (CPU backend), on awkward shapes:
//! odd sizes, stride 2, padding, overlapping pooling windows, batch norm in training mode.

use suptickets::autograd::{check_gradients, Tape, Var};
use suptickets::rng::Rng;
use suptickets::{Result, Tensor};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    let mut r = Rng::new(seed);
    let n: usize = shape.iter().product();
    Tensor::from_vec((0..n).map(|_| r.normal()).collect(), shape).unwrap()
}

/// Central differences with step 3e-3 (ops with kinks: ReLU, max-pool).
fn check<F: Fn(&mut Tape, &[Var]) -> Result<Var>>(what: &str, f: F, inputs: &[Tensor]) {
    check_eps(what, f, inputs, 3e-3)
}

/// Ops linear in each input (conv, linear, pools, add) are exact under any step, so a larger
/// step keeps f32 rounding in the loss from dominating.
fn check_linear<F: Fn(&mut Tape, &[Var]) -> Result<Var>>(what: &str, f: F, inputs: &[Tensor]) {
    check_eps(what, f, inputs, 1e-2)
}

fn check_eps<F: Fn(&mut Tape, &[Var]) -> Result<Var>>(
    what: &str,
    f: F,
    inputs: &[Tensor],
    eps: f32,
) {
    let r = check_gradients(f, inputs, eps, 1e-2, 60, 11).unwrap();
    println!(
        "{what}: checked {} coordinates, max rel err {:.2e} ({})",
        r.checked, r.max_rel_err, r.worst
    );
    assert!(r.checked > 0);
    assert!(
        r.max_rel_err < 2e-2,
        "{what}: gradient mismatch, max rel err {:.3e} at {}",
        r.max_rel_err,
        r.worst
    );
}

#[test]
fn conv2d_stride2_pad1_bias() {
    check_linear(
        "conv s2 p1",
        |t, v| t.conv2d(v[0], v[1], Some(v[2]), 2, 1, None),
        &[
            randn(&[2, 3, 7, 6], 1),
            randn(&[4, 3, 3, 3], 2),
            randn(&[4], 3),
        ],
    );
}

#[test]
fn conv2d_stride1_pad0_no_bias() {
    check_linear(
        "conv s1 p0",
        |t, v| t.conv2d(v[0], v[1], None, 1, 0, None),
        &[randn(&[2, 2, 5, 5], 4), randn(&[3, 2, 3, 3], 5)],
    );
}

#[test]
fn conv2d_1x1_stride2() {
    check_linear(
        "conv 1x1 s2",
        |t, v| t.conv2d(v[0], v[1], None, 2, 0, None),
        &[randn(&[2, 3, 6, 6], 6), randn(&[5, 3, 1, 1], 7)],
    );
}

#[test]
fn conv2d_7x7_stride2_pad3() {
    check_linear(
        "conv 7x7 s2 p3",
        |t, v| t.conv2d(v[0], v[1], None, 2, 3, None),
        &[randn(&[1, 2, 9, 9], 8), randn(&[2, 2, 7, 7], 9)],
    );
}

#[test]
fn linear_with_bias() {
    check_linear(
        "linear",
        |t, v| t.linear(v[0], v[1], Some(v[2]), None),
        &[randn(&[5, 7], 10), randn(&[3, 7], 11), randn(&[3], 12)],
    );
}

#[test]
fn batchnorm2d_train() {
    check(
        "bn2d train",
        |t, v| Ok(t.batchnorm_train(v[0], v[1], v[2], 1e-5)?.0),
        &[randn(&[4, 3, 3, 2], 13), randn(&[3], 14), randn(&[3], 15)],
    );
}

#[test]
fn batchnorm_relu_fused_train() {
    // A small step: batch norm moves every pre-activation when one input moves, so a larger
    // step crosses ReLU's kink somewhere (the unfused bn + relu fails the same way).
    check_eps(
        "bn+relu fused",
        |t, v| {
            Ok(t.batchnorm_act_train((v[0], v[1], v[2]), None, true, 1e-5)?
                .0)
        },
        &[randn(&[3, 3, 2, 2], 51), randn(&[3], 52), randn(&[3], 53)],
        1e-3,
    );
}

#[test]
fn batchnorm_residual_relu_fused_train() {
    check(
        "bn+residual+relu fused",
        |t, v| {
            Ok(
                t.batchnorm_act_train((v[0], v[1], v[2]), Some(v[3]), true, 1e-5)?
                    .0,
            )
        },
        &[
            randn(&[3, 2, 3, 3], 43),
            randn(&[2], 44),
            randn(&[2], 45),
            randn(&[3, 2, 3, 3], 46),
        ],
    );
}

#[test]
fn batchnorm_residual_fused_train_no_relu() {
    check(
        "bn+residual fused",
        |t, v| {
            Ok(
                t.batchnorm_act_train((v[0], v[1], v[2]), Some(v[3]), false, 1e-5)?
                    .0,
            )
        },
        &[
            randn(&[5, 3], 47),
            randn(&[3], 48),
            randn(&[3], 49),
            randn(&[5, 3], 50),
        ],
    );
}

#[test]
fn batchnorm1d_train() {
    check(
        "bn1d train",
        |t, v| Ok(t.batchnorm_train(v[0], v[1], v[2], 1e-5)?.0),
        &[randn(&[6, 5], 16), randn(&[5], 17), randn(&[5], 18)],
    );
}

#[test]
fn relu() {
    check("relu", |t, v| t.relu(v[0]), &[randn(&[3, 4, 5], 19)]);
}

#[test]
fn maxpool_2x2() {
    check(
        "maxpool 2x2",
        |t, v| t.maxpool2d(v[0], 2, 2, 0),
        &[randn(&[2, 3, 6, 4], 20)],
    );
}

#[test]
fn maxpool_3x3_stride2_pad1_overlapping() {
    check(
        "maxpool 3x3 s2 p1",
        |t, v| t.maxpool2d(v[0], 3, 2, 1),
        &[randn(&[2, 2, 7, 7], 21)],
    );
}

#[test]
fn avgpool_2x2_and_global() {
    check_linear(
        "avgpool 2x2",
        |t, v| t.avgpool2d(v[0], 2, 2, 0),
        &[randn(&[2, 3, 4, 6], 22)],
    );
    check_linear(
        "global avgpool",
        |t, v| t.global_avgpool(v[0]),
        &[randn(&[2, 3, 4, 4], 23)],
    );
}

#[test]
fn cross_entropy() {
    let labels = Tensor::from_vec(vec![0.0, 3.0, 1.0, 3.0, 2.0], &[5]).unwrap();
    check(
        "cross entropy",
        move |t, v| Ok(t.cross_entropy(v[0], &labels)?.0),
        &[randn(&[5, 4], 24)],
    );
}

#[test]
fn residual_add_and_reuse() {
    // x feeds both the conv and the shortcut: its gradient accumulates two contributions.
    // (No ReLU after the sum: one input coordinate moves many pre-activations, and finite
    // differences across ReLU kinks are meaningless; ReLU is checked on its own.)
    check_linear(
        "residual",
        |t, v| {
            let y = t.conv2d(v[0], v[1], None, 1, 1, None)?;
            t.add(y, v[0])
        },
        &[randn(&[2, 3, 5, 5], 25), randn(&[3, 3, 3, 3], 26)],
    );
}

#[test]
fn small_network_end_to_end() {
    let labels = Tensor::from_vec(vec![1.0, 0.0, 2.0], &[3]).unwrap();
    check(
        "conv-bn-relu-pool-linear-ce",
        move |t, v| {
            let y = t.conv2d(v[0], v[1], Some(v[2]), 1, 1, None)?;
            let (y, _, _) = t.batchnorm_train(y, v[3], v[4], 1e-5)?;
            let y = t.relu(y)?;
            let y = t.maxpool2d(y, 2, 2, 0)?;
            let y = t.flatten(y)?;
            let y = t.linear(y, v[5], Some(v[6]), None)?;
            Ok(t.cross_entropy(y, &labels)?.0)
        },
        &[
            randn(&[3, 2, 4, 4], 27),
            randn(&[4, 2, 3, 3], 28),
            randn(&[4], 29),
            randn(&[4], 30),
            randn(&[4], 31),
            randn(&[3, 16], 32),
            randn(&[3], 33),
        ],
    );
}

#[test]
fn masked_weight_gradient_matches_dense_on_active_positions() {
    // With a mask the weight gradient must equal the dense gradient wherever the mask is 1.
    let x = randn(&[2, 3, 5, 5], 34);
    let w = randn(&[4, 3, 3, 3], 35);
    let mut r = Rng::new(36);
    let mask = Tensor::from_vec(
        (0..108)
            .map(|_| if r.uniform() < 0.3 { 1.0 } else { 0.0 })
            .collect(),
        &[4, 3, 3, 3],
    )
    .unwrap();
    let grad = |m: Option<&Tensor>| {
        let mut t = Tape::new();
        let xv = t.constant(x.clone());
        let wv = t.variable(w.clone());
        let y = t.conv2d(xv, wv, None, 1, 1, m).unwrap();
        let y = t.flatten(y).unwrap();
        let labels = Tensor::from_vec(vec![1.0, 7.0], &[2]).unwrap();
        let (loss, _) = t.cross_entropy(y, &labels).unwrap();
        t.backward(loss)
            .unwrap()
            .take(wv)
            .unwrap()
            .to_vec()
            .unwrap()
    };
    let (dense, masked) = (grad(None), grad(Some(&mask)));
    let m = mask.to_vec().unwrap();
    for i in 0..dense.len() {
        if m[i] == 1.0 {
            assert!(
                (dense[i] - masked[i]).abs() <= 1e-5 * (1.0 + dense[i].abs()),
                "{i}: {} vs {}",
                dense[i],
                masked[i]
            );
        }
    }
}

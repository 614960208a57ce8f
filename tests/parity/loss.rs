//! Parity of the `loss` family (kernels/loss.cu and src/backend/cpu/loss.rs).

use super::*;

#[test]
fn parity_log_softmax_ce_fwd_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(21);
    for (n, k) in [(128, 10), (7, 1000), (3, 1)] {
        let mut logits: Vec<f32> = normal(&mut r, n * k).iter().map(|v| v * 4.0).collect();
        logits[0] = 60.0;
        let mut lab = labels(&mut r, n, k);
        lab[n - 1] = 0.5; // not a class index: NaN on both sides
        let (mut lp, mut nll) = (vec![0.0; n * k], vec![0.0; n]);
        cpu::loss::log_softmax_ce_fwd_f32(&logits, &lab, n, k, &mut lp, &mut nll);
        let (mut glp, mut gnll) = (zeros(&g, &[n, k]), zeros(&g, &[n]));
        g.log_softmax_ce_fwd_f32(
            &up(&g, &logits, &[n, k]),
            &up(&g, &lab, &[n]),
            n,
            k,
            &mut glp,
            &mut gnll,
        )
        .unwrap();
        assert_close(&format!("logprobs n{n} k{k}"), &down(&glp), &lp);
        assert_close(&format!("row nll n{n} k{k}"), &down(&gnll), &nll);
    }
}

#[test]
fn parity_log_softmax_ce_bwd_f32() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(22);
    for (n, k) in [(128, 10), (7, 1000)] {
        let logits = normal(&mut r, n * k);
        let lab = labels(&mut r, n, k);
        let (mut lp, mut nll) = (vec![0.0; n * k], vec![0.0; n]);
        cpu::loss::log_softmax_ce_fwd_f32(&logits, &lab, n, k, &mut lp, &mut nll);
        let mut d = vec![0.0; n * k];
        cpu::loss::log_softmax_ce_bwd_f32(&lp, &lab, n, k, 0.37, &mut d);
        let mut gd = zeros(&g, &[n, k]);
        g.log_softmax_ce_bwd_f32(
            &up(&g, &lp, &[n, k]),
            &up(&g, &lab, &[n]),
            n,
            k,
            0.37,
            &mut gd,
        )
        .unwrap();
        assert_close(&format!("dlogits n{n} k{k}"), &down(&gd), &d);
    }
}

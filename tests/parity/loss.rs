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

/// Training-accuracy count (`ce_correct_f32`, `Backend::count_correct`): log-probability-like rows with ties and a NaN, and labels with a few non-class values.
fn accuracy_inputs(r: &mut Rng, n: usize, k: usize) -> (Vec<f32>, Vec<f32>) {
    let mut lp: Vec<f32> = (0..n * k).map(|_| (r.below(4) as f32) * -0.5).collect();
    lp[k.min(n * k - 1)] = f32::NAN;
    let mut lab: Vec<f32> = (0..n).map(|_| r.below(k as u64) as f32).collect();
    lab[n - 1] = 0.5;
    if n > 2 {
        lab[n - 2] = k as f32;
    }
    (lp, lab)
}

#[test]
fn parity_ce_correct_f32() {
    let g = gpu_or_skip!();
    let dev = Device::Cuda(g.clone());
    let mut r = Rng::new(31);
    for (n, k) in [(128, 10), (7, 1000), (3, 1), (1000, 3)] {
        let (lp, lab) = accuracy_inputs(&mut r, n, k);
        let mut want = [2.0f32];
        cpu::loss::ce_correct_f32(&lp, &lab, n, k, &mut want);
        let mut got = Tensor::from_slice(&[2.0], &[1], &dev).unwrap();
        let glp = Tensor::from_slice(&lp, &[n, k], &dev).unwrap();
        let glab = Tensor::from_slice(&lab, &[n], &dev).unwrap();
        g.ce_correct_f32(&glp, &glab, n, k, &mut got).unwrap();
        assert_eq!(got.to_vec().unwrap(), want, "n{n} k{k}");
        // The backend entry point accumulates the same count again.
        dev.backend().count_correct(&glp, &glab, &mut got).unwrap();
        assert_eq!(got.to_vec().unwrap(), [2.0 * want[0] - 2.0], "n{n} k{k}");
    }
}

#[test]
fn count_correct_matches_a_host_arg_max() {
    let mut r = Rng::new(32);
    let (n, k) = (200, 10);
    let (lp, lab) = accuracy_inputs(&mut r, n, k);
    let mut want = 0.0f32;
    for (row, &y) in lp.chunks(k).zip(&lab) {
        let best = (0..k).fold(0, |b, j| if row[j] > row[b] { j } else { b });
        want += (y == best as f32) as u8 as f32;
    }
    let mut count = Tensor::from_vec(vec![0.0], &[1]).unwrap();
    let (t_lp, t_lab) = (
        Tensor::from_vec(lp, &[n, k]).unwrap(),
        Tensor::from_vec(lab, &[n]).unwrap(),
    );
    Device::Cpu
        .backend()
        .count_correct(&t_lp, &t_lab, &mut count)
        .unwrap();
    assert_eq!(count.to_vec().unwrap(), [want]);
    assert!(want > 0.0);
}

//! CPU ↔ CUDA parity of the training-accuracy count (`ce_correct_f32`, `Backend::count_correct`):
//! exact counts on both backends, with ties, NaN rows and labels that are not class indices.
//! Without a GPU the tests print `skipped: no GPU` and pass, unless `SUPTICKETS_REQUIRE_GPU=1`.

#![cfg(feature = "cuda")]

mod common;

use suptickets::backend::cpu;
use suptickets::rng::Rng;
use suptickets::{Device, Tensor};

/// Log-probability-like rows with ties and a NaN, and labels with a few non-class values.
fn inputs(r: &mut Rng, n: usize, k: usize) -> (Vec<f32>, Vec<f32>) {
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
    if !common::have_gpu() {
        return;
    }
    let dev = Device::cuda(0).unwrap();
    let Device::Cuda(g) = &dev else {
        unreachable!()
    };
    let mut r = Rng::new(31);
    for (n, k) in [(128, 10), (7, 1000), (3, 1), (1000, 3)] {
        let (lp, lab) = inputs(&mut r, n, k);
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
    let (lp, lab) = inputs(&mut r, n, k);
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

//! Cross-entropy on logits: row-wise log-softmax with the negative log-likelihood of each row's
//! label, and its gradient. Labels are exact integers stored as f32.

use rayon::prelude::*;

/// The label of a row as an index in [0, k), or None if it is not an integer in range.
pub fn label_index(label: f32, k: usize) -> Option<usize> {
    (label >= 0.0 && label.fract() == 0.0 && (label as usize) < k).then_some(label as usize)
}

/// logprobs[i, j] = (logits[i, j] − max_i) − ln Σ_j exp(logits[i, j] − max_i) (sum in f64) and
/// `row_nll[i] = −logprobs[i, label[i]]` (NaN when the label is not an integer in [0, k)).
pub fn log_softmax_ce_fwd_f32(
    logits: &[f32],
    labels: &[f32],
    n: usize,
    k: usize,
    logprobs: &mut [f32],
    row_nll: &mut [f32],
) {
    assert!(
        logits.len() == n * k && logprobs.len() == n * k && labels.len() == n && row_nll.len() == n,
        "log_softmax_ce_fwd_f32: lengths do not match n={n}, k={k}"
    );
    if k == 0 {
        row_nll.fill(f32::NAN);
        return;
    }
    logprobs
        .par_chunks_mut(k)
        .zip(logits.par_chunks(k))
        .zip(row_nll.par_iter_mut().zip(labels.par_iter()))
        .for_each(|((lp, z), (nll, &label))| {
            let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f64 = z.iter().map(|&v| ((v - max) as f64).exp()).sum();
            let log_sum = sum.ln() as f32;
            for (lp, &v) in lp.iter_mut().zip(z) {
                *lp = (v - max) - log_sum;
            }
            *nll = match label_index(label, k) {
                Some(t) => -lp[t],
                None => f32::NAN,
            };
        });
}

/// `dlogits[i, j] = scale · (exp(logprobs[i, j]) − [j == label[i]])`.
pub fn log_softmax_ce_bwd_f32(
    logprobs: &[f32],
    labels: &[f32],
    n: usize,
    k: usize,
    scale: f32,
    dlogits: &mut [f32],
) {
    assert!(
        logprobs.len() == n * k && dlogits.len() == n * k && labels.len() == n,
        "log_softmax_ce_bwd_f32: lengths do not match n={n}, k={k}"
    );
    if k == 0 {
        return;
    }
    dlogits
        .par_chunks_mut(k)
        .zip(logprobs.par_chunks(k))
        .zip(labels.par_iter())
        .for_each(|((d, lp), &label)| {
            let t = label_index(label, k);
            for (j, (d, &l)) in d.iter_mut().zip(lp).enumerate() {
                let onehot = if Some(j) == t { 1.0 } else { 0.0 };
                *d = scale * (l.exp() - onehot);
            }
        });
}

/// `count[0] +=` the number of rows of `logprobs` [n, k] whose arg-max (the first of equal
/// maxima; a NaN never wins) is the row's label (a label that is not a class index never
/// counts): the training accuracy's numerator, as `ce_correct_f32` counts it on the device.
pub fn ce_correct_f32(logprobs: &[f32], labels: &[f32], n: usize, k: usize, count: &mut [f32]) {
    assert!(
        logprobs.len() == n * k && labels.len() == n && !count.is_empty(),
        "ce_correct_f32: lengths do not match n={n}, k={k}"
    );
    if k == 0 {
        return;
    }
    let correct = logprobs
        .par_chunks(k)
        .zip(labels.par_iter())
        .filter(|(row, &label)| {
            let best = (1..k).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            label_index(label, k) == Some(best)
        })
        .count();
    count[0] += correct as f32;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_two_by_three() {
        let logits = [1.0, 2.0, 3.0, 0.0, 0.0, 0.0];
        let labels = [2.0, 0.0];
        let (mut lp, mut nll) = (vec![0.0; 6], vec![0.0; 2]);
        log_softmax_ce_fwd_f32(&logits, &labels, 2, 3, &mut lp, &mut nll);
        // log(e^1 + e^2 + e^3) = 3.40760596...
        let lse = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        let want = [1.0 - lse, 2.0 - lse, 3.0 - lse];
        for j in 0..3 {
            assert!((lp[j] as f64 - want[j]).abs() < 1e-6);
            assert!((lp[3 + j] as f64 + 3f64.ln()).abs() < 1e-6);
        }
        assert!((nll[0] as f64 - (lse - 3.0)).abs() < 1e-6);
        assert!((nll[1] as f64 - 3f64.ln()).abs() < 1e-6);
        let mut d = vec![0.0; 6];
        log_softmax_ce_bwd_f32(&lp, &labels, 2, 3, 0.5, &mut d);
        let p0: Vec<f64> = want.iter().map(|v| v.exp()).collect();
        let wd = [
            0.5 * p0[0],
            0.5 * p0[1],
            0.5 * (p0[2] - 1.0),
            0.5 * (1.0 / 3.0 - 1.0),
            0.5 / 3.0,
            0.5 / 3.0,
        ];
        for j in 0..6 {
            assert!(
                (d[j] as f64 - wd[j]).abs() < 1e-6,
                "{j}: {} vs {}",
                d[j],
                wd[j]
            );
        }
    }

    #[test]
    fn large_logits_are_stable_and_bad_labels_are_nan() {
        let logits = [1000.0, 1000.0, -1000.0];
        let (mut lp, mut nll) = (vec![0.0; 3], vec![0.0; 1]);
        log_softmax_ce_fwd_f32(&logits, &[1.0], 1, 3, &mut lp, &mut nll);
        assert!((nll[0] - 2f32.ln()).abs() < 1e-6);
        log_softmax_ce_fwd_f32(&logits, &[3.0], 1, 3, &mut lp, &mut nll);
        assert!(nll[0].is_nan());
        assert_eq!(label_index(1.5, 3), None);
        assert_eq!(label_index(-1.0, 3), None);
    }

    #[test]
    fn correct_rows_by_hand() {
        // Arg-maxes: 2, 0 (first of a tie), 1 (the NaN never wins), 0; labels 2, 0, 2, 0.5.
        let lp = [
            0.1,
            0.2,
            0.3,
            0.5,
            0.5,
            0.1,
            0.0,
            1.0,
            f32::NAN,
            0.9,
            0.1,
            0.2,
        ];
        let mut count = [3.0];
        ce_correct_f32(&lp, &[2.0, 0.0, 2.0, 0.5], 4, 3, &mut count);
        assert_eq!(count, [5.0]);
    }
}

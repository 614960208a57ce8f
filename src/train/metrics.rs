//! Classification metrics (docs/computation.md, Metrics) computed on the host from
//! log-probabilities `[n, k]`: top-1 accuracy, negative log-likelihood and expected calibration
//! error (15 equal-width confidence bins). [`MetricsAccumulator`] streams over batches so that a
//! whole test set never has to sit in memory at once.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Number of equal-width confidence bins of the expected calibration error.
pub const ECE_BINS: usize = 15;

/// The metrics of one evaluation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Top-1 accuracy in [0, 1].
    pub accuracy: f64,
    /// Mean negative log-likelihood of the true label.
    pub nll: f64,
    /// Expected calibration error with [`ECE_BINS`] bins.
    pub ece: f64,
    /// Number of examples evaluated.
    pub n: usize,
}

/// Running sums from which [`Metrics`] are computed; feed it batches with
/// [`MetricsAccumulator::add`].
#[derive(Clone, Debug, Default)]
pub struct MetricsAccumulator {
    n: usize,
    correct: usize,
    nll_sum: f64,
    bin_count: [usize; ECE_BINS],
    bin_conf: [f64; ECE_BINS],
    bin_correct: [usize; ECE_BINS],
}

/// The bin of confidence `c` in (0, 1]: bin b holds (b/15, (b+1)/15] (as in Guo et al.'s
/// reference implementation); a confidence of exactly 0 goes to the first bin.
pub fn ece_bin(c: f64) -> usize {
    ((c * ECE_BINS as f64).ceil() as usize)
        .saturating_sub(1)
        .min(ECE_BINS - 1)
}

impl MetricsAccumulator {
    /// An empty accumulator.
    pub fn new() -> MetricsAccumulator {
        MetricsAccumulator::default()
    }

    /// Adds a batch: `logprobs` holds `labels.len()` rows of `k` log-probabilities; labels are
    /// exact-integer f32 class indices.
    pub fn add(&mut self, logprobs: &[f32], k: usize, labels: &[f32]) -> Result<()> {
        let n = labels.len();
        if k == 0 || logprobs.len() != n * k {
            return Err(Error::Shape(format!(
                "metrics: {} log-probabilities for {n} labels and {k} classes",
                logprobs.len()
            )));
        }
        for (row, &y) in logprobs.chunks_exact(k).zip(labels) {
            let yi = y as usize;
            if y < 0.0 || y.fract() != 0.0 || yi >= k {
                return Err(Error::Shape(format!(
                    "metrics: label {y} is not a class index below {k}"
                )));
            }
            // argmax, ties to the first maximum
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            let ok = best == yi;
            let conf = (row[best] as f64).exp();
            let b = ece_bin(conf);
            self.n += 1;
            self.correct += ok as usize;
            self.nll_sum -= row[yi] as f64;
            self.bin_count[b] += 1;
            self.bin_conf[b] += conf;
            self.bin_correct[b] += ok as usize;
        }
        Ok(())
    }

    /// Merges another accumulator into this one.
    pub fn merge(&mut self, o: &MetricsAccumulator) {
        self.n += o.n;
        self.correct += o.correct;
        self.nll_sum += o.nll_sum;
        for b in 0..ECE_BINS {
            self.bin_count[b] += o.bin_count[b];
            self.bin_conf[b] += o.bin_conf[b];
            self.bin_correct[b] += o.bin_correct[b];
        }
    }

    /// Examples seen so far.
    pub fn count(&self) -> usize {
        self.n
    }

    /// The metrics of everything added (all zero if nothing was).
    pub fn finish(&self) -> Metrics {
        if self.n == 0 {
            return Metrics::default();
        }
        let n = self.n as f64;
        let mut ece = 0.0;
        for b in 0..ECE_BINS {
            let c = self.bin_count[b];
            if c > 0 {
                let acc = self.bin_correct[b] as f64 / c as f64;
                let conf = self.bin_conf[b] / c as f64;
                ece += (c as f64 / n) * (acc - conf).abs();
            }
        }
        Metrics {
            accuracy: self.correct as f64 / n,
            nll: self.nll_sum / n,
            ece,
            n: self.n,
        }
    }
}

/// All three metrics of one set of log-probabilities `[labels.len(), k]`.
pub fn compute(logprobs: &[f32], k: usize, labels: &[f32]) -> Result<Metrics> {
    let mut a = MetricsAccumulator::new();
    a.add(logprobs, k, labels)?;
    Ok(a.finish())
}

/// Top-1 accuracy of log-probabilities `[labels.len(), k]`.
pub fn accuracy(logprobs: &[f32], k: usize, labels: &[f32]) -> Result<f64> {
    Ok(compute(logprobs, k, labels)?.accuracy)
}

/// Mean −log p(y) of log-probabilities `[labels.len(), k]`.
pub fn nll(logprobs: &[f32], k: usize, labels: &[f32]) -> Result<f64> {
    Ok(compute(logprobs, k, labels)?.nll)
}

/// Expected calibration error (15 bins) of log-probabilities `[labels.len(), k]`.
pub fn ece(logprobs: &[f32], k: usize, labels: &[f32]) -> Result<f64> {
    Ok(compute(logprobs, k, labels)?.ece)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lp(p: &[f32]) -> Vec<f32> {
        p.iter().map(|v| v.ln()).collect()
    }

    #[test]
    fn hand_computed() {
        // 4 examples, 2 classes.
        // ex0: p=(0.9,0.1) y=0 correct conf 0.9 (bin 13: (13/15, 14/15] = (0.8667, 0.9333])
        // ex1: p=(0.2,0.8) y=0 wrong   conf 0.8 (bin 11: (0.7333, 0.8])
        // ex2: p=(0.6,0.4) y=0 correct conf 0.6 (bin 8: (0.5333, 0.6])
        // ex3: p=(0.3,0.7) y=1 correct conf 0.7 (bin 10: (0.6667, 0.7333])
        let p = lp(&[0.9, 0.1, 0.2, 0.8, 0.6, 0.4, 0.3, 0.7]);
        let y = [0.0, 0.0, 0.0, 1.0];
        let m = compute(&p, 2, &y).unwrap();
        assert_eq!(m.n, 4);
        assert!((m.accuracy - 0.75).abs() < 1e-12);
        let nll = -(0.9f64.ln() + 0.2f64.ln() + 0.6f64.ln() + 0.7f64.ln()) / 4.0;
        assert!((m.nll - nll).abs() < 1e-6, "{} vs {nll}", m.nll);
        // every example alone in its bin: ECE = 1/4 (|1-.9| + |0-.8| + |1-.6| + |1-.7|)
        let ece = 0.25 * (0.1 + 0.8 + 0.4 + 0.3);
        assert!((m.ece - ece).abs() < 1e-6, "{} vs {ece}", m.ece);
    }

    #[test]
    fn shared_bin_averages_before_abs() {
        // Two examples in the same bin (conf 0.95 and 0.97, bin 14), one right one wrong:
        // acc 0.5, conf 0.96 -> ECE = 1.0 * |0.5 - 0.96| = 0.46.
        let p = lp(&[0.95, 0.05, 0.97, 0.03]);
        let m = compute(&p, 2, &[0.0, 1.0]).unwrap();
        assert!((m.ece - 0.46).abs() < 1e-6, "{}", m.ece);
        assert!((m.accuracy - 0.5).abs() < 1e-12);
    }

    #[test]
    fn bins_are_right_closed() {
        assert_eq!(ece_bin(1.0), 14);
        assert_eq!(ece_bin(1.0 / 15.0), 0);
        assert_eq!(ece_bin(1.0 / 15.0 + 1e-9), 1);
        assert_eq!(ece_bin(0.5), 7);
        assert_eq!(ece_bin(0.0), 0);
    }

    #[test]
    fn streaming_equals_one_shot_and_ties_go_first() {
        let p = lp(&[0.5, 0.5, 0.25, 0.75, 0.1, 0.9]);
        let y = [0.0, 1.0, 0.0];
        let whole = compute(&p, 2, &y).unwrap();
        let mut a = MetricsAccumulator::new();
        a.add(&p[..2], 2, &y[..1]).unwrap();
        let mut b = MetricsAccumulator::new();
        b.add(&p[2..], 2, &y[1..]).unwrap();
        a.merge(&b);
        let m = a.finish();
        assert_eq!(m.n, 3);
        assert!((m.accuracy - whole.accuracy).abs() < 1e-12);
        assert!((m.nll - whole.nll).abs() < 1e-12);
        assert!((m.ece - whole.ece).abs() < 1e-12);
        // the tie (0.5, 0.5) predicts class 0, which is right
        assert!((whole.accuracy - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(compute(&[0.0; 5], 2, &[0.0, 1.0]).is_err());
        assert!(compute(&[0.0; 4], 2, &[0.0, 2.0]).is_err());
        assert!(compute(&[0.0; 4], 2, &[0.0, 0.5]).is_err());
        assert_eq!(compute(&[], 2, &[]).unwrap(), Metrics::default());
    }
}

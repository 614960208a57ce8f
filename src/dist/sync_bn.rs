//! Synchronised batch norm (`--sync-bn`): inside [`with_sync_bn`], every training-mode batch
//! norm normalises with the statistics of the global batch (its per-channel counts, sums and
//! squared deviations all-reduced across ranks) and its backward pass uses the global Σ dy and
//! Σ dy·x̂, so N ranks at b/N rows compute what one process computes at b rows (up to rounding).
//!
//! It is built from the backend's own batch-norm passes, so it runs on every backend: the
//! forward normalises with the global statistics through the eval-mode kernel; the backward
//! runs the ordinary kernel with the global statistics for the local Σ dy and Σ dy·x̂ (the γ and
//! β gradients of this rank's rows), all-reduces them, and builds
//! `dx = γσ⁻¹·(dy − Σ dy/n − x̂·Σ dy·x̂/n)` from the global sums with two eval-mode passes (a
//! per-channel scale of dy, a per-channel affine map of x). The ranks' losses are local means
//! over equal shards, so every dy is scaled alike and the gradient average of [`super::grads`]
//! stays exact.

use std::cell::RefCell;
use std::sync::Arc;

use super::Collective;
use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::tensor::Tensor;

thread_local! {
    static ACTIVE: RefCell<Option<Arc<dyn Collective>>> = const { RefCell::new(None) };
}

/// Runs `f` with batch norm synchronised over `c` on this thread (when `c` is Some and has
/// more than one rank), restoring the previous setting afterwards, also on panic.
pub fn with_sync_bn<R>(c: Option<Arc<dyn Collective>>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<dyn Collective>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            ACTIVE.with(|a| *a.borrow_mut() = prev);
        }
    }
    let c = c.filter(|c| c.size() > 1);
    let _restore = Restore(ACTIVE.with(|a| a.replace(c)));
    f()
}

/// The collective batch norm synchronises over on this thread, if any.
pub fn active() -> Option<Arc<dyn Collective>> {
    ACTIVE.with(|a| a.borrow().clone())
}

/// The global statistics of channels whose local batch has `n` values per channel with mean
/// `mean` and biased variance `var`: (global count, mean, biased variance), by the pairwise
/// formula Σ n_r (v_r + (m_r − m)²) / n in f64.
pub fn global_stats(
    c: &dyn Collective,
    n: usize,
    mean: &[f32],
    var: &[f32],
) -> Result<(usize, Vec<f32>, Vec<f32>)> {
    let ch = mean.len();
    let mut sums = vec![0.0f64; 1 + ch];
    sums[0] = n as f64;
    for (s, &m) in sums[1..].iter_mut().zip(mean) {
        *s = n as f64 * m as f64;
    }
    c.all_reduce_f64(&mut sums)?;
    let total = sums[0];
    let gmean: Vec<f64> = sums[1..].iter().map(|s| s / total).collect();
    let mut dev: Vec<f64> = (0..ch)
        .map(|k| {
            let d = mean[k] as f64 - gmean[k];
            n as f64 * (var[k] as f64 + d * d)
        })
        .collect();
    c.all_reduce_f64(&mut dev)?;
    Ok((
        total as usize,
        gmean.iter().map(|&m| m as f32).collect(),
        dev.iter().map(|&d| (d / total).max(0.0) as f32).collect(),
    ))
}

/// Training-mode batch norm of `x` over dimension 1 with the global batch's statistics
/// (see the module docs). Returns the output, the global mean and biased variance (for the
/// running statistics) and the global number of values per channel.
pub fn batchnorm_train_sync(
    tape: &mut Tape,
    c: Arc<dyn Collective>,
    x: Var,
    gamma: Var,
    beta: Var,
    eps: f32,
) -> Result<(Var, Tensor, Tensor, usize)> {
    let (xt, gt, bt) = (
        tape.value(x).clone(),
        tape.value(gamma).clone(),
        tape.value(beta).clone(),
    );
    let be = xt.backend();
    let shape = xt.shape().to_vec();
    let n_local = shape.iter().product::<usize>() / shape[1];
    let local = be.batchnorm_fwd_train(&xt, &gt, &bt, eps)?;
    let (lm, lv) = (local.mean.to_vec()?, local.var.to_vec()?);
    let (n, gm, gv) = global_stats(c.as_ref(), n_local, &lm, &lv)?;
    let invstd: Vec<f32> = gv.iter().map(|&v| 1.0 / (v + eps).sqrt()).collect();
    let dev = xt.device();
    let ch = [gm.len()];
    let mean = Tensor::from_slice(&gm, &ch, &dev)?;
    let var = Tensor::from_slice(&gv, &ch, &dev)?;
    let y = be.batchnorm_fwd_eval(&xt, &gt, &bt, &mean, &var, eps)?;
    let (m2, g2) = (mean.clone(), gt.clone());
    let backward = move |dy: &Tensor, _needs: &[bool]| -> Result<Vec<Option<Tensor>>> {
        let be = dy.backend();
        let inv_t = Tensor::from_slice(&invstd, &[invstd.len()], &dy.device())?;
        let b = be.batchnorm_bwd(dy, &xt, &g2, &m2, &inv_t)?;
        let (sdx_l, sd_l) = (b.dgamma.to_vec()?, b.dbeta.to_vec()?);
        let k = sd_l.len();
        let mut sums: Vec<f64> = sd_l.iter().chain(&sdx_l).map(|&v| v as f64).collect();
        c.all_reduce_f64(&mut sums)?;
        let gamma = g2.to_vec()?;
        let ng = n as f64;
        // dx = γσ⁻¹·dy + (x − mean)·slope + shift, slope = −γσ⁻²·Σdy·x̂/n, shift = −γσ⁻¹·Σdy/n:
        // the kernel's formula with the global sums, as two eval-mode batch-norm passes.
        let mut scale = vec![0.0f32; k];
        let mut shift = vec![0.0f32; k];
        let mut slope = vec![0.0f32; k];
        for j in 0..k {
            let gi = gamma[j] as f64 * invstd[j] as f64;
            scale[j] = gi as f32;
            shift[j] = (-gi * sums[j] / ng) as f32;
            slope[j] = (-gi * invstd[j] as f64 * sums[k + j] / ng) as f32;
        }
        let d = dy.device();
        let t = |v: &[f32]| Tensor::from_slice(v, &[k], &d);
        let (zeros, ones) = (Tensor::zeros(&[k], &d)?, Tensor::full(&[k], 1.0, &d)?);
        let scaled_dy = be.batchnorm_fwd_eval(dy, &t(&scale)?, &zeros, &zeros, &ones, 0.0)?;
        let affine_x = be.batchnorm_fwd_eval(&xt, &t(&slope)?, &t(&shift)?, &m2, &ones, 0.0)?;
        let dx = be.add(&scaled_dy, &affine_x)?;
        Ok(vec![Some(dx), Some(b.dgamma), Some(b.dbeta)])
    };
    let yv = tape.push(y, &[x, gamma, beta], Box::new(backward));
    Ok((yv, mean, var, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::Single;

    #[test]
    fn global_stats_of_one_rank_are_the_local_ones() {
        let (n, m, v) = global_stats(&Single, 6, &[1.5, -2.0], &[0.25, 4.0]).unwrap();
        assert_eq!(n, 6);
        assert_eq!(m, vec![1.5, -2.0]);
        assert_eq!(v, vec![0.25, 4.0]);
    }

    #[test]
    fn scope_is_restored() {
        assert!(active().is_none());
        // A single rank never synchronises.
        with_sync_bn(Some(Arc::new(Single)), || assert!(active().is_none()));
        assert!(active().is_none());
    }
}

#[cfg(test)]
mod two_rank_tests {
    use super::*;
    use crate::dist::local::LocalGroup;
    use crate::rng::Rng;

    /// Two threads at 3 rows each (sync-bn) against one batch norm over the 6 rows.
    #[test]
    fn two_ranks_match_one_batch() {
        let (n, c, s) = (8, 3, 5);
        let mut r = Rng::new(5);
        let x: Vec<f32> = (0..n * c * s).map(|_| r.normal() * 2.0 + 0.7).collect();
        let dy: Vec<f32> = (0..n * c * s).map(|_| r.normal()).collect();
        let gamma = Tensor::from_vec(vec![1.3, -0.4, 0.8], &[c]).unwrap();
        let beta = Tensor::from_vec(vec![0.1, 0.0, -0.2], &[c]).unwrap();
        let one = |x: &[f32], dy: &[f32], coll: Option<Arc<dyn Collective>>| {
            let rows = x.len() / (c * s);
            let mut tape = Tape::new();
            let xv = tape.variable(Tensor::from_vec(x.to_vec(), &[rows, c, s]).unwrap());
            let gv = tape.variable(gamma.clone());
            let bv = tape.variable(beta.clone());
            let y = match coll {
                Some(cl) => {
                    batchnorm_train_sync(&mut tape, cl, xv, gv, bv, 1e-5)
                        .unwrap()
                        .0
                }
                None => tape.batchnorm_train(xv, gv, bv, 1e-5).unwrap().0,
            };
            let yt = tape.value(y).to_vec().unwrap();
            // L = Σ y ⊙ dy, so that ∂L/∂y = dy.
            let w = Tensor::from_vec(dy.to_vec(), &[rows, c, s]).unwrap();
            let l = tape.push(
                Tensor::from_vec(vec![0.0], &[1]).unwrap(),
                &[y],
                Box::new(move |_, _| Ok(vec![Some(w)])),
            );
            let mut g = tape.backward(l).unwrap();
            let dx = g.take(xv).unwrap().to_vec().unwrap();
            let dg = g.take(gv).unwrap().to_vec().unwrap();
            (yt, dx, dg)
        };
        let (y1, dx1, dg1) = one(&x, &dy, None);
        let half = n / 2 * c * s;
        let group = LocalGroup::new(2);
        let outs = group.run(|cl| {
            let r = cl.rank();
            let sl = r * half..(r + 1) * half;
            one(&x[sl.clone()], &dy[sl], Some(cl))
        });
        for (r, (y, dx, dg)) in outs.iter().enumerate() {
            for (i, (a, b)) in y.iter().zip(&y1[r * half..]).enumerate() {
                assert!((a - b).abs() < 1e-5, "rank {r} y[{i}] {a} vs {b}");
            }
            for (i, (a, b)) in dx.iter().zip(&dx1[r * half..]).enumerate() {
                assert!(
                    (a - b).abs() < 1e-5 * (1.0 + b.abs()),
                    "rank {r} dx[{i}] {a} vs {b}"
                );
            }
            assert_eq!(dg.len(), dg1.len());
        }
        // The local γ gradients add up to the one-process gradient.
        for (j, want) in dg1.iter().enumerate() {
            let sum = outs[0].2[j] + outs[1].2[j];
            assert!((sum - want).abs() < 1e-4, "dgamma[{j}] {sum} vs {want}");
        }
    }
}

//! Batch norm fused with the residual add and ReLU that follow it (see `backend::fused`): one
//! pass over the activations writes `relu(x·scale + shift + r)` instead of three passes and two
//! intermediate tensors. In the backward pass of batch norm + ReLU (no residual) the ReLU's gate
//! is recomputed from x (`x·scale + shift > 0`, the forward's own arithmetic, so the same bits)
//! inside batch norm's two passes: no separate ReLU pass and no read of the output. With a
//! residual the backward is the composition (gating dy once serves both inputs).
//!
//! Every kernel does the unfused ops' arithmetic in the same order, so results are
//! bit-identical to `bn_fwd_f32` + `add_f32` + `relu_fwd_f32` and `relu_bwd_f32` +
//! `bn_bwd_reduce_f32` + `bn_bwd_dx_f32` (checked in the tests below).

use rayon::prelude::*;

use super::batchnorm::{bn_invstd_f32, bn_stats_f32, channel_sums};
use super::{buffers, host, CPU};
use crate::backend::fused::bn_act_bwd_composed;
use crate::backend::{check, BnAct, BnActBackward, BnActSaved, BnBackward, BnForward};
use crate::error::Result;
use crate::tensor::Tensor;

/// Per-channel statistics and parameters of a batch norm, as slices of length c.
#[derive(Clone, Copy, Debug)]
pub struct BnAffine<'a> {
    /// Mean.
    pub mean: &'a [f32],
    /// 1 / sqrt(var + eps).
    pub invstd: &'a [f32],
    /// Scale.
    pub gamma: &'a [f32],
    /// Shift.
    pub beta: &'a [f32],
}

impl BnAffine<'_> {
    /// (scale, shift) of channel `ch` with y = x·scale + shift, rounded as in `bn_fwd_f32`.
    fn scale_shift(&self, ch: usize) -> (f32, f32) {
        let scale = self.invstd[ch] * self.gamma[ch];
        (scale, self.beta[ch] - self.mean[ch] * scale)
    }

    fn check(&self, c: usize, what: &str) {
        assert!(
            [self.mean, self.invstd, self.gamma, self.beta]
                .iter()
                .all(|v| v.len() == c),
            "{what}: per-channel lengths differ from c = {c}"
        );
    }
}

/// One plane: y = relu?(x·scale + shift (+ r)).
fn plane<const RELU: bool>(y: &mut [f32], x: &[f32], r: Option<&[f32]>, scale: f32, shift: f32) {
    let act = |v: f32| if RELU { v.max(0.0) } else { v };
    match r {
        Some(r) => {
            for ((y, &x), &r) in y.iter_mut().zip(x).zip(r) {
                *y = act((x * scale + shift) + r);
            }
        }
        None => {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = act(x * scale + shift);
            }
        }
    }
}

/// y = relu?(bn(x) (+ residual)) over x[n, c, s], in parallel over images.
#[allow(clippy::too_many_arguments)]
pub fn bn_act_fwd_f32(
    x: &[f32],
    (n, c, s): (usize, usize, usize),
    p: &BnAffine,
    residual: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) {
    assert!(
        x.len() == n * c * s && y.len() == x.len() && residual.is_none_or(|r| r.len() == x.len()),
        "bn_act_fwd_f32: x/y/residual length"
    );
    p.check(c, "bn_act_fwd_f32");
    if x.is_empty() {
        return;
    }
    let image = |(i, (y, x)): (usize, (&mut [f32], &[f32]))| {
        for ch in 0..c {
            let (scale, shift) = p.scale_shift(ch);
            let r = ch * s..(ch + 1) * s;
            let res = residual.map(|v| &v[i * c * s..(i + 1) * c * s][r.clone()]);
            if relu {
                plane::<true>(&mut y[r.clone()], &x[r], res, scale, shift);
            } else {
                plane::<false>(&mut y[r.clone()], &x[r], res, scale, shift);
            }
        }
    };
    y.par_chunks_mut(c * s)
        .zip(x.par_chunks(c * s))
        .enumerate()
        .for_each(image);
}

/// Per channel, with g = dy where x·scale + shift > 0 (the ReLU's gate) and 0 elsewhere:
/// sum_dy = Σ g and sum_dy_xhat = Σ g · (x − mean) · invstd, as `bn_bwd_reduce_f32` on g.
pub fn bn_relu_bwd_reduce_f32(
    dy: &[f32],
    x: &[f32],
    (n, c, s): (usize, usize, usize),
    p: &BnAffine,
    sum_dy: &mut [f32],
    sum_dy_xhat: &mut [f32],
) {
    assert!(
        x.len() == n * c * s && dy.len() == x.len(),
        "bn_relu_bwd_reduce_f32: x/dy length"
    );
    assert!(
        sum_dy.len() == c && sum_dy_xhat.len() == c,
        "bn_relu_bwd_reduce_f32: sums length"
    );
    p.check(c, "bn_relu_bwd_reduce_f32");
    sum_dy
        .par_iter_mut()
        .zip(sum_dy_xhat.par_iter_mut())
        .enumerate()
        .for_each(|(ch, (sd, sdx))| {
            let mu = p.mean[ch] as f64;
            let (scale, shift) = p.scale_shift(ch);
            let (a, b) = channel_sums(n, c, s, ch, dy, x, |g, v| {
                let g = if v * scale + shift > 0.0 { g } else { 0.0 } as f64;
                (g, g * (v as f64 - mu))
            });
            *sd = a as f32;
            *sdx = (b * p.invstd[ch] as f64) as f32;
        });
}

/// dx of batch norm + ReLU: `bn_bwd_dx_f32` on g = dy gated by x·scale + shift > 0.
pub fn bn_relu_bwd_dx_f32(
    dy: &[f32],
    x: &[f32],
    (n, c, s): (usize, usize, usize),
    p: &BnAffine,
    (sum_dy, sum_dy_xhat): (&[f32], &[f32]),
    dx: &mut [f32],
) {
    assert!(
        x.len() == n * c * s && dy.len() == x.len() && dx.len() == x.len(),
        "bn_relu_bwd_dx_f32: x/dy/dx length"
    );
    p.check(c, "bn_relu_bwd_dx_f32");
    if x.is_empty() {
        return;
    }
    let count = (n * s) as f32;
    dx.par_chunks_mut(c * s)
        .zip(x.par_chunks(c * s).zip(dy.par_chunks(c * s)))
        .for_each(|(dx, (x, dy))| {
            for ch in 0..c {
                let inv = p.invstd[ch];
                let k = p.gamma[ch] * inv / count;
                let (m, sd, sdx) = (p.mean[ch], sum_dy[ch], sum_dy_xhat[ch]);
                let (scale, shift) = p.scale_shift(ch);
                let r = ch * s..(ch + 1) * s;
                for ((dx, &x), &dy) in dx[r.clone()].iter_mut().zip(&x[r.clone()]).zip(&dy[r]) {
                    let g = if x * scale + shift > 0.0 { dy } else { 0.0 };
                    let xhat = (x - m) * inv;
                    *dx = k * (count * g - sd - xhat * sdx);
                }
            }
        });
}

/// The CPU backend's [`crate::backend::Backend::bn_act_fwd_train`].
pub(super) fn fwd_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    residual: Option<&Tensor>,
    relu: bool,
    eps: f32,
) -> Result<BnForward> {
    let op = "bn_act_fwd_train";
    let (n, c, s) = check::batchnorm(x, &[(gamma, "gamma"), (beta, "beta")], op)?;
    let res = match residual {
        Some(r) => {
            check::same_shape(r, x, op, "residual", "x")?;
            Some(host(r, op, "residual")?)
        }
        None => None,
    };
    let xs = host(x, op, "x")?;
    let (mut mean, mut var, mut invstd) =
        (buffers::reused(c), buffers::reused(c), buffers::reused(c));
    bn_stats_f32(xs, n, c, s, &mut mean, &mut var);
    bn_invstd_f32(&var, eps, &mut invstd);
    let p = BnAffine {
        mean: &mean,
        invstd: &invstd,
        gamma: host(gamma, op, "gamma")?,
        beta: host(beta, op, "beta")?,
    };
    let mut y = buffers::reused(xs.len());
    bn_act_fwd_f32(xs, (n, c, s), &p, res, relu, &mut y);
    Ok(BnForward {
        y: Tensor::from_vec(y, x.shape())?,
        mean: Tensor::from_vec(mean, &[c])?,
        var: Tensor::from_vec(var, &[c])?,
        invstd: Tensor::from_vec(invstd, &[c])?,
    })
}

/// The CPU backend's [`crate::backend::Backend::bn_act_bwd`]: fused for batch norm + ReLU, the
/// composition otherwise.
pub(super) fn bwd(dy: &Tensor, sv: &BnActSaved, act: BnAct) -> Result<BnActBackward> {
    if !act.relu || act.residual {
        return bn_act_bwd_composed(&CPU, dy, sv, act);
    }
    let op = "bn_act_bwd";
    let per_channel = [
        (&sv.gamma, "gamma"),
        (&sv.beta, "beta"),
        (&sv.mean, "mean"),
        (&sv.invstd, "invstd"),
    ];
    let (n, c, s) = check::batchnorm(&sv.x, &per_channel, op)?;
    check::same_shape(dy, &sv.x, op, "dy", "x")?;
    let (xs, dys) = (host(&sv.x, op, "x")?, host(dy, op, "dy")?);
    let p = BnAffine {
        mean: host(&sv.mean, op, "mean")?,
        invstd: host(&sv.invstd, op, "invstd")?,
        gamma: host(&sv.gamma, op, "gamma")?,
        beta: host(&sv.beta, op, "beta")?,
    };
    let (mut sum_dy, mut sum_dy_xhat) = (buffers::reused(c), buffers::reused(c));
    bn_relu_bwd_reduce_f32(dys, xs, (n, c, s), &p, &mut sum_dy, &mut sum_dy_xhat);
    let mut dx = buffers::reused(xs.len());
    bn_relu_bwd_dx_f32(dys, xs, (n, c, s), &p, (&sum_dy, &sum_dy_xhat), &mut dx);
    Ok(BnActBackward {
        bn: BnBackward {
            dx: Tensor::from_vec(dx, sv.x.shape())?,
            dgamma: Tensor::from_vec(sum_dy_xhat, &[c])?,
            dbeta: Tensor::from_vec(sum_dy, &[c])?,
        },
        dresidual: None,
    })
}

#[cfg(test)]
#[path = "bn_act_tests.rs"]
mod tests;

//! Batch normalisation over x viewed as [n, c, s]: statistics, inverse standard deviation,
//! the normalising forward pass, and the two backward passes (per-channel reductions, then dx).
//! Reductions run in parallel over channels and accumulate in f64; the element-wise passes run
//! in parallel over images.

use rayon::prelude::*;

/// Per-channel mean and biased variance (÷ n·s) of x[n, c, s], two passes in f64.
pub fn bn_stats_f32(x: &[f32], n: usize, c: usize, s: usize, mean: &mut [f32], var: &mut [f32]) {
    assert_eq!(x.len(), n * c * s, "bn_stats_f32: x length");
    assert!(
        mean.len() == c && var.len() == c,
        "bn_stats_f32: mean/var length"
    );
    let count = (n * s) as f64;
    mean.par_iter_mut()
        .zip(var.par_iter_mut())
        .enumerate()
        .for_each(|(ch, (m, v))| {
            // One pass of shifted sums in f64: with the shift inside the data's range, the
            // cancellation in E[(x−k)²] − E[x−k]² costs nothing at f32 output precision.
            let shift = if count > 0.0 { x[ch * s] as f64 } else { 0.0 };
            let (s1, s2) = channel_sums(n, c, s, ch, x, x, |a, _| {
                let d = a as f64 - shift;
                (d, d * d)
            });
            let mu = s1 / count;
            *m = (shift + mu) as f32;
            *v = (s2 / count - mu * mu).max(0.0) as f32;
        });
}

/// Σ over the planes of channel `ch` of `f(a[i], b[i])`, two sums at once, accumulated in f64
/// in 8 lanes (so the loop vectorises) that are added in a fixed order.
pub(super) fn channel_sums(
    n: usize,
    c: usize,
    s: usize,
    ch: usize,
    a: &[f32],
    b: &[f32],
    f: impl Fn(f32, f32) -> (f64, f64),
) -> (f64, f64) {
    const L: usize = 8;
    let (mut u, mut v) = ([0.0f64; L], [0.0f64; L]);
    for img in 0..n {
        let r = (img * c + ch) * s..(img * c + ch + 1) * s;
        let (pa, pb) = (&a[r.clone()], &b[r]);
        let (ca, cb) = (pa.chunks_exact(L), pb.chunks_exact(L));
        let (ta, tb) = (ca.remainder(), cb.remainder());
        for (xa, xb) in ca.zip(cb) {
            // Terms into arrays first, then lane-wise adds: the same sums in the same order,
            // but in this form the compiler vectorises across the lanes (accumulating the pair
            // (p, q) of one lane at a time compiled to scalar conversions).
            let (mut p, mut q) = ([0.0f64; L], [0.0f64; L]);
            for l in 0..L {
                (p[l], q[l]) = f(xa[l], xb[l]);
            }
            for l in 0..L {
                u[l] += p[l];
                v[l] += q[l];
            }
        }
        for (l, (&xa, &xb)) in ta.iter().zip(tb).enumerate() {
            let (p, q) = f(xa, xb);
            u[l] += p;
            v[l] += q;
        }
    }
    (u.iter().sum(), v.iter().sum())
}

/// `invstd[c] = 1 / sqrt(var[c] + eps)`.
pub fn bn_invstd_f32(var: &[f32], eps: f32, invstd: &mut [f32]) {
    assert_eq!(var.len(), invstd.len(), "bn_invstd_f32: lengths differ");
    for (o, &v) in invstd.iter_mut().zip(var) {
        *o = 1.0 / (v + eps).sqrt();
    }
}

/// `y = (x - mean[c]) · invstd[c] · gamma[c] + beta[c]`.
#[allow(clippy::too_many_arguments)]
pub fn bn_fwd_f32(
    x: &[f32],
    n: usize,
    c: usize,
    s: usize,
    mean: &[f32],
    invstd: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
) {
    assert!(
        x.len() == n * c * s && y.len() == x.len(),
        "bn_fwd_f32: x/y length"
    );
    if x.is_empty() {
        return;
    }
    y.par_chunks_mut(c * s)
        .zip(x.par_chunks(c * s))
        .for_each(|(y, x)| {
            for ch in 0..c {
                let scale = invstd[ch] * gamma[ch];
                let shift = beta[ch] - mean[ch] * scale;
                let r = ch * s..(ch + 1) * s;
                for (y, &x) in y[r.clone()].iter_mut().zip(&x[r]) {
                    *y = x * scale + shift;
                }
            }
        });
}

/// Per channel: sum_dy = Σ dy and sum_dy_xhat = Σ dy · (x - mean) · invstd (over n and s).
#[allow(clippy::too_many_arguments)]
pub fn bn_bwd_reduce_f32(
    dy: &[f32],
    x: &[f32],
    n: usize,
    c: usize,
    s: usize,
    mean: &[f32],
    invstd: &[f32],
    sum_dy: &mut [f32],
    sum_dy_xhat: &mut [f32],
) {
    assert!(
        x.len() == n * c * s && dy.len() == x.len(),
        "bn_bwd_reduce_f32: x/dy length"
    );
    assert!(
        sum_dy.len() == c && sum_dy_xhat.len() == c,
        "bn_bwd_reduce_f32: sums length"
    );
    sum_dy
        .par_iter_mut()
        .zip(sum_dy_xhat.par_iter_mut())
        .enumerate()
        .for_each(|(ch, (sd, sdx))| {
            let mu = mean[ch] as f64;
            let (a, b) = channel_sums(n, c, s, ch, dy, x, |g, v| {
                let g = g as f64;
                (g, g * (v as f64 - mu))
            });
            *sd = a as f32;
            *sdx = (b * invstd[ch] as f64) as f32;
        });
}

/// dx = gamma·invstd/(n·s) · (n·s·dy − sum_dy − xhat·sum_dy_xhat), xhat = (x − mean)·invstd.
#[allow(clippy::too_many_arguments)]
pub fn bn_bwd_dx_f32(
    dy: &[f32],
    x: &[f32],
    n: usize,
    c: usize,
    s: usize,
    mean: &[f32],
    invstd: &[f32],
    gamma: &[f32],
    sum_dy: &[f32],
    sum_dy_xhat: &[f32],
    dx: &mut [f32],
) {
    assert!(
        x.len() == n * c * s && dy.len() == x.len() && dx.len() == x.len(),
        "bn_bwd_dx_f32: x/dy/dx length"
    );
    if x.is_empty() {
        return;
    }
    let count = (n * s) as f32;
    dx.par_chunks_mut(c * s)
        .zip(x.par_chunks(c * s).zip(dy.par_chunks(c * s)))
        .for_each(|(dx, (x, dy))| {
            for ch in 0..c {
                let inv = invstd[ch];
                let k = gamma[ch] * inv / count;
                let (m, sd, sdx) = (mean[ch], sum_dy[ch], sum_dy_xhat[ch]);
                let r = ch * s..(ch + 1) * s;
                for ((dx, &x), &dy) in dx[r.clone()].iter_mut().zip(&x[r.clone()]).zip(&dy[r]) {
                    let xhat = (x - m) * inv;
                    *dx = k * (count * dy - sd - xhat * sdx);
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn rand(r: &mut Rng, n: usize, scale: f32, shift: f32) -> Vec<f32> {
        (0..n).map(|_| r.normal() * scale + shift).collect()
    }

    #[test]
    fn stats_match_two_pass_f64() {
        let mut r = Rng::new(3);
        for &(n, c, s) in &[(5, 3, 7), (4, 6, 1), (1, 1, 1), (3, 2, 33)] {
            // A large offset makes a one-pass f32 variance inaccurate.
            let x = rand(&mut r, n * c * s, 0.1, 1000.0);
            let (mut mean, mut var) = (vec![0.0; c], vec![0.0; c]);
            bn_stats_f32(&x, n, c, s, &mut mean, &mut var);
            for ch in 0..c {
                let vals: Vec<f64> = (0..n)
                    .flat_map(|i| (0..s).map(move |j| (i, j)))
                    .map(|(i, j)| x[(i * c + ch) * s + j] as f64)
                    .collect();
                let mu = vals.iter().sum::<f64>() / vals.len() as f64;
                let v = vals.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / vals.len() as f64;
                assert!((mean[ch] as f64 - mu).abs() < 1e-3, "{} vs {mu}", mean[ch]);
                assert!(
                    (var[ch] as f64 - v).abs() < 1e-5 + 1e-4 * v,
                    "{} vs {v}",
                    var[ch]
                );
            }
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        // L = Σ w ⊙ bn(x): check dx against central differences in f64-ish precision.
        let (n, c, s) = (3, 2, 5);
        let mut r = Rng::new(9);
        let x = rand(&mut r, n * c * s, 1.0, 0.5);
        let wts = rand(&mut r, n * c * s, 1.0, 0.0);
        let gamma = vec![1.5, -0.7];
        let beta = vec![0.1, 0.2];
        let eps = 1e-5;
        let loss = |x: &[f32]| -> f64 {
            let (mut m, mut v, mut inv) = (vec![0.0; c], vec![0.0; c], vec![0.0; c]);
            bn_stats_f32(x, n, c, s, &mut m, &mut v);
            bn_invstd_f32(&v, eps, &mut inv);
            let mut y = vec![0.0; x.len()];
            bn_fwd_f32(x, n, c, s, &m, &inv, &gamma, &beta, &mut y);
            y.iter().zip(&wts).map(|(&a, &b)| a as f64 * b as f64).sum()
        };
        let (mut m, mut v, mut inv) = (vec![0.0; c], vec![0.0; c], vec![0.0; c]);
        bn_stats_f32(&x, n, c, s, &mut m, &mut v);
        bn_invstd_f32(&v, eps, &mut inv);
        let (mut sd, mut sdx) = (vec![0.0; c], vec![0.0; c]);
        bn_bwd_reduce_f32(&wts, &x, n, c, s, &m, &inv, &mut sd, &mut sdx);
        let mut dx = vec![0.0; x.len()];
        bn_bwd_dx_f32(&wts, &x, n, c, s, &m, &inv, &gamma, &sd, &sdx, &mut dx);
        for i in 0..x.len() {
            let h = 1e-2;
            let mut xp = x.clone();
            xp[i] += h;
            let mut xm = x.clone();
            xm[i] -= h;
            let fd = (loss(&xp) - loss(&xm)) / (2.0 * h as f64);
            assert!(
                (dx[i] as f64 - fd).abs() < 2e-2,
                "dx[{i}] {} vs {fd}",
                dx[i]
            );
        }
        // dbeta = Σ dy, dgamma = Σ dy·xhat.
        for (ch, &got) in sd.iter().enumerate() {
            let want: f64 = (0..n)
                .flat_map(|i| (0..s).map(move |j| (i * c + ch) * s + j))
                .map(|k| wts[k] as f64)
                .sum();
            assert!((got as f64 - want).abs() < 1e-4);
        }
    }
}

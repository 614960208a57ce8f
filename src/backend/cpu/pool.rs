//! 2-d max and average pooling over NCHW planes, forward and backward. Every kernel runs in
//! parallel over the n·c planes, which are independent.

use rayon::prelude::*;

use crate::backend::Pool2dParams;

/// Plane sizes (input, output) of a pooling geometry.
fn planes(p: &Pool2dParams) -> (usize, usize) {
    ((p.h_in * p.w_in) as usize, (p.h_out * p.w_out) as usize)
}

/// Input rows (or columns) `[lo, hi)` covered by output position `o`, clipped to the input.
fn window(o: usize, p: &Pool2dParams, size: u32) -> (usize, usize) {
    let start = (o * p.stride as usize) as isize - p.pad as isize;
    let lo = start.max(0) as usize;
    let hi = ((start + p.k as isize).max(0) as usize).min(size as usize);
    (lo, hi)
}

/// Max-pool forward. Padding counts as −∞; `idx` gets `h * w_in + w` of the first maximum in
/// row-major window order, inside its (n, c) plane (a NaN counts as larger than any number,
/// so the first NaN of a window wins, as in PyTorch).
pub fn maxpool2d_fwd_f32(x: &[f32], p: &Pool2dParams, y: &mut [f32], idx: &mut [f32]) {
    let (pin, pout) = planes(p);
    let planes_n = (p.n * p.c) as usize;
    assert!(
        x.len() == planes_n * pin && y.len() == planes_n * pout && idx.len() == y.len(),
        "maxpool2d_fwd_f32: lengths do not match params"
    );
    if pout == 0 || pin == 0 {
        return;
    }
    let w_in = p.w_in as usize;
    y.par_chunks_mut(pout)
        .zip(idx.par_chunks_mut(pout))
        .zip(x.par_chunks(pin))
        .for_each(|((y, idx), x)| {
            for oh in 0..p.h_out as usize {
                let (h0, h1) = window(oh, p, p.h_in);
                for ow in 0..p.w_out as usize {
                    let (w0, w1) = window(ow, p, p.w_in);
                    let mut best = f32::NEG_INFINITY;
                    let mut arg = h0 * w_in + w0;
                    'win: for h in h0..h1 {
                        for w in w0..w1 {
                            let v = x[h * w_in + w];
                            if v.is_nan() {
                                best = v;
                                arg = h * w_in + w;
                                break 'win;
                            }
                            if v > best {
                                best = v;
                                arg = h * w_in + w;
                            }
                        }
                    }
                    let o = oh * p.w_out as usize + ow;
                    y[o] = best;
                    idx[o] = arg as f32;
                }
            }
        });
}

/// Max-pool backward: dx (overwritten) gets dy added at each output's argmax position.
/// Indices outside the plane are ignored.
pub fn maxpool2d_bwd_f32(dy: &[f32], idx: &[f32], p: &Pool2dParams, dx: &mut [f32]) {
    let (pin, pout) = planes(p);
    let planes_n = (p.n * p.c) as usize;
    assert!(
        dx.len() == planes_n * pin && dy.len() == planes_n * pout && idx.len() == dy.len(),
        "maxpool2d_bwd_f32: lengths do not match params"
    );
    if pin == 0 {
        return;
    }
    dx.par_chunks_mut(pin).enumerate().for_each(|(pl, dx)| {
        dx.fill(0.0);
        let r = pl * pout..(pl + 1) * pout;
        for (&g, &i) in dy[r.clone()].iter().zip(&idx[r]) {
            if i >= 0.0 && (i as usize) < pin {
                dx[i as usize] += g;
            }
        }
    });
}

/// Average-pool forward: the sum over each k×k window (padding counts as zeros) divided by k·k.
pub fn avgpool2d_fwd_f32(x: &[f32], p: &Pool2dParams, y: &mut [f32]) {
    let (pin, pout) = planes(p);
    let planes_n = (p.n * p.c) as usize;
    assert!(
        x.len() == planes_n * pin && y.len() == planes_n * pout,
        "avgpool2d_fwd_f32: lengths do not match params"
    );
    if pout == 0 || pin == 0 {
        return;
    }
    let w_in = p.w_in as usize;
    let inv = 1.0 / (p.k * p.k) as f32;
    y.par_chunks_mut(pout)
        .zip(x.par_chunks(pin))
        .for_each(|(y, x)| {
            for oh in 0..p.h_out as usize {
                let (h0, h1) = window(oh, p, p.h_in);
                for ow in 0..p.w_out as usize {
                    let (w0, w1) = window(ow, p, p.w_in);
                    let mut s = 0.0f32;
                    for h in h0..h1 {
                        for w in w0..w1 {
                            s += x[h * w_in + w];
                        }
                    }
                    y[oh * p.w_out as usize + ow] = s * inv;
                }
            }
        });
}

/// Average-pool backward: dx (overwritten) gets dy / (k·k) added over each output's window.
pub fn avgpool2d_bwd_f32(dy: &[f32], p: &Pool2dParams, dx: &mut [f32]) {
    let (pin, pout) = planes(p);
    let planes_n = (p.n * p.c) as usize;
    assert!(
        dx.len() == planes_n * pin && dy.len() == planes_n * pout,
        "avgpool2d_bwd_f32: lengths do not match params"
    );
    if pin == 0 {
        return;
    }
    let w_in = p.w_in as usize;
    let inv = 1.0 / (p.k * p.k) as f32;
    dx.par_chunks_mut(pin).enumerate().for_each(|(pl, dx)| {
        dx.fill(0.0);
        let dy = &dy[pl * pout..(pl + 1) * pout];
        for oh in 0..p.h_out as usize {
            let (h0, h1) = window(oh, p, p.h_in);
            for ow in 0..p.w_out as usize {
                let (w0, w1) = window(ow, p, p.w_in);
                let g = dy[oh * p.w_out as usize + ow] * inv;
                for h in h0..h1 {
                    for w in w0..w1 {
                        dx[h * w_in + w] += g;
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn maxpool_ties_go_to_first_in_window() {
        // One 2x4 plane, window 2, stride 2: both windows are all ties.
        let p = Pool2dParams::new(1, 1, 2, 4, 2, 2, 0).unwrap();
        let x = [1.0, 1.0, 3.0, 2.0, 1.0, 1.0, 3.0, 3.0];
        let (mut y, mut idx) = (vec![0.0; 2], vec![0.0; 2]);
        maxpool2d_fwd_f32(&x, &p, &mut y, &mut idx);
        assert_eq!(y, [1.0, 3.0]);
        assert_eq!(idx, [0.0, 2.0]);
    }

    #[test]
    fn maxpool_padding_is_minus_infinity() {
        // All-negative input with pad 1: padding must never win.
        let p = Pool2dParams::new(1, 1, 3, 3, 3, 2, 1).unwrap();
        let x: Vec<f32> = (0..9).map(|i| -1.0 - i as f32).collect();
        let (mut y, mut idx) = (vec![0.0; 4], vec![0.0; 4]);
        maxpool2d_fwd_f32(&x, &p, &mut y, &mut idx);
        assert_eq!(y, [-1.0, -2.0, -4.0, -5.0]);
        assert_eq!(idx, [0.0, 1.0, 3.0, 4.0]);
        let mut dx = vec![7.0; 9];
        maxpool2d_bwd_f32(&[1.0, 2.0, 3.0, 4.0], &idx, &p, &mut dx);
        assert_eq!(dx, [1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn maxpool_overlapping_windows_accumulate() {
        let p = Pool2dParams::new(1, 1, 3, 3, 3, 1, 1).unwrap();
        let x = [0.0, 0.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0, 0.0];
        let (mut y, mut idx) = (vec![0.0; 9], vec![0.0; 9]);
        maxpool2d_fwd_f32(&x, &p, &mut y, &mut idx);
        assert!(idx.iter().all(|&i| i == 4.0));
        let mut dx = vec![0.0; 9];
        maxpool2d_bwd_f32(&[1.0; 9], &idx, &p, &mut dx);
        assert_eq!(dx[4], 9.0);
    }

    /// Direct definition with explicit padding, for the average pool.
    fn avg_naive(x: &[f32], p: &Pool2dParams) -> Vec<f32> {
        let (hi, wi, k) = (p.h_in as isize, p.w_in as isize, p.k as isize);
        let mut y = Vec::new();
        for pl in 0..(p.n * p.c) as usize {
            for oh in 0..p.h_out as isize {
                for ow in 0..p.w_out as isize {
                    let mut s = 0.0;
                    for a in 0..k {
                        for b in 0..k {
                            let h = oh * p.stride as isize - p.pad as isize + a;
                            let w = ow * p.stride as isize - p.pad as isize + b;
                            if h >= 0 && h < hi && w >= 0 && w < wi {
                                s += x[pl * (hi * wi) as usize + (h * wi + w) as usize];
                            }
                        }
                    }
                    y.push(s / (k * k) as f32);
                }
            }
        }
        y
    }

    #[test]
    fn avgpool_with_padding_matches_naive_and_adjoint() {
        let mut r = Rng::new(2);
        for &(h, w, k, s, pad) in &[(5, 7, 3, 2, 1), (4, 4, 2, 2, 0), (6, 5, 3, 1, 1)] {
            let p = Pool2dParams::new(2, 3, h, w, k, s, pad).unwrap();
            let x: Vec<f32> = (0..2 * 3 * h * w).map(|_| r.normal()).collect();
            let mut y = vec![0.0; (2 * 3 * p.h_out * p.w_out) as usize];
            avgpool2d_fwd_f32(&x, &p, &mut y);
            let want = avg_naive(&x, &p);
            assert!(y.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5));
            // <avg(x), g> == <x, avg_bwd(g)>.
            let g: Vec<f32> = (0..y.len()).map(|_| r.normal()).collect();
            let mut dx = vec![f32::NAN; x.len()];
            avgpool2d_bwd_f32(&g, &p, &mut dx);
            let lhs: f32 = y.iter().zip(&g).map(|(a, b)| a * b).sum();
            let rhs: f32 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-3, "{lhs} vs {rhs}");
        }
    }
}

//! Element-wise kernels: ReLU forward/backward, add, multiply, axpby and a deterministic sum.
//! Each runs over fixed-size chunks in parallel (never one rayon task per element).

use rayon::prelude::*;

/// Elements per rayon task for element-wise work.
pub const CHUNK: usize = 1 << 14;

/// y = max(x, 0) (NaN maps to 0, as CUDA's `fmaxf(x, 0)`).
pub fn relu_fwd_f32(x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "relu_fwd_f32: x and y lengths differ");
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(y, x)| {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = x.max(0.0);
            }
        });
}

/// dx = dy where y > 0, else 0 (y is the forward output).
pub fn relu_bwd_f32(dy: &[f32], y: &[f32], dx: &mut [f32]) {
    assert!(
        dy.len() == y.len() && y.len() == dx.len(),
        "relu_bwd_f32: lengths differ"
    );
    dx.par_chunks_mut(CHUNK)
        .zip(dy.par_chunks(CHUNK).zip(y.par_chunks(CHUNK)))
        .for_each(|(dx, (dy, y))| {
            for ((dx, &dy), &y) in dx.iter_mut().zip(dy).zip(y) {
                *dx = if y > 0.0 { dy } else { 0.0 };
            }
        });
}

/// Applies `f(a[i], b[i])` into `c[i]`, chunked in parallel.
fn binary(a: &[f32], b: &[f32], c: &mut [f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    assert!(
        a.len() == b.len() && b.len() == c.len(),
        "binary element-wise op: lengths differ"
    );
    c.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(c, (a, b))| {
            for ((c, &a), &b) in c.iter_mut().zip(a).zip(b) {
                *c = f(a, b);
            }
        });
}

/// c = a + b.
pub fn add_f32(a: &[f32], b: &[f32], c: &mut [f32]) {
    binary(a, b, c, |a, b| a + b);
}

/// c = a ⊙ b.
pub fn mul_f32(a: &[f32], b: &[f32], c: &mut [f32]) {
    binary(a, b, c, |a, b| a * b);
}

/// y = a·x + b·y in place.
pub fn axpby_f32(a: f32, x: &[f32], b: f32, y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "axpby_f32: x and y lengths differ");
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(y, x)| {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = a * x + b * *y;
            }
        });
}

/// Sum of x, accumulated in f64 over fixed chunks added in order (deterministic for any
/// number of threads).
pub fn sum_f32(x: &[f32]) -> f32 {
    let partial: Vec<f64> = x
        .par_chunks(CHUNK)
        .map(|c| c.iter().map(|&v| v as f64).sum::<f64>())
        .collect();
    partial.iter().sum::<f64>() as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn rand(r: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| r.normal()).collect()
    }

    #[test]
    fn elementwise_ops_match_loops() {
        let mut r = Rng::new(5);
        let n = 3 * CHUNK + 17;
        let a = rand(&mut r, n);
        let b = rand(&mut r, n);
        let mut c = vec![0.0; n];
        add_f32(&a, &b, &mut c);
        assert!((0..n).all(|i| c[i] == a[i] + b[i]));
        mul_f32(&a, &b, &mut c);
        assert!((0..n).all(|i| c[i] == a[i] * b[i]));
        relu_fwd_f32(&a, &mut c);
        assert!((0..n).all(|i| c[i] == a[i].max(0.0)));
        let y = c.clone();
        relu_bwd_f32(&b, &y, &mut c);
        assert!((0..n).all(|i| c[i] == if a[i] > 0.0 { b[i] } else { 0.0 }));
        let mut y = b.clone();
        axpby_f32(2.0, &a, -0.5, &mut y);
        assert!((0..n).all(|i| y[i] == 2.0 * a[i] + -0.5 * b[i]));
        let want: f64 = a.iter().map(|&v| v as f64).sum();
        assert!((sum_f32(&a) as f64 - want).abs() < 1e-3);
        assert_eq!(sum_f32(&[]), 0.0);
    }
}

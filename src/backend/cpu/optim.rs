//! The fused SGD step (L2 weight decay, momentum, optional Nesterov, then the sparsity mask).

use rayon::prelude::*;

use crate::backend::cpu::elementwise::CHUNK;
use crate::backend::SgdParams;

/// One SGD step, element by element, exactly as documented on [`SgdParams`]:
/// g' = g + wd·w; m = momentum·m + g'; step = nesterov ? g' + momentum·m : m; w −= lr·step;
/// then, with a mask, w *= mask and m *= mask.
pub fn sgd_step_f32(w: &mut [f32], g: &[f32], m: &mut [f32], mask: Option<&[f32]>, p: &SgdParams) {
    assert!(
        w.len() == g.len() && m.len() == w.len() && mask.is_none_or(|k| k.len() == w.len()),
        "sgd_step_f32: lengths differ"
    );
    let p = *p;
    let step = move |w: &mut f32, g: f32, m: &mut f32| {
        let g = g + p.weight_decay * *w;
        *m = p.momentum * *m + g;
        let s = if p.nesterov != 0 {
            g + p.momentum * *m
        } else {
            *m
        };
        *w -= p.lr * s;
    };
    let wm = w.par_chunks_mut(CHUNK).zip(m.par_chunks_mut(CHUNK));
    match mask {
        None => wm.zip(g.par_chunks(CHUNK)).for_each(|((w, m), g)| {
            for ((w, m), &g) in w.iter_mut().zip(m.iter_mut()).zip(g) {
                step(w, g, m);
            }
        }),
        Some(mask) => wm
            .zip(g.par_chunks(CHUNK).zip(mask.par_chunks(CHUNK)))
            .for_each(|((w, m), (g, k))| {
                for (((w, m), &g), &k) in w.iter_mut().zip(m.iter_mut()).zip(g).zip(k) {
                    step(w, g, m);
                    *w *= k;
                    *m *= k;
                }
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(nesterov: u32) -> SgdParams {
        SgdParams {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.01,
            nesterov,
        }
    }

    #[test]
    fn plain_momentum_by_hand() {
        let mut w = vec![1.0, -2.0];
        let mut m = vec![0.5, 0.0];
        sgd_step_f32(&mut w, &[0.2, 1.0], &mut m, None, &params(0));
        // g' = 0.2 + 0.01 = 0.21; m = 0.45 + 0.21 = 0.66; w = 1 - 0.066 = 0.934.
        // g' = 1 - 0.02 = 0.98;  m = 0.98;              w = -2 - 0.098 = -2.098.
        let (ew, em) = ([0.934, -2.098], [0.66, 0.98]);
        for i in 0..2 {
            assert!((w[i] - ew[i]).abs() < 1e-6, "w[{i}] = {}", w[i]);
            assert!((m[i] - em[i]).abs() < 1e-6, "m[{i}] = {}", m[i]);
        }
    }

    #[test]
    fn nesterov_with_mask_by_hand() {
        let mut w = vec![1.0, -2.0];
        let mut m = vec![0.5, 0.0];
        sgd_step_f32(&mut w, &[0.2, 1.0], &mut m, Some(&[1.0, 0.0]), &params(1));
        // step = g' + 0.9 m = 0.21 + 0.594 = 0.804; w = 1 - 0.0804 = 0.9196. Second is masked.
        assert!((w[0] - 0.9196).abs() < 1e-6, "{}", w[0]);
        assert!((m[0] - 0.66).abs() < 1e-6);
        assert_eq!((w[1], m[1]), (0.0, 0.0));
    }

    #[test]
    fn long_vectors_match_scalar_loop() {
        let n = 2 * CHUNK + 3;
        let mut w: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        let g: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
        let mask: Vec<f32> = (0..n).map(|i| (i % 3 != 0) as u8 as f32).collect();
        let mut m = vec![0.1; n];
        let (mut w2, mut m2) = (w.clone(), m.clone());
        sgd_step_f32(&mut w, &g, &mut m, Some(&mask), &params(1));
        for i in 0..n {
            sgd_step_f32(
                &mut w2[i..i + 1],
                &g[i..i + 1],
                &mut m2[i..i + 1],
                Some(&mask[i..i + 1]),
                &params(1),
            );
        }
        assert_eq!(w, w2);
        assert_eq!(m, m2);
    }
}

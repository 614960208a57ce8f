//! Layer-wise density allocation at initialisation (docs/computation.md, Masks): uniform, ER
//! (Mocanu et al.) and ERK (Evci et al.) with the iterative dense-layer rule, and exact per-layer
//! nonzero counts.

use crate::error::{Error, Result};

/// How the global density is spread over the maskable tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DensityInit {
    /// Every tensor gets the global density.
    Uniform,
    /// Erdős–Rényi: density ∝ (n_in + n_out)/(n_in · n_out).
    Er,
    /// Erdős–Rényi-Kernel: density ∝ (sum of all dims)/(product of all dims).
    Erk,
}

impl DensityInit {
    /// Parses `uniform`, `er` or `erk` (as given to `--init`).
    pub fn parse(s: &str) -> Result<DensityInit> {
        match s.to_ascii_lowercase().as_str() {
            "uniform" => Ok(DensityInit::Uniform),
            "er" => Ok(DensityInit::Er),
            "erk" => Ok(DensityInit::Erk),
            _ => Err(Error::Config(format!(
                "--init: unknown density allocation {s:?} (expected uniform, er or erk)"
            ))),
        }
    }
}

/// The raw ER/ERK score of a tensor shape ([out, in] or [out, in, kh, kw]).
fn raw_score(shape: &[usize], init: DensityInit) -> f64 {
    let dims: &[usize] = if init == DensityInit::Er {
        &shape[..shape.len().min(2)]
    } else {
        shape
    };
    dims.iter().sum::<usize>() as f64 / dims.iter().product::<usize>() as f64
}

/// Per-tensor densities for a global `density` in (0, 1]. With `dense_first`, tensor 0 is
/// kept dense (and, for ER/ERK, counted against the budget like any saturated layer).
pub fn layer_densities(
    shapes: &[Vec<usize>],
    density: f64,
    init: DensityInit,
    dense_first: bool,
) -> Result<Vec<f64>> {
    if !(density > 0.0 && density <= 1.0) {
        return Err(Error::Config(format!(
            "density must be in (0, 1], got {density} (sparsity {})",
            1.0 - density
        )));
    }
    if shapes.iter().any(|s| s.is_empty() || s.contains(&0)) {
        return Err(Error::Shape(format!(
            "layer_densities: empty tensor shape in {shapes:?}"
        )));
    }
    let n = shapes.len();
    let mut dense = vec![false; n];
    if dense_first && n > 0 {
        dense[0] = true;
    }
    if init == DensityInit::Uniform || density >= 1.0 {
        return Ok((0..n)
            .map(|i| if dense[i] { 1.0 } else { density })
            .collect());
    }
    let numel: Vec<f64> = shapes
        .iter()
        .map(|s| s.iter().product::<usize>() as f64)
        .collect();
    let raw: Vec<f64> = shapes.iter().map(|s| raw_score(s, init)).collect();
    let budget = density * numel.iter().sum::<f64>();
    loop {
        let dense_n: f64 = (0..n).filter(|&i| dense[i]).map(|i| numel[i]).sum();
        let divisor: f64 = (0..n)
            .filter(|&i| !dense[i])
            .map(|i| raw[i] * numel[i])
            .sum();
        if divisor <= 0.0 {
            // Everything saturated: the model is (nearly) dense.
            return Ok(vec![1.0; n]);
        }
        let eps = (budget - dense_n) / divisor;
        // Removing a saturated layer only increases eps, so all of them can go at once.
        let over: Vec<usize> = (0..n)
            .filter(|&i| !dense[i] && eps * raw[i] > 1.0)
            .collect();
        if over.is_empty() {
            return Ok((0..n)
                .map(|i| {
                    if dense[i] {
                        1.0
                    } else {
                        (eps * raw[i]).max(0.0)
                    }
                })
                .collect());
        }
        for i in over {
            dense[i] = true;
        }
    }
}

/// Exact nonzero count per tensor: round(d_l · N_l), at least 1.
pub fn layer_counts(shapes: &[Vec<usize>], densities: &[f64]) -> Vec<usize> {
    shapes
        .iter()
        .zip(densities)
        .map(|(s, d)| {
            let n: usize = s.iter().product();
            ((d * n as f64).round() as usize).clamp(1, n)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erk_two_linear_layers_by_hand() {
        // r_A = 20/100, r_B = 52/100; eps = 0.5·200 / (20 + 52) = 1.3889.
        let shapes = vec![vec![10, 10], vec![2, 50]];
        let d = layer_densities(&shapes, 0.5, DensityInit::Erk, false).unwrap();
        let eps = 100.0 / 72.0;
        assert!(
            (d[0] - eps * 0.2).abs() < 1e-12 && (d[1] - eps * 0.52).abs() < 1e-12,
            "{d:?}"
        );
        assert_eq!(layer_counts(&shapes, &d), vec![28, 72]);
    }

    #[test]
    fn erk_saturated_layer_becomes_dense_and_budget_is_resolved() {
        // B = [2,2] has r = 1, eps·r = 24.5 > 1 -> dense; then eps = (5002 - 4)/200.
        let shapes = vec![vec![100, 100], vec![2, 2]];
        let d = layer_densities(&shapes, 0.5, DensityInit::Erk, false).unwrap();
        assert_eq!(d[1], 1.0);
        assert!((d[0] - 4998.0 / 10000.0).abs() < 1e-12);
        assert_eq!(layer_counts(&shapes, &d), vec![4998, 4]);
    }

    #[test]
    fn erk_conv_uses_kernel_dims_and_er_does_not() {
        let shapes = vec![vec![64, 64, 3, 3], vec![128, 64, 3, 3], vec![10, 128]];
        let erk = layer_densities(&shapes, 0.1, DensityInit::Erk, false).unwrap();
        let er = layer_densities(&shapes, 0.1, DensityInit::Er, false).unwrap();
        // Ratios of densities follow the raw scores.
        let r = |s: &[usize], k: bool| -> f64 {
            let d: &[usize] = if k { s } else { &s[..2] };
            d.iter().sum::<usize>() as f64 / d.iter().product::<usize>() as f64
        };
        assert!((erk[0] / erk[1] - r(&shapes[0], true) / r(&shapes[1], true)).abs() < 1e-9);
        assert!((er[0] / er[1] - r(&shapes[0], false) / r(&shapes[1], false)).abs() < 1e-9);
        for d in [&erk, &er] {
            let total: f64 = shapes
                .iter()
                .zip(d.iter())
                .map(|(s, d)| d * s.iter().product::<usize>() as f64)
                .sum();
            let n: f64 = shapes
                .iter()
                .map(|s| s.iter().product::<usize>() as f64)
                .sum();
            assert!((total / n - 0.1).abs() < 1e-9);
        }
    }

    #[test]
    fn global_density_within_one_weight_per_layer() {
        let shapes: Vec<Vec<usize>> = vec![
            vec![16, 3, 3, 3],
            vec![32, 16, 3, 3],
            vec![64, 32, 3, 3],
            vec![64, 64, 3, 3],
            vec![10, 64],
        ];
        for init in [DensityInit::Uniform, DensityInit::Er, DensityInit::Erk] {
            for d in [0.05, 0.1, 0.2, 0.5] {
                let dens = layer_densities(&shapes, d, init, false).unwrap();
                let counts = layer_counts(&shapes, &dens);
                let n: usize = shapes.iter().map(|s| s.iter().product::<usize>()).sum();
                let k: usize = counts.iter().sum();
                assert!(
                    (k as f64 - d * n as f64).abs() <= shapes.len() as f64,
                    "{init:?} {d}: {k} vs {}",
                    d * n as f64
                );
            }
        }
    }

    #[test]
    fn dense_first_layer_and_bad_density() {
        let shapes = vec![vec![16, 3, 3, 3], vec![32, 16, 3, 3], vec![10, 32]];
        let u = layer_densities(&shapes, 0.1, DensityInit::Uniform, true).unwrap();
        assert_eq!(u, vec![1.0, 0.1, 0.1]);
        let e = layer_densities(&shapes, 0.2, DensityInit::Erk, true).unwrap();
        assert_eq!(e[0], 1.0);
        assert!(layer_densities(&shapes, 0.0, DensityInit::Erk, false).is_err());
        assert!(layer_densities(&shapes, 1.5, DensityInit::Erk, false).is_err());
        assert!(DensityInit::parse("erk").is_ok() && DensityInit::parse("xyz").is_err());
    }
}

//! Finite-difference gradient checker: compares the tape's gradients with central differences
//! of a random projection of the output, L = Σ out ⊙ r, at sampled coordinates of each input.

use super::{Tape, Var};
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// The outcome of a gradient check.
#[derive(Clone, Debug)]
pub struct GradCheckReport {
    /// Largest |analytic − numeric| / (atol + max(|analytic|, |numeric|)) over the checked coordinates.
    pub max_rel_err: f64,
    /// Where the largest error was: input index, flat coordinate, both values.
    pub worst: String,
    /// Coordinates checked.
    pub checked: usize,
}

fn projected_loss(out: &Tensor, r: &[f32]) -> Result<f64> {
    let v = out.to_vec()?;
    Ok(v.iter().zip(r).map(|(a, b)| *a as f64 * *b as f64).sum())
}

/// Checks the gradients of `f` with respect to every input. `samples` coordinates per input
/// are perturbed by ±`eps` (all of them if the input is smaller). `atol` keeps near-zero
/// gradients from dominating the relative error.
pub fn check_gradients<F>(
    f: F,
    inputs: &[Tensor],
    eps: f32,
    atol: f64,
    samples: usize,
    seed: u64,
) -> Result<GradCheckReport>
where
    F: Fn(&mut Tape, &[Var]) -> Result<Var>,
{
    let mut rng = Rng::new(seed);
    // Analytic gradients.
    let mut tape = Tape::new();
    let vars: Vec<Var> = inputs.iter().map(|t| tape.variable(t.clone())).collect();
    let out = f(&mut tape, &vars)?;
    let out_t = tape.value(out).clone();
    let r: Vec<f32> = (0..out_t.numel()).map(|_| rng.normal()).collect();
    let loss_val = projected_loss(&out_t, &r)? as f32;
    let loss_t = out_t.backend().upload(&[loss_val], &[1])?;
    let (r_c, shape) = (r.clone(), out_t.shape().to_vec());
    let loss = tape.push(
        loss_t,
        &[out],
        Box::new(move |dy, _| {
            let s = dy.scalar()?;
            let g: Vec<f32> = r_c.iter().map(|x| x * s).collect();
            Ok(vec![Some(dy.backend().upload(&g, &shape)?)])
        }),
    );
    let grads = tape.backward(loss)?;

    let eval = |perturbed: &[Tensor]| -> Result<f64> {
        let mut t = Tape::new();
        let vs: Vec<Var> = perturbed.iter().map(|x| t.variable(x.clone())).collect();
        let o = f(&mut t, &vs)?;
        projected_loss(t.value(o), &r)
    };

    let mut report = GradCheckReport {
        max_rel_err: 0.0,
        worst: String::new(),
        checked: 0,
    };
    for (i, input) in inputs.iter().enumerate() {
        let analytic = match grads.get(vars[i]) {
            Some(g) => g.to_vec()?,
            None => vec![0.0; input.numel()],
        };
        if analytic.len() != input.numel() {
            return Err(Error::Shape(format!(
                "gradcheck: gradient of input {i} has {} elements, input has {}",
                analytic.len(),
                input.numel()
            )));
        }
        let base = input.to_vec()?;
        let coords: Vec<usize> = if base.len() <= samples {
            (0..base.len()).collect()
        } else {
            rng.choose(base.len(), samples)
        };
        for &c in &coords {
            let mut plus = base.clone();
            plus[c] += eps;
            let mut minus = base.clone();
            minus[c] -= eps;
            let mut args: Vec<Tensor> = inputs.to_vec();
            args[i] = input.backend().upload(&plus, input.shape())?;
            let lp = eval(&args)?;
            args[i] = input.backend().upload(&minus, input.shape())?;
            let lm = eval(&args)?;
            let numeric = (lp - lm) / (2.0 * eps as f64);
            let a = analytic[c] as f64;
            let err = (a - numeric).abs() / (atol + a.abs().max(numeric.abs()));
            report.checked += 1;
            if err > report.max_rel_err {
                report.max_rel_err = err;
                report.worst =
                    format!("input {i} coord {c}: analytic {a:.6e} numeric {numeric:.6e}");
            }
        }
    }
    Ok(report)
}

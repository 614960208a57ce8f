//! The training step's device-side plumbing on both backends: the cross-entropy gradient at
//! the root of the tape (its scale 1.0 given as a host number, no seed uploaded or read back)
//! and inside it (the scale read from the output gradient) against a hand-computed reference,
//! and `copy_into` (a step's loss into the epoch's record, without leaving the device).

use super::*;
use suptickets::autograd::Tape;

/// d(scale · mean NLL)/d logits in f64: scale · (softmax − onehot) / n.
fn ce_grad_reference(logits: &[f32], labels: &[f32], k: usize, scale: f64) -> Vec<f32> {
    let n = labels.len();
    let mut d = Vec::with_capacity(n * k);
    for (row, &label) in logits.chunks(k).zip(labels) {
        let m = row.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
        let z: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
        for (j, &v) in row.iter().enumerate() {
            let onehot = if j == label as usize { 1.0 } else { 0.0 };
            d.push((scale * ((v as f64 - m).exp() / z - onehot) / n as f64) as f32);
        }
    }
    d
}

/// The logits' gradient of the tape's cross entropy: at the root (`doubled` false), or below
/// `loss + loss` (the cross entropy then gets 2.0 as its output gradient, on the device).
fn tape_ce_grad(logits: &Tensor, labels: &Tensor, doubled: bool) -> Vec<f32> {
    let mut t = Tape::new();
    let x = t.variable(logits.clone());
    let (loss, _) = t.cross_entropy(x, labels).unwrap();
    let root = if doubled {
        t.add(loss, loss).unwrap()
    } else {
        loss
    };
    let grads = t.backward(root).unwrap();
    down(grads.get(x).expect("a gradient for the logits"))
}

#[test]
fn backend_tape_cross_entropy_at_the_root_and_inside() {
    let g = gpu_or_skip!();
    let mut r = Rng::new(71);
    for (n, k) in [(16, 10), (3, 7)] {
        let (logits, lab) = (normal(&mut r, n * k), labels(&mut r, n, k));
        let (cl, gl) = both(&g, &logits, &[n, k]);
        let (cy, gy) = both(&g, &lab, &[n]);
        for doubled in [false, true] {
            let scale = if doubled { 2.0 } else { 1.0 };
            let want = ce_grad_reference(&logits, &lab, k, scale);
            let what = format!("ce grad n{n} k{k} scale {scale}");
            let cpu = tape_ce_grad(&cl, &cy, doubled);
            assert_close(&format!("{what}: cpu vs reference"), &cpu, &want);
            assert_close(
                &format!("{what}: cuda vs cpu"),
                &tape_ce_grad(&gl, &gy, doubled),
                &cpu,
            );
        }
    }
}

#[test]
fn backend_copy_into() {
    let g = gpu_or_skip!();
    let (cx, gx) = both(&g, &[1.5, -2.0], &[2]);
    let (mut cd, mut gd) = both(&g, &[0.0; 5], &[5]);
    for at in [0, 3, 1] {
        cpu_be().copy_into(&cx, &mut cd, at).unwrap();
        g.copy_into(&gx, &mut gd, at).unwrap();
    }
    assert_eq!(down(&cd), [1.5, 1.5, -2.0, 1.5, -2.0]);
    assert_eq!(down(&gd), down(&cd));
    for be in [cpu_be(), g.as_ref() as &dyn Backend] {
        let (x, mut d) = if be.name() == cpu_be().name() {
            (cx.clone(), cd.clone())
        } else {
            (gx.clone(), gd.clone())
        };
        let e = be.copy_into(&x, &mut d, 4).unwrap_err();
        assert!(
            matches!(e, Error::Shape(_)) && e.to_string().contains("offset 4"),
            "{}: {e}",
            be.name()
        );
    }
}

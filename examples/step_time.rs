//! Times the dense training step (forward + backward + SGD) of one model on synthetic data and
//! prints one JSON line, like the PyTorch peer's `peer_step.py`, for side-by-side runs
//! (`tools/peer_compare.py`).
//!
//! `cargo run --release --example step_time -- MODEL [BATCH] [STEPS] [WARMUP] [INFER_STEPS]`

use std::time::Instant;

use suptickets::models::{build, ModelConfig};
use suptickets::optim::Sgd;
use suptickets::rng::Rng;
use suptickets::Tensor;

fn main() -> suptickets::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model = args.get(1).map(String::as_str).unwrap_or("vgg16");
    let arg = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (batch, steps, warmup, infer_steps) = (arg(2, 128), arg(3, 5), arg(4, 1), arg(5, 3));
    let mut net = build(&ModelConfig::new(model, 10))?;
    let mut r = Rng::new(1);
    let x = Tensor::from_vec(
        (0..batch * 3 * 32 * 32).map(|_| r.normal()).collect(),
        &[batch, 3, 32, 32],
    )?;
    let y = Tensor::from_vec((0..batch).map(|i| (i % 10) as f32).collect(), &[batch])?;
    let opt = Sgd::default();
    let mut times = Vec::new();
    for i in 0..warmup + steps {
        let t = Instant::now();
        let out = net.forward_backward(&x, &y)?;
        opt.step(&mut net.store, &out.grads, 0.01)?;
        if i >= warmup {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let mut inf = Vec::new();
    for _ in 0..infer_steps {
        let t = Instant::now();
        net.logits(&x)?;
        inf.push(t.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    println!(
        "{{\"impl\":\"suptickets\",\"model\":\"{model}\",\"batch\":{batch},\"threads\":{},\"train_step_s_median\":{:.4},\"infer_s_median\":{:.4},\"train_steps_s\":{:?}}}",
        rayon::current_num_threads(),
        median(&mut times.clone()),
        median(&mut inf),
        times.iter().map(|t| (t * 1000.0).round() / 1000.0).collect::<Vec<_>>()
    );
    Ok(())
}

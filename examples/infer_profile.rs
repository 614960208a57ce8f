//! Runs the eval-mode forward of a masked model N times (for profiling the inference path).
//! `cargo run --release --example infer_profile -- MODEL SPARSITY N`
use suptickets::models::{build, ModelConfig};
use suptickets::rng::Rng;
use suptickets::sparse::density::DensityInit;
use suptickets::sparse::mask::{init_random_masks, MaskInit};
use suptickets::Tensor;

fn main() -> suptickets::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let model = a.get(1).map_or("vgg16", |s| s.as_str());
    let sparsity: f64 = a.get(2).map_or(0.95, |s| s.parse().unwrap());
    let n: usize = a.get(3).map_or(5, |s| s.parse().unwrap());
    let mut net = build(&ModelConfig::new(model, 10))?;
    init_random_masks(
        &mut net.store,
        &MaskInit {
            sparsity,
            init: DensityInit::Uniform,
            dense_first_layer: false,
            seed: 0,
        },
    )?;
    let mut r = Rng::new(1);
    let x = Tensor::from_vec(
        (0..128 * 3 * 32 * 32).map(|_| r.normal()).collect(),
        &[128, 3, 32, 32],
    )?;
    for _ in 0..n {
        let t = std::time::Instant::now();
        net.logits(&x)?;
        eprintln!("{:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(())
}

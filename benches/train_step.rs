//! Dense CPU training step (forward + backward + SGD) of VGG-16 and ResNet-18 at batch 128,
//! 32×32×3, the configuration the PyTorch peer (`../shared/peer/peer_step.py`) times.
//! `cargo bench --bench train_step`; set `STEP_MODELS=vgg16` to run one model.

use criterion::{criterion_group, criterion_main, Criterion};
use suptickets::models::{build, ModelConfig};
use suptickets::optim::Sgd;
use suptickets::rng::Rng;
use suptickets::Tensor;

fn step_bench(c: &mut Criterion) {
    let models = std::env::var("STEP_MODELS").unwrap_or_else(|_| "vgg16,resnet18".into());
    let batch = 128;
    let mut g = c.benchmark_group("dense_train_step_b128");
    g.sample_size(10);
    g.measurement_time(std::time::Duration::from_secs(20));
    g.warm_up_time(std::time::Duration::from_secs(3));
    for name in models.split(',') {
        let mut net = build(&ModelConfig::new(name, 10)).unwrap();
        let mut r = Rng::new(1);
        let x = Tensor::from_vec(
            (0..batch * 3 * 32 * 32).map(|_| r.normal()).collect(),
            &[batch, 3, 32, 32],
        )
        .unwrap();
        let y = Tensor::from_vec((0..batch).map(|i| (i % 10) as f32).collect(), &[batch]).unwrap();
        let opt = Sgd::default();
        g.bench_function(name, |b| {
            b.iter(|| {
                let out = net.forward_backward(&x, &y).unwrap();
                opt.step(&mut net.store, &out.grads, 0.01).unwrap();
                out.loss_value().unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, step_bench);
criterion_main!(benches);

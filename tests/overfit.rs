//! Real learning on real data: a tiny ResNet overfits a fixed batch of 64 Fashion-MNIST
//! training images to 100% training accuracy on the CPU backend.

use suptickets::data::{load, DatasetKind, Loader, LoaderConfig, Split};
use suptickets::models::{build, ModelConfig};
use suptickets::optim::Sgd;
use suptickets::Tensor;

mod common;

#[test]
fn tiny_resnet_overfits_64_fashion_mnist_images() {
    if !common::have_data() {
        return;
    }
    let data = load(DatasetKind::FashionMnist, None, Split::Train).unwrap();
    let mut cfg = LoaderConfig::eval(64);
    cfg.limit = Some(64);
    let loader = Loader::new(data, cfg).unwrap();
    let batch = loader.epoch(0).next().unwrap().unwrap();
    assert_eq!(batch.n, 64);
    let x = Tensor::from_vec(batch.x, &[64, 1, 32, 32]).unwrap();
    let y = Tensor::from_vec(batch.y.clone(), &[64]).unwrap();

    let mut mc = ModelConfig::new("resnet18", 10);
    mc.in_channels = 1;
    mc.width = 0.125;
    mc.seed = 3;
    let mut net = build(&mc).unwrap();
    let opt = Sgd {
        momentum: 0.9,
        weight_decay: 0.0,
        nesterov: false,
    };
    let accuracy = |logprobs: &Tensor| {
        let lp = logprobs.to_vec().unwrap();
        let correct = lp.chunks(10).zip(&batch.y).filter(|(row, &label)| {
            let arg = row
                .iter()
                .enumerate()
                .fold(0, |b, (i, v)| if *v > row[b] { i } else { b });
            arg == label as usize
        });
        correct.count() as f32 / 64.0
    };
    let first_loss = net.forward_backward(&x, &y).unwrap().loss_value().unwrap();
    let mut last = (f32::MAX, 0.0);
    for step in 0..150 {
        let out = net.forward_backward(&x, &y).unwrap();
        last = (out.loss_value().unwrap(), accuracy(&out.logprobs));
        if step % 25 == 0 {
            println!("step {step}: loss {:.4} train acc {:.3}", last.0, last.1);
        }
        if last.1 == 1.0 && last.0 < 0.05 {
            break;
        }
        opt.step(&mut net.store, &out.grads, 0.05).unwrap();
    }
    println!(
        "first loss {first_loss:.4}, final loss {:.4}, train accuracy {:.3}",
        last.0, last.1
    );
    assert!(
        first_loss > 1.5,
        "an untrained net should be near chance: {first_loss}"
    );
    assert_eq!(
        last.1, 1.0,
        "did not reach 100% training accuracy (loss {})",
        last.0
    );
    assert!(last.0 < 0.05);
    // Eval mode (running statistics) also classifies the batch it memorised.
    let eval_acc = accuracy(&net.logprobs(&x).unwrap());
    println!("eval-mode accuracy on the batch: {eval_acc:.3}");
}

//! Loader throughput: augmented CIFAR-format batches of 128 (3×32×32) from a synthetic
//! in-memory dataset of 50k images, assembled by the [`Loader`]'s background thread.
//!
//! Run with `cargo bench --bench loader`; criterion reports the throughput in elements
//! (images) per second, and a summary line per configuration is printed too. A training step
//! of VGG-16 on 128 images takes ~2 s, so anything above ~1k images/s keeps up ten times over.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::time::Instant;
use suptickets::data::{Dataset, Loader, LoaderConfig};

const N: usize = 50_000;
const BATCH: usize = 128;

fn configs() -> Vec<(&'static str, LoaderConfig)> {
    let train = LoaderConfig::train(BATCH, 1);
    let mut train_par = train.clone();
    train_par.parallel = true;
    vec![
        ("train_serial", train),
        ("train_rayon", train_par),
        ("eval", LoaderConfig::eval(BATCH)),
    ]
}

/// One full epoch through the iterator, timed by hand, for a plain images/s line.
fn report(data: &Dataset) {
    for (name, cfg) in configs() {
        let loader = Loader::new(data.clone(), cfg).unwrap();
        let t = Instant::now();
        let mut images = 0;
        for b in loader.epoch(0) {
            let b = b.unwrap();
            images += b.n;
            std::hint::black_box(&b.x);
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "loader/{name}: {images} images in {:.3} s = {:.0} images/s ({} batches of {BATCH})",
            s,
            images as f64 / s,
            loader.batches_per_epoch()
        );
    }
}

fn bench(c: &mut Criterion) {
    let data = Dataset::synthetic(N, 3, 32, 32, 10, 7);
    report(&data);

    let mut g = c.benchmark_group("loader");
    g.sample_size(10);
    for (name, cfg) in configs() {
        let loader = Loader::new(data.clone(), cfg).unwrap();
        // A whole epoch through the prefetching iterator.
        g.throughput(Throughput::Elements(loader.examples_per_epoch() as u64));
        g.bench_function(format!("epoch_{name}"), |b| {
            b.iter(|| loader.epoch(0).map(|b| b.unwrap().n).sum::<usize>())
        });
        // One batch assembled on the calling thread (includes computing the epoch order).
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function(format!("batch_{name}"), |b| {
            b.iter_batched(|| (), |_| loader.batch(0, 1), BatchSize::SmallInput)
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

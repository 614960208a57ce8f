//! The loader: determinism per seed and epoch, training and eval modes, limits, bad
//! configurations and the validation split.

use super::*;

fn synth(n: usize) -> Dataset {
    Dataset::synthetic(n, 3, 8, 8, 10, 77)
}

fn epoch(l: &Loader, e: usize) -> Vec<suptickets::data::Batch> {
    l.epoch(e).collect()
}

fn flat_indices(batches: &[suptickets::data::Batch]) -> Vec<usize> {
    batches.iter().flat_map(|b| b.indices.clone()).collect()
}

#[test]
fn loader_is_deterministic_per_seed_and_epoch() {
    let cfg = LoaderConfig::train(16, 42);
    let a = Loader::new(synth(100), cfg.clone()).unwrap();
    let b = Loader::new(synth(100), cfg.clone()).unwrap();
    // Epoch 3 straight away equals epoch 3 after running epochs 0..3 (resume).
    for e in 0..3 {
        epoch(&a, e);
    }
    let a3 = epoch(&a, 3);
    assert_eq!(a3, epoch(&b, 3));
    assert_eq!(a3, epoch(&a, 3));
    // A different epoch or seed gives a different order; every order is a permutation.
    let a4 = epoch(&a, 4);
    assert_ne!(flat_indices(&a3), flat_indices(&a4));
    let other = Loader::new(synth(100), LoaderConfig::train(16, 43)).unwrap();
    assert_ne!(flat_indices(&a3), flat_indices(&epoch(&other, 3)));
    for batches in [&a3, &a4] {
        let mut idx = flat_indices(batches);
        assert_ne!(idx, (0..100).collect::<Vec<_>>());
        idx.sort_unstable();
        assert_eq!(idx, (0..100).collect::<Vec<_>>());
    }
    assert_eq!(a.order(3), flat_indices(&a3));
    // Shapes and labels.
    assert_eq!(a.batches_per_epoch(), 7);
    assert_eq!(
        a3.iter().map(|b| b.n).collect::<Vec<_>>(),
        [16, 16, 16, 16, 16, 16, 4]
    );
    let d = a.dataset();
    for (k, b) in a3.iter().enumerate() {
        assert_eq!(b.index, k);
        assert_eq!(b.x.len(), b.n * 3 * 8 * 8);
        let want: Vec<f32> = b.indices.iter().map(|&i| d.labels[i] as f32).collect();
        assert_eq!(b.y, want);
        assert!(b.y.iter().all(|v| v.fract() == 0.0));
    }
    // Mid-epoch resume.
    assert_eq!(a.epoch_from(3, 4).collect::<Vec<_>>(), a3[4..].to_vec());
}

#[test]
fn training_mode_augments() {
    let d = synth(64);
    let train = Loader::new(d.clone(), LoaderConfig::train(64, 1)).unwrap();
    let eval = Loader::new(d.clone(), LoaderConfig::eval(64)).unwrap();
    let t = train.batch(0, 0);
    let e = eval.batch(0, 0);
    let il = 3 * 8 * 8;
    let norm = Normalizer::new(&d.mean, &d.std);
    let mut changed = 0;
    for (k, &i) in t.indices.iter().enumerate() {
        let mut plain = vec![0.0; il];
        normalize_into(d.image(i), &norm, &mut plain);
        assert_eq!(&e.x[i * il..(i + 1) * il], &plain[..]);
        changed += (t.x[k * il..(k + 1) * il] != plain[..]) as usize;
    }
    // 1/81 chance of the identity crop, then a 1/2 chance of no flip: nearly all change.
    assert!(changed > 55, "{changed} of 64 augmented");
    // Same batch, other epoch: other augmentation.
    assert_ne!(train.batch(0, 0).x, train.batch(1, 0).x);
    assert_eq!(train.batch(1, 0), train.batch(1, 0));
}

#[test]
fn eval_mode_is_in_order_and_complete() {
    let d = synth(50);
    let l = Loader::new(d.clone(), LoaderConfig::eval(16)).unwrap();
    let b = epoch(&l, 0);
    assert_eq!(l.batches_per_epoch(), 4);
    assert_eq!(b.iter().map(|b| b.n).collect::<Vec<_>>(), [16, 16, 16, 2]);
    assert_eq!(flat_indices(&b), (0..50).collect::<Vec<_>>());
    assert_eq!(b, epoch(&l, 7), "eval order does not depend on the epoch");
    let y: Vec<f32> = b.iter().flat_map(|b| b.y.clone()).collect();
    assert_eq!(y, d.labels.iter().map(|&l| l as f32).collect::<Vec<_>>());

    let mut cfg = LoaderConfig::eval(16);
    cfg.drop_last = true;
    let l = Loader::new(d.clone(), cfg).unwrap();
    assert_eq!((l.batches_per_epoch(), l.examples_per_epoch()), (3, 48));
    let b = epoch(&l, 0);
    assert_eq!(flat_indices(&b), (0..48).collect::<Vec<_>>());

    let mut cfg = LoaderConfig::train(8, 5);
    cfg.drop_last = true;
    let l = Loader::new(d.clone(), cfg).unwrap();
    assert!(epoch(&l, 0).iter().all(|b| b.n == 8));
    assert_eq!(epoch(&l, 0).len(), 6);
}

#[test]
fn limit_uses_first_examples() {
    let mut cfg = LoaderConfig::train(4, 9);
    cfg.limit = Some(10);
    let l = Loader::new(synth(50), cfg).unwrap();
    assert_eq!((l.len(), l.batches_per_epoch()), (10, 3));
    let mut idx = flat_indices(&epoch(&l, 2));
    idx.sort_unstable();
    assert_eq!(idx, (0..10).collect::<Vec<_>>());
    let mut cfg = LoaderConfig::eval(4);
    cfg.limit = Some(1000);
    assert_eq!(Loader::new(synth(50), cfg).unwrap().len(), 50);
}

#[test]
fn loader_rejects_bad_config() {
    assert!(Loader::new(synth(5), LoaderConfig::train(0, 1)).is_err());
    let mut cfg = LoaderConfig::train(2, 1);
    cfg.prefetch = 0;
    assert!(Loader::new(synth(5), cfg).is_err());
    let mut d = synth(5);
    d.labels[2] = 10;
    let e = Loader::new(d, LoaderConfig::eval(2))
        .unwrap_err()
        .to_string();
    assert!(e.contains("label 10"), "{e}");
    assert_eq!(LoaderConfig::eval(3).mode, Mode::Eval);
}

#[test]
fn validation_split_is_disjoint_and_seeded() {
    let d = synth(200);
    let (fit, val) = split_validation(&d, 0.1, 11).unwrap();
    assert_eq!((fit.n, val.n), (180, 20));
    // Reassemble: every image appears once in exactly one half.
    let key = |ds: &Dataset, i: usize| ds.image(i).to_vec();
    let mut all: Vec<Vec<u8>> = (0..fit.n)
        .map(|i| key(&fit, i))
        .chain((0..val.n).map(|i| key(&val, i)))
        .collect();
    let mut orig: Vec<Vec<u8>> = (0..d.n).map(|i| key(&d, i)).collect();
    all.sort();
    orig.sort();
    assert_eq!(all, orig);
    let (_, val2) = split_validation(&d, 0.1, 12).unwrap();
    assert_ne!(val, val2);
    let (fit0, val0) = split_validation(&d, 0.0, 1).unwrap();
    assert_eq!((fit0.n, val0.n), (200, 0));
    assert_eq!(fit0.images, d.images);
}

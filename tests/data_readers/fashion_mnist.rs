//! Fashion-MNIST (gzipped or plain IDX): round trips, every bad-file case, and the real files
//! when they are installed.

use super::*;

/// Pixel (y, x) of generated 28×28 image i.
fn fm_pixel(i: usize, y: usize, x: usize) -> u8 {
    ((i * 31 + y * 28 + x) % 251 + 1) as u8 // never 0, so padding is distinguishable
}

fn fm_label(i: usize) -> u8 {
    ((i * 7 + 3) % 10) as u8
}

fn fm_images(n: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(n * 784);
    for i in 0..n {
        for y in 0..28 {
            for x in 0..28 {
                data.push(fm_pixel(i, y, x));
            }
        }
    }
    idx::encode(&[n, 28, 28], &data)
}

fn fm_labels(n: usize) -> Vec<u8> {
    idx::encode(&[n], &(0..n).map(fm_label).collect::<Vec<_>>())
}

const TRAIN_IMG: &str = "train-images-idx3-ubyte";
const TRAIN_LBL: &str = "train-labels-idx1-ubyte";
const TEST_IMG: &str = "t10k-images-idx3-ubyte";
const TEST_LBL: &str = "t10k-labels-idx1-ubyte";

/// Writes gzipped Fashion-MNIST train files with `n` images into `dir`.
fn write_fm_train(dir: &Path, n: usize) {
    write(&dir.join(format!("{TRAIN_IMG}.gz")), &gzip(&fm_images(n)));
    write(&dir.join(format!("{TRAIN_LBL}.gz")), &gzip(&fm_labels(n)));
}

fn fm_err(dir: &Path) -> String {
    load(DatasetKind::FashionMnist, Some(dir), Split::Train)
        .unwrap_err()
        .to_string()
}

fn check_fm(d: &Dataset, n: usize) {
    assert_eq!(
        (d.n, d.channels, d.height, d.width, d.num_classes),
        (n, 1, 32, 32, 10)
    );
    assert_eq!(
        (d.mean.clone(), d.std.clone()),
        (vec![0.2860], vec![0.3530])
    );
    assert_eq!(
        d.labels,
        (0..n).map(|i| fm_label(i) as u16).collect::<Vec<_>>()
    );
    for i in 0..n {
        let img = d.image(i);
        for y in 0..32 {
            for x in 0..32 {
                let inside = (2..30).contains(&y) && (2..30).contains(&x);
                let want = if inside { fm_pixel(i, y - 2, x - 2) } else { 0 };
                assert_eq!(img[y * 32 + x], want, "image {i} pixel ({y},{x})");
            }
        }
    }
    d.validate().unwrap();
}

#[test]
fn fashion_mnist_gz_round_trip_with_padding() {
    let t = TempDir::new("fm-gz");
    write_fm_train(t.path(), 5);
    let d = load(DatasetKind::FashionMnist, Some(t.path()), Split::Train).unwrap();
    check_fm(&d, 5);
    assert_eq!(d.name, "fashion-mnist/train");
}

#[test]
fn fashion_mnist_uncompressed_and_test_split() {
    let t = TempDir::new("fm-raw");
    write(&t.path().join(TEST_IMG), &fm_images(4));
    write(&t.path().join(TEST_LBL), &fm_labels(4));
    let d = load(DatasetKind::FashionMnist, Some(t.path()), Split::Test).unwrap();
    check_fm(&d, 4);
    assert_eq!(d.name, "fashion-mnist/test");
}

#[test]
fn fashion_mnist_in_subdir() {
    let t = TempDir::new("fm-sub");
    write_fm_train(&t.path().join("fashion-mnist"), 3);
    let d = load(DatasetKind::FashionMnist, Some(t.path()), Split::Train).unwrap();
    check_fm(&d, 3);
}

#[test]
fn fashion_mnist_missing_dir_and_files() {
    let t = TempDir::new("fm-missing");
    let nowhere = t.path().join("nowhere");
    let e = fm_err(&nowhere);
    assert_has(
        &e,
        &[
            "nowhere",
            "apt-get install dataset-fashion-mnist",
            "--data-dir",
            "given by --data-dir",
        ],
    );

    let e = fm_err(t.path());
    assert_has(
        &e,
        &[
            "train-images-idx3-ubyte.gz",
            "apt-get install dataset-fashion-mnist",
            "--data-dir",
        ],
    );

    write(
        &t.path().join(format!("{TRAIN_IMG}.gz")),
        &gzip(&fm_images(2)),
    );
    let e = fm_err(t.path());
    assert_has(&e, &["train-labels-idx1-ubyte", "apt-get install"]);
}

#[test]
fn fashion_mnist_truncated_decompressed_data() {
    let t = TempDir::new("fm-trunc");
    write_fm_train(t.path(), 3);
    let mut img = fm_images(3);
    img.truncate(16 + 784 + 100); // header says 3 images
    write(&t.path().join(format!("{TRAIN_IMG}.gz")), &gzip(&img));
    let e = fm_err(t.path());
    assert_has(
        &e,
        &[
            "train-images-idx3-ubyte.gz",
            "truncated",
            "byte offset 900",
            "2368", // expected: 16 + 3*784
        ],
    );

    // A header cut inside the dimensions.
    write(&t.path().join(format!("{TRAIN_IMG}.gz")), &gzip(&img[..10]));
    let e = fm_err(t.path());
    assert_has(
        &e,
        &["train-images-idx3-ubyte.gz", "truncated", "byte offset 10"],
    );
}

#[test]
fn fashion_mnist_truncated_and_corrupt_gzip() {
    let t = TempDir::new("fm-gz-bad");
    write_fm_train(t.path(), 20);
    let path = t.path().join(format!("{TRAIN_IMG}.gz"));
    let good = gzip(&fm_images(20));

    // Compressed stream cut in the middle.
    write(&path, &good[..good.len() / 2]);
    let e = fm_err(t.path());
    assert_has(&e, &["train-images-idx3-ubyte.gz", "byte offset"]);

    // Garbage in the deflate stream.
    let mut bad = good.clone();
    for b in bad[20..60].iter_mut() {
        *b ^= 0xa5;
    }
    write(&path, &bad);
    let e = fm_err(t.path());
    assert_has(&e, &["train-images-idx3-ubyte.gz", "byte offset"]);

    // Right name, not gzip at all.
    write(&path, &fm_images(20));
    let e = fm_err(t.path());
    assert_has(&e, &["train-images-idx3-ubyte.gz", "gzip", "byte offset 0"]);
}

#[test]
fn fashion_mnist_wrong_magic() {
    let t = TempDir::new("fm-magic");
    write_fm_train(t.path(), 2);
    // Labels file where the images should be.
    write(
        &t.path().join(format!("{TRAIN_IMG}.gz")),
        &gzip(&fm_labels(2)),
    );
    let e = fm_err(t.path());
    assert_has(
        &e,
        &[
            "train-images-idx3-ubyte.gz",
            "wrong magic number 0x00000801",
            "0x00000803",
            "byte offset 0",
        ],
    );
    // And arbitrary bytes in the labels file.
    write_fm_train(t.path(), 2);
    write(
        &t.path().join(format!("{TRAIN_LBL}.gz")),
        &gzip(b"\x12\x34\x56\x78\0\0\0\x02\x01\x02"),
    );
    let e = fm_err(t.path());
    assert_has(
        &e,
        &["train-labels-idx1-ubyte.gz", "0x12345678", "0x00000801"],
    );
}

#[test]
fn fashion_mnist_label_out_of_range() {
    let t = TempDir::new("fm-label");
    write_fm_train(t.path(), 6);
    let mut l = fm_labels(6);
    l[8 + 4] = 10;
    write(&t.path().join(format!("{TRAIN_LBL}.gz")), &gzip(&l));
    let e = fm_err(t.path());
    assert_has(
        &e,
        &[
            "train-labels-idx1-ubyte.gz",
            "label 10",
            "example 4",
            "byte offset 12",
        ],
    );
}

#[test]
fn fashion_mnist_count_mismatch_and_trailing_bytes_and_shape() {
    let t = TempDir::new("fm-count");
    write_fm_train(t.path(), 5);
    write(
        &t.path().join(format!("{TRAIN_LBL}.gz")),
        &gzip(&fm_labels(4)),
    );
    let e = fm_err(t.path());
    assert_has(
        &e,
        &[
            "train-labels-idx1-ubyte.gz",
            "train-images-idx3-ubyte.gz",
            "4 labels",
            "5 images",
        ],
    );

    write_fm_train(t.path(), 5);
    let mut l = fm_labels(5);
    l.extend_from_slice(&[1, 2]);
    write(&t.path().join(format!("{TRAIN_LBL}.gz")), &gzip(&l));
    let e = fm_err(t.path());
    assert_has(
        &e,
        &[
            "train-labels-idx1-ubyte.gz",
            "2 unexpected trailing bytes",
            "byte offset 13",
        ],
    );

    write_fm_train(t.path(), 2);
    write(
        &t.path().join(format!("{TRAIN_IMG}.gz")),
        &gzip(&idx::encode(&[2, 27, 27], &[0; 2 * 27 * 27])),
    );
    let e = fm_err(t.path());
    assert_has(&e, &["train-images-idx3-ubyte.gz", "27×27", "28×28"]);
}

#[test]
fn real_fashion_mnist_if_installed() {
    if !common::have_data() {
        return;
    }
    let train = load(DatasetKind::FashionMnist, None, Split::Train).unwrap();
    let test = load(DatasetKind::FashionMnist, None, Split::Test).unwrap();
    assert_eq!((train.n, test.n), (60_000, 10_000));
    for d in [&train, &test] {
        assert_eq!((d.channels, d.height, d.width), (1, 32, 32));
        assert!(d.labels.iter().all(|&l| l < 10));
        d.validate().unwrap();
    }
    assert_eq!(&train.labels[..10], &[9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    assert_eq!(&test.labels[..10], &[9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    // Every class is present 6000 times in the training set.
    let mut counts = [0usize; 10];
    train.labels.iter().for_each(|&l| counts[l as usize] += 1);
    assert_eq!(counts, [6000; 10]);
    // The normalisation constants of docs/computation.md (Data) are the statistics of the 28×28
    // training pixels (padding adds zeros only, so sums over the padded images are the same).
    let count = (60_000 * 28 * 28) as f64;
    let (s, s2) = train.images.iter().fold((0f64, 0f64), |(s, s2), &v| {
        let v = v as f64 / 255.0;
        (s + v, s2 + v * v)
    });
    let mean = s / count;
    let std = (s2 / count - mean * mean).sqrt();
    assert!((mean - 0.2860).abs() < 5e-4, "mean {mean}");
    assert!((std - 0.3530).abs() < 5e-4, "std {std}");
    // Padding is zero.
    assert!(train.image(0)[..64].iter().all(|&v| v == 0));
}

// ---------------------------------------------------------------------------------------
// CIFAR
// ---------------------------------------------------------------------------------------

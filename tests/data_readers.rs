//! Data-layer integration tests: files written in the exact on-disk formats (gzipped IDX,
//! CIFAR-10/100 binary) to a temporary directory and read back, every bad-input case, the
//! augmentation's properties, loader determinism, and the real Fashion-MNIST files when
//! they are installed.

use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
mod common;

use suptickets::data::augment::{augment_into, normalize_into, CropFlip, Normalizer};
use suptickets::data::{
    cifar, idx, load, split_validation, Dataset, DatasetKind, Loader, LoaderConfig, Mode, Split,
};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = common::tmp_dir("data", &format!("{tag}-{n}"));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

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

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "expected {p:?} in error message:\n{msg}");
    }
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

/// A CIFAR record with the given label bytes; pixel p of record r is `(r*13 + p) % 256`.
fn cifar_record(labels: &[u8], r: usize) -> Vec<u8> {
    let mut rec = labels.to_vec();
    rec.extend((0..3072).map(|p| ((r * 13 + p) % 256) as u8));
    rec
}

fn cifar10_file(first_record: usize, n: usize) -> Vec<u8> {
    (first_record..first_record + n)
        .flat_map(|r| cifar_record(&[(r % 10) as u8], r))
        .collect()
}

fn cifar100_file(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|r| cifar_record(&[(r % 20) as u8, (r * 11 % 100) as u8], r))
        .collect()
}

/// Writes CIFAR-10 train (5 × 2 records) and test (3 records) files into `dir`.
fn write_cifar10(dir: &Path) {
    for b in 0..5 {
        write(
            &dir.join(format!("data_batch_{}.bin", b + 1)),
            &cifar10_file(2 * b, 2),
        );
    }
    write(&dir.join("test_batch.bin"), &cifar10_file(100, 3));
}

fn cifar_err(kind: DatasetKind, file: &Path, expected: Option<usize>) -> String {
    cifar::load_files(kind, &[file.to_path_buf()], expected, "t")
        .unwrap_err()
        .to_string()
}

// ---------------------------------------------------------------------------------------
// Fashion-MNIST / IDX
// ---------------------------------------------------------------------------------------

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

#[test]
fn cifar10_round_trip_and_subdir() {
    for sub in [false, true] {
        let t = TempDir::new("c10");
        let dir = if sub {
            t.path().join("cifar-10-batches-bin")
        } else {
            t.path().to_path_buf()
        };
        write_cifar10(&dir);
        let src = suptickets::data::DirSource::Explicit;
        let files = cifar::locate(DatasetKind::Cifar10, t.path(), src, Split::Train).unwrap();
        assert_eq!(files.len(), 5);
        assert!(files.iter().all(|f| f.starts_with(&dir)));
        let d = cifar::load_files(DatasetKind::Cifar10, &files, Some(2), "c10").unwrap();
        assert_eq!(
            (d.n, d.channels, d.height, d.width, d.num_classes),
            (10, 3, 32, 32, 10)
        );
        assert_eq!(d.labels, (0..10).map(|r| r as u16).collect::<Vec<_>>());
        for r in 0..10 {
            let img = d.image(r);
            assert!(img
                .iter()
                .enumerate()
                .all(|(p, &v)| v == ((r * 13 + p) % 256) as u8));
        }
        assert_eq!(d.mean, vec![0.4914, 0.4822, 0.4465]);
        assert_eq!(d.std, vec![0.2023, 0.1994, 0.2010]);
        d.validate().unwrap();

        let tf = cifar::locate(DatasetKind::Cifar10, t.path(), src, Split::Test).unwrap();
        assert_eq!(tf, vec![dir.join("test_batch.bin")]);
        let test = cifar::load_files(DatasetKind::Cifar10, &tf, None, "t").unwrap();
        assert_eq!(test.labels, vec![0, 1, 2]);
        assert_eq!(test.image(1)[5], ((101 * 13 + 5) % 256) as u8);
    }
}

#[test]
fn cifar10_official_sizes_are_required_by_load() {
    let t = TempDir::new("c10-size");
    write_cifar10(t.path());
    let e = load(DatasetKind::Cifar10, Some(t.path()), Split::Train)
        .unwrap_err()
        .to_string();
    assert_has(
        &e,
        &[
            "data_batch_1.bin",
            "truncated",
            "byte offset 6146",
            "30730000",
            "10000 records",
        ],
    );
    let e = load(DatasetKind::Cifar10, Some(t.path()), Split::Test)
        .unwrap_err()
        .to_string();
    assert_has(&e, &["test_batch.bin", "byte offset 9219"]);
}

#[test]
fn cifar100_fine_labels_and_subdir() {
    let t = TempDir::new("c100");
    let dir = t.path().join("cifar-100-binary");
    write(&dir.join("train.bin"), &cifar100_file(4));
    write(&dir.join("test.bin"), &cifar100_file(2));
    let src = suptickets::data::DirSource::Explicit;
    let files = cifar::locate(DatasetKind::Cifar100, t.path(), src, Split::Train).unwrap();
    assert_eq!(files, vec![dir.join("train.bin")]);
    let d = cifar::load_files(DatasetKind::Cifar100, &files, None, "c100").unwrap();
    assert_eq!((d.n, d.num_classes), (4, 100));
    assert_eq!(d.labels, vec![0, 11, 22, 33]);
    assert_eq!(d.image(2)[0], 26);
    assert_eq!(d.mean, vec![0.5071, 0.4865, 0.4409]);
    assert_eq!(d.std, vec![0.2673, 0.2564, 0.2762]);
    let files = cifar::locate(DatasetKind::Cifar100, t.path(), src, Split::Test).unwrap();
    assert_eq!(files, vec![dir.join("test.bin")]);
    // CIFAR-10 files are not CIFAR-100 files.
    assert!(cifar::locate(DatasetKind::Cifar10, t.path(), src, Split::Train).is_err());
}

#[test]
fn cifar_missing_files() {
    let t = TempDir::new("c-missing");
    let e = load(
        DatasetKind::Cifar10,
        Some(&t.path().join("nope")),
        Split::Train,
    )
    .unwrap_err()
    .to_string();
    assert_has(
        &e,
        &[
            "nope",
            "no such directory",
            "--data-dir",
            "cifar-10-binary.tar.gz",
        ],
    );

    let e = load(DatasetKind::Cifar10, Some(t.path()), Split::Train)
        .unwrap_err()
        .to_string();
    assert_has(
        &e,
        &[
            "data_batch_1.bin",
            "test_batch.bin",
            "cifar-10-batches-bin",
            "--data-dir",
            "SUPTICKETS_DATA_DIR",
        ],
    );
    // Four of five batches: the message names the missing one.
    write_cifar10(t.path());
    std::fs::remove_file(t.path().join("data_batch_4.bin")).unwrap();
    let e = load(DatasetKind::Cifar10, Some(t.path()), Split::Train)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&t.path().join("data_batch_4.bin").display().to_string()),
        "{e}"
    );

    let e = load(DatasetKind::Cifar100, Some(t.path()), Split::Test)
        .unwrap_err()
        .to_string();
    assert_has(
        &e,
        &["test.bin", "train.bin", "cifar-100-binary", "--data-dir"],
    );
}

#[test]
fn cifar_bad_contents() {
    let t = TempDir::new("c-bad");
    let f = t.path().join("data_batch_1.bin");

    // Not a multiple of the record size.
    let mut b = cifar10_file(0, 3);
    b.truncate(2 * 3073 + 1000);
    write(&f, &b);
    let e = cifar_err(DatasetKind::Cifar10, &f, None);
    assert_has(
        &e,
        &[
            "data_batch_1.bin",
            "not a multiple",
            "3073",
            "byte offset 6146",
            "byte offset 7146",
        ],
    );

    // Label out of range in record 2.
    let mut b = cifar10_file(0, 3);
    b[2 * 3073] = 10;
    write(&f, &b);
    let e = cifar_err(DatasetKind::Cifar10, &f, None);
    assert_has(
        &e,
        &[
            "data_batch_1.bin",
            "label 10",
            "record 2",
            "byte offset 6146",
        ],
    );

    // Empty file.
    write(&f, &[]);
    assert_has(
        &cifar_err(DatasetKind::Cifar10, &f, None),
        &["data_batch_1.bin", "empty"],
    );

    // Longer than the official size.
    write(&f, &cifar10_file(0, 3));
    let e = cifar_err(DatasetKind::Cifar10, &f, Some(2));
    assert_has(
        &e,
        &["data_batch_1.bin", "unexpected bytes", "byte offset 6146"],
    );

    // CIFAR-100: fine label 100 in record 1, coarse label 20 in record 0.
    let f = t.path().join("train.bin");
    let mut b = cifar100_file(2);
    b[3074 + 1] = 100;
    write(&f, &b);
    let e = cifar_err(DatasetKind::Cifar100, &f, None);
    assert_has(&e, &["train.bin", "label 100", "byte offset 3075"]);
    let mut b = cifar100_file(2);
    b[0] = 20;
    write(&f, &b);
    let e = cifar_err(DatasetKind::Cifar100, &f, None);
    assert_has(&e, &["train.bin", "coarse label 20", "byte offset 0"]);
    // A CIFAR-10 file read as CIFAR-100 does not fit the record size.
    write(&f, &cifar10_file(0, 2));
    let e = cifar_err(DatasetKind::Cifar100, &f, None);
    assert_has(&e, &["train.bin", "not a multiple of the record size 3074"]);
}

// ---------------------------------------------------------------------------------------
// Augmentation
// ---------------------------------------------------------------------------------------

fn ramp_image(c: usize, h: usize, w: usize) -> Vec<u8> {
    (0..c * h * w).map(|i| (i * 7 % 256) as u8).collect()
}

#[test]
fn crop_at_zero_is_padded_shift() {
    let (c, h, w, pad) = (3, 32, 32, 4);
    let src = ramp_image(c, h, w);
    let (mean, std) = DatasetKind::Cifar10.mean_std();
    let norm = Normalizer::new(&mean, &std);
    let mut out = vec![0.0; c * h * w];
    let cf = CropFlip {
        dy: 0,
        dx: 0,
        flip: false,
    };
    augment_into(&src, h, w, pad, cf, &norm, &mut out);
    for ch in 0..c {
        let pad_value = (0.0 - mean[ch]) / std[ch];
        for y in 0..h {
            for x in 0..w {
                let got = out[(ch * h + y) * w + x];
                let want = if y < pad || x < pad {
                    pad_value
                } else {
                    norm.value(ch, src[(ch * h + y - pad) * w + x - pad])
                };
                assert_eq!(got, want, "({ch},{y},{x})");
            }
        }
    }
}

#[test]
fn flip_is_mirror_and_identity_is_normalisation() {
    let (c, h, w, pad) = (1, 6, 5, 2);
    let src = ramp_image(c, h, w);
    let norm = Normalizer::new(&[0.3], &[0.2]);
    for (dy, dx) in [(0, 0), (1, 3), (2, 2), (4, 4)] {
        let mut a = vec![0.0; h * w];
        let mut b = vec![0.0; h * w];
        augment_into(
            &src,
            h,
            w,
            pad,
            CropFlip {
                dy,
                dx,
                flip: false,
            },
            &norm,
            &mut a,
        );
        augment_into(
            &src,
            h,
            w,
            pad,
            CropFlip { dy, dx, flip: true },
            &norm,
            &mut b,
        );
        for y in 0..h {
            for x in 0..w {
                assert_eq!(b[y * w + x], a[y * w + (w - 1 - x)]);
            }
        }
    }
    let mut a = vec![0.0; h * w];
    let mut b = vec![0.0; h * w];
    augment_into(&src, h, w, pad, CropFlip::identity(pad), &norm, &mut a);
    normalize_into(&src, &norm, &mut b);
    assert_eq!(a, b);
}

#[test]
fn normalisation_of_known_pixels() {
    let (mean, std) = DatasetKind::Cifar10.mean_std();
    let norm = Normalizer::new(&mean, &std);
    assert!((norm.value(0, 255) - (1.0 - 0.4914) / 0.2023).abs() < 1e-6);
    assert!((norm.value(2, 0) - (-0.4465 / 0.2010)).abs() < 1e-6);
    let (mean, std) = DatasetKind::FashionMnist.mean_std();
    let norm = Normalizer::new(&mean, &std);
    assert!((norm.value(0, 51) - (0.2 - 0.2860) / 0.3530).abs() < 1e-6);
}

// ---------------------------------------------------------------------------------------
// Loader
// ---------------------------------------------------------------------------------------

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

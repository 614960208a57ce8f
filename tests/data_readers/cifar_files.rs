//! CIFAR-10/100 binary batches: round trips, the official sizes, missing files and bad
//! contents.

use super::*;

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

//! CIFAR-10 and CIFAR-100 in their binary formats.
//!
//! CIFAR-10 (`data_batch_1.bin` .. `data_batch_5.bin`, `test_batch.bin`, 10000 records each):
//! records of 1 label byte + 3072 pixel bytes (R, G, B planes of 32×32). CIFAR-100
//! (`train.bin` with 50000 records, `test.bin` with 10000): records of a coarse label byte
//! (< 20), a fine label byte (< 100) and 3072 pixel bytes; the fine label is used.

use super::{Dataset, DatasetKind, DirSource, Split};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Image side.
pub const SIDE: usize = 32;
/// Pixel bytes per record (3 planes of 32×32).
pub const IMAGE_BYTES: usize = 3 * SIDE * SIDE;

fn check_kind(kind: DatasetKind) {
    assert!(
        matches!(kind, DatasetKind::Cifar10 | DatasetKind::Cifar100),
        "not a CIFAR dataset: {kind}"
    );
}

/// Label bytes before the pixels of a record: 1 (CIFAR-10) or 2 (CIFAR-100: coarse, fine).
pub fn label_bytes(kind: DatasetKind) -> usize {
    check_kind(kind);
    if kind == DatasetKind::Cifar100 {
        2
    } else {
        1
    }
}

/// Bytes per record: 3073 (CIFAR-10) or 3074 (CIFAR-100).
pub fn record_len(kind: DatasetKind) -> usize {
    label_bytes(kind) + IMAGE_BYTES
}

/// The folder the official tarball extracts to: `cifar-10-batches-bin` or `cifar-100-binary`.
pub fn subdir(kind: DatasetKind) -> &'static str {
    check_kind(kind);
    if kind == DatasetKind::Cifar100 {
        "cifar-100-binary"
    } else {
        "cifar-10-batches-bin"
    }
}

/// The files of a split, in load order.
pub fn file_names(kind: DatasetKind, split: Split) -> &'static [&'static str] {
    check_kind(kind);
    match (kind, split) {
        (DatasetKind::Cifar100, Split::Train) => &["train.bin"],
        (DatasetKind::Cifar100, Split::Test) => &["test.bin"],
        (_, Split::Train) => &[
            "data_batch_1.bin",
            "data_batch_2.bin",
            "data_batch_3.bin",
            "data_batch_4.bin",
            "data_batch_5.bin",
        ],
        (_, Split::Test) => &["test_batch.bin"],
    }
}

/// Records in each file of the official release (10000 per CIFAR-10 batch; CIFAR-100:
/// 50000 in `train.bin`, 10000 in `test.bin`).
pub fn records_per_file(kind: DatasetKind, split: Split) -> usize {
    match (kind, split) {
        (DatasetKind::Cifar100, Split::Train) => 50_000,
        _ => 10_000,
    }
}

fn install_hint(kind: DatasetKind, dir: &Path, source: DirSource) -> String {
    let (url, files) = match kind {
        DatasetKind::Cifar100 => (
            "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
            "train.bin and test.bin",
        ),
        _ => (
            "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
            "data_batch_1.bin .. data_batch_5.bin and test_batch.bin",
        ),
    };
    format!(
        "{} directory {} ({}); download {url}, extract it and put {files} in {} or in {}, \
         or pass --data-dir (or set SUPTICKETS_DATA_DIR) to the directory holding them",
        match kind {
            DatasetKind::Cifar100 => "CIFAR-100",
            _ => "CIFAR-10",
        },
        dir.display(),
        source.describe(),
        dir.display(),
        dir.join(subdir(kind)).display()
    )
}

/// Finds the files of `split` in `dir` or in `dir/<subdir(kind)>/`.
pub fn locate(
    kind: DatasetKind,
    dir: &Path,
    source: DirSource,
    split: Split,
) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Err(Error::data(
            dir,
            format!("no such directory: {}", install_hint(kind, dir, source)),
        ));
    }
    let names = file_names(kind, split);
    let candidates = [dir.to_path_buf(), dir.join(subdir(kind))];
    for d in &candidates {
        let files: Vec<PathBuf> = names.iter().map(|n| d.join(n)).collect();
        if files.iter().all(|f| f.is_file()) {
            return Ok(files);
        }
    }
    // Report the first missing file of the candidate that has any of them.
    let d = candidates
        .iter()
        .find(|d| names.iter().any(|n| d.join(n).is_file()))
        .unwrap_or(&candidates[0]);
    let missing = names.iter().map(|n| d.join(n)).find(|f| !f.is_file());
    Err(Error::data(
        missing.expect("some file is missing"),
        format!("missing file: {}", install_hint(kind, dir, source)),
    ))
}

/// Loads one split from `dir` (see [`locate`]), requiring the official record counts so a
/// file truncated at a record boundary is still an error.
pub fn load(kind: DatasetKind, dir: &Path, source: DirSource, split: Split) -> Result<Dataset> {
    let files = locate(kind, dir, source, split)?;
    let name = format!(
        "{}/{}",
        kind.name(),
        if split == Split::Train {
            "train"
        } else {
            "test"
        }
    );
    load_files(kind, &files, Some(records_per_file(kind, split)), &name)
}

/// Loads and concatenates CIFAR binary files. With `expected_records` each file must hold
/// exactly that many records; without it any positive whole number of records is accepted.
pub fn load_files(
    kind: DatasetKind,
    files: &[PathBuf],
    expected_records: Option<usize>,
    name: &str,
) -> Result<Dataset> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for f in files {
        read_file_into(kind, f, expected_records, &mut images, &mut labels)?;
    }
    let (mean, std) = kind.mean_std();
    Ok(Dataset {
        n: labels.len(),
        images,
        labels,
        channels: 3,
        height: SIDE,
        width: SIDE,
        num_classes: kind.num_classes().expect("a fixed class count"),
        mean,
        std,
        name: name.to_string(),
    })
}

/// Reads one CIFAR binary file, appending its pixels to `images` and its (fine) labels to
/// `labels`; returns the number of records.
pub fn read_file_into(
    kind: DatasetKind,
    path: &Path,
    expected_records: Option<usize>,
    images: &mut Vec<u8>,
    labels: &mut Vec<u16>,
) -> Result<usize> {
    let bytes = super::read_file(path)?;
    parse_into(kind, path, &bytes, expected_records, images, labels)
}

/// [`read_file_into`] on bytes already in memory (`path` only feeds error messages).
pub fn parse_into(
    kind: DatasetKind,
    path: &Path,
    bytes: &[u8],
    expected_records: Option<usize>,
    images: &mut Vec<u8>,
    labels: &mut Vec<u16>,
) -> Result<usize> {
    let rec = record_len(kind);
    let lb = label_bytes(kind);
    let len = bytes.len();
    if let Some(want) = expected_records {
        let want_len = want * rec;
        if len != want_len {
            let how = if len < want_len {
                format!("truncated: data ran out at byte offset {len}")
            } else {
                format!(
                    "{} unexpected bytes from byte offset {want_len} on",
                    len - want_len
                )
            };
            return Err(Error::data(
                path,
                format!(
                    "{how}; expected {want_len} bytes ({want} records of {rec}), file is {len} \
                     bytes"
                ),
            ));
        }
    }
    if len == 0 {
        return Err(Error::data(
            path,
            format!("empty file (expected records of {rec} bytes)"),
        ));
    }
    if !len.is_multiple_of(rec) {
        let whole = len / rec;
        return Err(Error::data(
            path,
            format!(
                "file size {len} is not a multiple of the record size {rec}: record {whole} \
                 starting at byte offset {} is truncated, data ran out at byte offset {len} \
                 (expected {} bytes for {} records)",
                whole * rec,
                (whole + 1) * rec,
                whole + 1
            ),
        ));
    }
    let n = len / rec;
    images.reserve(n * IMAGE_BYTES);
    labels.reserve(n);
    for (r, chunk) in bytes.chunks_exact(rec).enumerate() {
        let off = r * rec;
        if kind == DatasetKind::Cifar100 && chunk[0] >= 20 {
            return Err(Error::data(
                path,
                format!(
                    "coarse label {} of record {r} at byte offset {off} is out of range \
                     (expected < 20)",
                    chunk[0]
                ),
            ));
        }
        let label = chunk[lb - 1];
        if usize::from(label) >= kind.num_classes().expect("a fixed class count") {
            return Err(Error::data(
                path,
                format!(
                    "label {label} of record {r} at byte offset {} is out of range \
                     (expected < {})",
                    off + lb - 1,
                    kind.num_classes().expect("a fixed class count")
                ),
            ));
        }
        labels.push(u16::from(label));
        images.extend_from_slice(&chunk[lb..]);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: DatasetKind, labels: &[u8], px: u8) -> Vec<u8> {
        let mut r = labels.to_vec();
        r.resize(label_bytes(kind) + IMAGE_BYTES, px);
        r
    }

    #[test]
    fn parses_both_variants() {
        let mut bytes = record(DatasetKind::Cifar10, &[7], 1);
        bytes.extend(record(DatasetKind::Cifar10, &[2], 9));
        let (mut im, mut lb) = (Vec::new(), Vec::new());
        let n = parse_into(
            DatasetKind::Cifar10,
            Path::new("b"),
            &bytes,
            None,
            &mut im,
            &mut lb,
        );
        assert_eq!(n.unwrap(), 2);
        assert_eq!(lb, vec![7, 2]);
        assert_eq!(im.len(), 2 * IMAGE_BYTES);
        assert_eq!((im[0], im[IMAGE_BYTES]), (1, 9));

        let bytes = record(DatasetKind::Cifar100, &[19, 99], 3);
        let (mut im, mut lb) = (Vec::new(), Vec::new());
        parse_into(
            DatasetKind::Cifar100,
            Path::new("t"),
            &bytes,
            Some(1),
            &mut im,
            &mut lb,
        )
        .unwrap();
        assert_eq!(lb, vec![99]);
        assert!(im.iter().all(|&p| p == 3));
    }

    #[test]
    fn bad_labels_name_offsets() {
        let mut bytes = record(DatasetKind::Cifar100, &[1, 2], 0);
        bytes.extend(record(DatasetKind::Cifar100, &[1, 100], 0));
        let e = parse_into(
            DatasetKind::Cifar100,
            Path::new("train.bin"),
            &bytes,
            None,
            &mut Vec::new(),
            &mut Vec::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("train.bin") && e.contains("byte offset 3075"),
            "{e}"
        );
    }
}

//! Data-layer integration tests: files written in the exact on-disk formats (gzipped IDX,
//! CIFAR-10/100 binary) to a temporary directory and read back, every bad-input case, the
//! augmentation's properties, loader determinism, and the real Fashion-MNIST files when
//! they are installed.
//!
//! Files: this one holds the shared helpers (temporary directories, gzip, file writing);
//! `fashion_mnist.rs`, `cifar_files.rs`, `augment.rs` and `loader.rs` the tests by topic.

use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
#[path = "../common/mod.rs"]
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

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "expected {p:?} in error message:\n{msg}");
    }
}

mod augment;
mod cifar_files;
mod fashion_mnist;
mod loader;

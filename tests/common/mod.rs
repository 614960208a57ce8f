//! Helpers shared by the integration tests (`mod common;` in each test file that needs them).
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

use suptickets::data::{load, DatasetKind, Split};

/// True when Fashion-MNIST is installed; otherwise prints `skipped: ...` and returns false, or
/// panics under CI (where tools/setup.sh installs it).
pub fn have_data() -> bool {
    match load(DatasetKind::FashionMnist, None, Split::Test) {
        Ok(_) => true,
        Err(e) if std::env::var_os("CI").is_none() => {
            println!("skipped: Fashion-MNIST not available ({e}); run tools/setup.sh");
            false
        }
        Err(e) => panic!("CI needs Fashion-MNIST: {e}"),
    }
}

/// True under `SUPTICKETS_REQUIRE_GPU=1`: a CUDA test must then fail instead of skipping.
pub fn gpu_required() -> bool {
    std::env::var("SUPTICKETS_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// Prints `skipped: no GPU (<why>)`, or fails when `SUPTICKETS_REQUIRE_GPU=1`.
pub fn skip_no_gpu(why: impl std::fmt::Display) {
    assert!(
        !gpu_required(),
        "SUPTICKETS_REQUIRE_GPU=1 but CUDA is unusable: {why}"
    );
    println!("skipped: no GPU ({why})");
}

/// `cuda:0` when CUDA is usable; otherwise None after [`skip_no_gpu`].
pub fn gpu_device() -> Option<suptickets::Device> {
    suptickets::Device::cuda(0).map_err(skip_no_gpu).ok()
}

/// True when CUDA is usable; otherwise prints `skipped: no GPU` and returns false, or fails
/// when `SUPTICKETS_REQUIRE_GPU=1`.
pub fn have_gpu() -> bool {
    gpu_device().is_some()
}

/// A fresh (removed if present) temporary directory `suptickets-<tag>-<pid>-<name>`.
pub fn tmp_dir(tag: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("suptickets-{tag}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

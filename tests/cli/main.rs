//! The `suptickets` binary end to end: `info`, a one-epoch `train` on a small Fashion-MNIST
//! subset and its outputs, `eval` reproducing the report, `flops`, and clear non-panicking
//! errors for bad input. Data-dependent tests print a skip message when the Fashion-MNIST files
//! are missing, unless `CI` is set.
//!
//! Files: this one holds the shared helpers (running the binary, clean-failure checks);
//! `info_flops.rs`, `errors.rs`, `train.rs` and `suptickets_runs.rs` the tests by topic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_suptickets"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run suptickets")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts a clean failure: non-zero exit, no panic, and `needle` in the message.
fn fails_clearly(o: &Output, needle: &str) {
    let e = stderr(o);
    assert!(!o.status.success(), "expected failure, stderr: {e}");
    assert!(!e.contains("panicked"), "panic: {e}");
    assert!(e.contains(needle), "expected {needle:?} in: {e}");
}

#[path = "../common/mod.rs"]
mod common;
use common::{have_data, tmp_dir};

fn tmp(name: &str) -> PathBuf {
    tmp_dir("cli", name)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

mod errors;
mod info_flops;
mod suptickets_runs;
mod train;

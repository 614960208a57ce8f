//! The run directory's contract: one training at a time writes into it (an OS advisory lock on
//! `.lock`, released by the kernel when the process ends, however it ends), and a fresh run
//! does not silently replace a run that is already there.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::trainer::{CHECKPOINT_FILE, LAST_FILE, LOG_FILE, TICKETS_DIR};
use crate::error::{Error, Result};

/// The lock file inside a run directory (holds the pid of the run that holds the lock).
pub const LOCK_FILE: &str = ".lock";

/// The files whose presence means the directory holds a run.
const RUN_MARKERS: [&str; 3] = [CHECKPOINT_FILE, "report.json", TICKETS_DIR];

/// Every output a run writes (removed by `--overwrite` before the new run starts).
const RUN_OUTPUTS: [&str; 9] = [
    CHECKPOINT_FILE,
    LAST_FILE,
    LOG_FILE,
    "config.toml",
    "report.json",
    "report.md",
    "lr.svg",
    "curves.svg",
    "tickets.svg",
];

/// What a run may do with a directory that already holds a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Existing {
    /// Refuse to start (a fresh run's default).
    #[default]
    Refuse,
    /// Remove the previous run's outputs, then start (`--overwrite`).
    Overwrite,
    /// Continue it (`--resume`).
    Continue,
}

/// Checks, without creating anything, that `out` can receive this run: not a file, not locked
/// by a running training (so that a second run fails before loading anything), and (for a
/// fresh run without `--overwrite`) no run in it already.
pub fn precheck(out: &Path, existing: Existing) -> Result<()> {
    if out.exists() && !out.is_dir() {
        return Err(Error::Config(format!(
            "--out {} is a file, not a directory",
            out.display()
        )));
    }
    let path = out.join(LOCK_FILE);
    if let Ok(mut file) = File::open(&path) {
        // Probe only: the lock is taken for the run by `claim`, before the first write.
        match file.try_lock() {
            Ok(()) => file.unlock().map_err(|e| Error::io(&path, e))?,
            Err(TryLockError::WouldBlock) => return Err(in_use(out, &mut file)),
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
    }
    refuse_existing(out, existing)
}

/// The error of a run directory whose lock another run holds (its pid read from the file).
fn in_use(out: &Path, file: &mut File) -> Error {
    let mut holder = String::new();
    let _ = file.read_to_string(&mut holder);
    let holder = match holder.trim() {
        "" => "pid unknown".to_string(),
        pid => format!("pid {pid}"),
    };
    Error::Config(format!(
        "--out {} is in use by another training run ({holder}, lock {}); wait for it to end or choose another --out",
        out.display(),
        out.join(LOCK_FILE).display()
    ))
}

fn refuse_existing(out: &Path, existing: Existing) -> Result<()> {
    if existing != Existing::Refuse {
        return Ok(());
    }
    match RUN_MARKERS.iter().find(|m| out.join(m).exists()) {
        Some(m) => Err(Error::Config(format!(
            "--out {} already holds a run ({m}); pass --overwrite to replace it, or `--resume {}` to continue it",
            out.display(),
            out.display()
        ))),
        None => Ok(()),
    }
}

/// The held lock of a run directory; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunDirLock {
    _file: File,
    /// The directory.
    pub dir: PathBuf,
}

/// Creates `out`, takes its lock (failing at once, naming the holder's pid, when another run
/// holds it), then applies `existing`: refuses a fresh run into a directory holding a run, or
/// removes the previous run's outputs.
pub fn claim(out: &Path, existing: Existing) -> Result<RunDirLock> {
    precheck(out, Existing::Continue)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let path = out.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(in_use(out, &mut file)),
        Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    let pid = std::process::id().to_string();
    file.set_len(0)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(pid.as_bytes()))
        .map_err(|e| Error::io(&path, e))?;
    refuse_existing(out, existing)?;
    if existing == Existing::Overwrite {
        remove_outputs(out)?;
    }
    Ok(RunDirLock {
        _file: file,
        dir: out.to_path_buf(),
    })
}

/// Removes a previous run's outputs from `out` (only the files a run writes).
fn remove_outputs(out: &Path) -> Result<()> {
    for f in RUN_OUTPUTS {
        let p = out.join(f);
        if p.is_file() {
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
    }
    let t = out.join(TICKETS_DIR);
    if t.is_dir() {
        std::fs::remove_dir_all(&t).map_err(|e| Error::io(&t, e))?;
    }
    Ok(())
}

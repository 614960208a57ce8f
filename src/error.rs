//! The crate's error type: every fallible path returns [`Result`] with a message that names
//! the tensor, file, flag or device involved.

use std::path::PathBuf;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Tensor shapes that do not fit an operation; the message names the tensors.
    #[error("shape error: {0}")]
    Shape(String),
    /// A device was asked for that is not available, or tensors live on different devices.
    #[error("device error: {0}")]
    Device(String),
    /// A CUDA driver, NVRTC or kernel-launch failure.
    #[error("CUDA error: {0}")]
    Cuda(String),
    /// An I/O failure on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A data file whose contents are wrong (truncated, bad magic, labels out of range...).
    #[error("{path}: {msg}")]
    Data {
        /// The file involved.
        path: PathBuf,
        /// What is wrong and where (byte offset).
        msg: String,
    },
    /// A bad configuration value, flag or argument.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Training produced NaN or infinite values (the loss, or a weight or statistic).
    #[error("training diverged: {0}")]
    Diverged(String),
}

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error tagged with the file it came from.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    /// A data-format error tagged with the file it came from.
    pub fn data(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            msg: msg.into(),
        }
    }
}

/// Returns `Err(Error::Shape)` with the formatted message.
#[macro_export]
macro_rules! shape_bail {
    ($($arg:tt)*) => { return Err($crate::error::Error::Shape(format!($($arg)*))) };
}

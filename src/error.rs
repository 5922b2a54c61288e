//! The one error type of retort: every fallible call returns [`Result`].

use std::path::PathBuf;

/// Everything that can go wrong in retort, with enough context to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Tensor shapes that do not fit the operation.
    #[error("shape error in {op}: {message}")]
    Shape {
        /// The operation that refused the shapes.
        op: &'static str,
        /// What was wrong.
        message: String,
    },
    /// Misuse of the tape: backward twice, from a non-scalar, from an untracked value.
    #[error("autograd: {0}")]
    Autograd(String),
    /// An argument outside its valid range (a negative probability, a zero stride, …).
    #[error("invalid argument to {op}: {message}")]
    InvalidArgument {
        /// The operation or function that refused the argument.
        op: &'static str,
        /// What was wrong.
        message: String,
    },
    /// A device that cannot be used (no driver, no GPU, a kernel that failed to build).
    #[error("device: {0}")]
    Device(String),
    /// A data file (labels, image, charset, config, checkpoint) whose content is wrong.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Data {
        /// The file concerned.
        path: PathBuf,
        /// The 1-based line, where the problem is on one line.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A file that could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
}

impl Error {
    /// A data error about `path` (and `line`, 1-based, where known).
    pub fn data(
        path: impl Into<PathBuf>,
        line: Option<usize>,
        message: impl Into<String>,
    ) -> Error {
        Error::Data {
            path: path.into(),
            line,
            message: message.into(),
        }
    }

    /// An I/O error about `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A shape error raised by `op`.
    pub fn shape(op: &'static str, message: impl Into<String>) -> Error {
        Error::Shape {
            op,
            message: message.into(),
        }
    }

    /// An invalid-argument error raised by `op`.
    pub fn invalid(op: &'static str, message: impl Into<String>) -> Error {
        Error::InvalidArgument {
            op,
            message: message.into(),
        }
    }
}

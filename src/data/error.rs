//! The error type of the `data` module.

use crate::io::IoError;
use std::path::PathBuf;

/// Result alias of the `data` module.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// A problem with user data, a prior file or an external simulator. `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read or is not a valid `.npy`/`.npz`.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The file is readable but its contents do not fit: shapes, dimensions, support.
    #[error("{}: {problem}", path.display())]
    File { path: PathBuf, problem: String },
    /// Simulations with NaN or ±Inf in x under `InvalidPolicy::Error`, or too many of them.
    #[error("{source_name}: {problem}")]
    Invalid {
        source_name: String,
        problem: String,
    },
    /// An external simulator program failed; `stderr_tail` is the end of what it printed there.
    #[error("simulator `{command}`: {problem}{}", stderr_suffix(stderr_tail))]
    Simulator {
        command: String,
        problem: String,
        stderr_tail: String,
    },
}

impl DataError {
    pub(crate) fn file(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        DataError::File {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

fn stderr_suffix(tail: &str) -> String {
    if tail.is_empty() {
        " (its stderr was empty)".to_string()
    } else {
        format!(" (stderr: {tail})")
    }
}

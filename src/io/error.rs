//! The error type of the `io` module.
//!
//! Every error names the file (or the in-memory buffer, via the name the
//! caller gave) and states the problem on one line, e.g.
//! `data.npz: array 'theta' missing (available: x)` or
//! `x.npy: truncated: header says 1000×3 f32 (12000 bytes), file has 8000`.

use std::fmt;
use std::path::{Path, PathBuf};

/// Result alias of the `io` module.
pub type Result<T, E = IoError> = std::result::Result<T, E>;

/// An error while reading or writing a data file.
///
/// `Display` is a single line: `"<path>: <problem>"`. The underlying
/// `std::io::Error` (if any) is folded into that line rather than exposed as a
/// `source()`, so that `anyhow`'s `{:#}` does not print it twice.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct IoError {
    path: PathBuf,
    kind: ErrorKind,
}

impl IoError {
    /// Builds an error for `path` (a file path or a name for an in-memory buffer).
    pub fn new(path: impl AsRef<Path>, kind: ErrorKind) -> Self {
        IoError {
            path: path.as_ref().to_path_buf(),
            kind,
        }
    }

    /// The file (or buffer name) the error is about.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// Consumes the error, returning what went wrong.
    pub fn into_kind(self) -> ErrorKind {
        self.kind
    }

    pub(crate) fn io(path: impl AsRef<Path>, action: &'static str, err: std::io::Error) -> Self {
        IoError::new(path, ErrorKind::Io { action, err })
    }
}

/// What went wrong, without the file name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The operating system reported an error (open, read, write, rename, ...).
    #[error("cannot {action}: {err}")]
    Io {
        /// What we were doing ("open", "read", "write", "rename", ...).
        action: &'static str,
        /// The underlying error.
        err: std::io::Error,
    },
    /// The file does not start with the `\x93NUMPY` magic.
    #[error("not a .npy file: {0}")]
    BadMagic(String),
    /// An `.npy` format version we do not know.
    #[error("unsupported .npy format version {major}.{minor} (supported: 1.0, 2.0, 3.0)")]
    UnsupportedVersion {
        /// Major version byte.
        major: u8,
        /// Minor version byte.
        minor: u8,
    },
    /// The `.npy` header dictionary is malformed.
    #[error("bad .npy header: {0}")]
    BadHeader(String),
    /// A dtype we cannot read (or that a caller did not expect).
    #[error("{0}")]
    Dtype(String),
    /// The data section is shorter than the header says.
    #[error("truncated: {0}")]
    Truncated(String),
    /// There are bytes after the data that the header describes.
    #[error("{0}")]
    TrailingData(String),
    /// A shape whose element or byte count overflows or is absurd for the input.
    #[error("{0}")]
    TooLarge(String),
    /// A named array / tensor is missing.
    #[error("{what} '{name}' missing (available: {available})")]
    Missing {
        /// "array" or "tensor".
        what: &'static str,
        /// The name that was asked for.
        name: String,
        /// Comma-separated list of what the file does contain.
        available: String,
    },
    /// A shape problem: wrong number of dimensions, shape/data length mismatch, ...
    #[error("{0}")]
    Shape(String),
    /// A value problem: non-finite samples, integers not exactly representable, ...
    #[error("{0}")]
    Value(String),
    /// The `.npz` (zip) container is malformed.
    #[error("bad .npz archive: {0}")]
    Zip(String),
    /// A problem with one member of an `.npz` archive.
    #[error("member '{member}': {inner}")]
    InMember {
        /// The zip member name, e.g. `theta.npy`.
        member: String,
        /// What is wrong with it.
        inner: Box<ErrorKind>,
    },
    /// A CSV syntax or content problem.
    #[error("line {line}: {msg}")]
    Csv {
        /// 1-based line number in the (decompressed) text.
        line: usize,
        /// What is wrong on that line.
        msg: String,
    },
    /// The safetensors container is malformed.
    #[error("bad safetensors file: {0}")]
    Safetensors(String),
    /// Anything else about the file format (unknown extension, empty file, ...).
    #[error("{0}")]
    Format(String),
}

/// Formats a shape as `1000×3` (`scalar` for 0-D), as used in messages.
pub(crate) fn fmt_shape(shape: &[usize]) -> String {
    if shape.is_empty() {
        return "scalar".to_string();
    }
    let mut s = String::new();
    for (i, d) in shape.iter().enumerate() {
        if i > 0 {
            s.push('×');
        }
        s.push_str(&d.to_string());
    }
    s
}

/// A comma-separated list for `Missing { available }`.
pub(crate) fn list_names<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let mut s = String::new();
    for (i, n) in names.into_iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(n);
    }
    if s.is_empty() {
        s.push_str("none");
    }
    s
}

/// Wraps a displayable thing so that it prints with `{:?}`-like quoting only
/// for the ASCII-printable part (used to show bad magic bytes).
pub(crate) struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

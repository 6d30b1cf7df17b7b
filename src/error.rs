//! The library's top-level error: every layer's typed error, plus invalid model files.

use crate::io::IoError;
use crate::runtime::GpuError;
use gkl_tasks::TaskError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Task(#[from] TaskError),
    /// A model directory that is not what it claims (wrong version, inconsistent shapes).
    #[error("{path}: {problem}")]
    Model { path: String, problem: String },
}

pub type Result<T> = std::result::Result<T, Error>;

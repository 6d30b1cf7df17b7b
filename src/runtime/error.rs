//! Typed errors of the GPU runtime. wgpu's own description is kept verbatim so a user
//! sees what the driver or validator said, never silent zeros.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum GpuError {
    #[error("no GPU adapter found{filter}. {hint}")]
    NoAdapter { filter: String, hint: String },
    #[error("could not open a device on adapter '{adapter}': {reason}")]
    RequestDevice { adapter: String, reason: String },
    #[error("wgpu validation error in {context}: {description}")]
    Validation {
        context: String,
        description: String,
    },
    #[error("GPU out of memory in {context}")]
    OutOfMemory { context: String },
    /// A buffer larger than the adapter's largest storage binding (or buffer): the caller may
    /// retry with less (the trainer splits its batch into micro-batches).
    #[error("buffer '{label}' needs {bytes} bytes, more than the adapter's largest binding ({max} bytes)")]
    BufferTooLarge { label: String, bytes: u64, max: u64 },
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    #[error("GPU error in {context}: {description}")]
    Internal {
        context: String,
        description: String,
    },
    #[error("reading back buffer '{label}' failed: {reason}")]
    Readback { label: String, reason: String },
    #[error("shader '{0}' is not registered")]
    UnknownShader(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

pub type GpuResult<T> = Result<T, GpuError>;

impl GpuError {
    /// Converts a wgpu error captured by an error scope into a typed error.
    pub fn from_wgpu(context: &str, e: wgpu::Error) -> Self {
        match e {
            wgpu::Error::Validation { description, .. } => GpuError::Validation {
                context: context.to_string(),
                description,
            },
            wgpu::Error::OutOfMemory { .. } => GpuError::OutOfMemory {
                context: context.to_string(),
            },
            wgpu::Error::Internal { description, .. } => GpuError::Internal {
                context: context.to_string(),
                description,
            },
        }
    }
}

//! The error type of the trainer: GPU, data and checkpoint problems, and an interruption that
//! left a usable checkpoint behind.

use crate::data::DataError;
use crate::io::IoError;
use crate::runtime::GpuError;
use std::path::PathBuf;

/// Where the last good state of an interrupted training went.
#[derive(Debug, Clone)]
pub struct SavedState {
    /// The last epoch whose state the checkpoint holds.
    pub epoch: usize,
    /// The checkpoint directory (`RUN/checkpoint`).
    pub checkpoint: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Io(#[from] IoError),
    /// Settings that cannot train (too few rows, contrastive count, divergence).
    #[error("{0}")]
    Invalid(String),
    /// A checkpoint that cannot be read or does not belong to this run.
    #[error("checkpoint {}: {problem}", path.display())]
    Checkpoint { path: PathBuf, problem: String },
    /// Training stopped part-way (a GPU fault, a data read error); `saved` says where the last
    /// good state is, if checkpoints were on.
    #[error("{cause} (during epoch {epoch}); {}", saved_text(saved))]
    Interrupted {
        cause: Box<TrainError>,
        epoch: usize,
        saved: Option<SavedState>,
    },
}

fn saved_text(s: &Option<SavedState>) -> String {
    match s {
        Some(s) => {
            let run = s
                .checkpoint
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            format!(
                "the last good state (after epoch {}) is saved in {}: continue with `gkl-gpu train --resume {run}`",
                s.epoch,
                s.checkpoint.display()
            )
        }
        None => "no checkpoint was saved (checkpoints are off, or no epoch finished)".into(),
    }
}

impl TrainError {
    /// The GPU error at the root, if any (a fault wrapped in `Interrupted` included).
    pub fn gpu(&self) -> Option<&GpuError> {
        match self {
            TrainError::Gpu(e) => Some(e),
            TrainError::Interrupted { cause, .. } => cause.gpu(),
            _ => None,
        }
    }
}

impl From<TrainError> for GpuError {
    /// For the GPU-only entry points (`train_npe`): a non-GPU error becomes `InvalidArgument`.
    fn from(e: TrainError) -> Self {
        match e {
            TrainError::Gpu(g) => g,
            other => GpuError::InvalidArgument(other.to_string()),
        }
    }
}

pub type TrainResult<T> = Result<T, TrainError>;

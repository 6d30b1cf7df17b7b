//! Training loops.
pub mod checkpoint;
pub mod error;
pub mod npe;
pub mod preprocess;
pub mod regress;
pub mod source;

pub use checkpoint::{recover_run_dir, Checkpoint};
pub use error::{SavedState, TrainError, TrainResult};
pub use source::{ShardStream, TrainSource};

use serde::{Deserialize, Serialize};

/// The surrogate trained under the generalized KL divergence (math: `gkl.md` in the notes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Normalized conditional flow q(θ|x): neural posterior estimation.
    #[default]
    Npe,
    /// Prior × exp f(θ, x): an energy (ratio) model, sampled by rejection from the prior.
    Ratio,
    /// Flow base × exp f(θ, x), sampled by rejection from the base.
    Hybrid,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Npe => "npe",
            Method::Ratio => "ratio",
            Method::Hybrid => "hybrid",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Method::Npe, Method::Ratio, Method::Hybrid]
            .into_iter()
            .find(|m| m.name() == s)
    }

    pub fn has_flow(self) -> bool {
        self != Method::Ratio
    }

    pub fn has_ratio(self) -> bool {
        self != Method::Npe
    }
}

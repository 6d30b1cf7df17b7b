//! Training loops.
//!
//! The hybrid surrogate q̃(θ|x) = q_ψ(θ|x)·exp f(θ, x) minimizes
//!   L = E_joint[−log q_ψ(θ|x) − f(θ, x)] + E_x (1/K) Σ_k exp f(θ'_k, x),  θ'_k = T_ψ⁻¹(z_k; x),
//! with z_k ~ N(0, I) drawn on the GPU every step. [`BaseGradient`] says whether the partition
//! term's gradient reaches the base flow: `Detached` (default) treats θ' as data, so ψ (and the
//! embedding net) learn from the NPE term only and f learns the correction p/q_ψ;
//! `Reparameterized` keeps z fixed and differentiates through θ' = T_ψ⁻¹(z; x): dL/dθ' is
//! dL/df (the GKL loss kernel) times ∂f/∂θ' (the ratio net's input gradient, θ columns of the
//! contrastive rows; θ' enters the ratio net in the flow's own space, the z-scored and with
//! `unconstrained` logit-transformed θ, so there is no map to chain through), and the flow's
//! inverse is differentiated by implicit differentiation of each transform
//! ([`crate::models::flow::FlowInverseGradPlan`]); the result is added to ψ's NPE gradient and
//! to the context's (hence the embedding net's) gradient.
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

/// Whether the hybrid's partition term trains the base flow (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BaseGradient {
    /// θ' is data: the base learns from its NPE term only.
    #[default]
    Detached,
    /// The partition term's gradient reaches the base flow (and the embedding net) through
    /// θ' = T⁻¹(z; x) with the draws z fixed.
    Reparameterized,
}

impl BaseGradient {
    pub fn name(self) -> &'static str {
        match self {
            BaseGradient::Detached => "detached",
            BaseGradient::Reparameterized => "reparameterized",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [BaseGradient::Detached, BaseGradient::Reparameterized]
            .into_iter()
            .find(|m| m.name() == s)
    }
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

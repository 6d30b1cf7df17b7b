//! The ten sbibm benchmark tasks (Lueckmann et al., AISTATS 2021) on the CPU: priors,
//! batched seeded simulators, tractable likelihoods, the embedded observations 1–5 and
//! reference-posterior samplers.
//!
//! ```
//! use gkl_tasks::{task_by_name, Task};
//! let task = task_by_name("two_moons").unwrap();
//! let obs = task.observation(1).unwrap();
//! let theta = task.sample_prior(4, 0);
//! let x = task.simulate(&theta, 42);
//! assert_eq!(x.len(), 4 * task.dim_x());
//! let post = task.reference_posterior(&obs.x, 100, 7).unwrap();
//! assert_eq!(post.len(), 100 * task.dim_theta());
//! ```
//!
//! Determinism: `simulate` and `reference_posterior` derive one RNG stream per row (or per
//! particle and step) from the seed, so results are identical for any rayon thread count.
//!
//! Reference posteriors ([`Task::reference_posterior`]):
//!
//! | task | method |
//! |---|---|
//! | gaussian_linear | exact: N(0.5 x_o, 0.05 I) |
//! | gaussian_linear_uniform | exact: per-coordinate N(x_o, 0.1) truncated to [−1, 1] |
//! | gaussian_mixture | exact: two truncated Gaussians, weights include the in-box mass |
//! | two_moons | exact: noise inversion + rejection on the prior box ([`tasks::two_moons`]) |
//! | slcp, slcp_distractors | tempered SMC ([`smc`]), sign modes of θ3, θ4 exact by symmetry |
//! | bernoulli_glm(_raw) | tempered SMC on the GLM likelihood (summary = Xᵀy is sufficient) |
//! | sir, lotka_volterra | tempered SMC on the Binomial / log-normal likelihood (Dormand–Prince ODE) |
//!
//! The SMC references were checked against sbibm's reference samples with sbibm's C2ST.

// Index loops mirror the math; `!(x > 0.0)` deliberately treats NaN as invalid.
#![allow(clippy::needless_range_loop, clippy::neg_cmp_op_on_partial_ord)]

pub mod distributions;
mod embedded;
pub mod linalg;
pub mod npy;
pub mod ode;
pub mod prior;
pub mod reference;
pub mod rng;
pub mod smc;
pub mod special;
pub mod tasks;

pub use prior::{Component, Prior};
pub use tasks::{
    bernoulli_glm::BernoulliGlm, gaussian_linear::GaussianLinear,
    gaussian_linear_d::GaussianLinearD, gaussian_mixture::GaussianMixture,
    lotka_volterra::LotkaVolterra, sir::Sir, slcp::Slcp, two_moons::TwoMoons,
};

use rand::Rng;
use rayon::prelude::*;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("unknown task '{name}'; valid names are: {valid}")]
    UnknownTask { name: String, valid: String },
    #[error("invalid prior: {0}")]
    InvalidPrior(String),
    #[error("{task}: observation {k} does not exist (valid: 1..={max})")]
    NoSuchObservation { task: String, k: usize, max: usize },
    #[error("dimension mismatch: {0}")]
    Dimension(String),
    #[error("embedded data: {0}")]
    Data(String),
    #[error("reference posterior: {0}")]
    Reference(String),
}

/// An observation and the parameters that generated it.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub x: Vec<f64>,
    pub theta_true: Vec<f64>,
}

/// Names accepted by [`task_by_name`].
pub const TASK_NAMES: &[&str] = &[
    "gaussian_linear",
    "gaussian_linear_uniform",
    "slcp",
    "slcp_distractors",
    "bernoulli_glm",
    "bernoulli_glm_raw",
    "gaussian_mixture",
    "two_moons",
    "sir",
    "lotka_volterra",
];

/// One benchmark task.
pub trait Task: Send + Sync {
    fn name(&self) -> &'static str;
    fn dim_theta(&self) -> usize;
    fn dim_x(&self) -> usize;
    fn prior(&self) -> &Prior;
    /// Batched, seeded, multithreaded simulator. `theta` is n×dim_theta row-major; returns
    /// n×dim_x row-major. Row i uses an RNG derived from (seed, i) only.
    /// Panics if `theta.len()` is not a multiple of `dim_theta`.
    fn simulate(&self, theta: &[f64], seed: u64) -> Vec<f64>;
    /// log p(x | θ) for one θ and one x, where tractable (None otherwise).
    fn log_likelihood(&self, theta: &[f64], x: &[f64]) -> Option<f64>;
    /// log p(x | θ) up to an additive constant that may depend on x but not on θ.
    /// Equal to [`Task::log_likelihood`] except for bernoulli_glm (summary statistics), whose
    /// exact likelihood contains an intractable count of spike trains with the same summary,
    /// and slcp_distractors, whose θ-free distractor density is numerically meaningless
    /// (nearly singular covariances); both return None from `log_likelihood`.
    fn log_likelihood_unnormalized(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        self.log_likelihood(theta, x)
    }
    /// Embedded sbibm observation k ∈ 1..=5.
    fn observation(&self, k: usize) -> Result<Observation, TaskError>;
    /// n reference-posterior samples (n×dim_theta) for any observation x_o.
    fn reference_posterior(&self, x_o: &[f64], n: usize, seed: u64) -> Result<Vec<f64>, TaskError>;
    /// Whether [`Task::reference_posterior`] draws exact independent samples (true) or uses
    /// likelihood-based SMC/MCMC (false).
    fn reference_is_exact(&self) -> bool;
    /// Number of embedded observations.
    fn num_observations(&self) -> usize {
        5
    }
    /// n prior draws (n×dim_theta), seeded.
    fn sample_prior(&self, n: usize, seed: u64) -> Vec<f64> {
        let mut rng = rng::Xoshiro256pp::for_stream(&[seed, 0x0050_5249_4f52]);
        self.prior().sample(n, &mut rng)
    }
}

/// The task called `name`: one of sbibm's ([`TASK_NAMES`]), or `gaussian_linear_d<d>`
/// ([`GaussianLinearD`], gaussian_linear in d dimensions).
pub fn task_by_name(name: &str) -> Result<Box<dyn Task>, TaskError> {
    if let Some(t) = GaussianLinearD::parse(name) {
        return Ok(Box::new(t?));
    }
    Ok(match name {
        "gaussian_linear" => Box::new(GaussianLinear::new(false)),
        "gaussian_linear_uniform" => Box::new(GaussianLinear::new(true)),
        "slcp" => Box::new(Slcp::new(false)?),
        "slcp_distractors" => Box::new(Slcp::new(true)?),
        "bernoulli_glm" => Box::new(BernoulliGlm::new(false)?),
        "bernoulli_glm_raw" => Box::new(BernoulliGlm::new(true)?),
        "gaussian_mixture" => Box::new(GaussianMixture::new()),
        "two_moons" => Box::new(TwoMoons::new()),
        "sir" => Box::new(Sir::new()),
        "lotka_volterra" => Box::new(LotkaVolterra::new()),
        _ => {
            return Err(TaskError::UnknownTask {
                name: name.to_string(),
                valid: format!(
                    "{}, {}<d>",
                    TASK_NAMES.join(", "),
                    tasks::gaussian_linear_d::PREFIX
                ),
            });
        }
    })
}

/// Rows per rayon work item in [`simulate_rows`].
const SIM_BLOCK: usize = 64;

/// Runs `sim(theta_row, x_row, rng)` for every row in parallel, row i with RNG (seed, i).
pub fn simulate_rows<F>(
    theta: &[f64],
    dim_theta: usize,
    dim_x: usize,
    seed: u64,
    sim: F,
) -> Vec<f64>
where
    F: Fn(&[f64], &mut [f64], &mut rng::Xoshiro256pp) + Sync,
{
    assert!(
        theta.len() % dim_theta == 0,
        "simulate: theta has {} entries, not a multiple of dim_theta = {dim_theta}",
        theta.len()
    );
    let n = theta.len() / dim_theta;
    let mut x = vec![0.0; n * dim_x];
    x.par_chunks_mut(dim_x * SIM_BLOCK)
        .enumerate()
        .for_each(|(b, xb)| {
            for (j, xr) in xb.chunks_mut(dim_x).enumerate() {
                let i = b * SIM_BLOCK + j;
                let mut rng = rng::row_rng(seed, i);
                sim(&theta[i * dim_theta..(i + 1) * dim_theta], xr, &mut rng);
            }
        });
    x
}

/// Parses a one-row sbibm CSV (header + values).
pub(crate) fn parse_csv_row(s: &str, what: &str) -> Result<Vec<f64>, TaskError> {
    let mut lines = s.lines().filter(|l| !l.trim().is_empty());
    let header = lines
        .next()
        .ok_or_else(|| TaskError::Data(format!("{what}: empty file")))?;
    let row = lines
        .next()
        .ok_or_else(|| TaskError::Data(format!("{what}: no data row")))?;
    let vals: Result<Vec<f64>, _> = row.split(',').map(|v| v.trim().parse::<f64>()).collect();
    let vals = vals.map_err(|e| TaskError::Data(format!("{what}: {e}")))?;
    if header.split(',').count() != vals.len() {
        return Err(TaskError::Data(format!(
            "{what}: header/row length mismatch"
        )));
    }
    Ok(vals)
}

/// Embedded observation k of sbibm folder `folder` (x from observation.csv).
pub(crate) fn embedded_observation(
    folder: &str,
    task: &str,
    k: usize,
) -> Result<Observation, TaskError> {
    let (_, _, xs, ts) = embedded::OBSERVATIONS
        .iter()
        .find(|(f, kk, _, _)| *f == folder && *kk == k)
        .ok_or_else(|| TaskError::NoSuchObservation {
            task: task.to_string(),
            k,
            max: 5,
        })?;
    Ok(Observation {
        x: parse_csv_row(xs, &format!("{folder}/num_observation_{k}/observation.csv"))?,
        theta_true: parse_csv_row(
            ts,
            &format!("{folder}/num_observation_{k}/true_parameters.csv"),
        )?,
    })
}

pub(crate) fn check_len(what: &str, v: &[f64], want: usize) -> Result<(), TaskError> {
    if v.len() != want {
        return Err(TaskError::Dimension(format!(
            "{what} has {} entries, expected {want}",
            v.len()
        )));
    }
    Ok(())
}

/// Uniform f64 in [0, 1) (helper so task code reads clearly).
#[inline]
pub(crate) fn unif<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    rng.random::<f64>()
}

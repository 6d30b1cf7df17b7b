//! bernoulli_glm (10 → 10) and bernoulli_glm_raw (10 → 100).
//!
//! Prior N(0, B) with precision B⁻¹ = blockdiag(0.5, FᵀF), F = D·D + diag(√(i/9)), i = 0..8,
//! D = I − (ones on the first sub-diagonal). y_t ~ Bernoulli(σ(X_t·θ)), t = 1..100, with the
//! fixed design X (row t = [1, I_t, I_{t−1}, ..., I_{t−8}]).
//! bernoulli_glm: x = [Σ y_t, last 9 entries of conv1d(y, I, padding 8)] = Xᵀy;
//! bernoulli_glm_raw: x = y.
//!
//! Likelihood: log p(y | θ) = Σ_t y_t η_t − log(1 + e^{η_t}), η = Xθ = θ·(Xᵀy) − Σ_t softplus(η_t).
//! The summary Xᵀy is therefore sufficient: p(x | θ) = N(x)·exp(θ·x − Σ softplus(η_t)) where
//! N(x) counts spike trains with summary x (θ-free, intractable), so the posterior given the
//! summary equals the posterior given the raw spikes. `log_likelihood` returns None for the
//! summary task; `log_likelihood_unnormalized` returns θ·x − Σ softplus(η_t).
//!
//! Reference posterior: tempered SMC on that likelihood. For an embedded observation the
//! summary is recomputed in f64 from the raw spikes (observation_raw.csv) — identical up to
//! the float32 rounding of the stored summary; any other summary x_o is used as given, which
//! is exact because the summary is sufficient.

use serde::Deserialize;

use crate::linalg;
use crate::reference::smc_posterior;
use crate::smc::SmcOptions;
use crate::special::{sigmoid, softplus};
use crate::{
    check_len, embedded, embedded_observation, parse_csv_row, simulate_rows, unif, Observation,
    Prior, Task, TaskError,
};

const T: usize = 100;
const D: usize = 10;

#[derive(Deserialize)]
struct DesignJson {
    design_matrix: Vec<Vec<f64>>,
    #[serde(rename = "stimulus_I")]
    stimulus: Vec<f64>,
}

/// bernoulli_glm / bernoulli_glm_raw.
pub struct BernoulliGlm {
    raw: bool,
    prior: Prior,
    /// Design matrix, row-major T×D.
    pub design: Vec<f64>,
    /// Stimulus I (length T).
    pub stimulus: Vec<f64>,
    /// Prior precision matrix (D×D row-major).
    pub precision: Vec<f64>,
}

impl BernoulliGlm {
    pub fn new(raw: bool) -> Result<Self, TaskError> {
        let j: DesignJson = serde_json::from_str(embedded::BERNOULLI_GLM_DESIGN)
            .map_err(|e| TaskError::Data(format!("bernoulli_glm_design.json: {e}")))?;
        if j.design_matrix.len() != T
            || j.design_matrix.iter().any(|r| r.len() != D)
            || j.stimulus.len() != T
        {
            return Err(TaskError::Data(
                "bernoulli_glm_design.json: unexpected shapes".into(),
            ));
        }
        let design: Vec<f64> = j
            .design_matrix
            .iter()
            .flat_map(|r| r.iter().cloned())
            .collect();
        let precision = prior_precision();
        let cov_flat = linalg::spd_inverse(&precision, D)
            .ok_or_else(|| TaskError::Data("bernoulli_glm: prior precision not PD".into()))?;
        let cov = (0..D)
            .map(|i| cov_flat[i * D..(i + 1) * D].to_vec())
            .collect();
        Ok(Self {
            raw,
            prior: Prior::Gaussian {
                mean: vec![0.0; D],
                cov,
            },
            design,
            stimulus: j.stimulus,
            precision,
        })
    }

    /// η = Xθ.
    fn eta(&self, theta: &[f64], eta: &mut [f64; T]) {
        for t in 0..T {
            let row = &self.design[t * D..(t + 1) * D];
            eta[t] = row.iter().zip(theta).map(|(a, b)| a * b).sum();
        }
    }

    /// Summary statistics of a spike train: [Σ y, conv1d(y, I, padding 8)[−9:]] (= Xᵀy).
    pub fn summary(&self, y: &[f64]) -> Vec<f64> {
        let mut s = vec![0.0; D];
        s[0] = y.iter().sum();
        for m in 0..D - 1 {
            // lag m: Σ_t y_t I_{t−m}
            s[1 + m] = (m..T).map(|t| y[t] * self.stimulus[t - m]).sum();
        }
        s
    }

    /// θ·s − Σ softplus(X_t θ) for a summary s = Xᵀy.
    pub fn log_likelihood_summary(&self, theta: &[f64], s: &[f64]) -> f64 {
        let mut eta = [0.0; T];
        self.eta(theta, &mut eta);
        let lin: f64 = theta.iter().zip(s).map(|(a, b)| a * b).sum();
        lin - eta.iter().map(|&e| softplus(e)).sum::<f64>()
    }

    /// The summary statistics the reference posterior conditions on: Xᵀy for a raw x_o; for a
    /// summary x_o, Xᵀy recomputed in f64 from the raw spikes when x_o is one of the embedded
    /// observations (within 1e-4 relative), else x_o itself.
    pub fn reference_summary(&self, x_o: &[f64]) -> Result<Vec<f64>, TaskError> {
        check_len("x_o", x_o, self.dim_x())?;
        if self.raw {
            return Ok(self.summary(x_o));
        }
        for k in 1..=5 {
            let sk = self.summary(&Self::raw_observation(k)?);
            if sk
                .iter()
                .zip(x_o)
                .all(|(a, b)| (a - b).abs() <= 1e-4 * (1.0 + a.abs()))
            {
                return Ok(sk);
            }
        }
        Ok(x_o.to_vec())
    }

    /// Raw spike train of embedded observation k.
    pub fn raw_observation(k: usize) -> Result<Vec<f64>, TaskError> {
        if !(1..=5).contains(&k) {
            return Err(TaskError::NoSuchObservation {
                task: "bernoulli_glm_raw".into(),
                k,
                max: 5,
            });
        }
        parse_csv_row(
            embedded::BERNOULLI_GLM_RAW[k - 1],
            &format!("bernoulli_glm/num_observation_{k}/observation_raw.csv"),
        )
    }
}

/// The prior precision blockdiag(0.5, FᵀF).
pub fn prior_precision() -> Vec<f64> {
    let m = D - 1;
    let mut dm = vec![0.0; m * m];
    for i in 0..m {
        dm[i * m + i] = 1.0;
        if i > 0 {
            dm[i * m + i - 1] = -1.0;
        }
    }
    let mut f = linalg::matmul(&dm, &dm, m, m, m);
    for i in 0..m {
        f[i * m + i] += (i as f64 / m as f64).sqrt();
    }
    let ftf = linalg::matmul(&linalg::transpose(&f, m, m), &f, m, m, m);
    let mut p = vec![0.0; D * D];
    p[0] = 0.5;
    for i in 0..m {
        for j in 0..m {
            p[(i + 1) * D + j + 1] = ftf[i * m + j];
        }
    }
    p
}

impl Task for BernoulliGlm {
    fn name(&self) -> &'static str {
        if self.raw {
            "bernoulli_glm_raw"
        } else {
            "bernoulli_glm"
        }
    }
    fn dim_theta(&self) -> usize {
        D
    }
    fn dim_x(&self) -> usize {
        if self.raw {
            T
        } else {
            D
        }
    }
    fn prior(&self) -> &Prior {
        &self.prior
    }
    fn simulate(&self, theta: &[f64], seed: u64) -> Vec<f64> {
        let raw = self.raw;
        simulate_rows(theta, D, self.dim_x(), seed, |t, x, rng| {
            let mut eta = [0.0; T];
            self.eta(t, &mut eta);
            let mut y = [0.0; T];
            for i in 0..T {
                y[i] = if unif(rng) < sigmoid(eta[i]) {
                    1.0
                } else {
                    0.0
                };
            }
            if raw {
                x.copy_from_slice(&y);
            } else {
                x.copy_from_slice(&self.summary(&y));
            }
        })
    }
    fn log_likelihood(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        if self.raw {
            let mut eta = [0.0; T];
            self.eta(theta, &mut eta);
            Some(
                x.iter()
                    .zip(eta.iter())
                    .map(|(&y, &e)| y * e - softplus(e))
                    .sum(),
            )
        } else {
            None
        }
    }
    fn log_likelihood_unnormalized(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        if self.raw {
            self.log_likelihood(theta, x)
        } else {
            Some(self.log_likelihood_summary(theta, x))
        }
    }
    fn observation(&self, k: usize) -> Result<Observation, TaskError> {
        let mut obs = embedded_observation("bernoulli_glm", self.name(), k)?;
        if self.raw {
            obs.x = Self::raw_observation(k)?;
        }
        Ok(obs)
    }
    fn reference_posterior(&self, x_o: &[f64], n: usize, seed: u64) -> Result<Vec<f64>, TaskError> {
        let summary = self.reference_summary(x_o)?;
        let ll = |theta: &[f64]| self.log_likelihood_summary(theta, &summary);
        let (s, _) = smc_posterior(&self.prior, &ll, n, seed, &bernoulli_smc_options())?;
        Ok(s)
    }
    fn reference_is_exact(&self) -> bool {
        false
    }
}

/// SMC settings used for the bernoulli_glm reference.
pub fn bernoulli_smc_options() -> SmcOptions {
    SmcOptions {
        n_particles: 4_000,
        ess_fraction: 0.5,
        min_sweeps: 5,
        max_sweeps: 60,
        stay_probability: 0.01,
        final_sweeps: 60,
        max_stages: 400,
        sign_symmetric: vec![],
    }
}

//! gaussian_mixture (2 → 2): prior U(−10, 10)²; x ~ 0.5·N(θ, I) + 0.5·N(θ, 0.01 I), the
//! component drawn independently for every simulation.

use crate::distributions::{std_normal, truncated_normal};
use crate::rng::Xoshiro256pp;
use crate::special::{log_ndtr_diff, log_sum_exp, normal_log_pdf};
use crate::{
    check_len, embedded_observation, simulate_rows, unif, Observation, Prior, Task, TaskError,
};
use rand::Rng;
use rayon::prelude::*;

const D: usize = 2;
const LO: f64 = -10.0;
const HI: f64 = 10.0;
/// Component standard deviations and weights.
const SIGMAS: [f64; 2] = [1.0, 0.1];
const WEIGHTS: [f64; 2] = [0.5, 0.5];

pub struct GaussianMixture {
    prior: Prior,
}

impl GaussianMixture {
    pub fn new() -> Self {
        Self {
            prior: Prior::BoxUniform {
                low: vec![LO; D],
                high: vec![HI; D],
            },
        }
    }

    /// Posterior component log-weights: log(w_k · P_{θ~N(x_o, σ_k² I)}(θ ∈ box)).
    pub fn posterior_log_weights(x_o: &[f64]) -> [f64; 2] {
        let mut lw = [0.0; 2];
        for k in 0..2 {
            lw[k] = WEIGHTS[k].ln()
                + x_o
                    .iter()
                    .map(|&x| log_ndtr_diff((LO - x) / SIGMAS[k], (HI - x) / SIGMAS[k]))
                    .sum::<f64>();
        }
        lw
    }
}

impl Default for GaussianMixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Task for GaussianMixture {
    fn name(&self) -> &'static str {
        "gaussian_mixture"
    }
    fn dim_theta(&self) -> usize {
        D
    }
    fn dim_x(&self) -> usize {
        D
    }
    fn prior(&self) -> &Prior {
        &self.prior
    }
    fn simulate(&self, theta: &[f64], seed: u64) -> Vec<f64> {
        simulate_rows(theta, D, D, seed, |t, x, rng| {
            let s = if unif(rng) < WEIGHTS[0] {
                SIGMAS[0]
            } else {
                SIGMAS[1]
            };
            for i in 0..D {
                x[i] = t[i] + s * std_normal(rng);
            }
        })
    }
    fn log_likelihood(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        let lk: Vec<f64> = (0..2)
            .map(|k| {
                WEIGHTS[k].ln()
                    + (0..D)
                        .map(|i| normal_log_pdf(x[i], theta[i], SIGMAS[k]))
                        .sum::<f64>()
            })
            .collect();
        Some(log_sum_exp(&lk))
    }
    fn observation(&self, k: usize) -> Result<Observation, TaskError> {
        embedded_observation(self.name(), self.name(), k)
    }
    /// Exact: the posterior is a two-component mixture of N(x_o, σ_k² I) truncated to the box,
    /// weighted by w_k times each component's mass inside the box.
    fn reference_posterior(&self, x_o: &[f64], n: usize, seed: u64) -> Result<Vec<f64>, TaskError> {
        check_len("x_o", x_o, D)?;
        let lw = Self::posterior_log_weights(x_o);
        let lz = log_sum_exp(&lw);
        if !lz.is_finite() {
            return Err(TaskError::Reference(format!(
                "gaussian_mixture: x_o = {x_o:?} has zero posterior mass in the prior box"
            )));
        }
        let p0 = (lw[0] - lz).exp();
        let mut out = vec![0.0; n * D];
        out.par_chunks_mut(D).enumerate().for_each(|(i, row)| {
            let mut rng = Xoshiro256pp::for_stream(&[seed, i as u64, 0x474d]);
            let s = if rng.random::<f64>() < p0 {
                SIGMAS[0]
            } else {
                SIGMAS[1]
            };
            for j in 0..D {
                row[j] = truncated_normal(x_o[j], s, LO, HI, &mut rng);
            }
        });
        Ok(out)
    }
    fn reference_is_exact(&self) -> bool {
        true
    }
}

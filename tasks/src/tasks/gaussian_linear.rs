//! gaussian_linear (prior N(0, 0.1 I)) and gaussian_linear_uniform (prior U(−1, 1)¹⁰):
//! x ~ N(θ, 0.1 I), 10 → 10.

use crate::distributions::{std_normal, truncated_normal};
use crate::rng::Xoshiro256pp;
use crate::special::normal_log_pdf;
use crate::{check_len, embedded_observation, simulate_rows, Observation, Prior, Task, TaskError};
use rayon::prelude::*;

const D: usize = 10;
const NOISE_VAR: f64 = 0.1;
const PRIOR_VAR: f64 = 0.1;

/// gaussian_linear / gaussian_linear_uniform.
pub struct GaussianLinear {
    uniform: bool,
    prior: Prior,
}

impl GaussianLinear {
    /// `uniform = false`: gaussian_linear; `true`: gaussian_linear_uniform.
    pub fn new(uniform: bool) -> Self {
        let prior = if uniform {
            Prior::BoxUniform {
                low: vec![-1.0; D],
                high: vec![1.0; D],
            }
        } else {
            Prior::isotropic_gaussian(D, PRIOR_VAR)
        };
        Self { uniform, prior }
    }
}

impl Task for GaussianLinear {
    fn name(&self) -> &'static str {
        if self.uniform {
            "gaussian_linear_uniform"
        } else {
            "gaussian_linear"
        }
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
        let s = NOISE_VAR.sqrt();
        simulate_rows(theta, D, D, seed, |t, x, rng| {
            for i in 0..D {
                x[i] = t[i] + s * std_normal(rng);
            }
        })
    }
    fn log_likelihood(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        let s = NOISE_VAR.sqrt();
        Some(
            theta
                .iter()
                .zip(x)
                .map(|(&t, &xi)| normal_log_pdf(xi, t, s))
                .sum(),
        )
    }
    fn observation(&self, k: usize) -> Result<Observation, TaskError> {
        embedded_observation(self.name(), self.name(), k)
    }
    /// Exact: N(0.5 x_o, 0.05 I) (gaussian prior), or N(x_o, 0.1 I) truncated to [−1, 1]¹⁰
    /// coordinate-wise (uniform prior).
    fn reference_posterior(&self, x_o: &[f64], n: usize, seed: u64) -> Result<Vec<f64>, TaskError> {
        check_len("x_o", x_o, D)?;
        let mut out = vec![0.0; n * D];
        let uniform = self.uniform;
        out.par_chunks_mut(D).enumerate().for_each(|(i, row)| {
            let mut rng = Xoshiro256pp::for_stream(&[seed, i as u64, 0x474c]);
            for j in 0..D {
                row[j] = if uniform {
                    truncated_normal(x_o[j], NOISE_VAR.sqrt(), -1.0, 1.0, &mut rng)
                } else {
                    let v = 1.0 / (1.0 / PRIOR_VAR + 1.0 / NOISE_VAR);
                    v / NOISE_VAR * x_o[j] + v.sqrt() * std_normal(&mut rng)
                };
            }
        });
        Ok(out)
    }
    fn reference_is_exact(&self) -> bool {
        true
    }
}

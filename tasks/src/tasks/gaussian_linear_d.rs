//! gaussian_linear in any dimension d (θ and x in ℝᵈ), named `gaussian_linear_d<d>`, for the
//! high-dimensional rows of the benchmark. sbibm's gaussian_linear is fixed at d = 10; this is the
//! same model at any d: prior N(0, 0.1 I), x ~ N(θ, 0.1 I), exact posterior N(x/2, 0.05 I). Observations k are
//! drawn from the model itself (θ_k from the prior, x_k from the simulator) with fixed seeds, so
//! every run sees the same ones.

use crate::distributions::std_normal;
use crate::rng::Xoshiro256pp;
use crate::{simulate_rows, Observation, Prior, Task, TaskError};

const NOISE_VAR: f64 = 0.1;
const PRIOR_VAR: f64 = 0.1;
/// Task names of this family: `gaussian_linear_d<d>`.
pub const PREFIX: &str = "gaussian_linear_d";

/// gaussian_linear with θ, x ∈ ℝᵈ.
pub struct GaussianLinearD {
    d: usize,
    name: &'static str,
    prior: Prior,
}

impl GaussianLinearD {
    pub fn new(d: usize) -> Result<Self, TaskError> {
        if d == 0 || d > 4096 {
            return Err(TaskError::Dimension(format!(
                "{PREFIX}{d}: d must be in 1..=4096"
            )));
        }
        // Task::name wants a &'static str; a handful of these exist per process.
        let name: &'static str = Box::leak(format!("{PREFIX}{d}").into_boxed_str());
        Ok(GaussianLinearD {
            d,
            name,
            prior: Prior::isotropic_gaussian(d, PRIOR_VAR),
        })
    }

    /// The task for `gaussian_linear_d<d>`, or `None` for any other name.
    pub fn parse(name: &str) -> Option<Result<Self, TaskError>> {
        let d = name.strip_prefix(PREFIX)?;
        Some(
            d.parse::<usize>()
                .map_err(|_| TaskError::Dimension(format!("{name}: expected {PREFIX}<d>")))
                .and_then(Self::new),
        )
    }
}

impl Task for GaussianLinearD {
    fn name(&self) -> &'static str {
        self.name
    }
    fn dim_theta(&self) -> usize {
        self.d
    }
    fn dim_x(&self) -> usize {
        self.d
    }
    fn prior(&self) -> &Prior {
        &self.prior
    }
    fn simulate(&self, theta: &[f64], seed: u64) -> Vec<f64> {
        let s = NOISE_VAR.sqrt();
        simulate_rows(theta, self.d, self.d, seed, |t, x, rng| {
            for (xi, ti) in x.iter_mut().zip(t) {
                *xi = ti + s * std_normal(rng);
            }
        })
    }
    fn log_likelihood(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        let ln = -0.5 * (2.0 * std::f64::consts::PI * NOISE_VAR).ln();
        Some(
            theta
                .iter()
                .zip(x)
                .map(|(t, xi)| ln - (xi - t).powi(2) / (2.0 * NOISE_VAR))
                .sum(),
        )
    }
    fn observation(&self, k: usize) -> Result<Observation, TaskError> {
        if !(1..=self.num_observations()).contains(&k) {
            return Err(TaskError::NoSuchObservation {
                task: self.name.to_string(),
                k,
                max: self.num_observations(),
            });
        }
        let seed = 0x4844_0000 + k as u64;
        let theta_true = self.sample_prior(1, seed);
        let x = self.simulate(&theta_true, seed);
        Ok(Observation { x, theta_true })
    }
    /// Exact: N(x_o / 2, 0.05 I).
    fn reference_posterior(&self, x_o: &[f64], n: usize, seed: u64) -> Result<Vec<f64>, TaskError> {
        if x_o.len() != self.d {
            return Err(TaskError::Dimension(format!(
                "x_o has {} values, {} needs {}",
                x_o.len(),
                self.name,
                self.d
            )));
        }
        let v = 1.0 / (1.0 / PRIOR_VAR + 1.0 / NOISE_VAR);
        let mut rng = Xoshiro256pp::for_stream(&[seed, self.d as u64, 0x4844]);
        let mut out = Vec::with_capacity(n * self.d);
        for _ in 0..n {
            for &x in x_o {
                out.push(v / NOISE_VAR * x + v.sqrt() * std_normal(&mut rng));
            }
        }
        Ok(out)
    }
    fn reference_is_exact(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_gkl_tasks_gaussian_linear_at_d10() {
        // Same model as sbibm's gaussian_linear: the exact posteriors of an observation agree in
        // mean and variance (sample moments of 20,000 draws).
        let ours = GaussianLinearD::new(10).unwrap();
        let theirs = crate::task_by_name("gaussian_linear").unwrap();
        let x = theirs.observation(1).unwrap().x;
        let n = 20_000;
        for post in [
            ours.reference_posterior(&x, n, 3).unwrap(),
            theirs.reference_posterior(&x, n, 3).unwrap(),
        ] {
            for j in 0..10 {
                let col: Vec<f64> = post.iter().skip(j).step_by(10).copied().collect();
                let m = col.iter().sum::<f64>() / n as f64;
                let v = col.iter().map(|c| (c - m).powi(2)).sum::<f64>() / (n - 1) as f64;
                assert!((m - x[j] / 2.0).abs() < 0.01, "mean {m} vs {}", x[j] / 2.0);
                assert!((v - 0.05).abs() < 0.003, "var {v}");
            }
        }
    }

    #[test]
    fn simulator_noise_and_observations() {
        let t = GaussianLinearD::parse("gaussian_linear_d64")
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.dim_theta(), t.dim_x(), t.name()),
            (64, 64, "gaussian_linear_d64")
        );
        let theta = vec![0.5; 64 * 2000];
        let x = t.simulate(&theta, 1);
        let var = x.iter().map(|v| (v - 0.5).powi(2)).sum::<f64>() / x.len() as f64;
        assert!((var - NOISE_VAR).abs() < 0.005, "noise variance {var}");
        assert_eq!(t.observation(2).unwrap(), t.observation(2).unwrap());
        assert_ne!(t.observation(1).unwrap().x, t.observation(2).unwrap().x);
        assert!(t.observation(6).is_err());
        assert!(GaussianLinearD::parse("gaussian_linear").is_none());
        assert!(GaussianLinearD::parse("gaussian_linear_dx")
            .unwrap()
            .is_err());
    }
}

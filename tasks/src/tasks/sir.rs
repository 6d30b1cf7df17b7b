//! sir (2 → 10): θ = (β, γ) ~ LogNormal((log 0.4, log 0.125), (0.5, 0.2)).
//! dS = −βSI/N, dI = βSI/N − γI, dR = γI, N = 10⁶, (S, I, R)(0) = (N − 1, 1, 0), over 160 days;
//! x_j ~ Binomial(1000, I(t_j)/N) at t_j = 0, 17, ..., 153.
//!
//! The ODE is solved with adaptive Dormand–Prince 5(4) (rtol 1e-7, atol 1e-6 persons) landing
//! exactly on the 10 observation times (R is not needed: R = N − S − I).
//! Reference posterior: tempered SMC on the exact Binomial likelihood.

use crate::ode::{dopri5, OdeOptions};
use crate::reference::smc_reference_for_task;
use crate::smc::SmcOptions;
use crate::special::binomial_log_pmf;
use crate::{check_len, embedded_observation, simulate_rows, Observation, Prior, Task, TaskError};
use rand_distr::{Binomial, Distribution};

pub const POPULATION: f64 = 1e6;
pub const N_TRIALS: u64 = 1000;
pub const N_OBS: usize = 10;
pub const OBS_EVERY_DAYS: f64 = 17.0;

/// The ODE solver settings for sir.
pub fn sir_ode_options() -> OdeOptions {
    OdeOptions {
        rtol: 1e-7,
        atol: 1e-6,
        max_steps: 50_000,
    }
}

/// Observation times 0, 17, ..., 153.
pub fn sir_times() -> [f64; N_OBS] {
    std::array::from_fn(|j| j as f64 * OBS_EVERY_DAYS)
}

/// The SIR right-hand side for (S, I).
#[inline]
pub fn sir_rhs(beta: f64, gamma: f64) -> impl Fn(f64, &[f64; 2], &mut [f64; 2]) {
    move |_, y, d| {
        let inf = beta * y[0] * y[1] / POPULATION;
        d[0] = -inf;
        d[1] = inf - gamma * y[1];
    }
}

/// I(t_j) for the 10 observation times; Err if the solver failed.
pub fn sir_infected(
    theta: &[f64],
    opts: &OdeOptions,
) -> Result<[f64; N_OBS], crate::ode::OdeFailure> {
    let mut out = [[0.0; 2]; N_OBS];
    dopri5(
        sir_rhs(theta[0], theta[1]),
        0.0,
        [POPULATION - 1.0, 1.0],
        &sir_times(),
        opts,
        &mut out,
    )?;
    Ok(std::array::from_fn(|j| out[j][1]))
}

pub struct Sir {
    prior: Prior,
}

impl Sir {
    pub fn new() -> Self {
        Self {
            prior: Prior::LogNormal {
                loc: vec![0.4f64.ln(), 0.125f64.ln()],
                scale: vec![0.5, 0.2],
            },
        }
    }

    fn probs(theta: &[f64]) -> Option<[f64; N_OBS]> {
        let i = sir_infected(theta, &sir_ode_options()).ok()?;
        Some(std::array::from_fn(|j| {
            let p = i[j] / POPULATION;
            if p.is_finite() {
                p.clamp(0.0, 1.0)
            } else {
                0.0
            }
        }))
    }
}

impl Default for Sir {
    fn default() -> Self {
        Self::new()
    }
}

impl Task for Sir {
    fn name(&self) -> &'static str {
        "sir"
    }
    fn dim_theta(&self) -> usize {
        2
    }
    fn dim_x(&self) -> usize {
        N_OBS
    }
    fn prior(&self) -> &Prior {
        &self.prior
    }
    fn simulate(&self, theta: &[f64], seed: u64) -> Vec<f64> {
        simulate_rows(theta, 2, N_OBS, seed, |t, x, rng| {
            // A failed solve (not observed for prior draws) yields p = 0 everywhere.
            let p = Self::probs(t).unwrap_or([0.0; N_OBS]);
            for j in 0..N_OBS {
                x[j] = Binomial::new(N_TRIALS, p[j])
                    .expect("valid binomial")
                    .sample(rng) as f64;
            }
        })
    }
    fn log_likelihood(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        if theta.iter().any(|&t| !(t > 0.0 && t.is_finite())) {
            return Some(f64::NEG_INFINITY);
        }
        let p = match Self::probs(theta) {
            Some(p) => p,
            None => return Some(f64::NEG_INFINITY),
        };
        Some(
            (0..N_OBS)
                .map(|j| binomial_log_pmf(x[j], N_TRIALS as f64, p[j]))
                .sum(),
        )
    }
    fn observation(&self, k: usize) -> Result<Observation, TaskError> {
        embedded_observation(self.name(), self.name(), k)
    }
    fn reference_posterior(&self, x_o: &[f64], n: usize, seed: u64) -> Result<Vec<f64>, TaskError> {
        check_len("x_o", x_o, N_OBS)?;
        let (s, _) = smc_reference_for_task(self, x_o, n, seed, &SmcOptions::for_ode_tasks())?;
        Ok(s)
    }
    fn reference_is_exact(&self) -> bool {
        false
    }
}

//! lotka_volterra (4 → 20): θ = (α, β, γ, δ) ~ LogNormal((−0.125, −3, −0.125, −3), 0.5).
//! dX = αX − βXY, dY = −γY + δXY, (X, Y)(0) = (30, 1), over 20 days; the states at
//! t = 0, 2.1, ..., 18.9 (every 21st point of sbibm's 0.1-day grid) give u (10 per species),
//! and x ~ LogNormal(log u, 0.1) with u clamped to [1e-10, 1e4] as in sbibm.
//! x = (X(t_0..t_9), Y(t_0..t_9)).
//!
//! The ODE is solved with adaptive Dormand–Prince 5(4) (rtol 1e-7, atol 1e-10) landing
//! exactly on the 10 observation times. Reference posterior: tempered SMC on the exact
//! log-normal likelihood.

use crate::distributions::std_normal;
use crate::ode::{dopri5, OdeOptions};
use crate::reference::smc_reference_for_task;
use crate::smc::SmcOptions;
use crate::special::normal_log_pdf;
use crate::{check_len, embedded_observation, simulate_rows, Observation, Prior, Task, TaskError};

pub const N_OBS: usize = 10;
pub const OBS_DT: f64 = 2.1;
pub const NOISE_SIGMA: f64 = 0.1;
pub const X0: [f64; 2] = [30.0, 1.0];

/// The ODE solver settings for lotka_volterra.
pub fn lv_ode_options() -> OdeOptions {
    OdeOptions {
        rtol: 1e-7,
        atol: 1e-10,
        max_steps: 50_000,
    }
}

/// Observation times 0, 2.1, ..., 18.9 (computed as 0.1·21·j like sbibm's grid).
pub fn lv_times() -> [f64; N_OBS] {
    std::array::from_fn(|j| (21 * j) as f64 * 0.1)
}

#[inline]
pub fn lv_rhs(theta: &[f64]) -> impl Fn(f64, &[f64; 2], &mut [f64; 2]) {
    let (a, b, c, d) = (theta[0], theta[1], theta[2], theta[3]);
    move |_, y, dy| {
        dy[0] = a * y[0] - b * y[0] * y[1];
        dy[1] = -c * y[1] + d * y[0] * y[1];
    }
}

/// Clamped states u (X's 10 values then Y's 10), or None if the solver failed.
pub fn lv_states(theta: &[f64], opts: &OdeOptions) -> Option<[f64; 2 * N_OBS]> {
    let mut out = [[0.0; 2]; N_OBS];
    dopri5(lv_rhs(theta), 0.0, X0, &lv_times(), opts, &mut out).ok()?;
    let mut u = [0.0; 2 * N_OBS];
    for j in 0..N_OBS {
        u[j] = out[j][0].clamp(1e-10, 1e4);
        u[N_OBS + j] = out[j][1].clamp(1e-10, 1e4);
    }
    if u.iter().any(|v| !v.is_finite()) {
        return None;
    }
    Some(u)
}

pub struct LotkaVolterra {
    prior: Prior,
}

impl LotkaVolterra {
    pub fn new() -> Self {
        Self {
            prior: Prior::LogNormal {
                loc: vec![-0.125, -3.0, -0.125, -3.0],
                scale: vec![0.5; 4],
            },
        }
    }
}

impl Default for LotkaVolterra {
    fn default() -> Self {
        Self::new()
    }
}

impl Task for LotkaVolterra {
    fn name(&self) -> &'static str {
        "lotka_volterra"
    }
    fn dim_theta(&self) -> usize {
        4
    }
    fn dim_x(&self) -> usize {
        2 * N_OBS
    }
    fn prior(&self) -> &Prior {
        &self.prior
    }
    fn simulate(&self, theta: &[f64], seed: u64) -> Vec<f64> {
        simulate_rows(theta, 4, 2 * N_OBS, seed, |t, x, rng| {
            // A failed solve (not observed for prior draws) yields u = 1e-10 (sbibm's lower clamp).
            let u = lv_states(t, &lv_ode_options()).unwrap_or([1e-10; 2 * N_OBS]);
            for j in 0..2 * N_OBS {
                x[j] = (u[j].ln() + NOISE_SIGMA * std_normal(rng)).exp();
            }
        })
    }
    fn log_likelihood(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        if theta.iter().any(|&t| !(t > 0.0 && t.is_finite())) {
            return Some(f64::NEG_INFINITY);
        }
        if x.iter().any(|&v| !(v > 0.0)) {
            return Some(f64::NEG_INFINITY);
        }
        let u = match lv_states(theta, &lv_ode_options()) {
            Some(u) => u,
            None => return Some(f64::NEG_INFINITY),
        };
        Some(
            (0..2 * N_OBS)
                .map(|j| normal_log_pdf(x[j].ln(), u[j].ln(), NOISE_SIGMA) - x[j].ln())
                .sum(),
        )
    }
    fn observation(&self, k: usize) -> Result<Observation, TaskError> {
        embedded_observation(self.name(), self.name(), k)
    }
    fn reference_posterior(&self, x_o: &[f64], n: usize, seed: u64) -> Result<Vec<f64>, TaskError> {
        check_len("x_o", x_o, 2 * N_OBS)?;
        let (s, _) = smc_reference_for_task(self, x_o, n, seed, &SmcOptions::for_ode_tasks())?;
        Ok(s)
    }
    fn reference_is_exact(&self) -> bool {
        false
    }
}

//! two_moons (2 → 2): prior U(−1, 1)²; a ~ U(−π/2, π/2), r ~ N(0.1, 0.01²),
//! p = (r cos a + 0.25, r sin a), x = p + (−|θ1 + θ2|/√2, (−θ1 + θ2)/√2).
//!
//! With u = (θ1 + θ2)/√2, v = (−θ1 + θ2)/√2 (a rotation, unit Jacobian), x = p + (−|u|, v), so
//! p(θ | x) ∝ 1_box(θ) · f_p(x1 + |u|, x2 − v), where f_p is the density of p:
//! with q = p − (0.25, 0), ρ = |q|, f_p = N(ρ; 0.1, 0.01²) / (π ρ) for q1 > 0 (and the
//! negligible r < 0 branch N(−ρ; ...)/(π ρ) for q1 < 0). Exact posterior sampling inverts the
//! noise: draw (a, r), set |u| = r cos a + 0.25 − x1 (reject if negative), pick the sign of u
//! with probability ½ each (the two crescent branches carry equal weight before truncation),
//! v = x2 − r sin a, and accept if θ lies in the box. Each branch's map (a, r) ↦ (u, v) has
//! the same unit-Jacobian relation to f_p, so accepted draws follow the posterior exactly.

use std::f64::consts::{FRAC_1_SQRT_2, PI};

use crate::distributions::std_normal;
use crate::rng::Xoshiro256pp;
use crate::special::normal_log_pdf;
use crate::{
    check_len, embedded_observation, simulate_rows, unif, Observation, Prior, Task, TaskError,
};
use rand::Rng;
use rayon::prelude::*;

const R_MEAN: f64 = 0.1;
const R_STD: f64 = 0.01;
const OFFSET: f64 = 0.25;

pub struct TwoMoons {
    prior: Prior,
}

impl TwoMoons {
    pub fn new() -> Self {
        Self {
            prior: Prior::BoxUniform {
                low: vec![-1.0; 2],
                high: vec![1.0; 2],
            },
        }
    }
}

impl Default for TwoMoons {
    fn default() -> Self {
        Self::new()
    }
}

/// log f_p(p) for p = (p1, p2) (density of the noise point, see module docs).
pub fn log_noise_density(p1: f64, p2: f64) -> f64 {
    let q1 = p1 - OFFSET;
    let rho = (q1 * q1 + p2 * p2).sqrt();
    if rho == 0.0 {
        return f64::NEG_INFINITY;
    }
    let r = if q1 > 0.0 { rho } else { -rho };
    normal_log_pdf(r, R_MEAN, R_STD) - PI.ln() - rho.ln()
}

impl Task for TwoMoons {
    fn name(&self) -> &'static str {
        "two_moons"
    }
    fn dim_theta(&self) -> usize {
        2
    }
    fn dim_x(&self) -> usize {
        2
    }
    fn prior(&self) -> &Prior {
        &self.prior
    }
    fn simulate(&self, theta: &[f64], seed: u64) -> Vec<f64> {
        simulate_rows(theta, 2, 2, seed, |t, x, rng| {
            let a = PI * (unif(rng) - 0.5);
            let r = R_MEAN + R_STD * std_normal(rng);
            let p1 = r * a.cos() + OFFSET;
            let p2 = r * a.sin();
            x[0] = p1 - (t[0] + t[1]).abs() * FRAC_1_SQRT_2;
            x[1] = p2 + (-t[0] + t[1]) * FRAC_1_SQRT_2;
        })
    }
    fn log_likelihood(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        let u = (theta[0] + theta[1]) * FRAC_1_SQRT_2;
        let v = (-theta[0] + theta[1]) * FRAC_1_SQRT_2;
        Some(log_noise_density(x[0] + u.abs(), x[1] - v))
    }
    fn observation(&self, k: usize) -> Result<Observation, TaskError> {
        embedded_observation(self.name(), self.name(), k)
    }
    /// Exact rejection sampler obtained by inverting the noise (see the module docs).
    fn reference_posterior(&self, x_o: &[f64], n: usize, seed: u64) -> Result<Vec<f64>, TaskError> {
        check_len("x_o", x_o, 2)?;
        const MAX_TRIES: usize = 2_000_000;
        let (x1, x2) = (x_o[0], x_o[1]);
        let mut out = vec![0.0; n * 2];
        let failed = std::sync::atomic::AtomicBool::new(false);
        out.par_chunks_mut(2).enumerate().for_each(|(i, row)| {
            let mut rng = Xoshiro256pp::for_stream(&[seed, i as u64, 0x544d]);
            for _ in 0..MAX_TRIES {
                let a = PI * (rng.random::<f64>() - 0.5);
                let r = R_MEAN + R_STD * std_normal(&mut rng);
                let abs_u = r * a.cos() + OFFSET - x1;
                let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
                if abs_u < 0.0 {
                    continue;
                }
                let u = sign * abs_u;
                let v = x2 - r * a.sin();
                let t1 = (u - v) * FRAC_1_SQRT_2;
                let t2 = (u + v) * FRAC_1_SQRT_2;
                if (-1.0..=1.0).contains(&t1) && (-1.0..=1.0).contains(&t2) {
                    row[0] = t1;
                    row[1] = t2;
                    return;
                }
            }
            failed.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        if failed.into_inner() {
            return Err(TaskError::Reference(format!(
                "two_moons: x_o = {x_o:?} is (nearly) impossible under the prior; rejection sampling gave up"
            )));
        }
        Ok(out)
    }
    fn reference_is_exact(&self) -> bool {
        true
    }
}

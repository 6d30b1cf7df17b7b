//! Generic likelihood-based reference sampler: tempered SMC (see [`crate::smc`]) in the prior's
//! unconstrained space, for any task with a tractable (possibly unnormalized) likelihood.

use crate::rng::Xoshiro256pp;
use crate::smc::{smc_sample, SmcOptions, SmcResult};
use crate::{Prior, Task, TaskError};

/// SMC posterior samples (n×d, θ-space) for prior × exp(loglik(θ)).
pub fn smc_posterior<L>(
    prior: &Prior,
    loglik: &L,
    n: usize,
    seed: u64,
    opts: &SmcOptions,
) -> Result<(Vec<f64>, SmcResult), TaskError>
where
    L: Fn(&[f64]) -> f64 + Sync,
{
    let d = prior.dim();
    let n_particles = opts.n_particles.max(n);
    let mut rng = Xoshiro256pp::for_stream(&[seed, 0x0053_4d43_494e_4954]);
    let theta0 = prior.sample(n_particles, &mut rng);
    let mut u0 = Vec::with_capacity(theta0.len());
    for row in theta0.chunks(d) {
        u0.extend(prior.to_unconstrained(row));
    }
    // Guard against draws landing exactly on a box edge (u = ±∞).
    if u0.iter().any(|v| !v.is_finite()) {
        for v in u0.iter_mut() {
            if !v.is_finite() {
                *v = v.signum() * 700.0;
            }
        }
    }
    let eval = |u: &[f64]| -> (f64, f64) {
        let theta = prior.from_unconstrained(u);
        let lp = prior.log_prob(&theta) + prior.log_abs_det_jacobian_from_unconstrained(u);
        if !lp.is_finite() {
            return (f64::NEG_INFINITY, f64::NEG_INFINITY);
        }
        (lp, loglik(&theta))
    };
    let mut o = opts.clone();
    o.n_particles = n_particles;
    let res = smc_sample(&eval, d, u0, n, &o, seed)?;
    let mut out = Vec::with_capacity(n * d);
    for row in res.samples.chunks(d) {
        out.extend(prior.from_unconstrained(row));
    }
    Ok((out, res))
}

/// SMC reference for `task` at `x_o` using [`Task::log_likelihood_unnormalized`].
pub fn smc_reference_for_task(
    task: &dyn Task,
    x_o: &[f64],
    n: usize,
    seed: u64,
    opts: &SmcOptions,
) -> Result<(Vec<f64>, SmcResult), TaskError> {
    crate::check_len("x_o", x_o, task.dim_x())?;
    let probe = task.prior().sample(1, &mut Xoshiro256pp::from_seed_u64(1));
    if task.log_likelihood_unnormalized(&probe, x_o).is_none() {
        return Err(TaskError::Reference(format!(
            "{}: likelihood is not tractable",
            task.name()
        )));
    }
    let loglik = |theta: &[f64]| {
        task.log_likelihood_unnormalized(theta, x_o)
            .unwrap_or(f64::NEG_INFINITY)
    };
    smc_posterior(task.prior(), &loglik, n, seed, opts)
}

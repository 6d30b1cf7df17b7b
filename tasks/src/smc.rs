//! Likelihood-based posterior sampling: adaptive tempered Sequential Monte Carlo.
//!
//! Target in the prior's unconstrained space u (see [`crate::Prior::to_unconstrained`]):
//! π_β(u) ∝ p_u(u) · L(u)^β, β going 0 → 1. Each stage picks the next β by bisection so that
//! the effective sample size of the incremental weights is `ess_fraction`·N, resamples
//! (systematic), then moves every particle with random-walk Metropolis–Hastings whose proposal
//! covariance is the particle cloud's covariance (scaled, scale adapted to the acceptance
//! rate); the number of sweeps per stage is chosen from the acceptance rate.
//! Sign symmetries: for coordinates listed in `sign_symmetric` (u_i → −u_i leaves prior and
//! likelihood invariant, e.g. slcp's θ3, θ4) the chain runs on the half-space u_i ≥ 0 with
//! reflected (|·|) random-walk proposals (with the exact Hastings correction: the reflected
//! density sums over the 2^k sign patterns) and each output sample
//! gets independent uniformly random signs in those coordinates. So the 2^k mirror modes carry
//! exactly equal mass and the proposal covariance is that of one mode, not of their union.
//! At β = 1, `final_sweeps` more sweeps decorrelate the resampled particles. Everything is seeded per (stage, sweep, particle), so
//! results do not depend on the number of threads.

use rand::Rng;
use rayon::prelude::*;

use crate::distributions::std_normal;
use crate::linalg;
use crate::rng::Xoshiro256pp;
use crate::TaskError;

/// Settings of [`smc_sample`].
#[derive(Clone, Debug)]
pub struct SmcOptions {
    /// Number of particles N (the output is a subset of them).
    pub n_particles: usize,
    /// Target ESS fraction for each tempering step (0.3–0.7 typical).
    pub ess_fraction: f64,
    /// Minimum / maximum random-walk sweeps per stage.
    pub min_sweeps: usize,
    pub max_sweeps: usize,
    /// Sweeps so that a particle stays unmoved with probability ≤ this (per stage).
    pub stay_probability: f64,
    /// Extra sweeps at β = 1 before output.
    pub final_sweeps: usize,
    /// Give up after this many tempering stages.
    pub max_stages: usize,
    /// u-space coordinates whose sign flip leaves the target invariant (see module docs).
    pub sign_symmetric: Vec<usize>,
}

impl Default for SmcOptions {
    fn default() -> Self {
        Self {
            n_particles: 10_000,
            ess_fraction: 0.5,
            min_sweeps: 2,
            max_sweeps: 40,
            stay_probability: 0.05,
            final_sweeps: 30,
            max_stages: 400,
            sign_symmetric: Vec::new(),
        }
    }
}

impl SmcOptions {
    /// The settings of the ODE tasks' references (sir, lotka_volterra): fewer particles than the
    /// default, since each likelihood costs an ODE solve.
    pub fn for_ode_tasks() -> Self {
        Self {
            n_particles: 4_000,
            ess_fraction: 0.5,
            min_sweeps: 3,
            max_sweeps: 30,
            stay_probability: 0.02,
            final_sweeps: 20,
            max_stages: 400,
            sign_symmetric: vec![],
        }
    }
}

/// Result of [`smc_sample`]: samples in u-space plus diagnostics.
#[derive(Clone, Debug)]
pub struct SmcResult {
    /// n×d samples in u-space.
    pub samples: Vec<f64>,
    /// Tempering schedule (β after each stage).
    pub betas: Vec<f64>,
    /// Estimate of log ∫ p(θ) L(θ) dθ (the evidence, for the likelihood as given).
    pub log_evidence: f64,
    /// Mean random-walk acceptance rate over the final sweeps.
    pub final_acceptance: f64,
    /// Number of target evaluations.
    pub evaluations: usize,
}

struct Particles {
    d: usize,
    u: Vec<f64>,
    lp: Vec<f64>,
    ll: Vec<f64>,
}

fn systematic_resample(w: &[f64], n_out: usize, rng: &mut Xoshiro256pp) -> Vec<usize> {
    let total: f64 = w.iter().sum();
    let step = total / n_out as f64;
    let mut u = rng.random::<f64>() * step;
    let mut idx = Vec::with_capacity(n_out);
    let mut cum = 0.0;
    let mut i = 0;
    for _ in 0..n_out {
        while i < w.len() - 1 && cum + w[i] < u {
            cum += w[i];
            i += 1;
        }
        idx.push(i);
        u += step;
    }
    idx
}

fn ess_of(ll: &[f64], delta: f64) -> (f64, Vec<f64>) {
    let m = ll.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = ll
        .iter()
        .map(|&l| {
            if l == f64::NEG_INFINITY {
                0.0
            } else {
                (delta * (l - m)).exp()
            }
        })
        .collect();
    let s: f64 = w.iter().sum();
    let s2: f64 = w.iter().map(|x| x * x).sum();
    (if s2 > 0.0 { s * s / s2 } else { 0.0 }, w)
}

/// Runs tempered SMC. `eval(u)` returns (log prior density in u-space incl. Jacobian,
/// log-likelihood); return (−∞, −∞) outside the support. `init` holds N×d prior draws in u-space.
/// Returns `n_out` samples (n_out ≤ N).
pub fn smc_sample<F>(
    eval: &F,
    d: usize,
    init: Vec<f64>,
    n_out: usize,
    opts: &SmcOptions,
    seed: u64,
) -> Result<SmcResult, TaskError>
where
    F: Fn(&[f64]) -> (f64, f64) + Sync,
{
    let n = init.len() / d;
    if n == 0 || n_out > n || init.len() != n * d {
        return Err(TaskError::Reference(format!(
            "smc: need ≥ {n_out} initial particles of dim {d}, got {}",
            init.len()
        )));
    }
    let clean = |(lp, ll): (f64, f64)| -> (f64, f64) {
        let lp = if lp.is_nan() { f64::NEG_INFINITY } else { lp };
        let ll = if ll.is_nan() || lp == f64::NEG_INFINITY {
            f64::NEG_INFINITY
        } else {
            ll
        };
        (lp, ll)
    };
    if d > 64 {
        return Err(TaskError::Reference(format!(
            "smc: dimension {d} > 64 is not supported"
        )));
    }
    if opts.sign_symmetric.len() > MAX_SIGN_SYMMETRIC {
        return Err(TaskError::Reference(format!(
            "smc: at most {MAX_SIGN_SYMMETRIC} sign-symmetric coordinates"
        )));
    }
    if let Some(&j) = opts.sign_symmetric.iter().find(|&&j| j >= d) {
        return Err(TaskError::Reference(format!(
            "smc: sign_symmetric index {j} ≥ dim {d}"
        )));
    }
    let mut init = init;
    for row in init.chunks_mut(d) {
        for &j in &opts.sign_symmetric {
            row[j] = row[j].abs();
        }
    }
    let evals: Vec<(f64, f64)> = init.par_chunks(d).map(|u| clean(eval(u))).collect();
    let mut p = Particles {
        d,
        lp: evals.iter().map(|e| e.0).collect(),
        ll: evals.iter().map(|e| e.1).collect(),
        u: init,
    };
    let mut n_evals = n;
    if p.ll.iter().all(|&l| l == f64::NEG_INFINITY) {
        return Err(TaskError::Reference(
            "smc: the likelihood is zero at every initial particle".into(),
        ));
    }
    let mut beta = 0.0;
    let mut betas = Vec::new();
    let mut log_z = 0.0;
    let mut scale = 1.0f64;
    let mut stage = 0u64;
    let final_acc = loop {
        if betas.len() >= opts.max_stages {
            return Err(TaskError::Reference(format!(
                "smc: no convergence after {} tempering stages (β = {beta})",
                opts.max_stages
            )));
        }
        // Next temperature.
        let target = opts.ess_fraction * n as f64;
        let (ess1, _) = ess_of(&p.ll, 1.0 - beta);
        let delta = if ess1 >= target {
            1.0 - beta
        } else {
            let (mut lo, mut hi) = (0.0, 1.0 - beta);
            for _ in 0..100 {
                let mid = 0.5 * (lo + hi);
                if ess_of(&p.ll, mid).0 >= target {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            lo.max(1e-12)
        };
        let (_, w) = ess_of(&p.ll, delta);
        let m = p.ll.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        log_z += delta * m + (w.iter().sum::<f64>() / n as f64).ln();
        beta = if (1.0 - beta - delta).abs() < 1e-12 {
            1.0
        } else {
            beta + delta
        };
        betas.push(beta);
        stage += 1;
        // Resample.
        let mut rrng = Xoshiro256pp::for_stream(&[seed, stage, u64::MAX]);
        let idx = systematic_resample(&w, n, &mut rrng);
        let mut nu = Vec::with_capacity(n * d);
        for &i in &idx {
            nu.extend_from_slice(&p.u[i * d..(i + 1) * d]);
        }
        p.lp = idx.iter().map(|&i| p.lp[i]).collect();
        p.ll = idx.iter().map(|&i| p.ll[i]).collect();
        p.u = nu;
        // Move.
        let is_final = beta >= 1.0;
        let (sweeps_done, acc, ev) =
            move_particles(eval, &mut p, beta, &mut scale, opts, seed, stage, is_final);
        n_evals += ev;
        let _ = sweeps_done;
        if is_final {
            break acc;
        }
    };
    // Output: a seeded subset without replacement.
    let mut order: Vec<usize> = (0..n).collect();
    let mut orng = Xoshiro256pp::for_stream(&[seed, u64::MAX, 7]);
    for i in (1..n).rev() {
        let j = orng.random_range(0..=i);
        order.swap(i, j);
    }
    let mut samples = Vec::with_capacity(n_out * d);
    for &i in order.iter().take(n_out) {
        samples.extend_from_slice(&p.u[i * d..(i + 1) * d]);
        let row = samples.len() - d;
        for &j in &opts.sign_symmetric {
            if orng.random::<bool>() {
                samples[row + j] = -samples[row + j];
            }
        }
    }
    Ok(SmcResult {
        samples,
        betas,
        log_evidence: log_z,
        final_acceptance: final_acc,
        evaluations: n_evals,
    })
}

/// log of the reflected random-walk proposal density q(to | from) up to a constant:
/// log Σ_σ exp(−½ |L⁻¹(σ∘to − from)|² / s²) over sign patterns σ of the reflected coordinates.
fn log_reflected_q(l: &[f64], s: f64, to: &[f64], from: &[f64], dims: &[usize]) -> f64 {
    let d = to.len();
    let k = dims.len();
    let mut terms = [0.0f64; 1 << MAX_SIGN_SYMMETRIC];
    let mut r = [0.0f64; 64];
    for mask in 0..(1usize << k) {
        let r = &mut r[..d];
        for j in 0..d {
            r[j] = to[j] - from[j];
        }
        for (b, &j) in dims.iter().enumerate() {
            if mask >> b & 1 == 1 {
                r[j] = -to[j] - from[j];
            }
        }
        linalg::solve_lower_in_place(l, d, r);
        terms[mask] = -0.5 * r.iter().map(|v| v * v).sum::<f64>() / (s * s);
    }
    crate::special::log_sum_exp(&terms[..1 << k])
}

/// At most this many sign-symmetric coordinates (2^k terms per proposal density).
pub const MAX_SIGN_SYMMETRIC: usize = 8;

#[allow(clippy::too_many_arguments)]
fn move_particles<F>(
    eval: &F,
    p: &mut Particles,
    beta: f64,
    scale: &mut f64,
    opts: &SmcOptions,
    seed: u64,
    stage: u64,
    is_final: bool,
) -> (usize, f64, usize)
where
    F: Fn(&[f64]) -> (f64, f64) + Sync,
{
    let d = p.d;
    let n = p.lp.len();
    let clean = |(lp, ll): (f64, f64)| -> (f64, f64) {
        let lp = if lp.is_nan() { f64::NEG_INFINITY } else { lp };
        let ll = if ll.is_nan() || lp == f64::NEG_INFINITY {
            f64::NEG_INFINITY
        } else {
            ll
        };
        (lp, ll)
    };
    let mut sweeps_needed = opts.min_sweeps;
    let mut sweep = 0usize;
    let mut acc_sum = 0.0;
    let mut evals = 0usize;
    let mut last_acc;
    loop {
        // Proposal covariance from the current cloud (recomputed every sweep: cheap).
        let ones = vec![1.0; n];
        let (_, mut cov) = linalg::weighted_mean_cov(&p.u, &ones, d);
        let mut chol = None;
        for jitter in [0.0, 1e-12, 1e-9, 1e-6, 1e-3] {
            let tr = (0..d).map(|i| cov[i * d + i]).sum::<f64>() / d as f64;
            for i in 0..d {
                cov[i * d + i] += jitter * tr.max(1e-300);
            }
            if let Some(l) = linalg::cholesky(&cov, d) {
                chol = Some(l);
                break;
            }
        }
        let l = chol.unwrap_or_else(|| {
            let mut id = vec![0.0; d * d];
            for i in 0..d {
                id[i * d + i] = 1e-3;
            }
            id
        });
        let s = *scale * 2.38 / (d as f64).sqrt();
        let sweep_id = sweep as u64;
        let accepted: usize = p
            .u
            .par_chunks_mut(d)
            .zip(p.lp.par_iter_mut())
            .zip(p.ll.par_iter_mut())
            .enumerate()
            .map(|(i, ((u, lp), ll))| {
                let mut rng = Xoshiro256pp::for_stream(&[seed, stage, sweep_id, i as u64]);
                let mut z = [0.0f64; 64];
                let mut step = [0.0f64; 64];
                let (z, step) = (&mut z[..d], &mut step[..d]);
                z.iter_mut().for_each(|v| *v = std_normal(&mut rng));
                linalg::lower_mul(&l, d, z, step);
                let mut prop = [0.0f64; 64];
                let prop = &mut prop[..d];
                for j in 0..d {
                    prop[j] = u[j] + s * step[j];
                }
                for &j in &opts.sign_symmetric {
                    prop[j] = prop[j].abs();
                }
                let (plp, pll) = clean(eval(prop));
                let cur = *lp + beta * *ll;
                let mut new = plp + beta * pll;
                if !opts.sign_symmetric.is_empty() && new.is_finite() {
                    // Hastings correction log q(u | u') − log q(u' | u) for the reflected
                    // proposal (asymmetric when it correlates reflected and other coordinates).
                    new += log_reflected_q(&l, s, u, prop, &opts.sign_symmetric)
                        - log_reflected_q(&l, s, prop, u, &opts.sign_symmetric);
                }
                let mut acc = 0;
                if new.is_finite() && (new - cur >= 0.0 || rng.random::<f64>().ln() < new - cur) {
                    u.copy_from_slice(prop);
                    *lp = plp;
                    *ll = pll;
                    acc = 1;
                }
                acc
            })
            .sum();
        evals += n;
        let acc = accepted as f64 / n as f64;
        last_acc = acc;
        acc_sum += acc;
        // Adapt the scale towards ~0.25–0.35 acceptance.
        if acc < 0.15 {
            *scale *= 0.6;
        } else if acc < 0.25 {
            *scale *= 0.85;
        } else if acc > 0.5 {
            *scale *= 1.5;
        } else if acc > 0.35 {
            *scale *= 1.15;
        }
        *scale = scale.clamp(1e-4, 10.0);
        sweep += 1;
        if sweep == 1 {
            let a = acc.clamp(1e-3, 0.999);
            let k = (opts.stay_probability.ln() / (1.0 - a).ln()).ceil() as usize;
            sweeps_needed = k.clamp(opts.min_sweeps, opts.max_sweeps);
            if is_final {
                sweeps_needed = sweeps_needed.max(opts.final_sweeps);
            }
        }
        if sweep >= sweeps_needed {
            break;
        }
    }
    let _ = acc_sum;
    (sweep, last_acc, evals)
}

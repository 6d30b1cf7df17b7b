#![allow(clippy::needless_range_loop)]
//! Reference-posterior samplers against exact posteriors (closed forms or numerically
//! normalized densities on grids), and the generic SMC sampler against exact cases.

mod common;
use common::*;

use gkl_tasks::reference::smc_posterior;
use gkl_tasks::smc::SmcOptions;
use gkl_tasks::special::{log_ndtr_diff, LN_SQRT_2PI};
use gkl_tasks::{task_by_name, GaussianMixture, Prior, Task};

/// Expectations of test functions under an unnormalized 2-D log-density on a grid.
fn grid_expectations(
    logp: &dyn Fn(f64, f64) -> f64,
    lo: f64,
    hi: f64,
    m: usize,
    fs: &[&dyn Fn(f64, f64) -> f64],
) -> Vec<f64> {
    let h = (hi - lo) / m as f64;
    let mut vals = Vec::with_capacity(m * m);
    let mut mx = f64::NEG_INFINITY;
    for i in 0..m {
        for j in 0..m {
            let (a, b) = (lo + (i as f64 + 0.5) * h, lo + (j as f64 + 0.5) * h);
            let l = logp(a, b);
            mx = mx.max(l);
            vals.push((a, b, l));
        }
    }
    let mut z = 0.0;
    let mut acc = vec![0.0; fs.len()];
    for &(a, b, l) in &vals {
        let w = (l - mx).exp();
        z += w;
        for (k, f) in fs.iter().enumerate() {
            acc[k] += w * f(a, b);
        }
    }
    acc.iter().map(|v| v / z).collect()
}

fn sample_expectations(s: &[f64], fs: &[&dyn Fn(f64, f64) -> f64]) -> (Vec<f64>, Vec<f64>) {
    let n = s.len() / 2;
    fs.iter()
        .map(|f| {
            let v: Vec<f64> = s.chunks(2).map(|r| f(r[0], r[1])).collect();
            (mean(&v), std(&v) / (n as f64).sqrt())
        })
        .unzip()
}

fn test_fns() -> Vec<Box<dyn Fn(f64, f64) -> f64>> {
    vec![
        Box::new(|a, _| a),
        Box::new(|_, b| b),
        Box::new(|a, _| a * a),
        Box::new(|_, b| b * b),
        Box::new(|a, b| a * b),
        Box::new(|a, b| if a + b > 0.0 { 1.0 } else { 0.0 }),
        Box::new(|a, _| if a > 0.5 { 1.0 } else { 0.0 }),
    ]
}

#[test]
fn gaussian_linear_exact_moments() {
    let t = task_by_name("gaussian_linear").unwrap();
    let x_o = t.observation(1).unwrap().x;
    let n = 40_000;
    let s = t.reference_posterior(&x_o, n, 1).unwrap();
    for j in 0..10 {
        let c = col(&s, 10, j);
        assert!((mean(&c) - 0.5 * x_o[j]).abs() < 5.0 * (0.05f64 / n as f64).sqrt());
        assert!((var(&c) / 0.05 - 1.0).abs() < 0.04);
    }
}

#[test]
fn gaussian_linear_uniform_truncated_moments() {
    let t = task_by_name("gaussian_linear_uniform").unwrap();
    let mut x_o = t.observation(1).unwrap().x;
    x_o[0] = 1.8; // far into the truncation
    x_o[1] = -1.4;
    let n = 40_000;
    let s = t.reference_posterior(&x_o, n, 2).unwrap();
    assert!(s.iter().all(|v| (-1.0..=1.0).contains(v)));
    let sd = 0.1f64.sqrt();
    for j in 0..10 {
        let (a, b) = ((-1.0 - x_o[j]) / sd, (1.0 - x_o[j]) / sd);
        let lz = log_ndtr_diff(a, b);
        let (pa, pb) = (
            (-0.5 * a * a - LN_SQRT_2PI - lz).exp(),
            (-0.5 * b * b - LN_SQRT_2PI - lz).exp(),
        );
        let m = x_o[j] + sd * (pa - pb);
        let v = 0.1 * (1.0 + a * pa - b * pb - (pa - pb).powi(2));
        let c = col(&s, 10, j);
        assert!(
            (mean(&c) - m).abs() < 5.0 * (v / n as f64).sqrt(),
            "dim {j}: {} vs {m}",
            mean(&c)
        );
        assert!(
            (var(&c) / v - 1.0).abs() < 0.05,
            "dim {j}: {} vs {v}",
            var(&c)
        );
    }
}

#[test]
fn gaussian_mixture_matches_grid_posterior() {
    let t = GaussianMixture::new();
    let fs = test_fns();
    let fr: Vec<&dyn Fn(f64, f64) -> f64> = fs.iter().map(|f| f.as_ref()).collect();
    for x_o in [
        t.observation(1).unwrap().x,
        vec![9.9, -9.7],
        vec![10.6, 0.3],
        vec![-2.0, 11.5],
    ] {
        let s = t.reference_posterior(&x_o, 100_000, 3).unwrap();
        assert!(s.iter().all(|v| (-10.0..=10.0).contains(v)));
        // Fine grid over the box (the narrow component has std 0.1: grid step 0.01 near it).
        let logp = |a: f64, b: f64| t.log_likelihood(&[a, b], &x_o).unwrap();
        // Integrate only around x_o (clamped to the box); mass elsewhere is < 1e-10.
        let (lo, hi) = (-10.0f64, 10.0f64);
        let (c1, c2) = (x_o[0].clamp(lo, hi), x_o[1].clamp(lo, hi));
        let w = 6.5;
        let m = 1300;
        let h = 2.0 * w / m as f64;
        let mut z = 0.0;
        let mut acc = vec![0.0; fr.len()];
        for i in 0..m {
            for j in 0..m {
                let (a, b) = (c1 - w + (i as f64 + 0.5) * h, c2 - w + (j as f64 + 0.5) * h);
                if !(lo..=hi).contains(&a) || !(lo..=hi).contains(&b) {
                    continue;
                }
                let p = logp(a, b).exp();
                z += p;
                for (k, f) in fr.iter().enumerate() {
                    acc[k] += p * f(a, b);
                }
            }
        }
        let want: Vec<f64> = acc.iter().map(|v| v / z).collect();
        let (got, se) = sample_expectations(&s, &fr);
        for k in 0..fr.len() {
            assert!(
                (got[k] - want[k]).abs() < 5.0 * se[k] + 2e-3 * (1.0 + want[k].abs()),
                "x_o {x_o:?} f{k}: {} vs {}",
                got[k],
                want[k]
            );
        }
        // Component weight (fraction within the narrow-component core) vs the closed form.
        let lw = GaussianMixture::posterior_log_weights(&x_o);
        assert!(lw.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn two_moons_matches_grid_posterior() {
    let t = task_by_name("two_moons").unwrap();
    let fs = test_fns();
    let fr: Vec<&dyn Fn(f64, f64) -> f64> = fs.iter().map(|f| f.as_ref()).collect();
    // Observation 1, a simulated point whose crescent crosses the box edge, and a centred one.
    let edge = t.simulate(&[0.95, -0.2], 5);
    for x_o in [
        t.observation(1).unwrap().x,
        edge,
        vec![0.0, 0.0],
        vec![0.3, 0.05],
    ] {
        let s = t.reference_posterior(&x_o, 100_000, 4).unwrap();
        assert!(s.iter().all(|v| (-1.0..=1.0).contains(v)));
        let logp = |a: f64, b: f64| t.log_likelihood(&[a, b], &x_o).unwrap();
        let want = grid_expectations(&logp, -1.0, 1.0, 2000, &fr);
        let (got, se) = sample_expectations(&s, &fr);
        for k in 0..fr.len() {
            assert!(
                (got[k] - want[k]).abs() < 5.0 * se[k] + 1e-3,
                "x_o {x_o:?} f{k}: {} vs {}",
                got[k],
                want[k]
            );
        }
    }
}

fn smc_opts(n: usize) -> SmcOptions {
    SmcOptions {
        n_particles: n,
        final_sweeps: 30,
        ..Default::default()
    }
}

#[test]
fn smc_recovers_gaussian_linear_posterior_and_evidence() {
    let t = task_by_name("gaussian_linear").unwrap();
    let x_o = t.observation(2).unwrap().x;
    let n = 4000;
    let ll = |th: &[f64]| t.log_likelihood(th, &x_o).unwrap();
    let (s, res) = smc_posterior(t.prior(), &ll, n, 5, &smc_opts(n)).unwrap();
    for j in 0..10 {
        let c = col(&s, 10, j);
        // SMC samples are correlated: allow ~2× the iid standard error.
        assert!(
            (mean(&c) - 0.5 * x_o[j]).abs() < 10.0 * (0.05f64 / n as f64).sqrt(),
            "dim {j}: {}",
            mean(&c)
        );
        assert!(
            (var(&c) / 0.05 - 1.0).abs() < 0.12,
            "dim {j}: var {}",
            var(&c)
        );
    }
    // Evidence: x_o ~ N(0, 0.2 I).
    let want: f64 = x_o
        .iter()
        .map(|x| -0.5 * x * x / 0.2 - 0.5 * 0.2f64.ln() - LN_SQRT_2PI)
        .sum();
    assert!(
        (res.log_evidence - want).abs() < 0.3,
        "log Z {} vs {want}",
        res.log_evidence
    );
    assert_eq!(*res.betas.last().unwrap(), 1.0);
}

#[test]
fn smc_recovers_truncated_and_bimodal_posteriors() {
    // gaussian_linear_uniform (box edges, logit space) against the exact sampler's moments.
    let t = task_by_name("gaussian_linear_uniform").unwrap();
    let mut x_o = t.observation(1).unwrap().x;
    x_o[0] = 1.5;
    let n = 4000;
    let ll = |th: &[f64]| t.log_likelihood(th, &x_o).unwrap();
    let (s, _) = smc_posterior(t.prior(), &ll, n, 6, &smc_opts(n)).unwrap();
    let exact = t.reference_posterior(&x_o, 100_000, 6).unwrap();
    for j in 0..10 {
        let (a, b) = (col(&s, 10, j), col(&exact, 10, j));
        assert!(
            (mean(&a) - mean(&b)).abs() < 10.0 * std(&b) / (n as f64).sqrt(),
            "dim {j}"
        );
        assert!((std(&a) / std(&b) - 1.0).abs() < 0.08, "dim {j}");
    }
    // two_moons: two separated crescents; SMC from the prior must weight both correctly.
    let t = task_by_name("two_moons").unwrap();
    let x_o = vec![0.0, 0.1];
    let ll = |th: &[f64]| t.log_likelihood(th, &x_o).unwrap();
    let (s, _) = smc_posterior(t.prior(), &ll, n, 7, &smc_opts(n)).unwrap();
    let exact = t.reference_posterior(&x_o, 100_000, 7).unwrap();
    let frac =
        |v: &[f64]| v.chunks(2).filter(|r| r[0] + r[1] > 0.0).count() as f64 / (v.len() / 2) as f64;
    assert!(
        (frac(&s) - frac(&exact)).abs() < 0.05,
        "branch weight {} vs {}",
        frac(&s),
        frac(&exact)
    );
    for j in 0..2 {
        let (a, b) = (col(&s, 2, j), col(&exact, 2, j));
        assert!(
            (mean(&a) - mean(&b)).abs() < 0.03 && (std(&a) / std(&b) - 1.0).abs() < 0.1,
            "dim {j}"
        );
    }
}

#[test]
fn smc_sign_symmetry_gives_equal_modes() {
    // Likelihood depends on θ1² only: N(y; θ1², 0.05²), y = 1.5 ⇒ modes at ±√1.5.
    let prior = Prior::BoxUniform {
        low: vec![-3.0, -1.0],
        high: vec![3.0, 1.0],
    };
    let ll = |th: &[f64]| {
        let r = (1.5 - th[0] * th[0]) / 0.05;
        let r2 = (0.3 - th[1]) / 0.2;
        -0.5 * r * r - 0.5 * r2 * r2
    };
    let n = 4000;
    let mut o = smc_opts(n);
    o.sign_symmetric = vec![0];
    let (s, _) = smc_posterior(&prior, &ll, n, 8, &o).unwrap();
    let pos = col(&s, 2, 0).iter().filter(|&&v| v > 0.0).count() as f64 / n as f64;
    assert!(
        (pos - 0.5).abs() < 4.0 * (0.25f64 / n as f64).sqrt(),
        "positive-mode fraction {pos}"
    );
    // |θ1| concentrates at √1.5 with sd ≈ 0.05 / (2√1.5).
    let abs: Vec<f64> = col(&s, 2, 0).iter().map(|v| v.abs()).collect();
    assert!((mean(&abs) - 1.5f64.sqrt()).abs() < 0.003);
    assert!((std(&abs) / (0.05 / (2.0 * 1.5f64.sqrt())) - 1.0).abs() < 0.1);
}

#[test]
fn smc_reflection_is_exact_near_the_mirror_plane() {
    // π(θ1, θ2) = π(−θ1, θ2) with much mass near θ1 = 0 and θ2 correlated with |θ1|:
    // the reflected proposal is asymmetric here, so this checks the Hastings correction.
    let prior = Prior::BoxUniform {
        low: vec![-2.0, -2.0],
        high: vec![2.0, 2.0],
    };
    let ll = |th: &[f64]| {
        let a = (th[0] * th[0] - 0.05) / 0.1;
        let b = (th[1] - th[0].abs()) / 0.1;
        -0.5 * a * a - 0.5 * b * b
    };
    let n = 6000;
    let mut o = smc_opts(n);
    o.sign_symmetric = vec![0];
    o.final_sweeps = 60;
    let (s, _) = smc_posterior(&prior, &ll, n, 19, &o).unwrap();
    let f1: &dyn Fn(f64, f64) -> f64 = &|a, _| a.abs();
    let f2: &dyn Fn(f64, f64) -> f64 = &|_, b| b;
    let f3: &dyn Fn(f64, f64) -> f64 = &|a, _| if a.abs() < 0.1 { 1.0 } else { 0.0 };
    let f4: &dyn Fn(f64, f64) -> f64 = &|a, b| a.abs() * b;
    let want = grid_expectations(&|a, b| ll(&[a, b]), -2.0, 2.0, 1600, &[f1, f2, f3, f4]);
    let (got, se) = sample_expectations(&s, &[f1, f2, f3, f4]);
    for k in 0..4 {
        assert!(
            (got[k] - want[k]).abs() < 8.0 * se[k],
            "f{k}: {} vs {}",
            got[k],
            want[k]
        );
    }
    assert!(
        want[2] > 0.1,
        "test needs mass near the mirror plane: {}",
        want[2]
    );
}

#[test]
fn slcp_reference_modes_and_sufficiency() {
    let t = task_by_name("slcp").unwrap();
    let o = t.observation(1).unwrap();
    let n = 4_000;
    let s = t.reference_posterior(&o.x, n, 9).unwrap();
    assert!(s.iter().all(|v| (-3.0..=3.0).contains(v)));
    for (a, b) in [(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)] {
        let f = s
            .chunks(5)
            .filter(|r| r[2].signum() == a && r[3].signum() == b)
            .count() as f64
            / n as f64;
        assert!((f - 0.25).abs() < 0.02, "mode ({a},{b}): {f}");
    }
    // slcp_distractors gives the same posterior from its 100-dim observation.
    let td = task_by_name("slcp_distractors").unwrap();
    let sd = td
        .reference_posterior(&td.observation(1).unwrap().x, n, 9)
        .unwrap();
    for j in 0..5 {
        let (a, b) = (col(&s, 5, j), col(&sd, 5, j));
        assert!(
            (mean(&a) - mean(&b)).abs() < 0.1 && (std(&a) / std(&b) - 1.0).abs() < 0.05,
            "dim {j}"
        );
    }
    // Against sbibm's reference, if available: marginal quantiles.
    if let Some((r, d)) = read_sbibm_reference("slcp", 1) {
        assert_eq!(d, 5);
        for j in [0, 1, 4] {
            let (a, b) = (col(&s, 5, j), col(&r, 5, j));
            for q in [0.1, 0.5, 0.9] {
                assert!(
                    (quantile(&a, q) - quantile(&b, q)).abs() < 0.1,
                    "dim {j} q{q}: {} vs {}",
                    quantile(&a, q),
                    quantile(&b, q)
                );
            }
        }
        for j in [2, 3] {
            let a: Vec<f64> = col(&s, 5, j).iter().map(|v| v.abs()).collect();
            let b: Vec<f64> = col(&r, 5, j).iter().map(|v| v.abs()).collect();
            assert!((mean(&a) - mean(&b)).abs() < 0.02, "|θ{}|", j + 1);
        }
    }
}

#[test]
fn sir_reference_matches_grid_posterior() {
    let t = task_by_name("sir").unwrap();
    let o = t.observation(1).unwrap();
    // Exact posterior on a grid in (log β, log γ) around θ_true: a, b ∈ [−1, 1] map to
    // log β_true + 0.3a, log γ_true + 0.6b (sbibm's reference has log-sd ≈ 0.02 and 0.07).
    let (lb, lg) = (o.theta_true[0].ln(), o.theta_true[1].ln());
    let (wb, wg) = (0.3, 0.6);
    let logp = |a: f64, b: f64| {
        let th = [(lb + wb * a).exp(), (lg + wg * b).exp()];
        t.prior().log_prob(&th) + th[0].ln() + th[1].ln() + t.log_likelihood(&th, &o.x).unwrap()
    };
    let fa: &dyn Fn(f64, f64) -> f64 = &|a, _| (lb + wb * a).exp();
    let fb: &dyn Fn(f64, f64) -> f64 = &|_, b| (lg + wg * b).exp();
    let fa2: &dyn Fn(f64, f64) -> f64 = &|a, _| (lb + wb * a).exp().powi(2);
    let fb2: &dyn Fn(f64, f64) -> f64 = &|_, b| (lg + wg * b).exp().powi(2);
    let fedge: &dyn Fn(f64, f64) -> f64 = &|a, b| {
        if a.abs() > 0.85 || b.abs() > 0.85 {
            1.0
        } else {
            0.0
        }
    };
    let want = grid_expectations(&logp, -1.0, 1.0, 150, &[fa, fb, fa2, fb2, fedge]);
    // The grid must contain the posterior: negligible mass near its edges.
    assert!(
        want[4] < 1e-6,
        "posterior mass near the grid edge: {}",
        want[4]
    );
    let n = 1500;
    let opts = SmcOptions {
        n_particles: n,
        final_sweeps: 20,
        ..gkl_tasks::smc::SmcOptions::for_ode_tasks()
    };
    let ll = |th: &[f64]| t.log_likelihood(th, &o.x).unwrap();
    let (s, _) = smc_posterior(t.prior(), &ll, n, 10, &opts).unwrap();
    let (mb, mg) = (mean(&col(&s, 2, 0)), mean(&col(&s, 2, 1)));
    let (sb, sg) = (
        (want[2] - want[0] * want[0]).sqrt(),
        (want[3] - want[1] * want[1]).sqrt(),
    );
    assert!(
        (mb - want[0]).abs() < 0.15 * sb + 8.0 * sb / (n as f64).sqrt(),
        "β mean {mb} vs {}",
        want[0]
    );
    assert!(
        (mg - want[1]).abs() < 0.15 * sg + 8.0 * sg / (n as f64).sqrt(),
        "γ mean {mg} vs {}",
        want[1]
    );
    assert!(
        (std(&col(&s, 2, 0)) / sb - 1.0).abs() < 0.12,
        "β sd {} vs {sb}",
        std(&col(&s, 2, 0))
    );
    assert!(
        (std(&col(&s, 2, 1)) / sg - 1.0).abs() < 0.12,
        "γ sd {} vs {sg}",
        std(&col(&s, 2, 1))
    );
}

#[test]
fn exact_references_agree_with_sbibm_files() {
    // Only when /work/shared/sbibm and bzip2 are available: means/stds against sbibm's samples.
    for name in [
        "gaussian_linear",
        "gaussian_linear_uniform",
        "gaussian_mixture",
        "two_moons",
    ] {
        let t = task_by_name(name).unwrap();
        for k in [1, 3] {
            let Some((r, d)) = read_sbibm_reference(name, k) else {
                eprintln!("skipping {name} {k}: sbibm reference not available");
                continue;
            };
            assert_eq!(d, t.dim_theta());
            let s = t
                .reference_posterior(&t.observation(k).unwrap().x, 10_000, 11)
                .unwrap();
            for j in 0..d {
                let (a, b) = (col(&s, d, j), col(&r, d, j));
                let se = (var(&a) / 10_000.0 + var(&b) / 10_000.0).sqrt();
                assert!(
                    (mean(&a) - mean(&b)).abs() < 5.0 * se,
                    "{name} {k} dim {j}: {} vs {}",
                    mean(&a),
                    mean(&b)
                );
                assert!(
                    (std(&a) / std(&b) - 1.0).abs() < 0.05,
                    "{name} {k} dim {j}: sd {} vs {}",
                    std(&a),
                    std(&b)
                );
            }
        }
    }
}

/// Self-normalized importance sampling with a Gaussian proposal in u-space fitted to `s`
/// (covariance inflated 1.5²): returns (mean, sd) of θ per coordinate and the ESS.
fn importance_check(
    t: &dyn Task,
    x_o: &[f64],
    s: &[f64],
    m: usize,
    seed: u64,
) -> (Vec<f64>, Vec<f64>, f64) {
    use gkl_tasks::linalg;
    let d = t.dim_theta();
    let p = t.prior();
    let u: Vec<f64> = s.chunks(d).flat_map(|r| p.to_unconstrained(r)).collect();
    let ones = vec![1.0; u.len() / d];
    let (mu, mut cov) = linalg::weighted_mean_cov(&u, &ones, d);
    cov.iter_mut().for_each(|c| *c *= 2.25);
    let l = linalg::cholesky(&cov, d).unwrap();
    let hld = linalg::half_log_det(&l, d);
    let mut rng = gkl_tasks::rng::Xoshiro256pp::from_seed_u64(seed);
    let mut lw = Vec::with_capacity(m);
    let mut th = Vec::with_capacity(m * d);
    for _ in 0..m {
        let z: Vec<f64> = (0..d)
            .map(|_| gkl_tasks::distributions::std_normal(&mut rng))
            .collect();
        let mut v = vec![0.0; d];
        linalg::lower_mul(&l, d, &z, &mut v);
        let uu: Vec<f64> = v.iter().zip(&mu).map(|(a, b)| a + b).collect();
        let logq = -0.5 * z.iter().map(|a| a * a).sum::<f64>() - hld;
        let theta = p.from_unconstrained(&uu);
        let lp =
            p.log_prob_unconstrained(&uu) + t.log_likelihood_unnormalized(&theta, x_o).unwrap();
        lw.push(lp - logq);
        th.extend(theta);
    }
    let mx = lw.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = lw.iter().map(|l| (l - mx).exp()).collect();
    let ws: f64 = w.iter().sum();
    let ess = ws * ws / w.iter().map(|a| a * a).sum::<f64>();
    let mut mean = vec![0.0; d];
    let mut sd = vec![0.0; d];
    for j in 0..d {
        mean[j] = th.chunks(d).zip(&w).map(|(r, wi)| wi * r[j]).sum::<f64>() / ws;
        sd[j] = (th
            .chunks(d)
            .zip(&w)
            .map(|(r, wi)| wi * (r[j] - mean[j]).powi(2))
            .sum::<f64>()
            / ws)
            .sqrt();
    }
    (mean, sd, ess)
}

#[test]
fn bernoulli_glm_reference_agrees_with_importance_sampling() {
    let t = task_by_name("bernoulli_glm").unwrap();
    let x_o = t.observation(2).unwrap().x;
    let n = 3000;
    let opts = SmcOptions {
        n_particles: n,
        ..gkl_tasks::tasks::bernoulli_glm::bernoulli_smc_options()
    };
    let ll = |th: &[f64]| t.log_likelihood_unnormalized(th, &x_o).unwrap();
    let (s, _) = smc_posterior(t.prior(), &ll, n, 12, &opts).unwrap();
    let (m, sd, ess) = importance_check(t.as_ref(), &x_o, &s, 60_000, 13);
    assert!(ess > 5000.0, "ESS {ess}");
    for j in 0..10 {
        let c = col(&s, 10, j);
        assert!(
            (mean(&c) - m[j]).abs() < 0.1 * sd[j],
            "dim {j}: {} vs {}",
            mean(&c),
            m[j]
        );
        assert!(
            (std(&c) / sd[j] - 1.0).abs() < 0.1,
            "dim {j}: sd {} vs {}",
            std(&c),
            sd[j]
        );
    }
    // bernoulli_glm_raw's reference conditions on the same summary (⇒ same posterior, same draws).
    let bs = gkl_tasks::BernoulliGlm::new(false).unwrap();
    let br = gkl_tasks::BernoulliGlm::new(true).unwrap();
    let y = br.observation(2).unwrap().x;
    assert_eq!(
        bs.reference_summary(&x_o).unwrap(),
        br.reference_summary(&y).unwrap()
    );
    assert_ne!(bs.reference_summary(&x_o).unwrap(), x_o); // recomputed in f64 from the raw spikes
    let other: Vec<f64> = x_o.iter().map(|v| v + 1.0).collect();
    assert_eq!(bs.reference_summary(&other).unwrap(), other);
}

#[test]
fn lotka_volterra_reference_agrees_with_importance_sampling() {
    let t = task_by_name("lotka_volterra").unwrap();
    let x_o = t.observation(3).unwrap().x;
    let n = 1000;
    let opts = SmcOptions {
        n_particles: n,
        final_sweeps: 10,
        ..gkl_tasks::smc::SmcOptions::for_ode_tasks()
    };
    let ll = |th: &[f64]| t.log_likelihood(th, &x_o).unwrap();
    let (s, _) = smc_posterior(t.prior(), &ll, n, 15, &opts).unwrap();
    let (m, sd, ess) = importance_check(t.as_ref(), &x_o, &s, 8_000, 16);
    assert!(ess > 800.0, "ESS {ess}");
    for j in 0..4 {
        let c = col(&s, 4, j);
        assert!(
            (mean(&c) - m[j]).abs() < 0.2 * sd[j],
            "dim {j}: {} vs {}",
            mean(&c),
            m[j]
        );
        assert!(
            (std(&c) / sd[j] - 1.0).abs() < 0.2,
            "dim {j}: sd {} vs {}",
            std(&c),
            sd[j]
        );
    }
}

#[test]
fn smc_is_deterministic_across_thread_counts() {
    let t = task_by_name("slcp").unwrap();
    let x_o = t.observation(4).unwrap().x;
    let opts = SmcOptions {
        n_particles: 500,
        final_sweeps: 5,
        sign_symmetric: vec![2, 3],
        ..Default::default()
    };
    let ll = |th: &[f64]| t.log_likelihood(th, &x_o).unwrap();
    let (a, _) = smc_posterior(t.prior(), &ll, 500, 17, &opts).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let (b, _) = pool.install(|| smc_posterior(t.prior(), &ll, 500, 17, &opts).unwrap());
    assert_eq!(a, b);
    let (c, _) = smc_posterior(t.prior(), &ll, 500, 18, &opts).unwrap();
    assert_ne!(a, c);
}

#[test]
fn reference_input_validation() {
    for name in gkl_tasks::TASK_NAMES {
        let t = task_by_name(name).unwrap();
        let bad = vec![0.0; t.dim_x() + 1];
        assert!(
            matches!(
                t.reference_posterior(&bad, 10, 0),
                Err(gkl_tasks::TaskError::Dimension(_))
            ),
            "{name}"
        );
    }
    // two_moons: an impossible observation is reported, not looped on forever.
    let t = task_by_name("two_moons").unwrap();
    assert!(t.reference_posterior(&[5.0, 5.0], 2, 0).is_err());
}

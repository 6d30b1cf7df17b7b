#![allow(clippy::needless_range_loop)]
//! Simulators against moments / closed forms, likelihoods against simulations, ODE checks,
//! determinism.

mod common;
use common::*;

use gkl_tasks::ode::{dopri5, rk4_fixed};
use gkl_tasks::tasks::lotka_volterra::{lv_ode_options, lv_rhs, lv_states, lv_times, X0};
use gkl_tasks::tasks::sir::{sir_infected, sir_ode_options, sir_rhs, sir_times};
use gkl_tasks::{task_by_name, BernoulliGlm, Slcp, Task, TASK_NAMES};

fn repeat(theta: &[f64], n: usize) -> Vec<f64> {
    theta
        .iter()
        .cloned()
        .cycle()
        .take(theta.len() * n)
        .collect()
}

#[test]
fn shapes_finiteness_and_determinism() {
    for name in TASK_NAMES {
        let t = task_by_name(name).unwrap();
        let theta = t.sample_prior(300, 1);
        let x = t.simulate(&theta, 9);
        assert_eq!(x.len(), 300 * t.dim_x());
        assert!(x.iter().all(|v| v.is_finite()), "{name}");
        assert_eq!(x, t.simulate(&theta, 9), "{name}: same seed, same output");
        assert_ne!(x, t.simulate(&theta, 10), "{name}: different seed");
        // Row i depends only on (seed, i): a prefix batch gives the same rows.
        let x_pre = t.simulate(&theta[..100 * t.dim_theta()], 9);
        assert_eq!(&x[..100 * t.dim_x()], &x_pre[..], "{name}");
        // Independent of the thread count.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let x1 = pool.install(|| t.simulate(&theta, 9));
        assert_eq!(x, x1, "{name}: thread count changed the output");
    }
}

#[test]
fn gaussian_linear_mean_and_cov() {
    for name in ["gaussian_linear", "gaussian_linear_uniform"] {
        let t = task_by_name(name).unwrap();
        let theta: Vec<f64> = (0..10).map(|i| -0.9 + 0.18 * i as f64).collect();
        let n = 40_000;
        let x = t.simulate(&repeat(&theta, n), 3);
        for j in 0..10 {
            let c = col(&x, 10, j);
            assert!(
                (mean(&c) - theta[j]).abs() < 5.0 * (0.1f64 / n as f64).sqrt(),
                "{name} mean {j}"
            );
            assert!(
                (var(&c) / 0.1 - 1.0).abs() < 0.04,
                "{name} var {j}: {}",
                var(&c)
            );
        }
        // Off-diagonal covariance ≈ 0.
        let (a, b) = (col(&x, 10, 0), col(&x, 10, 1));
        let (ma, mb) = (mean(&a), mean(&b));
        let cov = a
            .iter()
            .zip(&b)
            .map(|(u, v)| (u - ma) * (v - mb))
            .sum::<f64>()
            / n as f64;
        assert!(
            cov.abs() < 5.0 * 0.1 / (n as f64).sqrt(),
            "{name} cov {cov}"
        );
    }
}

#[test]
fn gaussian_mixture_moments() {
    let t = task_by_name("gaussian_mixture").unwrap();
    let theta = [3.0, -7.0];
    let n = 200_000;
    let x = t.simulate(&repeat(&theta, n), 4);
    for j in 0..2 {
        let r: Vec<f64> = col(&x, 2, j).iter().map(|v| v - theta[j]).collect();
        let m2 = r.iter().map(|v| v * v).sum::<f64>() / n as f64;
        let m4 = r.iter().map(|v| v.powi(4)).sum::<f64>() / n as f64;
        assert!((m2 - 0.505).abs() < 0.01, "E r² = {m2}");
        assert!((m4 - 1.50015).abs() < 0.05, "E r⁴ = {m4}");
    }
    // The component is drawn per simulation: both coordinates share it, so r1² and r2² correlate.
    let r1: Vec<f64> = col(&x, 2, 0)
        .iter()
        .map(|v| (v - theta[0]).powi(2))
        .collect();
    let r2: Vec<f64> = col(&x, 2, 1).iter().map(|v| (v + 7.0).powi(2)).collect();
    let e12 = r1.iter().zip(&r2).map(|(a, b)| a * b).sum::<f64>() / n as f64;
    // E[r1² r2²] = 0.5·1 + 0.5·1e-4 = 0.50005 (vs 0.255 if drawn independently per coordinate)
    assert!((e12 - 0.50005).abs() < 0.02, "E r1² r2² = {e12}");
    // Not one component for the whole batch (sbibm's old bug): both scales appear.
    let small = r1.iter().filter(|&&v| v < 0.01).count() as f64 / n as f64;
    assert!(small > 0.3 && small < 0.45, "{small}");
}

#[test]
fn two_moons_ring() {
    let t = task_by_name("two_moons").unwrap();
    for theta in [[0.3, -0.5], [-0.8, 0.6], [0.9, 0.9]] {
        let n = 50_000;
        let x = t.simulate(&repeat(&theta, n), 5);
        let c1 = 0.25 - (theta[0] + theta[1]).abs() / 2f64.sqrt();
        let c2 = (-theta[0] + theta[1]) / 2f64.sqrt();
        let r: Vec<f64> = x
            .chunks(2)
            .map(|p| ((p[0] - c1).powi(2) + (p[1] - c2).powi(2)).sqrt())
            .collect();
        assert!(
            (mean(&r) - 0.1).abs() < 5.0 * 0.01 / (n as f64).sqrt() + 1e-5,
            "{theta:?}: {}",
            mean(&r)
        );
        assert!((std(&r) / 0.01 - 1.0).abs() < 0.03);
        // Right half-ring only, angle uniform: E[cos a] = 2/π.
        assert!(x.chunks(2).all(|p| p[0] - c1 > 0.0));
        let cosa: Vec<f64> = x.chunks(2).zip(&r).map(|(p, r)| (p[0] - c1) / r).collect();
        assert!((mean(&cosa) - 2.0 / std::f64::consts::PI).abs() < 0.01);
    }
}

#[test]
fn two_moons_likelihood_matches_simulation_histogram() {
    let t = task_by_name("two_moons").unwrap();
    let theta = [0.2, 0.5];
    let n = 400_000;
    let x = t.simulate(&repeat(&theta, n), 6);
    // Probability of a few boxes in x-space: Monte Carlo vs numerical integral of exp(loglik).
    let c1 = 0.25 - 0.7 / 2f64.sqrt();
    let c2 = 0.3 / 2f64.sqrt();
    let boxes = [
        (c1 + 0.05, c1 + 0.12, c2 - 0.02, c2 + 0.09),
        (c1, c1 + 0.04, c2 + 0.05, c2 + 0.12),
        (c1 + 0.08, c1 + 0.12, c2 - 0.12, c2 - 0.02),
    ];
    let mut total = 0.0;
    let m = 400;
    let (lo1, hi1, lo2, hi2) = (c1 - 0.15, c1 + 0.15, c2 - 0.15, c2 + 0.15);
    let h1 = (hi1 - lo1) / m as f64;
    let h2 = (hi2 - lo2) / m as f64;
    for i in 0..m {
        for j in 0..m {
            let p = [lo1 + (i as f64 + 0.5) * h1, lo2 + (j as f64 + 0.5) * h2];
            total += t.log_likelihood(&theta, &p).unwrap().exp() * h1 * h2;
        }
    }
    assert!(
        (total - 1.0).abs() < 2e-3,
        "two_moons likelihood integrates to {total}"
    );
    for (a1, b1, a2, b2) in boxes {
        let mc = x
            .chunks(2)
            .filter(|p| p[0] >= a1 && p[0] < b1 && p[1] >= a2 && p[1] < b2)
            .count() as f64
            / n as f64;
        let mut q = 0.0;
        let k = 300;
        for i in 0..k {
            for j in 0..k {
                let p = [
                    a1 + (i as f64 + 0.5) * (b1 - a1) / k as f64,
                    a2 + (j as f64 + 0.5) * (b2 - a2) / k as f64,
                ];
                q += t.log_likelihood(&theta, &p).unwrap().exp() * (b1 - a1) * (b2 - a2)
                    / (k * k) as f64;
            }
        }
        let se = (q * (1.0 - q) / n as f64).sqrt();
        assert!(
            (mc - q).abs() < 5.0 * se + 1e-4,
            "box: MC {mc} vs integral {q}"
        );
    }
}

#[test]
fn gaussian_mixture_likelihood_integrates_to_one() {
    let t = task_by_name("gaussian_mixture").unwrap();
    let theta = [1.0, -2.0];
    let m = 800;
    let (lo, hi) = (-6.0, 6.0);
    let h = (hi - lo) / m as f64;
    let mut s = 0.0;
    for i in 0..m {
        for j in 0..m {
            let x = [
                theta[0] + lo + (i as f64 + 0.5) * h,
                theta[1] + lo + (j as f64 + 0.5) * h,
            ];
            s += t.log_likelihood(&theta, &x).unwrap().exp() * h * h;
        }
    }
    assert!((s - 1.0).abs() < 1e-3, "{s}");
}

#[test]
fn slcp_moments_and_likelihood() {
    let t = Slcp::new(false).unwrap();
    let theta = [0.5, -1.0, 1.2, -0.9, 0.7];
    let n = 50_000;
    let x = t.simulate(&repeat(&theta, n), 7);
    let (s1, s2, rho) = (1.44f64, 0.81f64, 0.7f64.tanh());
    let s11 = s1 * s1 + 1e-6;
    let s22 = s2 * s2 + 1e-6;
    let s12 = rho * s1 * s2;
    for draw in 0..4 {
        let a = col(&x, 8, 2 * draw);
        let b = col(&x, 8, 2 * draw + 1);
        assert!((mean(&a) - 0.5).abs() < 5.0 * (s11 / n as f64).sqrt());
        assert!((mean(&b) + 1.0).abs() < 5.0 * (s22 / n as f64).sqrt());
        assert!((var(&a) / s11 - 1.0).abs() < 0.03);
        assert!((var(&b) / s22 - 1.0).abs() < 0.03);
        let (ma, mb) = (mean(&a), mean(&b));
        let c = a
            .iter()
            .zip(&b)
            .map(|(u, v)| (u - ma) * (v - mb))
            .sum::<f64>()
            / n as f64;
        assert!((c / s12 - 1.0).abs() < 0.04, "cov {c} vs {s12}");
    }
    // Draws are independent: covariance between draw 0 and draw 1 ≈ 0.
    let (a, b) = (col(&x, 8, 0), col(&x, 8, 2));
    let (ma, mb) = (mean(&a), mean(&b));
    let c = a
        .iter()
        .zip(&b)
        .map(|(u, v)| (u - ma) * (v - mb))
        .sum::<f64>()
        / n as f64;
    assert!(c.abs() < 5.0 * s11 / (n as f64).sqrt());
    // Likelihood: the log-likelihood of own simulations averages to −(4·(log 2π + ½ log det S + 1)).
    let ll: Vec<f64> = x
        .chunks(8)
        .take(20_000)
        .map(|r| t.log_likelihood(&theta, r).unwrap())
        .collect();
    let det = s11 * s22 - s12 * s12;
    let want = -4.0 * ((2.0 * std::f64::consts::PI).ln() + 0.5 * det.ln() + 1.0);
    assert!(
        (mean(&ll) - want).abs() < 5.0 * 2.0 / (20_000f64).sqrt(),
        "{} vs {want}",
        mean(&ll)
    );
}

#[test]
fn slcp_distractors_structure() {
    let t = Slcp::new(true).unwrap();
    let d = t.distractors().unwrap();
    let theta = [0.5, -1.0, 1.2, -0.9, 0.7];
    let n = 5_000;
    let x = t.simulate(&repeat(&theta, n), 8);
    // Data columns follow slcp: mean of first coordinate of each draw is θ1.
    let data: Vec<f64> = x.chunks(100).flat_map(|r| t.data_columns(r)).collect();
    for draw in 0..4 {
        let a = col(&data, 8, 2 * draw);
        assert!((mean(&a) - 0.5).abs() < 5.0 * 1.44 / (n as f64).sqrt());
        assert!((var(&a) / (1.44f64 * 1.44) - 1.0).abs() < 0.08);
    }
    // Noise marginals: coordinate j is the mixture Σ_k π_k t₂(loc_kj, s_kj), s_kj = ‖row j of L_k‖
    // (the marginal of a multivariate t), with CDF F(t) = ½ + t / (2√(2 + t²)) for df = 2.
    assert_eq!(d.df, 2.0);
    let n_big = 40_000;
    let theta_big = repeat(&theta, n_big);
    let xb = t.simulate(&theta_big, 15);
    for j in [0usize, 17, 45, 91] {
        let v: Vec<f64> = xb.chunks(100).map(|r| r[d.noise_pos[j]]).collect();
        for q in [0.05, 0.25, 0.5, 0.75, 0.95] {
            let c = quantile(&v, q);
            let mut cdf = 0.0;
            for k in 0..d.probs.len() {
                let s: f64 = (0..92)
                    .map(|m| d.scale_trils[k][j * 92 + m].powi(2))
                    .sum::<f64>()
                    .sqrt();
                let z = (c - d.locs[k][j]) / s;
                cdf += d.probs[k] * (0.5 + z / (2.0 * (2.0 + z * z).sqrt()));
            }
            let se = (q * (1.0 - q) / n_big as f64).sqrt();
            assert!(
                (cdf - q).abs() < 5.0 * se + 1e-3,
                "noise coord {j}: CDF at the {q} quantile is {cdf}"
            );
        }
    }
    assert!(t.log_likelihood(&theta, &x[..100]).is_none());
    assert!(t
        .log_likelihood_unnormalized(&theta, &x[..100])
        .unwrap()
        .is_finite());
}

#[test]
fn bernoulli_glm_sums_and_raw_consistency() {
    let t = BernoulliGlm::new(false).unwrap();
    let raw = BernoulliGlm::new(true).unwrap();
    let theta = t.sample_prior(200, 3);
    let xs = t.simulate(&theta, 11);
    let xr = raw.simulate(&theta, 11);
    for (s, y) in xs.chunks(10).zip(xr.chunks(100)) {
        assert!(y.iter().all(|&v| v == 0.0 || v == 1.0));
        assert_eq!(s[0], y.iter().sum::<f64>());
        let s2 = t.summary(y);
        for (a, b) in s.iter().zip(&s2) {
            assert!((a - b).abs() < 1e-12);
        }
    }
    // Expected spike count Σ σ(η_t) for a fixed θ.
    let th = [-1.0, 0.5, 0.3, 0.0, -0.2, 0.1, 0.0, 0.0, 0.1, 0.0];
    let n = 20_000;
    let x = t.simulate(&repeat(&th, n), 12);
    let mut p = 0.0;
    let mut v = 0.0;
    for r in 0..100 {
        let eta: f64 = (0..10).map(|j| t.design[r * 10 + j] * th[j]).sum();
        let s = 1.0 / (1.0 + (-eta).exp());
        p += s;
        v += s * (1.0 - s);
    }
    let c = col(&x, 10, 0);
    assert!(
        (mean(&c) - p).abs() < 5.0 * (v / n as f64).sqrt(),
        "{} vs {p}",
        mean(&c)
    );
    assert!((var(&c) / v - 1.0).abs() < 0.05);
    // Raw log-likelihood = unnormalized summary log-likelihood (sufficiency).
    for (s, y) in xs.chunks(10).zip(xr.chunks(100)).take(20) {
        let a = raw.log_likelihood(&th, y).unwrap();
        let b = t.log_likelihood_unnormalized(&th, s).unwrap();
        assert!((a - b).abs() < 1e-9);
    }
    assert!(t.log_likelihood(&th, &xs[..10]).is_none());
}

#[test]
fn sir_outputs_and_means() {
    let t = task_by_name("sir").unwrap();
    let theta = [0.6, 0.15];
    let n = 20_000;
    let x = t.simulate(&repeat(&theta, n), 13);
    assert!(x
        .iter()
        .all(|&v| (0.0..=1000.0).contains(&v) && v.fract() == 0.0));
    let i = sir_infected(&theta, &sir_ode_options()).unwrap();
    for j in 0..10 {
        let p = i[j] / 1e6;
        let c = col(&x, 10, j);
        let sd = (1000.0 * p * (1.0 - p) / n as f64).sqrt();
        assert!(
            (mean(&c) - 1000.0 * p).abs() < 5.0 * sd + 1e-3,
            "t{j}: {} vs {}",
            mean(&c),
            1000.0 * p
        );
    }
    // S + I + R = N and the trajectory peaks then decays.
    assert!(i[2] > i[0] && i[9] < i[3]);
}

#[test]
fn lotka_volterra_outputs_and_noise() {
    let t = task_by_name("lotka_volterra").unwrap();
    let theta = [0.7, 0.1, 0.9, 0.12];
    let n = 20_000;
    let x = t.simulate(&repeat(&theta, n), 14);
    assert!(x.iter().all(|&v| v > 0.0));
    let u = lv_states(&theta, &lv_ode_options()).unwrap();
    assert!((u[0] - 30.0).abs() < 1e-12 && (u[10] - 1.0).abs() < 1e-12);
    for j in 0..20 {
        let l: Vec<f64> = col(&x, 20, j).iter().map(|v| v.ln()).collect();
        assert!((mean(&l) - u[j].ln()).abs() < 5.0 * 0.1 / (n as f64).sqrt());
        assert!((std(&l) / 0.1 - 1.0).abs() < 0.03);
    }
}

#[test]
fn ode_solutions_match_fine_rk4() {
    // SIR: dopri5 (task tolerances) vs RK4 with h = 1/256 day.
    for theta in [
        [0.61479264, 0.19172086],
        [0.4, 0.125],
        [1.5, 0.1],
        [0.2, 0.15],
    ] {
        let mut out = [[0.0; 2]; 10];
        dopri5(
            sir_rhs(theta[0], theta[1]),
            0.0,
            [1e6 - 1.0, 1.0],
            &sir_times(),
            &sir_ode_options(),
            &mut out,
        )
        .unwrap();
        let r = rk4_fixed(
            sir_rhs(theta[0], theta[1]),
            0.0,
            [1e6 - 1.0, 1.0],
            1.0 / 256.0,
            256 * 153,
            256 * 17,
        );
        assert_eq!(r.len(), 10);
        for j in 0..10 {
            for c in 0..2 {
                assert!(
                    (out[j][c] - r[j][c]).abs() < 1e-6 * 1e6,
                    "sir {theta:?} t{j}: {} vs {}",
                    out[j][c],
                    r[j][c]
                );
            }
        }
    }
    // LV: dopri5 vs RK4 with h = 0.1/256 day, in log space.
    let lv = task_by_name("lotka_volterra").unwrap();
    let mut thetas = vec![vec![0.6859157, 0.10761319, 0.88789904, 0.116794825]];
    thetas.extend(lv.sample_prior(6, 2).chunks(4).map(|r| r.to_vec()));
    for theta in thetas {
        let mut out = [[0.0; 2]; 10];
        dopri5(
            lv_rhs(&theta),
            0.0,
            X0,
            &lv_times(),
            &lv_ode_options(),
            &mut out,
        )
        .unwrap();
        let r = rk4_fixed(lv_rhs(&theta), 0.0, X0, 0.1 / 256.0, 256 * 189, 256 * 21);
        for j in 0..10 {
            for c in 0..2 {
                if r[j][c] > 1e-6 {
                    let e = (out[j][c].ln() - r[j][c].ln()).abs();
                    assert!(e < 2e-3, "lv {theta:?} t{j}: {} vs {}", out[j][c], r[j][c]);
                }
            }
        }
    }
}

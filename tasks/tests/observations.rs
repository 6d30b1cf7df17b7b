#![allow(clippy::needless_range_loop)]
//! Registry, embedded observations and their consistency with the simulators' conventions.

use gkl_tasks::tasks::bernoulli_glm::BernoulliGlm;
use gkl_tasks::tasks::lotka_volterra::{lv_ode_options, lv_states};
use gkl_tasks::tasks::sir::{sir_infected, sir_ode_options};
use gkl_tasks::{task_by_name, Slcp, Task, TaskError, TASK_NAMES};

#[test]
fn registry_and_dimensions() {
    let want = [
        ("gaussian_linear", 10, 10),
        ("gaussian_linear_uniform", 10, 10),
        ("slcp", 5, 8),
        ("slcp_distractors", 5, 100),
        ("bernoulli_glm", 10, 10),
        ("bernoulli_glm_raw", 10, 100),
        ("gaussian_mixture", 2, 2),
        ("two_moons", 2, 2),
        ("sir", 2, 10),
        ("lotka_volterra", 4, 20),
    ];
    assert_eq!(TASK_NAMES.len(), want.len());
    for (name, dt, dx) in want {
        assert!(TASK_NAMES.contains(&name));
        let t = task_by_name(name).unwrap();
        assert_eq!(t.name(), name);
        assert_eq!((t.dim_theta(), t.dim_x()), (dt, dx), "{name}");
        assert_eq!(t.prior().dim(), dt);
        t.prior().validate().unwrap();
    }
    let e = task_by_name("two_moon").err().unwrap();
    let msg = e.to_string();
    assert!(matches!(e, TaskError::UnknownTask { .. }));
    for n in TASK_NAMES {
        assert!(msg.contains(n), "error message lists {n}: {msg}");
    }
}

#[test]
fn observations_load_for_all_tasks() {
    for name in TASK_NAMES {
        let t = task_by_name(name).unwrap();
        for k in 1..=5 {
            let o = t.observation(k).unwrap();
            assert_eq!(o.x.len(), t.dim_x(), "{name} {k}");
            assert_eq!(o.theta_true.len(), t.dim_theta(), "{name} {k}");
            assert!(o.x.iter().all(|v| v.is_finite()));
            assert!(
                t.prior().log_prob(&o.theta_true).is_finite(),
                "{name} {k}: θ_true outside prior"
            );
            if let Some(ll) = t.log_likelihood_unnormalized(&o.theta_true, &o.x) {
                assert!(
                    ll.is_finite(),
                    "{name} {k}: log-likelihood at θ_true is {ll}"
                );
            }
        }
        for k in [0, 6] {
            assert!(
                matches!(t.observation(k), Err(TaskError::NoSuchObservation { .. })),
                "{name} {k}"
            );
        }
    }
}

#[test]
fn slcp_distractors_observation_contains_slcp_data() {
    let s = Slcp::new(false).unwrap();
    let sd = Slcp::new(true).unwrap();
    for k in 1..=5 {
        let a = s.observation(k).unwrap();
        let b = sd.observation(k).unwrap();
        let data = sd.data_columns(&b.x);
        for (u, v) in a.x.iter().zip(data.iter()) {
            assert!(
                (u - v).abs() < 1e-5 * (1.0 + u.abs()),
                "obs {k}: {u} vs {v}"
            );
        }
        assert_eq!(a.theta_true, b.theta_true);
    }
}

#[test]
fn bernoulli_summary_of_raw_observation_matches() {
    let t = BernoulliGlm::new(false).unwrap();
    let raw = BernoulliGlm::new(true).unwrap();
    for k in 1..=5 {
        let o = t.observation(k).unwrap();
        let y = raw.observation(k).unwrap().x;
        assert!(y.iter().all(|&v| v == 0.0 || v == 1.0));
        let s = t.summary(&y);
        for (a, b) in s.iter().zip(o.x.iter()) {
            assert!(
                (a - b).abs() < 1e-4 * (1.0 + a.abs()),
                "obs {k}: {s:?} vs {:?}",
                o.x
            );
        }
        // The summary equals Xᵀy with the stored design (conv1d convention check).
        for j in 0..10 {
            let xty: f64 = (0..100).map(|r| t.design[r * 10 + j] * y[r]).sum();
            assert!(
                (xty - s[j]).abs() < 1e-9,
                "obs {k} stat {j}: {xty} vs {}",
                s[j]
            );
        }
    }
}

#[test]
fn ode_observations_are_near_the_true_solution() {
    // lotka_volterra: log x − log u(θ_true) ~ N(0, 0.1²): checks the (X..., Y...) ordering.
    let lv = task_by_name("lotka_volterra").unwrap();
    let mut z2 = 0.0;
    for k in 1..=5 {
        let o = lv.observation(k).unwrap();
        let u = lv_states(&o.theta_true, &lv_ode_options()).unwrap();
        for j in 0..20 {
            let z = (o.x[j].ln() - u[j].ln()) / 0.1;
            assert!(z.abs() < 4.5, "lv obs {k} entry {j}: z = {z}");
            z2 += z * z;
        }
    }
    let v = z2 / 100.0;
    assert!(v > 0.6 && v < 1.5, "lv standardized residual variance {v}");
    // sir: x_j ~ Binomial(1000, I/N): standardized residuals.
    let sir = task_by_name("sir").unwrap();
    for k in 1..=5 {
        let o = sir.observation(k).unwrap();
        let i = sir_infected(&o.theta_true, &sir_ode_options()).unwrap();
        for j in 0..10 {
            let p = (i[j] / 1e6).clamp(0.0, 1.0);
            let sd = (1000.0 * p * (1.0 - p)).sqrt().max(0.5);
            let z = (o.x[j] - 1000.0 * p) / sd;
            assert!(
                z.abs() < 5.0,
                "sir obs {k} t{j}: x {} vs mean {}",
                o.x[j],
                1000.0 * p
            );
        }
    }
}

#[test]
fn bernoulli_prior_precision_structure() {
    let p = gkl_tasks::tasks::bernoulli_glm::prior_precision();
    // B⁻¹[0,0] = 0.5; filter block FᵀF with F = D² + diag(√(i/9)):
    // (FᵀF)[0,0] = 1 + 4 + 1 = 6, (FᵀF)[8,8] = (1 + √(8/9))², (FᵀF)[0,1] = F[:,0]·F[:,1] = −2·1 + 1·(−2) = −4 + ... see below.
    assert_eq!(p[0], 0.5);
    assert!((p[11] - 6.0).abs() < 1e-12, "{}", p[11]);
    assert!((p[99] - (1.0 + (8.0f64 / 9.0).sqrt()).powi(2)).abs() < 1e-12);
    // Column 0 of F = (1, −2, 1, 0, ...), column 1 = (0, 1 + √(1/9), −2, 1, 0, ...):
    // (FᵀF)[0,1] = −2·(1 + 1/3) + 1·(−2) = −14/3.
    assert!((p[12] - (-14.0 / 3.0)).abs() < 1e-12, "{}", p[12]);
    for i in 1..10 {
        assert_eq!(p[i], 0.0);
        assert_eq!(p[i * 10], 0.0);
    }
    // The task's prior covariance is its inverse.
    let t = gkl_tasks::BernoulliGlm::new(false).unwrap();
    let gkl_tasks::Prior::Gaussian { cov, .. } = t.prior() else {
        panic!("gaussian prior expected")
    };
    for i in 0..10 {
        for j in 0..10 {
            let v: f64 = (0..10).map(|k| cov[i][k] * p[k * 10 + j]).sum();
            assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-9);
        }
    }
}

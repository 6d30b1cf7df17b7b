//! Neural spline flow (autoregressive rational-quadratic, linear tails): GPU against the f64
//! reference (log q, gradients of every parameter and of the context, sampling), the reference
//! against finite differences (inside the bins, across bins, in the tails), invertibility,
//! normalisation, and a short training run that must lower the loss.

mod common;
mod flow_common;
use common::*;
use flow_common::*;
use gkl_gpu::kernels::Activation;
use gkl_gpu::models::flow::cpu::Spline;

/// The configurations the GPU tests share (pipelines are compiled once per test binary).
fn two_moons_like() -> gkl_gpu::models::flow::FlowConfig {
    nsf_config(2, 2, 5, 50, 2, Activation::Tanh, 10, 3.0)
}

fn one_d() -> gkl_gpu::models::flow::FlowConfig {
    nsf_config(1, 1, 2, 41, 1, Activation::Relu, 4, 2.0)
}

#[test]
fn nsf_gpu_matches_cpu() {
    // θ over ±2B: rows in the tails and in every bin.
    check_gpu_against_cpu(&two_moons_like(), 20, 37, 3.0, 6.0, false, None);
    check_gpu_against_cpu(&one_d(), 21, 5, 3.0, 4.0, false, None);
    let cfg = nsf_config(3, 5, 3, 45, 2, Activation::Gelu, 7, 2.5);
    check_gpu_against_cpu(&cfg, 22, 130, 3.0, 5.0, true, Some(3));
    // nflows' MADE wiring and spline parameterization (models saved before those options).
    let mut cfg = nsf_config(3, 2, 3, 20, 2, Activation::Relu, 6, 3.0);
    cfg.context_every_dim = false;
    cfg.spline_identity_init = false;
    check_gpu_against_cpu(&cfg, 23, 29, 3.0, 5.0, false, None);
}

/// With `spline_identity_init` a zero network output is the identity map: uniform bins and unit
/// inner derivatives. nflows' parameterization gives derivative softplus(0) + min ≈ 0.69 there.
#[test]
fn zero_raw_parameters_give_the_identity_spline() {
    let mut cfg = nsf_config(1, 1, 1, 9, 1, Activation::Tanh, 6, 2.0);
    let raw = vec![0.0; cfg.params_per_dim()];
    let sp = Spline::new(&cfg, &raw);
    for i in 0..=40 {
        let x = -2.5 + 5.0 * i as f64 / 40.0;
        let (y, ld) = sp.forward(x);
        assert!(
            (y - x).abs() < 1e-12 && ld.abs() < 1e-12,
            "x {x}: y {y}, log-det {ld}"
        );
    }
    cfg.spline_identity_init = false;
    let sp = Spline::new(&cfg, &raw);
    let (_, ld) = sp.forward(0.1);
    assert!(
        ld.abs() > 0.05,
        "nflows' parameterization is not the identity at zero: {ld}"
    );
}

/// The spline alone: its derivative is exp(log-det), it is monotone and continuous at the knots
/// and at ±B, the inverse inverts, and the analytic gradients match central differences.
#[test]
fn spline_reference_is_consistent() {
    let cfg = nsf_config(1, 1, 1, 9, 1, Activation::Tanh, 6, 2.0);
    let mut g = rng(80);
    let p = cfg.params_per_dim();
    for _ in 0..5 {
        let raw = data(&mut g, p, 4.0);
        let sp = Spline::new(&cfg, &raw);
        let mut prev = f64::NEG_INFINITY;
        for i in 0..=400 {
            let x = -2.5 + 5.0 * i as f64 / 400.0;
            let (y, ld) = sp.forward(x);
            assert!(y > prev, "not monotone at {x}");
            prev = y;
            let hh = 1e-6;
            let fd = (sp.forward(x + hh).0 - sp.forward(x - hh).0) / (2.0 * hh);
            assert!(
                (fd - ld.exp()).abs() < 1e-5 * fd.max(1.0),
                "dy/dx at {x}: fd {fd} vs exp(ld) {}",
                ld.exp()
            );
            let (x2, ld2) = sp.inverse(y);
            assert!(
                (x2 - x).abs() < 1e-10 && (ld2 - ld).abs() < 1e-8,
                "inverse at {x}"
            );
        }
        // Knots: continuous values and derivatives.
        for j in 0..=cfg.bins {
            let x = sp.cw[j];
            let (a, la) = sp.forward(x - 1e-9);
            let (b, lb) = sp.forward(x + 1e-9);
            assert!((a - b).abs() < 1e-7 && (la - lb).abs() < 1e-5, "knot {j}");
        }
        // Gradients of gy·y + gl·ld in x and the raw parameters, across the whole range.
        for &x in &[-2.7, -1.9, -0.3, 0.05, 0.8, 1.99, 2.4] {
            let (gy, gl) = (0.7, -1.3);
            let (gx, graw) = sp.backward(x, gy, gl);
            let f = |raw: &[f64], x: f64| {
                let (y, ld) = Spline::new(&cfg, raw).forward(x);
                gy * y + gl * ld
            };
            let hh = 1e-6;
            let fd = (f(&raw, x + hh) - f(&raw, x - hh)) / (2.0 * hh);
            assert!(
                (fd - gx).abs() < 1e-6 + 1e-5 * fd.abs(),
                "x {x}: d/dx {gx} vs {fd}"
            );
            for q in 0..p {
                let (mut a, mut b) = (raw.clone(), raw.clone());
                a[q] += hh;
                b[q] -= hh;
                let fd = (f(&a, x) - f(&b, x)) / (2.0 * hh);
                assert!(
                    (fd - graw[q]).abs() < 1e-6 + 1e-5 * fd.abs(),
                    "x {x}: d/draw[{q}] {} vs {fd}",
                    graw[q]
                );
            }
        }
    }
}

#[test]
fn nsf_cpu_gradients_match_finite_differences() {
    let cfg = nsf_config(2, 2, 2, 5, 2, Activation::Tanh, 5, 2.0);
    check_fd(&cfg, 81, 2.0, 4, 3.0);
    let cfg = nsf_config(3, 1, 2, 4, 1, Activation::Silu, 3, 1.5);
    check_fd(&cfg, 82, 2.0, 3, 2.0);
}

#[test]
fn nsf_inverse_roundtrip_cpu_and_gpu() {
    check_roundtrip(&two_moons_like(), 41, 29, 3.0, 2.0);
}

#[test]
fn nsf_gpu_sampling_matches_cpu_inverse_of_philox_draws() {
    check_philox_sampling(&two_moons_like(), 51, 203);
}

#[test]
fn nsf_density_integrates_to_one() {
    check_normalised(&one_d(), 62, 12.0, 40_000, 2e-3);
    check_normalised(&two_moons_like(), 63, 9.0, 600, 5e-3);
}

#[test]
fn nsf_training_lowers_the_loss() {
    train_two_d(&two_moons_like(), 300, 0.15);
}

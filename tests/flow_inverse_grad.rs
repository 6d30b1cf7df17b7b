//! Gradients through the flows' reparameterized samples θ = T⁻¹(z; c) with the base draws z held
//! fixed: the f64 reference (`cpu::inverse_backward`) against central differences of the
//! reference inverse, and the GPU plan (forward tape at θ, `inverse_backward`, the weight
//! gradients, `context_sum`) against the reference. MAF and NSF, d = 1 … 5, samples in the NSF's
//! identity tails, K rows per context row, dL/dθ read from a wider buffer at a row offset,
//! chunked weight gradients, and accumulation onto gradients already there.

mod common;
mod flow_common;
use common::*;
use flow_common::*;
use gkl_gpu::kernels::Activation;
use gkl_gpu::models::flow::cpu::{self, FlowWeights};
use gkl_gpu::models::flow::FlowKind::Maf;
use gkl_gpu::models::flow::{FlowConfig, FlowInverseGradOptions, FlowInverseGradPlan};

/// L = Σ u ⊙ θ(z; w, c) by the reference inverse.
fn objective(
    cfg: &FlowConfig,
    w: &FlowWeights,
    z: &[f64],
    c: &[f64],
    rows: usize,
    u: &[f64],
) -> f64 {
    cpu::inverse(cfg, w, z, c, rows)
        .0
        .iter()
        .zip(u)
        .map(|(a, b)| a * b)
        .sum()
}

/// The reference's gradient in every free parameter and context entry against central
/// differences; returns the number of base draws outside the NSF's tail bound.
fn check_fd(cfg: &FlowConfig, seed: u64, spread: f64, rows: usize, z_scale: f64) -> usize {
    let mut g = rng(seed);
    let mut w = FlowWeights::init(cfg, &mut g);
    for tl in w.layers.iter_mut() {
        for lw in tl.iter_mut() {
            for b in lw.b.iter_mut() {
                *b *= spread;
            }
        }
    }
    let z = data(&mut g, rows * cfg.dim, z_scale);
    let context = data(&mut g, rows * cfg.context_dim, 1.0);
    let u = data(&mut g, rows * cfg.dim, 1.0);
    let (gw, gc) = cpu::inverse_backward(cfg, &w, &z, &context, rows, &u);
    let h = 1e-6;
    let f = |w: &FlowWeights, c: &[f64]| objective(cfg, w, &z, c, rows, &u);
    let what = format!("{:?} d={} T={}", cfg.kind, cfg.dim, cfg.transforms);
    let an = gw.flat();
    let mut checked = 0;
    for (i, &is_free) in free_mask(cfg).iter().enumerate() {
        if !is_free {
            assert_eq!(an[i], 0.0, "{what}: masked gradient {i} must be zero");
            continue;
        }
        let (mut a, mut b) = (w.clone(), w.clone());
        *a.flat_mut()[i] += h;
        *b.flat_mut()[i] -= h;
        let fd = (f(&a, &context) - f(&b, &context)) / (2.0 * h);
        assert!(
            (fd - an[i]).abs() < 1e-6 + 1e-5 * fd.abs(),
            "{what}: parameter {i}: reference {} vs fd {fd}",
            an[i]
        );
        checked += 1;
    }
    for i in 0..context.len() {
        let (mut a, mut b) = (context.clone(), context.clone());
        a[i] += h;
        b[i] -= h;
        let fd = (f(&w, &a) - f(&w, &b)) / (2.0 * h);
        assert!(
            (fd - gc[i]).abs() < 1e-6 + 1e-5 * fd.abs(),
            "{what}: context {i}: reference {} vs fd {fd}",
            gc[i]
        );
    }
    assert!(checked > 10);
    // The gradient is not trivially zero.
    assert!(
        an.iter().any(|v| v.abs() > 1e-3) && gc.iter().any(|v| v.abs() > 1e-3),
        "{what}"
    );
    z.iter().filter(|v| v.abs() > cfg.tail_bound).count()
}

#[test]
fn maf_inverse_gradient_reference_matches_finite_differences() {
    check_fd(
        &config(Maf, 3, 2, 2, 5, 2, Activation::Tanh),
        1,
        1.0,
        4,
        1.5,
    );
    check_fd(
        &config(Maf, 1, 2, 3, 4, 1, Activation::Silu),
        2,
        1.0,
        3,
        1.5,
    );
    // Soft clamp active: large raw log-scales.
    check_fd(
        &config(Maf, 2, 1, 2, 4, 1, Activation::Tanh),
        3,
        6.0,
        3,
        1.0,
    );
}

#[test]
fn nsf_inverse_gradient_reference_matches_finite_differences() {
    let inside = check_fd(
        &nsf_config(2, 2, 2, 5, 2, Activation::Tanh, 5, 2.0),
        4,
        2.0,
        4,
        1.5,
    );
    assert_eq!(inside, 0, "draws meant to stay inside the bins");
    check_fd(
        &nsf_config(1, 1, 2, 4, 1, Activation::Tanh, 4, 2.0),
        5,
        2.0,
        3,
        1.5,
    );
    // d = 3 with many draws in the identity tails (|z| > 1.5).
    let tails = check_fd(
        &nsf_config(3, 1, 2, 4, 1, Activation::Silu, 3, 1.5),
        6,
        2.0,
        5,
        3.0,
    );
    assert!(tails >= 4, "only {tails} draws in the tails");
}

#[test]
fn maf_gpu_inverse_gradient_matches_reference() {
    check_inverse_grad_gpu(
        &config(Maf, 2, 2, 5, 50, 2, Activation::Tanh),
        10,
        1.0,
        19,
        2,
        1.5,
        false,
    );
    check_inverse_grad_gpu(
        &config(Maf, 1, 1, 2, 41, 1, Activation::Relu),
        11,
        1.0,
        5,
        1,
        1.5,
        false,
    );
    // GELU keeps pre-activations on the tape; 3 hidden layers; accumulation.
    check_inverse_grad_gpu(
        &config(Maf, 3, 5, 3, 45, 3, Activation::Gelu),
        12,
        1.0,
        43,
        3,
        1.5,
        true,
    );
    // 520 rows: the weight gradients in two chunks, reduced onto the existing gradient.
    check_inverse_grad_gpu(
        &config(Maf, 5, 3, 2, 37, 2, Activation::Elu),
        13,
        1.0,
        260,
        2,
        1.5,
        true,
    );
}

#[test]
fn nsf_gpu_inverse_gradient_matches_reference() {
    check_inverse_grad_gpu(
        &nsf_config(2, 2, 5, 50, 2, Activation::Tanh, 10, 3.0),
        20,
        1.0,
        19,
        2,
        1.5,
        false,
    );
    check_inverse_grad_gpu(
        &nsf_config(1, 1, 2, 41, 1, Activation::Relu, 4, 2.0),
        21,
        1.0,
        5,
        1,
        1.5,
        false,
    );
    // Draws in the identity tails (|z| up to 5 against B = 2.5), K = 3, accumulation.
    check_inverse_grad_gpu(
        &nsf_config(3, 5, 3, 45, 2, Activation::Gelu, 7, 2.5),
        22,
        1.0,
        30,
        3,
        5.0,
        true,
    );
}

#[test]
fn inverse_gradient_plan_rejects_bad_layouts() {
    let ctx = ctx();
    let cfg = config(Maf, 2, 2, 2, 8, 1, Activation::Tanh);
    let s = setup(&cfg, 30, 1.0);
    let ct = ctx.tensor_zeros("ctx", 3 * 4).unwrap();
    let samples = ctx.tensor_zeros("samples", 6 * 4).unwrap();
    let small = ctx.tensor_zeros("dtheta", 6 * 4 - 3).unwrap();
    let dct = ctx.tensor_zeros("dcontext", 3 * 4).unwrap();
    let opts = |dc| FlowInverseGradOptions {
        ctx_div: 2,
        dcontext: dc,
        ..Default::default()
    };
    assert!(FlowInverseGradPlan::new(ctx, &s.flow, 6, &samples, &ct, &small, opts(None)).is_err());
    let ok = ctx.tensor_zeros("dtheta", 6 * 4).unwrap();
    assert!(
        FlowInverseGradPlan::new(ctx, &s.flow, 6, &samples, &ct, &ok, opts(Some(&dct))).is_ok()
    );
    // 7 rows do not split into context rows of 2.
    let ok7 = ctx.tensor_zeros("dtheta", 7 * 4).unwrap();
    let s7 = ctx.tensor_zeros("samples", 7 * 4).unwrap();
    let ct4 = ctx.tensor_zeros("ctx", 4 * 4).unwrap();
    assert!(FlowInverseGradPlan::new(ctx, &s.flow, 7, &s7, &ct4, &ok7, opts(Some(&dct))).is_err());
}

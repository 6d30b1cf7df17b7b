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
use gkl_gpu::kernels::layout::{pack, pad4, unpack};
use gkl_gpu::kernels::Activation;
use gkl_gpu::models::flow::cpu::{self, FlowWeights};
use gkl_gpu::models::flow::FlowKind::{Maf, Nsf};
use gkl_gpu::models::flow::{
    FlowConfig, FlowInverseGradOptions, FlowInverseGradPlan, FlowSampleOptions, FlowSamplePlan,
};
use gkl_gpu::runtime::Dispatch;

#[allow(clippy::too_many_arguments)]
fn nsf(d: usize, e: usize, t: usize, h: usize, l: usize, act: Activation, k: usize, b: f64) -> FlowConfig {
    let mut c = config(Nsf, d, e, t, h, l, act);
    c.bins = k;
    c.tail_bound = b;
    c
}

/// L = Σ u ⊙ θ(z; w, c) by the reference inverse.
fn objective(cfg: &FlowConfig, w: &FlowWeights, z: &[f64], c: &[f64], rows: usize, u: &[f64]) -> f64 {
    cpu::inverse(cfg, w, z, c, rows).0.iter().zip(u).map(|(a, b)| a * b).sum()
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
    assert!(an.iter().any(|v| v.abs() > 1e-3) && gc.iter().any(|v| v.abs() > 1e-3), "{what}");
    z.iter().filter(|v| v.abs() > cfg.tail_bound).count()
}

#[test]
fn maf_inverse_gradient_reference_matches_finite_differences() {
    check_fd(&config(Maf, 3, 2, 2, 5, 2, Activation::Tanh), 1, 1.0, 4, 1.5);
    check_fd(&config(Maf, 1, 2, 3, 4, 1, Activation::Silu), 2, 1.0, 3, 1.5);
    // Soft clamp active: large raw log-scales.
    check_fd(&config(Maf, 2, 1, 2, 4, 1, Activation::Tanh), 3, 6.0, 3, 1.0);
}

#[test]
fn nsf_inverse_gradient_reference_matches_finite_differences() {
    let inside = check_fd(&nsf(2, 2, 2, 5, 2, Activation::Tanh, 5, 2.0), 4, 2.0, 4, 1.5);
    assert_eq!(inside, 0, "draws meant to stay inside the bins");
    check_fd(&nsf(1, 1, 2, 4, 1, Activation::Tanh, 4, 2.0), 5, 2.0, 3, 1.5);
    // d = 3 with many draws in the identity tails (|z| > 1.5).
    let tails = check_fd(&nsf(3, 1, 2, 4, 1, Activation::Silu, 3, 1.5), 6, 2.0, 5, 3.0);
    assert!(tails >= 4, "only {tails} draws in the tails");
}

/// The GPU plan against the reference: `rows_ctx` context rows with `k` draws each, dL/dθ at
/// row offset 3 of a buffer with 5 extra floats per row, with and without accumulation.
fn check_gpu(cfg: &FlowConfig, seed: u64, spread: f64, rows_ctx: usize, k: usize, z_scale: f64, accumulate: bool) {
    let ctx = ctx();
    let s = setup(cfg, seed, spread);
    let (d, e) = (cfg.dim, cfg.context_dim);
    let (d4, e4) = (pad4(d), pad4(e));
    let rows = rows_ctx * k;
    let what = format!("{:?} d={d} e={e} rows={rows} K={k} accumulate={accumulate}", cfg.kind);
    let mut g = rng(seed + 500);
    let c = data(&mut g, rows_ctx * e, 1.0);
    let z = data(&mut g, rows * d, z_scale);
    let u = data(&mut g, rows * d, 1.0);
    let ct = ctx.tensor_from("ctx", &pack(&c, rows_ctx, e)).unwrap();
    let mut sp = FlowSamplePlan::with_options(ctx, &s.flow, rows, &ct, FlowSampleOptions { z_buf: true, ctx_div: k, ..Default::default() }).unwrap();
    ctx.write(sp.z.as_ref().unwrap(), 0, &pack(&z, rows, d)).unwrap();
    // dL/dθ of row r at floats (3 + r)·stride + i; garbage elsewhere.
    let (off, stride) = (3usize, d4 + 5);
    let mut ub = vec![123.0f32; (off + rows + 1) * stride];
    for r in 0..rows {
        for i in 0..d {
            ub[(off + r) * stride + i] = u[r * d + i] as f32;
        }
    }
    let ut = ctx.tensor_from("dtheta", &ub).unwrap();
    let dc0: Vec<f32> = (0..rows_ctx * e4).map(|i| if accumulate { 0.25 * (i % 7) as f32 } else { -3.0 }).collect();
    let dct = ctx.tensor_from("dcontext", &dc0).unwrap();
    let lay = cfg.layout();
    let g0: Vec<f32> = (0..lay.floats()).map(|i| 0.125 * ((i % 11) as f32 - 5.0)).collect();
    ctx.write(&s.flow.grads, 0, &g0).unwrap();
    let plan = FlowInverseGradPlan::new(
        ctx,
        &s.flow,
        rows,
        &sp.samples,
        &ct,
        &ut,
        FlowInverseGradOptions { ctx_div: k, grad_off: off, grad_stride: stride, dcontext: Some(&dct), accumulate },
    )
    .unwrap();
    let draw = sp.dispatches(ctx, 0, 0)[0].clone();
    let all: Vec<&Dispatch> = std::iter::once(&draw).chain(&plan.dispatches).collect();
    ctx.run(&all).unwrap();

    let cr: Vec<f64> = (0..rows).flat_map(|r| c[(r / k) * e..(r / k + 1) * e].to_vec()).collect();
    let (th_ref, lq_ref) = cpu::inverse(cfg, &s.w, &z, &cr, rows);
    let th = unpack(&ctx.read::<f32>(&sp.samples).unwrap(), rows, d);
    assert_close(&format!("samples {what}"), &th, &th_ref, 2e-4, 2e-4);
    let lq = to64(&ctx.read::<f32>(&plan.log_prob).unwrap());
    assert_close(&format!("log q of the samples {what}"), &lq, &lq_ref, 5e-4, 5e-4);

    let (gw, gc) = cpu::inverse_backward(cfg, &s.w, &z, &cr, rows, &u);
    let want = to64(&gw.to_arena(cfg, align(ctx))[..lay.floats()]);
    let got: Vec<f64> = to64(&ctx.read_range::<f32>(&s.flow.grads, 0, lay.floats()).unwrap())
        .iter()
        .zip(&g0)
        .map(|(a, b)| if accumulate { a - *b as f64 } else { *a })
        .collect();
    let gmax = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(gmax > 1e-3, "{what}: zero gradient");
    assert_close(&format!("parameter gradients {what}"), &got, &want, 3e-4 * gmax.max(1.0), 3e-3);
    if !accumulate {
        let raw = ctx.read_range::<f32>(&s.flow.grads, 0, lay.floats()).unwrap();
        for (i, (&a, &b)) in raw.iter().zip(&want).enumerate() {
            if b == 0.0 {
                assert_eq!(a, 0.0, "{what}: masked or padding entry {i} must be exactly zero");
            }
        }
    }
    // The context gradient: the sum over each context row's K draws.
    let mut gcs = vec![0.0; rows_ctx * e];
    for r in 0..rows {
        for j in 0..e {
            gcs[(r / k) * e + j] += gc[r * e + j];
        }
    }
    let dc = ctx.read::<f32>(&dct).unwrap();
    let got_c: Vec<f64> = (0..rows_ctx * e)
        .map(|i| {
            let at = (i / e) * e4 + i % e;
            dc[at] as f64 - if accumulate { dc0[at] as f64 } else { 0.0 }
        })
        .collect();
    let cmax = gcs.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert_close(&format!("context gradient {what}"), &got_c, &gcs, 3e-4 * cmax.max(1e-2), 3e-3);
    // Padding columns of dcontext: zero, or untouched when accumulating.
    for r in 0..rows_ctx {
        for j in e..e4 {
            let want = if accumulate { dc0[r * e4 + j] } else { 0.0 };
            assert_eq!(dc[r * e4 + j], want, "{what}: dcontext padding");
        }
    }
    // The arena around the flow is untouched.
    let before = ctx.read_range::<f32>(&s.arena_grads, 0, s.offset).unwrap();
    assert!(before.iter().all(|&v| v == -7.25), "{what}: grads written before the flow's block");
    let n = s.arena_grads.len;
    let tail = s.offset + lay.floats();
    let after = ctx.read_range::<f32>(&s.arena_grads, tail, n - tail).unwrap();
    assert!(after.iter().all(|&v| v == -7.25), "{what}: grads written after the flow's block");
}

#[test]
fn maf_gpu_inverse_gradient_matches_reference() {
    check_gpu(&config(Maf, 2, 2, 5, 50, 2, Activation::Tanh), 10, 1.0, 19, 2, 1.5, false);
    check_gpu(&config(Maf, 1, 1, 2, 41, 1, Activation::Relu), 11, 1.0, 5, 1, 1.5, false);
    // GELU keeps pre-activations on the tape; 3 hidden layers; accumulation.
    check_gpu(&config(Maf, 3, 5, 3, 45, 3, Activation::Gelu), 12, 1.0, 43, 3, 1.5, true);
    // 520 rows: the weight gradients in two chunks, reduced onto the existing gradient.
    check_gpu(&config(Maf, 5, 3, 2, 37, 2, Activation::Elu), 13, 1.0, 260, 2, 1.5, true);
}

#[test]
fn nsf_gpu_inverse_gradient_matches_reference() {
    check_gpu(&nsf(2, 2, 5, 50, 2, Activation::Tanh, 10, 3.0), 20, 1.0, 19, 2, 1.5, false);
    check_gpu(&nsf(1, 1, 2, 41, 1, Activation::Relu, 4, 2.0), 21, 1.0, 5, 1, 1.5, false);
    // Draws in the identity tails (|z| up to 5 against B = 2.5), K = 3, accumulation.
    check_gpu(&nsf(3, 5, 3, 45, 2, Activation::Gelu, 7, 2.5), 22, 1.0, 30, 3, 5.0, true);
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
    let opts = |dc| FlowInverseGradOptions { ctx_div: 2, dcontext: dc, ..Default::default() };
    assert!(FlowInverseGradPlan::new(ctx, &s.flow, 6, &samples, &ct, &small, opts(None)).is_err());
    let ok = ctx.tensor_zeros("dtheta", 6 * 4).unwrap();
    assert!(FlowInverseGradPlan::new(ctx, &s.flow, 6, &samples, &ct, &ok, opts(Some(&dct))).is_ok());
    // 7 rows do not split into context rows of 2.
    let ok7 = ctx.tensor_zeros("dtheta", 7 * 4).unwrap();
    let s7 = ctx.tensor_zeros("samples", 7 * 4).unwrap();
    let ct4 = ctx.tensor_zeros("ctx", 4 * 4).unwrap();
    assert!(FlowInverseGradPlan::new(ctx, &s.flow, 7, &s7, &ct4, &ok7, opts(Some(&dct))).is_err());
}

//! Helpers shared by the flow tests (tests/flow_*.rs): a flow placed at an aligned, nonzero
//! offset of a larger arena (as the trainer does), GPU passes read back in the reference's form.
#![allow(dead_code)]

use crate::common::*;
use gkl_gpu::kernels::layout::{pack, pad4, unpack};
use gkl_gpu::kernels::rng::RngStream;
use gkl_gpu::models::flow::cpu::{self, FlowWeights};
use gkl_gpu::models::flow::{
    Flow, FlowConfig, FlowInverseGradOptions, FlowInverseGradPlan, FlowLogProbPlan,
    FlowSampleOptions, FlowSamplePlan, FlowTrainOptions, FlowTrainPlan,
};
use gkl_gpu::runtime::{Dispatch, GpuContext, GpuTensor};
use rand::Rng;

pub fn align(ctx: &GpuContext) -> usize {
    (ctx.limits.min_storage_buffer_offset_alignment as usize / 4).max(64)
}

pub struct Setup {
    pub cfg: FlowConfig,
    pub flow: Flow,
    /// The weights as the GPU holds them (f32-rounded), in f64.
    pub w: FlowWeights,
    pub offset: usize,
    pub arena_params: GpuTensor,
    pub arena_grads: GpuTensor,
}

/// A flow with init weights whose biases and output layer are scaled by `spread` (so the maps
/// are far from the identity), placed one alignment block into an arena with garbage around it.
pub fn setup(cfg: &FlowConfig, seed: u64, spread: f64) -> Setup {
    let ctx = ctx();
    let a = align(ctx);
    let mut g = rng(seed);
    let mut w = FlowWeights::init(cfg, &mut g);
    let last = cfg.hidden_layers;
    for tl in w.layers.iter_mut() {
        for (l, lw) in tl.iter_mut().enumerate() {
            for b in lw.b.iter_mut() {
                *b *= spread;
            }
            if l == last {
                for v in lw.w.iter_mut() {
                    *v *= spread;
                }
            }
        }
    }
    let block = w.to_arena(cfg, a);
    assert_eq!(block.len(), cfg.arena_len(a));
    let w = FlowWeights::from_arena(cfg, &block);
    let offset = a;
    let total = offset + block.len() + a;
    let mut arena = vec![9.5f32; total];
    arena[offset..offset + block.len()].copy_from_slice(&block);
    let arena_params = ctx.tensor_from("test-arena", &arena).unwrap();
    let arena_grads = ctx
        .tensor_from("test-grads", &vec![-7.25f32; total])
        .unwrap();
    let flow = Flow::new(
        ctx,
        cfg.clone(),
        arena_params.view("flow-params", offset, block.len()),
        arena_grads.view("flow-grads", offset, block.len()),
    )
    .unwrap();
    Setup {
        cfg: cfg.clone(),
        flow,
        w,
        offset,
        arena_params,
        arena_grads,
    }
}

pub fn data(g: &mut impl Rng, n: usize, scale: f64) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let u: f64 = g.random::<f64>() * 2.0 - 1.0;
            u * scale
        })
        .collect()
}

pub fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

pub struct TrainOut {
    pub log_prob: Vec<f64>,
    /// The flow's gradient block as the GPU wrote it.
    pub grad_block: Vec<f32>,
    pub dcontext: Vec<f64>,
    /// x_T (the base draw z) from the tape.
    pub z: Vec<f64>,
}

/// One forward + backward on the GPU with L = scale · Σ_r w_r (−log q_r).
pub fn gpu_train(
    s: &Setup,
    theta: &[f64],
    context: &[f64],
    rows: usize,
    scale: f32,
    row_w: Option<&[f64]>,
    chunks: Option<usize>,
) -> TrainOut {
    let ctx = ctx();
    let cfg = &s.cfg;
    let e4 = pad4(cfg.context_dim);
    let ct = ctx
        .tensor_from("ctx", &pack(context, rows, cfg.context_dim))
        .unwrap();
    let dct = ctx.tensor_from("dctx", &vec![3.5f32; rows * e4]).unwrap();
    let mut plan = FlowTrainPlan::with_options(
        ctx,
        &s.flow,
        rows,
        &ct,
        &dct,
        FlowTrainOptions {
            row_weights: row_w.is_some(),
            chunks,
        },
    )
    .unwrap();
    plan.set_scale(ctx, scale);
    ctx.write(&plan.theta, 0, &pack(theta, rows, cfg.dim))
        .unwrap();
    if let (Some(w), Some(t)) = (row_w, &plan.row_weights) {
        let w32: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        ctx.write(t, 0, &w32).unwrap();
    }
    let all: Vec<&Dispatch> = plan.step_dispatches();
    ctx.run(&all).unwrap();
    let log_prob = to64(&ctx.read::<f32>(&plan.log_prob).unwrap());
    let grad_block = ctx
        .read_range::<f32>(&s.flow.grads, 0, cfg.layout().floats())
        .unwrap();
    let dcontext = unpack(&ctx.read::<f32>(&dct).unwrap(), rows, cfg.context_dim);
    let d4 = pad4(cfg.dim);
    let zoff = cfg.transforms * rows * d4;
    let z = unpack(
        &ctx.read_range::<f32>(&plan.tape, zoff, rows * d4).unwrap(),
        rows,
        cfg.dim,
    );
    TrainOut {
        log_prob,
        grad_block,
        dcontext,
        z,
    }
}

/// log q on the GPU without a tape; `context` of one row is shared by all rows.
pub fn gpu_log_prob(s: &Setup, theta: &[f64], context: &[f64], rows: usize) -> Vec<f64> {
    let ctx = ctx();
    let cfg = &s.cfg;
    let crow = context.len() / cfg.context_dim;
    let ct = ctx
        .tensor_from("ctx", &pack(context, crow, cfg.context_dim))
        .unwrap();
    let plan = FlowLogProbPlan::new(ctx, &s.flow, rows, &ct).unwrap();
    ctx.write(&plan.theta, 0, &pack(theta, rows, cfg.dim))
        .unwrap();
    ctx.run(&[&plan.dispatch]).unwrap();
    to64(&ctx.read::<f32>(&plan.log_prob).unwrap())
}

/// Samples from given z (`Some`) or the Philox stream (`None` → seed, offset).
pub fn gpu_sample(
    s: &Setup,
    z: Option<&[f64]>,
    stream: (u64, u64),
    context: &[f64],
    rows: usize,
) -> (Vec<f64>, Vec<f64>) {
    let ctx = ctx();
    let cfg = &s.cfg;
    let crow = context.len() / cfg.context_dim;
    let ct = ctx
        .tensor_from("ctx", &pack(context, crow, cfg.context_dim))
        .unwrap();
    let mut plan = match z {
        Some(z) => {
            let p = FlowSamplePlan::with_z(ctx, &s.flow, rows, &ct).unwrap();
            ctx.write(p.z.as_ref().unwrap(), 0, &pack(z, rows, cfg.dim))
                .unwrap();
            p
        }
        None => FlowSamplePlan::new(ctx, &s.flow, rows, &ct).unwrap(),
    };
    let d = plan.dispatches(ctx, stream.0, stream.1)[0].clone();
    ctx.run(&[&d]).unwrap();
    let th = unpack(&ctx.read::<f32>(&plan.samples).unwrap(), rows, cfg.dim);
    let lp = to64(&ctx.read::<f32>(&plan.log_prob).unwrap());
    (th, lp)
}

/// The base draws the GPU sampler uses for (seed, offset): z[r, i] = normal element r·dim + i.
pub fn philox_z(cfg: &FlowConfig, rows: usize, seed: u64, offset: u64) -> Vec<f64> {
    let s = RngStream {
        seed,
        offset,
        stream: gkl_gpu::models::flow::SAMPLE_STREAM,
    };
    to64(&s.normal(rows * cfg.dim))
}

/// Σ_r w_r log q_r via the reference (for finite differences).
pub fn cpu_objective(
    cfg: &FlowConfig,
    w: &FlowWeights,
    theta: &[f64],
    context: &[f64],
    rows: usize,
    row_w: &[f64],
) -> f64 {
    cpu::log_prob(cfg, w, theta, context, rows)
        .iter()
        .zip(row_w)
        .map(|(a, b)| a * b)
        .sum()
}

/// Central differences of the objective in every parameter (masked ones skipped) and context entry,
/// checked against the reference's backward.
pub fn check_fd(cfg: &FlowConfig, seed: u64, spread: f64, rows: usize, theta_scale: f64) {
    let mut g = rng(seed);
    let mut w = FlowWeights::init(cfg, &mut g);
    for tl in w.layers.iter_mut() {
        for lw in tl.iter_mut() {
            for b in lw.b.iter_mut() {
                *b *= spread;
            }
        }
    }
    let theta = data(&mut g, rows * cfg.dim, theta_scale);
    let context = data(&mut g, rows * cfg.context_dim, 1.0);
    let row_w = data(&mut g, rows, 1.0);
    let (gw, gc) = cpu::backward(cfg, &w, &theta, &context, rows, &row_w);
    let h = 1e-6;
    let f = |w: &FlowWeights, c: &[f64]| cpu_objective(cfg, w, &theta, c, rows, &row_w);
    let free = free_mask(cfg);
    let an = gw.flat();
    let mut checked = 0;
    for (i, &is_free) in free.iter().enumerate() {
        if !is_free {
            assert_eq!(an[i], 0.0, "masked gradient {i} must be zero");
            continue;
        }
        let (mut a, mut b) = (w.clone(), w.clone());
        *a.flat_mut()[i] += h;
        *b.flat_mut()[i] -= h;
        let fd = (f(&a, &context) - f(&b, &context)) / (2.0 * h);
        assert!(
            (fd - an[i]).abs() < 2e-6 + 2e-5 * fd.abs(),
            "{:?} parameter {i}: backward {} vs fd {fd}",
            cfg.kind,
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
            (fd - gc[i]).abs() < 2e-6 + 2e-5 * fd.abs(),
            "{:?} context {i}: backward {} vs fd {fd}",
            cfg.kind,
            gc[i]
        );
    }
    assert!(checked > 10);
}

/// Free (unmasked) entries in `FlowWeights::flat` order.
pub fn free_mask(cfg: &FlowConfig) -> Vec<bool> {
    let w = FlowWeights::zeros(cfg);
    let mut m = vec![];
    for (t, tl) in w.layers.iter().enumerate() {
        for (l, lw) in tl.iter().enumerate() {
            for idx in 0..lw.k * lw.n {
                m.push(cpu::mask(cfg, t, l, idx / lw.n, idx % lw.n));
            }
            m.extend(std::iter::repeat_n(true, lw.n));
        }
    }
    m
}

pub fn config(
    kind: gkl_gpu::models::flow::FlowKind,
    dim: usize,
    context_dim: usize,
    transforms: usize,
    hidden: usize,
    hidden_layers: usize,
    act: gkl_gpu::kernels::Activation,
) -> FlowConfig {
    let mut c = FlowConfig::new(kind, dim, context_dim);
    c.transforms = transforms;
    c.hidden = hidden;
    c.hidden_layers = hidden_layers;
    c.act = act;
    c
}

/// An NSF configuration: `config` plus the spline's bins `k` and tail bound `b`.
#[allow(clippy::too_many_arguments)]
pub fn nsf_config(
    d: usize,
    e: usize,
    t: usize,
    h: usize,
    l: usize,
    act: gkl_gpu::kernels::Activation,
    k: usize,
    b: f64,
) -> FlowConfig {
    let mut c = config(gkl_gpu::models::flow::FlowKind::Nsf, d, e, t, h, l, act);
    c.bins = k;
    c.tail_bound = b;
    c
}

/// GPU log q, parameter gradients (every arena entry, padding and masked ones exactly zero) and
/// context gradients against the reference, for L = scale · Σ w_r (−log q_r).
pub fn check_gpu_against_cpu(
    cfg: &FlowConfig,
    seed: u64,
    rows: usize,
    spread: f64,
    theta_scale: f64,
    weighted: bool,
    chunks: Option<usize>,
) {
    let s = setup(cfg, seed, spread);
    let mut g = rng(seed + 1000);
    let theta = data(&mut g, rows * cfg.dim, theta_scale);
    let context = data(&mut g, rows * cfg.context_dim, 1.0);
    let scale = 1.0 / rows as f32;
    let rw: Option<Vec<f64>> = if weighted {
        Some(data(&mut g, rows, 2.0))
    } else {
        None
    };
    let out = gpu_train(&s, &theta, &context, rows, scale, rw.as_deref(), chunks);
    let what = format!("{cfg:?} rows={rows} weighted={weighted} chunks={chunks:?}");
    let (z_ref, lp_ref) = cpu::forward_z(cfg, &s.w, &theta, &context, rows);
    assert_close(&format!("log q {what}"), &out.log_prob, &lp_ref, 2e-4, 2e-4);
    assert_close(&format!("z {what}"), &out.z, &z_ref, 2e-4, 2e-4);
    // GPU: gradient of scale·Σ w_r(−log q_r) → reference weights −scale·w_r.
    let row_w: Vec<f64> = (0..rows)
        .map(|r| -(scale as f64) * rw.as_ref().map_or(1.0, |w| w[r]))
        .collect();
    let (gw, gc) = cpu::backward(cfg, &s.w, &theta, &context, rows, &row_w);
    let want = gw.to_arena(cfg, align(ctx()));
    let got = to64(&out.grad_block);
    let want = to64(&want[..got.len()]);
    let gmax = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert_close(
        &format!("grads {what}"),
        &got,
        &want,
        2e-4 * gmax.max(1.0),
        2e-3,
    );
    // Entries the reference leaves at zero (masked, padding) must be exactly zero.
    for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
        if b == 0.0 {
            assert_eq!(a, 0.0, "grads {what}: arena entry {i} must be exactly zero");
        }
    }
    let cmax = gc.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert_close(
        &format!("dcontext {what}"),
        &out.dcontext,
        &gc,
        2e-4 * cmax.max(1e-3),
        2e-3,
    );
    // The arena around the flow is untouched.
    let ctx = ctx();
    let before = ctx.read_range::<f32>(&s.arena_grads, 0, s.offset).unwrap();
    assert!(
        before.iter().all(|&v| v == -7.25),
        "grads written before the flow's block"
    );
    let n = s.arena_grads.len;
    let tail_from = s.offset + cfg.layout().floats();
    let after = ctx
        .read_range::<f32>(&s.arena_grads, tail_from, n - tail_from)
        .unwrap();
    assert!(
        after.iter().all(|&v| v == -7.25),
        "grads written after the flow's block"
    );
}

/// inverse(forward(θ)) = θ on the CPU; on the GPU, sampling from given z then evaluating the
/// samples gives back z and the same log q.
pub fn check_roundtrip(cfg: &FlowConfig, seed: u64, rows: usize, spread: f64, z_scale: f64) {
    let s = setup(cfg, seed, spread);
    let mut g = rng(seed + 7);
    let theta = data(&mut g, rows * cfg.dim, 2.0);
    let context = data(&mut g, rows * cfg.context_dim, 1.0);
    let (z, lp) = cpu::forward_z(cfg, &s.w, &theta, &context, rows);
    let (th2, lp2) = cpu::inverse(cfg, &s.w, &z, &context, rows);
    assert_close("cpu inverse(forward(θ))", &th2, &theta, 1e-9, 1e-8);
    assert_close("cpu log q of inverse", &lp2, &lp, 1e-9, 1e-8);
    // GPU: z → θ → z.
    let z = data(&mut g, rows * cfg.dim, z_scale);
    let (th, lq) = gpu_sample(&s, Some(&z), (0, 0), &context, rows);
    let (th_ref, lq_ref) = cpu::inverse(cfg, &s.w, &z, &context, rows);
    assert_close("gpu sample from z vs cpu inverse", &th, &th_ref, 2e-4, 2e-4);
    assert_close("gpu sample log q vs cpu", &lq, &lq_ref, 2e-4, 2e-4);
    let out = gpu_train(&s, &th, &context, rows, 1.0, None, None);
    assert_close("gpu forward(inverse(z))", &out.z, &z, 5e-4, 5e-4);
    assert_close(
        "gpu log q forward vs sample",
        &out.log_prob,
        &lq,
        5e-4,
        5e-4,
    );
}

/// GPU sampling from the Philox stream equals the reference's inverse of the same draws; a
/// single shared context row equals the broadcast per-row context.
pub fn check_philox_sampling(cfg: &FlowConfig, seed: u64, rows: usize) {
    let s = setup(cfg, seed, 1.0);
    let mut g = rng(seed + 3);
    let c1 = data(&mut g, cfg.context_dim, 1.0);
    let (th, lq) = gpu_sample(&s, None, (1234, 77), &c1, rows);
    let z = philox_z(cfg, rows, 1234, 77);
    let cr: Vec<f64> = (0..rows).flat_map(|_| c1.iter().copied()).collect();
    let (th_ref, lq_ref) = cpu::inverse(cfg, &s.w, &z, &cr, rows);
    assert_close("gpu philox sample vs cpu inverse", &th, &th_ref, 3e-4, 3e-4);
    assert_close("gpu philox sample log q", &lq, &lq_ref, 3e-4, 3e-4);
    // Another offset gives other draws.
    let (th2, _) = gpu_sample(&s, None, (1234, 78), &c1, rows);
    assert!(th2.iter().zip(&th).any(|(a, b)| (a - b).abs() > 1e-3));
    // The log-prob plan agrees on these samples with the shared context.
    let lp = gpu_log_prob(&s, &th, &c1, rows);
    assert_close("gpu log q of samples", &lp, &lq, 5e-4, 5e-4);
}

/// ∫ q(θ|c) dθ over a grid: 1-D by the trapezoid rule, 2-D on a square grid.
pub fn check_normalised(cfg: &FlowConfig, seed: u64, half_width: f64, n: usize, tol: f64) {
    let s = setup(cfg, seed, 1.0);
    let mut g = rng(seed + 11);
    let c1 = data(&mut g, cfg.context_dim, 1.0);
    let h = 2.0 * half_width / n as f64;
    let axis: Vec<f64> = (0..n).map(|i| -half_width + (i as f64 + 0.5) * h).collect();
    let pts: Vec<f64> = match cfg.dim {
        1 => axis.clone(),
        2 => axis
            .iter()
            .flat_map(|&a| axis.iter().flat_map(move |&b| [a, b]))
            .collect(),
        _ => panic!("grid integration for dim 1 or 2"),
    };
    let rows = pts.len() / cfg.dim;
    let lp = gpu_log_prob(&s, &pts, &c1, rows);
    let mass: f64 = lp.iter().map(|l| l.exp()).sum::<f64>() * h.powi(cfg.dim as i32);
    eprintln!("{:?} dim {}: mass {mass}", cfg.kind, cfg.dim);
    assert!(
        (mass - 1.0).abs() < tol,
        "{:?} dim {}: ∫q = {mass} on [±{half_width}]^{} with {n} points per axis",
        cfg.kind,
        cfg.dim,
        cfg.dim
    );
    // Spot-check the GPU grid against the reference.
    let sub: Vec<usize> = (0..rows).step_by(rows / 50 + 1).collect();
    let th: Vec<f64> = sub
        .iter()
        .flat_map(|&r| pts[r * cfg.dim..(r + 1) * cfg.dim].iter().copied())
        .collect();
    let cr: Vec<f64> = sub.iter().flat_map(|_| c1.iter().copied()).collect();
    let want = cpu::log_prob(cfg, &s.w, &th, &cr, sub.len());
    let got: Vec<f64> = sub.iter().map(|&r| lp[r]).collect();
    assert_close("grid log q vs cpu", &got, &want, 5e-4, 5e-4);
}

/// Trains a flow on a conditional 2-D density with plain Adam on the flow's own arena:
/// c ~ U[−1, 1]², θ₁ = c₁ + 0.3 ε₁, θ₂ = θ₁² − c₂ + 0.2 ε₂ (curved, context-dependent).
/// Asserts that the held-out loss falls below `start − margin` and close to the true conditional
/// entropy E[−log p(θ|c)] = log(2π·0.3·0.2) + 1.
pub fn train_two_d(cfg: &FlowConfig, steps: usize, slack: f64) {
    use gkl_gpu::kernels::adam::{Adam, AdamConfig};
    let ctx = ctx();
    let kind = cfg.kind;
    assert_eq!((cfg.dim, cfg.context_dim), (2, 2));
    let s = setup(cfg, 90, 1.0);
    let rows = 256;
    let mut g = rng(91);
    let batch = |g: &mut rand::rngs::StdRng| {
        let c = data(g, rows * 2, 1.0);
        let mut th = vec![0.0; rows * 2];
        for r in 0..rows {
            let n1: f64 = rand_distr::Distribution::sample(&rand_distr::StandardNormal, g);
            let n2: f64 = rand_distr::Distribution::sample(&rand_distr::StandardNormal, g);
            th[2 * r] = c[2 * r] + 0.3 * n1;
            th[2 * r + 1] = th[2 * r] * th[2 * r] - c[2 * r + 1] + 0.2 * n2;
        }
        (th, c)
    };
    let (th_val, c_val) = batch(&mut g);
    let ct = ctx.tensor_zeros("ctx", rows * 4).unwrap();
    let dct = ctx.tensor_zeros("dctx", rows * 4).unwrap();
    let plan = FlowTrainPlan::new(ctx, &s.flow, rows, &ct, &dct).unwrap();
    let adam = Adam::new(
        ctx,
        AdamConfig {
            lr: 3e-3,
            ..Default::default()
        },
        &s.flow.params,
        &s.flow.grads,
    )
    .unwrap();
    let eval = |th: &[f64], c: &[f64]| -> f64 {
        ctx.write(&plan.theta, 0, &pack(th, rows, 2)).unwrap();
        ctx.write(&ct, 0, &pack(c, rows, 2)).unwrap();
        ctx.run(&[&plan.forward[0]]).unwrap();
        let lp = ctx.read::<f32>(&plan.log_prob).unwrap();
        -lp.iter().map(|&v| v as f64).sum::<f64>() / rows as f64
    };
    let start = eval(&th_val, &c_val);
    let mut step: Vec<&Dispatch> = plan.step_dispatches();
    step.extend(adam.dispatches());
    for _ in 0..steps {
        let (th, c) = batch(&mut g);
        ctx.write(&plan.theta, 0, &pack(&th, rows, 2)).unwrap();
        ctx.write(&ct, 0, &pack(&c, rows, 2)).unwrap();
        ctx.run(&step).unwrap();
    }
    let end = eval(&th_val, &c_val);
    let entropy = (2.0 * std::f64::consts::PI * 0.3 * 0.2).ln() + 1.0;
    eprintln!("{kind:?}: held-out loss {start:.3} → {end:.3} after {steps} steps (true entropy {entropy:.3})");
    assert!(
        end.is_finite() && end < start - 0.5,
        "{kind:?}: loss {start} → {end}"
    );
    assert!(
        end < entropy + slack,
        "{kind:?}: loss {end} far above the entropy {entropy}"
    );
    // The masked entries are still exactly zero after training.
    let w = ctx
        .read_range::<f32>(&s.flow.params, 0, cfg.layout().floats())
        .unwrap();
    let re = FlowWeights::from_arena(cfg, &w).to_arena(cfg, align(ctx));
    assert_eq!(&w[..], &re[..w.len()], "masked or padding parameters moved");
}

#[allow(clippy::too_many_arguments)]
/// The GPU plan against the reference: `rows_ctx` context rows with `k` draws each, dL/dθ at
/// row offset 3 of a buffer with 5 extra floats per row, with and without accumulation.
pub fn check_inverse_grad_gpu(
    cfg: &FlowConfig,
    seed: u64,
    spread: f64,
    rows_ctx: usize,
    k: usize,
    z_scale: f64,
    accumulate: bool,
) {
    let ctx = ctx();
    let s = setup(cfg, seed, spread);
    let (d, e) = (cfg.dim, cfg.context_dim);
    let (d4, e4) = (pad4(d), pad4(e));
    let rows = rows_ctx * k;
    let what = format!(
        "{:?} d={d} e={e} rows={rows} K={k} accumulate={accumulate}",
        cfg.kind
    );
    let mut g = rng(seed + 500);
    let c = data(&mut g, rows_ctx * e, 1.0);
    let z = data(&mut g, rows * d, z_scale);
    let u = data(&mut g, rows * d, 1.0);
    let ct = ctx.tensor_from("ctx", &pack(&c, rows_ctx, e)).unwrap();
    let mut sp = FlowSamplePlan::with_options(
        ctx,
        &s.flow,
        rows,
        &ct,
        FlowSampleOptions {
            z_buf: true,
            ctx_div: k,
            ..Default::default()
        },
    )
    .unwrap();
    ctx.write(sp.z.as_ref().unwrap(), 0, &pack(&z, rows, d))
        .unwrap();
    // dL/dθ of row r at floats (3 + r)·stride + i; garbage elsewhere.
    let (off, stride) = (3usize, d4 + 5);
    let mut ub = vec![123.0f32; (off + rows + 1) * stride];
    for r in 0..rows {
        for i in 0..d {
            ub[(off + r) * stride + i] = u[r * d + i] as f32;
        }
    }
    let ut = ctx.tensor_from("dtheta", &ub).unwrap();
    let dc0: Vec<f32> = (0..rows_ctx * e4)
        .map(|i| {
            if accumulate {
                0.25 * (i % 7) as f32
            } else {
                -3.0
            }
        })
        .collect();
    let dct = ctx.tensor_from("dcontext", &dc0).unwrap();
    let lay = cfg.layout();
    let g0: Vec<f32> = (0..lay.floats())
        .map(|i| 0.125 * ((i % 11) as f32 - 5.0))
        .collect();
    ctx.write(&s.flow.grads, 0, &g0).unwrap();
    let plan = FlowInverseGradPlan::new(
        ctx,
        &s.flow,
        rows,
        &sp.samples,
        &ct,
        &ut,
        FlowInverseGradOptions {
            ctx_div: k,
            grad_off: off,
            grad_stride: stride,
            dcontext: Some(&dct),
            accumulate,
        },
    )
    .unwrap();
    let draw = sp.dispatches(ctx, 0, 0)[0].clone();
    let all: Vec<&Dispatch> = std::iter::once(&draw).chain(&plan.dispatches).collect();
    ctx.run(&all).unwrap();

    let cr: Vec<f64> = (0..rows)
        .flat_map(|r| c[(r / k) * e..(r / k + 1) * e].to_vec())
        .collect();
    let (th_ref, lq_ref) = cpu::inverse(cfg, &s.w, &z, &cr, rows);
    let th = unpack(&ctx.read::<f32>(&sp.samples).unwrap(), rows, d);
    assert_close(&format!("samples {what}"), &th, &th_ref, 2e-4, 2e-4);
    let lq = to64(&ctx.read::<f32>(&plan.log_prob).unwrap());
    assert_close(
        &format!("log q of the samples {what}"),
        &lq,
        &lq_ref,
        5e-4,
        5e-4,
    );

    let (gw, gc) = cpu::inverse_backward(cfg, &s.w, &z, &cr, rows, &u);
    let want = to64(&gw.to_arena(cfg, align(ctx))[..lay.floats()]);
    let got: Vec<f64> = to64(
        &ctx.read_range::<f32>(&s.flow.grads, 0, lay.floats())
            .unwrap(),
    )
    .iter()
    .zip(&g0)
    .map(|(a, b)| if accumulate { a - *b as f64 } else { *a })
    .collect();
    let gmax = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(gmax > 1e-3, "{what}: zero gradient");
    assert_close(
        &format!("parameter gradients {what}"),
        &got,
        &want,
        3e-4 * gmax.max(1.0),
        3e-3,
    );
    if !accumulate {
        let raw = ctx
            .read_range::<f32>(&s.flow.grads, 0, lay.floats())
            .unwrap();
        for (i, (&a, &b)) in raw.iter().zip(&want).enumerate() {
            if b == 0.0 {
                assert_eq!(
                    a, 0.0,
                    "{what}: masked or padding entry {i} must be exactly zero"
                );
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
    assert_close(
        &format!("context gradient {what}"),
        &got_c,
        &gcs,
        3e-4 * cmax.max(1e-2),
        3e-3,
    );
    // Padding columns of dcontext: zero, or untouched when accumulating.
    for r in 0..rows_ctx {
        for j in e..e4 {
            let want = if accumulate { dc0[r * e4 + j] } else { 0.0 };
            assert_eq!(dc[r * e4 + j], want, "{what}: dcontext padding");
        }
    }
    // The arena around the flow is untouched.
    let before = ctx.read_range::<f32>(&s.arena_grads, 0, s.offset).unwrap();
    assert!(
        before.iter().all(|&v| v == -7.25),
        "{what}: grads written before the flow's block"
    );
    let n = s.arena_grads.len;
    let tail = s.offset + lay.floats();
    let after = ctx
        .read_range::<f32>(&s.arena_grads, tail, n - tail)
        .unwrap();
    assert!(
        after.iter().all(|&v| v == -7.25),
        "{what}: grads written after the flow's block"
    );
}

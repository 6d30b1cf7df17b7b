//! The generalized-KL surrogates: loss gradients against finite differences of the f64 reference
//! (same contrastive draws), the hybrid's whole training gradient (training graph, base gradient
//! detached or reparameterized) against finite differences of the f64 hybrid loss, the hybrid's
//! base draws against the flow's own inverse, the batched
//! rejection sampler against its CPU reference (same Philox stream), budgets that stop a hopeless
//! observation without stalling the others, and ratio/hybrid posteriors against an exact one.

mod common;
use common::*;
use gkl_gpu::kernels::gkl::{self, cpu as gcpu, Contrast, GklParams, SupportMask};
use gkl_gpu::kernels::layout::{pack, pad4, unpack};
use gkl_gpu::kernels::rng::RngStream;
use gkl_gpu::kernels::Activation;
use gkl_gpu::models::arena::ParamArena;
use gkl_gpu::models::flow::cpu::FlowWeights;
use gkl_gpu::models::flow::{
    cpu as fcpu, Flow, FlowConfig, FlowKind, FlowSampleOptions, FlowSamplePlan, SAMPLE_STREAM,
};
use gkl_gpu::models::mlp::{cpu as mcpu, Mlp, MlpConfig, MlpPlan, MlpWeights};
use gkl_gpu::runtime::Dispatch;
use gkl_gpu::sampling::npe::NpePosterior;
use gkl_gpu::sampling::rejection::{
    cpu as rcpu, PriorPack, Proposal, RejectionConfig, RejectionSampler,
};
use gkl_gpu::training::npe::{probe_step_gradient, train_npe, NpeSettings, StepProbe};
use gkl_gpu::training::preprocess::{Preprocess, Standardize};
use gkl_gpu::training::BaseGradient;
use gkl_gpu::training::Method;
use gkl_tasks::Prior;
use rand::Rng;
use rand_distr::StandardNormal;

fn ratio_cfg(d: usize, dx: usize) -> MlpConfig {
    MlpConfig {
        in_dim: d + dx,
        out_dim: 1,
        hidden: 8,
        blocks: 1,
        act: Activation::Tanh,
        residual: true,
    }
}

/// One ratio-loss case: `b` joint rows (θ of width `d`, x of width `dx`), `k` contrastive θ' per
/// x, either `neg` [b·k, d] (the hybrid's draws) or, with `None`, other rows of the batch; with
/// `bounds` ([lo…, hi…]) draws outside that box count as exp f = 0 (the masked hybrid).
#[derive(Clone, Copy)]
struct RatioCase<'a> {
    theta: &'a [f64],
    x: &'a [f64],
    neg: Option<&'a [f64]>,
    bounds: Option<&'a [f64]>,
    b: usize,
    k: usize,
    d: usize,
    dx: usize,
}

/// The f64 loss of a ratio net on `case`.
fn cpu_loss(cfg: &MlpConfig, w: &MlpWeights, c: &RatioCase) -> f64 {
    let inp = gcpu::pairs(c.theta, c.x, c.neg, c.b, c.k, c.d, c.dx);
    let f = mcpu::forward(cfg, w, &inp, c.b * (1 + c.k)).y;
    let inside = c.bounds.zip(c.neg).map(|(bd, n)| gcpu::inside(n, c.d, bd));
    gcpu::loss_masked(&f, c.b, c.k, inside.as_deref())
}

/// Gradient of the loss w.r.t. every weight by central differences.
fn fd_grad(cfg: &MlpConfig, w: &MlpWeights, loss: &dyn Fn(&MlpWeights) -> f64) -> MlpWeights {
    let h = 1e-5;
    let mut g = w.clone();
    for l in 0..w.w.len() {
        for i in 0..w.w[l].len() {
            let (mut a, mut b) = (w.clone(), w.clone());
            a.w[l][i] += h;
            b.w[l][i] -= h;
            g.w[l][i] = (loss(&a) - loss(&b)) / (2.0 * h);
        }
        for i in 0..w.b[l].len() {
            let (mut a, mut b) = (w.clone(), w.clone());
            a.b[l][i] += h;
            b.b[l][i] -= h;
            g.b[l][i] = (loss(&a) - loss(&b)) / (2.0 * h);
        }
    }
    let _ = cfg;
    g
}

fn flat(w: &MlpWeights) -> Vec<f64> {
    w.w.iter()
        .zip(&w.b)
        .flat_map(|(a, b)| a.iter().chain(b).copied().collect::<Vec<f64>>())
        .collect()
}

/// One GPU step of the ratio term on `case`: pairs → net → loss → backward; returns the
/// gradients and the loss kernel's sums.
fn gpu_ratio_step(cfg: &MlpConfig, w: &MlpWeights, case: &RatioCase) -> (MlpWeights, Vec<f32>) {
    let (b, k, d, dx) = (case.b, case.k, case.d, case.dx);
    let ctx = ctx();
    let net = Mlp::new(ctx, cfg.clone(), w).unwrap();
    let p = GklParams::new(b, k, d, dx);
    let uni = ctx.uniform("gkl", &p);
    let plan = MlpPlan::new(ctx, &net, p.rows()).unwrap();
    let th = ctx.tensor_from("theta", &pack(case.theta, b, d)).unwrap();
    let xt = ctx.tensor_from("x", &pack(case.x, b, dx)).unwrap();
    let negt = case
        .neg
        .map(|n| ctx.tensor_from("neg", &pack(n, b * k, d)).unwrap());
    let acc = ctx.tensor_zeros("acc", 4).unwrap();
    let contrast = negt.as_ref().map_or(Contrast::Batch, Contrast::Draws);
    let bt = case.bounds.map(|bd| {
        let v: Vec<f32> = bd.iter().map(|&a| a as f32).collect();
        ctx.tensor_from("bounds", &v).unwrap()
    });
    let mask = bt
        .as_ref()
        .zip(negt.as_ref())
        .map(|(bounds, draws)| SupportMask { bounds, draws });
    let mut ds: Vec<Dispatch> =
        vec![gkl::pairs(ctx, &uni, &p, &th, &xt, contrast, &plan.x).unwrap()];
    ds.extend(plan.forward.iter().cloned());
    ds.push(gkl::loss(ctx, &uni, &plan.y, &plan.dy, &acc, true, mask).unwrap());
    ds.extend(plan.backward.iter().cloned());
    let refs: Vec<&Dispatch> = ds.iter().collect();
    ctx.run(&refs).unwrap();
    (net.gradients(ctx).unwrap(), ctx.read(&acc).unwrap())
}

fn check_ratio_gradient(bias_shift: f64) {
    let (b, k, d, dx) = (7, 3, 2, 3);
    let cfg = ratio_cfg(d, dx);
    let mut g = rng(11);
    let mut w = MlpWeights::init(&cfg, &mut g);
    // A shifted output puts every exp f past the cap, where sexp is linear.
    w.b[cfg.blocks + 1][0] += bias_shift;
    let theta = randn(&mut g, b * d, 1.5);
    let x = randn(&mut g, b * dx, 1.5);
    let draws = randn(&mut g, b * k * d, 1.5);
    // The masked hybrid: a box that the 21 draws straddle (θ'_0 ≥ −0.5, θ'_1 ≤ 1).
    let bounds = [-0.5, -f32::MAX as f64, f32::MAX as f64, 1.0];
    let inside = gcpu::inside(&draws, d, &bounds);
    assert!(inside.iter().any(|&i| i) && inside.iter().any(|&i| !i));
    for (neg, bd) in [
        (None, None),
        (Some(draws.clone()), None),
        (Some(draws.clone()), Some(&bounds[..])),
    ] {
        let case = RatioCase {
            theta: &theta,
            x: &x,
            neg: neg.as_deref(),
            bounds: bd,
            b,
            k,
            d,
            dx,
        };
        let loss = |w: &MlpWeights| cpu_loss(&cfg, w, &case);
        let fd = fd_grad(&cfg, &w, &loss);
        let (gpu, acc) = gpu_ratio_step(&cfg, &w, &case);
        let scale = flat(&fd).iter().fold(0f64, |m, v| m.max(v.abs()));
        let err = max_rel_err(&flat(&gpu), &flat(&fd), 1e-3 * scale.max(1.0), 2e-3);
        assert!(
            err <= 1.0,
            "ratio-loss gradient (shift {bias_shift}, draws {}, masked {}) off by {err}× tolerance",
            neg.is_some(),
            bd.is_some()
        );
        // The accumulated sums are the loss: (Σ −f + Σ Ẑ) / B.
        let l = (acc[0] as f64 + acc[1] as f64) / b as f64;
        let exact = loss(&w);
        assert!(
            (l - exact).abs() <= 1e-4 * exact.abs().max(1.0),
            "loss {l} vs reference {exact}"
        );
    }
}

#[test]
fn ratio_loss_gradient_matches_finite_differences() {
    check_ratio_gradient(0.0);
}

#[test]
fn ratio_loss_gradient_stays_finite_past_the_exp_cap() {
    check_ratio_gradient(23.0);
}

#[test]
fn gkl_loss_reference_gradient_matches_its_own_finite_differences() {
    let (b, k) = (5, 2);
    let mut g = rng(3);
    let f: Vec<f64> = (0..b * (1 + k))
        .map(|i| g.random::<f64>() * 4.0 - 2.0 + if i == 9 { 21.0 } else { 0.0 })
        .collect();
    let (grad, _) = gcpu::loss_grad(&f, b, k);
    for i in 0..f.len() {
        let (mut a, mut c) = (f.clone(), f.clone());
        // The loss is ~1e8 (one f sits past the cap): a step large enough for f64 round-off.
        a[i] += 1e-4;
        c[i] -= 1e-4;
        let fd = (gcpu::loss(&a, b, k) - gcpu::loss(&c, b, k)) / 2e-4;
        assert!(
            (fd - grad[i]).abs() <= 2e-3 * fd.abs().max(1.0),
            "dL/df[{i}] {} vs {fd}",
            grad[i]
        );
    }
}

/// A micro-batch of a split batch: the loss kernel scales by 1/(whole batch), counts only the
/// valid rows of a short last micro-batch and writes exact zeros for the padding rows (stale
/// values in dL/df must not survive), and its gradients are the whole batch's for the same rows.
#[test]
fn gkl_loss_of_a_padded_micro_batch_counts_only_its_valid_rows() {
    let ctx = ctx();
    let (batch, m, k) = (7usize, 4usize, 2usize);
    let mut g = rng(12);
    let whole: Vec<f64> = (0..batch * (1 + k))
        .map(|_| g.random::<f64>() * 3.0 - 1.5)
        .collect();
    let (gw, sw) = gcpu::loss_grad(&whole, batch, k);
    // Micro-batch i holds batch rows i·m .. i·m + valid in the [joint m | contrastive m·K] layout.
    let mut sums = [0.0; 3];
    for (off, valid) in [(0usize, 4usize), (4, 3)] {
        let mut f = vec![0.0; m * (1 + k)];
        for r in 0..m {
            let src = (off + r).min(batch - 1); // padding rows: any finite values
            f[r] = whole[src] + if r >= valid { 5.0 } else { 0.0 };
            for kk in 0..k {
                f[m + r * k + kk] = whole[batch + src * k + kk];
            }
        }
        let p = GklParams::new(m, k, 2, 3).micro(batch, valid);
        let uni = ctx.uniform("gkl", &p);
        let ft = ctx
            .tensor_from(
                "f",
                &f.iter()
                    .flat_map(|&v| [v as f32, 0.0, 0.0, 0.0])
                    .collect::<Vec<f32>>(),
            )
            .unwrap();
        let df = ctx.tensor_from("df", &vec![9.0f32; f.len() * 4]).unwrap();
        let acc = ctx.tensor_zeros("acc", 4).unwrap();
        let d = gkl::loss(ctx, &uni, &ft, &df, &acc, true, None).unwrap();
        ctx.run(&[&d]).unwrap();
        let got: Vec<f64> = ctx
            .read::<f32>(&df)
            .unwrap()
            .iter()
            .step_by(4)
            .map(|&v| v as f64)
            .collect();
        let f32s: Vec<f64> = f.iter().map(|&v| v as f32 as f64).collect();
        let (want, s) = gcpu::loss_grad_micro(&f32s, m, k, valid, batch);
        assert_close(
            &format!("dL/df of micro-batch at {off}"),
            &got,
            &want,
            1e-6,
            1e-5,
        );
        for r in valid..m {
            assert_eq!(got[r], 0.0);
            assert!((0..k).all(|kk| got[m + r * k + kk] == 0.0));
        }
        for r in 0..valid {
            assert!((want[r] - gw[off + r]).abs() < 1e-12);
            for kk in 0..k {
                assert!((want[m + r * k + kk] - gw[batch + (off + r) * k + kk]).abs() < 1e-6);
            }
        }
        let a = ctx.read::<f32>(&acc).unwrap();
        for j in 0..3 {
            assert!(
                (a[j] as f64 - s[j]).abs() <= 1e-4 * s[j].abs().max(1.0),
                "sum {j}: {} vs {}",
                a[j],
                s[j]
            );
            sums[j] += s[j];
        }
    }
    for j in 0..3 {
        assert!(
            (sums[j] - sw[j]).abs() <= 1e-4 * sw[j].abs().max(1.0),
            "micro-batch sums {sums:?} vs the whole batch's {sw:?}"
        );
    }
}

/// The hybrid's networks read from an arena (the probe's parameters or gradients) in f64.
struct HybridNets {
    emb: MlpWeights,
    flow: FlowWeights,
    ratio: MlpWeights,
}

impl HybridNets {
    fn from_arena(p: &StepProbe, a: &[f32]) -> Self {
        let mlp = |(c, off): &(MlpConfig, usize)| {
            let (slots, len) = c.arena_layout(p.arena_align);
            MlpWeights::from_arena(&a[*off..*off + len], &slots)
        };
        let (fc, foff) = p.flow.as_ref().unwrap();
        HybridNets {
            emb: mlp(p.embedding.as_ref().unwrap()),
            flow: FlowWeights::from_arena(fc, &a[*foff..]),
            ratio: mlp(p.ratio.as_ref().unwrap()),
        }
    }

    fn flat(&self) -> [Vec<f64>; 3] {
        [flat(&self.emb), self.flow.flat(), flat(&self.ratio)]
    }

    /// Every parameter in `flat` order, mutably.
    fn params_mut(&mut self) -> Vec<&mut f64> {
        let mut v: Vec<&mut f64> = vec![];
        for (w, b) in self.emb.w.iter_mut().zip(self.emb.b.iter_mut()) {
            v.extend(w.iter_mut().chain(b.iter_mut()));
        }
        v.extend(self.flow.flat_mut());
        for (w, b) in self.ratio.w.iter_mut().zip(self.ratio.b.iter_mut()) {
            v.extend(w.iter_mut().chain(b.iter_mut()));
        }
        v
    }
}

/// The hybrid loss in f64 (network space): (1/B) Σ_i [−log q(θ_i | e(x_i)) − f(θ_i, x_i)]
/// + (1/B) Σ_i (1/K) Σ_k sexp f(θ'_ik, x_i) with θ'_ik = T⁻¹(z_ik; e(x_i)), or the given draws.
#[allow(clippy::too_many_arguments)]
fn hybrid_loss(
    p: &StepProbe,
    n: &HybridNets,
    theta: &[f64],
    x: &[f64],
    z: &[f64],
    fixed: Option<&[f64]>,
    inside: Option<&[bool]>,
    b: usize,
    k: usize,
) -> f64 {
    let (ec, fc, rc) = (
        &p.embedding.as_ref().unwrap().0,
        &p.flow.as_ref().unwrap().0,
        &p.ratio.as_ref().unwrap().0,
    );
    let (d, dx, e) = (fc.dim, ec.in_dim, ec.out_dim);
    let c = mcpu::forward(ec, &n.emb, x, b).y;
    let npe = -fcpu::log_prob(fc, &n.flow, theta, &c, b)
        .iter()
        .sum::<f64>()
        / b as f64;
    let draws = match fixed {
        Some(t) => t.to_vec(),
        None => {
            let ck: Vec<f64> = (0..b * k)
                .flat_map(|j| c[(j / k) * e..(j / k + 1) * e].to_vec())
                .collect();
            fcpu::inverse(fc, &n.flow, z, &ck, b * k).0
        }
    };
    let inp = gcpu::pairs(theta, x, Some(&draws), b, k, d, dx);
    let f = mcpu::forward(rc, &n.ratio, &inp, b * (1 + k)).y;
    npe + gcpu::loss_masked(&f, b, k, inside)
}

fn hybrid_settings(kind: FlowKind, base_gradient: BaseGradient, batch: usize) -> NpeSettings {
    NpeSettings {
        flow: FlowConfig {
            transforms: 2,
            hidden: 8,
            hidden_layers: 1,
            act: Activation::Tanh,
            bins: 4,
            tail_bound: 2.0,
            ..FlowConfig::new(kind, 0, 0)
        },
        embedding: Some(MlpConfig {
            in_dim: 0,
            out_dim: 2,
            hidden: 6,
            blocks: 1,
            act: Activation::Tanh,
            residual: true,
        }),
        ratio: Some(MlpConfig {
            in_dim: 0,
            out_dim: 1,
            hidden: 8,
            blocks: 1,
            act: Activation::Tanh,
            residual: true,
        }),
        contrastive: 2,
        base_gradient,
        support_mask: false,
        batch_size: batch,
        seed: 5,
        ..settings(Method::Hybrid)
    }
}

/// The base draws z[j, i] of [`probe_step_gradient`]: z[j·d + i] of the sample stream, seed 5.
fn probe_draws(n: usize) -> Vec<f64> {
    RngStream {
        seed: 5,
        offset: 0,
        stream: SAMPLE_STREAM,
    }
    .normal(n)
    .into_iter()
    .map(f64::from)
    .collect()
}

/// Runs [`probe_step_gradient`] for `settings` (whole, then in micro-batches of 4 and 3 rows) and
/// checks its gradient against central differences of the f64 hybrid loss with the same base
/// draws: detached, they stay at the unperturbed parameters; reparameterized, they move with
/// them. With `support`, draws outside that box (at the unperturbed parameters) are masked.
/// Returns the GPU gradient.
fn check_hybrid_gradient(
    settings: &NpeSettings,
    support: Option<&[f64]>,
    theta: &[f64],
    x: &[f64],
    z: &[f64],
    k: usize,
    what: &str,
) -> HybridNets {
    let ctx = ctx();
    let b = settings.batch_size;
    let (d, dx) = (theta.len() / b, x.len() / b);
    let probe = probe_step_gradient(ctx, settings, d, dx, theta, x, 1, support).unwrap();
    let nets = HybridNets::from_arena(&probe, &probe.params);
    let fc = &probe.flow.as_ref().unwrap().0;
    let ec = &probe.embedding.as_ref().unwrap().0;
    let c = mcpu::forward(ec, &nets.emb, x, b).y;
    let e = ec.out_dim;
    let ck: Vec<f64> = (0..b * k)
        .flat_map(|j| c[(j / k) * e..(j / k + 1) * e].to_vec())
        .collect();
    let draws = fcpu::inverse(fc, &nets.flow, z, &ck, b * k).0;
    let inside = support.map(|bd| gcpu::inside(&draws, d, bd));
    let fixed = (settings.base_gradient == BaseGradient::Detached).then_some(&draws[..]);
    let loss = |n: &HybridNets| hybrid_loss(&probe, n, theta, x, z, fixed, inside.as_deref(), b, k);
    let h = 1e-5;
    let mut fd_nets = HybridNets::from_arena(&probe, &vec![0.0; probe.params.len()]);
    let n_params = nets.flat().iter().map(Vec::len).sum::<usize>();
    for i in 0..n_params {
        let (mut a, mut c) = (
            HybridNets::from_arena(&probe, &probe.params),
            HybridNets::from_arena(&probe, &probe.params),
        );
        *a.params_mut()[i] += h;
        *c.params_mut()[i] -= h;
        *fd_nets.params_mut()[i] = (loss(&a) - loss(&c)) / (2.0 * h);
    }
    let gpu = HybridNets::from_arena(&probe, &probe.grads);
    for (part, (got, want)) in ["embedding", "flow", "ratio"]
        .iter()
        .zip(gpu.flat().iter().zip(fd_nets.flat().iter()))
    {
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
        assert!(scale > 1e-3, "{what}: {part} gradient is zero");
        let err = max_rel_err(got, want, 2e-3 * scale, 5e-3);
        assert!(
            err <= 1.0,
            "{what}: {part} gradient off by {err}× tolerance"
        );
    }
    // The same gradient from two micro-batches of 4 and 3 rows.
    let split = probe_step_gradient(ctx, settings, d, dx, theta, x, 2, support).unwrap();
    assert_eq!(split.micro_batches, 2);
    let scale = probe.grads.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    let (a, c): (Vec<f64>, Vec<f64>) = split
        .grads
        .iter()
        .zip(&probe.grads)
        .map(|(&a, &c)| (a as f64, c as f64))
        .unzip();
    assert!(
        max_rel_err(&a, &c, 1e-5 * scale, 1e-4) <= 1.0,
        "{what}: micro-batches change the gradient"
    );
    gpu
}

/// The hybrid's whole training gradient — the trainer's own step graph (embedding net, flow, base
/// draws, ratio net, GKL loss; no optimizer step) — against central differences of the f64
/// hybrid loss with the same base draws z: with the base gradient detached, θ' = T⁻¹(z; e(x))
/// stays at the unperturbed parameters (the partition term trains the ratio net only, the
/// unchanged behaviour); reparameterized, θ' moves with the flow's and the embedding net's
/// parameters. MAF and NSF bases (d = 3, an embedding net, K = 2), and the same gradients from
/// the batch split into micro-batches (a short last one).
#[test]
fn hybrid_training_gradient_matches_finite_differences_detached_and_reparameterized() {
    let (b, k, d, dx) = (7usize, 2usize, 3usize, 3usize);
    let mut g = rng(40);
    let theta = randn(&mut g, b * d, 1.5);
    let x = randn(&mut g, b * dx, 1.5);
    let z = probe_draws(b * k * d);
    for kind in [FlowKind::Maf, FlowKind::Nsf] {
        let mut flows = vec![];
        for bg in [BaseGradient::Detached, BaseGradient::Reparameterized] {
            let settings = hybrid_settings(kind, bg, b);
            let what = format!("{kind:?} {bg:?}");
            let gpu = check_hybrid_gradient(&settings, None, &theta, &x, &z, k, &what);
            flows.push(gpu);
        }
        // The option changes the base's (and the embedding's) gradient, not the ratio's.
        let ([e0, f0, r0], [e1, f1, r1]) = (flows[0].flat(), flows[1].flat());
        let diff =
            |a: &[f64], c: &[f64]| a.iter().zip(c).fold(0f64, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            diff(&f0, &f1) > 1e-3 && diff(&e0, &e1) > 1e-4,
            "{kind:?}: the reparameterized gradient equals the detached one"
        );
        assert!(
            diff(&r0, &r1) <= 1e-6,
            "{kind:?}: the ratio net's gradient depends on the option"
        );
    }
}

/// The masked partition term (`support_mask`) in the trainer's step graph: base draws outside the
/// prior's support (here a box in network space that the 14 draws straddle) add nothing to the
/// hybrid loss. The gradient matches finite differences of the f64 loss with the same mask,
/// detached and reparameterized, whole and in micro-batches, and differs from the unmasked one.
#[test]
fn hybrid_training_gradient_with_the_support_mask_matches_finite_differences() {
    let (b, k, d, dx) = (7usize, 2usize, 3usize, 3usize);
    let mut g = rng(40);
    let theta = randn(&mut g, b * d, 1.5);
    let x = randn(&mut g, b * dx, 1.5);
    let z = probe_draws(b * k * d);
    let big = f32::MAX as f64;
    // [lo_0, lo_1, lo_2, hi_0, hi_1, hi_2]: θ'_0 ≥ −0.3 and θ'_2 ≤ 0.6.
    let bounds = [-0.3, -big, -big, big, big, 0.6];
    for bg in [BaseGradient::Detached, BaseGradient::Reparameterized] {
        let settings = NpeSettings {
            support_mask: true,
            ..hybrid_settings(FlowKind::Nsf, bg, b)
        };
        let what = format!("masked {bg:?}");
        // The draws at the initial parameters, away from the box's faces (a finite-difference
        // step must not carry one across), with some on either side.
        let probe = probe_step_gradient(ctx(), &settings, d, dx, &theta, &x, 1, None).unwrap();
        let nets = HybridNets::from_arena(&probe, &probe.params);
        let ec = &probe.embedding.as_ref().unwrap().0;
        let c = mcpu::forward(ec, &nets.emb, &x, b).y;
        let ck: Vec<f64> = (0..b * k)
            .flat_map(|j| c[(j / k) * ec.out_dim..(j / k + 1) * ec.out_dim].to_vec())
            .collect();
        let fc = &probe.flow.as_ref().unwrap().0;
        let draws = fcpu::inverse(fc, &nets.flow, &z, &ck, b * k).0;
        let inside = gcpu::inside(&draws, d, &bounds);
        let outside = inside.iter().filter(|&&i| !i).count();
        assert!(
            (3..=b * k - 3).contains(&outside),
            "{outside} of {} draws outside",
            b * k
        );
        let gap = draws
            .chunks(d)
            .map(|r| (r[0] + 0.3).abs().min((r[2] - 0.6).abs()))
            .fold(f64::INFINITY, f64::min);
        assert!(gap > 1e-3, "a draw lies {gap} from a face of the box");
        let masked = check_hybrid_gradient(&settings, Some(&bounds), &theta, &x, &z, k, &what);
        // Without the mask (or with a box that holds every draw) the ratio's gradient differs.
        let plain = HybridNets::from_arena(&probe, &probe.grads);
        let (r0, r1) = (&masked.flat()[2], &plain.flat()[2]);
        let diff = r0
            .iter()
            .zip(r1)
            .fold(0f64, |m, (a, c)| m.max((a - c).abs()));
        assert!(
            diff > 1e-3,
            "{what}: the mask does not change the ratio's gradient"
        );
    }
}

/// The hybrid's contrastive draws: K per x from the base flow given that x's context, fresh at
/// every optimizer step (the GPU step counter), each the flow's inverse of its Philox normals.
#[test]
fn hybrid_draws_invert_the_base_flow_for_their_own_x_and_change_every_step() {
    let ctx = ctx();
    let (b, k, d, e) = (5, 3, 2, 3);
    let cfg = FlowConfig {
        transforms: 2,
        hidden: 8,
        hidden_layers: 1,
        act: Activation::Tanh,
        ..FlowConfig::new(FlowKind::Nsf, d, e)
    };
    let mut g = rng(4);
    let init = cfg.init_arena(&mut g, 64);
    let arena = ParamArena::new(ctx, &init).unwrap();
    let (p, gr) = arena.block(0, cfg.arena_len(64));
    let flow = Flow::new(ctx, cfg.clone(), p, gr).unwrap();
    let c = randn(&mut g, b * e, 1.0);
    let ct = ctx.tensor_from("ctx", &pack(&c, b, e)).unwrap();
    let step = ctx.tensor_zeros("step", 4).unwrap();
    let mut plan = FlowSamplePlan::with_options(
        ctx,
        &flow,
        b * k,
        &ct,
        FlowSampleOptions {
            ctx_div: k,
            step_counter: Some(&step),
            ..Default::default()
        },
    )
    .unwrap();
    let w = flow.weights(ctx).unwrap();
    let mut previous: Option<Vec<f64>> = None;
    for s in 0..2u32 {
        ctx.write(&step, 0, &[s]).unwrap();
        let ds = plan.dispatches(ctx, 9, 0);
        ctx.run(&ds).unwrap();
        let draws = unpack(&ctx.read::<f32>(&plan.samples).unwrap(), b * k, d);
        // Row j uses context row j / K; z comes from the stream with the step in the offset's high word.
        let cj: Vec<f64> = (0..b * k)
            .flat_map(|j| c[(j / k) * e..(j / k + 1) * e].to_vec())
            .collect();
        let (z, _) = fcpu::forward_z(&cfg, &w, &draws, &cj, b * k);
        let zs = RngStream {
            seed: 9,
            offset: (s as u64) << 32,
            stream: SAMPLE_STREAM,
        }
        .normal(b * k * d);
        let zs: Vec<f64> = zs.into_iter().map(f64::from).collect();
        assert!(
            max_rel_err(&z, &zs, 2e-3, 2e-3) <= 1.0,
            "step {s}: draws are not the inverse of their normals"
        );
        if let Some(prev) = &previous {
            assert!(
                prev.iter().zip(&draws).all(|(a, b)| a != b),
                "step counter did not change the draws"
            );
        }
        previous = Some(draws);
    }
    // A micro-batch of 2 of the 5 x (rows 2, 3) draws with a row offset exactly what those rows
    // of the whole batch drew.
    let (off, mb) = (2usize, 2usize);
    let ct2 = ctx
        .tensor_from("ctx-micro", &pack(&c[off * e..(off + mb) * e], mb, e))
        .unwrap();
    let mut micro = FlowSamplePlan::with_options(
        ctx,
        &flow,
        mb * k,
        &ct2,
        FlowSampleOptions {
            ctx_div: k,
            step_counter: Some(&step),
            ..Default::default()
        },
    )
    .unwrap();
    let whole = unpack(&ctx.read::<f32>(&plan.samples).unwrap(), b * k, d);
    let _ = micro.dispatches(ctx, 9, 0);
    let (at, _u) = micro.at_row_offset(ctx, off * k).unwrap();
    ctx.run(&[&at]).unwrap();
    let part = unpack(&ctx.read::<f32>(&micro.samples).unwrap(), mb * k, d);
    assert_eq!(
        part,
        whole[off * k * d..(off + mb) * k * d].to_vec(),
        "row-offset draws differ from the whole batch's"
    );
    let ds = micro.dispatches(ctx, 9, 0);
    ctx.run(&ds).unwrap();
    let plain = unpack(&ctx.read::<f32>(&micro.samples).unwrap(), mb * k, d);
    assert_ne!(
        plain, part,
        "without the offset the micro-batch draws rows 0.. of the stream"
    );
}

fn box_pre(d: usize) -> Preprocess {
    Preprocess {
        prior: Prior::BoxUniform {
            low: vec![-1.0; d],
            high: vec![2.0; d],
        },
        unconstrained: false,
        theta: Standardize {
            mean: vec![0.5; d],
            std: vec![0.8; d],
        },
        x: Standardize {
            mean: vec![0.0; 1],
            std: vec![1.0; 1],
        },
    }
}

/// When the last round raises M, the stored samples are thinned after the stop was decided: the
/// report must give the count that is left, and an acceptance rate that is not zero.
#[test]
fn a_raise_in_the_last_round_reports_what_is_left() {
    let ctx = ctx();
    let (d, dx) = (2, 1);
    let cfg = ratio_cfg(d, dx);
    let pre = box_pre(d);
    let rows = 256;
    let mut raised = 0;
    for seed in 0..12u64 {
        let w = MlpWeights::init(&cfg, &mut rng(100 + seed));
        let net = Mlp::new(ctx, cfg.clone(), &w).unwrap();
        // One warm-up round, one sampling round; M = the warm-up's largest exp f exactly, so
        // about half the seeds see the sampling round exceed it and raise M in that last round.
        let conf = RejectionConfig {
            rows_per_round: rows,
            m_proposals: rows,
            m_factor: 1.0,
            max_proposals: 2 * rows as u64,
            ..Default::default()
        };
        let out = RejectionSampler::new(ctx, &net, &pre, Proposal::Prior, conf)
            .run(&[vec![0.3]], 1 << 20, seed)
            .unwrap();
        let r = &out.reports[0];
        raised += (r.restarts > 0) as usize;
        assert_eq!(out.samples[0].len(), r.accepted * d, "{r:?}");
        let why = r.stopped.as_deref().unwrap_or("");
        assert!(
            why.contains(&format!("with {} of", r.accepted)),
            "seed {seed}: {why} / {r:?}"
        );
        if r.accepted > 0 {
            assert!(r.acceptance_rate > 0.0, "seed {seed}: {r:?}");
        }
    }
    assert!(raised > 0, "no seed raised M in its last round");
}

/// The sampler against a CPU replay of the same stream: prior proposals, f, M from the warm-up
/// round, acceptance, and Z.
#[test]
fn rejection_sampler_matches_its_cpu_reference_on_the_same_stream() {
    let ctx = ctx();
    let (d, dx) = (2, 1);
    let cfg = ratio_cfg(d, dx);
    let w = MlpWeights::init(&cfg, &mut rng(21));
    let net = Mlp::new(ctx, cfg.clone(), &w).unwrap();
    let pre = box_pre(d);
    let rows = 1024;
    let rounds = 3u64; // 1 warm-up + 2 sampling rounds, then the proposal budget stops it
    let conf = RejectionConfig {
        rows_per_round: rows,
        m_proposals: rows,
        max_proposals: rounds * rows as u64,
        ..Default::default()
    };
    let xo = vec![0.3];
    let seed = 77;
    let out = RejectionSampler::new(ctx, &net, &pre, Proposal::Prior, conf)
        .run(std::slice::from_ref(&xo), 1 << 20, seed)
        .unwrap();
    let rep = &out.reports[0];
    assert!(
        !rep.finished
            && rep
                .stopped
                .as_deref()
                .unwrap_or("")
                .contains("max-proposals"),
        "{rep:?}"
    );
    assert_eq!(rep.proposals, 2 * rows as u64);

    // CPU replay.
    let pack = PriorPack::new(&pre).unwrap().data;
    let f_of = |round: u32| -> (Vec<Vec<f64>>, Vec<f64>) {
        let th: Vec<Vec<f64>> = (0..rows as u32)
            .map(|r| rcpu::prior_draw(&pack, d, seed, r, round))
            .collect();
        let inp: Vec<f64> = th
            .iter()
            .flat_map(|t| pre.theta_forward(t).into_iter().chain(xo.iter().copied()))
            .collect();
        (th, mcpu::forward(&cfg, &w, &inp, rows).y)
    };
    let (_, f0) = f_of(0);
    let log_m = f0.iter().cloned().fold(f64::NEG_INFINITY, f64::max) + 1.2f64.ln();
    assert!(
        (rep.log_m - log_m).abs() < 1e-3,
        "log M {} vs {log_m}",
        rep.log_m
    );
    let mut accepted = vec![];
    let (mut z, mut ambiguous) = (0.0, 0);
    for round in 1..rounds as u32 {
        let (th, f) = f_of(round);
        for r in 0..rows {
            let u = rcpu::accept_uniform(seed, r as u32, round);
            let margin = u.ln() - (f[r] - log_m);
            if margin.abs() < 1e-3 {
                ambiguous += 1;
            } else if margin < 0.0 {
                accepted.push(th[r].clone());
            }
            z += f[r].exp();
        }
    }
    let n_gpu = rep.accepted as i64;
    assert!(
        (n_gpu - accepted.len() as i64).abs() <= ambiguous,
        "GPU accepted {n_gpu}, CPU {} (±{ambiguous})",
        accepted.len()
    );
    assert!(
        accepted.len() > 100,
        "too few acceptances to compare: {}",
        accepted.len()
    );
    // Every CPU-accepted θ is among the GPU's samples (the order on the GPU is the atomics').
    let gpu: Vec<&[f64]> = out.samples[0].chunks(d).collect();
    let missing = accepted
        .iter()
        .filter(|t| {
            !gpu.iter()
                .any(|g| g.iter().zip(t.iter()).all(|(a, b)| (a - b).abs() < 1e-5))
        })
        .count();
    assert!(
        missing as i64 <= ambiguous,
        "{missing} CPU-accepted proposals missing on the GPU"
    );
    let log_z = (z / (2 * rows) as f64).ln();
    assert!(
        (rep.log_z - log_z).abs() < 1e-3,
        "log Z {} vs {log_z}",
        rep.log_z
    );
}

/// f(θ, x) = 50·relu(1000·(θ + x) − 1999) on θ ~ U(0, 1): flat (acceptance 1/1.2) at x = 0, a
/// spike of height 50 on 0.1 % of the prior at x = 1 (acceptance ~1e-5): hopeless.
fn spike_net() -> (MlpConfig, MlpWeights) {
    let cfg = MlpConfig {
        in_dim: 2,
        out_dim: 1,
        hidden: 4,
        blocks: 1,
        act: Activation::Relu,
        residual: true,
    };
    let mut w = MlpWeights {
        w: vec![vec![0.0; 8], vec![0.0; 16], vec![0.0; 4]],
        b: vec![vec![0.0; 4], vec![0.0; 4], vec![0.0; 1]],
    };
    w.w[0][0] = 1000.0; // θ → unit 0
    w.w[0][4] = 1000.0; // x → unit 0
    w.b[0][0] = -1999.0;
    w.w[1][1] = 1.0; // unit 0 → relu → unit 1
    w.w[2][1] = 50.0; // unit 1 → f
    (cfg, w)
}

#[test]
fn a_hopeless_observation_stops_at_its_budget_without_stalling_the_others() {
    let ctx = ctx();
    let (cfg, w) = spike_net();
    let net = Mlp::new(ctx, cfg, &w).unwrap();
    let pre = Preprocess {
        prior: Prior::BoxUniform {
            low: vec![0.0],
            high: vec![1.0],
        },
        unconstrained: false,
        theta: Standardize {
            mean: vec![0.0],
            std: vec![1.0],
        },
        x: Standardize {
            mean: vec![0.0],
            std: vec![1.0],
        },
    };
    let budget = 1 << 19;
    let conf = RejectionConfig {
        rows_per_round: 1 << 14,
        max_proposals: budget,
        m_proposals: 4096,
        ..Default::default()
    };
    // Ten observations: nine flat ones and one hopeless one in the middle.
    let xs: Vec<Vec<f64>> = (0..10)
        .map(|i| vec![if i == 4 { 1.0 } else { 0.0 }])
        .collect();
    let n = 2000;
    let out = RejectionSampler::new(ctx, &net, &pre, Proposal::Prior, conf)
        .run(&xs, n, 5)
        .unwrap();
    for (i, r) in out.reports.iter().enumerate() {
        if i == 4 {
            assert!(!r.finished, "the hopeless observation finished: {r:?}");
            assert!(
                r.stopped.as_deref().unwrap().contains("max-proposals"),
                "{r:?}"
            );
            assert!(
                r.proposals + r.warmup_proposals <= budget + (1 << 14),
                "ran past its budget: {r:?}"
            );
        } else {
            assert!(
                r.finished && r.accepted == n && out.samples[i].len() == n,
                "observation {i}: {r:?}"
            );
            assert!(
                (r.acceptance_rate - 1.0 / 1.2).abs() < 0.05,
                "flat f accepts 1/1.2, got {}",
                r.acceptance_rate
            );
            assert!(
                r.log_z.abs() < 1e-3,
                "Z = 1 for f = 0, got log Z {}",
                r.log_z
            );
            assert!(out.samples[i].iter().all(|t| (0.0..=1.0).contains(t)));
        }
    }
}

/// θ ~ N(0, I₂), x = θ + 0.5·ε: the posterior is N(0.8·x, 0.2·I).
fn conjugate(n: usize, seed: u64) -> (Prior, Vec<f64>, Vec<f64>) {
    let mut g = rng(seed);
    let theta: Vec<f64> = (0..2 * n).map(|_| g.sample(StandardNormal)).collect();
    let x = theta
        .iter()
        .map(|t| t + 0.5 * g.sample::<f64, _>(StandardNormal))
        .collect();
    let prior =
        Prior::from_json(r#"{"type": "gaussian", "mean": [0, 0], "cov": [[1, 0], [0, 1]]}"#)
            .unwrap();
    (prior, theta, x)
}

fn settings(method: Method) -> NpeSettings {
    NpeSettings {
        method,
        flow: FlowConfig {
            act: Activation::Relu,
            transforms: 2,
            hidden: 32,
            ..FlowConfig::new(FlowKind::Maf, 0, 0)
        },
        embedding: None,
        ratio: Some(MlpConfig {
            in_dim: 0,
            out_dim: 1,
            hidden: 32,
            blocks: 2,
            act: Activation::Relu,
            residual: true,
        }),
        contrastive: 1,
        base_epochs: 0,
        base_gradient: Default::default(),
        support_mask: false,
        batch_size: 128,
        lr: 2e-3,
        max_epochs: 60,
        patience: 20,
        validation_fraction: 0.1,
        clip_norm: 5.0,
        weight_decay: 0.0,
        lr_patience: 0,
        lr_factor: 0.5,
        lr_restore_best: false,
        seed: 3,
        unconstrained: false,
    }
}

fn check_conjugate(method: Method) {
    check_conjugate_with(settings(method));
}

fn check_conjugate_with(s: NpeSettings) {
    let method = s.method;
    let ctx = ctx();
    let (prior, theta, x) = conjugate(10_000, 1);
    let out = train_npe(ctx, &prior, &theta, &x, 2, &s, None, |_| {}).unwrap();
    eprintln!(
        "{method:?}: {} epochs, best {}",
        out.history.len(),
        out.best_epoch
    );
    let last = &out.history[out.best_epoch - 1];
    let z = last.z_mean.expect("ratio methods report Z");
    assert!(
        (z - 1.0).abs() < 0.25,
        "{method:?}: mean Ẑ {z} far from 1 at the best epoch"
    );
    let dir = std::env::temp_dir().join(format!(
        "gkl-{}-{}-test-{}",
        method.name(),
        s.base_gradient.name(),
        std::process::id()
    ));
    out.model.save(&dir).unwrap();
    let post = NpePosterior::new(
        ctx,
        gkl_gpu::models::posterior::NpeModel::load(&dir).unwrap(),
    )
    .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let xo = vec![1.0, -0.5];
    let n = 4000;
    let (s, rep) = post.sample(std::slice::from_ref(&xo), n, 7).unwrap();
    let r = &rep.rejection.as_ref().unwrap()[0];
    assert!(r.finished && s[0].len() == n * 2, "{r:?}");
    for (j, &xj) in xo.iter().enumerate() {
        let m = s[0].iter().skip(j).step_by(2).sum::<f64>() / n as f64;
        let v = s[0]
            .iter()
            .skip(j)
            .step_by(2)
            .map(|t| (t - m) * (t - m))
            .sum::<f64>()
            / (n - 1) as f64;
        assert!(
            (m - 0.8 * xj).abs() < 0.1,
            "{method:?}: posterior mean[{j}] {m}, exact {}",
            0.8 * xj
        );
        assert!(
            (v - 0.2).abs() < 0.07,
            "{method:?}: posterior variance[{j}] {v}, exact 0.2"
        );
    }
    // Normalized log-density at the exact mode, with Z from the sampler's proposals.
    let (lq, zr) = post.log_prob_with(&[0.8, -0.4], &xo, 1 << 18, 1).unwrap();
    let exact = -(2.0 * std::f64::consts::PI * 0.2).ln();
    assert!(
        (lq[0] - exact).abs() < 0.3,
        "{method:?}: log q at the mode {}, exact {exact} (log Z {})",
        lq[0],
        zr.unwrap().log_z
    );
}

#[test]
fn ratio_recovers_a_conjugate_gaussian_posterior() {
    check_conjugate(Method::Ratio);
}

#[test]
fn hybrid_recovers_a_conjugate_gaussian_posterior() {
    check_conjugate(Method::Hybrid);
}

#[test]
fn hybrid_with_a_reparameterized_base_gradient_recovers_a_conjugate_gaussian_posterior() {
    check_conjugate_with(NpeSettings {
        base_gradient: BaseGradient::Reparameterized,
        ..settings(Method::Hybrid)
    });
}

#[test]
fn pairs_kernel_matches_reference_layout() {
    let ctx = ctx();
    let (b, k, d, dx) = (6, 2, 3, 5);
    let mut g = rng(8);
    let theta = randn(&mut g, b * d, 1.0);
    let x = randn(&mut g, b * dx, 1.0);
    let neg = randn(&mut g, b * k * d, 1.0);
    let p = GklParams::new(b, k, d, dx);
    let uni = ctx.uniform("gkl", &p);
    let th = ctx.tensor_from("t", &pack(&theta, b, d)).unwrap();
    let xt = ctx.tensor_from("x", &pack(&x, b, dx)).unwrap();
    let nt = ctx.tensor_from("n", &pack(&neg, b * k, d)).unwrap();
    let out = ctx.tensor_zeros("o", p.rows() * pad4(d + dx)).unwrap();
    for (contrast, n) in [
        (Contrast::Batch, None),
        (Contrast::Draws(&nt), Some(&neg[..])),
    ] {
        let ds = gkl::pairs(ctx, &uni, &p, &th, &xt, contrast, &out).unwrap();
        ctx.run(&[&ds]).unwrap();
        let got = unpack(&ctx.read::<f32>(&out).unwrap(), p.rows(), d + dx);
        let want = gcpu::pairs(&theta, &x, n, b, k, d, dx);
        assert!(max_rel_err(&got, &want, 1e-6, 1e-6) <= 1.0);
    }
    // K ≥ B cannot draw K distinct other rows of the batch.
    let bad = GklParams::new(3, 3, d, dx);
    assert!(gkl::pairs(ctx, &uni, &bad, &th, &xt, Contrast::Batch, &out).is_err());
}

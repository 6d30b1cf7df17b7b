//! Neural posterior estimation: the normalized-flow member of the generalized-KL family, whose
//! loss is exactly E[−log q(θ|x)]. Training runs on the GPU with the whole data set resident:
//! every step gathers its minibatch on the GPU (the optimizer's step counter picks it), so an
//! epoch — all its steps and the validation pass — is one submission, and two scalars come back.

use crate::kernels::adam::{Adam, AdamConfig};
use crate::kernels::gather::{self, GatherParams};
use crate::kernels::layout::{pack, pad4};
use crate::kernels::reduce::{self, ReduceOp, ReduceParams};
use crate::models::arena::{ArenaLayout, ParamArena};
use crate::models::flow::{Flow, FlowConfig, FlowLogProbPlan, FlowTrainPlan};
use crate::models::mlp::{Mlp, MlpConfig, MlpPlan, MlpWeights};
use crate::models::posterior::{NpeModel, FORMAT_VERSION};
use crate::runtime::{Dispatch, GpuContext, GpuError, GpuResult};
use crate::training::preprocess::Preprocess;
use crate::training::Method;
use crate::kernels::gkl::{self, Contrast, GklParams};
use crate::models::flow::{FlowSampleOptions, FlowSamplePlan};
use gkl_tasks::Prior;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NpeSettings {
    /// Which surrogate: flow (NPE), ratio, or hybrid.
    #[serde(default)]
    pub method: Method,
    /// Flow architecture; `dim` and `context_dim` are filled in from the data.
    pub flow: FlowConfig,
    /// Optional embedding net for x (a residual MLP); `None` feeds the z-scored x to the flow.
    pub embedding: Option<MlpConfig>,
    /// Ratio network f(θ, x) (ratio and hybrid); `in_dim` is filled in from the data.
    #[serde(default)]
    pub ratio: Option<MlpConfig>,
    /// Contrastive θ' per x in the partition term (K).
    #[serde(default = "one")]
    pub contrastive: usize,
    /// Hybrid: epochs that train the base flow alone before the ratio joins.
    #[serde(default)]
    pub base_epochs: usize,
    pub batch_size: usize,
    pub lr: f32,
    pub max_epochs: usize,
    /// Stop after this many epochs without a better validation loss.
    pub patience: usize,
    pub validation_fraction: f64,
    pub clip_norm: f32,
    pub seed: u64,
    /// Model θ in the prior's unconstrained space (no leakage outside a bounded support).
    pub unconstrained: bool,
}

fn one() -> usize {
    1
}

/// The default ratio network: a residual MLP, 64 wide, two residual blocks, ReLU.
pub fn default_ratio_net() -> MlpConfig {
    MlpConfig { in_dim: 0, out_dim: 1, hidden: 64, blocks: 2, act: crate::kernels::Activation::Relu, residual: true }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub seconds: f64,
    pub pairs_per_s: f64,
    pub best: bool,
    /// Ratio and hybrid: the mean over the epoch's x of the Monte-Carlo estimate Ẑ(x) of
    /// Z(x) = E[exp f(θ', x)] (1 at the optimum), and its variance across x.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub z_mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub z_var: Option<f64>,
    /// Hybrid: whether this epoch trained the base flow alone (`base_epochs`).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub base_only: bool,
}

/// Draws `n` fresh (θ, x) pairs (original space, row-major) for seed `seed`: the `--online` source.
pub type Simulator = std::sync::Arc<dyn Fn(usize, u64) -> (Vec<f64>, Vec<f64>) + Send + Sync>;

pub struct TrainOutcome {
    pub model: NpeModel,
    pub history: Vec<EpochMetrics>,
    pub best_epoch: usize,
    pub stopped_early: bool,
}

/// Trains on (θ, x) rows in the original space. `on_epoch` sees every epoch's metrics.
#[allow(clippy::too_many_arguments)]
pub fn train_npe(
    ctx: &GpuContext,
    prior: &Prior,
    theta: &[f64],
    x: &[f64],
    dim_x: usize,
    settings: &NpeSettings,
    task: Option<&str>,
    mut on_epoch: impl FnMut(&EpochMetrics),
) -> GpuResult<TrainOutcome> {
    train_npe_with(ctx, prior, theta, x, dim_x, settings, task, None, &mut on_epoch)
}

/// As [`train_npe`]; with `online`, every epoch trains on fresh simulations from it, simulated on
/// CPU threads during the previous epoch's GPU work (the given θ, x then supply the validation set
/// and the z-scores' first estimate).
#[allow(clippy::too_many_arguments)]
pub fn train_npe_with(
    ctx: &GpuContext,
    prior: &Prior,
    theta: &[f64],
    x: &[f64],
    dim_x: usize,
    settings: &NpeSettings,
    task: Option<&str>,
    online: Option<Simulator>,
    on_epoch: &mut dyn FnMut(&EpochMetrics),
) -> GpuResult<TrainOutcome> {
    let d = prior.dim();
    let n = theta.len() / d;
    if n * d != theta.len() || n * dim_x != x.len() {
        return Err(GpuError::InvalidArgument(format!("theta ({}) and x ({}) do not hold the same number of rows", theta.len(), x.len())));
    }
    let n_val = ((n as f64 * settings.validation_fraction).round() as usize).clamp(1, n.saturating_sub(1).max(1));
    let n_tr = n - n_val;
    if n_tr < 2 {
        return Err(GpuError::InvalidArgument(format!("{n} simulations are too few to train on")));
    }
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let pick = |idx: &[usize], data: &[f64], w: usize| -> Vec<f64> { idx.iter().flat_map(|&i| data[i * w..(i + 1) * w].iter().copied()).collect() };
    let (val_idx, tr_idx) = order.split_at(n_val);
    let (th_tr, x_tr) = (pick(tr_idx, theta, d), pick(tr_idx, x, dim_x));
    let (th_val, x_val) = (pick(val_idx, theta, d), pick(val_idx, x, dim_x));
    let pre = Preprocess::fit(prior, settings.unconstrained, &th_tr, &x_tr, dim_x);

    let method = settings.method;
    let kc = settings.contrastive;
    if method.has_ratio() && kc == 0 {
        return Err(GpuError::InvalidArgument("--contrastive must be at least 1".into()));
    }
    // Architecture with the data's dimensions.
    let emb = settings.embedding.clone().filter(|_| method.has_flow()).map(|mut e| {
        e.in_dim = dim_x;
        e
    });
    let context_dim = emb.as_ref().map_or(dim_x, |e| e.out_dim);
    let flow_cfg = method.has_flow().then(|| FlowConfig { dim: d, context_dim, ..settings.flow.clone() });
    let ratio_cfg = method.has_ratio().then(|| {
        let mut r = settings.ratio.clone().unwrap_or_else(default_ratio_net);
        r.in_dim = d + dim_x;
        r.out_dim = 1;
        r
    });

    // One arena: [embedding | flow | ratio], so one Adam launch and one global clip cover all.
    let mut layout = ArenaLayout::new(ctx);
    let emb_off = emb.as_ref().map(|e| layout.reserve(Mlp::model_len(e, layout.align)));
    let flow_len = flow_cfg.as_ref().map_or(0, |f| f.arena_len(layout.align));
    let flow_off = flow_cfg.as_ref().map(|_| layout.reserve(flow_len));
    let ratio_len = ratio_cfg.as_ref().map_or(0, |r| Mlp::model_len(r, layout.align));
    let ratio_off = ratio_cfg.as_ref().map(|_| layout.reserve(ratio_len));
    let mut init = vec![0f32; layout.len];
    if let (Some(e), Some(off)) = (&emb, emb_off) {
        let w = Mlp::init_arena(e, &[MlpWeights::init(e, &mut rng)], layout.align);
        init[off..off + w.len()].copy_from_slice(&w);
    }
    if let (Some(f), Some(off)) = (&flow_cfg, flow_off) {
        let fw = f.init_arena(&mut rng, layout.align);
        init[off..off + fw.len()].copy_from_slice(&fw);
    }
    if let (Some(r), Some(off)) = (&ratio_cfg, ratio_off) {
        let w = Mlp::init_arena(r, &[MlpWeights::init(r, &mut rng)], layout.align);
        init[off..off + w.len()].copy_from_slice(&w);
    }
    let arena = ParamArena::new(ctx, &init)?;
    let emb_net = match (&emb, emb_off) {
        (Some(e), Some(off)) => {
            let (p, g) = arena.block(off, Mlp::model_len(e, layout.align));
            Some(Mlp::from_views(e.clone(), 1, p, g, layout.align))
        }
        _ => None,
    };
    let flow = match (&flow_cfg, flow_off) {
        (Some(f), Some(off)) => {
            let (fp, fg) = arena.block(off, flow_len);
            Some(Flow::new(ctx, f.clone(), fp, fg)?)
        }
        _ => None,
    };
    let ratio_net = match (&ratio_cfg, ratio_off) {
        (Some(r), Some(off)) => {
            let (p, g) = arena.block(off, ratio_len);
            Some(Mlp::from_views(r.clone(), 1, p, g, layout.align))
        }
        _ => None,
    };

    // Data resident on the GPU, in network space.
    let (d4, dx4) = (pad4(d), pad4(dim_x));
    let th_tr_t = ctx.tensor_from("npe-theta-train", &pack(&pre.theta_forward(&th_tr), n_tr, d))?;
    let x_tr_t = ctx.tensor_from("npe-x-train", &pack(&pre.x_forward(&x_tr), n_tr, dim_x))?;
    let batch = settings.batch_size.clamp(1, n_tr);
    let steps = n_tr.div_ceil(batch);
    if method == Method::Ratio && kc >= batch.min(n_val) {
        return Err(GpuError::InvalidArgument(format!(
            "{kc} contrastive θ' per x are drawn from the other rows of a batch: the batch ({batch}) and the validation set ({n_val}) need more than {kc} rows"
        )));
    }

    let adam = Adam::new(
        ctx,
        AdamConfig { lr: settings.lr, max_norm: settings.clip_norm, ..Default::default() },
        &arena.params,
        &arena.grads,
    )?;
    // Training graph for one step.
    let emb_plan = emb_net.as_ref().map(|m| MlpPlan::new(ctx, m, batch)).transpose()?;
    let xb = match &emb_plan {
        Some(p) => p.x.clone(),
        None => ctx.tensor_zeros("npe-x-batch", batch * dx4)?,
    };
    let (context, dcontext) = match &emb_plan {
        Some(p) => (p.y.clone(), p.dy.clone()),
        None => (xb.clone(), ctx.tensor_zeros("npe-dcontext-unused", batch * dx4)?),
    };
    let fplan = flow.as_ref().map(|f| FlowTrainPlan::new(ctx, f, batch, &context, &dcontext)).transpose()?;
    let theta_b = match &fplan {
        Some(p) => p.theta.clone(),
        None => ctx.tensor_zeros("ratio-theta-batch", batch * d4)?,
    };
    let perm = ctx.tensor_zeros("npe-perm", n_tr)?;
    let gp = |w4: usize| GatherParams { rows: batch as u32, d4: (w4 / 4) as u32, n_train: n_tr as u32, steps: steps as u32, models: 1, _pad: [0; 3] };
    let (gpt, gpx) = (gp(d4), gp(dx4));
    let gpt_buf = ctx.uniform("gather-theta", &gpt);
    let gpx_buf = ctx.uniform("gather-x", &gpx);
    // [0]: train Σ log q, [64]: validation Σ log q; [128..131], [192..195]: the ratio term's sums
    // (Σ −f, Σ Ẑ, Σ Ẑ²) for training and validation.
    let acc = ctx.tensor_zeros("npe-loss-acc", 256)?;
    let (acc_tr, acc_val) = (acc.view("acc-train", 0, 1), acc.view("acc-val", 64, 1));
    let (acc_rtr, acc_rval) = (acc.view("acc-ratio-train", 128, 4), acc.view("acc-ratio-val", 192, 4));
    let rp_tr = ctx.uniform("reduce-train", &ReduceParams::row_major(batch, 1, 1));
    let mut base_d: Vec<Dispatch> = vec![
        gather::gather_rows(ctx, &gpt_buf, &gpt, &th_tr_t, &perm, &adam.state, &theta_b)?,
        gather::gather_rows(ctx, &gpx_buf, &gpx, &x_tr_t, &perm, &adam.state, &xb)?,
    ];
    if let Some(p) = &emb_plan {
        base_d.extend(p.forward.iter().cloned());
    }
    if let Some(fp) = &fplan {
        base_d.extend(fp.forward.iter().cloned());
        base_d.push(reduce::reduce_cols(ctx, &rp_tr, 1, ReduceOp::Sum, true, &fp.log_prob, &acc_tr)?);
        base_d.extend(fp.backward.iter().cloned());
    }
    if let Some(p) = &emb_plan {
        base_d.extend(p.backward.iter().cloned());
    }
    // The ratio term: contrastive θ' (other θ of the batch, or draws from the base flow for the
    // same x, detached), the ratio net on [θ, x] for joint and contrastive rows, the GKL loss.
    let gkl_tr = GklParams::new(batch, kc, d, dim_x);
    let gkl_tr_buf = ctx.uniform("gkl-train", &gkl_tr);
    let rplan = ratio_net.as_ref().map(|r| MlpPlan::new(ctx, r, gkl_tr.rows())).transpose()?;
    let mut draw_plan = match (&flow, method) {
        (Some(f), Method::Hybrid) => Some(FlowSamplePlan::with_options(
            ctx,
            f,
            batch * kc,
            &context,
            FlowSampleOptions { ctx_div: kc, step_counter: Some(&adam.state), ..Default::default() },
        )?),
        _ => None,
    };
    let mut ratio_d: Vec<Dispatch> = vec![];
    if let Some(rp) = &rplan {
        if let Some(dp) = &mut draw_plan {
            ratio_d.extend(dp.dispatches(ctx, settings.seed, 0).into_iter().cloned());
        }
        let contrast = draw_plan.as_ref().map_or(Contrast::Batch, |dp| Contrast::Draws(&dp.samples));
        ratio_d.push(gkl::pairs(ctx, &gkl_tr_buf, &gkl_tr, &theta_b, &xb, contrast, &rp.x)?);
        ratio_d.extend(rp.forward.iter().cloned());
        ratio_d.push(gkl::loss(ctx, &gkl_tr_buf, &rp.y, &rp.dy, &acc_rtr, true)?);
        ratio_d.extend(rp.backward.iter().cloned());
    }
    let adam_d: Vec<Dispatch> = adam.dispatches().into_iter().cloned().collect();

    // Validation graph: the whole validation set in one forward pass.
    let vemb = emb_net.as_ref().map(|m| MlpPlan::new(ctx, m, n_val)).transpose()?;
    let xv = match &vemb {
        Some(p) => p.x.clone(),
        None => ctx.tensor_zeros("npe-x-val", n_val * dx4)?,
    };
    ctx.write(&xv, 0, &pack(&pre.x_forward(&x_val), n_val, dim_x))?;
    let th_val_packed = pack(&pre.theta_forward(&th_val), n_val, d);
    // Validation needs log q only: no tape, no backward.
    let vctx = match &vemb {
        Some(p) => p.y.clone(),
        None => xv.clone(),
    };
    let mut val_base: Vec<Dispatch> = vec![];
    if let Some(p) = &vemb {
        val_base.extend(p.forward.iter().cloned());
    }
    let vplan = flow.as_ref().map(|f| FlowLogProbPlan::new(ctx, f, n_val, &vctx)).transpose()?;
    let th_val_t = match &vplan {
        Some(vp) => vp.theta.clone(),
        None => ctx.tensor_zeros("ratio-theta-val", n_val * d4)?,
    };
    ctx.write(&th_val_t, 0, &th_val_packed)?;
    if let Some(vp) = &vplan {
        let rp_val = ctx.uniform("reduce-val", &ReduceParams::row_major(n_val, 1, 1));
        val_base.push(vp.dispatch.clone());
        val_base.push(reduce::reduce_cols(ctx, &rp_val, 1, ReduceOp::Sum, false, &vp.log_prob, &acc_val)?);
    }
    let gkl_val = GklParams::new(n_val, kc, d, dim_x);
    let gkl_val_buf = ctx.uniform("gkl-val", &gkl_val);
    let rvplan = ratio_net.as_ref().map(|r| MlpPlan::new(ctx, r, gkl_val.rows())).transpose()?;
    // Fixed validation draws (same stream every epoch) keep the early-stopping signal steady.
    let mut vdraw_plan = match (&flow, method) {
        (Some(f), Method::Hybrid) => {
            Some(FlowSamplePlan::with_options(ctx, f, n_val * kc, &vctx, FlowSampleOptions { ctx_div: kc, ..Default::default() })?)
        }
        _ => None,
    };
    let mut val_ratio: Vec<Dispatch> = vec![];
    if let Some(rp) = &rvplan {
        if let Some(dp) = &mut vdraw_plan {
            val_ratio.extend(dp.dispatches(ctx, settings.seed ^ 0x5641_4c49_4441_5445, 0).into_iter().cloned());
        }
        let contrast = vdraw_plan.as_ref().map_or(Contrast::Batch, |dp| Contrast::Draws(&dp.samples));
        val_ratio.push(gkl::pairs(ctx, &gkl_val_buf, &gkl_val, &th_val_t, &xv, contrast, &rp.x)?);
        val_ratio.extend(rp.forward.iter().cloned());
        val_ratio.push(gkl::loss(ctx, &gkl_val_buf, &rp.y, &rp.dy, &acc_rval, false)?);
    }
    // A full epoch, and (hybrid with --base-epochs) a base-only epoch.
    let full_step: Vec<&Dispatch> = base_d.iter().chain(&ratio_d).chain(&adam_d).collect();
    let epoch_d: Vec<&Dispatch> = (0..steps).flat_map(|_| full_step.iter().copied()).chain(val_base.iter()).chain(val_ratio.iter()).collect();
    let base_step: Vec<&Dispatch> = base_d.iter().chain(&adam_d).collect();
    let base_epoch_d: Vec<&Dispatch> = (0..steps).flat_map(|_| base_step.iter().copied()).chain(val_base.iter()).collect();

    // Online: a producer thread simulates the next epoch's block while the GPU trains on this one.
    // Queue writes are ordered after earlier submissions, so one resident buffer is enough.
    // The producer stops when the receiver is dropped (its next send fails).
    let fresh = online.map(|sim| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<f32>, Vec<f32>)>(1);
        let pre = pre.clone();
        let seed = settings.seed;
        std::thread::spawn(move || {
            for block in 1u64.. {
                let (th, xs) = sim(n_tr, seed.wrapping_add(block.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
                let packed = (pack(&pre.theta_forward(&th), n_tr, d), pack(&pre.x_forward(&xs), n_tr, dim_x));
                if tx.send(packed).is_err() {
                    break;
                }
            }
        });
        rx
    });
    let best = ctx.tensor_zeros("npe-best-params", arena.len())?;
    let start = Instant::now();
    let mut history = vec![];
    let mut best_val = f64::INFINITY;
    let mut best_epoch = 0;
    let mut since_best = 0;
    let mut idx: Vec<u32> = (0..n_tr as u32).collect();
    let zeros = vec![0f32; 256];
    let mut stopped_early = false;
    let base_epochs = if method == Method::Hybrid { settings.base_epochs } else { 0 };
    for epoch in 1..=settings.max_epochs {
        let t0 = Instant::now();
        let base_only = epoch <= base_epochs;
        if epoch == base_epochs + 1 && base_epochs > 0 {
            // The objective changes when the ratio joins: restart the early-stopping record.
            best_val = f64::INFINITY;
            since_best = 0;
        }
        if let (Some(rx), true) = (&fresh, epoch > 1) {
            let (th, xs) = rx
                .recv()
                .map_err(|_| GpuError::InvalidArgument("the online simulator stopped".into()))?;
            ctx.write(&th_tr_t, 0, &th)?;
            ctx.write(&x_tr_t, 0, &xs)?;
        }
        idx.shuffle(&mut rng);
        ctx.write(&perm, 0, &idx)?;
        ctx.write(&acc, 0, &zeros)?;
        ctx.run(if base_only { &base_epoch_d } else { &epoch_d })?;
        let sums: Vec<f32> = ctx.read_range(&acc, 0, 196)?;
        let pairs = (steps * batch) as f64;
        let mut train_loss = -(sums[0] as f64) / pairs;
        let mut val_loss = -(sums[64] as f64) / n_val as f64;
        let (mut z_mean, mut z_var) = (None, None);
        if method.has_ratio() && !base_only {
            train_loss += (sums[128] as f64 + sums[129] as f64) / pairs;
            val_loss += (sums[192] as f64 + sums[193] as f64) / n_val as f64;
            let m = sums[129] as f64 / pairs;
            z_mean = Some(m);
            z_var = Some((sums[130] as f64 / pairs - m * m).max(0.0));
        }
        let improved = val_loss < best_val;
        if improved {
            best_val = val_loss;
            best_epoch = epoch;
            since_best = 0;
            ctx.copy(&arena.params, &best)?;
        } else {
            since_best += 1;
        }
        let m = EpochMetrics {
            epoch,
            train_loss,
            val_loss,
            seconds: start.elapsed().as_secs_f64(),
            pairs_per_s: pairs / t0.elapsed().as_secs_f64(),
            best: improved,
            z_mean,
            z_var,
            base_only,
        };
        on_epoch(&m);
        history.push(m);
        if !train_loss.is_finite() {
            return Err(GpuError::InvalidArgument(format!("training diverged at epoch {epoch} (loss {train_loss}); try a smaller --lr")));
        }
        if since_best >= settings.patience && !base_only {
            stopped_early = true;
            break;
        }
    }
    drop(fresh);
    let params: Vec<f32> = ctx.read(&best)?;
    let model = NpeModel {
        format_version: FORMAT_VERSION,
        method,
        task: task.map(str::to_string),
        dim_theta: d,
        dim_x,
        flow: flow_cfg,
        embedding: emb,
        ratio: ratio_cfg,
        arena_align: layout.align,
        embedding_offset: emb_off,
        flow_offset: flow_off,
        ratio_offset: ratio_off,
        preprocess: pre,
        params,
        settings: settings.clone(),
    };
    Ok(TrainOutcome { model, history, best_epoch, stopped_early })
}


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
use gkl_tasks::Prior;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NpeSettings {
    /// Flow architecture; `dim` and `context_dim` are filled in from the data.
    pub flow: FlowConfig,
    /// Optional embedding net for x (a residual MLP); `None` feeds the z-scored x to the flow.
    pub embedding: Option<MlpConfig>,
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

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub seconds: f64,
    pub pairs_per_s: f64,
    pub best: bool,
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

    // Architecture with the data's dimensions.
    let emb = settings.embedding.clone().map(|mut e| {
        e.in_dim = dim_x;
        e
    });
    let context_dim = emb.as_ref().map_or(dim_x, |e| e.out_dim);
    let flow_cfg = FlowConfig { dim: d, context_dim, ..settings.flow.clone() };

    // One arena: [embedding | flow], so one Adam launch and one global clip cover both.
    let mut layout = ArenaLayout::new(ctx);
    let emb_off = emb.as_ref().map(|e| layout.reserve(Mlp::model_len(e, layout.align)));
    let flow_len = flow_cfg.arena_len(layout.align);
    let flow_off = layout.reserve(flow_len);
    let mut init = vec![0f32; layout.len];
    if let (Some(e), Some(off)) = (&emb, emb_off) {
        let w = Mlp::init_arena(e, &[MlpWeights::init(e, &mut rng)], layout.align);
        init[off..off + w.len()].copy_from_slice(&w);
    }
    let fw = flow_cfg.init_arena(&mut rng, layout.align);
    init[flow_off..flow_off + fw.len()].copy_from_slice(&fw);
    let arena = ParamArena::new(ctx, &init)?;
    let emb_net = match (&emb, emb_off) {
        (Some(e), Some(off)) => {
            let (p, g) = arena.block(off, Mlp::model_len(e, layout.align));
            Some(Mlp::from_views(e.clone(), 1, p, g, layout.align))
        }
        _ => None,
    };
    let (fp, fg) = arena.block(flow_off, flow_len);
    let flow = Flow::new(ctx, flow_cfg.clone(), fp, fg)?;

    // Data resident on the GPU, in network space.
    let (d4, dx4) = (pad4(d), pad4(dim_x));
    let th_tr_t = ctx.tensor_from("npe-theta-train", &pack(&pre.theta_forward(&th_tr), n_tr, d))?;
    let x_tr_t = ctx.tensor_from("npe-x-train", &pack(&pre.x_forward(&x_tr), n_tr, dim_x))?;
    let batch = settings.batch_size.clamp(1, n_tr);
    let steps = n_tr.div_ceil(batch);

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
    let fplan = FlowTrainPlan::new(ctx, &flow, batch, &context, &dcontext)?;
    let perm = ctx.tensor_zeros("npe-perm", n_tr)?;
    let gp = |w4: usize| GatherParams { rows: batch as u32, d4: (w4 / 4) as u32, n_train: n_tr as u32, steps: steps as u32, models: 1, _pad: [0; 3] };
    let (gpt, gpx) = (gp(d4), gp(dx4));
    let gpt_buf = ctx.uniform("gather-theta", &gpt);
    let gpx_buf = ctx.uniform("gather-x", &gpx);
    let acc = ctx.tensor_zeros("npe-loss-acc", 128)?; // [0]: train Σ log q, [64]: validation Σ log q
    let (acc_tr, acc_val) = (acc.view("acc-train", 0, 1), acc.view("acc-val", 64, 1));
    let rp_tr = ctx.uniform("reduce-train", &ReduceParams::row_major(batch, 1, 1));
    let mut step_d: Vec<Dispatch> = vec![
        gather::gather_rows(ctx, &gpt_buf, &gpt, &th_tr_t, &perm, &adam.state, &fplan.theta)?,
        gather::gather_rows(ctx, &gpx_buf, &gpx, &x_tr_t, &perm, &adam.state, &xb)?,
    ];
    if let Some(p) = &emb_plan {
        step_d.extend(p.forward.iter().cloned());
    }
    step_d.extend(fplan.forward.iter().cloned());
    step_d.push(reduce::reduce_cols(ctx, &rp_tr, 1, ReduceOp::Sum, true, &fplan.log_prob, &acc_tr)?);
    step_d.extend(fplan.backward.iter().cloned());
    if let Some(p) = &emb_plan {
        step_d.extend(p.backward.iter().cloned());
    }
    step_d.extend(adam.dispatches().into_iter().cloned());

    // Validation graph: the whole validation set in one forward pass.
    let vemb = emb_net.as_ref().map(|m| MlpPlan::new(ctx, m, n_val)).transpose()?;
    let xv = match &vemb {
        Some(p) => p.x.clone(),
        None => ctx.tensor_zeros("npe-x-val", n_val * dx4)?,
    };
    ctx.write(&xv, 0, &pack(&pre.x_forward(&x_val), n_val, dim_x))?;
    // Validation needs log q only: no tape, no backward.
    let vctx = match &vemb {
        Some(p) => p.y.clone(),
        None => xv.clone(),
    };
    let vplan = FlowLogProbPlan::new(ctx, &flow, n_val, &vctx)?;
    ctx.write(&vplan.theta, 0, &pack(&pre.theta_forward(&th_val), n_val, d))?;
    let rp_val = ctx.uniform("reduce-val", &ReduceParams::row_major(n_val, 1, 1));
    let mut val_d: Vec<Dispatch> = vec![];
    if let Some(p) = &vemb {
        val_d.extend(p.forward.iter().cloned());
    }
    val_d.push(vplan.dispatch.clone());
    val_d.push(reduce::reduce_cols(ctx, &rp_val, 1, ReduceOp::Sum, false, &vplan.log_prob, &acc_val)?);
    let epoch_d: Vec<&Dispatch> = (0..steps).flat_map(|_| step_d.iter()).chain(val_d.iter()).collect();

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
    let zeros = vec![0f32; 128];
    let mut stopped_early = false;
    for epoch in 1..=settings.max_epochs {
        let t0 = Instant::now();
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
        ctx.run(&epoch_d)?;
        let sums: Vec<f32> = ctx.read_range(&acc, 0, 65)?;
        let train_loss = -(sums[0] as f64) / (steps * batch) as f64;
        let val_loss = -(sums[64] as f64) / n_val as f64;
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
            pairs_per_s: (steps * batch) as f64 / t0.elapsed().as_secs_f64(),
            best: improved,
        };
        on_epoch(&m);
        history.push(m);
        if !train_loss.is_finite() {
            return Err(GpuError::InvalidArgument(format!("training diverged at epoch {epoch} (loss {train_loss}); try a smaller --lr")));
        }
        if since_best >= settings.patience {
            stopped_early = true;
            break;
        }
    }
    drop(fresh);
    let params: Vec<f32> = ctx.read(&best)?;
    let model = NpeModel {
        format_version: FORMAT_VERSION,
        method: "npe".into(),
        task: task.map(str::to_string),
        dim_theta: d,
        dim_x,
        flow: flow_cfg,
        embedding: emb,
        arena_align: layout.align,
        embedding_offset: emb_off,
        flow_offset: flow_off,
        preprocess: pre,
        params,
        settings: settings.clone(),
    };
    Ok(TrainOutcome { model, history, best_epoch, stopped_early })
}

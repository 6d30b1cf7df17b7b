//! Neural posterior estimation and the generalized-KL ratio and hybrid surrogates: the trainer.
//!
//! Every step gathers its minibatch on the GPU from a resident block of training rows (the
//! optimizer's step counter picks it), so a block's steps are one submission and an epoch sends
//! back a few scalars. The training rows come in blocks no larger than a bound (64 MiB, or the
//! adapter's largest binding if smaller), held in memory or streamed from a folder of shards by
//! a CPU thread while the GPU trains on the previous block (`source`); every epoch regroups and
//! reorders the blocks and shuffles the rows within each, from a generator of (seed, epoch). With a run directory,
//! the trainer checkpoints its whole state every few epochs and at the end (`checkpoint`), can
//! resume from a checkpoint bit for bit, and on a GPU fault saves the last good state before it
//! reports the error. A batch whose buffers exceed the adapter's binding limit is split, not
//! shrunk (with a notice): every step runs it as micro-batches that fit, sums their gradients on
//! the GPU and takes one optimizer step, the same optimization as the whole batch up to float
//! rounding (see `Split`). The hybrid's partition term trains its base flow too with
//! [`BaseGradient::Reparameterized`] (see the module docs of [`crate::training`]): the ratio
//! net then also writes its input gradient, and a [`FlowInverseGradPlan`] adds the gradient
//! through the base draws to the flow's and the embedding net's, before the embedding net's
//! backward pass and the micro-batches' gradient sum.

use crate::kernels::adam::{Adam, AdamConfig};
use crate::kernels::elementwise::{self, EwParams};
use crate::kernels::gather::{self, GatherParams};
use crate::kernels::gkl::{self, Contrast, GklParams, SupportMask};
use crate::kernels::layout::pad4;
use crate::kernels::reduce::{self, ReduceOp, ReduceParams};
use crate::models::arena::{ArenaLayout, ParamArena};
use crate::models::flow::{
    Flow, FlowConfig, FlowInverseGradOptions, FlowInverseGradPlan, FlowLogProbPlan,
    FlowSampleOptions, FlowSamplePlan, FlowTrainPlan,
};
use crate::models::mlp::{Mlp, MlpConfig, MlpPlan, MlpWeights};
use crate::models::posterior::{NpeModel, FORMAT_VERSION};
use crate::runtime::{Dispatch, GpuContext, GpuError, GpuResult, GpuTensor};
use crate::training::checkpoint::{Checkpoint, CheckpointState, CHECKPOINT_VERSION};
use crate::training::error::{SavedState, TrainError, TrainResult};
use crate::training::source::{
    block_bounds, epoch_blocks, epoch_rng, pack_rows, preprocess_fingerprint, scan, stream_blocks,
    ScanReport, TrainSource,
};
use crate::training::{BaseGradient, Method};
use gkl_tasks::Prior;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Deserializer, Serialize};
use std::path::PathBuf;
use std::time::Instant;

fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Contrastive draws per x in the validation loss (at least the training K).
const VAL_CONTRASTIVE_RATIO: usize = 16;
const VAL_CONTRASTIVE_HYBRID: usize = 4;

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
    /// Hybrid: whether the partition term's gradient reaches the base flow through its
    /// reparameterized draws (see [`BaseGradient`]); ignored by the other methods.
    #[serde(default)]
    pub base_gradient: BaseGradient,
    /// Hybrid: the surrogate is q(θ|x)·exp f(θ,x)·1_support(θ), the density the rejection
    /// sampler draws from, so base draws outside a bounded prior's support count as exp f = 0 in
    /// the partition term instead of pushing f towards −∞ at the support's edge. Models trained
    /// before this setting existed read as false (their partition term counted every draw).
    #[serde(default)]
    pub support_mask: bool,
    pub batch_size: usize,
    pub lr: f32,
    pub max_epochs: usize,
    /// Stop after this many epochs without a better validation loss.
    pub patience: usize,
    pub validation_fraction: f64,
    pub clip_norm: f32,
    /// Decoupled (AdamW) weight decay on every parameter; 0 disables it.
    #[serde(default)]
    pub weight_decay: f32,
    /// Learning-rate plateau schedule: after this many epochs in a row without a better
    /// validation loss the learning rate is multiplied by `lr_factor` (0: constant rate).
    #[serde(default)]
    pub lr_patience: usize,
    #[serde(default = "half")]
    pub lr_factor: f32,
    /// With the plateau schedule: each time it lowers the learning rate, training continues from
    /// the best parameters so far (the optimizer's moments kept), not from wherever a noisy
    /// stretch left them. Runs from before the setting read as false.
    #[serde(default)]
    pub lr_restore_best: bool,
    pub seed: u64,
    /// Model θ in the prior's unconstrained space (no leakage outside a bounded support).
    pub unconstrained: bool,
}

impl NpeSettings {
    /// Whether the partition term is masked to the prior's support: the hybrid with
    /// `support_mask` (the ratio surrogate's θ' are prior draws, always inside).
    pub fn masks_support(&self) -> bool {
        self.support_mask && self.method == Method::Hybrid
    }
}

fn one() -> usize {
    1
}

fn half() -> f32 {
    0.5
}

/// The default ratio network: a residual MLP, 64 wide, two residual blocks, ReLU.
pub fn default_ratio_net() -> MlpConfig {
    MlpConfig {
        in_dim: 0,
        out_dim: 1,
        hidden: 64,
        blocks: 2,
        act: crate::kernels::Activation::Relu,
        residual: true,
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    /// JSON has no NaN or ∞: serde_json writes them as `null`, read back as NaN.
    #[serde(deserialize_with = "nan_if_null")]
    pub train_loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub val_loss: f64,
    pub seconds: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub pairs_per_s: f64,
    pub best: bool,
    /// Ratio and hybrid: the mean over the epoch's x of the Monte-Carlo estimate Ẑ(x) of
    /// Z(x) = E[exp f(θ', x)] (1 at the optimum; with `support_mask`, E[exp f · 1_support]),
    /// and its variance across x.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub z_mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub z_var: Option<f64>,
    /// Hybrid: whether this epoch trained the base flow alone (`base_epochs`).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub base_only: bool,
    /// The learning rate this epoch trained with.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lr: Option<f64>,
}

/// Draws `n` fresh (θ, x) pairs (original space, row-major) for seed `seed`: the `--online` source.
pub type Simulator = std::sync::Arc<dyn Fn(usize, u64) -> (Vec<f64>, Vec<f64>) + Send + Sync>;

pub struct TrainOutcome {
    pub model: NpeModel,
    pub history: Vec<EpochMetrics>,
    pub best_epoch: usize,
    pub stopped_early: bool,
    /// The batch size trained with (the requested one, or the smallest training block if that
    /// is smaller).
    pub batch_size: usize,
    /// Micro-batches per optimizer step: 1 unless the whole batch's buffers exceed the adapter's
    /// largest binding; their gradients are summed before one step (the same optimization).
    pub micro_batches: usize,
    /// Training blocks per epoch.
    pub blocks: usize,
    /// Shard sources: what the scan found.
    pub scan: Option<ScanReport>,
    /// The epoch the run resumed after, if it did.
    pub resumed_after: Option<usize>,
}

/// Checkpoints into a run directory.
#[derive(Clone, Debug)]
pub struct CheckpointConfig {
    /// The run directory; the checkpoint is `RUN/checkpoint/`.
    pub run_dir: PathBuf,
    /// Write one after every `every` epochs (0: only at the end and on a fault).
    pub every: usize,
    /// Stored with the checkpoint for the caller (the CLI keeps its arguments here).
    pub cli: Option<serde_json::Value>,
}

/// An injected fault, for testing the fault path (`GKL_GPU_FAULT=lost@5` or `oom@5` in the CLI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The context reports the device lost from this epoch on.
    DeviceLost,
    /// The epoch fails as if a buffer could not be allocated.
    OutOfMemory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    /// The epoch (1-based) at whose start the fault strikes.
    pub epoch: usize,
}

impl Fault {
    /// `lost@K` or `oom@K`.
    pub fn parse(s: &str) -> Option<Fault> {
        let (k, e) = s.trim().split_once('@')?;
        let kind = match k {
            "lost" => FaultKind::DeviceLost,
            "oom" => FaultKind::OutOfMemory,
            _ => return None,
        };
        Some(Fault {
            kind,
            epoch: e.parse().ok().filter(|&e| e > 0)?,
        })
    }
}

/// Everything beyond the data and the settings.
#[derive(Default)]
pub struct TrainOptions {
    /// Fresh simulations every epoch (see [`train_npe_with`]).
    pub online: Option<Simulator>,
    pub checkpoint: Option<CheckpointConfig>,
    /// Continue from this checkpoint (its settings must match, `max_epochs` aside).
    pub resume: Option<Checkpoint>,
    /// Largest GPU block of training rows (θ and x together), in bytes; default
    /// min(64 MiB, the adapter's largest binding).
    pub block_bytes: Option<u64>,
    pub fault: Option<Fault>,
}

mod step_bench;
pub use step_bench::StepBench;

/// Default bound on a GPU-resident block of training rows.
pub const DEFAULT_BLOCK_BYTES: u64 = 64 << 20;

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
    train_npe_with(
        ctx,
        prior,
        theta,
        x,
        dim_x,
        settings,
        task,
        None,
        &mut on_epoch,
    )
}

/// As [`train_npe`]; with `online`, every epoch trains on fresh simulations from it, simulated on
/// CPU threads during the previous epoch's GPU work (the given θ, x then supply the validation set
/// and the z-scores' first estimate). Notices (a batch split to fit the adapter) go to stderr.
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
    let opts = TrainOptions {
        online,
        ..Default::default()
    };
    Ok(train(
        ctx,
        prior,
        TrainSource::Memory { theta, x, dim_x },
        settings,
        task,
        opts,
        on_epoch,
        &mut |m| eprintln!("gkl-gpu: {m}"),
    )?)
}

/// The networks in one parameter arena: [embedding | flow | ratio].
struct Nets {
    emb: Option<Mlp>,
    flow: Option<Flow>,
    ratio: Option<Mlp>,
    /// The hybrid's masked partition term: the prior's support in network space
    /// ([`Preprocess::network_support`]); `None` counts every draw.
    support: Option<GpuTensor>,
}

/// The networks of a run with the data's dimensions and their place in one parameter arena
/// [embedding | flow | ratio] (one Adam launch and one global clip cover all), with the initial
/// values drawn from the seed.
#[derive(Clone)]
struct Model {
    emb: Option<MlpConfig>,
    flow_cfg: Option<FlowConfig>,
    ratio_cfg: Option<MlpConfig>,
    layout: ArenaLayout,
    emb_off: Option<usize>,
    flow_off: Option<usize>,
    ratio_off: Option<usize>,
    flow_len: usize,
    ratio_len: usize,
    init: Vec<f32>,
}

impl Model {
    fn new(ctx: &GpuContext, settings: &NpeSettings, d: usize, dim_x: usize) -> Self {
        let method = settings.method;
        let emb = settings
            .embedding
            .clone()
            .filter(|_| method.has_flow())
            .map(|mut e| {
                e.in_dim = dim_x;
                e
            });
        let context_dim = emb.as_ref().map_or(dim_x, |e| e.out_dim);
        let flow_cfg = method.has_flow().then(|| FlowConfig {
            dim: d,
            context_dim,
            ..settings.flow.clone()
        });
        let ratio_cfg = method.has_ratio().then(|| {
            let mut r = settings.ratio.clone().unwrap_or_else(default_ratio_net);
            r.in_dim = d + dim_x;
            r.out_dim = 1;
            r
        });
        let mut rng = StdRng::seed_from_u64(settings.seed ^ 0x494e_4954_5741_4954);
        let mut layout = ArenaLayout::new(ctx);
        let emb_off = emb
            .as_ref()
            .map(|e| layout.reserve(Mlp::model_len(e, layout.align)));
        let flow_len = flow_cfg.as_ref().map_or(0, |f| f.arena_len(layout.align));
        let flow_off = flow_cfg.as_ref().map(|_| layout.reserve(flow_len));
        let ratio_len = ratio_cfg
            .as_ref()
            .map_or(0, |r| Mlp::model_len(r, layout.align));
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
        Model {
            emb,
            flow_cfg,
            ratio_cfg,
            layout,
            emb_off,
            flow_off,
            ratio_off,
            flow_len,
            ratio_len,
            init,
        }
    }

    /// The networks as views into `arena` (which holds this model's layout). `support`: the
    /// hybrid's masked partition term ([`NpeSettings::masks_support`]), the prior's support in
    /// network space [lo…, hi…].
    fn nets(
        &self,
        ctx: &GpuContext,
        arena: &ParamArena,
        support: Option<&[f64]>,
    ) -> GpuResult<Nets> {
        let align = self.layout.align;
        let support = support
            .map(|b| {
                let v: Vec<f32> = b.iter().map(|&x| x as f32).collect();
                ctx.tensor_from("hybrid-support", &v)
            })
            .transpose()?;
        Ok(Nets {
            support,
            emb: match (&self.emb, self.emb_off) {
                (Some(e), Some(off)) => {
                    let (p, g) = arena.block(off, Mlp::model_len(e, align));
                    Some(Mlp::from_views(e.clone(), 1, p, g, align))
                }
                _ => None,
            },
            flow: match (&self.flow_cfg, self.flow_off) {
                (Some(f), Some(off)) => {
                    let (fp, fg) = arena.block(off, self.flow_len);
                    Some(Flow::new(ctx, f.clone(), fp, fg)?)
                }
                _ => None,
            },
            ratio: match (&self.ratio_cfg, self.ratio_off) {
                (Some(r), Some(off)) => {
                    let (p, g) = arena.block(off, self.ratio_len);
                    Some(Mlp::from_views(r.clone(), 1, p, g, align))
                }
                _ => None,
            },
        })
    }
}

/// Plans and buffers a training graph's dispatches bind (kept alive with it).
type TrainKeep = (
    Option<MlpPlan>,
    Option<FlowTrainPlan>,
    Option<RatioTerm>,
    Vec<GpuTensor>,
    Vec<wgpu::Buffer>,
);
/// Plans and buffers a validation graph's dispatches bind.
type ValKeep = (
    Option<MlpPlan>,
    Option<FlowLogProbPlan>,
    Option<RatioTerm>,
    Vec<wgpu::Buffer>,
);

/// How an optimizer step processes its batch of `batch` rows: as `count` micro-batches of
/// `rows` rows (the last may hold fewer, see [`Split::valid`]) whose gradients are summed on the
/// GPU before one optimizer step. Every loss term is scaled by 1/batch, so the sum is the whole
/// batch's mean gradient. `count` is 1 unless the whole batch's buffers exceed the adapter's
/// largest binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Split {
    batch: usize,
    rows: usize,
    count: usize,
}

impl Split {
    /// `batch` rows in (at most) `parts` micro-batches of ⌈batch / parts⌉ rows.
    fn new(batch: usize, parts: usize) -> Self {
        let batch = batch.max(1);
        let rows = batch.div_ceil(parts.clamp(1, batch));
        Split {
            batch,
            rows,
            count: batch.div_ceil(rows),
        }
    }

    /// The first row of micro-batch `i` within the batch.
    fn offset(&self, i: usize) -> usize {
        i * self.rows
    }

    /// Rows of micro-batch `i` that belong to the batch; the rest of a short last micro-batch is
    /// padding (rows of the next batch) whose loss terms are masked to exactly zero gradient.
    fn valid(&self, i: usize) -> usize {
        self.rows.min(self.batch - self.offset(i))
    }
}

/// The buffers one ratio term reads and accumulates into.
struct RatioInputs<'a> {
    /// θ rows [b, pad4(d)] and x rows [b, pad4(dx)] (network space).
    theta: &'a GpuTensor,
    x: &'a GpuTensor,
    /// The base flow's context for those rows (hybrid draws).
    context: &'a GpuTensor,
    /// (Σ −f, Σ Ẑ, Σ Ẑ²) are added here.
    acc: &'a GpuTensor,
    /// Contrastive θ' [b·K, pad4(d)] written by other launches (the ratio surrogate's θ' of a
    /// split batch, gathered from the whole batch); `None`: the other rows of these `b` (ratio),
    /// or base-flow draws (hybrid).
    given: Option<&'a GpuTensor>,
    /// Hybrid training with [`BaseGradient::Reparameterized`]: the gradient reaches the base flow
    /// through its draws, added to the flow's gradient block and, with `Some`, to the context's
    /// gradient [b, pad4(context)] (the embedding net's upstream gradient).
    reparam: Option<Option<&'a GpuTensor>>,
    /// The hybrid's masked partition term: the prior's support in network space (see
    /// `NpeSettings::support_mask`); applies to base-flow draws only.
    support: Option<&'a GpuTensor>,
}

/// The generalized-KL ratio term for `p.b` rows, as recorded launches: contrastive θ' (other rows,
/// or with `base` K draws of the base flow per x), the ratio net on joint and contrastive rows,
/// and the loss. With a `step_counter` it is a training term: the draws change every optimizer
/// step and the backward pass writes the ratio net's gradients (and with `io.reparam` adds the
/// gradient through the draws to the base flow's and the context's). Without one it is an
/// evaluation: one fixed stream, forward only. `dispatches[i]` is micro-batch `i` of `split`
/// (`p.b` = `split.rows`): the loss is scaled by 1/`split.batch`, counts the micro-batch's valid
/// rows only, and base-flow draws are those of the same rows of the whole batch.
struct RatioTerm {
    dispatches: Vec<Vec<Dispatch>>,
    _keep: (
        MlpPlan,
        Option<FlowSamplePlan>,
        Option<FlowInverseGradPlan>,
        Vec<wgpu::Buffer>,
    ),
}

#[allow(clippy::too_many_arguments)]
fn ratio_term(
    ctx: &GpuContext,
    ratio: &Mlp,
    base: Option<&Flow>,
    p: GklParams,
    split: Split,
    io: RatioInputs,
    stream_seed: u64,
    step_counter: Option<&GpuTensor>,
) -> GpuResult<RatioTerm> {
    debug_assert_eq!(p.b as usize, split.rows);
    let train = step_counter.is_some();
    let kc = p.k as usize;
    let label = if train { "gkl-train" } else { "gkl-val" };
    let p = p.micro(split.batch, split.rows);
    let uni = ctx.uniform(label, &p);
    let reparam = io.reparam.filter(|_| train && base.is_some());
    let plan = if reparam.is_some() {
        MlpPlan::with_input_grad(ctx, ratio, p.rows())?
    } else if train {
        MlpPlan::new(ctx, ratio, p.rows())?
    } else {
        MlpPlan::inference(ctx, ratio, p.rows())?
    };
    let mut draws = base
        .map(|f| {
            FlowSamplePlan::with_options(
                ctx,
                f,
                p.b as usize * kc,
                io.context,
                FlowSampleOptions {
                    ctx_div: kc,
                    step_counter,
                    ..Default::default()
                },
            )
        })
        .transpose()?;
    let mut unis = vec![];
    // The base-flow draws of each micro-batch: the rows of the whole batch it stands for.
    let mut draw_d: Vec<Option<Dispatch>> = vec![None; split.count];
    if let Some(dp) = &mut draws {
        let own = dp.dispatches(ctx, stream_seed, 0)[0].clone();
        for (i, slot) in draw_d.iter_mut().enumerate() {
            *slot = Some(if split.offset(i) == 0 {
                own.clone()
            } else {
                let (d, u) = dp.at_row_offset(ctx, split.offset(i) * kc)?;
                unis.push(u);
                d
            });
        }
    }
    let contrast = match (io.given, &draws) {
        (Some(t), _) => Contrast::Draws(t),
        (None, Some(dp)) => Contrast::Draws(&dp.samples),
        (None, None) => Contrast::Batch,
    };
    let pairs = gkl::pairs(ctx, &uni, &p, io.theta, io.x, contrast, &plan.x)?;
    let mask = match (io.support, &draws) {
        (Some(bounds), Some(dp)) => Some(SupportMask {
            bounds,
            draws: &dp.samples,
        }),
        _ => None,
    };
    let loss = gkl::loss(ctx, &uni, &plan.y, &plan.dy, io.acc, train, mask)?;
    // dL/dθ' = dL/df · ∂f/∂θ': the θ columns of the ratio net's contrastive input rows (rows
    // b + j of its input gradient, j = i·K + k as the draws are laid out), through the inverse.
    let through = match (reparam, base, &draws, &plan.dx) {
        (Some(dcontext), Some(flow), Some(dp), Some(dx)) => Some(FlowInverseGradPlan::new(
            ctx,
            flow,
            p.b as usize * kc,
            &dp.samples,
            io.context,
            dx,
            FlowInverseGradOptions {
                ctx_div: kc,
                grad_off: p.b as usize,
                grad_stride: 4 * p.in4 as usize,
                dcontext,
                accumulate: true,
            },
        )?),
        _ => None,
    };
    let mut dispatches = vec![];
    for (i, dd) in draw_d.into_iter().enumerate() {
        let mut list: Vec<Dispatch> = dd.into_iter().collect();
        list.push(pairs.clone());
        list.extend(plan.forward.iter().cloned());
        let valid = split.valid(i);
        if valid == split.rows {
            list.push(loss.clone());
        } else {
            let u = ctx.uniform(label, &p.micro(split.batch, valid));
            list.push(gkl::loss(ctx, &u, &plan.y, &plan.dy, io.acc, train, mask)?);
            unis.push(u);
        }
        list.extend(plan.backward.iter().cloned());
        if let Some(t) = &through {
            list.extend(t.dispatches.iter().cloned());
        }
        dispatches.push(list);
    }
    unis.push(uni);
    Ok(RatioTerm {
        dispatches,
        _keep: (plan, draws, through, unis),
    })
}

/// The per-step training graph for one batch size, reading a resident block of rows.
struct TrainGraph {
    batch: usize,
    split: Split,
    theta_blk: GpuTensor,
    x_blk: GpuTensor,
    perm: GpuTensor,
    /// Every gather launch's uniform and its value (the block's rows and steps change per block).
    gathers: Vec<(wgpu::Buffer, GatherParams)>,
    full_step: Vec<Dispatch>,
    base_step: Vec<Dispatch>,
    /// Launches of `full_step` before the optimizer's: the step's gradient.
    full_grad_len: usize,
    _keep: TrainKeep,
}

struct Accs {
    acc: GpuTensor,
    tr: GpuTensor,
    val: GpuTensor,
    rtr: GpuTensor,
    rval: GpuTensor,
}

impl Accs {
    /// [0]: train Σ log q, [64]: validation Σ log q; [128..131], [192..195]: the ratio term's
    /// sums (Σ −f, Σ Ẑ, Σ Ẑ²) for training and validation.
    fn new(ctx: &GpuContext, label: &str) -> GpuResult<Self> {
        let acc = ctx.tensor_zeros(label, 256)?;
        Ok(Accs {
            tr: acc.view("acc-train", 0, 1),
            val: acc.view("acc-val", 64, 1),
            rtr: acc.view("acc-ratio-train", 128, 4),
            rval: acc.view("acc-ratio-val", 192, 4),
            acc,
        })
    }
}

/// The optimizer the settings ask for, over `arena`.
fn new_adam(ctx: &GpuContext, settings: &NpeSettings, arena: &ParamArena) -> GpuResult<Adam> {
    let config = AdamConfig {
        lr: settings.lr,
        max_norm: settings.clip_norm,
        weight_decay: settings.weight_decay,
        ..Default::default()
    };
    Adam::new(ctx, config, &arena.params, &arena.grads)
}

/// Builds the step graph for `batch` rows in as few micro-batches as fit the adapter (one,
/// unless a buffer of the whole batch exceeds the largest binding); `build` makes the graph of
/// one split. Also returns why the batch was split, if it was.
fn fitted_train_graph(
    batch: usize,
    mut build: impl FnMut(Split) -> GpuResult<TrainGraph>,
) -> GpuResult<(TrainGraph, Option<String>)> {
    let mut parts = 1;
    let mut first_failure = None;
    loop {
        let split = Split::new(batch, parts);
        match build(split) {
            Ok(g) => return Ok((g, first_failure)),
            Err(GpuError::BufferTooLarge { label, bytes, max }) if split.rows > 1 => {
                first_failure.get_or_insert(format!(
                    "buffer '{label}' of {bytes} bytes, more than the adapter's largest binding ({max} bytes)"
                ));
                // Buffers grow about linearly with the rows: aim at the rows that would fit, and
                // take fewer rows in any case (so the search ends).
                let fit = (split.rows as u128 * max as u128 / bytes.max(1) as u128) as usize;
                parts = batch.div_ceil(fit.clamp(1, split.rows - 1)).max(parts + 1);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The gradient arena and how much of it the base step (no ratio term) writes.
struct Grads<'a> {
    all: &'a GpuTensor,
    base_len: usize,
}

#[allow(clippy::too_many_arguments)]
fn train_graph(
    ctx: &GpuContext,
    nets: &Nets,
    adam: &Adam,
    method: Method,
    kc: usize,
    split: Split,
    block_rows: usize,
    d: usize,
    dim_x: usize,
    seed: u64,
    accs: &Accs,
    grads: &Grads,
    base_gradient: BaseGradient,
) -> GpuResult<TrainGraph> {
    let batch = split.rows; // rows of the step graph: the micro-batch
    let micro = split.count > 1;
    let (d4, dx4) = (pad4(d), pad4(dim_x));
    let theta_blk = ctx.tensor_zeros("npe-theta-block", block_rows * d4)?;
    let x_blk = ctx.tensor_zeros("npe-x-block", block_rows * dx4)?;
    let emb_plan = nets
        .emb
        .as_ref()
        .map(|m| MlpPlan::new(ctx, m, batch))
        .transpose()?;
    let mut keep_t = vec![];
    let mut keep_u = vec![];
    let xb = match &emb_plan {
        Some(p) => p.x.clone(),
        None => ctx.tensor_zeros("npe-x-batch", batch * dx4)?,
    };
    let (context, dcontext) = match &emb_plan {
        Some(p) => (p.y.clone(), p.dy.clone()),
        None => (
            xb.clone(),
            ctx.tensor_zeros("npe-dcontext-unused", batch * dx4)?,
        ),
    };
    keep_t.extend([xb.clone(), dcontext.clone()]);
    let mut fplan = nets
        .flow
        .as_ref()
        .map(|f| FlowTrainPlan::new(ctx, f, batch, &context, &dcontext))
        .transpose()?;
    if let Some(fp) = fplan.as_mut().filter(|_| micro) {
        fp.set_scale(ctx, 1.0 / split.batch as f32);
    }
    let theta_b = match &fplan {
        Some(p) => p.theta.clone(),
        None => ctx.tensor_zeros("ratio-theta-batch", batch * d4)?,
    };
    keep_t.push(theta_b.clone());
    let perm = ctx.tensor_zeros("npe-perm", block_rows)?;
    let steps = block_rows.div_ceil(split.batch);
    let mut gathers: Vec<(wgpu::Buffer, GatherParams)> = vec![];
    let mut gather = |label: &str, p: GatherParams| -> wgpu::Buffer {
        let u = ctx.uniform(label, &p);
        gathers.push((u.clone(), p));
        u
    };
    // Contrastive θ' of the ratio surrogate when the batch is split: the other rows of the whole
    // batch, rolled exactly as an unsplit batch takes them, gathered from the resident block.
    let theta_neg = (micro && method == Method::Ratio)
        .then(|| ctx.tensor_zeros("ratio-theta-contrastive", batch * kc * d4))
        .transpose()?;
    let ratio_t = nets
        .ratio
        .as_ref()
        .map(|r| {
            ratio_term(
                ctx,
                r,
                nets.flow.as_ref().filter(|_| method == Method::Hybrid),
                GklParams::new(batch, kc, d, dim_x),
                split,
                RatioInputs {
                    theta: &theta_b,
                    x: &xb,
                    context: &context,
                    acc: &accs.rtr,
                    given: theta_neg.as_ref(),
                    reparam: (method == Method::Hybrid
                        && base_gradient == BaseGradient::Reparameterized)
                        .then(|| emb_plan.as_ref().map(|_| &dcontext)),
                    support: nets.support.as_ref(),
                },
                seed,
                Some(&adam.state),
            )
        })
        .transpose()?;
    // The gradient sum of the micro-batches: acc = g after the first, acc += g after the middle
    // ones, g = acc + g after the last, so the optimizer reads `grads` as usual. The base step
    // (no ratio term yet) sums only the gradients it writes.
    let gacc = micro
        .then(|| ctx.tensor_zeros("npe-grad-acc", grads.all.len))
        .transpose()?;
    let mut accumulate = |n: usize| -> GpuResult<Vec<Dispatch>> {
        let Some(acc) = &gacc else { return Ok(vec![]) };
        let g = grads.all.view("grads", 0, n);
        let a = acc.view("grad-acc", 0, n);
        let first = ctx.uniform("accumulate-first", &EwParams::accumulate(n, false));
        let add = ctx.uniform("accumulate-add", &EwParams::accumulate(n, true));
        let ds = (0..split.count)
            .map(|i| match i {
                0 => elementwise::accumulate(ctx, &first, n, &g, &a),
                i if i + 1 < split.count => elementwise::accumulate(ctx, &add, n, &g, &a),
                _ => elementwise::accumulate(ctx, &add, n, &a, &g),
            })
            .collect::<GpuResult<Vec<_>>>()?;
        keep_u.extend([first, add]);
        Ok(ds)
    };
    let acc_full = accumulate(grads.all.len)?;
    let acc_base = accumulate(grads.base_len)?;
    let rp_tr = ctx.uniform("reduce-train", &ReduceParams::row_major(batch, 1, 1));
    let mut base_d: Vec<Vec<Dispatch>> = vec![];
    let mut full_d: Vec<Vec<Dispatch>> = vec![];
    for i in 0..split.count {
        let (off, valid) = (split.offset(i), split.valid(i));
        let gp = |w4: usize| {
            GatherParams::new(split.batch, w4 / 4, block_rows, steps, 1).micro(
                split.batch,
                off,
                batch,
            )
        };
        let (gpt, gpx) = (gp(d4), gp(dx4));
        let gpt_buf = gather("gather-theta", gpt);
        let gpx_buf = gather("gather-x", gpx);
        let mut step: Vec<Dispatch> = vec![
            gather::gather_rows(
                ctx,
                &gpt_buf,
                &gpt,
                &theta_blk,
                &perm,
                &adam.state,
                &theta_b,
            )?,
            gather::gather_rows(ctx, &gpx_buf, &gpx, &x_blk, &perm, &adam.state, &xb)?,
        ];
        if let Some(p) = &emb_plan {
            step.extend(p.forward.iter().cloned());
        }
        if let (Some(fp), Some(flow)) = (&fplan, &nets.flow) {
            step.extend(fp.forward.iter().cloned());
            let rp = if valid == batch {
                rp_tr.clone()
            } else {
                let u = ctx.uniform("reduce-train", &ReduceParams::row_major(valid, 1, 1));
                keep_u.push(u.clone());
                u
            };
            step.push(reduce::reduce_cols(
                ctx,
                &rp,
                1,
                ReduceOp::Sum,
                true,
                &fp.log_prob,
                &accs.tr,
            )?);
            if valid == batch {
                step.extend(fp.backward.iter().cloned());
            } else {
                // The padding rows of a short last micro-batch: weight 0, exactly zero gradient
                // (also into the embedding net, through dcontext).
                let w: Vec<f32> = (0..batch).map(|r| (r < valid) as u8 as f32).collect();
                let wt = ctx.tensor_from("npe-row-mask", &w)?;
                step.extend(fp.weighted_backward(ctx, flow, &dcontext, &wt)?);
                keep_t.push(wt);
            }
        }
        // The embedding net's backward comes last: with a reparameterized base gradient the
        // ratio term adds to its upstream gradient (dcontext).
        let emb_bwd: Vec<Dispatch> = emb_plan.as_ref().map_or(vec![], |p| p.backward.clone());
        let mut full = step.clone();
        if let Some(neg) = &theta_neg {
            let gpc = gpt.contrastive(kc);
            let u = gather("gather-contrastive", gpc);
            full.push(gather::gather_contrast(
                ctx,
                &u,
                &gpc,
                &theta_blk,
                &perm,
                &adam.state,
                neg,
            )?);
        }
        if let Some(t) = &ratio_t {
            full.extend(t.dispatches[i].iter().cloned());
        }
        full.extend(emb_bwd.iter().cloned());
        full.extend(acc_full.get(i).cloned());
        step.extend(emb_bwd);
        step.extend(acc_base.get(i).cloned());
        base_d.push(step);
        full_d.push(full);
    }
    keep_t.extend(theta_neg);
    keep_t.extend(gacc);
    keep_u.push(rp_tr);
    let adam_d: Vec<Dispatch> = adam.dispatches().into_iter().cloned().collect();
    let full_grad_len = full_d.iter().map(Vec::len).sum();
    let full_step: Vec<Dispatch> = full_d.into_iter().flatten().chain(adam_d.clone()).collect();
    let base_step: Vec<Dispatch> = base_d.into_iter().flatten().chain(adam_d).collect();
    Ok(TrainGraph {
        batch: split.batch,
        split,
        theta_blk,
        x_blk,
        perm,
        gathers,
        full_step,
        base_step,
        full_grad_len,
        _keep: (emb_plan, fplan, ratio_t, keep_t, keep_u),
    })
}

/// One training step's gradient without the optimizer's step, for tests of the training graph:
/// what [`probe_step_gradient`] returns.
#[doc(hidden)]
pub struct StepProbe {
    /// The parameter arena (the seed's initial values) and the gradient the step wrote.
    pub params: Vec<f32>,
    pub grads: Vec<f32>,
    /// Each network's configuration (with the data's dimensions) and block offset in the arenas.
    pub embedding: Option<(MlpConfig, usize)>,
    pub flow: Option<(FlowConfig, usize)>,
    pub ratio: Option<(MlpConfig, usize)>,
    pub arena_align: usize,
    pub micro_batches: usize,
}

/// Runs the training graph of `settings` once on one batch — `theta` [rows × d] and `x`
/// [rows × dim_x] in the networks' space, in this order — split into `micro_batches`, and
/// returns the gradient before the optimizer's step (the full objective: `base_epochs` does not
/// apply). The step's draws are those of optimizer step 0 with the settings' seed, the
/// hybrid's base draws z[j, i] = element j·d + i of `RngStream { seed, offset: 0, stream:
/// SAMPLE_STREAM }.normal`, draw j = i·K + k belonging to row i. `support` (network space,
/// [lo…, hi…]) masks the hybrid's partition term when `settings.support_mask` is set.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn probe_step_gradient(
    ctx: &GpuContext,
    settings: &NpeSettings,
    d: usize,
    dim_x: usize,
    theta: &[f64],
    x: &[f64],
    micro_batches: usize,
    support: Option<&[f64]>,
) -> GpuResult<StepProbe> {
    let rows = theta.len() / d.max(1);
    if rows == 0 || x.len() != rows * dim_x || theta.len() != rows * d {
        return Err(GpuError::InvalidArgument(format!(
            "probe: θ ({} values) and x ({} values) are not one batch of rows of {d} and {dim_x}",
            theta.len(),
            x.len()
        )));
    }
    let method = settings.method;
    let model = Model::new(ctx, settings, d, dim_x);
    let arena = ParamArena::new(ctx, &model.init)?;
    let nets = model.nets(ctx, &arena, support.filter(|_| settings.masks_support()))?;
    let adam = new_adam(ctx, settings, &arena)?;
    let accs = Accs::new(ctx, "probe-loss-acc")?;
    let grads = Grads {
        all: &arena.grads,
        base_len: arena.grads.len,
    };
    let g = train_graph(
        ctx,
        &nets,
        &adam,
        method,
        settings.contrastive,
        Split::new(rows, micro_batches),
        rows,
        d,
        dim_x,
        settings.seed,
        &accs,
        &grads,
        settings.base_gradient,
    )?;
    ctx.write(
        &g.theta_blk,
        0,
        &crate::kernels::layout::pack(theta, rows, d),
    )?;
    ctx.write(&g.x_blk, 0, &crate::kernels::layout::pack(x, rows, dim_x))?;
    ctx.write(&g.perm, 0, &(0..rows as u32).collect::<Vec<u32>>())?;
    for (buf, p) in &g.gathers {
        let p = GatherParams {
            n_train: rows as u32,
            steps: 1,
            ..*p
        };
        ctx.write_uniform(buf, &p);
    }
    ctx.run(&g.full_step[..g.full_grad_len].iter().collect::<Vec<_>>())?;
    let cfg_off = |c: &Option<MlpConfig>, o: Option<usize>| c.clone().zip(o);
    Ok(StepProbe {
        params: ctx.read(&arena.params)?,
        grads: ctx.read(&arena.grads)?,
        embedding: cfg_off(&model.emb, model.emb_off),
        flow: model.flow_cfg.clone().zip(model.flow_off),
        ratio: cfg_off(&model.ratio_cfg, model.ratio_off),
        arena_align: model.layout.align,
        micro_batches: g.split.count,
    })
}

/// The validation graph for one chunk of `rows` validation rows (log q only: no tape, no backward).
struct ValGraph {
    rows: usize,
    xv: GpuTensor,
    th: GpuTensor,
    full: Vec<Dispatch>,
    base: Vec<Dispatch>,
    _keep: ValKeep,
}

#[allow(clippy::too_many_arguments)]
fn val_graph(
    ctx: &GpuContext,
    nets: &Nets,
    method: Method,
    kc: usize,
    rows: usize,
    d: usize,
    dim_x: usize,
    seed: u64,
    accs: &Accs,
) -> GpuResult<ValGraph> {
    let (d4, dx4) = (pad4(d), pad4(dim_x));
    let vemb = nets
        .emb
        .as_ref()
        .map(|m| MlpPlan::new(ctx, m, rows))
        .transpose()?;
    let xv = match &vemb {
        Some(p) => p.x.clone(),
        None => ctx.tensor_zeros("npe-x-val", rows * dx4)?,
    };
    let vctx = match &vemb {
        Some(p) => p.y.clone(),
        None => xv.clone(),
    };
    let mut base: Vec<Dispatch> = vec![];
    if let Some(p) = &vemb {
        base.extend(p.forward.iter().cloned());
    }
    let vplan = nets
        .flow
        .as_ref()
        .map(|f| FlowLogProbPlan::new(ctx, f, rows, &vctx))
        .transpose()?;
    let th = match &vplan {
        Some(vp) => vp.theta.clone(),
        None => ctx.tensor_zeros("ratio-theta-val", rows * d4)?,
    };
    let mut unis = vec![];
    if let Some(vp) = &vplan {
        let rp_val = ctx.uniform("reduce-val", &ReduceParams::row_major(rows, 1, 1));
        base.push(vp.dispatch.clone());
        // Accumulates: the sums start at zero every epoch and chunks add up.
        base.push(reduce::reduce_cols(
            ctx,
            &rp_val,
            1,
            ReduceOp::Sum,
            true,
            &vp.log_prob,
            &accs.val,
        )?);
        unis.push(rp_val);
    }
    // The validation loss estimates E[exp f] with more contrastive draws per x than training
    // does: with K = 1 its noise alone (heavy-tailed exp f) decides early stopping. Other rows of
    // the validation set are free (ratio); base-flow draws cost a flow inverse each (hybrid).
    let kc = match method {
        Method::Hybrid => kc.max(VAL_CONTRASTIVE_HYBRID),
        _ => kc
            .max(VAL_CONTRASTIVE_RATIO)
            .min(rows.saturating_sub(1))
            .max(1),
    };
    // Fixed validation draws (same stream every epoch, no step counter) keep the
    // early-stopping signal steady.
    let ratio_v = nets
        .ratio
        .as_ref()
        .map(|r| {
            ratio_term(
                ctx,
                r,
                nets.flow.as_ref().filter(|_| method == Method::Hybrid),
                GklParams::new(rows, kc, d, dim_x),
                Split::new(rows, 1),
                RatioInputs {
                    theta: &th,
                    x: &xv,
                    context: &vctx,
                    acc: &accs.rval,
                    given: None,
                    reparam: None,
                    support: nets.support.as_ref(),
                },
                seed ^ 0x5641_4c49_4441_5445,
                None,
            )
        })
        .transpose()?;
    let ratio: Vec<Dispatch> = ratio_v.as_ref().map_or(vec![], |t| t.dispatches.concat());
    let full = base.iter().chain(&ratio).cloned().collect();
    Ok(ValGraph {
        rows,
        xv,
        th,
        full,
        base,
        _keep: (vemb, vplan, ratio_v, unis),
    })
}

/// The host copy of the state after an epoch (what a checkpoint holds).
struct Snapshot {
    epoch: usize,
    params: Vec<f32>,
    best: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    state: [u32; 4],
    best_val: f64,
    best_epoch: usize,
    since_best: usize,
    seconds: f64,
    stopped_early: bool,
    lr: f32,
}

/// Settings that must agree between a checkpoint and the run resuming it (`max_epochs` may grow).
fn settings_key(s: &NpeSettings) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("max_epochs");
    }
    v
}

/// Where an epoch's training blocks come from.
enum Feed {
    /// Packed training rows in memory (sliced per block; uploaded once if there is one block).
    Memory { theta: Vec<f32>, x: Vec<f32> },
    /// Shards streamed from disk each epoch.
    Shards,
}

/// Trains on `source` (see [`crate::training::source`]); see [`TrainOptions`] for online data,
/// checkpoints, resuming, the block bound and fault injection. `on_notice` hears adjustments
/// (a batch split into micro-batches, fewer validation rows) once, before the first epoch.
#[allow(clippy::too_many_arguments)]
pub fn train(
    ctx: &GpuContext,
    prior: &Prior,
    source: TrainSource<'_>,
    settings: &NpeSettings,
    task: Option<&str>,
    opts: TrainOptions,
    on_epoch: &mut dyn FnMut(&EpochMetrics),
    on_notice: &mut dyn FnMut(&str),
) -> TrainResult<TrainOutcome> {
    let d = prior.dim();
    let dim_x = source.dim_x();
    let method = settings.method;
    let kc = settings.contrastive;
    if method.has_ratio() && kc == 0 {
        return Err(TrainError::Invalid(
            "--contrastive must be at least 1".into(),
        ));
    }
    if !(settings.lr_factor > 0.0 && settings.lr_factor <= 1.0) {
        return Err(TrainError::Invalid(format!(
            "--lr-factor must be in (0, 1], got {}",
            settings.lr_factor
        )));
    }
    let sc = scan(
        &source,
        prior,
        settings.unconstrained,
        settings.validation_fraction,
        settings.seed,
    )?;
    let (n_tr, n_val) = (sc.n_train, sc.n_val);
    let pre = sc.pre.clone();
    let data_fp = sc.fingerprint.hex();
    let pre_fp = preprocess_fingerprint(&pre).hex();
    if let Some(ck) = &opts.resume {
        let s = &ck.state;
        let path = opts
            .checkpoint
            .as_ref()
            .map(|c| Checkpoint::dir_of(&c.run_dir))
            .unwrap_or_default();
        let refuse = |problem: String| TrainError::Checkpoint {
            path: path.clone(),
            problem,
        };
        if settings_key(&s.settings) != settings_key(settings) {
            return Err(refuse("its training settings differ from this run's (only the maximum number of epochs may change on resuming)".into()));
        }
        if s.data_fingerprint != data_fp || s.n_train != n_tr || s.n_val != n_val {
            return Err(refuse(format!(
                "the data differ from the data it was trained on (fingerprint {} with {} training and {} validation rows then, {data_fp} with {n_tr} and {n_val} now)",
                s.data_fingerprint, s.n_train, s.n_val
            )));
        }
        if s.preprocess_fingerprint != pre_fp {
            return Err(refuse(
                "the z-score statistics re-derived from the data differ from the stored ones"
                    .into(),
            ));
        }
    }

    let model = Model::new(ctx, settings, d, dim_x);
    let Model {
        emb,
        flow_cfg,
        ratio_cfg,
        emb_off,
        flow_off,
        ratio_off,
        ..
    } = model.clone();
    let layout = model.layout.clone();
    if let Some(ck) = &opts.resume {
        if ck.state.arena_len != model.init.len() {
            return Err(TrainError::Checkpoint {
                path: opts
                    .checkpoint
                    .as_ref()
                    .map(|c| Checkpoint::dir_of(&c.run_dir))
                    .unwrap_or_default(),
                problem: format!(
                    "it holds {} parameters; this architecture has {}",
                    ck.state.arena_len,
                    model.init.len()
                ),
            });
        }
    }
    let arena = ParamArena::new(ctx, &model.init)?;
    let support = settings
        .masks_support()
        .then(|| pre.network_support())
        .flatten();
    let nets = model.nets(ctx, &arena, support.as_deref())?;
    let mut adam = new_adam(ctx, settings, &arena)?;

    // Blocks of training rows within the bound.
    let (d4, dx4) = (pad4(d), pad4(dim_x));
    let limit = ctx
        .limits
        .max_storage_buffer_binding_size
        .min(ctx.limits.max_buffer_size);
    let bound = opts
        .block_bytes
        .unwrap_or(DEFAULT_BLOCK_BYTES)
        .min(limit)
        .max(1);
    let block_rows = ((bound / (4 * (d4 + dx4)) as u64) as usize).max(1);
    let bounds = block_bounds(n_tr, block_rows);
    let blocks = bounds.len() - 1;
    let min_block = bounds.windows(2).map(|w| w[1] - w[0]).min().unwrap_or(n_tr);
    let max_block = bounds.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(n_tr);

    let accs = Accs::new(ctx, "npe-loss-acc")?;
    // The batch in as few micro-batches as fit the adapter (one, unless a buffer of the whole
    // batch exceeds the largest binding): the same optimization either way, see `Split`.
    let wanted = settings.batch_size.max(1);
    let batch = wanted.min(min_block);
    if batch < wanted && blocks > 1 {
        on_notice(&format!("batch size {wanted} is larger than the smallest training block ({min_block} rows); using {batch}"));
    }
    if method == Method::Ratio && kc >= batch {
        return Err(TrainError::Invalid(format!(
            "{kc} contrastive θ' per x are drawn from the other rows of a batch: the batch ({batch}) needs more than {kc} rows"
        )));
    }
    let grads = Grads {
        all: &arena.grads,
        base_len: ratio_off
            .filter(|_| method == Method::Hybrid)
            .unwrap_or(arena.grads.len),
    };
    let (g, first_failure) = fitted_train_graph(batch, |split| {
        train_graph(
            ctx,
            &nets,
            &adam,
            method,
            kc,
            split,
            max_block,
            d,
            dim_x,
            settings.seed,
            &accs,
            &grads,
            settings.base_gradient,
        )
    })?;
    let split = g.split;
    if let Some(why) = first_failure {
        let last = split.valid(split.count - 1);
        on_notice(&format!(
            "batch size {batch} needs {why}; each step splits its batch into {} micro-batches of {} rows{} and sums their gradients before one optimizer step (the same optimization as the whole batch)",
            split.count,
            split.rows,
            if last < split.rows {
                format!(" (the last {last})")
            } else {
                String::new()
            }
        ));
    }
    // Validation in chunks of equal size that fit; at most chunks − 1 rows are left out.
    let mut chunks = 1;
    let vg = loop {
        let rows = n_val / chunks;
        if rows == 0 {
            return Err(TrainError::Invalid(
                "the validation set does not fit the adapter in any chunk size".into(),
            ));
        }
        match val_graph(ctx, &nets, method, kc, rows, d, dim_x, settings.seed, &accs) {
            Ok(v) => break v,
            Err(GpuError::BufferTooLarge { .. }) => chunks *= 2,
            Err(e) => return Err(e.into()),
        }
    };
    let n_val_used = vg.rows * chunks;
    if chunks > 1 {
        on_notice(&format!(
            "validating in {chunks} chunks of {} rows (the adapter's binding limit){}",
            vg.rows,
            if n_val_used < n_val {
                format!(
                    "; {} of {n_val} validation rows left out",
                    n_val - n_val_used
                )
            } else {
                String::new()
            }
        ));
    }
    if method == Method::Ratio && kc >= batch.min(vg.rows) {
        return Err(TrainError::Invalid(format!(
            "{kc} contrastive θ' per x are drawn from the other rows of a batch: the batch ({batch}) and the validation set ({}) need more than {kc} rows",
            vg.rows
        )));
    }
    if chunks == 1 {
        ctx.write(&vg.xv, 0, &sc.val_x[..vg.rows * dx4])?;
        ctx.write(&vg.th, 0, &sc.val_theta[..vg.rows * d4])?;
    }
    let feed = match sc.train {
        Some((t, x)) => Feed::Memory { theta: t, x },
        None => Feed::Shards,
    };
    if let (Feed::Memory { theta, x }, 1) = (&feed, blocks) {
        ctx.write(&g.theta_blk, 0, theta)?;
        ctx.write(&g.x_blk, 0, x)?;
    }
    let best = ctx.tensor_zeros("npe-best-params", arena.len())?;

    // State: fresh, or the checkpoint's.
    let mut history: Vec<EpochMetrics> = vec![];
    let mut best_val = f64::INFINITY;
    let mut best_epoch = 0;
    let mut since_best = 0;
    let mut stopped_early = false;
    let mut seconds0 = 0.0;
    let mut first_epoch = 1;
    let resumed_after = opts.resume.as_ref().map(|c| c.state.epoch);
    if let Some(ck) = &opts.resume {
        ctx.write(&arena.params, 0, &ck.params)?;
        ctx.write(&best, 0, &ck.best)?;
        ctx.write(&adam.m, 0, &ck.adam_m)?;
        ctx.write(&adam.v, 0, &ck.adam_v)?;
        ctx.write(&adam.state, 0, &ck.adam_state)?;
        history = ck.state.history.clone();
        best_val = f64::from_bits(ck.state.best_val_bits);
        best_epoch = ck.state.best_epoch;
        since_best = ck.state.since_best;
        if let Some(bits) = ck.state.lr_bits {
            adam.set_lr(ctx, f32::from_bits(bits));
        }
        stopped_early = ck.state.stopped_early;
        seconds0 = ck.state.seconds;
        first_epoch = ck.state.epoch + 1;
        if batch != ck.state.batch_size {
            on_notice(&format!("the checkpoint trained with batch size {}, this run uses {batch}: the run continues, but not bit for bit", ck.state.batch_size));
        } else if split.count != ck.state.micro_batches {
            on_notice(&format!("the checkpoint split each batch into {} micro-batches, this adapter needs {}: the run continues with the same optimization, but not bit for bit (float sums in another order)", ck.state.micro_batches, split.count));
        }
    }
    let base_epochs = if method == Method::Hybrid {
        settings.base_epochs
    } else {
        0
    };

    // Online: a producer thread simulates the next epoch's rows while the GPU trains on this
    // one. Epoch e ≥ 2 trains on block e − 1 (seeded from it), so a resumed run draws the same.
    let fresh = opts
        .online
        .clone()
        .filter(|_| !stopped_early && first_epoch <= settings.max_epochs)
        .map(|sim| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<f32>, Vec<f32>)>(1);
            let pre = pre.clone();
            let seed = settings.seed;
            let first_block = (first_epoch as u64).saturating_sub(1).max(1);
            std::thread::spawn(move || {
                for block in first_block.. {
                    let (th, xs) = sim(
                        n_tr,
                        seed.wrapping_add(block.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                    );
                    if tx.send(pack_rows(&pre, &th, &xs, d, dim_x)).is_err() {
                        break;
                    }
                }
            });
            rx
        });

    let ck_cfg = opts.checkpoint.clone();
    let mut last_saved: Option<SavedState> = None;
    let mut snap: Option<Snapshot> = None;
    let save = |s: &Snapshot, history: &[EpochMetrics]| -> TrainResult<SavedState> {
        let c = ck_cfg.as_ref().expect("checkpoints configured");
        let ck = Checkpoint {
            state: CheckpointState {
                format_version: CHECKPOINT_VERSION,
                gkl_gpu_version: env!("CARGO_PKG_VERSION").to_string(),
                epoch: s.epoch,
                stopped_early: s.stopped_early,
                best_val_bits: s.best_val.to_bits(),
                best_epoch: s.best_epoch,
                since_best: s.since_best,
                lr_bits: Some(s.lr.to_bits()),
                seconds: s.seconds,
                adam_step: s.state[0],
                history: history[..s.epoch].to_vec(),
                history_bits: history[..s.epoch]
                    .iter()
                    .map(|m| [m.train_loss.to_bits(), m.val_loss.to_bits()])
                    .collect(),
                settings: settings.clone(),
                batch_size: batch,
                micro_batches: split.count,
                n_train: n_tr,
                n_val,
                arena_len: s.params.len(),
                data_fingerprint: data_fp.clone(),
                preprocess_fingerprint: pre_fp.clone(),
                cli: c.cli.clone(),
            },
            params: s.params.clone(),
            best: s.best.clone(),
            adam_m: s.m.clone(),
            adam_v: s.v.clone(),
            adam_state: s.state,
        };
        let dir = Checkpoint::dir_of(&c.run_dir);
        ck.save(&dir)?;
        Ok(SavedState {
            epoch: s.epoch,
            checkpoint: dir,
        })
    };
    if let (Some(ck), Some(c)) = (&opts.resume, &ck_cfg) {
        last_saved = Some(SavedState {
            epoch: ck.state.epoch,
            checkpoint: Checkpoint::dir_of(&c.run_dir),
        });
    }

    let start = Instant::now();
    let zeros = vec![0f32; 256];
    let mut epoch = first_epoch;
    while epoch <= settings.max_epochs && !stopped_early {
        let t0 = Instant::now();
        let base_only = epoch <= base_epochs;
        if epoch == base_epochs + 1 && base_epochs > 0 {
            // The objective changes when the ratio joins: restart the early-stopping record.
            best_val = f64::INFINITY;
            since_best = 0;
        }
        // One epoch; any error past this point is an interruption with a checkpoint to fall back on.
        let run_epoch = || -> TrainResult<(f64, [f32; 196])> {
            if let Some(f) = opts.fault.filter(|f| f.epoch == epoch) {
                match f.kind {
                    FaultKind::DeviceLost => {
                        ctx.inject_device_loss(&format!("fault injected at epoch {epoch}"))
                    }
                    FaultKind::OutOfMemory => {
                        return Err(GpuError::OutOfMemory {
                            context: format!("fault injected at epoch {epoch}"),
                        }
                        .into())
                    }
                }
            }
            let online_rows = match (&fresh, epoch > 1) {
                (Some(rx), true) => Some(
                    rx.recv()
                        .map_err(|_| TrainError::Invalid("the online simulator stopped".into()))?,
                ),
                _ => None,
            };
            // This epoch's blocks (a rotation of the rows and an order of the blocks, drawn
            // first; nothing with one block), then each block's row order, all from one
            // generator of (seed, epoch).
            let mut order = epoch_rng(settings.seed, epoch);
            let plan = epoch_blocks(&bounds, &mut order);
            let mut streamed = match (&feed, &source) {
                (Feed::Shards, TrainSource::Shards(s)) if online_rows.is_none() => {
                    Some(stream_blocks(
                        (*s).clone(),
                        sc.val_index.clone(),
                        sc.dropped.clone(),
                        pre.clone(),
                        plan.clone(),
                    ))
                }
                _ => None,
            };
            ctx.write(&accs.acc, 0, &zeros)?;
            let step = if base_only {
                &g.base_step
            } else {
                &g.full_step
            };
            let val_d = if base_only { &vg.base } else { &vg.full };
            let mut pairs = 0usize;
            for (k, runs) in plan.iter().enumerate() {
                let rows: usize = runs.iter().map(|r| r.len()).sum();
                if k > 0 {
                    // Let the previous block finish first, so that at most one block's upload
                    // is staged at a time (wgpu frees staging memory as submissions complete);
                    // the reader thread keeps preparing the next block meanwhile.
                    ctx.wait()?;
                }
                let upload = |theta: &[f32], x: &[f32]| -> GpuResult<()> {
                    let mut at = 0;
                    for r in runs {
                        ctx.write(&g.theta_blk, at * d4, &theta[r.start * d4..r.end * d4])?;
                        ctx.write(&g.x_blk, at * dx4, &x[r.start * dx4..r.end * dx4])?;
                        at += r.len();
                    }
                    Ok(())
                };
                match (&online_rows, &feed, &mut streamed) {
                    (Some((t, x)), _, _) => upload(t, x)?,
                    (None, _, Some(rx)) => {
                        let b = rx.recv().map_err(|_| {
                            TrainError::Invalid("the shard reader stopped".into())
                        })??;
                        debug_assert_eq!(b.rows, rows);
                        ctx.write(&g.theta_blk, 0, &b.theta)?;
                        ctx.write(&g.x_blk, 0, &b.x)?;
                    }
                    (None, Feed::Memory { theta, x }, None) if blocks > 1 => upload(theta, x)?,
                    _ => {}
                }
                let steps = rows.div_ceil(g.batch);
                for (buf, p) in &g.gathers {
                    let p = GatherParams {
                        n_train: rows as u32,
                        steps: steps as u32,
                        ..*p
                    };
                    ctx.write_uniform(buf, &p);
                }
                let mut idx: Vec<u32> = (0..rows as u32).collect();
                idx.shuffle(&mut order);
                ctx.write(&g.perm, 0, &idx)?;
                let last = k + 1 == plan.len() && chunks == 1;
                let list: Vec<&Dispatch> = (0..steps)
                    .flat_map(|_| step.iter())
                    .chain(val_d.iter().filter(|_| last))
                    .collect();
                ctx.run(&list)?;
                pairs += steps * g.batch;
            }
            if chunks > 1 {
                for c in 0..chunks {
                    let (lo, hi) = (c * vg.rows, (c + 1) * vg.rows);
                    ctx.write(&vg.xv, 0, &sc.val_x[lo * dx4..hi * dx4])?;
                    ctx.write(&vg.th, 0, &sc.val_theta[lo * d4..hi * d4])?;
                    ctx.run(&val_d.iter().collect::<Vec<_>>())?;
                }
            }
            let sums: Vec<f32> = ctx.read_range(&accs.acc, 0, 196)?;
            Ok((pairs as f64, sums.try_into().expect("196 sums")))
        };
        let (pairs, sums) = match run_epoch() {
            Ok(r) => r,
            Err(cause) => {
                // Save the last good state (the end of the previous epoch) if not saved yet.
                let mut saved = last_saved.clone();
                if let Some(s) = &snap {
                    if saved.as_ref().is_none_or(|l| l.epoch < s.epoch) {
                        saved = Some(save(s, &history)?);
                    }
                }
                return Err(TrainError::Interrupted {
                    cause: Box::new(cause),
                    epoch,
                    saved,
                });
            }
        };
        let mut train_loss = -(sums[0] as f64) / pairs;
        let mut val_loss = -(sums[64] as f64) / n_val_used as f64;
        let (mut z_mean, mut z_var) = (None, None);
        if method.has_ratio() && !base_only {
            train_loss += (sums[128] as f64 + sums[129] as f64) / pairs;
            val_loss += (sums[192] as f64 + sums[193] as f64) / n_val_used as f64;
            let m = sums[129] as f64 / pairs;
            z_mean = Some(m);
            z_var = Some((sums[130] as f64 / pairs - m * m).max(0.0));
        }
        let improved = val_loss < best_val;
        if improved {
            best_val = val_loss;
            best_epoch = epoch;
            since_best = 0;
            ctx.copy(&arena.params, &best)
                .map_err(|e| TrainError::Interrupted {
                    cause: Box::new(e.into()),
                    epoch,
                    saved: last_saved.clone(),
                })?;
        } else {
            since_best += 1;
        }
        let lr_used = adam.config.lr;
        if settings.lr_patience > 0
            && !improved
            && since_best % settings.lr_patience == 0
            && !base_only
        {
            // A plateau: smaller steps from the next epoch on (the schedule is a function of the
            // validation history only, so a resumed run follows it exactly).
            adam.set_lr(ctx, lr_used * settings.lr_factor);
            if settings.lr_restore_best && best_epoch > 0 {
                ctx.copy(&best, &arena.params)
                    .map_err(|e| TrainError::Interrupted {
                        cause: Box::new(e.into()),
                        epoch,
                        saved: last_saved.clone(),
                    })?;
            }
        }
        let m = EpochMetrics {
            epoch,
            train_loss,
            val_loss,
            seconds: seconds0 + start.elapsed().as_secs_f64(),
            pairs_per_s: pairs / t0.elapsed().as_secs_f64(),
            best: improved,
            z_mean,
            z_var,
            base_only,
            lr: Some(lr_used as f64),
        };
        on_epoch(&m);
        history.push(m);
        if !train_loss.is_finite() {
            return Err(TrainError::Invalid(format!(
                "training diverged at epoch {epoch} (loss {train_loss}); try a smaller --lr"
            )));
        }
        if since_best >= settings.patience && !base_only {
            stopped_early = true;
        }
        if let Some(c) = &ck_cfg {
            let read = || -> GpuResult<Snapshot> {
                let st: Vec<u32> = ctx.read(&adam.state)?;
                Ok(Snapshot {
                    epoch,
                    params: ctx.read(&arena.params)?,
                    best: ctx.read(&best)?,
                    m: ctx.read(&adam.m)?,
                    v: ctx.read(&adam.v)?,
                    state: [st[0], st[1], st[2], st[3]],
                    best_val,
                    best_epoch,
                    since_best,
                    seconds: history[epoch - 1].seconds,
                    stopped_early,
                    lr: adam.config.lr,
                })
            };
            snap = Some(read().map_err(|e| TrainError::Interrupted {
                cause: Box::new(e.into()),
                epoch,
                saved: last_saved.clone(),
            })?);
            let end = stopped_early || epoch == settings.max_epochs;
            if end || (c.every > 0 && epoch % c.every == 0) {
                last_saved = Some(save(snap.as_ref().expect("just read"), &history)?);
            }
        }
        epoch += 1;
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
    Ok(TrainOutcome {
        model,
        history,
        best_epoch,
        stopped_early,
        batch_size: batch,
        micro_batches: split.count,
        blocks,
        scan: sc.report,
        resumed_after,
    })
}

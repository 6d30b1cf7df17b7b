//! The trainer's optimizer step on its own, for throughput benchmarks (`gkl-gpu bench
//! throughput`): the networks, parameter arena, optimizer and per-step dispatch list that
//! [`super::train`] builds (its `train_graph`: gather, embedding, flow forward and backward, the
//! ratio term with its contrastive θ' or base-flow draws, micro-batch gradient sums, Adam), over
//! one GPU-resident block of training rows. No validation, early stopping or checkpoints: only
//! the steps, any number per submission (the trainer submits a block's steps at once).

use super::NpeSettings;
use super::{train_graph, Accs, Grads, Nets, Split, TrainGraph};
use crate::kernels::adam::{Adam, AdamConfig};
use crate::models::arena::{ArenaLayout, ParamArena};
use crate::models::flow::cpu::FlowWeights;
use crate::models::flow::{Flow, FlowConfig};
use crate::models::mlp::{Mlp, MlpConfig, MlpWeights};
use crate::runtime::{Dispatch, GpuContext, GpuError, GpuResult};
use crate::training::preprocess::Preprocess;
use crate::training::source::pack_rows;
use crate::training::Method;
use gkl_tasks::Prior;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// The step graph of one method and batch size over a resident block.
pub struct StepBench {
    /// Rows per optimizer step.
    pub batch: usize,
    /// Micro-batches per step (1 unless the batch's buffers exceed the adapter's largest binding).
    pub micro_batches: usize,
    /// Batches in the block (its rows / the batch): the steps of one epoch over it.
    pub steps_per_block: usize,
    /// The architecture with the data's dimensions.
    pub flow: Option<FlowConfig>,
    pub ratio: Option<MlpConfig>,
    pub embedding: Option<MlpConfig>,
    /// The block's rows in network space (z-scored), packed to 4-float rows as uploaded.
    pub theta_packed: Vec<f32>,
    pub x_packed: Vec<f32>,
    pub adam_config: AdamConfig,
    graph: TrainGraph,
    adam: Adam,
    nets: Nets,
    _accs: Accs,
    _arena: ParamArena,
}

impl StepBench {
    /// `theta` [n × d], `x` [n × dim_x] (original space): the block, every row of it a training
    /// row (the z-scores are fitted on them). The batch is `settings.batch_size` (at most n).
    /// Weights are initialized as `train` initializes them.
    pub fn new(
        ctx: &GpuContext,
        prior: &Prior,
        theta: &[f64],
        x: &[f64],
        dim_x: usize,
        settings: &NpeSettings,
    ) -> GpuResult<Self> {
        let d = prior.dim();
        let n = theta.len() / d.max(1);
        if n == 0 || x.len() != n * dim_x {
            return Err(GpuError::InvalidArgument(format!(
                "step bench: θ ({}) and x ({}) must hold the same positive number of rows",
                theta.len(),
                x.len()
            )));
        }
        let method = settings.method;
        let kc = settings.contrastive.max(1);
        let batch = settings.batch_size.clamp(1, n);
        if method == Method::Ratio && kc >= batch {
            return Err(GpuError::InvalidArgument(format!(
                "the ratio surrogate needs a batch larger than K = {kc}"
            )));
        }
        let pre = Preprocess::fit(prior, settings.unconstrained, theta, x, dim_x);
        let (theta_packed, x_packed) = pack_rows(&pre, theta, x, d, dim_x);

        // Architecture and arena, as `train` builds them.
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
            let mut r = settings
                .ratio
                .clone()
                .unwrap_or_else(super::default_ratio_net);
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
        let arena = ParamArena::new(ctx, &init)?;
        let nets = Nets {
            emb: match (&emb, emb_off) {
                (Some(e), Some(off)) => {
                    let (p, g) = arena.block(off, Mlp::model_len(e, layout.align));
                    Some(Mlp::from_views(e.clone(), 1, p, g, layout.align))
                }
                _ => None,
            },
            flow: match (&flow_cfg, flow_off) {
                (Some(f), Some(off)) => {
                    let (fp, fg) = arena.block(off, flow_len);
                    Some(Flow::new(ctx, f.clone(), fp, fg)?)
                }
                _ => None,
            },
            ratio: match (&ratio_cfg, ratio_off) {
                (Some(r), Some(off)) => {
                    let (p, g) = arena.block(off, ratio_len);
                    Some(Mlp::from_views(r.clone(), 1, p, g, layout.align))
                }
                _ => None,
            },
        };
        let adam_config = AdamConfig {
            lr: settings.lr,
            max_norm: settings.clip_norm,
            weight_decay: settings.weight_decay,
            ..Default::default()
        };
        let adam = Adam::new(ctx, adam_config, &arena.params, &arena.grads)?;
        let acc = ctx.tensor_zeros("bench-loss-acc", 256)?;
        let accs = Accs {
            tr: acc.view("acc-train", 0, 1),
            val: acc.view("acc-val", 64, 1),
            rtr: acc.view("acc-ratio-train", 128, 4),
            rval: acc.view("acc-ratio-val", 192, 4),
            acc,
        };
        let grads = Grads {
            all: &arena.grads,
            base_len: ratio_off
                .filter(|_| method == Method::Hybrid)
                .unwrap_or(arena.grads.len),
        };
        // The batch in as few micro-batches as fit the adapter, as `train` searches for them.
        let mut parts = 1;
        let graph = loop {
            let split = Split::new(batch, parts);
            match train_graph(
                ctx,
                &nets,
                &adam,
                method,
                kc,
                split,
                n,
                d,
                dim_x,
                settings.seed,
                &accs,
                &grads,
                settings.base_gradient,
            ) {
                Ok(g) => break g,
                Err(GpuError::BufferTooLarge { bytes, max, .. }) if split.rows > 1 => {
                    let fit = (split.rows as u128 * max as u128 / bytes.max(1) as u128) as usize;
                    parts = batch.div_ceil(fit.clamp(1, split.rows - 1)).max(parts + 1);
                }
                Err(e) => return Err(e),
            }
        };
        ctx.write(&graph.theta_blk, 0, &theta_packed)?;
        ctx.write(&graph.x_blk, 0, &x_packed)?;
        let mut idx: Vec<u32> = (0..n as u32).collect();
        idx.shuffle(&mut StdRng::seed_from_u64(settings.seed));
        ctx.write(&graph.perm, 0, &idx)?;
        Ok(StepBench {
            batch: graph.batch,
            micro_batches: graph.split.count,
            steps_per_block: n.div_ceil(graph.batch),
            flow: flow_cfg,
            ratio: ratio_cfg,
            embedding: emb,
            theta_packed,
            x_packed,
            adam_config,
            graph,
            adam,
            nets,
            _accs: accs,
            _arena: arena,
        })
    }

    /// Queues one submission of `steps` optimizer steps (does not wait); each step takes the
    /// block's next batch, wrapping around after [`StepBench::steps_per_block`].
    pub fn submit(&self, ctx: &GpuContext, steps: usize) -> GpuResult<()> {
        let list: Vec<&Dispatch> = (0..steps)
            .flat_map(|_| self.graph.full_step.iter())
            .collect();
        ctx.run(&list)
    }

    /// Optimizer steps taken so far (the GPU's step counter).
    pub fn steps_taken(&self, ctx: &GpuContext) -> GpuResult<u32> {
        Ok(self.adam.last_step(ctx)?.0)
    }

    /// The current flow and ratio weights, unpacked to f64 (the CPU references' form).
    pub fn weights(
        &self,
        ctx: &GpuContext,
    ) -> GpuResult<(Option<FlowWeights>, Option<MlpWeights>)> {
        let f = self
            .nets
            .flow
            .as_ref()
            .map(|f| f.weights(ctx))
            .transpose()?;
        let r = self
            .nets
            .ratio
            .as_ref()
            .map(|r| r.weights(ctx))
            .transpose()?;
        Ok((f, r))
    }
}

//! The trainer's optimizer step on its own, for throughput benchmarks (`gkl-gpu bench
//! throughput`): the networks, parameter arena, optimizer and per-step dispatch list that
//! [`super::train`] builds (its `train_graph`: gather, embedding, flow forward and backward, the
//! ratio term with its contrastive θ' or base-flow draws, micro-batch gradient sums, Adam), over
//! one GPU-resident block of training rows. No validation, early stopping or checkpoints: only
//! the steps, any number per submission (the trainer submits a block's steps at once).

use super::NpeSettings;
use super::{fitted_train_graph, new_adam, train_graph, Accs, Grads, Model, Nets, TrainGraph};
use crate::kernels::adam::{Adam, AdamConfig};
use crate::models::arena::ParamArena;
use crate::models::flow::cpu::FlowWeights;
use crate::models::flow::FlowConfig;
use crate::models::mlp::{MlpConfig, MlpWeights};
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

        // Architecture, arena and optimizer, as `train` builds them.
        let model = Model::new(ctx, settings, d, dim_x);
        let arena = ParamArena::new(ctx, &model.init)?;
        let nets = model.nets(ctx, &arena, None)?;
        let adam = new_adam(ctx, settings, &arena)?;
        let adam_config = adam.config;
        let accs = Accs::new(ctx, "bench-loss-acc")?;
        let grads = Grads {
            all: &arena.grads,
            base_len: model
                .ratio_off
                .filter(|_| method == Method::Hybrid)
                .unwrap_or(arena.grads.len),
        };
        let (graph, _) = fitted_train_graph(batch, |split| {
            train_graph(
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
            )
        })?;
        ctx.write(&graph.theta_blk, 0, &theta_packed)?;
        ctx.write(&graph.x_blk, 0, &x_packed)?;
        let mut idx: Vec<u32> = (0..n as u32).collect();
        idx.shuffle(&mut StdRng::seed_from_u64(settings.seed));
        ctx.write(&graph.perm, 0, &idx)?;
        Ok(StepBench {
            batch: graph.batch,
            micro_batches: graph.split.count,
            steps_per_block: n.div_ceil(graph.batch),
            flow: model.flow_cfg,
            ratio: model.ratio_cfg,
            embedding: model.emb,
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

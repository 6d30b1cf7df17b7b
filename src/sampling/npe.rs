//! Sampling an NPE posterior on the GPU: many observations in one batched launch of the flow's
//! inverse; θ mapped back to the original space on the host. In the prior's unconstrained space
//! every sample lies inside the support by construction; a model trained in the original space
//! rejects (and counts) samples outside it, as sbi does.

use crate::kernels::layout::{pack, unpack};
use crate::models::arena::ParamArena;
use crate::models::flow::{Flow, FlowLogProbPlan, FlowSamplePlan};
use crate::models::mlp::{Mlp, MlpPlan};
use crate::models::posterior::NpeModel;
use crate::runtime::{Dispatch, GpuContext, GpuError, GpuResult};
use serde::Serialize;

/// A posterior model opened on a device.
pub struct NpePosterior {
    pub ctx: GpuContext,
    pub model: NpeModel,
    _arena: ParamArena,
    flow: Flow,
    emb: Option<Mlp>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SampleReport {
    /// Per observation: samples drawn, samples rejected outside the prior's support.
    pub drawn: Vec<usize>,
    pub rejected_outside_support: Vec<usize>,
    pub seconds: f64,
}

/// Rows per sampling launch (bounded so buffers stay far below binding limits).
const CHUNK: usize = 1 << 16;

impl NpePosterior {
    pub fn new(ctx: &GpuContext, model: NpeModel) -> GpuResult<Self> {
        let arena = ParamArena::new(ctx, &model.params)?;
        let flow_len = model.flow.arena_len(model.arena_align);
        let (fp, fg) = arena.block(model.flow_offset, flow_len);
        let flow = Flow::new(ctx, model.flow.clone(), fp, fg)?;
        let emb = match (&model.embedding, model.embedding_offset) {
            (Some(e), Some(off)) => {
                let (p, g) = arena.block(off, Mlp::model_len(e, model.arena_align));
                Some(Mlp::from_views(e.clone(), 1, p, g, model.arena_align))
            }
            _ => None,
        };
        Ok(NpePosterior { ctx: ctx.clone(), model, _arena: arena, flow, emb })
    }

    /// The flow's context for each observation row (z-scored x, through the embedding net if any).
    fn contexts(&self, xs: &[Vec<f64>]) -> GpuResult<Vec<Vec<f64>>> {
        let dx = self.model.dim_x;
        for x in xs {
            if x.len() != dx {
                return Err(GpuError::InvalidArgument(format!("observation has {} values, the model needs {dx}", x.len())));
            }
        }
        let z: Vec<Vec<f64>> = xs.iter().map(|x| self.model.preprocess.x_forward(x)).collect();
        let Some(emb) = &self.emb else { return Ok(z) };
        let plan = MlpPlan::new(&self.ctx, emb, xs.len())?;
        let flat: Vec<f64> = z.concat();
        self.ctx.write(&plan.x, 0, &pack(&flat, xs.len(), dx))?;
        let f: Vec<&Dispatch> = plan.forward.iter().collect();
        self.ctx.run(&f)?;
        let e = emb.config.out_dim;
        let y = unpack(&self.ctx.read::<f32>(&plan.y)?, xs.len(), e);
        Ok(y.chunks(e).map(<[f64]>::to_vec).collect())
    }

    /// `n` samples for every observation in `xs`, as `[obs][n × dθ]` in the original θ space.
    pub fn sample(&self, xs: &[Vec<f64>], n: usize, seed: u64) -> GpuResult<(Vec<Vec<f64>>, SampleReport)> {
        let t = std::time::Instant::now();
        let d = self.model.dim_theta;
        let e = self.flow.config.context_dim;
        let contexts = self.contexts(xs)?;
        let pre = &self.model.preprocess;
        let mut out: Vec<Vec<f64>> = vec![Vec::with_capacity(n * d); xs.len()];
        let mut rejected = vec![0usize; xs.len()];
        let mut drawn = vec![0usize; xs.len()];
        let mut launch = 0u64;
        // Each pass draws what every observation still lacks (all of it, the first time).
        loop {
            let need: Vec<usize> = out.iter().map(|o| n - o.len() / d).collect();
            let total: usize = need.iter().sum();
            if total == 0 {
                break;
            }
            if launch > 0 && drawn.iter().zip(&need).any(|(&dr, &nd)| nd > 0 && dr > 1000 * n.max(1)) {
                return Err(GpuError::InvalidArgument(
                    "almost every sample falls outside the prior's support; train in the unconstrained space".into(),
                ));
            }
            // Row r of the pass belongs to observation owner[r].
            let owner: Vec<usize> = need.iter().enumerate().flat_map(|(i, &k)| std::iter::repeat_n(i, k)).collect();
            for rows in owner.chunks(CHUNK) {
                let m = rows.len();
                let ctxs: Vec<f64> = rows.iter().flat_map(|&i| contexts[i].iter().copied()).collect();
                let ct = self.ctx.tensor_from("sample-context", &pack(&ctxs, m, e))?;
                let mut plan = FlowSamplePlan::new(&self.ctx, &self.flow, m, &ct)?;
                let ds = plan.dispatches(&self.ctx, seed, launch);
                self.ctx.run(&ds)?;
                launch += 1;
                let z = unpack(&self.ctx.read::<f32>(&plan.samples)?, m, d);
                let theta = pre.theta_inverse(&z);
                for (row, &i) in theta.chunks(d).zip(rows) {
                    drawn[i] += 1;
                    if row.iter().all(|v| v.is_finite()) && pre.prior.in_support(row) {
                        out[i].extend_from_slice(row);
                    } else {
                        rejected[i] += 1;
                    }
                }
            }
        }
        Ok((out, SampleReport { drawn, rejected_outside_support: rejected, seconds: t.elapsed().as_secs_f64() }))
    }

    /// log q(θ|x) of each θ row, normalized over the original θ space (exact for a flow).
    pub fn log_prob(&self, theta: &[f64], x: &[f64]) -> GpuResult<Vec<f64>> {
        let d = self.model.dim_theta;
        let rows = theta.len() / d;
        if rows == 0 {
            return Ok(vec![]);
        }
        let c = &self.contexts(std::slice::from_ref(&x.to_vec()))?[0];
        let ct = self.ctx.tensor_from("logprob-context", &pack(c, 1, c.len()))?;
        let pre = &self.model.preprocess;
        let plan = FlowLogProbPlan::new(&self.ctx, &self.flow, rows, &ct)?;
        self.ctx.write(&plan.theta, 0, &pack(&pre.theta_forward(theta), rows, d))?;
        self.ctx.run(&[&plan.dispatch])?;
        let lq: Vec<f32> = self.ctx.read_range(&plan.log_prob, 0, rows)?;
        Ok(theta.chunks(d).zip(lq).map(|(row, l)| l as f64 + pre.theta_log_jacobian(row)).collect())
    }
}

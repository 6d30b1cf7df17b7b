//! Sampling a trained surrogate on the GPU. NPE: many observations in one batched launch of the
//! flow's inverse; θ mapped back to the original space on the host. In the prior's unconstrained
//! space every sample lies inside the support by construction; a model trained in the original
//! space rejects (and counts) samples outside it, as sbi does. Ratio and hybrid: the batched
//! rejection sampler ([`crate::sampling::rejection`]).

use crate::kernels::layout::{pack, unpack};
use crate::models::arena::ParamArena;
use crate::models::flow::{Flow, FlowLogProbPlan, FlowSamplePlan};
use crate::models::mlp::{Mlp, MlpPlan};
use crate::models::posterior::NpeModel;
use crate::runtime::{Dispatch, GpuContext, GpuError, GpuResult};
use crate::sampling::rejection::{ObsReport, Proposal, RejectionConfig, RejectionSampler};
use crate::training::Method;
use serde::Serialize;

/// A posterior model (any method) opened on a device.
pub struct NpePosterior {
    pub ctx: GpuContext,
    pub model: NpeModel,
    _arena: ParamArena,
    flow: Option<Flow>,
    emb: Option<Mlp>,
    ratio: Option<Mlp>,
}

/// The name the other methods read better with.
pub type Posterior = NpePosterior;

#[derive(Clone, Debug, Serialize)]
pub struct SampleReport {
    /// Per observation: samples drawn, samples rejected outside the prior's support (NPE), or
    /// proposals (ratio, hybrid: see `rejection`).
    pub drawn: Vec<usize>,
    pub rejected_outside_support: Vec<usize>,
    pub seconds: f64,
    /// Ratio and hybrid: the rejection sampler's report per observation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection: Option<Vec<ObsReport>>,
}

/// Rows per sampling launch (bounded so buffers stay far below binding limits).
const CHUNK: usize = 1 << 16;

impl NpePosterior {
    pub fn new(ctx: &GpuContext, model: NpeModel) -> GpuResult<Self> {
        let arena = ParamArena::new(ctx, &model.params)?;
        let flow = match (&model.flow, model.flow_offset) {
            (Some(f), Some(off)) => {
                let (fp, fg) = arena.block(off, f.arena_len(model.arena_align));
                Some(Flow::new(ctx, f.clone(), fp, fg)?)
            }
            _ => None,
        };
        let mlp = |cfg: &Option<crate::models::mlp::MlpConfig>, off: Option<usize>| match (cfg, off)
        {
            (Some(e), Some(off)) => {
                let (p, g) = arena.block(off, Mlp::model_len(e, model.arena_align));
                Some(Mlp::from_views(e.clone(), 1, p, g, model.arena_align))
            }
            _ => None,
        };
        let emb = mlp(&model.embedding, model.embedding_offset);
        let ratio = mlp(&model.ratio, model.ratio_offset);
        if model.method.has_flow() != flow.is_some() || model.method.has_ratio() != ratio.is_some()
        {
            return Err(GpuError::InvalidArgument(format!(
                "a '{}' model without its networks",
                model.method.name()
            )));
        }
        Ok(NpePosterior {
            ctx: ctx.clone(),
            model,
            _arena: arena,
            flow,
            emb,
            ratio,
        })
    }

    fn flow(&self) -> GpuResult<&Flow> {
        self.flow
            .as_ref()
            .ok_or_else(|| GpuError::InvalidArgument("this model has no flow".into()))
    }

    fn check_x(&self, xs: &[Vec<f64>]) -> GpuResult<()> {
        let dx = self.model.dim_x;
        for x in xs {
            if x.len() != dx {
                return Err(GpuError::InvalidArgument(format!(
                    "observation has {} values, the model needs {dx}",
                    x.len()
                )));
            }
        }
        Ok(())
    }

    /// The rejection sampler of a ratio or hybrid model, over observations `xs` (original space).
    fn rejection(
        &self,
        xs: &[Vec<f64>],
        n: usize,
        seed: u64,
        cfg: &RejectionConfig,
    ) -> GpuResult<crate::sampling::rejection::RejectionOutput> {
        self.check_x(xs)?;
        let ratio = self
            .ratio
            .as_ref()
            .ok_or_else(|| GpuError::InvalidArgument("this model has no ratio network".into()))?;
        let xz: Vec<Vec<f64>> = xs
            .iter()
            .map(|x| self.model.preprocess.x_forward(x))
            .collect();
        let contexts;
        let proposal = match self.model.method {
            Method::Hybrid => {
                contexts = self.contexts(xs)?;
                Proposal::Flow {
                    flow: self.flow()?,
                    contexts: &contexts,
                }
            }
            _ => Proposal::Prior,
        };
        RejectionSampler::new(
            &self.ctx,
            ratio,
            &self.model.preprocess,
            proposal,
            cfg.clone(),
        )
        .run(&xz, n, seed)
    }

    /// As [`NpePosterior::sample`], with the rejection sampler's budgets (ratio, hybrid).
    pub fn sample_with(
        &self,
        xs: &[Vec<f64>],
        n: usize,
        seed: u64,
        cfg: &RejectionConfig,
    ) -> GpuResult<(Vec<Vec<f64>>, SampleReport)> {
        if self.model.method == Method::Npe {
            return self.sample(xs, n, seed);
        }
        let out = self.rejection(xs, n, seed, cfg)?;
        let report = SampleReport {
            drawn: out.reports.iter().map(|r| r.proposals as usize).collect(),
            rejected_outside_support: out
                .reports
                .iter()
                .map(|r| r.outside_support as usize)
                .collect(),
            seconds: out.seconds,
            rejection: Some(out.reports),
        };
        Ok((out.samples, report))
    }

    /// ln Z(x) of a ratio or hybrid model for each observation, from `proposals` proposals.
    pub fn log_z(&self, xs: &[Vec<f64>], proposals: u64, seed: u64) -> GpuResult<Vec<ObsReport>> {
        let cfg = RejectionConfig {
            min_proposals: proposals,
            ..Default::default()
        };
        Ok(self.rejection(xs, 0, seed, &cfg)?.reports)
    }

    /// The flow's context for each observation row (z-scored x, through the embedding net if any).
    fn contexts(&self, xs: &[Vec<f64>]) -> GpuResult<Vec<Vec<f64>>> {
        self.check_x(xs)?;
        let dx = self.model.dim_x;
        let z: Vec<Vec<f64>> = xs
            .iter()
            .map(|x| self.model.preprocess.x_forward(x))
            .collect();
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
    pub fn sample(
        &self,
        xs: &[Vec<f64>],
        n: usize,
        seed: u64,
    ) -> GpuResult<(Vec<Vec<f64>>, SampleReport)> {
        if self.model.method != Method::Npe {
            return self.sample_with(xs, n, seed, &RejectionConfig::default());
        }
        let t = std::time::Instant::now();
        let d = self.model.dim_theta;
        let flow = self.flow()?;
        let e = flow.config.context_dim;
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
            if launch > 0
                && drawn
                    .iter()
                    .zip(&need)
                    .any(|(&dr, &nd)| nd > 0 && dr > 1000 * n.max(1))
            {
                return Err(GpuError::InvalidArgument(
                    "almost every sample falls outside the prior's support; train in the unconstrained space".into(),
                ));
            }
            // Row r of the pass belongs to observation owner[r].
            let owner: Vec<usize> = need
                .iter()
                .enumerate()
                .flat_map(|(i, &k)| std::iter::repeat_n(i, k))
                .collect();
            for rows in owner.chunks(CHUNK) {
                let m = rows.len();
                let ctxs: Vec<f64> = rows
                    .iter()
                    .flat_map(|&i| contexts[i].iter().copied())
                    .collect();
                let ct = self.ctx.tensor_from("sample-context", &pack(&ctxs, m, e))?;
                let mut plan = FlowSamplePlan::new(&self.ctx, flow, m, &ct)?;
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
        Ok((
            out,
            SampleReport {
                drawn,
                rejected_outside_support: rejected,
                seconds: t.elapsed().as_secs_f64(),
                rejection: None,
            },
        ))
    }

    /// log q(θ|x) of each θ row, normalized over the original θ space (exact for a flow). For a
    /// ratio or hybrid model, log q̃(θ|x) − log Z(x) with Z(x) estimated from `z_proposals`
    /// proposals of the sampler (returned as the second value; `None` for NPE). θ outside the
    /// prior's support gets −∞.
    pub fn log_prob(&self, theta: &[f64], x: &[f64]) -> GpuResult<Vec<f64>> {
        Ok(self.log_prob_with(theta, x, 1 << 20, 0)?.0)
    }

    pub fn log_prob_with(
        &self,
        theta: &[f64],
        x: &[f64],
        z_proposals: u64,
        seed: u64,
    ) -> GpuResult<(Vec<f64>, Option<ObsReport>)> {
        let d = self.model.dim_theta;
        let rows = theta.len() / d;
        if rows * d != theta.len() {
            return Err(GpuError::InvalidArgument(format!(
                "θ has {} values, not a multiple of its dimension {d}",
                theta.len()
            )));
        }
        self.check_x(std::slice::from_ref(&x.to_vec()))?;
        if rows == 0 {
            return Ok((vec![], None));
        }
        let pre = &self.model.preprocess;
        let mut lp = vec![0f64; rows];
        // Base density: the flow (NPE, hybrid) or the prior (ratio).
        if let Some(flow) = &self.flow {
            let c = &self.contexts(std::slice::from_ref(&x.to_vec()))?[0];
            let ct = self
                .ctx
                .tensor_from("logprob-context", &pack(c, 1, c.len()))?;
            let plan = FlowLogProbPlan::new(&self.ctx, flow, rows, &ct)?;
            self.ctx
                .write(&plan.theta, 0, &pack(&pre.theta_forward(theta), rows, d))?;
            self.ctx.run(&[&plan.dispatch])?;
            let lq: Vec<f32> = self.ctx.read_range(&plan.log_prob, 0, rows)?;
            for ((o, row), l) in lp.iter_mut().zip(theta.chunks(d)).zip(lq) {
                *o = l as f64 + pre.theta_log_jacobian(row);
            }
        } else {
            for (o, row) in lp.iter_mut().zip(theta.chunks(d)) {
                *o = pre.prior.log_prob(row);
            }
        }
        let Some(ratio) = &self.ratio else {
            return Ok((lp, None));
        };
        // + f(θ, x) − log Z(x), and −∞ outside the support.
        let plan = MlpPlan::inference(&self.ctx, ratio, rows)?;
        let inp = pre.ratio_rows(theta, x);
        self.ctx.write(&plan.x, 0, &pack(&inp, rows, d + x.len()))?;
        let f: Vec<&Dispatch> = plan.forward.iter().collect();
        self.ctx.run(&f)?;
        let fv = unpack(&self.ctx.read::<f32>(&plan.y)?, rows, 1);
        let rep = self
            .log_z(std::slice::from_ref(&x.to_vec()), z_proposals, seed)?
            .remove(0);
        for ((o, row), f) in lp.iter_mut().zip(theta.chunks(d)).zip(fv) {
            *o = if pre.prior.in_support(row) {
                *o + f - rep.log_z
            } else {
                f64::NEG_INFINITY
            };
        }
        Ok((lp, Some(rep)))
    }
}

//! The batched rejection sampler of the ratio and hybrid surrogates, on the GPU.
//!
//! Target q̃(θ|x_o) = proposal(θ|x_o) · exp f(θ, x_o) · 1[θ in the prior's support], with the
//! prior as proposal (ratio) or the base flow q_ψ(·|x_o) (hybrid). Every round is one submission
//! over up to `rows_per_round` proposals shared by the active observations: proposals are drawn on
//! the GPU (counter-based Philox, or the flow's inverse), f is evaluated, each proposal is accepted
//! with probability exp(f − log M_o), and accepted θ are compacted into the observation's output
//! rows. Per round only a few counters and per-workgroup partial sums come back; the samples are
//! read once, at the end. A finished observation leaves the active set, so the others get its share
//! of the next rounds.
//!
//! M_o: a warm-up of `m_proposals` proposals per observation sets log M_o = max f + ln(m_factor)
//! (the peers' 1.2 × largest exp f). A later proposal with f > log M_o is counted; with
//! `restart_on_exceed` M_o is raised to m_factor × that f, and the samples accepted so far are
//! thinned exactly: each stored sample keeps its f, was accepted with probability
//! min(1, e^f / M_old), and is kept with probability (e^f / M_new) / min(1, e^f / M_old), so the
//! survivors are what M_new would have accepted. (Proposals rejected under M_old had f ≤ log M_old,
//! so their rejection stands.)

use crate::kernels::layout::pad4;
use crate::models::flow::{Flow, FlowSamplePlan};
use crate::models::mlp::{Mlp, MlpPlan};
use crate::runtime::{groups_1d, Bind, Dispatch, GpuContext, GpuError, GpuResult};
use crate::training::preprocess::Preprocess;
use gkl_tasks::{Component, Prior};
use serde::Serialize;
use std::time::Instant;

/// Philox stream ("REJE") of proposals and acceptance draws.
pub const REJECTION_STREAM: u32 = 0x5245_4a45;
const WG_ACCEPT: usize = 256;

/// Budgets and settings of a sampling run.
#[derive(Clone, Debug)]
pub struct RejectionConfig {
    /// Proposals per observation after which it stops unfinished (`--max-proposals`).
    pub max_proposals: u64,
    /// Wall time after which every unfinished observation stops (`--max-seconds`).
    pub max_seconds: f64,
    /// Warm-up proposals per observation that estimate M.
    pub m_proposals: usize,
    /// M = m_factor × the largest exp f of the warm-up.
    pub m_factor: f64,
    /// Proposals per round, shared by the active observations (a multiple of 256).
    pub rows_per_round: usize,
    /// Raise M and restart an observation when a proposal exceeds it.
    pub restart_on_exceed: bool,
    /// Keep proposing until this many proposals (after warm-up) even when the samples are done:
    /// a better Z(x_o) estimate (`log-prob`).
    pub min_proposals: u64,
    /// Print progress to stderr every few seconds (a `\r` line on a terminal).
    pub progress: bool,
}

impl Default for RejectionConfig {
    fn default() -> Self {
        RejectionConfig {
            max_proposals: 1 << 32,
            max_seconds: f64::INFINITY,
            m_proposals: 16_384,
            m_factor: 1.2,
            rows_per_round: 1 << 16,
            restart_on_exceed: true,
            min_proposals: 0,
            progress: false,
        }
    }
}

/// What happened for one observation.
#[derive(Clone, Debug, Serialize)]
pub struct ObsReport {
    pub accepted: usize,
    pub finished: bool,
    /// Why an unfinished observation stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Proposals after the warm-up (the denominators below).
    pub proposals: u64,
    pub warmup_proposals: u64,
    /// Acceptances / proposals since the last restart (the sampler's cost figure).
    pub acceptance_rate: f64,
    /// Proposals outside the prior's support (hybrid: the base flow leaks there).
    pub outside_support: u64,
    pub log_m: f64,
    /// ln Z(x_o) = ln E_proposal[exp f · 1_support], from every post-warm-up proposal.
    pub log_z: f64,
    /// Proposals whose exp f exceeded M, and how many times M was raised.
    pub exceeded_m: u64,
    pub restarts: u32,
}

/// The prior and the θ transform, packed for `shaders/propose.wgsl`.
pub struct PriorPack {
    pub data: Vec<f32>,
    pub unconstrained: bool,
}

impl PriorPack {
    pub fn new(pre: &Preprocess) -> GpuResult<Self> {
        let prior = &pre.prior;
        let d = prior.dim();
        let mut kind = vec![0f32; d];
        let mut a = vec![0f32; d];
        let mut b = vec![0f32; d];
        let mut l = vec![0f32; d * d];
        match prior {
            Prior::Gaussian { mean, cov } => {
                let flat: Vec<f64> = cov.iter().flatten().copied().collect();
                let ch = gkl_tasks::linalg::cholesky(&flat, d).ok_or_else(|| {
                    GpuError::InvalidArgument(
                        "the prior's covariance is not positive definite".into(),
                    )
                })?;
                for i in 0..d {
                    kind[i] = 1.0;
                    a[i] = mean[i] as f32;
                    for j in 0..=i {
                        l[i * d + j] = ch[i * d + j] as f32;
                    }
                }
            }
            _ => {
                let comps = prior
                    .components()
                    .ok_or_else(|| GpuError::InvalidArgument("prior without components".into()))?;
                for (i, c) in comps.iter().enumerate() {
                    match *c {
                        Component::Uniform { low, high } => {
                            a[i] = low as f32;
                            b[i] = high as f32;
                        }
                        Component::Normal { loc, scale } => {
                            kind[i] = 1.0;
                            a[i] = loc as f32;
                            l[i * d + i] = scale as f32;
                        }
                        Component::LogNormal { loc, scale } => {
                            kind[i] = 2.0;
                            a[i] = loc as f32;
                            l[i * d + i] = scale as f32;
                        }
                    }
                }
            }
        }
        let mut data = kind;
        data.extend(a);
        data.extend(b);
        data.extend(l);
        data.extend(pre.theta.mean.iter().map(|&v| v as f32));
        data.extend(pre.theta.std.iter().map(|&v| v as f32));
        Ok(PriorPack {
            data,
            unconstrained: pre.unconstrained,
        })
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct RoundParams {
    rows: u32,
    p: u32,
    round: u32,
    stream: u32,
    key_lo: u32,
    key_hi: u32,
    /// propose: rows of the buffers; accept: unused.
    rows_max: u32,
    _pad: u32,
}

/// Where proposals come from.
pub enum Proposal<'a> {
    /// The prior, drawn in the propose kernel (the ratio surrogate).
    Prior,
    /// The base flow; `contexts[o]` is observation o's flow context (the hybrid).
    Flow {
        flow: &'a Flow,
        contexts: &'a [Vec<f64>],
    },
}

/// Per-observation progress on the host.
#[derive(Clone)]
struct ObsState {
    warm: u64,
    max_f: f64,
    log_m: f64,
    sampling: bool,
    done: bool,
    accepted: usize,
    /// Acceptances (uncapped) and proposals since the last restart: the acceptance rate.
    raw_accepted: u64,
    since_restart: u64,
    /// Counter value right after the last thinning (its survivors are not new acceptances).
    raw_base: u64,
    z_sum: f64,
    /// Why a stopped observation stopped, without its sample count: the count is the one left
    /// after the last round's thinning, so the message is written at the end.
    stop_budget: Option<String>,
    report: ObsReport,
}

/// One sampling run's GPU resources, sized for `rows` proposals per round.
pub struct RejectionSampler<'a> {
    ctx: &'a GpuContext,
    ratio: &'a Mlp,
    pre: &'a Preprocess,
    proposal: Proposal<'a>,
    pub config: RejectionConfig,
}

/// Samples and per-observation reports.
pub struct RejectionOutput {
    /// `samples[o]`: accepted θ rows (original space), at most n.
    pub samples: Vec<Vec<f64>>,
    pub reports: Vec<ObsReport>,
    pub seconds: f64,
    pub rounds: u64,
}

impl<'a> RejectionSampler<'a> {
    pub fn new(
        ctx: &'a GpuContext,
        ratio: &'a Mlp,
        pre: &'a Preprocess,
        proposal: Proposal<'a>,
        config: RejectionConfig,
    ) -> Self {
        RejectionSampler {
            ctx,
            ratio,
            pre,
            proposal,
            config,
        }
    }

    /// `xs[o]`: observation o in network space (z-scored x, the ratio net's input); `n` samples
    /// each. Observations are handled in groups whose outputs fit one binding.
    pub fn run(&self, xs: &[Vec<f64>], n: usize, seed: u64) -> GpuResult<RejectionOutput> {
        let t0 = Instant::now();
        let d = self.pre.prior.dim();
        let max_bytes = self.ctx.limits.max_storage_buffer_binding_size.min(1 << 28) as usize;
        let per_obs = (n.max(1) * (d + 1) * 4).max(1);
        let group = (max_bytes / per_obs).max(1);
        if per_obs > max_bytes {
            return Err(GpuError::InvalidArgument(format!(
                "{n} samples of dimension {d} do not fit one GPU binding; draw fewer per call"
            )));
        }
        let mut out = RejectionOutput {
            samples: vec![],
            reports: vec![],
            seconds: 0.0,
            rounds: 0,
        };
        let mut round = 0u64;
        for (g, chunk) in xs.chunks(group).enumerate() {
            let base = g * group;
            let (s, r) = self.run_group(chunk, base, n, seed, &mut round, t0)?;
            out.samples.extend(s);
            out.reports.extend(r);
        }
        out.seconds = t0.elapsed().as_secs_f64();
        out.rounds = round;
        Ok(out)
    }

    fn run_group(
        &self,
        xs: &[Vec<f64>],
        base: usize,
        n: usize,
        seed: u64,
        round: &mut u64,
        t0: Instant,
    ) -> GpuResult<(Vec<Vec<f64>>, Vec<ObsReport>)> {
        let ctx = self.ctx;
        let cfg = &self.config;
        let d = self.pre.prior.dim();
        let dx = self.ratio.config.in_dim - d;
        let nobs = xs.len();
        for x in xs {
            if x.len() != dx {
                return Err(GpuError::InvalidArgument(format!(
                    "observation has {} values, the model needs {dx}",
                    x.len()
                )));
            }
        }
        let rows = cfg.rows_per_round.div_ceil(WG_ACCEPT).max(1) * WG_ACCEPT;
        let max_slots = nobs.min(rows / WG_ACCEPT);
        let x4 = pad4(dx);
        let pack = PriorPack::new(self.pre)?;
        let prior_t = ctx.tensor_from("rej-prior", &pack.data)?;
        let xs_t = ctx.tensor_zeros("rej-x-slots", max_slots * x4)?;
        let mlp = MlpPlan::inference(ctx, self.ratio, rows)?;
        let theta_t = ctx.tensor_zeros("rej-theta", rows * (d + 1))?;
        let info_t = ctx.tensor_zeros("rej-info", max_slots * 4)?;
        let counters = ctx.tensor_zeros("rej-counters", 2 * nobs)?;
        let out_t = ctx.tensor_zeros("rej-out", (nobs * n * (d + 1)).max(1))?;
        let partials = ctx.tensor_zeros("rej-partials", rows / WG_ACCEPT * 4)?;
        let key = seed ^ 0x6a09_e667_f3bc_c908;
        let mut params = RoundParams {
            rows: 0,
            p: WG_ACCEPT as u32,
            round: 0,
            stream: REJECTION_STREAM,
            key_lo: key as u32,
            key_hi: (key >> 32) as u32,
            rows_max: rows as u32,
            _pad: 0,
        };
        let uni = ctx.uniform("rej-params", &params);
        // The hybrid's proposals: the base flow's inverse, one context row per slot.
        let (mut flow_plan, flow_ctx_t, ctx_rows) = match &self.proposal {
            Proposal::Flow { flow, contexts } => {
                let e4 = pad4(flow.config.context_dim);
                let t = ctx.tensor_zeros("rej-flow-context", max_slots * e4)?;
                (
                    Some(FlowSamplePlan::new(ctx, flow, rows, &t)?),
                    Some(t),
                    contexts.to_vec(),
                )
            }
            Proposal::Prior => (None, None, vec![]),
        };
        let (dr, _) = ctx.dummies()?;
        let mode = flow_plan.is_some() as u8 as f64;
        let sd4 = match &self.proposal {
            Proposal::Flow { flow, .. } => pad4(flow.config.dim) / 4,
            Proposal::Prior => 1,
        };
        let propose = ctx.dispatch(
            "propose",
            "propose",
            &[
                ("WG", 64.0),
                ("MODE", mode),
                ("D", d as f64),
                ("DX", dx as f64),
                ("IN4", (pad4(d + dx) / 4) as f64),
                ("SD4", sd4 as f64),
                ("X4", (x4 / 4) as f64),
                ("UNCON", pack.unconstrained as u8 as f64),
            ],
            &[
                Bind::U(&uni),
                Bind::T(&prior_t),
                Bind::T(flow_plan.as_ref().map_or(dr, |p| &p.samples)),
                Bind::T(&xs_t),
                Bind::T(&mlp.x),
                Bind::T(&theta_t),
            ],
            groups_1d(rows, 64),
        )?;
        let accept = ctx.dispatch(
            "accept",
            "accept",
            &[("D", d as f64)],
            &[
                Bind::U(&uni),
                Bind::T(&mlp.y),
                Bind::T(&theta_t),
                Bind::T(&info_t),
                Bind::T(&counters),
                Bind::T(&out_t),
                Bind::T(&partials),
            ],
            groups_1d(rows, WG_ACCEPT as u32),
        )?;

        let ln_factor = cfg.m_factor.max(1.0).ln();
        let mut st: Vec<ObsState> = (0..nobs)
            .map(|_| ObsState {
                warm: 0,
                max_f: f64::NEG_INFINITY,
                log_m: f64::INFINITY,
                sampling: false,
                done: false,
                accepted: 0,
                raw_accepted: 0,
                since_restart: 0,
                raw_base: 0,
                z_sum: 0.0,
                stop_budget: None,
                report: ObsReport {
                    accepted: 0,
                    finished: false,
                    stopped: None,
                    proposals: 0,
                    warmup_proposals: 0,
                    acceptance_rate: 0.0,
                    outside_support: 0,
                    log_m: f64::NAN,
                    log_z: f64::NAN,
                    exceeded_m: 0,
                    restarts: 0,
                },
            })
            .collect();
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let mut last_print = Instant::now();
        loop {
            let active: Vec<usize> = (0..nobs).filter(|&o| !st[o].done).take(max_slots).collect();
            if cfg.progress
                && (active.is_empty()
                    || last_print.elapsed().as_secs_f64() >= if tty { 1.0 } else { 10.0 })
            {
                last_print = Instant::now();
                let done = st.iter().filter(|s| s.done).count();
                let acc: usize = st.iter().map(|s| s.accepted).sum();
                let props: u64 = st.iter().map(|s| s.report.proposals + s.warm).sum();
                let line = format!(
                    "sampling: {done}/{nobs} observations done, {acc}/{} samples, {props} proposals, {:.0} s",
                    nobs * n,
                    t0.elapsed().as_secs_f64()
                );
                if tty {
                    eprint!("\r{line}");
                    if active.is_empty() {
                        eprintln!();
                    }
                } else {
                    eprintln!("{line}");
                }
            }
            if active.is_empty() {
                break;
            }
            let slots = active.len();
            let p = (rows / slots) / WG_ACCEPT * WG_ACCEPT;
            let used = slots * p;
            // Slot inputs: x, the flow context, (o, log M, capacity, accept?) per slot.
            let mut xrows = vec![0f32; slots * x4];
            let mut info = vec![0u32; slots * 4];
            for (a, &o) in active.iter().enumerate() {
                for (c, v) in xs[o].iter().enumerate() {
                    xrows[a * x4 + c] = *v as f32;
                }
                let s = &st[o];
                let lm = if s.sampling { s.log_m as f32 } else { 0.0 };
                info[a * 4] = o as u32;
                info[a * 4 + 1] = lm.to_bits();
                info[a * 4 + 2] = n as u32;
                info[a * 4 + 3] = s.sampling as u32;
            }
            ctx.write(&xs_t, 0, &xrows)?;
            ctx.write(&info_t, 0, &info)?;
            params.rows = used as u32;
            params.p = p as u32;
            params.round = *round as u32;
            ctx.write_uniform(&uni, &params);
            let mut ds: Vec<&Dispatch> = vec![];
            if let (Some(fp), Some(ct), Proposal::Flow { flow, .. }) =
                (&mut flow_plan, &flow_ctx_t, &self.proposal)
            {
                let e = flow.config.context_dim;
                let e4 = pad4(e);
                let mut c = vec![0f32; slots * e4];
                for (a, &o) in active.iter().enumerate() {
                    let row = ctx_rows
                        .get(base + o)
                        .ok_or_else(|| GpuError::InvalidArgument("missing flow context".into()))?;
                    for (j, v) in row.iter().enumerate().take(e) {
                        c[a * e4 + j] = *v as f32;
                    }
                }
                ctx.write(ct, 0, &c)?;
                fp.set_rows(ctx, used, p);
            }
            if let Some(fp) = &mut flow_plan {
                ds.extend(fp.dispatches(ctx, seed, *round));
            }
            ds.push(&propose);
            ds.extend(mlp.forward.iter());
            ds.push(&accept);
            ctx.run(&ds)?;
            *round += 1;
            let part: Vec<f32> = ctx.read_range(&partials, 0, used / WG_ACCEPT * 4)?;
            let cnt: Vec<u32> = ctx.read(&counters)?;
            let elapsed = t0.elapsed().as_secs_f64();
            let mut resets: Vec<(usize, f64)> = vec![];
            for (a, &o) in active.iter().enumerate() {
                let (mut sum_e, mut max_f, mut inside) = (0f64, f64::NEG_INFINITY, 0f64);
                for w in (a * p / WG_ACCEPT)..((a + 1) * p / WG_ACCEPT) {
                    sum_e += part[w * 4] as f64;
                    max_f = max_f.max(part[w * 4 + 1] as f64);
                    inside += part[w * 4 + 2] as f64;
                }
                let s = &mut st[o];
                if std::env::var_os("GKL_DEBUG_REJECTION").is_some() {
                    eprintln!("round {round} slot {a} obs {o}: sum_e {sum_e} max_f {max_f} inside {inside} accepted {} exceed {} log_m {}", cnt[2 * o], cnt[2 * o + 1], s.log_m);
                }
                let outside = p as u64 - inside as u64;
                if !s.sampling {
                    s.warm += p as u64;
                    s.report.warmup_proposals = s.warm;
                    s.max_f = s.max_f.max(max_f);
                    if s.warm >= cfg.m_proposals as u64 && s.max_f.is_finite() {
                        s.sampling = true;
                        s.log_m = as_on_gpu(s.max_f + ln_factor);
                    } else if s.warm >= cfg.max_proposals {
                        s.done = true;
                        s.report.stopped = Some(format!(
                            "no proposal inside the prior's support in {} warm-up proposals",
                            s.warm
                        ));
                    }
                } else {
                    s.report.proposals += p as u64;
                    s.since_restart += p as u64;
                    s.raw_accepted = (cnt[2 * o] as u64).saturating_sub(s.raw_base);
                    s.report.outside_support += outside;
                    // Σ exp f = e^{log M} Σ exp(f − log M), summed in f64 on the host.
                    s.z_sum += sum_e * s.log_m.exp();
                    s.report.exceeded_m = cnt[2 * o + 1] as u64;
                    s.accepted = (cnt[2 * o] as usize).min(n);
                    if max_f > s.log_m && cfg.restart_on_exceed {
                        let old = s.log_m;
                        s.log_m = as_on_gpu(max_f + ln_factor);
                        s.report.restarts += 1;
                        s.raw_accepted = 0;
                        s.since_restart = 0;
                        resets.push((o, old));
                    }
                    // After a raise the stored samples are thinned below: decide next round.
                    let raised = resets.last().is_some_and(|r| r.0 == o);
                    let enough =
                        !raised && s.accepted >= n && s.report.proposals >= cfg.min_proposals;
                    if enough {
                        s.done = true;
                        s.report.finished = true;
                    } else if s.report.proposals + s.warm >= cfg.max_proposals {
                        s.done = true;
                        s.stop_budget =
                            Some(format!("reached --max-proposals ({})", cfg.max_proposals));
                    }
                }
                if !s.done && elapsed >= cfg.max_seconds {
                    s.done = true;
                    s.stop_budget = Some(format!("reached --max-seconds ({})", cfg.max_seconds));
                }
            }
            for (o, old) in resets {
                // Thin what is stored to what the raised M would have accepted, in place.
                let s = &mut st[o];
                let k = s.accepted.min(n);
                let rows: Vec<f32> = if k > 0 {
                    ctx.read_range(&out_t, o * n * (d + 1), k * (d + 1))?
                } else {
                    vec![]
                };
                let seed_o = seed
                    ^ ((base + o) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    ^ (s.report.restarts as u64) << 48;
                let kept = thin(&rows, d, old, s.log_m, seed_o);
                if !kept.is_empty() {
                    ctx.write(&out_t, o * n * (d + 1), &kept)?;
                }
                s.accepted = kept.len() / (d + 1);
                s.raw_base = s.accepted as u64;
                ctx.write(&counters, 2 * o, &[s.accepted as u32])?;
            }
        }
        // Only accepted samples come back.
        let mut samples = vec![];
        let mut reports = vec![];
        for (o, s) in st.into_iter().enumerate() {
            let k = s.accepted.min(n);
            let v: Vec<f32> = if k > 0 {
                ctx.read_range(&out_t, o * n * (d + 1), k * (d + 1))?
            } else {
                vec![]
            };
            samples.push(
                v.chunks(d + 1)
                    .flat_map(|r| r[..d].iter().map(|&a| a as f64))
                    .collect(),
            );
            let mut r = s.report;
            r.accepted = k;
            r.log_m = s.log_m;
            if let Some(why) = s.stop_budget {
                r.stopped = Some(format!("{why} with {k} of {n} samples"));
            }
            // The rate at the final M: over the proposals since the last raise, or, when the
            // last round raised M, the thinned store over every proposal (what that M keeps).
            r.acceptance_rate = if s.since_restart > 0 {
                s.raw_accepted as f64 / s.since_restart as f64
            } else if r.proposals > 0 {
                k as f64 / r.proposals as f64
            } else {
                0.0
            };
            r.log_z = if r.proposals > 0 {
                (s.z_sum / r.proposals as f64).ln()
            } else {
                f64::NAN
            };
            reports.push(r);
        }
        Ok((samples, reports))
    }
}

/// log M as the accept kernel sees it (an f32 uniform): the host keeps exactly that value, so
/// its Z sums, exceedance test and thinning agree with the GPU's comparisons.
fn as_on_gpu(log_m: f64) -> f64 {
    log_m as f32 as f64
}

/// Keeps each stored row (θ, f) with probability (e^f / M_new) / min(1, e^f / M_old): the rows
/// then follow what acceptance under M_new would have produced. Deterministic in `seed`.
pub fn thin(rows: &[f32], d: usize, log_m_old: f64, log_m_new: f64, seed: u64) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut kept = Vec::with_capacity(rows.len());
    for r in rows.chunks(d + 1) {
        let f = r[d] as f64;
        let was = (f - log_m_old).min(0.0);
        let keep = (f - log_m_new - was).min(0.0).exp();
        if rng.random::<f64>() < keep {
            kept.extend_from_slice(r);
        }
    }
    kept
}

/// f64 references of the proposal and acceptance steps (same Philox stream as the shaders).
pub mod cpu {
    use super::REJECTION_STREAM;
    use crate::kernels::rng::{box_muller, philox4x32, unit_f32};

    fn key(seed: u64) -> [u32; 2] {
        let k = seed ^ 0x6a09_e667_f3bc_c908;
        [k as u32, (k >> 32) as u32]
    }

    fn bits(seed: u64, r: u32, round: u32, word: u32) -> [u32; 4] {
        philox4x32([r, round, word, REJECTION_STREAM], key(seed))
    }

    /// Prior proposal of row r in round `round` from the packed prior (original space).
    pub fn prior_draw(pack: &[f32], d: usize, seed: u64, r: u32, round: u32) -> Vec<f64> {
        let kind = |i: usize| pack[i] as u32;
        let a = |i: usize| pack[d + i] as f64;
        let b = |i: usize| pack[2 * d + i] as f64;
        let l = |i: usize, j: usize| pack[3 * d + i * d + j] as f64;
        let normal = |i: usize| {
            let w = bits(seed, r, round, 0x10000 + (i / 2) as u32);
            let (n0, n1) = box_muller(unit_f32(w[0]), unit_f32(w[1]));
            (if i % 2 == 1 { n1 } else { n0 }) as f64
        };
        (0..d)
            .map(|i| match kind(i) {
                0 => a(i) + (b(i) - a(i)) * unit_f32(bits(seed, r, round, i as u32)[0]) as f64,
                1 => a(i) + (0..=i).map(|j| l(i, j) * normal(j)).sum::<f64>(),
                _ => (a(i) + l(i, i) * normal(i)).exp(),
            })
            .collect()
    }

    /// The uniform that decides row r's acceptance.
    pub fn accept_uniform(seed: u64, r: u32, round: u32) -> f64 {
        unit_f32(bits(seed, r, round, 0xACCE97)[0]) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::thin;

    #[test]
    fn thinning_keeps_what_the_raised_bound_would_have_accepted() {
        // M_old = 1, M_new = 2: a row with f ≤ 0 was accepted w.p. e^f and must end at e^f / 2
        // (keep 1/2); a row with f = 0.5 was accepted w.p. 1 and must end at e^0.5 / 2 (keep 0.824).
        let n = 40_000;
        let rows: Vec<f32> = (0..n)
            .flat_map(|i| [i as f32, if i % 2 == 0 { -0.3 } else { 0.5 }])
            .collect();
        let kept = thin(&rows, 1, 0.0, 2f64.ln(), 7);
        let (mut low, mut high) = (0, 0);
        for r in kept.chunks(2) {
            if r[1] < 0.0 {
                low += 1;
            } else {
                high += 1;
            }
        }
        let half = (n / 2) as f64;
        assert!(
            (low as f64 / half - 0.5).abs() < 0.015,
            "f ≤ log M_old kept {low} of {half}"
        );
        assert!(
            (high as f64 / half - 0.5f64.exp() / 2.0).abs() < 0.015,
            "f > log M_old kept {high} of {half}"
        );
    }
}

//! `gkl-gpu bench throughput`: per-method training and sampling throughput on one adapter, each
//! figure beside a plain-Rust CPU reference of the same work timed in the same run.
//!
//! Training: the trainer's real optimizer step ([`StepBench`]: the dispatch graph `train` runs —
//! minibatch gather, flow forward and backward, the generalized-KL ratio term with its
//! contrastive θ' or base-flow draws, Adam), over a GPU-resident block of simulations, submitted
//! about a quarter second of steps at a time (`train` submits an epoch's block at once), waiting
//! after each. Not
//! included: validation, the per-epoch host work (permutation upload, loss read-back). CPU: the
//! project's f64 references of the same step (`flow::cpu::backward` — a forward pass and the
//! reverse pass —, `flow::cpu::inverse` for the hybrid's base-flow draws, `gkl::cpu::pairs` and
//! `loss_grad`, `mlp::cpu::forward`/`backward`, `adam::cpu::AdamCpu`), single-threaded,
//! unoptimized (per-row allocations): a correctness reference, not a tuned CPU trainer.
//!
//! FLOPs (a convention for GFLOP/s, stated in the report): dense multiply-adds of every layer,
//! masked MADE weights included, × 2 (multiply and add) × 3 for a forward and backward pass
//! (backward ≈ twice the forward); a base-flow draw (inverse) costs dim hidden-stack passes and
//! one output layer per transform, forward only (× 2). Elementwise work (splines, activations,
//! loss, gather, Adam) is not counted.
//!
//! Sampling: the batched rejection sampler (ratio, hybrid) and the flow's inverse (NPE) over many
//! observations at once, on models trained briefly on the task; the CPU reference replays a
//! proposal as the sampler does (Philox prior draw or an f64 flow inverse, the f64 ratio net,
//! the acceptance test against the GPU run's log M per observation).

use super::grid::{simulate, BenchError, BenchResult, TrainProfile};
use crate::kernels::adam::cpu::AdamCpu;
use crate::kernels::adam::AdamConfig;
use crate::kernels::gkl::cpu as gcpu;
use crate::kernels::layout::unpack;
use crate::models::flow::cpu::{self as fcpu, FlowWeights};
use crate::models::flow::{FlowConfig, FlowKind};
use crate::models::mlp::{cpu as mcpu, MlpConfig, MlpWeights};
use crate::models::posterior::NpeModel;
use crate::runtime::GpuContext;
use crate::sampling::npe::NpePosterior;
use crate::sampling::rejection::{cpu as rcpu, PriorPack, RejectionConfig};
use crate::training::npe::{train_npe_with, StepBench};
use crate::training::{BaseGradient, Method};
use gkl_tasks::{task_by_name, Task};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde::Serialize;
use std::time::Instant;

/// A method and, for the flow-based ones, the flow family: `npe-maf`, `npe-nsf`, `ratio`,
/// `hybrid-nsf`, ... (`npe` and `hybrid` alone mean NSF).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MethodFlow {
    pub method: Method,
    pub flow: Option<FlowKind>,
}

fn kind_name(k: FlowKind) -> &'static str {
    match k {
        FlowKind::Maf => "maf",
        FlowKind::Nsf => "nsf",
    }
}

impl MethodFlow {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        let (m, f) = match s.split_once('-') {
            Some((m, f)) => (m, Some(f)),
            None => (s.as_str(), None),
        };
        let method =
            Method::parse(m).ok_or_else(|| format!("unknown method '{m}' (npe, ratio, hybrid)"))?;
        let flow = match (method, f) {
            (Method::Ratio, None) => None,
            (Method::Ratio, Some(_)) => return Err("the ratio surrogate has no flow".into()),
            (_, None | Some("nsf")) => Some(FlowKind::Nsf),
            (_, Some("maf")) => Some(FlowKind::Maf),
            (_, Some(k)) => return Err(format!("unknown flow '{k}' (maf, nsf)")),
        };
        Ok(MethodFlow { method, flow })
    }

    pub fn label(&self) -> String {
        match self.flow {
            Some(k) => format!("{}-{}", self.method.name(), kind_name(k)),
            None => self.method.name().to_string(),
        }
    }
}

/// What `gkl-gpu bench throughput` measures.
#[derive(Clone, Debug)]
pub struct ThroughputConfig {
    pub task: String,
    pub methods: Vec<MethodFlow>,
    pub batches: Vec<usize>,
    /// Minimum seconds timed per measurement (GPU and CPU alike).
    pub seconds: f64,
    /// Architecture (the flow family comes from each method's entry).
    pub profile: TrainProfile,
    /// Contrastive θ' per x (K) of the ratio and hybrid terms.
    pub contrastive: usize,
    /// Sampling: observations sampled at once (0: no sampling measurements).
    pub observations: usize,
    /// Sampling: the models are trained this many epochs on `sampler_simulations` simulations.
    pub sampler_epochs: usize,
    pub sampler_simulations: usize,
    /// Rejection sampling: warm-up proposals per observation that set M.
    pub m_proposals: usize,
    pub seed: u64,
}

impl Default for ThroughputConfig {
    fn default() -> Self {
        ThroughputConfig {
            task: "two_moons".into(),
            methods: ["npe-maf", "npe-nsf", "ratio", "hybrid-nsf"]
                .iter()
                .map(|s| MethodFlow::parse(s).expect("known"))
                .collect(),
            batches: vec![256, 4096],
            seconds: 1.5,
            profile: TrainProfile::default(),
            contrastive: 1,
            observations: 100,
            sampler_epochs: 3,
            sampler_simulations: 5000,
            m_proposals: 1024,
            seed: 0,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct TrainRow {
    pub method: String,
    pub batch: usize,
    /// Micro-batches per step (1 unless the batch exceeds the adapter's largest binding).
    pub micro_batches: usize,
    pub steps_per_submit: usize,
    pub gpu_steps: usize,
    pub gpu_seconds: f64,
    pub gpu_steps_per_s: f64,
    pub gpu_pairs_per_s: f64,
    pub gpu_gflops: f64,
    /// The FLOP convention of the module docs, per training pair.
    pub flops_per_pair: f64,
    /// Rows per CPU step: the batch, or fewer when one CPU step of the whole batch would take
    /// longer than the time per measurement (the per-pair figure is then extrapolated).
    pub cpu_rows: usize,
    pub cpu_steps: usize,
    pub cpu_seconds: f64,
    pub cpu_pairs_per_s: f64,
    pub cpu_gflops: f64,
    pub gpu_over_cpu: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SamplerRow {
    pub method: String,
    /// "rejection" (ratio, hybrid) or "flow" (NPE: the flow's inverse).
    pub sampler: String,
    pub observations: usize,
    /// Epochs and simulations the sampled model was trained on.
    pub trained_epochs: usize,
    pub trained_simulations: usize,
    /// Proposals (rejection: warm-up included; flow: draws) and accepted samples (flow: draws
    /// inside the prior's support) per second.
    pub gpu_proposals: u64,
    pub gpu_seconds: f64,
    pub gpu_proposals_per_s: f64,
    pub gpu_accepted_per_s: f64,
    /// Samples kept per proposal after the warm-up (flow: inside the support / drawn). The
    /// sampler keeps at most n = 10⁴ per observation and run, so this is at most its acceptance
    /// rate (equal unless an observation completes).
    pub acceptance_rate: f64,
    pub cpu_proposals: u64,
    pub cpu_seconds: f64,
    pub cpu_proposals_per_s: f64,
    pub cpu_accepted_per_s: f64,
    /// GPU / CPU proposals per second.
    pub gpu_over_cpu: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ThroughputReport {
    pub adapter: String,
    pub task: String,
    pub dim_theta: usize,
    pub dim_x: usize,
    pub seconds_per_measurement: f64,
    pub contrastive: usize,
    pub profile: TrainProfile,
    pub train: Vec<TrainRow>,
    pub sampler: Vec<SamplerRow>,
    /// What each figure includes, and the FLOP convention.
    pub notes: Vec<String>,
    pub total_seconds: f64,
}

/// Dense multiply-adds of one MADE pass per row, all transforms: (hidden stack, output layer).
fn flow_macs(cfg: &FlowConfig) -> (f64, f64) {
    let dims = FlowWeights::layer_dims(cfg);
    let (out, hidden) = dims.split_last().expect("a MADE has layers");
    let h: usize = hidden.iter().map(|(k, n)| k * n).sum();
    let t = cfg.transforms as f64;
    (t * h as f64, t * (out.0 * out.1) as f64)
}

fn mlp_macs(cfg: &MlpConfig) -> f64 {
    cfg.layer_dims().iter().map(|(k, n)| (k * n) as f64).sum()
}

/// FLOPs of one training pair (see the module docs).
pub fn train_flops_per_pair(
    method: Method,
    flow: Option<&FlowConfig>,
    ratio: Option<&MlpConfig>,
    k: usize,
) -> f64 {
    let mut f = 0.0;
    if let Some(c) = flow {
        let (h, o) = flow_macs(c);
        f += 6.0 * (h + o);
        if method == Method::Hybrid {
            f += 2.0 * k as f64 * (c.dim as f64 * h + o);
        }
    }
    if let Some(r) = ratio {
        f += 6.0 * (1 + k) as f64 * mlp_macs(r);
    }
    f
}

/// The f64 reference of one optimizer step of `method` (see the module docs).
struct CpuStep {
    method: Method,
    flow: Option<(FlowConfig, FlowWeights)>,
    ratio: Option<(MlpConfig, MlpWeights)>,
    adam: AdamCpu,
    adam_cfg: AdamConfig,
    k: usize,
    d: usize,
    dx: usize,
    theta: Vec<f64>,
    x: Vec<f64>,
    cursor: usize,
    rng: StdRng,
}

impl CpuStep {
    fn params(&self) -> Vec<f64> {
        let mut p = vec![];
        if let Some((_, w)) = &self.flow {
            p.extend(w.flat());
        }
        if let Some((_, w)) = &self.ratio {
            p.extend(w.w.iter().chain(&w.b).flatten());
        }
        p
    }

    fn set_params(&mut self, p: &[f64]) {
        let mut it = p.iter();
        if let Some((_, w)) = &mut self.flow {
            for (a, b) in w.flat_mut().into_iter().zip(&mut it) {
                *a = *b;
            }
        }
        if let Some((_, w)) = &mut self.ratio {
            for (a, b) in w.w.iter_mut().chain(w.b.iter_mut()).flatten().zip(&mut it) {
                *a = *b;
            }
        }
    }

    /// One step on `rows` rows of the block (the next ones, wrapping around).
    fn step(&mut self, rows: usize) {
        let (d, dx, k) = (self.d, self.dx, self.k);
        let n = self.theta.len() / d;
        let start = self.cursor * rows % n;
        self.cursor += 1;
        // Gather.
        let mut tb = Vec::with_capacity(rows * d);
        let mut xb = Vec::with_capacity(rows * dx);
        for r in 0..rows {
            let i = (start + r) % n;
            tb.extend_from_slice(&self.theta[i * d..(i + 1) * d]);
            xb.extend_from_slice(&self.x[i * dx..(i + 1) * dx]);
        }
        let mut grads = vec![];
        if let Some((c, w)) = &self.flow {
            // −(1/B) Σ log q: forward and reverse pass (the reference recomputes the forward).
            let row_w = vec![-1.0 / rows as f64; rows];
            grads.extend(fcpu::backward(c, w, &tb, &xb, rows, &row_w).0.flat());
        }
        if let Some((rc, rw)) = &self.ratio {
            let neg = match (&self.flow, self.method) {
                (Some((c, w)), Method::Hybrid) => {
                    // K detached base-flow draws per x.
                    let z: Vec<f64> = (0..rows * k * d)
                        .map(|_| self.rng.sample(StandardNormal))
                        .collect();
                    let ctx: Vec<f64> = (0..rows * k)
                        .flat_map(|j| xb[(j / k) * dx..(j / k + 1) * dx].iter().copied())
                        .collect();
                    Some(fcpu::inverse(c, w, &z, &ctx, rows * k).0)
                }
                _ => None,
            };
            let inp = gcpu::pairs(&tb, &xb, neg.as_deref(), rows, k, d, dx);
            let nr = rows * (1 + k);
            let tape = mcpu::forward(rc, rw, &inp, nr);
            let (df, _) = gcpu::loss_grad(&tape.y, rows, k);
            let g = mcpu::backward(rc, rw, &inp, nr, &tape, &df, 0.0);
            grads.extend(g.w.iter().chain(&g.b).flatten());
        }
        let mut p = self.params();
        let cfg = self.adam_cfg;
        self.adam.step(&cfg, &mut p, &grads);
        self.set_params(&p);
    }
}

fn settings_for(
    cfg: &ThroughputConfig,
    prior: &gkl_tasks::Prior,
    mf: MethodFlow,
    batch: usize,
) -> crate::training::npe::NpeSettings {
    let mut s = cfg.profile.settings(
        prior,
        mf.method,
        cfg.contrastive,
        BaseGradient::Detached,
        cfg.seed,
    );
    if let Some(k) = mf.flow {
        s.flow.kind = k;
    }
    s.batch_size = batch;
    s
}

/// Simulations with exactly `n` rows (rows with non-finite x are dropped and drawn again).
fn simulate_n(task: &dyn Task, n: usize, seed: u64) -> BenchResult<(Vec<f64>, Vec<f64>)> {
    let (d, dx) = (task.dim_theta(), task.dim_x());
    let (mut t, mut x) = (vec![], vec![]);
    for round in 0..8u64 {
        let have = t.len() / d;
        if have >= n {
            break;
        }
        let (a, b) = simulate(task, (n - have) * 2, seed ^ round.wrapping_mul(0x9E37_79B9));
        t.extend(a);
        x.extend(b);
    }
    if t.len() / d < n {
        return Err(BenchError::Config(format!(
            "{}: fewer than {n} of the simulations are finite",
            task.name()
        )));
    }
    t.truncate(n * d);
    x.truncate(n * dx);
    Ok((t, x))
}

/// One training cell: the GPU step graph, then the CPU reference, each for `cfg.seconds`.
pub fn train_row(
    ctx: &GpuContext,
    task: &dyn Task,
    cfg: &ThroughputConfig,
    mf: MethodFlow,
    batch: usize,
) -> BenchResult<TrainRow> {
    let (d, dx) = (task.dim_theta(), task.dim_x());
    // A block of at least 8 batches and 65536 rows. Submissions of about a quarter second of
    // steps (at most a block's; the trainer submits a whole block of an epoch at once), with a
    // wait after each: few enough submissions that their fixed cost does not count on any
    // adapter, short enough for a few of them per measurement on a slow one.
    let n = (8 * batch).max(65_536).div_ceil(batch) * batch;
    let (theta, x) = simulate_n(task, n, cfg.seed ^ 0x5452_4149_4e00 ^ batch as u64)?;
    let settings = settings_for(cfg, task.prior(), mf, batch);
    let sb = StepBench::new(ctx, task.prior(), &theta, &x, dx, &settings)?;
    // Warm-up step (first use of the pipelines), then one step that sizes the submissions.
    sb.submit(ctx, 1)?;
    ctx.wait()?;
    let t1 = Instant::now();
    sb.submit(ctx, 1)?;
    ctx.wait()?;
    let per_submit =
        ((0.25 / t1.elapsed().as_secs_f64().max(1e-6)) as usize).clamp(1, sb.steps_per_block);
    let t = Instant::now();
    let mut steps = 0;
    while steps == 0 || t.elapsed().as_secs_f64() < cfg.seconds {
        sb.submit(ctx, per_submit)?;
        ctx.wait()?;
        steps += per_submit;
    }
    let gpu_s = t.elapsed().as_secs_f64();
    let taken = sb.steps_taken(ctx)? as usize;
    if taken != steps + 2 {
        return Err(BenchError::Config(format!(
            "{} batch {batch}: the GPU counted {taken} optimizer steps, {} were submitted",
            mf.label(),
            steps + 2
        )));
    }
    let flops = train_flops_per_pair(
        mf.method,
        sb.flow.as_ref(),
        sb.ratio.as_ref(),
        cfg.contrastive,
    );
    let gpu_pairs = steps as f64 * sb.batch as f64 / gpu_s;

    // CPU: the same step on the same rows from the GPU's current weights.
    let (fw, rw) = sb.weights(ctx)?;
    let nrows = sb.theta_packed.len() / crate::kernels::layout::pad4(d);
    let mut cpu = CpuStep {
        method: mf.method,
        flow: sb.flow.clone().zip(fw),
        ratio: sb.ratio.clone().zip(rw),
        adam: AdamCpu::new(0),
        adam_cfg: sb.adam_config,
        k: cfg.contrastive.max(1),
        d,
        dx,
        theta: unpack(&sb.theta_packed, nrows, d),
        x: unpack(&sb.x_packed, nrows, dx),
        cursor: 0,
        rng: StdRng::seed_from_u64(cfg.seed ^ 0x0043_5055),
    };
    let np = cpu.params().len();
    cpu.adam = AdamCpu::new(np);
    // A probe on up to 256 rows sizes the CPU step: the whole batch if one step fits the time
    // per measurement, else fewer rows (a multiple of 256), extrapolated per pair.
    let probe = batch.min(256);
    let tp = Instant::now();
    cpu.step(probe);
    let per_row = tp.elapsed().as_secs_f64() / probe as f64;
    let cpu_rows = if per_row * batch as f64 <= cfg.seconds {
        batch
    } else {
        (((cfg.seconds / per_row) as usize) / 256 * 256).clamp(probe, batch)
    };
    let t = Instant::now();
    let mut cpu_steps = 0;
    while cpu_steps == 0 || t.elapsed().as_secs_f64() < cfg.seconds {
        cpu.step(cpu_rows);
        cpu_steps += 1;
    }
    let cpu_s = t.elapsed().as_secs_f64();
    let cpu_pairs = (cpu_steps * cpu_rows) as f64 / cpu_s;
    Ok(TrainRow {
        method: mf.label(),
        batch: sb.batch,
        micro_batches: sb.micro_batches,
        steps_per_submit: per_submit,
        gpu_steps: steps,
        gpu_seconds: gpu_s,
        gpu_steps_per_s: steps as f64 / gpu_s,
        gpu_pairs_per_s: gpu_pairs,
        gpu_gflops: gpu_pairs * flops / 1e9,
        flops_per_pair: flops,
        cpu_rows,
        cpu_steps,
        cpu_seconds: cpu_s,
        cpu_pairs_per_s: cpu_pairs,
        cpu_gflops: cpu_pairs * flops / 1e9,
        gpu_over_cpu: gpu_pairs / cpu_pairs,
    })
}

/// The f64 networks of a trained model.
fn model_weights(m: &NpeModel) -> (Option<FlowWeights>, Option<MlpWeights>) {
    let f = match (&m.flow, m.flow_offset) {
        (Some(c), Some(off)) => Some(FlowWeights::from_arena(c, &m.params[off..])),
        _ => None,
    };
    let r = match (&m.ratio, m.ratio_offset) {
        (Some(c), Some(off)) => Some(MlpWeights::from_arena(
            &m.params[off..],
            &c.arena_layout(m.arena_align).0,
        )),
        _ => None,
    };
    (f, r)
}

/// One sampling cell: a briefly trained model, sampled on the GPU and by the CPU reference.
pub fn sampler_row(
    ctx: &GpuContext,
    task: &dyn Task,
    cfg: &ThroughputConfig,
    mf: MethodFlow,
    log: &mut dyn FnMut(&str),
) -> BenchResult<SamplerRow> {
    let (d, dx) = (task.dim_theta(), task.dim_x());
    let (theta, x) = simulate_n(task, cfg.sampler_simulations, cfg.seed ^ 0x5341_4d50)?;
    let mut settings = settings_for(cfg, task.prior(), mf, 256);
    settings.max_epochs = cfg.sampler_epochs.max(1);
    settings.patience = usize::MAX;
    let mut epochs = 0;
    let outcome = train_npe_with(
        ctx,
        task.prior(),
        &theta,
        &x,
        dx,
        &settings,
        Some(task.name()),
        None,
        &mut |m| epochs = m.epoch,
    )?;
    log(&format!("  trained {epochs} epochs"));
    let post = NpePosterior::new(ctx, outcome.model)?;
    let model = &post.model;
    let pre = &model.preprocess;
    let nobs = cfg.observations.max(1);
    let (_, xo) = simulate_n(task, nobs, cfg.seed ^ 0x004f_4253)?;
    let xs: Vec<Vec<f64>> = xo.chunks(dx).map(<[f64]>::to_vec).collect();
    let rej = |max_seconds: f64| RejectionConfig {
        max_seconds,
        m_proposals: cfg.m_proposals,
        ..Default::default()
    };

    // GPU: warm-up on one observation (first use of the pipelines; for the rejection sampler a
    // warm-up round and at least one sampling round), then runs over all of them until the time
    // is up. Each rejection run may last twice the warm-up call at least, so that it gets past
    // its own warm-up round on a slow adapter.
    let rejection = mf.method.has_ratio();
    let tw = Instant::now();
    if rejection {
        post.sample_with(&xs[..1], 1, cfg.seed, &rej(f64::INFINITY))?;
    } else {
        post.sample(&xs[..1], 1, cfg.seed)?;
    }
    let min_run = 2.0 * tw.elapsed().as_secs_f64();
    let t = Instant::now();
    let (mut proposals, mut post_warm, mut accepted) = (0u64, 0u64, 0u64);
    let mut log_m: Vec<f64> = vec![];
    let mut run = 1u64;
    while run == 1
        || t.elapsed().as_secs_f64() < cfg.seconds
        || (rejection && accepted == 0 && run <= 3)
    {
        let left = (cfg.seconds - t.elapsed().as_secs_f64()).max(min_run);
        if rejection {
            // A run that ended inside its warm-up (a slow or loaded adapter) is followed by one
            // that goes on until every observation has a sample.
            let (n, c) = if accepted == 0 && run > 1 {
                let mut c = rej(f64::INFINITY);
                c.max_proposals = cfg.m_proposals as u64 + (1 << 24);
                (1, c)
            } else {
                (10_000, rej(left))
            };
            let (_, rep) = post.sample_with(&xs, n, cfg.seed + run, &c)?;
            let reports = rep.rejection.unwrap_or_default();
            for r in &reports {
                proposals += r.proposals + r.warmup_proposals;
                post_warm += r.proposals;
                accepted += r.accepted as u64;
            }
            if log_m.is_empty() {
                log_m = reports.iter().map(|r| r.log_m).collect();
            }
        } else {
            let (s, rep) = post.sample(&xs, 1000, cfg.seed + run)?;
            let drawn: u64 = rep.drawn.iter().map(|&v| v as u64).sum();
            proposals += drawn;
            post_warm += drawn;
            accepted += s.iter().map(|v| (v.len() / d) as u64).sum::<u64>();
        }
        run += 1;
    }
    let gpu_s = t.elapsed().as_secs_f64();

    // CPU: the same proposals, 256 at a time, over the observations in turn.
    let (fw, rw) = model_weights(model);
    let xz: Vec<Vec<f64>> = xs.iter().map(|x| pre.x_forward(x)).collect();
    // Rejection: only observations whose warm-up set a bound M on the GPU.
    let obs: Vec<usize> = (0..nobs)
        .filter(|&o| !rejection || log_m.get(o).is_some_and(|m| m.is_finite()))
        .collect();
    if obs.is_empty() {
        return Err(BenchError::Config(format!(
            "{}: no observation finished the sampler's warm-up in {} s; give more --seconds",
            mf.label(),
            cfg.seconds
        )));
    }
    let pack = PriorPack::new(pre)?;
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x0053_504c);
    let chunk = 256;
    let (mut cpu_props, mut cpu_acc) = (0u64, 0u64);
    let mut r = 0u32;
    let t = Instant::now();
    while cpu_props == 0 || t.elapsed().as_secs_f64() < cfg.seconds {
        let owners: Vec<usize> = (0..chunk)
            .map(|j| obs[(cpu_props as usize + j) % obs.len()])
            .collect();
        // θ in network space, and whether it lies in the prior's support.
        let (tz, inside): (Vec<f64>, Vec<bool>) = match (&model.flow, &fw) {
            (Some(fc), Some(w)) => {
                let z: Vec<f64> = (0..chunk * d).map(|_| rng.sample(StandardNormal)).collect();
                let c: Vec<f64> = owners.iter().flat_map(|&o| xz[o].iter().copied()).collect();
                let (tz, _) = fcpu::inverse(fc, w, &z, &c, chunk);
                let th = pre.theta_inverse(&tz);
                let inside = th
                    .chunks(d)
                    .map(|row| row.iter().all(|v| v.is_finite()) && pre.prior.in_support(row))
                    .collect();
                (tz, inside)
            }
            _ => {
                let mut tz = Vec::with_capacity(chunk * d);
                let mut inside = Vec::with_capacity(chunk);
                for j in 0..chunk {
                    let th = rcpu::prior_draw(&pack.data, d, cfg.seed, r + j as u32, 0);
                    inside.push(pre.prior.in_support(&th));
                    tz.extend(pre.theta_forward(&th));
                }
                (tz, inside)
            }
        };
        match (&model.ratio, &rw) {
            (Some(rc), Some(w)) => {
                let inp: Vec<f64> = (0..chunk)
                    .flat_map(|j| {
                        tz[j * d..(j + 1) * d]
                            .iter()
                            .chain(&xz[owners[j]])
                            .copied()
                            .collect::<Vec<f64>>()
                    })
                    .collect();
                let f = mcpu::forward(rc, w, &inp, chunk).y;
                for j in 0..chunk {
                    let u = rcpu::accept_uniform(cfg.seed, r + j as u32, 0);
                    if inside[j] && u < (f[j] - log_m[owners[j]]).exp() {
                        cpu_acc += 1;
                    }
                }
            }
            _ => cpu_acc += inside.iter().filter(|&&b| b).count() as u64,
        }
        cpu_props += chunk as u64;
        r = r.wrapping_add(chunk as u32);
    }
    let cpu_s = t.elapsed().as_secs_f64();
    let gpu_rate = proposals as f64 / gpu_s;
    let cpu_rate = cpu_props as f64 / cpu_s;
    Ok(SamplerRow {
        method: mf.label(),
        sampler: if rejection { "rejection" } else { "flow" }.into(),
        observations: nobs,
        trained_epochs: epochs,
        trained_simulations: cfg.sampler_simulations,
        gpu_proposals: proposals,
        gpu_seconds: gpu_s,
        gpu_proposals_per_s: gpu_rate,
        gpu_accepted_per_s: accepted as f64 / gpu_s,
        acceptance_rate: if post_warm > 0 {
            accepted as f64 / post_warm as f64
        } else {
            0.0
        },
        cpu_proposals: cpu_props,
        cpu_seconds: cpu_s,
        cpu_proposals_per_s: cpu_rate,
        cpu_accepted_per_s: cpu_acc as f64 / cpu_s,
        gpu_over_cpu: gpu_rate / cpu_rate,
    })
}

/// Every training cell (method × batch), then every sampling cell (method).
pub fn run(
    ctx: &GpuContext,
    cfg: &ThroughputConfig,
    log: &mut dyn FnMut(&str),
) -> BenchResult<ThroughputReport> {
    let t0 = Instant::now();
    let task = task_by_name(&cfg.task)?;
    if cfg.contrastive == 0 || cfg.batches.contains(&0) || cfg.seconds <= 0.0 {
        return Err(BenchError::Config(
            "--contrastive, every batch size and --seconds must be positive".into(),
        ));
    }
    let mut train = vec![];
    for &mf in &cfg.methods {
        for &b in &cfg.batches {
            log(&format!("train   {:<11} batch {b:>6}", mf.label()));
            train.push(train_row(ctx, task.as_ref(), cfg, mf, b)?);
        }
    }
    let mut sampler = vec![];
    if cfg.observations > 0 {
        for &mf in &cfg.methods {
            log(&format!(
                "sample  {:<11} {} observations",
                mf.label(),
                cfg.observations
            ));
            sampler.push(sampler_row(ctx, task.as_ref(), cfg, mf, log)?);
        }
    }
    let notes = vec![
        "GPU training: the trainer's step graph (gather, flow forward+backward, ratio term with contrastive θ' or base-flow draws, Adam) on a resident block of ≥ 65536 simulations, about 0.25 s of steps per submission (`steps_per_submit`) with a wait after each; validation and per-epoch host work not included".into(),
        "CPU training: the project's f64 references of the same step (flow::cpu::backward, flow::cpu::inverse for hybrid draws, gkl::cpu, mlp::cpu, AdamCpu), one thread, unoptimized; timed on `cpu_rows` rows per step and extrapolated per pair when that is fewer than the batch".into(),
        "FLOPs per pair: dense multiply-adds of every layer (masked MADE weights included) × 2 × 3 for forward+backward; a hybrid base-flow draw adds dim hidden-stack passes + one output layer per transform, forward only (× 2); splines, activations, loss, gather and Adam not counted".into(),
        format!("sampling: models trained {} epochs on {} simulations (batch 256); {} observations (x simulated from prior draws) at once; rejection warm-up of {} proposals per observation sets M and its proposals are counted; NPE proposals are flow draws, accepted = inside the prior's support", cfg.sampler_epochs, cfg.sampler_simulations, cfg.observations, cfg.m_proposals),
        "CPU sampling: per proposal a Philox prior draw (ratio) or an f64 flow inverse (hybrid, NPE), the f64 ratio net in chunks of 256, and the acceptance test against the GPU run's log M per observation; one thread".into(),
    ];
    Ok(ThroughputReport {
        adapter: ctx.summary().one_line(),
        task: task.name().to_string(),
        dim_theta: task.dim_theta(),
        dim_x: task.dim_x(),
        seconds_per_measurement: cfg.seconds,
        contrastive: cfg.contrastive,
        profile: cfg.profile.clone(),
        train,
        sampler,
        notes,
        total_seconds: t0.elapsed().as_secs_f64(),
    })
}

fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

impl ThroughputReport {
    pub fn table(&self) -> String {
        let p = &self.profile;
        let mut s = format!("adapter: {}\n", self.adapter);
        s += &format!(
            "task {} (θ {}, x {}); flows {} transforms × {} hidden layers × {} units ({} bins for NSF), ratio net {} wide × {} residual blocks, K = {}; ≥ {} s per measurement\n\n",
            self.task, self.dim_theta, self.dim_x, p.transforms, p.hidden_layers, p.hidden, p.bins,
            p.ratio_hidden, p.ratio_blocks, self.contrastive, self.seconds_per_measurement
        );
        s += "training step (GPU: the trainer's step graph; CPU: f64 reference, one thread)\n";
        s += "| method | batch | GPU steps/s | GPU pairs/s | GPU GFLOP/s | CPU pairs/s | CPU rows | CPU GFLOP/s | GPU/CPU |\n";
        s += "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        for r in &self.train {
            s += &format!(
                "| {} | {} | {} | {} | {:.2} | {} | {} | {:.3} | {:.2} |\n",
                r.method,
                r.batch,
                fmt_rate(r.gpu_steps_per_s),
                fmt_rate(r.gpu_pairs_per_s),
                r.gpu_gflops,
                fmt_rate(r.cpu_pairs_per_s),
                r.cpu_rows,
                r.cpu_gflops,
                r.gpu_over_cpu
            );
        }
        if !self.sampler.is_empty() {
            let r0 = &self.sampler[0];
            s += &format!(
                "\nsampling, {} observations at once (models trained {} epochs on {} simulations)\n",
                r0.observations, r0.trained_epochs, r0.trained_simulations
            );
            s += "| method | sampler | GPU proposals/s | GPU accepted/s | acceptance | CPU proposals/s | CPU accepted/s | GPU/CPU |\n";
            s += "|---|---|---:|---:|---:|---:|---:|---:|\n";
            for r in &self.sampler {
                s += &format!(
                    "| {} | {} | {} | {} | {:.3} | {} | {} | {:.2} |\n",
                    r.method,
                    r.sampler,
                    fmt_rate(r.gpu_proposals_per_s),
                    fmt_rate(r.gpu_accepted_per_s),
                    r.acceptance_rate,
                    fmt_rate(r.cpu_proposals_per_s),
                    fmt_rate(r.cpu_accepted_per_s),
                    r.gpu_over_cpu
                );
            }
        }
        s += "\n";
        for n in &self.notes {
            s += &format!("- {n}\n");
        }
        s += &format!("({:.0} s in all)\n", self.total_seconds);
        s
    }
}

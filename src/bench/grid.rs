//! `gkl-gpu bench`: the benchmark grid. For every cell (task, method, K, base gradient of the
//! hybrid, budget, seed): simulate,
//! train, keep the model; for every observation: sample, score by C2ST against the task's
//! reference posterior, and append one row to the journal. A killed run restarts where it
//! stopped: finished rows are never redone, and a cell whose model was saved is only re-sampled.
//! Optionally the same cells run by the `sbi` library (`--peer-python`), scored by the same C2ST.

use super::journal::{row_key, Journal, JournalError, Row};
use crate::evaluation::c2st::{c2st, C2stConfig, C2stError, Samples};
use crate::io::{read_samples, write_npy_f64, IoError};
use crate::kernels::Activation;
use crate::models::flow::{FlowConfig, FlowKind};
use crate::models::mlp::MlpConfig;
use crate::models::posterior::NpeModel;
use crate::runtime::{GpuContext, GpuError};
use crate::sampling::npe::NpePosterior;
use crate::sampling::rejection::RejectionConfig;
use crate::training::npe::{train_npe_with, NpeSettings};
use crate::training::preprocess::unconstrained_by_default;
use crate::training::{BaseGradient, Method};
use gkl_tasks::{task_by_name, Prior, Task, TaskError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Errors of the benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    C2st(#[from] C2stError),
    #[error(transparent)]
    Model(#[from] crate::error::Error),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The `std::io::Error` is folded into the one-line message, not exposed as a `source()`,
    /// so that `anyhow`'s `{:#}` does not print it twice (as `IoError` does).
    #[error("{path}: {what}: {err}")]
    File {
        path: PathBuf,
        what: &'static str,
        err: std::io::Error,
    },
    #[error("plot {path}: {problem}")]
    Plot { path: PathBuf, problem: String },
    #[error("{0}")]
    Config(String),
}

pub type BenchResult<T> = Result<T, BenchError>;

pub(crate) fn file_err<'a>(
    path: &'a Path,
    what: &'static str,
) -> impl FnOnce(std::io::Error) -> BenchError + 'a {
    move |err| BenchError::File {
        path: path.to_path_buf(),
        what,
        err,
    }
}

fn old_flow_activation() -> Activation {
    Activation::Relu
}

/// Architecture and optimizer of every cell (the `train` command's defaults, or tiny ones).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainProfile {
    pub flow: FlowKind,
    pub transforms: usize,
    pub hidden: usize,
    pub hidden_layers: usize,
    pub bins: usize,
    pub tail_bound: f64,
    /// The flow's MADE activation and wiring (see [`FlowConfig`]); cells saved before these
    /// fields existed read as the settings they were trained with (ReLU, nflows' MADE).
    #[serde(default = "old_flow_activation")]
    pub flow_activation: Activation,
    #[serde(default)]
    pub context_every_dim: bool,
    #[serde(default)]
    pub spline_identity_init: bool,
    pub ratio_hidden: usize,
    pub ratio_blocks: usize,
    pub base_epochs: usize,
    pub batch_size: usize,
    pub lr: f32,
    pub max_epochs: usize,
    pub patience: usize,
    /// Halve the learning rate after this many epochs without a better validation loss (0: a
    /// constant rate, as in cells saved before the field existed).
    #[serde(default)]
    pub lr_patience: usize,
    /// Hybrid: the partition term counts only base draws inside the prior's support
    /// (`NpeSettings::support_mask`); cells saved before the field existed read as false.
    #[serde(default)]
    pub support_mask: bool,
    /// θ modelled in the prior's unconstrained space (`NpeSettings::unconstrained`); `None`:
    /// `train`'s default for the method and prior ([`unconstrained_by_default`]). Cells saved
    /// before the field existed read as `Some(false)`, as they were trained.
    #[serde(default = "prior_space")]
    pub unconstrained: Option<bool>,
}

fn prior_space() -> Option<bool> {
    Some(false)
}

impl Default for TrainProfile {
    /// `gkl-gpu train`'s defaults.
    fn default() -> Self {
        TrainProfile {
            flow: FlowKind::Nsf,
            transforms: 5,
            hidden: 50,
            hidden_layers: 2,
            bins: 10,
            tail_bound: 5.0,
            flow_activation: FlowKind::Nsf.default_activation(),
            context_every_dim: FlowKind::Nsf.default_context_every_dim(),
            spline_identity_init: true,
            ratio_hidden: 64,
            ratio_blocks: 2,
            base_epochs: 0,
            batch_size: 200,
            lr: 5e-4,
            max_epochs: 2000,
            patience: 20,
            lr_patience: 10,
            support_mask: true,
            unconstrained: None,
        }
    }
}

impl TrainProfile {
    /// `kind` with its own default activation and MADE wiring (those of `gkl-gpu train`).
    pub fn with_flow(self, kind: FlowKind) -> Self {
        TrainProfile {
            flow: kind,
            flow_activation: kind.default_activation(),
            context_every_dim: kind.default_context_every_dim(),
            ..self
        }
    }

    /// Tiny networks and few epochs: for tests and smoke runs, not for numbers.
    pub fn quick() -> Self {
        TrainProfile {
            transforms: 2,
            hidden: 16,
            ratio_hidden: 16,
            ratio_blocks: 1,
            max_epochs: 10,
            patience: 5,
            ..Default::default()
        }
        .with_flow(FlowKind::Maf)
    }

    pub fn settings(
        &self,
        prior: &Prior,
        method: Method,
        contrastive: usize,
        base_gradient: BaseGradient,
        seed: u64,
    ) -> NpeSettings {
        NpeSettings {
            method,
            flow: FlowConfig {
                kind: self.flow,
                dim: 0,
                context_dim: 0,
                transforms: self.transforms,
                hidden: self.hidden,
                hidden_layers: self.hidden_layers,
                bins: self.bins,
                tail_bound: self.tail_bound,
                act: self.flow_activation,
                context_every_dim: self.context_every_dim,
                spline_identity_init: self.spline_identity_init,
            },
            embedding: None,
            ratio: Some(MlpConfig {
                in_dim: 0,
                out_dim: 1,
                hidden: self.ratio_hidden,
                blocks: self.ratio_blocks,
                act: Activation::Relu,
                residual: true,
            }),
            contrastive,
            base_epochs: self.base_epochs,
            base_gradient,
            support_mask: self.support_mask,
            batch_size: self.batch_size,
            lr: self.lr,
            max_epochs: self.max_epochs,
            patience: self.patience,
            validation_fraction: 0.1,
            clip_norm: 5.0,
            weight_decay: 0.0,
            lr_patience: self.lr_patience,
            lr_factor: 0.5,
            lr_restore_best: false,
            seed,
            unconstrained: self
                .unconstrained
                .unwrap_or_else(|| unconstrained_by_default(method, prior)),
        }
    }
}

/// What `gkl-gpu bench` runs.
#[derive(Clone, Debug)]
pub struct GridConfig {
    pub tasks: Vec<String>,
    pub methods: Vec<Method>,
    pub budgets: Vec<usize>,
    pub observations: Vec<usize>,
    /// Seeds 0..seeds.
    pub seeds: u64,
    /// K values for ratio and hybrid (npe cells ignore K).
    pub contrastive: Vec<usize>,
    /// The hybrid's base gradient (an ablation axis; the other methods ignore it).
    pub base_gradients: Vec<BaseGradient>,
    pub num_samples: usize,
    pub out: PathBuf,
    pub hybrid_base_c2st: bool,
    pub profile: TrainProfile,
    /// Rejection sampling wall-time budget per observation (s).
    pub max_sample_seconds: f64,
    /// The C2ST's settings, its device (`--c2st-device`) included.
    pub c2st: C2stConfig,
    /// Python interpreter with sbi and sbibm, and the peer script it runs.
    pub peer_python: Option<PathBuf>,
    pub peer_script: PathBuf,
    pub plots: bool,
    /// Train (and save) every pending cell's model, nothing else: a later run without it samples
    /// and scores them, e.g. training on a lent GPU and scoring on the development machine.
    pub train_only: bool,
}

/// Per-cell facts kept beside the model (written after the model, so its presence means the
/// model is complete).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CellInfo {
    pub simulate_s: f64,
    pub train_s: f64,
    pub epochs: usize,
    pub best_epoch: usize,
    /// Training failed (recorded so that it is not retried).
    pub error: Option<String>,
    pub profile: TrainProfile,
    /// The adapter that trained the model (absent in cells saved before the field existed).
    #[serde(default)]
    pub adapter: Option<String>,
}

pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A cell's directory (and sample file) name; a reparameterized hybrid's ends in `_reparam`.
pub(crate) fn cell_name(
    method: &str,
    k: usize,
    base_gradient: BaseGradient,
    budget: usize,
    seed: u64,
) -> String {
    let bg = match base_gradient {
        BaseGradient::Detached => "",
        BaseGradient::Reparameterized => "_reparam",
    };
    format!("{method}_K{k}_n{budget}_s{seed}{bg}")
}

/// The (task, observation) reference posterior, cached under `out/references/`.
pub fn reference(out: &Path, task: &dyn Task, obs: usize, n: usize) -> BenchResult<Vec<f64>> {
    let dir = out.join("references").join(task.name());
    let path = dir.join(format!("obs{obs}_n{n}.npy"));
    if path.exists() {
        let a = read_samples(&path)?;
        if a.shape() == [n, task.dim_theta()] {
            return Ok(a.data);
        }
    }
    std::fs::create_dir_all(&dir).map_err(file_err(&dir, "create"))?;
    let x = task.observation(obs)?.x;
    let r = task.reference_posterior(&x, n, 1000 + obs as u64)?;
    write_npy_f64(&path, &[n, task.dim_theta()], &r)?;
    Ok(r)
}

/// C2ST of `ours` (m rows) against the first m rows of `reference`, on `cfg.device`.
pub(crate) fn score(
    ctx: &GpuContext,
    cfg: &C2stConfig,
    reference: &[f64],
    ours: &[f64],
    d: usize,
) -> BenchResult<(f64, f64)> {
    let m = ours.len() / d;
    let r = c2st(
        ctx,
        &Samples {
            data: &reference[..m * d],
            rows: m,
            dim: d,
        },
        &Samples {
            data: ours,
            rows: m,
            dim: d,
        },
        cfg,
        |_, _| {},
    )?;
    Ok((r.accuracy, r.seconds))
}

/// Simulations of a cell, as `gkl-gpu train --task` draws them (rows with NaN/Inf in x dropped).
pub(crate) fn simulate(task: &dyn Task, n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let theta = task.sample_prior(n, seed);
    let x = task.simulate(&theta, seed.wrapping_add(0x5349_4d55));
    let (dt, dx) = (task.dim_theta(), task.dim_x());
    let (mut t2, mut x2) = (Vec::with_capacity(theta.len()), Vec::with_capacity(x.len()));
    for (t, xr) in theta.chunks(dt).zip(x.chunks(dx)) {
        if xr.iter().all(|v| v.is_finite()) {
            t2.extend_from_slice(t);
            x2.extend_from_slice(xr);
        }
    }
    (t2, x2)
}

/// Trains the cell (or reads what an earlier run left).
#[allow(clippy::too_many_arguments)]
fn train_cell(
    ctx: &GpuContext,
    cfg: &GridConfig,
    task: &dyn Task,
    method: Method,
    k: usize,
    base_gradient: BaseGradient,
    budget: usize,
    seed: u64,
    dir: &Path,
    log: &mut dyn FnMut(&str),
) -> BenchResult<CellInfo> {
    let info_path = dir.join("cell.json");
    if let Ok(text) = std::fs::read_to_string(&info_path) {
        if let Ok(info) = serde_json::from_str::<CellInfo>(&text) {
            if info.profile == cfg.profile {
                log(&format!(
                    "  trained earlier ({} epochs, {:.1} s); sampling only",
                    info.epochs, info.train_s
                ));
                return Ok(info);
            }
            log("  trained earlier with other settings; training again");
        }
    }
    let t = Instant::now();
    let (theta, x) = simulate(task, budget, seed);
    let simulate_s = t.elapsed().as_secs_f64();
    let settings = cfg
        .profile
        .settings(task.prior(), method, k, base_gradient, seed);
    let t = Instant::now();
    let mut last = 0usize;
    let outcome = train_npe_with(
        ctx,
        task.prior(),
        &theta,
        &x,
        task.dim_x(),
        &settings,
        Some(task.name()),
        None,
        &mut |m| last = m.epoch,
    );
    let train_s = t.elapsed().as_secs_f64();
    let info = match outcome {
        Ok(o) => {
            std::fs::create_dir_all(dir).map_err(file_err(dir, "create"))?;
            o.model.save(dir)?;
            CellInfo {
                simulate_s,
                train_s,
                epochs: last,
                best_epoch: o.best_epoch,
                error: None,
                profile: cfg.profile.clone(),
                adapter: Some(ctx.summary().one_line()),
            }
        }
        // Invalid settings for this task (e.g. a flow wider than MAX_DIM) are a result of the
        // benchmark, recorded once; device failures are not.
        Err(GpuError::InvalidArgument(e)) => {
            log(&format!("  training failed: {e}"));
            CellInfo {
                simulate_s,
                train_s,
                epochs: last,
                best_epoch: 0,
                error: Some(format!("training: {e}")),
                profile: cfg.profile.clone(),
                adapter: Some(ctx.summary().one_line()),
            }
        }
        Err(e) => return Err(e.into()),
    };
    std::fs::create_dir_all(dir).map_err(file_err(dir, "create"))?;
    let json =
        serde_json::to_string_pretty(&info).map_err(|e| BenchError::Config(e.to_string()))?;
    crate::io::atomic_write_bytes(&info_path, json.as_bytes())?;
    Ok(info)
}

fn method_label(m: Method) -> &'static str {
    m.name()
}

/// Runs every cell of `cfg` not yet in the journal, then writes results.csv, table.md and the
/// figures. Returns the journal's rows.
pub fn run(ctx: &GpuContext, cfg: &GridConfig, log: &mut dyn FnMut(&str)) -> BenchResult<Vec<Row>> {
    if cfg.num_samples < 10 {
        return Err(BenchError::Config(
            "--num-samples must be at least 10".into(),
        ));
    }
    std::fs::create_dir_all(&cfg.out).map_err(file_err(&cfg.out, "create"))?;
    let mut journal = Journal::open(&cfg.out.join("journal.jsonl"))?;
    let tasks: Vec<Box<dyn Task>> = cfg
        .tasks
        .iter()
        .map(|t| task_by_name(t))
        .collect::<Result<_, _>>()?;
    for task in &tasks {
        for &obs in &cfg.observations {
            task.observation(obs)?;
        }
    }
    let n = cfg.num_samples;
    for task in &tasks {
        let d = task.dim_theta();
        for &budget in &cfg.budgets {
            for seed in 0..cfg.seeds {
                for &method in &cfg.methods {
                    let ks: Vec<usize> = if method == Method::Npe {
                        vec![1]
                    } else {
                        cfg.contrastive.clone()
                    };
                    let bgs: Vec<BaseGradient> = if method == Method::Hybrid {
                        cfg.base_gradients.clone()
                    } else {
                        vec![BaseGradient::Detached]
                    };
                    for (k, bg) in ks.iter().flat_map(|&k| bgs.iter().map(move |&bg| (k, bg))) {
                        let mname = method_label(method);
                        let pending: Vec<usize> = cfg
                            .observations
                            .iter()
                            .copied()
                            .filter(|&o| {
                                !journal.contains(&row_key(
                                    task.name(),
                                    mname,
                                    k,
                                    bg,
                                    budget,
                                    seed,
                                    o,
                                ))
                            })
                            .collect();
                        if pending.is_empty() {
                            continue;
                        }
                        let variant = match bg {
                            BaseGradient::Reparameterized => " (reparameterized base gradient)",
                            BaseGradient::Detached => "",
                        };
                        log(&format!(
                            "{} {mname} K={k}{variant} n={budget} seed={seed}: observations {pending:?}",
                            task.name()
                        ));
                        let cell = cell_name(mname, k, bg, budget, seed);
                        let dir = cfg.out.join("models").join(task.name()).join(&cell);
                        let info = train_cell(
                            ctx,
                            cfg,
                            task.as_ref(),
                            method,
                            k,
                            bg,
                            budget,
                            seed,
                            &dir,
                            log,
                        )?;
                        if cfg.train_only {
                            continue;
                        }
                        // Where the model trained, if not here (`--train-only` on another machine).
                        let here = ctx.summary().one_line();
                        let adapter = match &info.adapter {
                            Some(a) if *a != here => format!("trained on {a}; sampled on {here}"),
                            _ => here,
                        };
                        let base_row = |obs: usize| Row {
                            task: task.name().to_string(),
                            method: mname.to_string(),
                            contrastive: k,
                            base_gradient: bg,
                            budget,
                            seed,
                            observation: obs,
                            c2st: None,
                            base_c2st: None,
                            simulate_s: info.simulate_s,
                            train_s: info.train_s,
                            epochs: info.epochs,
                            sample_s: 0.0,
                            c2st_s: 0.0,
                            c2st_device: cfg.c2st.device,
                            adapter: Some(adapter.clone()),
                            samples: 0,
                            acceptance_rate: None,
                            log_z: None,
                            proposals: None,
                            sampling_finished: false,
                            error: info.error.clone(),
                            finished_at: 0.0,
                        };
                        if info.error.is_some() {
                            for &obs in &pending {
                                journal.append(Row {
                                    finished_at: now_unix(),
                                    ..base_row(obs)
                                })?;
                            }
                            continue;
                        }
                        let model = NpeModel::load(&dir)?;
                        let base = (cfg.hybrid_base_c2st && method == Method::Hybrid)
                            .then(|| model.base_flow());
                        let post = NpePosterior::new(ctx, model)?;
                        let base_post = base.map(|b| NpePosterior::new(ctx, b)).transpose()?;
                        let rej = RejectionConfig {
                            max_seconds: cfg.max_sample_seconds,
                            ..Default::default()
                        };
                        for &obs in &pending {
                            let x = task.observation(obs)?.x;
                            let refs = reference(&cfg.out, task.as_ref(), obs, n)?;
                            let sseed = seed.wrapping_mul(1_000_003).wrapping_add(obs as u64);
                            let t = Instant::now();
                            let mut row = base_row(obs);
                            match post.sample_with(std::slice::from_ref(&x), n, sseed, &rej) {
                                Ok((samples, report)) => {
                                    row.sample_s = t.elapsed().as_secs_f64();
                                    let s = &samples[0];
                                    row.samples = s.len() / d;
                                    row.sampling_finished = row.samples == n;
                                    if let Some(r) =
                                        report.rejection.as_ref().and_then(|r| r.first())
                                    {
                                        row.acceptance_rate = Some(r.acceptance_rate);
                                        row.log_z = Some(r.log_z);
                                        row.proposals = Some(r.proposals);
                                        if let Some(why) = &r.stopped {
                                            row.error = Some(format!(
                                                "sampling stopped after {} of {n} samples: {why}",
                                                row.samples
                                            ));
                                        }
                                    }
                                    if row.samples >= 2 * cfg.c2st.folds.max(50) {
                                        let (acc, secs) = score(ctx, &cfg.c2st, &refs, s, d)?;
                                        row.c2st = Some(acc);
                                        row.c2st_s = secs;
                                    }
                                    if seed == 0
                                        && row.samples > 0
                                        && Some(&obs) == cfg.observations.first()
                                    {
                                        let sdir = cfg.out.join("samples").join(task.name());
                                        std::fs::create_dir_all(&sdir)
                                            .map_err(file_err(&sdir, "create"))?;
                                        write_npy_f64(
                                            sdir.join(format!("{cell}_obs{obs}.npy")),
                                            &[row.samples, d],
                                            s,
                                        )?;
                                    }
                                }
                                Err(GpuError::InvalidArgument(e)) => {
                                    row.error = Some(format!("sampling: {e}"))
                                }
                                Err(e) => return Err(e.into()),
                            }
                            if let Some(bp) = &base_post {
                                let (bs, _) =
                                    bp.sample(std::slice::from_ref(&x), n, sseed ^ 0xBA5E)?;
                                let (acc, _) = score(ctx, &cfg.c2st, &refs, &bs[0], d)?;
                                row.base_c2st = Some(acc);
                            }
                            row.finished_at = now_unix();
                            log(&format!(
                                "  obs {obs}: C2ST {}{}  sample {:.1} s, c2st {:.1} s{}",
                                row.c2st.map_or("-".into(), |c| format!("{c:.4}")),
                                row.base_c2st
                                    .map_or(String::new(), |c| format!(" (base flow {c:.4})")),
                                row.sample_s,
                                row.c2st_s,
                                row.acceptance_rate.map_or(String::new(), |a| format!(
                                    ", acceptance {a:.4}, ln Z {:.3}",
                                    row.log_z.unwrap_or(f64::NAN)
                                ))
                            ));
                            journal.append(row)?;
                        }
                    }
                }
            }
        }
    }
    if let Some(py) = &cfg.peer_python {
        super::peer::run_peers(ctx, cfg, py, &tasks, &mut journal, log)?;
    }
    super::report::write_all(cfg, &journal.rows, log)?;
    Ok(journal.rows.clone())
}

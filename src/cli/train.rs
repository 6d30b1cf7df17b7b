//! `gkl-gpu train`: simulate a task (on CPU threads, while the GPU is being set up), train a
//! posterior on the GPU, save it with its per-epoch metrics.

use super::GpuArgs;
use anyhow::{bail, Context, Result};
use clap::{Args, CommandFactory, Parser};
use gkl_gpu::kernels::Activation;
use gkl_gpu::models::flow::{FlowConfig, FlowKind};
use gkl_gpu::models::mlp::MlpConfig;
use gkl_gpu::training::npe::{
    train, CheckpointConfig, EpochMetrics, Fault, NpeSettings, Simulator, TrainOptions,
};
use gkl_gpu::training::preprocess::unconstrained_by_default;
use gkl_gpu::training::{recover_run_dir, BaseGradient, Checkpoint, Method, TrainSource};
use gkl_tasks::task_by_name;
use serde::{Deserialize, Serialize};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn half() -> f32 {
    0.5
}

fn relu() -> Activation {
    Activation::Relu
}

/// Arguments that may be given again with `--resume` (they override the stored ones).
const RESUME_OVERRIDES: [&str; 3] = ["resume", "max_epochs", "checkpoint_every"];

#[derive(Parser, Serialize, Deserialize)]
pub struct TrainArgs {
    /// Benchmark task to simulate (optional with --data/--theta/--simulator-cmd and --prior)
    #[arg(long)]
    task: Option<String>,
    #[command(flatten)]
    data: super::data::DataArgs,
    /// Surrogate: npe (normalized flow), ratio (prior × exp f), hybrid (flow × exp f)
    #[arg(long, value_enum, default_value_t = Method::Npe)]
    method: Method,
    /// Ratio and hybrid: contrastive θ' per x in the partition term (K)
    #[arg(long, default_value_t = 1)]
    contrastive: usize,
    /// Hybrid: epochs that train the base flow alone before the ratio joins
    #[arg(long, default_value_t = 0)]
    base_epochs: usize,
    /// Hybrid: whether the partition term E[exp f(θ', x)] trains the base flow too, through its
    /// draws θ' = T⁻¹(z; x) with z fixed (reparameterized), or only the ratio (detached: the base
    /// learns from its NPE term alone)
    #[arg(long, value_enum, default_value_t = BaseGradient::Detached)]
    #[serde(default)]
    base_gradient: BaseGradient,
    /// Hybrid: base draws outside a bounded prior's support count as exp f = 0 in the partition
    /// term, so the model trained is q·exp f·1_support, the density `sample` draws from; false:
    /// every draw counts and f must fall towards −∞ where the base leaks past the support's edge
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    #[serde(default)]
    support_mask: bool,
    /// Ratio network (ratio, hybrid): width of the residual MLP on [θ, x]
    #[arg(long, default_value_t = 64)]
    ratio_hidden: usize,
    /// Ratio network: residual blocks
    #[arg(long, default_value_t = 2)]
    ratio_blocks: usize,
    /// Ratio network: activation
    #[arg(long, value_enum, default_value_t = Activation::Relu)]
    #[serde(default = "relu")]
    ratio_activation: Activation,
    /// Flow family. MAF is the default: on two_moons at 10⁴ simulations it trains in about half
    /// the time of the NSF at a C2ST better than sbi's default NPE; NSF fits sharper posteriors
    /// (BENCHMARKS.md)
    #[arg(long, value_enum, default_value_t = FlowKind::Maf)]
    flow: FlowKind,
    /// Simulation budget
    #[arg(long, default_value_t = 10_000)]
    simulations: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory (config.json, model.safetensors, metrics.jsonl, checkpoint/)
    #[arg(long, required_unless_present = "resume")]
    out: Option<PathBuf>,
    /// Continue the run in this directory from its checkpoint, with the arguments it was started
    /// with (stored in the checkpoint); only --max-epochs and --checkpoint-every may be given too
    #[arg(long, value_name = "RUN_DIR")]
    #[serde(skip)]
    resume: Option<PathBuf>,
    /// Write a checkpoint (RUN/checkpoint/) every E epochs, and always at the end and when a GPU
    /// fault stops the run; 0: only then
    #[arg(long, default_value_t = 10, value_name = "E")]
    checkpoint_every: usize,
    /// Largest GPU block of training rows in bytes (default: 64 MiB or the adapter's largest
    /// binding); tests force several blocks with it
    #[arg(long, hide = true)]
    #[serde(default)]
    block_bytes: Option<u64>,
    /// Pairs per training step [default: 256 for npe, 200 for ratio and hybrid; measured in
    /// BENCHMARKS.md]
    #[arg(long)]
    batch_size: Option<usize>,
    /// Adam's learning rate [default: 1e-3 for npe, 5e-4 for ratio and hybrid]
    #[arg(long)]
    lr: Option<f32>,
    #[arg(long, default_value_t = 2000)]
    max_epochs: usize,
    /// Epochs without a better validation loss before stopping
    #[arg(long, default_value_t = 20)]
    patience: usize,
    #[arg(long, default_value_t = 0.1)]
    validation_fraction: f64,
    #[arg(long, default_value_t = 5.0)]
    clip_norm: f32,
    /// Decoupled (AdamW) weight decay on every parameter (0: none)
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f32,
    /// Multiply the learning rate by --lr-factor after this many epochs in a row without a
    /// better validation loss (0: constant learning rate) [default: 10 for npe and hybrid, 0 for
    /// ratio]
    #[arg(long)]
    #[serde(default)]
    lr_patience: Option<usize>,
    #[arg(long, default_value_t = 0.5)]
    #[serde(default = "half")]
    lr_factor: f32,
    /// Each time the plateau schedule lowers the learning rate, continue from the best
    /// parameters so far (by validation loss) instead of the current ones
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    #[serde(default)]
    lr_restore_best: bool,
    /// Flow transforms
    #[arg(long, default_value_t = 5)]
    transforms: usize,
    /// Hidden units of each MADE layer
    #[arg(long, default_value_t = 50)]
    hidden: usize,
    /// Hidden layers of each MADE
    #[arg(long, default_value_t = 2)]
    hidden_layers: usize,
    /// Activation inside each MADE [default: silu for the NSF, relu for MAF; SiLU measured
    /// better than ReLU and tanh for the NSF on two_moons at 10³ simulations, ReLU better than
    /// tanh for MAF at 10⁴: BENCHMARKS.md]
    #[arg(long, value_enum)]
    flow_activation: Option<Activation>,
    /// Spline bins (NSF)
    #[arg(long, default_value_t = 10)]
    bins: usize,
    /// Spline tail bound (NSF; identity outside [-B, B], in z-scored units; 5 measured better
    /// than sbi's 3: BENCHMARKS.md)
    #[arg(long, default_value_t = 5.0)]
    tail_bound: f64,
    /// Every dim's map in a transform sees x (zuko's MADE wiring); false: nflows' MADE, whose first
    /// dim per transform is unconditional [default: true for the NSF, false for MAF, as measured
    /// in BENCHMARKS.md, "The NSF at small budgets"]
    #[arg(long, action = clap::ArgAction::Set)]
    context_every_dim: Option<bool>,
    /// NSF: a zero network output is the identity spline (unit inner derivatives); false: nflows'
    /// parameterization (derivative softplus(0) ≈ 0.69)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    spline_identity_init: bool,
    /// Width of an embedding MLP for x (0: feed the z-scored x to the flow directly)
    #[arg(long, default_value_t = 0)]
    embedding_hidden: usize,
    /// Output size of the embedding MLP
    #[arg(long, default_value_t = 10)]
    embedding_dim: usize,
    /// Train on fresh simulations every epoch (simulated on CPU threads while the GPU trains);
    /// --simulations then sets the size of each epoch's block and of the validation set's source
    #[arg(long)]
    online: bool,
    /// Model θ in the prior's unconstrained space (logit of a box, log of a positive support):
    /// no mass outside the support. `--unconstrained false` models θ as it is and rejects samples
    /// outside the support when sampling (reported by `sample`). Default: true for the hybrid on
    /// a prior with a lognormal component (its sampler stalled on sir otherwise), false otherwise
    /// (the logit space measured worse on two_moons)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    unconstrained: Option<bool>,
}

/// `gkl-gpu quickstart`: the whole path on a built-in default — simulate, train, sample an
/// observation, and score the samples by C2ST against the task's reference posterior.
#[derive(Args)]
pub struct QuickstartArgs {
    #[arg(long, default_value = "two_moons")]
    task: String,
    /// Surrogate: npe, ratio or hybrid
    #[arg(long, value_enum, default_value_t = Method::Npe)]
    method: Method,
    #[arg(long, value_enum, default_value_t = FlowKind::Nsf)]
    flow: FlowKind,
    #[arg(long, default_value_t = 10_000)]
    simulations: usize,
    /// sbibm observation to sample and score
    #[arg(long, default_value_t = 1)]
    observation: usize,
    #[arg(long, default_value = "runs/quickstart")]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn quickstart(gpu: &GpuArgs, q: QuickstartArgs) -> Result<()> {
    use gkl_gpu::evaluation::c2st::{c2st, C2stConfig, Samples};
    use gkl_gpu::io::write_npy_f64;
    use gkl_gpu::models::posterior::NpeModel;
    use gkl_gpu::sampling::npe::NpePosterior;
    let args = TrainArgs::parse_from(
        [
            "train",
            "--task",
            &q.task,
            "--simulations",
            &q.simulations.to_string(),
            "--seed",
            &q.seed.to_string(),
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            q.out.display().to_string(),
            "--flow".into(),
            format!("{:?}", q.flow).to_lowercase(),
            "--method".into(),
            q.method.name().into(),
        ]),
    );
    let t = Instant::now();
    run(gpu, args)?;
    let train_s = t.elapsed().as_secs_f64();
    let task = task_by_name(&q.task)?;
    let obs = task.observation(q.observation)?;
    let ctx = gpu.context()?;
    let post = NpePosterior::new(&ctx, NpeModel::load(&q.out)?)?;
    let n = 10_000;
    let (samples, report) = post.sample(std::slice::from_ref(&obs.x), n, q.seed)?;
    let path = q.out.join(format!("samples_obs{}.npy", q.observation));
    write_npy_f64(&path, &[n, task.dim_theta()], &samples[0])?;
    eprintln!(
        "sampled {n} in {:.2} s; wrote {}",
        report.seconds,
        path.display()
    );
    let reference = task.reference_posterior(&obs.x, n, q.seed.wrapping_add(1))?;
    let d = task.dim_theta();
    let r = c2st(
        &ctx,
        &Samples {
            data: &reference,
            rows: n,
            dim: d,
        },
        &Samples {
            data: &samples[0],
            rows: n,
            dim: d,
        },
        &C2stConfig::default(),
        |_, _| {},
    )?;
    println!(
        "{} {} ({:?} flow{}), {} simulations, observation {}: C2ST against the reference posterior {:.3} (0.5 is perfect); train + simulate {:.1} s",
        q.task,
        q.method.name(),
        q.flow,
        if q.method == Method::Ratio { " unused" } else { "" },
        q.simulations,
        q.observation,
        r.accuracy,
        train_s
    );
    Ok(())
}

/// The explicitly given `train` arguments (clap ids) of this process's command line.
fn given_on_command_line() -> Vec<(String, String)> {
    let Ok(m) = super::Cli::command().try_get_matches_from(std::env::args_os()) else {
        return vec![];
    };
    let Some(("train", tm)) = m.subcommand() else {
        return vec![];
    };
    TrainArgs::command()
        .get_arguments()
        .filter(|arg| {
            tm.value_source(arg.get_id().as_str()) == Some(clap::parser::ValueSource::CommandLine)
        })
        .map(|arg| {
            (
                arg.get_id().to_string(),
                arg.get_long()
                    .map(|l| format!("--{l}"))
                    .unwrap_or_else(|| arg.get_id().to_string()),
            )
        })
        .collect()
}

/// `gkl-gpu train`: a new run, or `--resume RUN_DIR`.
impl TrainArgs {
    /// Fills the options whose default depends on the method. NPE's (batch 256, lr 1e-3, the
    /// plateau schedule after 10 epochs) reached sbi's quality in about 3/4 of the epochs of
    /// batch 200 / lr 5e-4; the ratio and hybrid keep batch 200 / lr 5e-4, the hybrid with the
    /// plateau schedule: the settings each was measured with.
    /// Resolved before the arguments are stored in a checkpoint, so a resumed run keeps them.
    fn resolve_method_defaults(&mut self) {
        let npe = self.method == Method::Npe;
        self.batch_size.get_or_insert(if npe { 256 } else { 200 });
        self.lr.get_or_insert(if npe { 1e-3 } else { 5e-4 });
        // The hybrid was measured with the plateau schedule (BENCHMARKS.md: better reference
        // NLL and C2ST on two_moons); the ratio surrogate's figures are at a constant rate.
        self.lr_patience
            .get_or_insert(if self.method == Method::Ratio { 0 } else { 10 });
    }
}

pub fn run(gpu: &GpuArgs, mut a: TrainArgs) -> Result<()> {
    a.resolve_method_defaults();
    let Some(dir) = a.resume.clone() else {
        let out = a.out.clone().context("--out is required")?;
        return run_with(gpu, a, out, None);
    };
    let given = given_on_command_line();
    let extra: Vec<&str> = given
        .iter()
        .filter(|(id, _)| !RESUME_OVERRIDES.contains(&id.as_str()))
        .map(|(_, l)| l.as_str())
        .collect();
    if !extra.is_empty() {
        bail!(
            "--resume continues {} with the arguments stored in its checkpoint; only --max-epochs and --checkpoint-every may be given with it (got {})",
            dir.display(),
            extra.join(", ")
        );
    }
    for r in recover_run_dir(&dir)? {
        eprintln!(
            "resume: tidied {r} in {} (left by the interrupted run)",
            dir.display()
        );
    }
    let ck_dir = Checkpoint::dir_of(&dir);
    if !ck_dir.is_dir() {
        bail!(
            "{}: no checkpoint to resume from ({} does not exist)",
            dir.display(),
            ck_dir.display()
        );
    }
    let ck = Checkpoint::load(&ck_dir)?;
    let stored = ck
        .state
        .cli
        .as_ref()
        .and_then(|v| v.get("train_args"))
        .with_context(|| {
            format!(
                "{}: the checkpoint holds no `gkl-gpu train` arguments",
                ck_dir.display()
            )
        })?;
    let mut args: TrainArgs = serde_json::from_value(stored.clone())
        .with_context(|| format!("{}: stored arguments", ck_dir.display()))?;
    // Checkpoints from before the method-dependent defaults hold every value; `lr_patience`
    // absent there meant 0.
    args.lr_patience.get_or_insert(0);
    // Stored before the space had a method-dependent default: absent meant the prior's own.
    args.unconstrained.get_or_insert(false);
    args.resolve_method_defaults();
    let is_given = |id: &str| given.iter().any(|(g, _)| g == id);
    if is_given("max_epochs") {
        args.max_epochs = a.max_epochs;
    }
    if is_given("checkpoint_every") {
        args.checkpoint_every = a.checkpoint_every;
    }
    eprintln!(
        "resume: {} after epoch {} of {} (best {}), with its stored arguments",
        dir.display(),
        ck.state.epoch,
        args.max_epochs,
        ck.state.best_epoch
    );
    run_with(gpu, args, dir, Some(ck))
}

/// Keeps the lines of `metrics.jsonl` up to `epoch` (a resumed run rewrites what came after).
fn truncate_metrics(path: &Path, epoch: usize) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut kept = String::new();
    for line in text.lines() {
        match serde_json::from_str::<EpochMetrics>(line) {
            Ok(m) if m.epoch <= epoch => {
                kept.push_str(line);
                kept.push('\n');
            }
            _ => break,
        }
    }
    gkl_gpu::io::atomic_write_bytes(path, kept.as_bytes())?;
    Ok(())
}

fn run_with(
    gpu: &GpuArgs,
    mut a: TrainArgs,
    out: PathBuf,
    resume: Option<Checkpoint>,
) -> Result<()> {
    if a.simulations < 10 {
        bail!("--simulations must be at least 10");
    }
    if !(0.0..0.9).contains(&a.validation_fraction) {
        bail!("--validation-fraction must be in [0, 0.9)");
    }
    if a.base_gradient == BaseGradient::Reparameterized && a.method != Method::Hybrid {
        bail!(
            "--base-gradient reparameterized needs --method hybrid (it sends the partition term's gradient into the hybrid's base flow; --method {} has none)",
            a.method.name()
        );
    }
    let start = Instant::now();
    // Load or simulate on CPU threads while the device opens and the pipelines compile.
    let stored = resume
        .as_ref()
        .map(|_| out.join(super::data::STORED_SIMULATIONS));
    let pending = super::data::prepare(
        &a.data,
        a.task.as_deref(),
        a.simulations,
        a.seed,
        a.online,
        stored.as_deref(),
    )?;
    let mut ctx = gpu.context()?;
    if let Some(v) = std::env::var("GKL_GPU_MAX_BINDING")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        // Test hook: pretend the adapter's largest binding is smaller.
        ctx.limits.max_storage_buffer_binding_size =
            ctx.limits.max_storage_buffer_binding_size.min(v);
    }
    let fault = std::env::var("GKL_GPU_FAULT")
        .ok()
        .and_then(|v| Fault::parse(&v));
    let mut data = pending.finish()?;
    data.write_summary(&out)?;
    data.store_simulations(&out)?;
    // Resolved before the arguments are stored in the checkpoint, so a resumed run keeps it.
    let unconstrained = *a
        .unconstrained
        .get_or_insert_with(|| unconstrained_by_default(a.method, &data.prior));

    let settings = NpeSettings {
        method: a.method,
        ratio: Some(MlpConfig {
            in_dim: 0,
            out_dim: 1,
            hidden: a.ratio_hidden,
            blocks: a.ratio_blocks,
            act: a.ratio_activation,
            residual: true,
        }),
        contrastive: a.contrastive,
        base_epochs: a.base_epochs,
        base_gradient: a.base_gradient,
        support_mask: a.support_mask,
        flow: FlowConfig {
            kind: a.flow,
            dim: 0,
            context_dim: 0,
            transforms: a.transforms,
            hidden: a.hidden,
            hidden_layers: a.hidden_layers,
            bins: a.bins,
            tail_bound: a.tail_bound,
            act: a.flow_activation.unwrap_or(a.flow.default_activation()),
            context_every_dim: a
                .context_every_dim
                .unwrap_or(a.flow.default_context_every_dim()),
            spline_identity_init: a.spline_identity_init,
        },
        embedding: (a.embedding_hidden > 0).then_some(MlpConfig {
            in_dim: 0,
            out_dim: a.embedding_dim,
            hidden: a.embedding_hidden,
            blocks: 2,
            act: Activation::Relu,
            residual: true,
        }),
        batch_size: a.batch_size.context("batch size unresolved")?,
        lr: a.lr.context("learning rate unresolved")?,
        max_epochs: a.max_epochs,
        patience: a.patience,
        validation_fraction: a.validation_fraction,
        clip_norm: a.clip_norm,
        weight_decay: a.weight_decay,
        lr_patience: a.lr_patience.context("lr patience unresolved")?,
        lr_factor: a.lr_factor,
        lr_restore_best: a.lr_restore_best,
        seed: a.seed,
        unconstrained,
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let metrics_path = out.join("metrics.jsonl");
    let mut metrics = match &resume {
        Some(ck) => {
            truncate_metrics(&metrics_path, ck.state.epoch)?;
            std::fs::OpenOptions::new().append(true).open(&metrics_path)
        }
        None => std::fs::File::create(&metrics_path),
    }
    .with_context(|| format!("opening {}", metrics_path.display()))?;
    let tty = std::io::stderr().is_terminal();
    let max_epochs = a.max_epochs;
    let mut write_err = None;
    let online: Option<Simulator> = data.online.clone();
    let mut on_epoch = |m: &EpochMetrics| {
        // One write per line, so a killed run leaves whole lines (a resumed run drops any after
        // its checkpoint).
        let line = serde_json::to_string(m)
            .map(|l| l + "\n")
            .map_err(anyhow::Error::from);
        if let Err(e) = line.and_then(|l| Ok(metrics.write_all(l.as_bytes())?)) {
            write_err.get_or_insert(e);
        }
        let z = match (m.z_mean, m.z_var) {
            (Some(z), Some(v)) => format!("  Z {z:.3} ± {:.3}", v.sqrt()),
            _ if m.base_only => "  (base only)".to_string(),
            _ => String::new(),
        };
        let line = format!(
            "epoch {:>4}/{max_epochs}  train {:.4}  val {:.4}{}{z}  {:.0} pairs/s  {:.1} s",
            m.epoch,
            m.train_loss,
            m.val_loss,
            if m.best { " *" } else { "  " },
            m.pairs_per_s,
            m.seconds
        );
        if tty {
            eprint!("\r{line}");
        } else if m.epoch % 10 == 0 || m.epoch == 1 {
            eprintln!("{line}");
        }
    };
    let source = match &data.stream {
        Some(s) => TrainSource::Shards(s),
        None => TrainSource::Memory {
            theta: &data.theta,
            x: &data.x,
            dim_x: data.dim_x,
        },
    };
    let opts = TrainOptions {
        online,
        checkpoint: Some(CheckpointConfig {
            run_dir: out.clone(),
            every: a.checkpoint_every,
            cli: Some(serde_json::json!({ "train_args": serde_json::to_value(&a)? })),
        }),
        resume,
        block_bytes: a.block_bytes,
        fault,
    };
    let outcome = train(
        &ctx,
        &data.prior,
        source,
        &settings,
        data.task.as_deref(),
        opts,
        &mut on_epoch,
        &mut |m| eprintln!("notice: {m}"),
    );
    if tty {
        eprintln!();
    }
    let outcome = outcome.map_err(|e| data.explain(e.into()))?;
    if let Some(r) = &outcome.scan {
        data.record_scan(r);
        eprintln!(
            "data: scanned {} rows in {} shards: {} for training in {} GPU block(s), {} for validation{}",
            r.rows_read,
            r.shards,
            r.rows_train,
            outcome.blocks,
            r.rows_val,
            if r.invalid.total() > 0 { format!("; dropped {} with NaN or Inf in x", r.invalid.total()) } else { String::new() }
        );
    }
    data.write_summary(&out)?;
    if let Some(e) = write_err {
        return Err(e.context(format!("writing {}", metrics_path.display())));
    }
    outcome.model.save(&out)?;
    let last = outcome.history.last().context("no epoch ran")?;
    eprintln!(
        "{} after {} epochs (best {}, validation loss {:.4}); training {:.1} s, total {:.1} s; saved {}",
        if outcome.stopped_early { "stopped early" } else { "reached --max-epochs" },
        last.epoch,
        outcome.best_epoch,
        outcome.history[outcome.best_epoch - 1].val_loss,
        last.seconds,
        start.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

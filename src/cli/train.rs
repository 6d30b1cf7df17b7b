//! `gkl-gpu train`: simulate a task (on CPU threads, while the GPU is being set up), train a
//! posterior on the GPU, save it with its per-epoch metrics.

use super::GpuArgs;
use anyhow::{bail, Context, Result};
use clap::{Args, Parser};
use gkl_gpu::kernels::Activation;
use gkl_gpu::models::flow::{FlowConfig, FlowKind};
use gkl_gpu::models::mlp::MlpConfig;
use gkl_gpu::training::npe::{train_npe_with, EpochMetrics, NpeSettings, Simulator};
use gkl_gpu::training::Method;
use gkl_tasks::task_by_name;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
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
    /// Ratio network (ratio, hybrid): width of the residual MLP on [θ, x]
    #[arg(long, default_value_t = 64)]
    ratio_hidden: usize,
    /// Ratio network: residual blocks
    #[arg(long, default_value_t = 2)]
    ratio_blocks: usize,
    /// Flow family
    #[arg(long, value_enum, default_value_t = FlowKind::Nsf)]
    flow: FlowKind,
    /// Simulation budget
    #[arg(long, default_value_t = 10_000)]
    simulations: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory (config.json, model.safetensors, metrics.jsonl)
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 200)]
    batch_size: usize,
    #[arg(long, default_value_t = 5e-4)]
    lr: f32,
    #[arg(long, default_value_t = 2000)]
    max_epochs: usize,
    /// Epochs without a better validation loss before stopping
    #[arg(long, default_value_t = 20)]
    patience: usize,
    #[arg(long, default_value_t = 0.1)]
    validation_fraction: f64,
    #[arg(long, default_value_t = 5.0)]
    clip_norm: f32,
    /// Flow transforms
    #[arg(long, default_value_t = 5)]
    transforms: usize,
    /// Hidden units of each MADE layer
    #[arg(long, default_value_t = 50)]
    hidden: usize,
    /// Hidden layers of each MADE
    #[arg(long, default_value_t = 2)]
    hidden_layers: usize,
    /// Activation inside each MADE (ReLU measured better than tanh on two_moons: BENCHMARKS.md)
    #[arg(long, value_enum, default_value_t = Activation::Relu)]
    flow_activation: Activation,
    /// Spline bins (NSF)
    #[arg(long, default_value_t = 10)]
    bins: usize,
    /// Spline tail bound (NSF; identity outside [-B, B])
    #[arg(long, default_value_t = 3.0)]
    tail_bound: f64,
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
    /// Model θ in the prior's unconstrained space (logit of a box): no mass outside the support,
    /// but measured worse on two_moons than the default, which models θ as it is and rejects
    /// samples outside the support when sampling (reported by `sample`)
    #[arg(long)]
    unconstrained: bool,
}

/// `gkl-gpu quickstart`: the whole path on a built-in default — simulate, train, sample an
/// observation, and score the samples by C2ST against the task's reference posterior.
#[derive(Args)]
pub struct QuickstartArgs {
    #[arg(long, default_value = "two_moons")]
    task: String,
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
        ["train", "--task", &q.task, "--simulations", &q.simulations.to_string(), "--seed", &q.seed.to_string(), "--out"]
            .iter()
            .map(|s| s.to_string())
            .chain([q.out.display().to_string(), "--flow".into(), format!("{:?}", q.flow).to_lowercase()]),
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
    eprintln!("sampled {n} in {:.2} s; wrote {}", report.seconds, path.display());
    let reference = task.reference_posterior(&obs.x, n, q.seed.wrapping_add(1))?;
    let d = task.dim_theta();
    let r = c2st(&ctx, &Samples { data: &reference, rows: n, dim: d }, &Samples { data: &samples[0], rows: n, dim: d }, &C2stConfig::default(), |_, _| {})?;
    println!(
        "{} NPE-{:?}, {} simulations, observation {}: C2ST against the reference posterior {:.3} (0.5 is perfect); train + simulate {:.1} s",
        q.task, q.flow, q.simulations, q.observation, r.accuracy, train_s
    );
    Ok(())
}

pub fn run(gpu: &GpuArgs, a: TrainArgs) -> Result<()> {
    if a.simulations < 10 {
        bail!("--simulations must be at least 10");
    }
    if !(0.0..0.9).contains(&a.validation_fraction) {
        bail!("--validation-fraction must be in [0, 0.9)");
    }
    let start = Instant::now();
    // Load or simulate on CPU threads while the device opens and the pipelines compile.
    let pending = super::data::prepare(&a.data, a.task.as_deref(), a.simulations, a.seed, a.online)?;
    let ctx = gpu.context()?;
    let data = pending.finish()?;
    data.write_summary(&a.out)?;

    let settings = NpeSettings {
        method: a.method,
        ratio: Some(MlpConfig { in_dim: 0, out_dim: 1, hidden: a.ratio_hidden, blocks: a.ratio_blocks, act: Activation::Relu, residual: true }),
        contrastive: a.contrastive,
        base_epochs: a.base_epochs,
        flow: FlowConfig {
            kind: a.flow,
            dim: 0,
            context_dim: 0,
            transforms: a.transforms,
            hidden: a.hidden,
            hidden_layers: a.hidden_layers,
            bins: a.bins,
            tail_bound: a.tail_bound,
            act: a.flow_activation,
        },
        embedding: (a.embedding_hidden > 0).then(|| MlpConfig {
            in_dim: 0,
            out_dim: a.embedding_dim,
            hidden: a.embedding_hidden,
            blocks: 2,
            act: Activation::Relu,
            residual: true,
        }),
        batch_size: a.batch_size,
        lr: a.lr,
        max_epochs: a.max_epochs,
        patience: a.patience,
        validation_fraction: a.validation_fraction,
        clip_norm: a.clip_norm,
        seed: a.seed,
        unconstrained: a.unconstrained,
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let metrics_path = a.out.join("metrics.jsonl");
    let mut metrics = std::fs::File::create(&metrics_path).with_context(|| format!("creating {}", metrics_path.display()))?;
    let tty = std::io::stderr().is_terminal();
    let max_epochs = a.max_epochs;
    let mut write_err = None;
    let online: Option<Simulator> = data.online.clone();
    let mut on_epoch = |m: &EpochMetrics| {
        if let Err(e) = serde_json::to_writer(&mut metrics, m).map_err(anyhow::Error::from).and_then(|_| Ok(writeln!(metrics)?)) {
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
    let outcome = train_npe_with(&ctx, &data.prior, &data.theta, &data.x, data.dim_x, &settings, data.task.as_deref(), online, &mut on_epoch)
        .map_err(|e| data.explain(e.into()))?;
    data.write_summary(&a.out)?;
    if tty {
        eprintln!();
    }
    if let Some(e) = write_err {
        return Err(e.context(format!("writing {}", metrics_path.display())));
    }
    outcome.model.save(&a.out)?;
    let last = outcome.history.last().context("no epoch ran")?;
    eprintln!(
        "{} after {} epochs (best {}, validation loss {:.4}); training {:.1} s, total {:.1} s; saved {}",
        if outcome.stopped_early { "stopped early" } else { "reached --max-epochs" },
        last.epoch,
        outcome.best_epoch,
        outcome.history[outcome.best_epoch - 1].val_loss,
        last.seconds,
        start.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(())
}

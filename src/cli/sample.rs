//! `gkl-gpu sample`: draws from a trained posterior (any method) for one or many observations;
//! `gkl-gpu log-prob`: the approximation's normalized log-density at given θ.

use super::observation::ObservationArgs;
use super::GpuArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use gkl_gpu::io::{atomic_write_bytes, read_samples, write_npy_f64};
use gkl_gpu::models::posterior::NpeModel;
use gkl_gpu::sampling::npe::NpePosterior;
use gkl_gpu::sampling::rejection::RejectionConfig;
use gkl_gpu::training::Method;
use gkl_tasks::task_by_name;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct SampleArgs {
    /// Model directory written by `gkl-gpu train`
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    obs: ObservationArgs,
    #[arg(long, default_value_t = 10_000)]
    num_samples: usize,
    /// Output .npy: N × dθ for one observation; obs × N × dθ for several (one batched GPU pass).
    /// Ratio/hybrid: an observation that stops at a budget has its missing rows filled with NaN.
    /// A JSON report per observation goes beside it (OUT with extension .report.json).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    budget: BudgetArgs,
}

/// The rejection sampler's budgets (ratio and hybrid models).
#[derive(Args, Clone)]
pub struct BudgetArgs {
    /// Proposals per observation after which it stops unfinished
    #[arg(long, default_value_t = 1 << 32)]
    max_proposals: u64,
    /// Seconds after which every unfinished observation stops
    #[arg(long)]
    max_seconds: Option<f64>,
    /// Warm-up proposals per observation that estimate M (= 1.2 × the largest exp f seen)
    #[arg(long, default_value_t = 16_384)]
    m_proposals: usize,
    /// Proposals per GPU round, shared by the unfinished observations
    #[arg(long, default_value_t = 1 << 16)]
    round_size: usize,
}

impl BudgetArgs {
    fn config(&self) -> RejectionConfig {
        RejectionConfig {
            max_proposals: self.max_proposals,
            max_seconds: self.max_seconds.unwrap_or(f64::INFINITY),
            m_proposals: self.m_proposals,
            rows_per_round: self.round_size.max(256),
            progress: true,
            ..Default::default()
        }
    }
}

fn report_path(out: &Path) -> PathBuf {
    out.with_extension("report.json")
}

pub fn run(gpu: &GpuArgs, a: SampleArgs) -> Result<()> {
    let model = NpeModel::load(&a.model)?;
    let task = model.task.as_deref().map(task_by_name).transpose()?;
    let rows = a
        .obs
        .rows(model.dim_x, task.as_deref())
        .with_context(|| format!("model {}", a.model.display()))?;
    if a.num_samples == 0 {
        bail!("--num-samples must be positive");
    }
    let ctx = gpu.context()?;
    let d = model.dim_theta;
    let method = model.method;
    let post = NpePosterior::new(&ctx, model)?;
    let (samples, report) = post.sample_with(&rows, a.num_samples, a.seed, &a.budget.config())?;
    let n = a.num_samples;
    let shape: Vec<usize> = if rows.len() == 1 {
        vec![n, d]
    } else {
        vec![rows.len(), n, d]
    };
    let mut flat = Vec::with_capacity(rows.len() * n * d);
    for s in &samples {
        flat.extend_from_slice(s);
        flat.extend(std::iter::repeat_n(f64::NAN, n * d - s.len()));
    }
    write_npy_f64(&a.out, &shape, &flat)?;
    let rp = report_path(&a.out);
    atomic_write_bytes(&rp, serde_json::to_string_pretty(&report)?.as_bytes())?;
    match &report.rejection {
        None => {
            let rejected: usize = report.rejected_outside_support.iter().sum();
            let drawn: usize = report.drawn.iter().sum();
            eprintln!(
                "{n} samples for {} observation(s) in {:.2} s; {rejected} of {drawn} draws fell outside the prior's support and were rejected; wrote {}",
                rows.len(),
                report.seconds,
                a.out.display()
            );
        }
        Some(reps) => {
            let props: u64 = reps.iter().map(|r| r.proposals + r.warmup_proposals).sum();
            let acc: usize = reps.iter().map(|r| r.accepted).sum();
            let mean_rate =
                reps.iter().map(|r| r.acceptance_rate).sum::<f64>() / reps.len().max(1) as f64;
            eprintln!(
                "{} ({}): {acc} samples for {} observation(s) in {:.2} s; {props} proposals ({:.0}/s), mean acceptance rate {:.4}",
                method.name(),
                if method == Method::Ratio { "proposals from the prior" } else { "proposals from the base flow" },
                rows.len(),
                report.seconds,
                props as f64 / report.seconds.max(1e-9),
                mean_rate,
            );
            let show = reps.len() <= 10;
            for (i, r) in reps.iter().enumerate() {
                if show || !r.finished {
                    eprintln!(
                        "  observation {}: {} samples, acceptance {:.4}, log Z {:.3}, log M {:.3}{}{}{}",
                        i + 1,
                        r.accepted,
                        r.acceptance_rate,
                        r.log_z,
                        r.log_m,
                        if r.outside_support > 0 { format!(", {} proposals outside the support", r.outside_support) } else { String::new() },
                        if r.exceeded_m > 0 { format!(", M raised {} time(s) ({} proposals exceeded it)", r.restarts, r.exceeded_m) } else { String::new() },
                        r.stopped.as_ref().map(|s| format!(" — NOT FINISHED: {s}")).unwrap_or_default()
                    );
                }
            }
            let unfinished = reps.iter().filter(|r| !r.finished).count();
            if unfinished > 0 {
                eprintln!(
                    "{unfinished} observation(s) did not finish; their missing rows are NaN in {}",
                    a.out.display()
                );
                // Acceptance ≈ Z/M: when M is orders of magnitude above Z, the model's mass
                // sits where the proposal rarely draws, and more time buys little.
                if reps
                    .iter()
                    .any(|r| !r.finished && r.log_m - r.log_z > 1000f64.ln())
                {
                    eprintln!(
                        "{}",
                        if method == Method::Ratio {
                            "  M exceeds Z(x) a thousandfold: the posterior is far narrower than the prior, the \
                         ratio surrogate's proposal; a hybrid or npe samples such a posterior directly"
                        } else {
                            "  M exceeds Z(x) a thousandfold: a few proposals carry exp f thousands of times \
                         above the rest, so the model puts mass where its base flow rarely draws (\
                         `cargo run --release --example hybrid_weights -- MODEL OBS` shows where); \
                         retraining in the prior's unconstrained space (`--unconstrained`, the hybrid's \
                         default on a lognormal prior: it removed such a ridge on sir), a MAF base \
                         (`--flow maf`) or npe may serve this task better"
                        }
                    );
                }
            }
            eprintln!("wrote {} and {}", a.out.display(), rp.display());
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct LogProbArgs {
    /// Model directory written by `gkl-gpu train`
    #[arg(long)]
    model: PathBuf,
    /// θ rows (.npy, N × dθ, or sbibm .csv)
    #[arg(long)]
    theta: PathBuf,
    #[command(flatten)]
    obs: ObservationArgs,
    /// Output .npy of N log-densities (printed when absent)
    #[arg(long)]
    out: Option<PathBuf>,
    /// Ratio/hybrid: proposals that estimate Z(x)
    #[arg(long, default_value_t = 1 << 20)]
    z_proposals: u64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn log_prob(gpu: &GpuArgs, a: LogProbArgs) -> Result<()> {
    let model = NpeModel::load(&a.model)?;
    let task = model.task.as_deref().map(task_by_name).transpose()?;
    let rows = a
        .obs
        .rows(model.dim_x, task.as_deref())
        .with_context(|| format!("model {}", a.model.display()))?;
    if rows.len() != 1 {
        bail!("log-prob takes one observation; {} given", rows.len());
    }
    let th = read_samples(&a.theta)?;
    if th.cols != model.dim_theta {
        bail!(
            "{}: θ has {} columns; this model needs {}",
            a.theta.display(),
            th.cols,
            model.dim_theta
        );
    }
    let ctx = gpu.context()?;
    let post = NpePosterior::new(&ctx, model)?;
    let (lp, z) = post.log_prob_with(&th.data, &rows[0], a.z_proposals, a.seed)?;
    if let Some(r) = &z {
        eprintln!(
            "log Z(x) = {:.4} from {} proposals (log q̃ − log Z is the normalized log-density)",
            r.log_z, r.proposals
        );
    }
    match &a.out {
        Some(p) => {
            write_npy_f64(p, &[lp.len()], &lp)?;
            eprintln!("wrote {} log-densities to {}", lp.len(), p.display());
        }
        None => {
            for v in lp {
                println!("{v}");
            }
        }
    }
    Ok(())
}

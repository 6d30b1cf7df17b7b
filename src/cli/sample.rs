//! `gkl-gpu sample`: draws from a trained posterior for one or many observations.

use super::observation::ObservationArgs;
use super::GpuArgs;
use anyhow::{Context, Result};
use clap::Args;
use gkl_gpu::io::write_npy_f64;
use gkl_gpu::models::posterior::NpeModel;
use gkl_gpu::sampling::npe::NpePosterior;
use gkl_tasks::task_by_name;
use std::path::PathBuf;

#[derive(Args)]
pub struct SampleArgs {
    /// Model directory written by `gkl-gpu train`
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    obs: ObservationArgs,
    #[arg(long, default_value_t = 10_000)]
    num_samples: usize,
    /// Output .npy: N × dθ for one observation; obs × N × dθ for several (one batched GPU pass)
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(gpu: &GpuArgs, a: SampleArgs) -> Result<()> {
    let model = NpeModel::load(&a.model)?;
    let task = model.task.as_deref().map(task_by_name).transpose()?;
    let rows = a.obs.rows(model.dim_x, task.as_deref()).with_context(|| format!("model {}", a.model.display()))?;
    if a.num_samples == 0 {
        anyhow::bail!("--num-samples must be positive");
    }
    let ctx = gpu.context()?;
    let d = model.dim_theta;
    let post = NpePosterior::new(&ctx, model)?;
    let (samples, report) = post.sample(&rows, a.num_samples, a.seed)?;
    let shape: Vec<usize> = if rows.len() == 1 { vec![a.num_samples, d] } else { vec![rows.len(), a.num_samples, d] };
    write_npy_f64(&a.out, &shape, &samples.concat())?;
    let rejected: usize = report.rejected_outside_support.iter().sum();
    let drawn: usize = report.drawn.iter().sum();
    eprintln!(
        "{} samples for {} observation(s) in {:.2} s; {} of {} draws fell outside the prior's support and were rejected; wrote {}",
        a.num_samples,
        rows.len(),
        report.seconds,
        rejected,
        drawn,
        a.out.display()
    );
    Ok(())
}

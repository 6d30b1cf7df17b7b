//! `gkl-gpu simulate` and `gkl-gpu reference`: the benchmark tasks' simulators and reference
//! posteriors, written as files NumPy reads.

use super::observation::ObservationArgs;
use anyhow::{bail, Result};
use clap::Args;
use gkl_gpu::io::{write_npy_f64, write_npz, NpyData};
use gkl_tasks::task_by_name;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct SimulateArgs {
    /// Benchmark task (gaussian_linear, two_moons, slcp, sir, ...)
    #[arg(long)]
    task: String,
    #[arg(long)]
    num_simulations: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output .npz with arrays `theta` [N, dθ] and `x` [N, dx] (float32)
    #[arg(long)]
    out: PathBuf,
}

pub fn simulate(a: SimulateArgs) -> Result<()> {
    let task = task_by_name(&a.task)?;
    if a.num_simulations == 0 {
        bail!("--num-simulations must be positive");
    }
    let t = Instant::now();
    let theta = task.sample_prior(a.num_simulations, a.seed);
    // The simulator's stream is separate from the prior's.
    let x = task.simulate(&theta, a.seed.wrapping_add(0x5349_4d55));
    let secs = t.elapsed().as_secs_f64();
    let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    let (tf, xf) = (f(&theta), f(&x));
    write_npz(
        &a.out,
        &[
            ("theta", &[a.num_simulations, task.dim_theta()], NpyData::F32(&tf)),
            ("x", &[a.num_simulations, task.dim_x()], NpyData::F32(&xf)),
        ],
    )?;
    eprintln!(
        "simulated {} × {} in {secs:.2} s ({:.0} simulations/s); wrote {}",
        a.num_simulations,
        task.name(),
        a.num_simulations as f64 / secs,
        a.out.display()
    );
    Ok(())
}

#[derive(Args)]
pub struct ReferenceArgs {
    #[arg(long)]
    task: String,
    #[command(flatten)]
    obs: ObservationArgs,
    #[arg(long, default_value_t = 10_000)]
    num_samples: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output .npy, N × dθ (float64); with several observations, obs × N × dθ
    #[arg(long)]
    out: PathBuf,
}

pub fn reference(a: ReferenceArgs) -> Result<()> {
    let task = task_by_name(&a.task)?;
    let rows = a.obs.rows(task.dim_x(), Some(task.as_ref()))?;
    let d = task.dim_theta();
    let t = Instant::now();
    let mut all = Vec::with_capacity(rows.len() * a.num_samples * d);
    for (i, x) in rows.iter().enumerate() {
        all.extend(task.reference_posterior(x, a.num_samples, a.seed.wrapping_add(i as u64))?);
    }
    let shape: Vec<usize> = if rows.len() == 1 { vec![a.num_samples, d] } else { vec![rows.len(), a.num_samples, d] };
    write_npy_f64(&a.out, &shape, &all)?;
    eprintln!(
        "{} reference samples ({}) for {} observation(s) in {:.1} s; wrote {}",
        a.num_samples,
        if task.reference_is_exact() { "exact" } else { "likelihood-based" },
        rows.len(),
        t.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(())
}

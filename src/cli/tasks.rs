//! `gkl-gpu simulate` and `gkl-gpu reference`: the benchmark tasks' simulators and reference
//! posteriors, written as files NumPy reads.

use super::observation::ObservationArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use gkl_gpu::data::{shard_range, simulate_task_rows, ShardSpec};
use gkl_gpu::io::{write_npy_f64, write_npz, NpyData};
use gkl_tasks::task_by_name;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct SimulateArgs {
    /// Benchmark task (gaussian_linear, two_moons, slcp, sir, ...)
    #[arg(long)]
    task: String,
    /// Rows of the whole data set (with --shard: of all shards together)
    #[arg(long)]
    num_simulations: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write only shard i of n (0-based): rows [i·N/n, (i+1)·N/n) of the same sequence the
    /// unsharded run writes, as OUT/shard-{i:05}-of-{n:05}.npz
    #[arg(long, value_name = "i/n")]
    shard: Option<ShardSpec>,
    /// Output .npz with arrays `theta` [N, dθ] and `x` [N, dx] (float32); with --shard, a folder
    #[arg(long)]
    out: PathBuf,
}

pub fn simulate(a: SimulateArgs) -> Result<()> {
    let task = task_by_name(&a.task)?;
    if a.num_simulations == 0 {
        bail!("--num-simulations must be positive");
    }
    let spec = a.shard.unwrap_or(ShardSpec { index: 0, count: 1 });
    let (lo, hi) = shard_range(a.num_simulations, spec.index, spec.count);
    let out = match a.shard {
        Some(s) => {
            std::fs::create_dir_all(&a.out)
                .with_context(|| format!("creating {}", a.out.display()))?;
            a.out.join(s.file_name())
        }
        None => a.out.clone(),
    };
    let t = Instant::now();
    // Fixed blocks of the sequence, so that any shard is simulated on its own.
    let (theta, x) = simulate_task_rows(task.as_ref(), a.seed, lo, hi);
    let secs = t.elapsed().as_secs_f64();
    let rows = hi - lo;
    let invalid = x
        .chunks_exact(task.dim_x())
        .filter(|r| r.iter().any(|v| !v.is_finite()))
        .count();
    let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    let (tf, xf) = (f(&theta), f(&x));
    write_npz(
        &out,
        &[
            ("theta", &[rows, task.dim_theta()], NpyData::F32(&tf)),
            ("x", &[rows, task.dim_x()], NpyData::F32(&xf)),
        ],
    )?;
    eprintln!(
        "simulated {rows} × {}{} in {secs:.2} s ({:.0} simulations/s; {invalid} with NaN or Inf in x); wrote {}",
        task.name(),
        a.shard.map(|s| format!(" (rows {lo}..{hi}, shard {} of {})", s.index, s.count)).unwrap_or_default(),
        rows as f64 / secs.max(1e-9),
        out.display()
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
    let shape: Vec<usize> = if rows.len() == 1 {
        vec![a.num_samples, d]
    } else {
        vec![rows.len(), a.num_samples, d]
    };
    write_npy_f64(&a.out, &shape, &all)?;
    eprintln!(
        "{} reference samples ({}) for {} observation(s) in {:.1} s; wrote {}",
        a.num_samples,
        if task.reference_is_exact() {
            "exact"
        } else {
            "likelihood-based"
        },
        rows.len(),
        t.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(())
}

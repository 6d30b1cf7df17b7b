//! `gkl-gpu c2st A B`: sbibm's classifier two-sample test, on the GPU or the CPU.

use super::GpuArgs;
use anyhow::{bail, Result};
use clap::Args;
use gkl_gpu::evaluation::c2st::{c2st, c2st_cpu, C2stConfig, C2stDevice, Samples};
use gkl_gpu::io::read_samples;
use std::path::PathBuf;

#[derive(Args)]
pub struct C2stArgs {
    /// Reference samples (.npy f32/f64, or sbibm .csv / .csv.bz2); z-scoring uses its statistics
    a: PathBuf,
    /// Samples to compare
    b: PathBuf,
    /// Use at most this many rows of each file (sbibm compares 10,000 against 10,000)
    #[arg(long, default_value_t = 10_000)]
    max_rows: usize,
    /// Seed of the fold split, the shuffles and the initialisation (sbibm uses 1)
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print JSON (accuracy, per-fold accuracies and epochs, seconds, device)
    #[arg(long)]
    json: bool,
    /// Where the classifiers train. cpu (f32, folds in parallel) gives the same result up to
    /// float rounding and is much faster on a software adapter such as lavapipe; it needs no GPU
    #[arg(long, value_enum, default_value_t = C2stDevice::Gpu)]
    device: C2stDevice,
}

pub fn run(gpu: &GpuArgs, a: C2stArgs) -> Result<()> {
    let xa = read_samples(&a.a)?;
    let xb = read_samples(&a.b)?;
    if xa.cols != xb.cols {
        bail!(
            "{} has {} columns but {} has {}",
            a.a.display(),
            xa.cols,
            a.b.display(),
            xb.cols
        );
    }
    let ra = xa.rows.min(a.max_rows);
    let rb = xb.rows.min(a.max_rows);
    let d = xa.cols;
    let cfg = C2stConfig {
        seed: a.seed,
        device: a.device,
        ..Default::default()
    };
    let sa = Samples {
        data: &xa.data[..ra * d],
        rows: ra,
        dim: d,
    };
    let sb = Samples {
        data: &xb.data[..rb * d],
        rows: rb,
        dim: d,
    };
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let progress = |epoch: usize, done: usize| {
        if tty {
            eprint!("\rc2st: epoch {epoch}, {done}/{} folds done   ", cfg.folds);
        }
    };
    let r = match a.device {
        C2stDevice::Gpu => c2st(&gpu.context()?, &sa, &sb, &cfg, progress)?,
        C2stDevice::Cpu => c2st_cpu(&sa, &sb, &cfg, progress)?,
    };
    if tty {
        eprintln!();
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!("{:.4}", r.accuracy);
    }
    Ok(())
}

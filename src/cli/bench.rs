//! `gkl-gpu bench ...`: throughput benchmarks.

use super::GpuArgs;
use anyhow::Result;
use clap::{Args, Subcommand};
use gkl_gpu::bench::kernels;

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Dense forward+backward GFLOP/s and MLP training steps/s, GPU against plain-Rust CPU
    Kernels {
        /// Batch sizes
        #[arg(long, value_delimiter = ',', default_value = "256,1024,4096")]
        batches: Vec<usize>,
        /// Layer widths
        #[arg(long, value_delimiter = ',', default_value = "64,128")]
        widths: Vec<usize>,
        /// Minimum seconds timed per measurement
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
}

pub fn run(gpu: &GpuArgs, args: BenchArgs) -> Result<()> {
    match args.what {
        BenchWhat::Kernels {
            batches,
            widths,
            seconds,
            json,
        } => {
            let ctx = gpu.context()?;
            let report = kernels::run(&ctx, &batches, &widths, seconds, |m| {
                eprintln!("timing {m}")
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
            Ok(())
        }
    }
}

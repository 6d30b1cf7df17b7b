//! Command-line front end: argument parsing, adapter selection, and the subcommands.

mod bench;
mod c2st;
mod data;
mod info;
mod observation;
mod regress;
mod sample;
mod tasks;
mod train;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use gkl_gpu::runtime::{AdapterOptions, BackendChoice, GpuContext};

#[derive(Parser)]
#[command(
    name = "gkl-gpu",
    version,
    about = "Simulation-based inference with the generalized KL divergence, on the GPU"
)]
struct Cli {
    #[command(flatten)]
    gpu: GpuArgs,
    #[command(subcommand)]
    command: Command,
}

/// Adapter selection, shared by every command that touches the GPU.
#[derive(Args, Clone, Debug)]
pub struct GpuArgs {
    /// wgpu backend [env: WGPU_BACKEND]
    #[arg(long, global = true, value_enum)]
    backend: Option<BackendChoice>,
    /// Use the adapter whose name contains this (case-insensitive) [env: WGPU_ADAPTER_NAME]
    #[arg(long = "adapter", global = true, value_name = "NAME")]
    adapter: Option<String>,
    /// Only software (CPU) adapters, e.g. Mesa's lavapipe/llvmpipe
    #[arg(long, global = true)]
    cpu_fallback: bool,
}

impl GpuArgs {
    pub fn options(&self) -> Result<AdapterOptions> {
        Ok(AdapterOptions {
            backend: self.backend,
            adapter_name: self.adapter.clone(),
            cpu_fallback: self.cpu_fallback,
        }
        .with_env()?)
    }

    /// Opens the selected device and says on stderr which adapter the work runs on.
    pub fn context(&self) -> Result<GpuContext> {
        let ctx = GpuContext::new(&self.options()?)?;
        eprintln!("adapter: {}", ctx.summary().one_line());
        Ok(ctx)
    }
}

#[derive(Subcommand)]
enum Command {
    /// List adapters and the chosen one's limits and features
    Info(info::InfoArgs),
    /// Throughput benchmarks
    Bench(bench::BenchArgs),
    /// Classifier two-sample test (sbibm's C2ST) between two sample files, on the GPU (or the CPU)
    C2st(c2st::C2stArgs),
    /// The whole path on a built-in default: simulate two_moons, train, sample, score by C2ST
    Quickstart(train::QuickstartArgs),
    /// Train a posterior on simulations of a benchmark task
    Train(train::TrainArgs),
    /// Draw samples from a trained posterior
    Sample(sample::SampleArgs),
    /// Normalized log-density of a trained posterior at given θ
    LogProb(sample::LogProbArgs),
    /// Simulate a benchmark task: prior draws and simulator outputs to an .npz (theta, x)
    Simulate(tasks::SimulateArgs),
    /// Reference posterior samples of a benchmark task for an observation
    Reference(tasks::ReferenceArgs),
    /// Train a residual MLP on the GPU to regress a known function (a smoke test of the kernels)
    Regress(regress::RegressArgs),
}

pub fn run() -> Result<()> {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // Mesa's implicit layers complain without it; nothing we use needs it.
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // One line, like every other error (clap's usage hint would make it three).
            let text = e.render().to_string();
            eprintln!("{}", text.lines().next().unwrap_or("error: bad arguments"));
            std::process::exit(2);
        }
    };
    match cli.command {
        Command::Info(a) => info::run(&cli.gpu, a),
        Command::Bench(a) => bench::run(&cli.gpu, a),
        Command::Regress(a) => regress::run(&cli.gpu, a),
        Command::C2st(a) => c2st::run(&cli.gpu, a),
        Command::Simulate(a) => tasks::simulate(a),
        Command::Train(a) => train::run(&cli.gpu, a),
        Command::Quickstart(a) => train::quickstart(&cli.gpu, a),
        Command::Sample(a) => sample::run(&cli.gpu, a),
        Command::LogProb(a) => sample::log_prob(&cli.gpu, a),
        Command::Reference(a) => tasks::reference(a),
    }
}

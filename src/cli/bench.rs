//! `gkl-gpu bench ...`: the SBI benchmark grid (the main form), kernel throughput
//! (`gkl-gpu bench kernels`) and per-method training and sampling throughput
//! (`gkl-gpu bench throughput`).

use super::GpuArgs;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use gkl_gpu::bench::grid::{self, GridConfig, TrainProfile};
use gkl_gpu::bench::kernels;
use gkl_gpu::bench::throughput::{self, MethodFlow, ThroughputConfig};
use gkl_gpu::evaluation::c2st::{C2stConfig, C2stDevice};
use gkl_gpu::models::flow::FlowKind;
use gkl_gpu::training::{BaseGradient, Method};
use std::path::PathBuf;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: Option<BenchWhat>,
    #[command(flatten)]
    grid: GridArgs,
}

/// `gkl-gpu bench [options]`: for every cell (task, method, K, hybrid base gradient, budget, seed)
/// simulate, train, and per observation sample, score by C2ST against the reference posterior;
/// results are journaled per (cell, observation), so a killed run continues where it stopped.
#[derive(Args)]
struct GridArgs {
    /// Tasks (sbibm names, or gaussian_linear_d<d>)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "two_moons,gaussian_linear"
    )]
    tasks: Vec<String>,
    /// Methods: npe, ratio, hybrid
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "npe,ratio,hybrid"
    )]
    methods: Vec<Method>,
    /// Simulation budgets
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    budgets: Vec<usize>,
    /// sbibm observations: a range "1-5" or a list "1,3"
    #[arg(long, default_value = "1-5")]
    observations: String,
    /// Number of seeds (0..N)
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Output directory (journal.jsonl, results.csv, table.md, figures, models/, references/)
    #[arg(long, default_value = "bench")]
    out: PathBuf,
    /// Samples per observation
    #[arg(long, default_value_t = 10_000)]
    num_samples: usize,
    /// Contrastive θ' per x (K) for ratio and hybrid: a grid axis
    #[arg(long, value_delimiter = ',', default_value = "1")]
    contrastive: Vec<usize>,
    /// Hybrid: whether the partition term trains the base flow (detached, reparameterized; a
    /// grid axis, e.g. `detached,reparameterized` for the ablation; other methods ignore it)
    #[arg(long, value_delimiter = ',', value_enum, default_value = "detached")]
    base_gradient: Vec<BaseGradient>,
    /// Also score the hybrid's base flow alone (same weights, sampled as an NPE model)
    #[arg(long)]
    hybrid_base_c2st: bool,
    /// High-dimensional gaussian_linear: adds gaussian_linear_d<d> for each d (θ, x ∈ R^d)
    #[arg(long, value_delimiter = ',')]
    highdim: Vec<usize>,
    /// Python with sbi and sbibm: also run each cell with sbi (NPE-NSF for npe, NRE for ratio)
    #[arg(long)]
    peer_python: Option<PathBuf>,
    /// The peer script
    #[arg(long, default_value = "scripts/sbi_bench.py")]
    peer_script: PathBuf,
    /// Tiny networks and at most 10 epochs (tests and smoke runs; the other options override it)
    #[arg(long)]
    quick: bool,
    #[arg(long, value_enum)]
    flow: Option<FlowKind>,
    #[arg(long)]
    transforms: Option<usize>,
    /// Hidden units of each MADE layer
    #[arg(long)]
    hidden: Option<usize>,
    #[arg(long)]
    ratio_hidden: Option<usize>,
    #[arg(long)]
    ratio_blocks: Option<usize>,
    /// Hybrid: epochs of the base flow alone before the ratio joins
    #[arg(long)]
    base_epochs: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    lr: Option<f32>,
    #[arg(long)]
    max_epochs: Option<usize>,
    #[arg(long)]
    patience: Option<usize>,
    /// Halve the learning rate after this many epochs without improvement (0: constant) [default: 10]
    #[arg(long)]
    lr_patience: Option<usize>,
    /// Hybrid: count only base draws inside the prior's support in the partition term
    /// [default: true]
    #[arg(long, action = clap::ArgAction::Set)]
    support_mask: Option<bool>,
    /// Model θ in the prior's unconstrained space (logit of a box, log of a positive support),
    /// as `train --unconstrained`; default: `train`'s (true for the hybrid on a lognormal prior)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    unconstrained: Option<bool>,
    /// Only train and save the pending cells' models; a later run without it samples and scores
    /// them (e.g. train on a GPU machine, score elsewhere)
    #[arg(long)]
    train_only: bool,
    /// Rejection sampling (ratio, hybrid): wall-time budget per observation, s
    #[arg(long, default_value_t = 600.0)]
    max_sample_seconds: f64,
    /// C2ST classifier seed
    #[arg(long, default_value_t = 1)]
    c2st_seed: u64,
    /// Where every C2ST's classifiers train (recorded per row as c2st_device). cpu gives the same
    /// scores up to float rounding and is much faster on a software adapter such as lavapipe
    #[arg(long, value_enum, default_value_t = C2stDevice::Gpu)]
    c2st_device: C2stDevice,
    /// Do not draw the PNG figures
    #[arg(long)]
    no_plots: bool,
    /// Only regenerate results.csv, table.md and the figures from the journal (no GPU work)
    #[arg(long)]
    report_only: bool,
}

fn parse_observations(s: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (usize, usize) = (
                a.trim().parse().context("--observations")?,
                b.trim().parse().context("--observations")?,
            );
            if a > b {
                bail!("--observations: empty range {part}");
            }
            out.extend(a..=b);
        } else {
            out.push(part.parse().with_context(|| {
                format!("--observations: '{part}' is not a number or a range a-b")
            })?);
        }
    }
    if out.is_empty() {
        bail!("--observations: none given");
    }
    out.dedup();
    Ok(out)
}

impl GridArgs {
    fn config(self) -> Result<GridConfig> {
        let mut p = if self.quick {
            TrainProfile::quick()
        } else {
            TrainProfile::default()
        };
        if let Some(kind) = self.flow {
            p = p.with_flow(kind);
        }
        if self.unconstrained.is_some() {
            p.unconstrained = self.unconstrained;
        }
        macro_rules! set {
            ($($f:ident),*) => { $(if let Some(v) = self.$f { p.$f = v; })* };
        }
        set!(
            transforms,
            hidden,
            ratio_hidden,
            ratio_blocks,
            base_epochs,
            batch_size,
            lr,
            max_epochs,
            patience,
            lr_patience,
            support_mask
        );
        let mut tasks = self.tasks;
        tasks.extend(
            self.highdim
                .iter()
                .map(|d| format!("{}{d}", gkl_tasks::tasks::gaussian_linear_d::PREFIX)),
        );
        if self.contrastive.contains(&0) {
            bail!("--contrastive: K must be at least 1");
        }
        if self.seeds == 0 || self.budgets.iter().any(|&b| b < 10) {
            bail!("--seeds must be at least 1 and every budget at least 10");
        }
        Ok(GridConfig {
            tasks,
            methods: self.methods,
            budgets: self.budgets,
            observations: parse_observations(&self.observations)?,
            seeds: self.seeds,
            contrastive: self.contrastive,
            base_gradients: {
                let mut b = self.base_gradient;
                b.dedup();
                b
            },
            num_samples: self.num_samples,
            out: self.out,
            hybrid_base_c2st: self.hybrid_base_c2st,
            profile: p,
            max_sample_seconds: self.max_sample_seconds,
            c2st: C2stConfig {
                seed: self.c2st_seed,
                device: self.c2st_device,
                ..Default::default()
            },
            peer_python: self.peer_python,
            peer_script: self.peer_script,
            plots: !self.no_plots,
            train_only: self.train_only,
        })
    }
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
    /// Per method: training steps/s, pairs/s and GFLOP/s at each batch size, and sampler
    /// proposals/s, each beside a plain-Rust CPU reference timed in the same run
    Throughput(ThroughputArgs),
}

#[derive(Args)]
struct ThroughputArgs {
    /// Benchmark task whose simulations train and whose observations are sampled
    #[arg(long, default_value = "two_moons")]
    task: String,
    /// Methods with their flow: npe-maf, npe-nsf, ratio, hybrid-maf, hybrid-nsf (npe and hybrid
    /// alone: NSF)
    #[arg(long, value_delimiter = ',', default_value = "npe-maf,npe-nsf,ratio,hybrid-nsf", value_parser = MethodFlow::parse)]
    methods: Vec<MethodFlow>,
    /// Training batch sizes
    #[arg(long, value_delimiter = ',', default_value = "256,4096")]
    batches: Vec<usize>,
    /// Minimum seconds timed per measurement (GPU and CPU each)
    #[arg(long, default_value_t = 1.5)]
    seconds: f64,
    /// Contrastive θ' per x (K) of the ratio and hybrid terms
    #[arg(long, default_value_t = 1)]
    contrastive: usize,
    /// Sampling: observations sampled at once (0: skip the sampling measurements)
    #[arg(long, default_value_t = 100)]
    observations: usize,
    /// Sampling: epochs the sampled models train for
    #[arg(long, default_value_t = 3)]
    sampler_epochs: usize,
    /// Sampling: simulations the sampled models train on
    #[arg(long, default_value_t = 5000)]
    sampler_simulations: usize,
    /// Rejection sampling: warm-up proposals per observation that set the bound M
    #[arg(long, default_value_t = 1024)]
    m_proposals: usize,
    /// Tiny networks (tests and smoke runs, not numbers)
    #[arg(long)]
    quick: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print JSON instead of the table
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file
    #[arg(long, value_name = "FILE.json")]
    out: Option<PathBuf>,
}

pub fn run(gpu: &GpuArgs, args: BenchArgs) -> Result<()> {
    let Some(what) = args.what else {
        let report_only = args.grid.report_only;
        let cfg = args.grid.config()?;
        if report_only {
            let path = cfg.out.join("journal.jsonl");
            if !path.exists() {
                bail!(
                    "--report-only: no journal at {} (run the bench into that directory first)",
                    path.display()
                );
            }
            let j = gkl_gpu::bench::journal::Journal::open(&path)?;
            gkl_gpu::bench::report::write_all(&cfg, &j.rows, &mut |m| eprintln!("{m}"))?;
            print!(
                "{}",
                std::fs::read_to_string(cfg.out.join("table.md")).unwrap_or_default()
            );
            return Ok(());
        }
        let ctx = gpu.context()?;
        let t = std::time::Instant::now();
        let rows = grid::run(&ctx, &cfg, &mut |m| eprintln!("{m}"))?;
        print!(
            "{}",
            std::fs::read_to_string(cfg.out.join("table.md")).unwrap_or_default()
        );
        eprintln!(
            "{} rows in {}; this run took {:.1} s",
            rows.len(),
            cfg.out.join("journal.jsonl").display(),
            t.elapsed().as_secs_f64()
        );
        return Ok(());
    };
    match what {
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
        BenchWhat::Throughput(a) => {
            let cfg = ThroughputConfig {
                task: a.task,
                methods: a.methods,
                batches: a.batches,
                seconds: a.seconds,
                profile: if a.quick {
                    TrainProfile::quick()
                } else {
                    TrainProfile::default()
                },
                contrastive: a.contrastive,
                observations: a.observations,
                sampler_epochs: a.sampler_epochs,
                sampler_simulations: a.sampler_simulations,
                m_proposals: a.m_proposals,
                seed: a.seed,
            };
            let ctx = gpu.context()?;
            let report = throughput::run(&ctx, &cfg, &mut |m| eprintln!("timing {m}"))?;
            let json = serde_json::to_string_pretty(&report)?;
            if let Some(p) = &a.out {
                gkl_gpu::io::atomic_write_bytes(p, json.as_bytes())
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            if a.json {
                println!("{json}");
            } else {
                print!("{}", report.table());
            }
            Ok(())
        }
    }
}

//! Where `gkl-gpu train` gets its simulations: a benchmark task, files (`--data`, or `--theta`
//! with `--x`) with a prior file, or an external simulator program; invalid rows; and the
//! `data_summary.json` written beside the model.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use gkl_gpu::data::{
    check_against_prior, load_npy_pair, load_path, online_source, read_prior, ExternalConfig,
    ExternalSimulator, FailureSlot, InvalidCount, InvalidPolicy, OnlineDraw, OnlineStats,
    Simulations,
};
use gkl_gpu::io::{write_npz, NpyData};
use gkl_gpu::training::npe::Simulator;
use gkl_gpu::training::source::ScanReport;
use gkl_gpu::training::ShardStream;
use gkl_tasks::{task_by_name, Prior};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Invalid {
    /// Drop simulations with NaN or Inf in x and count them
    Drop,
    /// Stop with an error at the first such simulation
    Error,
}

#[derive(Args, Clone, Debug, Serialize, Deserialize)]
pub struct DataArgs {
    /// Simulations to train on: an .npz with arrays `theta` (N × dθ) and `x` (N × dx), or a
    /// folder of such .npz shards (or theta/x .npy pairs), streamed from disk one shard at a
    /// time; f32 or f64, C or Fortran order
    #[arg(long, value_name = "PATH", conflicts_with_all = ["theta", "x"])]
    pub data: Option<PathBuf>,
    /// θ of the simulations to train on (.npy, N × dθ); with --x
    #[arg(long, value_name = "FILE", requires = "x")]
    pub theta: Option<PathBuf>,
    /// x of the simulations to train on (.npy, N × dx); with --theta
    #[arg(long, value_name = "FILE", requires = "theta")]
    pub x: Option<PathBuf>,
    /// Prior over θ as JSON: {"type": "box_uniform", "low": [..], "high": [..]}, "gaussian"
    /// (mean, cov), "lognormal" (loc, scale) or "independent" (components)
    #[arg(long, value_name = "FILE")]
    pub prior: Option<PathBuf>,
    /// Your simulator program, run through `sh -c`: reads θ batches from stdin and writes x to
    /// stdout, each message a u64 little-endian byte count and a complete .npy (README)
    #[arg(long, value_name = "COMMAND", conflicts_with_all = ["data", "theta"])]
    pub simulator_cmd: Option<String>,
    /// Simulator processes running at once
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub simulator_workers: u32,
    /// Rows of θ per message to the simulator
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub simulator_batch: u64,
    /// Seconds to wait for one answer before killing the simulator and stopping
    #[arg(long, default_value_t = 600.0)]
    pub simulator_timeout: f64,
    /// Simulations with NaN or Inf in x: drop (and count) them, or stop with an error
    #[arg(long, value_enum, default_value_t = Invalid::Drop)]
    pub invalid: Invalid,
}

impl DataArgs {
    fn policy(&self) -> InvalidPolicy {
        match self.invalid {
            Invalid::Drop => InvalidPolicy::Drop,
            Invalid::Error => InvalidPolicy::Error,
        }
    }
}

#[derive(Serialize, Clone, Debug)]
struct OnlineSummary {
    rows_simulated: usize,
    rows_with_nan: usize,
    rows_with_inf: usize,
}

/// What `data_summary.json` holds.
#[derive(Serialize, Clone, Debug)]
struct DataSummary {
    source: String,
    prior: String,
    shards: Option<usize>,
    dim_theta: usize,
    dim_x: usize,
    rows_read: usize,
    invalid_policy: InvalidPolicy,
    rows_with_nan: usize,
    rows_with_inf: usize,
    rows_dropped: usize,
    rows_used: usize,
    theta_values_clamped_to_support: usize,
    seconds_to_load_or_simulate: f64,
    online: Option<OnlineSummary>,
}

enum Source {
    Task(String),
    Files,
    External(Arc<ExternalSimulator>),
}

/// The thread loading or simulating: (simulations, shard count, seconds).
type Handle = Option<JoinHandle<Result<(Simulations, Option<usize>, f64)>>>;

/// Loading or simulation under way (on a CPU thread while the GPU opens).
pub struct Pending {
    prior: Prior,
    prior_name: String,
    task: Option<String>,
    source: Source,
    source_name: String,
    data_path: Option<PathBuf>,
    policy: InvalidPolicy,
    online: bool,
    /// Simulations being loaded or simulated; `None` when a shard folder is streamed.
    handle: Handle,
    stream: Option<ShardStream>,
    /// The simulations came from the run directory's stored copy.
    from_store: bool,
}

/// The simulations to train on, the prior, and the online source if any.
pub struct TrainData {
    pub prior: Prior,
    pub theta: Vec<f64>,
    pub x: Vec<f64>,
    pub dim_x: usize,
    pub task: Option<String>,
    pub online: Option<Simulator>,
    /// A shard folder streamed from disk (then `theta` and `x` are empty).
    pub stream: Option<ShardStream>,
    /// Simulations from an external program, to be stored in the run directory for `--resume`.
    pub store: bool,
    failure: FailureSlot,
    stats: Arc<OnlineStats>,
    summary: DataSummary,
}

/// The copy of an external simulator's simulations kept in the run directory (read back by
/// `--resume` instead of simulating again).
pub const STORED_SIMULATIONS: &str = "simulations.npz";

/// Checks the combination of options, reads the prior, and starts loading or simulating. With
/// `stored` (a resumed run's `simulations.npz`), an external simulator's data is read from there.
pub fn prepare(
    a: &DataArgs,
    task: Option<&str>,
    simulations: usize,
    seed: u64,
    online: bool,
    stored: Option<&Path>,
) -> Result<Pending> {
    let files = a.data.is_some() || a.theta.is_some();
    if task.is_some() && a.simulator_cmd.is_some() {
        bail!("--task and --simulator-cmd are alternatives: a task brings its own simulator");
    }
    if task.is_some() && a.prior.is_some() {
        bail!("--task brings its own prior; give --prior with --data, --theta/--x or --simulator-cmd instead");
    }
    if task.is_none() && !files && a.simulator_cmd.is_none() {
        bail!("nothing to train on: give --task, or --data (or --theta and --x) with --prior, or --simulator-cmd with --prior");
    }
    if task.is_none() && a.prior.is_none() {
        bail!(
            "{} needs --prior (the prior θ is drawn from; JSON, see --help)",
            if files {
                "training from files"
            } else {
                "--simulator-cmd"
            }
        );
    }
    if online && files && task.is_none() {
        bail!("--online needs a simulator to draw fresh simulations from (--task); files alone cannot supply them");
    }
    if !(a.simulator_timeout > 0.0 && a.simulator_timeout.is_finite()) {
        bail!("--simulator-timeout must be a positive number of seconds");
    }
    let (prior, prior_name) = match (&a.prior, task) {
        (Some(p), _) => (read_prior(p)?, p.display().to_string()),
        (None, Some(t)) => (task_by_name(t)?.prior().clone(), format!("task {t}")),
        (None, None) => unreachable!("checked above"),
    };
    let n = simulations;
    let mut stream = None;
    let mut from_store = false;
    let (source, source_name, data_path, handle): (Source, String, Option<PathBuf>, Handle) =
        if let Some(dir) = a.data.as_ref().filter(|d| d.is_dir() && !online) {
            // A shard folder: streamed by the trainer, never held in memory as a whole.
            let s = ShardStream::open(dir, &prior, &prior_name, a.policy())?;
            if let Some(t) = task {
                let t = task_by_name(t)?;
                if s.set.dim_x() != t.dim_x() {
                    bail!(
                        "{}: x has {} columns but task {} has dx = {}",
                        dir.display(),
                        s.set.dim_x(),
                        t.name(),
                        t.dim_x()
                    );
                }
            }
            stream = Some(s);
            (
                match task {
                    Some(t) => Source::Task(t.to_string()),
                    None => Source::Files,
                },
                dir.display().to_string(),
                Some(dir.clone()),
                None,
            )
        } else if files {
            let (data, theta, x) = (a.data.clone(), a.theta.clone(), a.x.clone());
            let (name, path) = match &data {
                Some(d) => (d.display().to_string(), d.clone()),
                None => {
                    let (t, x) = (
                        theta.as_ref().expect("clap: --theta with --x"),
                        x.as_ref().expect("clap"),
                    );
                    (format!("{} + {}", t.display(), x.display()), t.clone())
                }
            };
            let h = std::thread::spawn(move || {
                let t = Instant::now();
                let (s, shards) = match (data, theta, x) {
                    (Some(d), _, _) => load_path(d)?,
                    (None, Some(t), Some(x)) => (load_npy_pair(t, x)?, None),
                    _ => unreachable!("clap requires --theta with --x"),
                };
                Ok((s, shards, t.elapsed().as_secs_f64()))
            });
            (
                match task {
                    Some(t) => Source::Task(t.to_string()),
                    None => Source::Files,
                },
                name,
                Some(path),
                Some(h),
            )
        } else if let Some(cmd) = &a.simulator_cmd {
            let ext = Arc::new(ExternalSimulator::new(
                ExternalConfig {
                    command: cmd.clone(),
                    workers: a.simulator_workers as usize,
                    batch: a.simulator_batch as usize,
                    timeout: Duration::from_secs_f64(a.simulator_timeout),
                    seed,
                },
                prior.dim(),
            ));
            let (e, p) = (ext.clone(), prior.clone());
            let stored = stored.filter(|p| p.is_file()).map(Path::to_path_buf);
            from_store = stored.is_some();
            let h = std::thread::spawn(move || {
                let t = Instant::now();
                let sims = match stored {
                    Some(file) => gkl_gpu::data::load_npz(&file)?,
                    None => e.simulate_prior(&p, n, seed)?,
                };
                Ok((sims, None, t.elapsed().as_secs_f64()))
            });
            let name = if from_store {
                format!("the run's stored output of simulator `{cmd}` ({STORED_SIMULATIONS})")
            } else {
                format!("simulator `{cmd}`")
            };
            (Source::External(ext), name, None, Some(h))
        } else {
            let name = task.expect("checked above").to_string();
            let tn = name.clone();
            let h = std::thread::spawn(move || {
                let t = Instant::now();
                let task = task_by_name(&tn)?;
                let theta = task.sample_prior(n, seed);
                let x = task.simulate(&theta, seed.wrapping_add(0x5349_4d55));
                let s = Simulations::new(theta, x, task.dim_theta(), task.dim_x())
                    .context("task returned inconsistent shapes")?;
                Ok((s, None, t.elapsed().as_secs_f64()))
            });
            (
                Source::Task(name.clone()),
                format!("task {name}"),
                None,
                Some(h),
            )
        };
    Ok(Pending {
        prior,
        prior_name,
        task: task.map(str::to_string),
        source,
        source_name,
        data_path,
        policy: a.policy(),
        online,
        handle,
        stream,
        from_store,
    })
}

impl Pending {
    /// Waits for the data, checks it against the prior (and task), applies the invalid policy.
    pub fn finish(self) -> Result<TrainData> {
        if let Some(s) = self.stream {
            let rows = s.set.rows();
            eprintln!(
                "data: {rows} simulations in {} shards of {} (θ {} × x {}), streamed from disk",
                s.set.len(),
                self.source_name,
                s.set.dim_theta(),
                s.set.dim_x()
            );
            let summary = DataSummary {
                source: self.source_name,
                prior: self.prior_name,
                shards: Some(s.set.len()),
                dim_theta: s.set.dim_theta(),
                dim_x: s.set.dim_x(),
                rows_read: rows,
                invalid_policy: self.policy,
                rows_with_nan: 0,
                rows_with_inf: 0,
                rows_dropped: 0,
                rows_used: rows,
                theta_values_clamped_to_support: 0,
                seconds_to_load_or_simulate: 0.0,
                online: None,
            };
            return Ok(TrainData {
                prior: self.prior,
                theta: vec![],
                x: vec![],
                dim_x: s.set.dim_x(),
                task: self.task,
                online: None,
                stream: Some(s),
                store: false,
                failure: Default::default(),
                stats: Arc::new(OnlineStats::default()),
                summary,
            });
        }
        let (mut sims, shards, secs) = self
            .handle
            .expect("a handle unless streaming")
            .join()
            .map_err(|_| anyhow::anyhow!("the data thread panicked"))??;
        let rows_read = sims.rows();
        let mut clamped = 0;
        if let Some(path) = &self.data_path {
            clamped = check_against_prior(&mut sims, &self.prior, path, &self.prior_name)?;
            if let Source::Task(t) = &self.source {
                let task = task_by_name(t)?;
                if sims.dim_x != task.dim_x() {
                    bail!(
                        "{}: x has {} columns but task {t} has dx = {}",
                        path.display(),
                        sims.dim_x,
                        task.dim_x()
                    );
                }
            }
        }
        let count = sims.apply_invalid_policy(self.policy, &self.source_name)?;
        if sims.rows() < 2 {
            bail!(
                "{}: only {} valid simulations out of {rows_read}; too few to train on",
                self.source_name,
                sims.rows()
            );
        }
        eprintln!(
            "data: {rows_read} simulations from {}{} in {secs:.2} s (θ {} × x {}); {}",
            self.source_name,
            shards.map(|k| format!(" ({k} shards)")).unwrap_or_default(),
            sims.dim_theta,
            sims.dim_x,
            if count.total() == 0 {
                "none invalid".to_string()
            } else {
                format!(
                    "dropped {} with NaN or Inf in x ({} NaN, {} Inf), training on {}",
                    count.total(),
                    count.rows_with_nan,
                    count.rows_with_inf,
                    sims.rows()
                )
            }
        );
        let failure: FailureSlot = Default::default();
        let stats = Arc::new(OnlineStats::default());
        let online = if self.online {
            let draw: OnlineDraw = match &self.source {
                Source::Task(t) => {
                    let task: Arc<dyn gkl_tasks::Task> = Arc::from(task_by_name(t)?);
                    Arc::new(move |n, seed| {
                        let theta = task.sample_prior(n, seed);
                        let x = task.simulate(&theta, seed.wrapping_add(0x5349_4d55));
                        Ok(Simulations {
                            theta,
                            x,
                            dim_theta: task.dim_theta(),
                            dim_x: task.dim_x(),
                        })
                    })
                }
                Source::External(ext) => {
                    let (ext, prior) = (ext.clone(), self.prior.clone());
                    Arc::new(move |n, seed| ext.simulate_prior(&prior, n, seed))
                }
                Source::Files => unreachable!("checked in prepare"),
            };
            Some(online_source(
                draw,
                self.policy,
                self.source_name.clone(),
                failure.clone(),
                stats.clone(),
            ))
        } else {
            None
        };
        let summary = DataSummary {
            source: self.source_name,
            prior: self.prior_name,
            shards,
            dim_theta: sims.dim_theta,
            dim_x: sims.dim_x,
            rows_read,
            invalid_policy: self.policy,
            rows_with_nan: count.rows_with_nan,
            rows_with_inf: count.rows_with_inf,
            rows_dropped: count.total(),
            rows_used: sims.rows(),
            theta_values_clamped_to_support: clamped,
            seconds_to_load_or_simulate: secs,
            online: None,
        };
        let store = matches!(self.source, Source::External(_)) && !self.from_store;
        Ok(TrainData {
            prior: self.prior,
            dim_x: sims.dim_x,
            theta: sims.theta,
            x: sims.x,
            task: self.task,
            online,
            stream: None,
            store,
            failure,
            stats,
            summary,
        })
    }
}

impl TrainData {
    /// The error to report for a failed training: the online source's own error if it failed.
    pub fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        match self
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            Some(d) => d.into(),
            None => e,
        }
    }

    /// Records what the trainer's scan of a shard folder found.
    pub fn record_scan(&mut self, r: &ScanReport) {
        let s = &mut self.summary;
        s.rows_read = r.rows_read;
        s.rows_with_nan = r.invalid.rows_with_nan;
        s.rows_with_inf = r.invalid.rows_with_inf;
        s.rows_dropped = r.invalid.total();
        s.rows_used = r.rows_read - r.invalid.total();
        s.theta_values_clamped_to_support = r.theta_values_clamped;
    }

    /// Keeps an external simulator's simulations in `dir/simulations.npz` (float64) so that
    /// `--resume` trains on exactly the same rows without running the program again.
    pub fn store_simulations(&self, dir: &Path) -> Result<()> {
        if !self.store {
            return Ok(());
        }
        let d = self.prior.dim();
        let n = self.theta.len() / d;
        write_npz(
            dir.join(STORED_SIMULATIONS),
            &[
                ("theta", &[n, d], NpyData::F64(&self.theta)),
                ("x", &[n, self.dim_x], NpyData::F64(&self.x)),
            ],
        )?;
        Ok(())
    }

    /// Writes `dir/data_summary.json` (with the online counters so far).
    pub fn write_summary(&self, dir: &Path) -> Result<()> {
        let mut s = self.summary.clone();
        if self.online.is_some() {
            let c: InvalidCount = self.stats.invalid();
            s.online = Some(OnlineSummary {
                rows_simulated: self
                    .stats
                    .rows_simulated
                    .load(std::sync::atomic::Ordering::Relaxed),
                rows_with_nan: c.rows_with_nan,
                rows_with_inf: c.rows_with_inf,
            });
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = serde_json::to_string_pretty(&s)?;
        gkl_gpu::io::atomic_write_bytes(dir.join("data_summary.json"), json.as_bytes())?;
        Ok(())
    }
}

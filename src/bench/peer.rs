//! The peer column: the same cells run by the `sbi` library (NPE with a neural spline flow for
//! our npe rows, NRE for our ratio rows) through `scripts/sbi_bench.py`, one process per cell,
//! on the same machine. Its samples are scored by the same C2ST against the same reference
//! samples as ours. Only sbibm tasks. The script simulates them with sbibm, except sir and
//! lotka_volterra, which sbibm solves with Julia (`diffeqtorch`): for those the peer trains on the
//! very simulations our own cell of the same seed trains on, written to `inputs.npz` beside its
//! samples.

use super::grid::{
    file_err, now_unix, reference, score, simulate, BenchError, BenchResult, GridConfig,
};
use super::journal::{row_key, Journal, Row};
use crate::io::{read_samples, write_npz, NpyData};
use crate::runtime::GpuContext;
use crate::training::Method;
use gkl_tasks::{Task, TASK_NAMES};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// What the script writes to `result.json`.
#[derive(Debug, Deserialize)]
struct PeerResult {
    simulate_s: f64,
    train_s: f64,
    epochs: usize,
    /// Per observation (as a string key): sampling seconds.
    sample_s: BTreeMap<String, f64>,
}

/// Tasks whose sbibm simulator needs Julia: the peer gets our simulations and observations.
pub const SIMULATED_HERE: [&str; 2] = ["sir", "lotka_volterra"];

/// Writes `inputs.npz` for a task of [`SIMULATED_HERE`]: `theta` and `x`, the cell's simulations
/// as our own cell of this budget and seed draws them, and `x_o`, one row per observation in
/// `observations`' order.
fn write_inputs(
    task: &dyn Task,
    budget: usize,
    seed: u64,
    observations: &[usize],
    path: &Path,
) -> BenchResult<()> {
    let (theta, x) = simulate(task, budget, seed);
    let (dt, dx) = (task.dim_theta(), task.dim_x());
    let mut x_o = Vec::with_capacity(observations.len() * dx);
    for &k in observations {
        x_o.extend(task.observation(k)?.x);
    }
    write_npz(
        path,
        &[
            ("theta", &[theta.len() / dt, dt], NpyData::F64(&theta)),
            ("x", &[x.len() / dx, dx], NpyData::F64(&x)),
            ("x_o", &[observations.len(), dx], NpyData::F64(&x_o)),
        ],
    )?;
    Ok(())
}

/// Our method and the peer's name for it.
pub fn peer_of(m: Method) -> Option<(&'static str, &'static str)> {
    match m {
        Method::Npe => Some(("sbi-npe", "npe")),
        Method::Ratio => Some(("sbi-nre", "nre")),
        Method::Hybrid => None,
    }
}

pub fn run_peers(
    ctx: &GpuContext,
    cfg: &GridConfig,
    python: &Path,
    tasks: &[Box<dyn Task>],
    journal: &mut Journal,
    log: &mut dyn FnMut(&str),
) -> BenchResult<()> {
    let n = cfg.num_samples;
    for task in tasks {
        if !TASK_NAMES.contains(&task.name()) {
            log(&format!(
                "peer: {} is not an sbibm task; skipped",
                task.name()
            ));
            continue;
        }
        let d = task.dim_theta();
        for &budget in &cfg.budgets {
            for seed in 0..cfg.seeds {
                for &(name, arg) in cfg
                    .methods
                    .iter()
                    .filter_map(|&m| peer_of(m))
                    .collect::<Vec<_>>()
                    .iter()
                {
                    let pending: Vec<usize> = cfg
                        .observations
                        .iter()
                        .copied()
                        .filter(|&o| {
                            !journal.contains(&row_key(
                                task.name(),
                                name,
                                1,
                                Default::default(),
                                budget,
                                seed,
                                o,
                            ))
                        })
                        .collect();
                    if pending.is_empty() {
                        continue;
                    }
                    let dir = cfg
                        .out
                        .join("peers")
                        .join(task.name())
                        .join(format!("{name}_n{budget}_s{seed}"));
                    let result_path = dir.join("result.json");
                    let have = |o: &usize| dir.join(format!("samples_obs{o}.npy")).exists();
                    if !result_path.exists() || !pending.iter().all(have) {
                        std::fs::create_dir_all(&dir).map_err(file_err(&dir, "create"))?;
                        let obs: Vec<String> = pending.iter().map(usize::to_string).collect();
                        log(&format!(
                            "peer sbi {arg} {} n={budget} seed={seed}: observations {}",
                            task.name(),
                            obs.join(",")
                        ));
                        let mut cmd = Command::new(python);
                        cmd.arg(&cfg.peer_script)
                            .args([
                                task.name(),
                                arg,
                                &budget.to_string(),
                                "--seed",
                                &seed.to_string(),
                                "--observations",
                                &obs.join(","),
                                "--samples",
                                &n.to_string(),
                                // The same sampling budget per observation as our rows.
                                "--max-seconds",
                                &cfg.max_sample_seconds.to_string(),
                                "--out",
                            ])
                            .arg(&dir);
                        if SIMULATED_HERE.contains(&task.name()) {
                            let inputs = dir.join("inputs.npz");
                            write_inputs(task.as_ref(), budget, seed, &pending, &inputs)?;
                            cmd.arg("--inputs").arg(inputs);
                        }
                        let out = cmd
                            .output()
                            .map_err(file_err(python, "run the peer interpreter"))?;
                        if !out.status.success() {
                            // Not recorded in the journal: a broken peer environment is fixed and
                            // the run repeated, without redoing our own rows.
                            let err = String::from_utf8_lossy(&out.stderr);
                            let tail: Vec<&str> = err.lines().rev().take(3).collect();
                            log(&format!(
                                "peer failed ({}): {}",
                                out.status,
                                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                            ));
                            continue;
                        }
                    }
                    let text = std::fs::read_to_string(&result_path)
                        .map_err(file_err(&result_path, "read"))?;
                    let res: PeerResult = serde_json::from_str(&text).map_err(|e| {
                        BenchError::Config(format!("{}: {e}", result_path.display()))
                    })?;
                    for &obs in &pending {
                        let sp = dir.join(format!("samples_obs{obs}.npy"));
                        let s = read_samples(&sp)?;
                        let refs = reference(&cfg.out, task.as_ref(), obs, n)?;
                        let m = s.shape()[0].min(n);
                        let (acc, c2st_s) = score(ctx, &cfg.c2st, &refs, &s.data[..m * d], d)?;
                        log(&format!("  peer {name} obs {obs}: C2ST {acc:.4}"));
                        journal.append(Row {
                            task: task.name().to_string(),
                            method: name.to_string(),
                            contrastive: 1,
                            base_gradient: Default::default(),
                            budget,
                            seed,
                            observation: obs,
                            c2st: Some(acc),
                            base_c2st: None,
                            simulate_s: res.simulate_s,
                            train_s: res.train_s,
                            epochs: res.epochs,
                            sample_s: res
                                .sample_s
                                .get(&obs.to_string())
                                .copied()
                                .unwrap_or(f64::NAN),
                            c2st_s,
                            c2st_device: cfg.c2st.device,
                            // scripts/sbi_bench.py trains and samples with PyTorch on the CPU.
                            adapter: Some("host CPU (sbi, PyTorch)".into()),
                            samples: m,
                            acceptance_rate: None,
                            log_z: None,
                            proposals: None,
                            sampling_finished: m == n,
                            error: None,
                            finished_at: now_unix(),
                        })?;
                    }
                }
            }
        }
    }
    Ok(())
}

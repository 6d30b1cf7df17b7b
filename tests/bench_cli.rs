//! `gkl-gpu bench` end to end on a tiny grid: it writes results.csv, table.md and the figures;
//! killed with SIGKILL once its journal holds a row and started again, it finishes without
//! redoing a finished row.

mod common;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gkl-gpu");

fn args(out: &Path) -> Vec<String> {
    grid_args(out, "two_moons", "npe,ratio")
}

/// The tiny grid of [`args`] on other tasks and methods.
fn grid_args(out: &Path, tasks: &str, methods: &str) -> Vec<String> {
    [
        "bench",
        "--tasks",
        tasks,
        "--methods",
        methods,
        "--budgets",
        "1000",
        "--observations",
        "1",
        "--num-samples",
        "500",
        "--quick",
        "--max-epochs",
        "5",
        "--out",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([out.display().to_string()])
    .collect()
}

/// Whole lines of the journal, parsed.
fn journal(out: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(out.join("journal.jsonl")).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |i| &text[..=i]);
    whole
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("journal line is JSON"))
        .collect()
}

fn key(v: &serde_json::Value) -> String {
    format!(
        "{}|{}|{}|{}|{}|{}",
        v["task"], v["method"], v["contrastive"], v["budget"], v["seed"], v["observation"]
    )
}

fn png_ok(p: &Path) {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        p.display()
    );
    assert!(
        bytes.len() > 5_000,
        "{} is only {} bytes",
        p.display(),
        bytes.len()
    );
}

#[test]
fn bench_grid_is_resumable_and_writes_reports() {
    let out = std::env::temp_dir().join(format!("gkl-bench-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);

    // First run: killed as soon as the journal holds one whole row (the npe cell's).
    let mut child = Command::new(BIN)
        .args(args(&out))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gkl-gpu bench");
    let start = Instant::now();
    loop {
        if !journal(&out).is_empty() {
            child.kill().expect("SIGKILL"); // Child::kill is SIGKILL on Unix
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("bench exited ({status}) before it was killed");
        }
        assert!(
            start.elapsed() < Duration::from_secs(150),
            "no journal row within 150 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait().unwrap();
    let first = journal(&out);
    assert!(!first.is_empty());
    assert!(
        !out.join("results.csv").exists() || first.len() == 2,
        "a killed run writes no report before the grid is done"
    );

    // Second run: completes the grid and reports.
    let status = Command::new(BIN)
        .args(args(&out))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    assert!(status.success());
    let rows = journal(&out);
    assert_eq!(rows.len(), 2, "one row per (cell, observation): {rows:#?}");
    let mut keys: Vec<String> = rows.iter().map(key).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 2, "no duplicates");
    // Rows finished before the kill are the same rows, untouched (same time stamps).
    for f in &first {
        let again = rows
            .iter()
            .find(|r| key(r) == key(f))
            .expect("finished row kept");
        assert_eq!(again, f);
    }
    let methods: Vec<&str> = rows.iter().map(|r| r["method"].as_str().unwrap()).collect();
    assert!(methods.contains(&"npe") && methods.contains(&"ratio"));
    for r in &rows {
        let c = r["c2st"].as_f64().expect("every row scored");
        assert!((0.3..=1.0).contains(&c), "C2ST {c}");
        assert_eq!(r["samples"].as_u64(), Some(500));
    }
    let ratio = rows.iter().find(|r| r["method"] == "ratio").unwrap();
    let acc = ratio["acceptance_rate"]
        .as_f64()
        .expect("ratio rows carry the acceptance rate");
    assert!(acc > 0.0 && acc <= 1.0);
    assert!(ratio["log_z"].as_f64().unwrap().is_finite());

    // Reports.
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        3,
        "header and one line per row:\n{csv}"
    );
    assert!(csv.starts_with("task,method,contrastive,budget,seed,observation,c2st"));
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with(",base_gradient,c2st_device,adapter"),
        "{csv}"
    );
    // Every row names the adapter that trained and sampled it, quoted (names contain commas).
    assert!(
        csv.lines()
            .skip(1)
            .all(|l| l.contains(",detached,gpu,\"") && l.ends_with(")\"")),
        "{csv}"
    );
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(
        table.contains("| two_moons | npe |") && table.contains("| two_moons | ratio |"),
        "{table}"
    );
    assert!(
        table.contains("**"),
        "best per task and budget in bold:\n{table}"
    );
    for f in [
        "c2st_two_moons.png",
        "pairs_two_moons_npe.png",
        "pairs_two_moons_ratio.png",
    ] {
        png_ok(&out.join(f));
    }

    // A third run has nothing left to do: the journal is unchanged.
    let status = Command::new(BIN)
        .args(args(&out))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(journal(&out), rows);

    // With the journal gone but the models kept, a run re-samples and does not train again.
    let cells = out.join("models/two_moons");
    let cell_json =
        |m: &str| std::fs::read(cells.join(format!("{m}_K1_n1000_s0/cell.json"))).unwrap();
    let before = (cell_json("npe"), cell_json("ratio"));
    std::fs::remove_file(out.join("journal.jsonl")).unwrap();
    let o = Command::new(BIN).args(args(&out)).output().unwrap();
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("trained earlier").count(), 2, "{err}");
    assert_eq!((cell_json("npe"), cell_json("ratio")), before);
    let again = journal(&out);
    assert_eq!(again.len(), 2);
    for (a, b) in again.iter().zip(&rows) {
        assert_eq!(
            (key(a), &a["train_s"]),
            (key(b), &b["train_s"]),
            "training time is the recorded one"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// `--train-only` trains and saves every cell's model and scores nothing; the same grid without it
/// then samples and scores those models without training again.
#[test]
fn bench_train_only_leaves_scoring_to_a_later_run() {
    let out = std::env::temp_dir().join(format!("gkl-bench-train-only-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut a = args(&out);
    a.push("--train-only".into());
    let o = Command::new(BIN).args(&a).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(journal(&out).is_empty(), "train-only wrote journal rows");
    let cells = out.join("models/two_moons");
    for m in ["npe", "ratio"] {
        let info: serde_json::Value = serde_json::from_slice(
            &std::fs::read(cells.join(format!("{m}_K1_n1000_s0/cell.json"))).unwrap(),
        )
        .unwrap();
        assert!(info["adapter"].is_string(), "{m}: {info}");
        assert!(info["epochs"].as_u64().unwrap() >= 1, "{m}: {info}");
    }
    assert!(!out.join("samples").exists(), "train-only sampled");

    let o = Command::new(BIN).args(args(&out)).output().unwrap();
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("trained earlier").count(), 2, "{err}");
    let rows = journal(&out);
    assert_eq!(rows.len(), 2);
    for r in &rows {
        let c = r["c2st"].as_f64().unwrap();
        assert!((0.4..=1.0).contains(&c), "{r}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// An I/O error's message names its cause once: the bench's errors fold the `std::io::Error`
/// into their own line instead of exposing it as a `source()` that `{:#}` would print again.
#[test]
fn bench_io_error_names_its_cause_once() {
    let o = Command::new(BIN)
        .args([
            "bench",
            "--quick",
            "--budgets",
            "100",
            "--out",
            "/dev/null/x",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/dev/null/x"), "{err}");
    assert_eq!(err.matches("os error").count(), 1, "{err}");
}

#[test]
fn bench_rejects_bad_grids_with_one_line() {
    for (extra, want) in [
        (vec!["--observations", "3-1"], "empty range"),
        (vec!["--observations", "9"], "observation 9 does not exist"),
        (vec!["--tasks", "no_such_task"], "unknown task"),
        (vec!["--contrastive", "0"], "K must be at least 1"),
        (vec!["--report-only"], "no journal at"),
        (
            vec!["--base-gradient", "sideways"],
            "invalid value 'sideways'",
        ),
    ] {
        let out = std::env::temp_dir().join(format!("gkl-bench-bad-{}", std::process::id()));
        let mut a = vec![
            "bench".to_string(),
            "--out".into(),
            out.display().to_string(),
            "--budgets".into(),
            "100".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        let o = Command::new(BIN).args(&a).output().unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{extra:?}: {err}");
        let _ = std::fs::remove_dir_all(&out);
    }
}

/// `gkl-gpu bench throughput` on a tiny configuration: the JSON report (stdout and `--out`) holds
/// the adapter and one row per (method, batch) and per method, every figure positive and finite.
#[test]
fn bench_throughput_reports_every_cell() {
    let out = std::env::temp_dir().join(format!("gkl-bench-tp-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let methods = ["npe-maf", "ratio", "hybrid-maf"];
    let batches = [32u64, 64];
    let o = Command::new(BIN)
        .args([
            "bench",
            "throughput",
            "--quick",
            "--methods",
            &methods.join(","),
            "--batches",
            "32,64",
            "--seconds",
            "0.1",
            "--observations",
            "3",
            "--sampler-epochs",
            "1",
            "--sampler-simulations",
            "300",
            "--json",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is JSON");
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("--out written")).unwrap();
    assert_eq!(v, file, "--out holds the printed report");
    let adapter = v["adapter"].as_str().expect("adapter");
    assert!(!adapter.trim().is_empty());
    assert!(
        err.contains(adapter),
        "the adapter named on stderr is the report's"
    );
    let positive = |row: &serde_json::Value, keys: &[&str]| {
        for k in keys {
            let x = row[*k]
                .as_f64()
                .unwrap_or_else(|| panic!("{k} missing in {row}"));
            assert!(x.is_finite() && x > 0.0, "{k} = {x} in {row}");
        }
    };
    let train = v["train"].as_array().expect("train rows");
    assert_eq!(train.len(), methods.len() * batches.len(), "{train:#?}");
    for m in methods {
        for b in batches {
            let row = train
                .iter()
                .find(|r| r["method"] == m && r["batch"].as_u64() == Some(b))
                .unwrap_or_else(|| panic!("no train row for {m} at batch {b}"));
            positive(
                row,
                &[
                    "gpu_steps_per_s",
                    "gpu_pairs_per_s",
                    "gpu_gflops",
                    "flops_per_pair",
                    "cpu_pairs_per_s",
                    "cpu_gflops",
                    "gpu_over_cpu",
                ],
            );
            // pairs/s is steps/s × batch, and the CPU rows are at most the batch.
            let (s, p) = (
                row["gpu_steps_per_s"].as_f64().unwrap(),
                row["gpu_pairs_per_s"].as_f64().unwrap(),
            );
            assert!((p / (s * b as f64) - 1.0).abs() < 1e-9, "{row}");
            assert!(row["cpu_rows"].as_u64().unwrap() <= b);
        }
    }
    let sampler = v["sampler"].as_array().expect("sampler rows");
    assert_eq!(sampler.len(), methods.len(), "{sampler:#?}");
    for m in methods {
        let row = sampler
            .iter()
            .find(|r| r["method"] == m)
            .unwrap_or_else(|| panic!("no sampler row for {m}"));
        assert_eq!(
            row["sampler"],
            if m.starts_with("npe") {
                "flow"
            } else {
                "rejection"
            }
        );
        positive(
            row,
            &[
                "gpu_proposals_per_s",
                "gpu_accepted_per_s",
                "acceptance_rate",
                "cpu_proposals_per_s",
                "cpu_accepted_per_s",
                "gpu_over_cpu",
            ],
        );
        assert!(row["acceptance_rate"].as_f64().unwrap() <= 1.0);
    }
    let _ = std::fs::remove_file(&out);
}

#[test]
fn bench_throughput_rejects_bad_methods_with_one_line() {
    for (m, want) in [
        ("ratio-nsf", "no flow"),
        ("npe-realnvp", "unknown flow"),
        ("flows", "unknown method"),
    ] {
        let o = Command::new(BIN)
            .args(["bench", "throughput", "--methods", m])
            .output()
            .unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{m}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{m}: {err}");
    }
}

/// The peer column's plumbing, with a stand-in for `scripts/sbi_bench.py` (it needs no sbi):
/// sir, whose sbibm simulator needs Julia, hands the peer our own cell's simulations and the
/// observation in `inputs.npz`, and its samples are scored into a `sbi-npe` row; two_moons' peer
/// gets no inputs, fails, and the bench goes on without a row for it.
#[test]
fn bench_peer_column_gets_our_simulations_where_sbibm_needs_julia() {
    if !common::python_with_numpy("the peer-column test") {
        return;
    }
    let out = std::env::temp_dir().join(format!("gkl-bench-peer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/peer/fake_sbi_bench.py");
    let mut a = grid_args(&out, "sir,two_moons", "npe");
    a.extend(["--peer-python", "python3", "--peer-script"].map(String::from));
    a.push(fake.display().to_string());
    let o = Command::new(BIN).args(&a).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("peer failed") && err.contains("fake peer: no --inputs for two_moons"),
        "{err}"
    );

    let rows = journal(&out);
    let peer: Vec<_> = rows.iter().filter(|r| r["method"] == "sbi-npe").collect();
    assert_eq!(peer.len(), 1, "{rows:?}");
    let r = peer[0];
    assert_eq!(
        (r["task"].as_str(), r["samples"].as_u64()),
        (Some("sir"), Some(500))
    );
    // Prior draws as a posterior: the classifier must tell them from sir's reference.
    let c = r["c2st"].as_f64().unwrap();
    assert!(c > 0.9, "prior draws scored {c}");
    assert_eq!(r["train_s"].as_f64(), Some(1.5));

    // The peer trained on exactly what our sir cell trains on: budget 1000, seed 0.
    let cell = out.join("peers/sir/sbi-npe_n1000_s0");
    let mut inputs = gkl_gpu::io::read_npz(cell.join("inputs.npz")).unwrap();
    let sir = gkl_tasks::task_by_name("sir").unwrap();
    let theta = sir.sample_prior(1000, 0);
    let x = sir.simulate(&theta, 0x5349_4d55);
    let got = |a: gkl_gpu::io::Array| (a.shape, a.data);
    assert_eq!(got(inputs.take("theta").unwrap()), (vec![1000, 2], theta));
    assert_eq!(got(inputs.take("x").unwrap()), (vec![1000, 10], x));
    let x_o = sir.observation(1).unwrap().x;
    assert_eq!(got(inputs.take("x_o").unwrap()), (vec![1, 10], x_o));
    assert!(!out
        .join("peers/two_moons/sbi-npe_n1000_s0/inputs.npz")
        .exists());
    let _ = std::fs::remove_dir_all(&out);
}

/// `--unconstrained` reaches the cells' training: the saved model says so, and a cell trained
/// without it is trained again rather than reused (its profile differs). Without it, the space
/// is `train`'s default for the method and prior.
#[test]
fn bench_unconstrained_trains_in_the_priors_unconstrained_space() {
    let out = std::env::temp_dir().join(format!("gkl-bench-unconstrained-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let config = |m: &str| -> serde_json::Value {
        let p = out.join(format!("models/two_moons/{m}_K1_n1000_s0/config.json"));
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let mut a = args(&out);
    a.push("--train-only".into());
    let o = Command::new(BIN).args(&a).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(config("npe")["unconstrained"], false);

    a.push("--unconstrained".into());
    let o = Command::new(BIN).args(&a).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(
        err.matches("trained earlier with other settings").count(),
        2,
        "{err}"
    );
    for m in ["npe", "ratio"] {
        assert_eq!(config(m)["unconstrained"], true, "{m}");
    }

    // Without the option, `train`'s default: log space for the hybrid on sir's lognormal prior.
    let mut a = grid_args(&out, "sir", "npe,hybrid");
    a.push("--train-only".into());
    let o = Command::new(BIN).args(&a).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sir = |m: &str| -> serde_json::Value {
        let p = out.join(format!("models/sir/{m}_K1_n1000_s0/config.json"));
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    assert_eq!(sir("hybrid")["unconstrained"], true);
    assert_eq!(sir("npe")["unconstrained"], false);
    let _ = std::fs::remove_dir_all(&out);
}

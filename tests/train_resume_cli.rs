//! `gkl-gpu train` killed with SIGKILL part-way and continued with `--resume`: it finishes,
//! reaches the same model bits as an uninterrupted run, and leaves no half-written file in the
//! run directory. Also: `--resume` refuses other arguments, shard folders stream in blocks, and
//! an injected GPU fault ends with one line pointing at the saved checkpoint.

mod common;
use gkl_gpu::models::posterior::NpeModel;
use gkl_gpu::training::npe::EpochMetrics;
use gkl_gpu::training::Checkpoint;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gkl-gpu");

fn scratch(name: &str) -> common::Scratch {
    common::scratch("cli_resume", name)
}

fn gkl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run gkl-gpu")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const TRAIN: [&str; 16] = [
    "train",
    "--task",
    "two_moons",
    "--simulations",
    "3000",
    "--transforms",
    "2",
    "--hidden",
    "16",
    "--max-epochs",
    "150",
    "--patience",
    "1000",
    "--checkpoint-every",
    "3",
    "--seed",
];

/// Every file in the run directory parses; no temporary file is left.
fn check_run_dir(dir: &Path, epochs: usize) {
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.contains(".tmp-") && !name.contains(".old-"),
            "left over: {name}"
        );
    }
    let model = NpeModel::load(dir).expect("model directory");
    assert_eq!(model.dim_theta, 2);
    for f in ["config.json", "data_summary.json"] {
        let t = std::fs::read_to_string(dir.join(f)).unwrap();
        serde_json::from_str::<serde_json::Value>(&t).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let epochs_seen: Vec<usize> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<EpochMetrics>(l)
                .unwrap_or_else(|e| panic!("metrics line {l:?}: {e}"))
                .epoch
        })
        .collect();
    assert_eq!(
        epochs_seen,
        (1..=epochs).collect::<Vec<_>>(),
        "metrics.jsonl holds each epoch once, in order"
    );
    assert!(text.ends_with('\n'));
    let ck = Checkpoint::load(&Checkpoint::dir_of(dir)).expect("checkpoint");
    assert_eq!(ck.state.epoch, epochs);
}

#[test]
fn a_run_killed_with_sigkill_resumes_to_the_same_model_and_leaves_only_whole_files() {
    let root = scratch("kill");
    let (killed, whole) = (root.join("killed"), root.join("whole"));
    let k = killed.to_str().unwrap();
    // 2700 training rows in 5 blocks (at most 20 000 bytes each): every epoch visits them in an
    // order (and from a row) of its own, which the resumed run must repeat.
    let mut args: Vec<&str> = TRAIN.to_vec();
    args.extend(["5", "--block-bytes", "20000", "--out", k]);
    let mut child = Command::new(BIN)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for a checkpoint past the first one, then kill -9 (no chance to clean up).
    let t0 = Instant::now();
    let state = Checkpoint::dir_of(&killed).join("state.json");
    loop {
        if let Ok(ck) = Checkpoint::load(&Checkpoint::dir_of(&killed)) {
            if ck.state.epoch >= 6 {
                break;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before it could be killed");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no checkpoint after 300 s ({})",
            state.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(
        !killed.join("model.safetensors").exists(),
        "killed before the end"
    );
    let cut = Checkpoint::load(&Checkpoint::dir_of(&killed))
        .unwrap()
        .state
        .epoch;
    assert!(cut < 150, "killed at epoch {cut}");

    // Resume with no other argument: the stored ones are used.
    let r = gkl(&["train", "--resume", k], &[]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(stderr(&r).contains("resume:"), "{}", stderr(&r));
    check_run_dir(&killed, 150);

    // An uninterrupted run with the same arguments gives the same model bits.
    let mut args: Vec<&str> = TRAIN.to_vec();
    let w = whole.to_str().unwrap();
    args.extend(["5", "--block-bytes", "20000", "--out", w]);
    let u = gkl(&args, &[]);
    assert!(u.status.success(), "{}", stderr(&u));
    let (a, b) = (
        NpeModel::load(&killed).unwrap(),
        NpeModel::load(&whole).unwrap(),
    );
    assert_eq!(
        a.params.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.params.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );

    // A finished run resumed again has nothing left to do; more epochs may be asked for.
    let again = gkl(&["train", "--resume", k, "--max-epochs", "152"], &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    check_run_dir(&killed, 152);
}

#[test]
fn a_reparameterized_base_gradient_needs_the_hybrid() {
    let dir = scratch("base-gradient");
    for method in ["npe", "ratio"] {
        let o = gkl(
            &[
                "train",
                "--task",
                "two_moons",
                "--simulations",
                "100",
                "--method",
                method,
                "--base-gradient",
                "reparameterized",
                "--out",
                &dir.display().to_string(),
            ],
            &[],
        );
        assert!(!o.status.success());
        assert!(
            stderr(&o).contains("--base-gradient reparameterized needs --method hybrid"),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn resume_refuses_other_arguments_and_directories_without_a_checkpoint() {
    let root = scratch("refuse");
    let r = root.to_str().unwrap();
    let o = gkl(&["train", "--resume", r], &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no checkpoint to resume from"),
        "{}",
        stderr(&o)
    );
    let o = gkl(&["train", "--resume", r, "--seed", "3", "--lr", "0.1"], &[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("only --max-epochs and --checkpoint-every")
            && e.contains("--seed")
            && e.contains("--lr"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
}

#[test]
fn an_injected_gpu_fault_ends_with_one_line_and_the_run_resumes() {
    let dir = scratch("fault");
    let d = dir.to_str().unwrap();
    let base = [
        "train",
        "--task",
        "two_moons",
        "--simulations",
        "1000",
        "--transforms",
        "2",
        "--hidden",
        "16",
        "--max-epochs",
        "6",
        "--checkpoint-every",
        "0",
        "--out",
        d,
    ];
    let o = gkl(&base, &[("GKL_GPU_FAULT", "lost@4")]);
    assert!(!o.status.success());
    let e = stderr(&o);
    let last = e.trim().lines().last().unwrap();
    assert!(
        last.starts_with("error: GPU device lost")
            && last.contains("after epoch 3")
            && last.contains(&format!("--resume {d}")),
        "{e}"
    );
    let r = gkl(&["train", "--resume", d], &[]);
    assert!(r.status.success(), "{}", stderr(&r));
    check_run_dir(&dir, 6);
}

#[test]
fn a_shard_folder_is_streamed_in_blocks_and_its_summary_counts_the_rows() {
    let root = scratch("shards");
    let shards = root.join("shards");
    let s = format!("{}/", shards.display());
    for i in 0..3 {
        let o = gkl(
            &[
                "simulate",
                "--task",
                "two_moons",
                "--num-simulations",
                "3000",
                "--seed",
                "2",
                "--shard",
                &format!("{i}/3"),
                "--out",
                &s,
            ],
            &[],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let prior = root.join("prior.json");
    std::fs::write(
        &prior,
        r#"{"type": "box_uniform", "low": [-1, -1], "high": [1, 1]}"#,
    )
    .unwrap();
    let run = root.join("run");
    let o = gkl(
        &[
            "train",
            "--data",
            shards.to_str().unwrap(),
            "--prior",
            prior.to_str().unwrap(),
            "--transforms",
            "2",
            "--hidden",
            "16",
            "--max-epochs",
            "2",
            "--block-bytes",
            "20000",
            "--out",
            run.to_str().unwrap(),
        ],
        &[],
    );
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    // 2700 training rows of 32 bytes in blocks of at most 20 000 bytes (625 rows): 5 blocks.
    assert!(
        e.contains("streamed from disk")
            && e.contains("2700 for training in 5 GPU block(s), 300 for validation"),
        "{e}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("data_summary.json")).unwrap())
            .unwrap();
    assert_eq!(
        (summary["shards"].as_u64(), summary["rows_used"].as_u64()),
        (Some(3), Some(3000))
    );
    check_run_dir(&run, 2);
}

/// The space θ is modelled in, when not given: log space for the hybrid on sir's lognormal prior,
/// the prior's own space for npe there and for the hybrid on two_moons' box; `--unconstrained
/// false` and `--unconstrained` override it. The saved model and the checkpoint's stored
/// arguments (which a resumed run uses) both record the resolved choice.
#[test]
fn the_hybrid_on_a_lognormal_prior_trains_in_log_space_unless_told_otherwise() {
    let root = scratch("space");
    for (task, method, flag, want) in [
        ("sir", "hybrid", None, true),
        ("sir", "npe", None, false),
        ("two_moons", "hybrid", None, false),
        ("sir", "hybrid", Some("--unconstrained=false"), false),
        ("two_moons", "npe", Some("--unconstrained"), true),
    ] {
        let dir = root.join(format!("{task}-{method}-{}", flag.unwrap_or("default")));
        let d = dir.display().to_string();
        let mut args = vec![
            "train",
            "--task",
            task,
            "--method",
            method,
            "--simulations",
            "300",
            "--transforms",
            "1",
            "--hidden",
            "8",
            "--max-epochs",
            "1",
            "--out",
            &d,
        ];
        args.extend(flag);
        let o = gkl(&args, &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["unconstrained"], want, "{task} {method} {flag:?}");
        let ck = Checkpoint::load(&Checkpoint::dir_of(&dir)).unwrap();
        let stored = &ck.state.cli.as_ref().unwrap()["train_args"]["unconstrained"];
        assert_eq!(stored, want, "{task} {method} {flag:?}: stored {stored}");
    }
}

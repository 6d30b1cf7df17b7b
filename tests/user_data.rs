//! End to end through the `gkl-gpu` binary: training on the user's own simulations (an .npz and a
//! prior file) and on a Python simulator run through --simulator-cmd, then sampling; and every
//! kind of bad input ending in a one-line error with a non-zero exit, never a panic.
//! GPU work is kept small (tiny flows, few epochs): lavapipe is slow.

mod common;
use gkl_gpu::io::{read_npy_f64, write_npy_f64, write_npz, NpyData};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_gkl-gpu");
const TINY: &[&str] = &[
    "--transforms",
    "2",
    "--hidden",
    "16",
    "--bins",
    "4",
    "--batch-size",
    "100",
];

fn scratch(tag: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("user_data-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn gkl(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "gkl-gpu failed: {err}");
    err
}

/// The error line of a failed run: exactly one line besides the adapter line, no panic.
fn fails(dir: &Path, args: &[&str]) -> String {
    let o = gkl(dir, args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "expected a failure: {args:?}\n{err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "panic: {err}"
    );
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("adapter: ") && !l.starts_with("data: "))
        .collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    println!("| {} | `{}` |", args.join(" "), lines[0]);
    lines[0].to_string()
}

fn prior_box(dir: &Path) {
    fs::write(
        dir.join("prior.json"),
        r#"{"type": "box_uniform", "low": [-1, -1], "high": [1, 1]}"#,
    )
    .unwrap();
}

/// x = θ + noise, with every 50th row NaN: 1000 rows, f32.
fn sims(dir: &Path) {
    let n = 1000;
    let mut theta = vec![];
    let mut x = vec![];
    for i in 0..n {
        let (a, b) = (
            ((i * 37) % 200) as f32 / 100.0 - 0.995,
            ((i * 91) % 200) as f32 / 100.0 - 0.995,
        );
        theta.extend([a, b]);
        let e = ((i * 13) % 7) as f32 / 70.0 - 0.05;
        x.extend(if i % 50 == 0 {
            [f32::NAN, b]
        } else {
            [a + e, b - e]
        });
    }
    write_npz(
        dir.join("sims.npz"),
        &[
            ("theta", &[n, 2], NpyData::F32(&theta)),
            ("x", &[n, 2], NpyData::F32(&x)),
        ],
    )
    .unwrap();
}

#[test]
fn train_from_npz_and_prior_then_sample() {
    let d = scratch("npz");
    prior_box(&d);
    sims(&d);
    let err = ok(gkl(
        &d,
        &[
            &[
                "train",
                "--data",
                "sims.npz",
                "--prior",
                "prior.json",
                "--out",
                "run",
                "--max-epochs",
                "3",
            ],
            TINY,
        ]
        .concat(),
    ));
    assert!(
        err.contains("data: 1000 simulations from sims.npz"),
        "{err}"
    );
    assert!(
        err.contains("dropped 20 with NaN or Inf in x (20 NaN, 0 Inf), training on 980"),
        "{err}"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&fs::read(d.join("run/data_summary.json")).unwrap()).unwrap();
    assert_eq!(summary["rows_read"], 1000);
    assert_eq!(summary["rows_dropped"], 20);
    assert_eq!(summary["rows_used"], 980);
    assert_eq!(summary["invalid_policy"], "drop");
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(d.join("run/config.json")).unwrap()).unwrap();
    assert!(config["task"].is_null());
    assert_eq!(
        fs::read_to_string(d.join("run/metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        3
    );
    ok(gkl(
        &d,
        &[
            "sample",
            "--model",
            "run",
            "--x",
            "0.2,-0.3",
            "--num-samples",
            "500",
            "--out",
            "s.npy",
        ],
    ));
    let s = read_npy_f64(d.join("s.npy")).unwrap();
    assert_eq!(s.shape, vec![500, 2]);
    assert!(
        s.data.iter().all(|v| (-1.0..=1.0).contains(v)),
        "samples outside the prior's support"
    );
    // A model without a task has no built-in observations.
    let e = fails(
        &d,
        &[
            "sample",
            "--model",
            "run",
            "--observation",
            "1",
            "--out",
            "s2.npy",
        ],
    );
    assert!(
        e.contains("--observation needs a benchmark task; give --x or --observation-file instead"),
        "{e}"
    );
    // The same data refused under --invalid error.
    let e = fails(
        &d,
        &[
            "train",
            "--data",
            "sims.npz",
            "--prior",
            "prior.json",
            "--out",
            "r2",
            "--invalid",
            "error",
        ],
    );
    assert_eq!(e, "error: sims.npz: 20 of 1000 simulations have NaN or Inf in x (first: row 0); rejected by --invalid error");
}

/// examples/simulators/gaussian_sim.py: θ ~ N(0, I₂), x = θ + N(0, 0.5² I₂); the exact posterior at
/// x_o is N(0.8 x_o, 0.2 I₂). A small budget must already put the samples' mean and spread near it.
#[test]
fn python_simulator_trains_and_samples_near_the_exact_posterior() {
    if !common::python_with_numpy("the Python simulator test") {
        return;
    }
    let d = scratch("python");
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/simulators");
    let cmd = format!("python3 {}", ex.join("gaussian_sim.py").display());
    let prior = ex.join("gaussian_prior.json");
    let err = ok(gkl(
        &d,
        &[
            &[
                "train",
                "--simulator-cmd",
                &cmd,
                "--prior",
                prior.to_str().unwrap(),
                "--simulations",
                "3000",
                "--simulator-workers",
                "2",
                "--simulator-batch",
                "500",
                "--out",
                "run",
                "--max-epochs",
                "60",
                "--lr",
                "2e-3",
            ][..],
            TINY,
        ]
        .concat(),
    ));
    assert!(
        err.contains(&format!("data: 3000 simulations from simulator `{cmd}`")),
        "{err}"
    );
    ok(gkl(
        &d,
        &[
            "sample",
            "--model",
            "run",
            "--x",
            "1.0,-0.5",
            "--num-samples",
            "4000",
            "--out",
            "s.npy",
        ],
    ));
    let s = read_npy_f64(d.join("s.npy")).unwrap();
    for (j, want) in [0.8, -0.4].iter().enumerate() {
        let col: Vec<f64> = s.data.iter().skip(j).step_by(2).copied().collect();
        let mean = col.iter().sum::<f64>() / col.len() as f64;
        let sd = (col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / col.len() as f64).sqrt();
        assert!((mean - want).abs() < 0.2, "θ{j}: mean {mean}, exact {want}");
        assert!((0.3..0.65).contains(&sd), "θ{j}: sd {sd}, exact 0.447");
    }
}

#[test]
fn bad_inputs_end_in_one_line_errors() {
    let d = scratch("bad");
    prior_box(&d);
    let t: Vec<f64> = (0..20).map(|i| i as f64 / 40.0).collect();
    write_npy_f64(d.join("theta.npy"), &[10, 2], &t).unwrap();
    write_npy_f64(d.join("x.npy"), &[10, 2], &t).unwrap();
    write_npy_f64(d.join("x9.npy"), &[9, 2], &t[..18]).unwrap();
    let full = fs::read(d.join("x.npy")).unwrap();
    fs::write(d.join("truncated.npy"), &full[..full.len() - 30]).unwrap();
    write_npz(d.join("nox.npz"), &[("theta", &[10, 2], NpyData::F64(&t))]).unwrap();
    write_npy_f64(
        d.join("theta3.npy"),
        &[5, 3],
        &(0..15).map(|i| i as f64 / 30.0).collect::<Vec<_>>(),
    )
    .unwrap();
    write_npy_f64(d.join("x5.npy"), &[5, 2], &t[..10]).unwrap();
    let mut outside = t.clone();
    outside[7] = 1.5;
    write_npy_f64(d.join("theta_out.npy"), &[10, 2], &outside).unwrap();
    fs::write(
        d.join("beta.json"),
        r#"{"type": "beta", "a": [1], "b": [1]}"#,
    )
    .unwrap();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/npy");
    fs::copy(corpus.join("complex_dtype.npy"), d.join("complex.npy")).unwrap();
    fs::copy(corpus.join("shape_2e40_elements.npy"), d.join("huge.npy")).unwrap();
    let sim = format!(
        "python3 {}",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/simulators/misbehave.py")
            .display()
    );
    let base = [
        "train",
        "--prior",
        "prior.json",
        "--out",
        "r",
        "--max-epochs",
        "1",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let run = |extra: &[&str]| {
        let v = with(extra);
        fails(&d, &v.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--theta", "theta.npy", "--x", "truncated.npy"], "truncated.npy: truncated: header says 10×2 f64 (160 bytes), file has 130"),
        (vec!["--theta", "theta.npy", "--x", "complex.npy"], "complex.npy: unsupported dtype '<c16'"),
        (vec!["--data", "nox.npz"], "nox.npz: array 'x' missing (available: theta)"),
        (vec!["--theta", "theta.npy", "--x", "x9.npy"], "x9.npy: x has 9 rows but theta (theta.npy) has 10"),
        (vec!["--theta", "theta3.npy", "--x", "x5.npy"], "theta3.npy: theta has 3 columns but the prior (prior.json) has dimension 2"),
        (vec!["--theta", "theta_out.npy", "--x", "x.npy"], "theta_out.npy: theta row 3 [0.15, 1.5] lies outside the support of the prior (prior.json)"),
        (vec!["--theta", "theta.npy", "--x", "huge.npy"], "huge.npy: truncated: header says 1048576×1048576 f64 (8796093022208 bytes), file has 64"),
        (vec!["--data", "missing.npz"], "missing.npz: cannot open: No such file or directory"),
    ];
    for (extra, want) in &cases {
        let e = run(extra);
        assert!(e.starts_with(&format!("error: {want}")), "{extra:?}: {e}");
    }
    let e = fails(
        &d,
        &[
            "train",
            "--data",
            "nox.npz",
            "--prior",
            "beta.json",
            "--out",
            "r",
        ],
    );
    assert!(
        e.starts_with("error: beta.json: invalid prior: JSON: unknown variant `beta`"),
        "{e}"
    );
    let e = fails(&d, &["train", "--data", "x.npy", "--out", "r"]);
    assert_eq!(
        e,
        "error: training from files needs --prior (the prior θ is drawn from; JSON, see --help)"
    );
    let e = fails(&d, &["train", "--out", "r"]);
    assert!(e.starts_with("error: nothing to train on"), "{e}");
    if Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        for (mode, want) in [
            (
                "crash",
                "exited with status 1 instead of answering a batch of 10 rows (stderr: ",
            ),
            (
                "garbage",
                "answered garbage: stdout is not framed .npy messages: it starts with 'hello fr'",
            ),
            ("rows", "answered 9 rows for a batch of 10"),
            (
                "hang",
                "did not answer a batch of 10 rows within 1 s (--simulator-timeout); killed it",
            ),
        ] {
            let cmd = format!("{sim} {mode}");
            // Only the hanging program is meant to meet the timeout; the others get time to
            // start Python on a loaded machine.
            let timeout = if mode == "hang" { "1" } else { "120" };
            let e = run(&[
                "--simulator-cmd",
                &cmd,
                "--simulations",
                "30",
                "--simulator-batch",
                "10",
                "--simulator-timeout",
                timeout,
            ]);
            assert!(
                e.starts_with(&format!("error: simulator `{cmd}`: worker 0 ")) && e.contains(want),
                "{e}"
            );
        }
    } else {
        eprintln!("NOTICE: python3 not found; skipping the misbehaving-simulator cases");
    }
}

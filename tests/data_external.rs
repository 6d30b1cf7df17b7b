//! External simulators through `ExternalSimulator` (no GPU): answers come back in θ's order from
//! several workers; every way a child can misbehave ends in a one-line error with its stderr
//! tail. Needs `python3` (standard library only); skipped with a notice where it is absent.

use gkl_gpu::data::{ExternalConfig, ExternalSimulator};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn python() -> bool {
    let ok = Command::new("python3")
        .arg("-c")
        .arg("import struct")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("NOTICE: python3 not found; skipping this external-simulator test");
    }
    ok
}

fn script() -> String {
    format!(
        "python3 {}",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/simulators/misbehave.py")
            .display()
    )
}

fn sim(mode: &str, workers: usize, batch: usize, timeout_s: f64) -> ExternalSimulator {
    ExternalSimulator::new(
        ExternalConfig {
            command: format!("{} {mode}", script()),
            workers,
            batch,
            timeout: Duration::from_secs_f64(timeout_s),
            seed: 0,
        },
        2,
    )
}

fn theta(rows: usize) -> Vec<f64> {
    (0..rows * 2).map(|i| i as f64 * 0.25 - 3.0).collect()
}

#[test]
fn answers_come_back_in_order_from_several_workers() {
    if !python() {
        return;
    }
    let s = sim("ok", 3, 7, 60.0);
    let t = theta(100);
    assert_eq!(s.simulate(&t).unwrap(), t); // the identity simulator
    assert_eq!(s.dim_x(), Some(2));
    // The same children serve a second call.
    let t2 = theta(20);
    assert_eq!(s.simulate(&t2).unwrap(), t2);
}

fn failure(mode: &str, timeout_s: f64) -> String {
    let s = sim(mode, 2, 10, timeout_s);
    let e = s.simulate(&theta(50)).unwrap_err().to_string();
    assert!(!e.contains('\n'), "not one line: {e}");
    assert!(
        e.starts_with(&format!("simulator `{} {mode}`: ", script())),
        "{e}"
    );
    // Once failed, the simulator stays failed.
    assert_eq!(s.simulate(&theta(5)).unwrap_err().to_string(), e);
    e
}

#[test]
fn misbehaving_children_end_the_run_with_their_stderr() {
    if !python() {
        return;
    }
    let e = failure("crash", 60.0);
    assert!(
        e.contains("exited with status 1 instead of answering a batch of 10 rows"),
        "{e}"
    );
    assert!(
        e.contains("RuntimeError: simulated crash in batch 1"),
        "{e}"
    );
    let e = failure("garbage", 60.0);
    assert!(
        e.contains(
            "answered garbage: stdout is not framed .npy messages: it starts with 'hello fr'"
        ),
        "{e}"
    );
    assert!(e.contains("(stderr: misbehave: batch 0 of 10 rows)"), "{e}");
    let e = failure("rows", 60.0);
    assert!(e.contains("answered 9 rows for a batch of 10"), "{e}");
    let e = failure("width", 60.0);
    assert!(
        e.contains("answered 3 columns; the first answer had 2"),
        "{e}"
    );
    let e = failure("exit0", 60.0);
    assert!(
        e.contains("exited with status 0 instead of answering"),
        "{e}"
    );
    let t = Instant::now();
    let e = failure("hang", 1.0);
    assert!(
        e.contains("did not answer a batch of 10 rows within 1 s (--simulator-timeout); killed it"),
        "{e}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "the timeout was not honoured"
    );
}

#[test]
fn a_command_that_does_not_exist() {
    let s = ExternalSimulator::new(
        ExternalConfig {
            command: "/nonexistent/simulator".into(),
            workers: 1,
            batch: 5,
            timeout: Duration::from_secs(30),
            seed: 0,
        },
        1,
    );
    let e = s.simulate(&[0.0; 3]).unwrap_err().to_string();
    assert!(
        e.starts_with("simulator `/nonexistent/simulator`: worker 0 exited with status 127"),
        "{e}"
    );
    assert!(e.contains("not found") || e.contains("No such file"), "{e}");
}

#[test]
fn nan_rows_come_back_as_they_are() {
    if !python() {
        return;
    }
    let x = sim("nan", 1, 100, 60.0).simulate(&theta(28)).unwrap();
    let bad = x
        .chunks(2)
        .filter(|r| r.iter().any(|v| !v.is_finite()))
        .count();
    assert_eq!(bad, 7 + 3); // rows 0, 4, ..., 24 NaN; rows 7, 14, 21 Inf
}

/// The Rust example simulator (built by `cargo test` with the other examples) speaks the framing.
#[test]
fn the_rust_example_simulator() {
    let exe: PathBuf = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/rust_simulator");
    if !exe.exists() {
        eprintln!("NOTICE: {} not built; skipping", exe.display());
        return;
    }
    let s = ExternalSimulator::new(
        ExternalConfig {
            command: exe.display().to_string(),
            workers: 2,
            batch: 16,
            timeout: Duration::from_secs(60),
            seed: 3,
        },
        2,
    );
    let t: Vec<f64> = (0..50).flat_map(|i| [1.0 + i as f64 / 50.0, 0.5]).collect();
    let x = s.simulate(&t).unwrap();
    assert_eq!((x.len(), s.dim_x()), (250, Some(5)));
    for (r, xr) in x.chunks(5).enumerate() {
        let a = t[2 * r];
        for (k, v) in xr.iter().enumerate() {
            let mean = a * (0.5 * (k + 1) as f64).sin();
            assert!((v - mean).abs() < 0.6, "row {r}: {v} vs {mean}");
        }
    }
}

//! Shared test setup: one device per test binary, chosen like the CLI does (env honoured).
#![allow(dead_code)]

use gkl_gpu::runtime::{AdapterOptions, GpuContext};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::OnceLock;

pub fn ctx() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| {
        let opts = AdapterOptions::default()
            .with_env()
            .expect("bad WGPU_* environment");
        let ctx =
            GpuContext::new(&opts).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"));
        eprintln!("test adapter: {}", ctx.summary().one_line());
        ctx
    })
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn randn(rng: &mut StdRng, n: usize, scale: f64) -> Vec<f64> {
    (0..n)
        .map(|_| (rng.random::<f64>() * 2.0 - 1.0) * scale)
        .collect()
}

/// Largest |a − b| / (atol + rtol·|b|); ≤ 1 means within tolerance.
pub fn max_rel_err(a: &[f64], b: &[f64], atol: f64, rtol: f64) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (atol + rtol * y.abs()))
        .fold(0.0, f64::max)
}

#[track_caller]
pub fn assert_close(what: &str, got: &[f64], want: &[f64], atol: f64, rtol: f64) {
    let e = max_rel_err(got, want, atol, rtol);
    if e > 1.0 || e.is_nan() {
        let (i, _) = got
            .iter()
            .zip(want)
            .enumerate()
            .map(|(i, (x, y))| (i, (x - y).abs() / (atol + rtol * y.abs())))
            .fold(
                (0, 0.0),
                |m, (i, v)| if v > m.1 || v.is_nan() { (i, v) } else { m },
            );
        panic!(
            "{what}: mismatch at {i}: got {} want {} (err ratio {e})",
            got[i], want[i]
        );
    }
}

/// A fresh directory under Cargo's per-target scratch space (`target/tmp`), removed when the test
/// that made it ends, pass or fail (set GKL_KEEP_SCRATCH=1 to keep it for a look).
pub struct Scratch(std::path::PathBuf);

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("GKL_KEEP_SCRATCH").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `Scratch` named after the test file (`file`) and the test (`tag`), unique per process.
pub fn scratch(file: &str, tag: &str) -> Scratch {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{file}-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

/// Whether `python3` with numpy runs here; if not, says which test is skipped (`bash .ci/run`
/// installs both).
pub fn python_with_numpy(skipped: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "NOTICE: python3 with numpy not found; skipping {skipped} (bash .ci/run installs it)"
        );
    }
    ok
}

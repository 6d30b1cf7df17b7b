//! C2ST on the CPU: for one seed it gives the GPU backend's fold accuracies (same split, draws and
//! training, up to float rounding); chance level on one distribution, near 1 on separated ones;
//! `gkl-gpu c2st --device cpu` scores .npy files without any GPU adapter.

mod common;
use common::*;
use gkl_gpu::evaluation::c2st::{c2st, c2st_cpu, C2stConfig, C2stDevice, C2stResult, Samples};
use gkl_gpu::io::write_npy_f64;
use rand::Rng;
use rand_distr::StandardNormal;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_gkl-gpu");

fn gauss(seed: u64, n: usize, d: usize, shift: f64) -> Vec<f64> {
    let mut g = rng(seed);
    (0..n * d)
        .map(|i| g.sample::<f64, _>(StandardNormal) + if i % d == 0 { shift } else { 0.0 })
        .collect()
}

fn on_cpu(a: &[f64], b: &[f64], d: usize, cfg: &C2stConfig) -> C2stResult {
    let r = c2st_cpu(
        &Samples {
            data: a,
            rows: a.len() / d,
            dim: d,
        },
        &Samples {
            data: b,
            rows: b.len() / d,
            dim: d,
        },
        cfg,
        |_, _| {},
    )
    .unwrap();
    assert_eq!(r.device, C2stDevice::Cpu);
    assert_eq!(r.fold_accuracies.len(), cfg.folds);
    r
}

/// Both backends on one pair and seed: every fold must stop at the same epoch with the same
/// held-out accuracy. Training is cut short (float rounding differences grow over hundreds of
/// Adam steps); 0.002 is less than one held-out sample of these folds.
fn backends_agree(a: &[f64], b: &[f64], d: usize, seed: u64, max_epochs: usize) {
    let cfg = C2stConfig {
        seed,
        max_epochs,
        device: C2stDevice::Gpu,
        ..Default::default()
    };
    let cpu = on_cpu(a, b, d, &cfg);
    let gpu = c2st(
        ctx(),
        &Samples {
            data: a,
            rows: a.len() / d,
            dim: d,
        },
        &Samples {
            data: b,
            rows: b.len() / d,
            dim: d,
        },
        &cfg,
        |_, _| {},
    )
    .unwrap();
    assert_eq!(gpu.device, C2stDevice::Gpu);
    assert_eq!(
        cpu.fold_epochs, gpu.fold_epochs,
        "epochs at which the folds stopped"
    );
    for (f, (c, g)) in cpu
        .fold_accuracies
        .iter()
        .zip(&gpu.fold_accuracies)
        .enumerate()
    {
        assert!(
            (c - g).abs() <= 0.002,
            "fold {f}: cpu {c} gpu {g} (cpu {:?}, gpu {:?})",
            cpu.fold_accuracies,
            gpu.fold_accuracies
        );
    }
    // Not a degenerate pass: the classifiers learned something different per fold.
    assert!(
        cpu.fold_accuracies.iter().any(|&v| v > 0.55),
        "{:?}",
        cpu.fold_accuracies
    );
}

#[test]
fn cpu_and_gpu_agree_on_every_fold() {
    let (n, d) = (600, 2);
    backends_agree(&gauss(11, n, d, 0.0), &gauss(12, n, d, 0.7), d, 1, 30);
}

#[test]
fn cpu_and_gpu_agree_with_a_partial_last_batch_and_unequal_sets() {
    // 1037 rows: folds of 208 and 207, training sets of 829 and 830 (a 5th, partial batch).
    let d = 3;
    backends_agree(&gauss(13, 600, d, 0.0), &gauss(14, 437, d, 0.8), d, 7, 20);
}

#[test]
fn cpu_same_distribution_scores_near_chance() {
    let (n, d) = (2000, 2);
    let r = on_cpu(
        &gauss(1, n, d, 0.0),
        &gauss(2, n, d, 0.0),
        d,
        &C2stConfig::default(),
    );
    assert!(
        r.fold_epochs.iter().all(|&e| e > 1 && e < 10_000),
        "fold epochs {:?}",
        r.fold_epochs
    );
    assert!(
        (0.44..=0.56).contains(&r.accuracy),
        "c2st of one distribution against itself: {}",
        r.accuracy
    );
}

#[test]
fn cpu_separated_distributions_score_near_one() {
    let (n, d) = (2000, 3);
    let r = on_cpu(
        &gauss(3, n, d, 0.0),
        &gauss(4, n, d, 6.0),
        d,
        &C2stConfig::default(),
    );
    assert!(
        r.accuracy > 0.98,
        "c2st of well-separated samples: {}",
        r.accuracy
    );
}

#[test]
fn cpu_mismatched_dimensions_are_an_error() {
    let a = gauss(7, 20, 2, 0.0);
    let b = gauss(8, 20, 3, 0.0);
    let r = c2st_cpu(
        &Samples {
            data: &a,
            rows: 20,
            dim: 2,
        },
        &Samples {
            data: &b[..60],
            rows: 20,
            dim: 3,
        },
        &C2stConfig::default(),
        |_, _| {},
    );
    assert!(r.is_err());
}

#[test]
fn cli_device_cpu_scores_npy_files_without_a_gpu() {
    let dir = std::env::temp_dir().join(format!("gkl-c2st-cpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (n, d) = (500, 2);
    let (a, b) = (dir.join("a.npy"), dir.join("b.npy"));
    write_npy_f64(&a, &[n, d], &gauss(21, n, d, 0.0)).unwrap();
    write_npy_f64(&b, &[n, d], &gauss(22, n, d, 6.0)).unwrap();
    // No adapter of this backend exists here, so only a run that never opens the GPU succeeds.
    let run = |device: &str| {
        Command::new(BIN)
            .env("WGPU_BACKEND", "dx12")
            .args(["c2st", "--json", "--device", device])
            .arg(&a)
            .arg(&b)
            .output()
            .unwrap()
    };
    let gpu = run("gpu");
    assert!(
        !gpu.status.success(),
        "the GPU run should find no dx12 adapter here"
    );
    let o = run("cpu");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    assert_eq!(v["device"], "cpu");
    assert_eq!(v["fold_accuracies"].as_array().unwrap().len(), 5);
    let acc = v["accuracy"].as_f64().unwrap();
    assert!(acc > 0.98, "separated samples: {acc}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_c2st_device_cpu_is_recorded_in_the_journal() {
    let out = std::env::temp_dir().join(format!("gkl-bench-c2st-cpu-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = Command::new(BIN)
        .args([
            "bench",
            "--tasks",
            "two_moons",
            "--methods",
            "npe",
            "--budgets",
            "1000",
            "--observations",
            "1",
            "--num-samples",
            "500",
        ])
        .args([
            "--quick",
            "--max-epochs",
            "2",
            "--no-plots",
            "--c2st-device",
            "cpu",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let journal = std::fs::read_to_string(out.join("journal.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{journal}");
    assert_eq!(rows[0]["c2st_device"], "cpu");
    // The row names the adapter that trained and sampled it (here the software adapter).
    let adapter = rows[0]["adapter"].as_str().unwrap_or_default();
    assert!(
        adapter.contains("vulkan") || adapter.contains("metal") || adapter.contains("dx12"),
        "{journal}"
    );
    assert!(
        rows[0]["c2st"]
            .as_f64()
            .is_some_and(|c| (0.3..=1.0).contains(&c)),
        "{journal}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

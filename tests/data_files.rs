//! Training data from files, without a GPU: .npz / .npy pairs in f32 and f64, C and Fortran order;
//! shard folders; prior files; and the one-line errors for each kind of bad input.

mod common;
use gkl_gpu::data::{
    check_against_prior, load_npy_pair, load_npz, load_path, prior_from_bytes, read_prior,
    InvalidPolicy, ShardSet, Simulations,
};
use gkl_gpu::io::{write_npy_f32, write_npy_f64, write_npz, NpyData};
use gkl_tasks::Prior;
use std::fs;
use std::path::Path;
use std::process::Command;

fn scratch(tag: &str) -> common::Scratch {
    common::scratch("data_files", tag)
}

/// A Fortran-order f64 .npy of a rows × cols matrix given row-major.
fn fortran_npy(path: &Path, rows: usize, cols: usize, row_major: &[f64]) {
    let header = format!("{{'descr': '<f8', 'fortran_order': True, 'shape': ({rows}, {cols}), }}");
    let pad = 64 - (10 + header.len() + 1) % 64;
    let header = format!("{header}{}\n", " ".repeat(pad));
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((header.len() as u16).to_le_bytes());
    b.extend(header.as_bytes());
    for c in 0..cols {
        for r in 0..rows {
            b.extend(row_major[r * cols + c].to_le_bytes());
        }
    }
    fs::write(path, b).unwrap();
}

fn box2() -> Prior {
    prior_from_bytes(
        br#"{"type": "box_uniform", "low": [-1, -1], "high": [1, 1]}"#,
        "p.json",
    )
    .unwrap()
}

#[test]
fn npz_and_npy_pairs_in_every_layout_load_the_same() {
    let d = scratch("layouts");
    let theta: Vec<f64> = (0..10).map(|i| (i as f64 - 5.0) / 6.0).collect(); // 5 × 2
    let x: Vec<f64> = (0..15).map(|i| i as f64 * 0.5).collect(); // 5 × 3
    let tf: Vec<f32> = theta.iter().map(|&v| v as f32).collect();
    let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    write_npz(
        d.join("f64.npz"),
        &[
            ("theta", &[5, 2], NpyData::F64(&theta)),
            ("x", &[5, 3], NpyData::F64(&x)),
        ],
    )
    .unwrap();
    write_npz(
        d.join("f32.npz"),
        &[
            ("theta", &[5, 2], NpyData::F32(&tf)),
            ("x", &[5, 3], NpyData::F32(&xf)),
        ],
    )
    .unwrap();
    write_npy_f64(d.join("theta.npy"), &[5, 2], &theta).unwrap();
    write_npy_f32(d.join("x32.npy"), &[5, 3], &xf).unwrap();
    fortran_npy(&d.join("theta_f.npy"), 5, 2, &theta);
    fortran_npy(&d.join("x_f.npy"), 5, 3, &x);
    let want = Simulations::new(theta.clone(), x.clone(), 2, 3).unwrap();
    assert_eq!(load_npz(d.join("f64.npz")).unwrap(), want);
    let s32 = load_npz(d.join("f32.npz")).unwrap();
    assert_eq!((s32.dim_theta, s32.dim_x, s32.rows()), (2, 3, 5));
    assert!(s32
        .theta
        .iter()
        .zip(&theta)
        .all(|(a, b)| (a - b).abs() < 1e-6));
    assert_eq!(
        load_npy_pair(d.join("theta.npy"), d.join("x32.npy"))
            .unwrap()
            .x,
        x
    );
    assert_eq!(
        load_npy_pair(d.join("theta_f.npy"), d.join("x_f.npy")).unwrap(),
        want
    );
    // 1-D θ is one column.
    write_npy_f64(d.join("t1.npy"), &[5], &theta[..5]).unwrap();
    let s = load_npy_pair(d.join("t1.npy"), d.join("x_f.npy")).unwrap();
    assert_eq!((s.dim_theta, s.rows()), (1, 5));
}

fn err<T: std::fmt::Debug>(r: Result<T, gkl_gpu::data::DataError>) -> String {
    let e = r.unwrap_err().to_string();
    assert!(!e.contains('\n'), "not one line: {e}");
    e
}

#[test]
fn bad_files_are_one_line_errors_naming_the_file() {
    let d = scratch("bad");
    let t = vec![0.5; 8];
    write_npz(d.join("nox.npz"), &[("theta", &[4, 2], NpyData::F64(&t))]).unwrap();
    assert_eq!(
        err(load_npz(d.join("nox.npz"))),
        format!(
            "{}: array 'x' missing (available: theta)",
            d.join("nox.npz").display()
        )
    );
    write_npz(
        d.join("rows.npz"),
        &[
            ("theta", &[4, 2], NpyData::F64(&t)),
            ("x", &[3, 2], NpyData::F64(&t[..6])),
        ],
    )
    .unwrap();
    assert_eq!(
        err(load_npz(d.join("rows.npz"))),
        format!(
            "{}: theta has 4 rows but x has 3",
            d.join("rows.npz").display()
        )
    );
    write_npz(
        d.join("3d.npz"),
        &[
            ("theta", &[2, 2, 2], NpyData::F64(&t)),
            ("x", &[4, 2], NpyData::F64(&t)),
        ],
    )
    .unwrap();
    assert!(err(load_npz(d.join("3d.npz")))
        .ends_with("theta must be 2-D (rows × columns) or 1-D, got shape 2×2×2"));
    fs::write(
        d.join("trunc.npz"),
        &fs::read(d.join("rows.npz")).unwrap()[..100],
    )
    .unwrap();
    assert!(err(load_npz(d.join("trunc.npz"))).starts_with(&format!(
        "{}: bad .npz archive",
        d.join("trunc.npz").display()
    )));
    // A dtype we do not read.
    let mut c16 = b"\x93NUMPY\x01\x00".to_vec();
    let h = "{'descr': '<c16', 'fortran_order': False, 'shape': (4, 2), }          \n";
    c16.extend((h.len() as u16).to_le_bytes());
    c16.extend(h.as_bytes());
    c16.extend(vec![0u8; 128]);
    fs::write(d.join("c16.npy"), c16).unwrap();
    write_npy_f64(d.join("t.npy"), &[4, 2], &t).unwrap();
    assert!(
        err(load_npy_pair(d.join("t.npy"), d.join("c16.npy"))).contains("unsupported dtype '<c16'")
    );
    write_npy_f64(d.join("x3.npy"), &[3, 2], &t[..6]).unwrap();
    assert_eq!(
        err(load_npy_pair(d.join("t.npy"), d.join("x3.npy"))),
        format!(
            "{}: x has 3 rows but theta ({}) has 4",
            d.join("x3.npy").display(),
            d.join("t.npy").display()
        )
    );
    // Prior checks: dimension and support.
    let mut s = Simulations::new(vec![0.5; 6], vec![0.0; 2], 3, 1).unwrap();
    assert_eq!(
        err(check_against_prior(
            &mut s,
            &box2(),
            Path::new("sims.npz"),
            "prior.json"
        )),
        "sims.npz: theta has 3 columns but the prior (prior.json) has dimension 2"
    );
    let mut s = Simulations::new(vec![0.5, 0.5, 1.5, 0.0, 0.0, -7.0], vec![0.0; 3], 2, 1).unwrap();
    assert_eq!(
        err(check_against_prior(&mut s, &box2(), Path::new("sims.npz"), "prior.json")),
        "sims.npz: theta row 1 [1.5, 0] and 1 other row(s) lies outside the support of the prior (prior.json)"
    );
    // float32 rounding just past a bound is clamped onto it, not rejected.
    let mut s = Simulations::new(vec![1.0 + 1e-8, -1.0 - 1e-8], vec![0.0], 2, 1).unwrap();
    assert_eq!(
        check_against_prior(&mut s, &box2(), Path::new("s"), "p").unwrap(),
        2
    );
    assert_eq!(s.theta, vec![1.0, -1.0]);
}

#[test]
fn invalid_rows_dropped_or_refused() {
    let mut s = Simulations::new(
        vec![0.1, 0.2, 0.3],
        vec![1.0, f64::NAN, f64::NEG_INFINITY],
        1,
        1,
    )
    .unwrap();
    let mut e = s.clone();
    let c = s
        .apply_invalid_policy(InvalidPolicy::Drop, "sims.npz")
        .unwrap();
    assert_eq!((c.rows_with_nan, c.rows_with_inf, s.rows()), (1, 1, 1));
    assert_eq!(s.theta, vec![0.1]);
    assert_eq!(
        err(e.apply_invalid_policy(InvalidPolicy::Error, "sims.npz")),
        "sims.npz: 2 of 3 simulations have NaN or Inf in x (first: row 1); rejected by --invalid error"
    );
}

#[test]
fn prior_files() {
    let d = scratch("prior");
    for (json, dim) in [
        (
            r#"{"type": "box_uniform", "low": [-1, 0], "high": [1, 2]}"#,
            2,
        ),
        (
            r#"{"type": "gaussian", "mean": [0, 0, 1], "cov": [[1, 0, 0], [0, 2, 0.5], [0, 0.5, 1]]}"#,
            3,
        ),
        (r#"{"type": "lognormal", "loc": [-0.9], "scale": [0.5]}"#, 1),
        (
            r#"{"type": "independent", "components": [{"type": "uniform", "low": 0, "high": 1}, {"type": "normal", "loc": 0, "scale": 1}]}"#,
            2,
        ),
    ] {
        fs::write(d.join("p.json"), json).unwrap();
        assert_eq!(read_prior(d.join("p.json")).unwrap().dim(), dim);
    }
    let p = d.join("bad.json");
    for (json, want) in [
        (r#"{"type": "box_uniform", "low": [1], "high": [0]}"#, "invalid prior: box_uniform: need low < high"),
        (r#"{"type": "gaussian", "mean": [0, 0], "cov": [[1, 2], [2, 1]]}"#, "cov is not positive definite"),
        (r#"{"type": "beta", "a": 1}"#, "unknown variant `beta`"),
        (r#"{"type": "box_uniform", "low": [0], "high": [1], "extra": 1}"#, "unknown field `extra`"),
        ("", "EOF while parsing"),
        ("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "JSON"),
    ] {
        fs::write(&p, json).unwrap();
        let e = err(read_prior(&p));
        assert!(e.starts_with(&format!("{}: ", p.display())) && e.contains(want), "{e}");
    }
    let e = err(read_prior(d.join("missing.json")));
    assert!(e.contains("missing.json: cannot open"), "{e}");
}

#[test]
fn shard_folders() {
    let d = scratch("shards");
    let rows = [3usize, 4, 2];
    let mut all_t = vec![];
    for (i, &n) in rows.iter().enumerate() {
        let t: Vec<f64> = (0..n * 2).map(|k| (i * 100 + k) as f64 / 1000.0).collect();
        let x: Vec<f64> = t.iter().map(|v| v * 2.0).collect();
        all_t.extend(t.clone());
        write_npz(
            d.join(format!("shard-{i:05}-of-00003.npz")),
            &[
                ("theta", &[n, 2], NpyData::F64(&t)),
                ("x", &[n, 2], NpyData::F64(&x)),
            ],
        )
        .unwrap();
    }
    let set = ShardSet::open(&d).unwrap();
    assert_eq!(
        (set.len(), set.rows(), set.dim_theta(), set.dim_x()),
        (3, 9, 2, 2)
    );
    let got: Vec<usize> = set.iter().map(|r| r.unwrap().1.rows()).collect();
    assert_eq!(got, rows);
    let (s, k) = load_path(&d).unwrap();
    assert_eq!((s.theta.clone(), k), (all_t, Some(3)));
    // .npy pairs sit beside .npz shards.
    write_npy_f64(d.join("z-theta.npy"), &[1, 2], &[0.0, 0.0]).unwrap();
    write_npy_f64(d.join("z-x.npy"), &[1, 2], &[1.0, 1.0]).unwrap();
    assert_eq!(ShardSet::open(&d).unwrap().rows(), 10);
    // A shard of another width is named.
    write_npz(
        d.join("zz.npz"),
        &[
            ("theta", &[1, 3], NpyData::F64(&[0.0; 3])),
            ("x", &[1, 2], NpyData::F64(&[0.0; 2])),
        ],
    )
    .unwrap();
    let e = err(ShardSet::open(&d));
    assert!(
        e.starts_with(&format!(
            "{}: theta × x widths 3 × 2 differ from 2 × 2",
            d.join("zz.npz").display()
        )),
        "{e}"
    );
    fs::remove_file(d.join("zz.npz")).unwrap();
    fs::write(d.join("lonely.npy"), b"").unwrap();
    assert!(err(ShardSet::open(&d)).contains("lonely.npy: an .npy shard must be a θ file"));
    let empty = scratch("noshards");
    assert!(err(ShardSet::open(&empty))
        .ends_with("no shards here (.npz files with arrays theta and x, or theta/x .npy pairs)"));
}

/// `gkl-gpu simulate --shard i/n` for every i, concatenated, equals the unsharded file.
#[test]
fn shards_concatenate_to_the_unsharded_run() {
    let d = scratch("simshards");
    let bin = env!("CARGO_BIN_EXE_gkl-gpu");
    let run = |extra: &[&str]| {
        let o = Command::new(bin)
            .args([
                "simulate",
                "--task",
                "gaussian_mixture",
                "--num-simulations",
                "1001",
            ])
            .args(if extra.contains(&"--seed") {
                &[][..]
            } else {
                &["--seed", "11"][..]
            })
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&["--out", d.join("all.npz").to_str().unwrap()]);
    for i in 0..4 {
        run(&[
            "--shard",
            &format!("{i}/4"),
            "--out",
            d.join("parts").to_str().unwrap(),
        ]);
    }
    let whole = load_npz(d.join("all.npz")).unwrap();
    let set = ShardSet::open(d.join("parts")).unwrap();
    assert_eq!(
        set.shards().iter().map(|s| s.rows).collect::<Vec<_>>(),
        vec![250, 250, 250, 251]
    );
    assert!(set.shards()[0]
        .files
        .path()
        .ends_with("shard-00000-of-00004.npz"));
    let (joined, _) = load_path(d.join("parts")).unwrap();
    assert_eq!(joined, whole);
    // Another seed is another sequence.
    run(&[
        "--seed",
        "12",
        "--out",
        d.join("other.npz").to_str().unwrap(),
    ]);
    assert_ne!(load_npz(d.join("other.npz")).unwrap().theta, whole.theta);
}

#[test]
fn the_high_dimensional_gaussian_linear_is_a_task_of_every_command() {
    // `gaussian_linear_d<d>` used to be known to `bench` alone; simulate (and train, sample,
    // reference, log-prob) resolve task names through the same function now.
    let d = scratch("highdim");
    let bin = env!("CARGO_BIN_EXE_gkl-gpu");
    let out = d.join("gl16.npz");
    let o = Command::new(bin)
        .args([
            "simulate",
            "--task",
            "gaussian_linear_d16",
            "--num-simulations",
            "50",
            "--seed",
            "3",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = load_npz(&out).unwrap();
    assert_eq!((s.dim_theta, s.dim_x, s.rows()), (16, 16, 50));
    let bad = Command::new(bin)
        .args([
            "simulate",
            "--task",
            "gaussian_linear_dx",
            "--num-simulations",
            "5",
            "--out",
        ])
        .arg(d.join("bad.npz"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let e = String::from_utf8_lossy(&bad.stderr);
    assert!(
        e.contains("gaussian_linear_dx: expected gaussian_linear_d<d>"),
        "{e}"
    );
}

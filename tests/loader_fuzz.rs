//! Property tests of the loaders of untrusted files that `io_robustness.rs` does not cover: prior
//! JSON, model directories (config.json + model.safetensors), simulation files and simulator
//! answers. Thousands of random, truncated and bit-flipped inputs derived from valid files; each
//! load must return Ok or Err — never panic — and the whole run must stay under an allocation cap
//! (a header claiming 2⁴⁰ elements is rejected before anything that size is allocated).
//! Every file under `tests/corpus/<loader>/` (inputs that once broke a loader, and hostile
//! headers) is loaded too.

mod common;
use gkl_gpu::data::{load_npz, prior_from_bytes, ExternalConfig, ExternalSimulator};
use gkl_gpu::io::{npy_bytes_f64, read_npy_bytes, read_npz_bytes, write_npz, NpyData};
use gkl_gpu::kernels::Activation;
use gkl_gpu::models::flow::{FlowConfig, FlowKind};
use gkl_gpu::models::posterior::{NpeModel, FORMAT_VERSION};
use gkl_gpu::training::npe::NpeSettings;
use gkl_gpu::training::preprocess::{Preprocess, Standardize};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::alloc::{GlobalAlloc, Layout, System};
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts live heap bytes and the largest single request, so tests can assert a cap.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LARGEST.fetch_max(new, Ordering::Relaxed);
        if new > l.size() {
            LIVE.fetch_add(new - l.size(), Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
        }
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static A: Counting = Counting;

/// No single allocation in these tests may exceed this (the inputs are all under 1 MiB).
const CAP: usize = 64 << 20;

fn assert_cap() {
    let big = LARGEST.load(Ordering::Relaxed);
    assert!(
        big <= CAP,
        "an allocation of {big} bytes happened (cap {CAP})"
    );
}

fn scratch(tag: &str) -> common::Scratch {
    common::scratch("loader_fuzz", tag)
}

fn corpus(loader: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(loader);
    let mut v: Vec<_> = fs::read_dir(&dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.into_iter()
        .map(|p| (p.clone(), fs::read(&p).unwrap()))
        .collect()
}

/// Variants of `valid`: truncations, bit flips, byte overwrites, insertions, splices of
/// interesting values.
fn mutants(valid: &[u8], n: usize, rng: &mut StdRng) -> Vec<Vec<u8>> {
    let mut out = vec![];
    for i in 0..n {
        let mut b = valid.to_vec();
        match i % 5 {
            0 => b.truncate(rng.random_range(0..=valid.len())),
            1 => {
                for _ in 0..rng.random_range(1..4) {
                    if !b.is_empty() {
                        let k = rng.random_range(0..b.len());
                        b[k] ^= 1 << rng.random_range(0..8);
                    }
                }
            }
            2 => {
                if !b.is_empty() {
                    let k = rng.random_range(0..b.len());
                    b[k] = rng.random();
                }
            }
            3 => {
                let k = rng.random_range(0..=b.len());
                let junk: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
                b.splice(k..k, junk);
            }
            _ => {
                // Overwrite a run of digits with a huge number (dimensions, lengths, offsets).
                let text = [
                    "99999999999999999999",
                    "1099511627776",
                    "-1",
                    "0",
                    "4294967296",
                    "1e308",
                    "NaN",
                ];
                let t = text[rng.random_range(0..text.len())].as_bytes();
                if let Some(k) = b
                    .iter()
                    .position(|c| c.is_ascii_digit())
                    .map(|f| f + rng.random_range(0..b.len() - f))
                {
                    let end = (k + rng.random_range(1..6)).min(b.len());
                    b.splice(k..end, t.iter().copied());
                }
            }
        }
        out.push(b);
    }
    out
}

fn never_panics<T>(what: &str, input: &[u8], f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => panic!(
            "{what} panicked on input ({} bytes): {:?}",
            input.len(),
            String::from_utf8_lossy(&input[..input.len().min(300)])
        ),
    }
}

#[test]
fn prior_json_never_panics() {
    let valid = [
        r#"{"type": "box_uniform", "low": [-1, -1, 0], "high": [1, 1, 5]}"#,
        r#"{"type": "gaussian", "mean": [0, 0], "cov": [[1, 0.5], [0.5, 2]]}"#,
        r#"{"type": "lognormal", "loc": [-0.9, -2.1], "scale": [0.5, 0.2]}"#,
        r#"{"type": "independent", "components": [{"type": "uniform", "low": 0, "high": 1}, {"type": "normal", "loc": 0, "scale": 1}, {"type": "lognormal", "loc": 0, "scale": 0.5}]}"#,
    ];
    let mut rng = StdRng::seed_from_u64(1);
    let (mut ok, mut err) = (0, 0);
    for v in valid {
        for m in mutants(v.as_bytes(), 1500, &mut rng) {
            match never_panics("prior JSON", &m, || prior_from_bytes(&m, "p.json")) {
                Ok(p) => {
                    ok += 1;
                    // A prior that loads is usable: sampling and support checks do not panic.
                    never_panics("prior use", &m, || {
                        let s = p.sample(3, &mut StdRng::seed_from_u64(0));
                        s.chunks(p.dim()).all(|r| p.in_support(r))
                    });
                }
                Err(e) => {
                    err += 1;
                    let s = e.to_string();
                    assert!(s.starts_with("p.json: ") && !s.contains('\n'), "{s}");
                }
            }
        }
    }
    assert!(ok > 50 && err > 1000, "ok {ok}, err {err}");
    for (path, bytes) in corpus("prior") {
        let r = never_panics("prior corpus", &bytes, || prior_from_bytes(&bytes, &path));
        assert!(r.is_err(), "{} should be rejected", path.display());
    }
    assert_cap();
}

/// A small valid model directory, built without a GPU.
fn model_dir(dir: &Path) {
    let prior = prior_from_bytes(
        br#"{"type": "box_uniform", "low": [-1, -1], "high": [1, 1]}"#,
        "p",
    )
    .unwrap();
    let flow = FlowConfig {
        kind: FlowKind::Nsf,
        dim: 2,
        context_dim: 3,
        transforms: 2,
        hidden: 8,
        hidden_layers: 1,
        bins: 4,
        tail_bound: 3.0,
        act: Activation::Relu,
        context_every_dim: true,
        spline_identity_init: true,
    };
    let align = 64;
    let params = vec![0.01f32; flow.arena_len(align)];
    let settings = NpeSettings {
        method: gkl_gpu::training::Method::Npe,
        ratio: None,
        contrastive: 1,
        base_epochs: 0,
        base_gradient: Default::default(),
        support_mask: false,
        flow: flow.clone(),
        embedding: None,
        batch_size: 10,
        lr: 1e-3,
        max_epochs: 1,
        patience: 1,
        validation_fraction: 0.1,
        clip_norm: 5.0,
        weight_decay: 0.0,
        lr_patience: 0,
        lr_factor: 0.5,
        lr_restore_best: false,
        seed: 0,
        unconstrained: false,
    };
    let m = NpeModel {
        format_version: FORMAT_VERSION,
        method: gkl_gpu::training::Method::Npe,
        task: None,
        dim_theta: 2,
        dim_x: 3,
        flow: Some(flow),
        embedding: None,
        ratio: None,
        arena_align: align,
        embedding_offset: None,
        flow_offset: Some(0),
        ratio_offset: None,
        preprocess: Preprocess {
            prior,
            unconstrained: false,
            theta: Standardize {
                mean: vec![0.0; 2],
                std: vec![1.0; 2],
            },
            x: Standardize {
                mean: vec![0.0; 3],
                std: vec![1.0; 3],
            },
        },
        params,
        settings,
    };
    m.save(dir).unwrap();
}

#[test]
fn model_directories_never_panic() {
    let d = scratch("model");
    let valid = d.join("valid");
    model_dir(&valid);
    NpeModel::load(&valid).unwrap();
    let config = fs::read(valid.join("config.json")).unwrap();
    let weights = fs::read(valid.join("model.safetensors")).unwrap();
    let m = d.join("m");
    fs::create_dir_all(&m).unwrap();
    let mut rng = StdRng::seed_from_u64(2);
    let (mut ok, mut err) = (0, 0);
    let mut check = |c: &[u8], w: &[u8]| {
        fs::write(m.join("config.json"), c).unwrap();
        fs::write(m.join("model.safetensors"), w).unwrap();
        match never_panics("NpeModel::load", c, || NpeModel::load(&m)) {
            Ok(model) => {
                ok += 1;
                // What loads is consistent: the flow fits in the arena it claims.
                assert!(
                    model.flow_offset.unwrap()
                        + model.flow.as_ref().unwrap().arena_len(model.arena_align)
                        <= model.params.len()
                );
            }
            Err(e) => {
                err += 1;
                let s = e.to_string();
                assert!(!s.contains('\n') && s.len() < 1000, "{s}");
            }
        }
    };
    for c in mutants(&config, 2000, &mut rng) {
        check(&c, &weights);
    }
    for w in mutants(&weights, 1000, &mut rng) {
        check(&config, &w);
    }
    assert!(ok > 20 && err > 1000, "ok {ok}, err {err}");
    // Corpus: each entry is a config.json that must be rejected (beside valid weights).
    for (path, bytes) in corpus("model") {
        fs::write(m.join("config.json"), &bytes).unwrap();
        fs::write(m.join("model.safetensors"), &weights).unwrap();
        let r = never_panics("model corpus", &bytes, || NpeModel::load(&m));
        assert!(r.is_err(), "{} should be rejected", path.display());
    }
    assert_cap();
}

#[test]
fn simulation_files_never_panic() {
    let d = scratch("sims");
    let t: Vec<f64> = (0..40).map(|i| i as f64 / 40.0).collect();
    let x: Vec<f32> = (0..60).map(|i| i as f32).collect();
    let p = d.join("s.npz");
    write_npz(
        &p,
        &[
            ("theta", &[20, 2], NpyData::F64(&t)),
            ("x", &[20, 3], NpyData::F32(&x)),
        ],
    )
    .unwrap();
    let valid = fs::read(&p).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    for m in mutants(&valid, 2000, &mut rng) {
        fs::write(&p, &m).unwrap();
        if let Err(e) = never_panics("load_npz", &m, || load_npz(&p)) {
            assert!(!e.to_string().contains('\n'));
        }
    }
    for (path, bytes) in corpus("npy") {
        let r = never_panics("npy corpus", &bytes, || read_npy_bytes(&bytes, &path));
        assert!(r.is_err(), "{} should be rejected", path.display());
    }
    for (path, bytes) in corpus("npz") {
        let r = never_panics("npz corpus", &bytes, || read_npz_bytes(&bytes, &path));
        assert!(r.is_err(), "{} should be rejected", path.display());
    }
    assert_cap();
}

/// A header claiming 2⁴⁰ elements: rejected from the bytes present, nothing that size allocated.
#[test]
fn huge_headers_are_rejected_before_allocating() {
    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1048576, 1048576), }";
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((header.len() as u16 + 1).to_le_bytes());
    b.extend(header.as_bytes());
    b.push(b'\n');
    b.extend([0u8; 64]);
    let e = read_npy_bytes(&b, "huge.npy").unwrap_err().to_string();
    assert!(
        e.starts_with("huge.npy: truncated: header says 1048576×1048576 f64 (8796093022208 bytes)"),
        "{e}"
    );
    let mut s = std::io::Cursor::new(&b);
    assert!(gkl_gpu::io::read_npy_stream(&mut s, "stdin").is_err());
    // The same as a simulator's answer, framed with an honest length.
    let mut framed = (b.len() as u64).to_le_bytes().to_vec();
    framed.extend(&b);
    let d = scratch("frame");
    fs::write(d.join("answer.bin"), &framed).unwrap();
    let sim = ExternalSimulator::new(
        ExternalConfig {
            command: format!("cat {} ; sleep 5", d.join("answer.bin").display()),
            workers: 1,
            batch: 4,
            timeout: std::time::Duration::from_secs(30),
            seed: 0,
        },
        1,
    );
    let e = sim.simulate(&[0.0; 4]).unwrap_err().to_string();
    assert!(
        e.contains("is not a valid .npy (truncated: header says 1048576×1048576 f64"),
        "{e}"
    );
    // Corpus of framed answers: each must be refused.
    for (path, bytes) in corpus("frame") {
        fs::write(d.join("c.bin"), &bytes).unwrap();
        let sim = ExternalSimulator::new(
            ExternalConfig {
                command: format!("cat {}", d.join("c.bin").display()),
                workers: 1,
                batch: 4,
                timeout: std::time::Duration::from_secs(30),
                seed: 0,
            },
            1,
        );
        let r = never_panics("frame corpus", &bytes, || sim.simulate(&[0.0; 4]));
        assert!(r.is_err(), "{} should be refused", path.display());
    }
    let _ = npy_bytes_f64;
    assert_cap();
}

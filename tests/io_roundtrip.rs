//! File-level round trips through the writers and readers of `gkl_gpu::io`.

mod common;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use gkl_gpu::io::{self, NpyData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn scratch(tag: &str) -> common::Scratch {
    common::scratch("io_roundtrip", tag)
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const SHAPES: &[&[usize]] = &[
    &[],
    &[1],
    &[7],
    &[0],
    &[3, 5],
    &[1, 1],
    &[0, 4],
    &[2, 3, 4],
    &[5, 1, 2],
];

#[test]
fn npy_f64_and_f32_all_shapes() {
    let dir = scratch("npy");
    let mut rng = StdRng::seed_from_u64(7);
    for (si, shape) in SHAPES.iter().enumerate() {
        let n: usize = shape.iter().product();
        let d64: Vec<f64> = (0..n).map(|_| rng.random_range(-1e6..1e6)).collect();
        let d32: Vec<f32> = (0..n).map(|_| rng.random::<f32>() - 0.5).collect();

        let p = dir.join(format!("a{si}.npy"));
        io::write_npy_f64(&p, shape, &d64).unwrap();
        let a = io::read_npy_f64(&p).unwrap();
        assert_eq!(a.shape, shape.to_vec());
        assert_eq!(a.data, d64, "bit-exact f64 round trip for {shape:?}");

        io::write_npy_f32(&p, shape, &d32).unwrap();
        let a = io::read_npy_f64(&p).unwrap();
        assert_eq!(a.shape, shape.to_vec());
        assert_eq!(a.to_f32(), d32, "bit-exact f32 round trip for {shape:?}");

        // The in-memory form is byte-identical to the file.
        assert_eq!(
            io::npy_bytes_f32(shape, &d32).unwrap(),
            fs::read(&p).unwrap()
        );
    }
    // Only the final files exist: no temp files left behind.
    assert_eq!(file_names(&dir).len(), SHAPES.len());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn special_float_values_survive() {
    let d = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        f64::MIN_POSITIVE,
        5e-324,
    ];
    let a = io::read_npy_bytes(&io::npy_bytes_f64(&[6], &d).unwrap(), "mem").unwrap();
    for (x, y) in a.data.iter().zip(d.iter()) {
        assert_eq!(x.to_bits(), y.to_bits());
    }
}

#[test]
fn shape_mismatch_writes_nothing() {
    let dir = scratch("mismatch");
    let p = dir.join("bad.npy");
    let e = io::write_npy_f64(&p, &[2, 3], &[1.0; 5])
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("bad.npy: shape 2×3 has 6 elements but 5 values were given"),
        "{e}"
    );
    assert!(file_names(&dir).is_empty());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn overwrite_replaces_atomically() {
    let dir = scratch("overwrite");
    let p = dir.join("x.npy");
    io::write_npy_f64(&p, &[2], &[1.0, 2.0]).unwrap();
    io::write_npy_f64(&p, &[3], &[4.0, 5.0, 6.0]).unwrap();
    assert_eq!(io::read_npy_f64(&p).unwrap().data, vec![4.0, 5.0, 6.0]);
    assert_eq!(file_names(&dir), vec!["x.npy"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn npz_round_trip_mixed() {
    let dir = scratch("npz");
    let theta: Vec<f64> = (0..20).map(|i| (i as f64).sin()).collect();
    let x: Vec<f32> = (0..24).map(|i| i as f32 / 3.0).collect();
    let w: Vec<f64> = vec![];
    let entries: Vec<io::NpzEntry<'_>> = vec![
        ("theta", &[10, 2], NpyData::F64(&theta)),
        ("x", &[2, 3, 4], NpyData::F32(&x)),
        ("empty", &[0], NpyData::F64(&w)),
    ];
    for (i, compressed) in [false, true].into_iter().enumerate() {
        let p = dir.join(format!("d{i}.npz"));
        if compressed {
            io::write_npz_compressed(&p, &entries).unwrap();
        } else {
            io::write_npz(&p, &entries).unwrap();
        }
        let npz = io::read_npz(&p).unwrap();
        assert_eq!(npz.len(), 3);
        assert_eq!(npz.get("theta").unwrap().data, theta);
        assert_eq!(npz.get("theta").unwrap().shape, vec![10, 2]);
        assert_eq!(npz.get("x").unwrap().to_f32(), x);
        assert_eq!(npz.get("empty").unwrap().shape, vec![0]);
        // Each member is a plain .npy: it reads back identically through the
        // in-memory reader too.
        let bytes = fs::read(&p).unwrap();
        assert_eq!(
            io::read_npz_bytes(&bytes, "mem.npz").unwrap().arrays(),
            npz.arrays()
        );
    }
    // Deflate must actually compress a compressible array.
    let zeros = vec![0.0f64; 100_000];
    let (ps, pc) = (dir.join("s.npz"), dir.join("c.npz"));
    io::write_npz(&ps, &[("z", &[100_000], NpyData::F64(&zeros))]).unwrap();
    io::write_npz_compressed(&pc, &[("z", &[100_000], NpyData::F64(&zeros))]).unwrap();
    let (ls, lc) = (
        fs::metadata(&ps).unwrap().len(),
        fs::metadata(&pc).unwrap().len(),
    );
    assert!(
        ls > 800_000 && lc < 10_000,
        "stored {ls} bytes, deflated {lc} bytes"
    );
    assert_eq!(io::read_npz(&pc).unwrap().get("z").unwrap().data, zeros);
    fs::remove_dir_all(&dir).unwrap();
}

/// Rows r of a row-major [n, d] array (or n values).
fn rows_slice(data: &[f64], d: usize, r: std::ops::Range<usize>) -> Vec<f64> {
    data[r.start * d..r.end * d].to_vec()
}

#[test]
fn npy_and_npz_rows_read_only_the_rows_asked_for() {
    let dir = scratch("rows");
    let (n, d) = (37usize, 3usize);
    let m: Vec<f64> = (0..n * d).map(|i| i as f64 * 0.5 - 3.0).collect();
    let v: Vec<f64> = (0..n).map(|i| i as f64 * 1.25).collect();
    let c64 = dir.join("c64.npy");
    let c32 = dir.join("c32.npy");
    let one = dir.join("one.npy");
    let fort = dir.join("fortran.npy");
    io::write_npy_f64(&c64, &[n, d], &m).unwrap();
    io::write_npy_f32(
        &c32,
        &[n, d],
        &m.iter().map(|&x| x as f32).collect::<Vec<_>>(),
    )
    .unwrap();
    io::write_npy_f64(&one, &[n], &v).unwrap();
    // Fortran order: the column-major bytes of the same matrix under a patched header.
    let cols: Vec<f64> = (0..d)
        .flat_map(|j| (0..n).map(move |i| (i, j)))
        .map(|(i, j)| m[i * d + j])
        .collect();
    let mut bytes = io::npy_bytes_f64(&[n, d], &cols).unwrap();
    let key = b"'fortran_order': False, ";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap();
    bytes[at..at + 24].copy_from_slice(b"'fortran_order': True,  ");
    fs::write(&fort, &bytes).unwrap();
    assert_eq!(
        io::read_npy_f64(&fort).unwrap().data,
        m,
        "the patched file reads as the matrix"
    );
    let (sm, sv) = ([n, d], [n]);
    let entries: Vec<io::NpzEntry<'_>> = vec![
        ("theta", &sm, NpyData::F64(&m)),
        ("x", &sv, NpyData::F64(&v)),
    ];
    let (zs, zc) = (dir.join("stored.npz"), dir.join("deflated.npz"));
    io::write_npz(&zs, &entries).unwrap();
    io::write_npz_compressed(&zc, &entries).unwrap();
    for r in [0..0, 0..n, 5..6, 10..37, 36..37, 0..1, 17..30] {
        for p in [&c64, &c32, &fort] {
            let a = io::read_npy_rows(p, r.clone()).unwrap();
            assert_eq!(a.shape, vec![r.len(), d], "{} {r:?}", p.display());
            assert_eq!(
                a.data,
                rows_slice(&m, d, r.clone()),
                "{} {r:?}",
                p.display()
            );
        }
        let a = io::read_npy_rows(&one, r.clone()).unwrap();
        assert_eq!(
            (a.shape, a.data),
            (vec![r.len()], rows_slice(&v, 1, r.clone()))
        );
        for z in [&zs, &zc] {
            let a = io::read_npz_rows(z, &["theta", "x"], r.clone()).unwrap();
            assert_eq!(
                a[0].data,
                rows_slice(&m, d, r.clone()),
                "{} {r:?}",
                z.display()
            );
            assert_eq!(
                a[1].data,
                rows_slice(&v, 1, r.clone()),
                "{} {r:?}",
                z.display()
            );
        }
    }
    // Rows past the end, a missing array, a file cut short: errors that say so.
    let e = io::read_npy_rows(&c64, 30..38).unwrap_err().to_string();
    assert!(
        e.contains("c64.npy") && e.contains("rows 30..38") && e.contains("37×3"),
        "{e}"
    );
    let e = io::read_npz_rows(&zs, &["theta", "y"], 0..2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("'y'") && e.contains("theta, x"), "{e}");
    let full = fs::read(&c64).unwrap();
    let cut = dir.join("cut.npy");
    fs::write(&cut, &full[..full.len() - 10]).unwrap();
    assert_eq!(
        io::read_npy_rows(&cut, 0..5).unwrap().data,
        rows_slice(&m, d, 0..5)
    );
    let e = io::read_npy_rows(&cut, 30..37).unwrap_err().to_string();
    assert!(
        e.contains("cut.npy") && e.contains("ends before row 37"),
        "{e}"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn npy_stream_framing() {
    // Several messages back to back, as on a pipe.
    let mut buf = Vec::new();
    io::write_npy_to(&mut buf, "stdout", &[2, 2], &[1.0f64, 2.0, 3.0, 4.0][..]).unwrap();
    io::write_npy_to(&mut buf, "stdout", &[3], &[5.0f32, 6.0, 7.0][..]).unwrap();
    let mut r = std::io::Cursor::new(buf);
    let a = io::read_npy_from(&mut r, "stdin").unwrap();
    assert_eq!((a.shape, a.data), (vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]));
    let b = io::read_npy_from(&mut r, "stdin").unwrap();
    assert_eq!((b.shape, b.data), (vec![3], vec![5.0, 6.0, 7.0]));
    assert!(io::read_npy_stream(&mut r, "stdin").unwrap().is_none());
}

#[test]
fn safetensors_round_trip() {
    let dir = scratch("st");
    let p = dir.join("model.safetensors");
    let w1: Vec<f32> = (0..60).map(|i| i as f32 * 0.01 - 0.3).collect();
    let b1: Vec<f32> = vec![0.5; 6];
    let scalar = [2.0f32];
    let meta = BTreeMap::from([
        ("format".to_string(), "gkl-gpu/1".to_string()),
        ("task".to_string(), "two_moons".to_string()),
    ]);
    io::write_safetensors(
        &p,
        &[
            ("layer0.w", &[6, 10], &w1),
            ("layer0.b", &[6], &b1),
            ("temp", &[], &scalar),
        ],
        &meta,
    )
    .unwrap();
    let w = io::read_safetensors(&p).unwrap();
    assert_eq!(w.metadata, meta);
    assert_eq!(w.tensor("layer0.w", &[6, 10]).unwrap(), &w1[..]);
    assert_eq!(w.tensor("layer0.b", &[6]).unwrap(), &b1[..]);
    assert_eq!(w.tensor("temp", &[]).unwrap(), &scalar[..]);
    assert_eq!(w.meta("task").unwrap(), "two_moons");
    let e = w.tensor("layer0.b", &[1, 6]).unwrap_err().to_string();
    assert!(
        e.ends_with("model.safetensors: tensor 'layer0.b' has shape 6, expected 1×6"),
        "{e}"
    );

    // No metadata is fine as well.
    io::write_safetensors(&p, &[("a", &[1], &scalar)], &BTreeMap::new()).unwrap();
    assert!(io::read_safetensors(&p).unwrap().metadata.is_empty());
    assert_eq!(file_names(&dir), vec!["model.safetensors"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn model_directory_written_atomically() {
    let dir = scratch("modeldir");
    let m = dir.join("model");
    let w = [1.0f32, 2.0];
    io::atomic_write_dir(&m, |tmp| {
        assert!(tmp
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("model.tmp-"));
        io::write_safetensors(
            tmp.join("weights.safetensors"),
            &[("w", &[2], &w)],
            &BTreeMap::new(),
        )?;
        io::atomic_write_bytes(tmp.join("config.json"), b"{}")
    })
    .unwrap();
    assert_eq!(file_names(&m), vec!["config.json", "weights.safetensors"]);
    assert_eq!(file_names(&dir), vec!["model"]);
    // A failing rewrite leaves the previous model intact.
    let r = io::atomic_write_dir(&m, |tmp| {
        io::atomic_write_bytes(tmp.join("config.json"), b"{\"v\":2}")?;
        io::read_npy_f64(tmp.join("does-not-exist.npy")).map(|_| ())
    });
    assert!(r
        .unwrap_err()
        .to_string()
        .contains("does-not-exist.npy: cannot read"));
    assert_eq!(fs::read(m.join("config.json")).unwrap(), b"{}");
    assert_eq!(file_names(&dir), vec!["model"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn samples_written_as_npy_read_back() {
    let dir = scratch("samples");
    let p = dir.join("posterior.npy");
    let d: Vec<f32> = (0..30).map(|i| i as f32).collect();
    io::write_npy_f32(&p, &[10, 3], &d).unwrap();
    let s = io::read_samples(&p).unwrap();
    assert_eq!(s.shape(), [10, 3]);
    assert_eq!(s.row(9), &[27.0, 28.0, 29.0]);
    // A multi-stream .csv.bz2 (as pbzip2 writes) decodes completely.
    use std::io::Write;
    let mut out = Vec::new();
    for part in ["parameter_1\n1.5\n", "2.5\n"] {
        let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        enc.write_all(part.as_bytes()).unwrap();
        out.extend(enc.finish().unwrap());
    }
    let pz = dir.join("s.csv.bz2");
    io::atomic_write_bytes(&pz, &out).unwrap();
    let s = io::read_samples(&pz).unwrap();
    assert_eq!(s.data, vec![1.5, 2.5]);
    fs::remove_dir_all(&dir).unwrap();
}

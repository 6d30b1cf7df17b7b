//! Reads the NumPy-made fixtures in tests/data/io/ (see make_fixtures.py for
//! how they were made and the formulas their values follow).

use std::path::PathBuf;

use gkl_gpu::io::{self, Array};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/io")
        .join(name)
}

/// Element (i, j) = 10 i + j + 0.25, C order.
fn grid2(rows: usize, cols: usize) -> Vec<f64> {
    let mut v = Vec::new();
    for i in 0..rows {
        for j in 0..cols {
            v.push((10 * i + j) as f64 + 0.25);
        }
    }
    v
}

/// Element (i, j, k) = 100 i + 10 j + k + 0.5, C order.
fn grid3(a: usize, b: usize, c: usize) -> Vec<f64> {
    let mut v = Vec::new();
    for i in 0..a {
        for j in 0..b {
            for k in 0..c {
                v.push((100 * i + 10 * j + k) as f64 + 0.5);
            }
        }
    }
    v
}

fn read(name: &str) -> Array {
    io::read_npy_f64(fixture(name)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn float_c_order_2d() {
    for name in [
        "f64_c_2d.npy",
        "f32_c_2d.npy",
        "f64_v2_2d.npy",
        "f64_v3_2d.npy",
    ] {
        let a = read(name);
        assert_eq!(a.shape, vec![4, 3], "{name}");
        assert_eq!(a.data, grid2(4, 3), "{name}");
    }
}

#[test]
fn fortran_order_2d_and_3d() {
    let a = read("f64_f_2d.npy");
    assert_eq!(a.shape, vec![4, 3]);
    assert_eq!(a.data, grid2(4, 3));
    let a = read("f64_f_3d.npy");
    assert_eq!(a.shape, vec![2, 3, 4]);
    assert_eq!(a.data, grid3(2, 3, 4));
}

#[test]
fn c_order_3d_f32() {
    let a = read("f32_c_3d.npy");
    assert_eq!(a.shape, vec![2, 3, 4]);
    assert_eq!(a.data, grid3(2, 3, 4));
}

#[test]
fn one_d_and_other_dtypes() {
    let minus2: Vec<f64> = (0..5).map(|i| i as f64 - 2.0).collect();
    for name in ["f32_1d.npy", "f64_1d.npy", "i4_1d.npy", "f8_be_1d.npy"] {
        let a = read(name);
        assert_eq!(a.shape, vec![5], "{name}");
        assert_eq!(a.data, minus2, "{name}");
    }
    let a = read("i8_2d.npy");
    assert_eq!(a.shape, vec![2, 3]);
    assert_eq!(a.data, vec![0.0, 1.0, 2.0, 10.0, 11.0, 12.0]);
    assert_eq!(read("u1_1d.npy").data, vec![0.0, 1.0, 255.0]);
    assert_eq!(read("b1_1d.npy").data, vec![1.0, 0.0, 1.0]);
}

#[test]
fn scalar_and_empty() {
    let a = read("f64_scalar.npy");
    assert!(a.shape.is_empty());
    assert_eq!(a.data, vec![3.5]);
    let a = read("f64_empty.npy");
    assert_eq!(a.shape, vec![0, 3]);
    assert!(a.data.is_empty());
}

#[test]
fn npz_stored_and_deflated() {
    for name in ["stored.npz", "deflate.npz"] {
        let npz = io::read_npz(fixture(name)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            npz.names().collect::<Vec<_>>(),
            vec!["theta", "x"],
            "{name}"
        );
        let theta = npz.get("theta").unwrap();
        assert_eq!(theta.shape, vec![4, 3]);
        assert_eq!(theta.data, grid2(4, 3));
        // deflate.npz stores x in Fortran order.
        let x = npz.get("x").unwrap();
        assert_eq!(x.shape, vec![2, 3, 4]);
        assert_eq!(x.data, grid3(2, 3, 4), "{name}");
        let e = npz.get("phi").unwrap_err().to_string();
        assert!(
            e.ends_with(&format!(
                "{name}: array 'phi' missing (available: theta, x)"
            )),
            "{e}"
        );
    }
}

#[test]
fn sbibm_csv_and_bz2_samples() {
    let mut want = Vec::new();
    for i in 0..6 {
        let v = (10 * i) as f64 + 0.25;
        want.push(v);
        want.push(-(v + 1.0));
    }
    for name in ["samples.csv", "samples.csv.bz2"] {
        let s = io::read_samples(fixture(name)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.rows, s.cols), (6, 2), "{name}");
        assert_eq!(s.data, want, "{name}");
        assert_eq!(s.row(5), &[50.25, -51.25]);
    }
    // A .npy sample file reads the same way.
    let s = io::read_samples(fixture("f64_c_2d.npy")).unwrap();
    assert_eq!((s.rows, s.cols), (4, 3));
    let s = io::read_samples(fixture("f32_1d.npy")).unwrap();
    assert_eq!((s.rows, s.cols), (5, 1));
    // A 3-D array is not a sample set.
    let e = io::read_samples(fixture("f32_c_3d.npy"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("f32_c_3d.npy: samples must be 1-D, 2-D (samples × dims) or 1 × samples × dims, got shape 2×3×4"),
        "{e}"
    );
}

#[test]
fn observations() {
    let o = io::read_observation_rows(fixture("observation.csv")).unwrap();
    assert_eq!((o.rows, o.cols), (1, 3));
    assert_eq!(o.data, vec![0.125, -4.5, 1e-5]);
    let o = io::read_observation_rows(fixture("f64_1d.npy")).unwrap();
    assert_eq!((o.rows, o.cols), (1, 5));
    let o = io::read_observation_rows(fixture("f64_c_2d.npy")).unwrap();
    assert_eq!((o.rows, o.cols), (4, 3));
    assert_eq!(o.row(1), &[10.25, 11.25, 12.25]);
}

#[test]
fn missing_file_is_named() {
    let p = fixture("no_such_file.npy");
    let e = io::read_npy_f64(&p).unwrap_err().to_string();
    assert!(e.contains("no_such_file.npy: cannot read: "), "{e}");
    let e = io::read_npz(fixture("nope.npz")).unwrap_err().to_string();
    assert!(e.contains("nope.npz: cannot open: "), "{e}");
}

#[test]
fn safetensors_from_the_python_package() {
    let w =
        io::read_safetensors(fixture("py_weights.safetensors")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w.tensors.len(), 2);
    let want: Vec<f32> = grid2(3, 2).iter().map(|&x| x as f32).collect();
    assert_eq!(w.tensor("layer0.weight", &[3, 2]).unwrap(), &want[..]);
    assert_eq!(
        w.tensor("layer0.bias", &[3]).unwrap(),
        &[-2.0f32, -1.0, 0.0][..]
    );
    assert_eq!(w.meta("framework").unwrap(), "numpy");
    assert_eq!(w.metadata.len(), 2);
    let e = io::read_safetensors(fixture("py_f16.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("py_f16.safetensors: tensor 'w' has dtype F16, expected F32"),
        "{e}"
    );
}

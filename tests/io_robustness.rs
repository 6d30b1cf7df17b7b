//! Malformed input never panics and always yields a one-line error naming the
//! file: truncations, bad magic, bad headers, wrong dtypes, absurd shapes, and
//! a seeded property-style loop over random and mutated inputs.

mod common;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Cursor, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use gkl_gpu::io::{self, ErrorKind, IoError, NpyData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/io")
        .join(name)
}

fn scratch(tag: &str) -> common::Scratch {
    common::scratch("io_robust", tag)
}

/// Asserts the error is one line starting with `name: `.
fn check_err(e: &IoError, name: &str) {
    let s = e.to_string();
    assert!(
        s.starts_with(&format!("{name}: ")),
        "error does not name {name:?}: {s:?}"
    );
    assert!(!s.contains('\n'), "error is not one line: {s:?}");
    assert!(
        s.len() < 600,
        "error is unreasonably long: {} chars",
        s.len()
    );
}

type Reader = fn(&[u8], &str) -> Result<(), IoError>;

fn readers() -> Vec<(&'static str, &'static str, Reader)> {
    vec![
        ("npy", "in.npy", |b, n| io::read_npy_bytes(b, n).map(|_| ())),
        ("npy-stream", "stdin", |b, n| {
            let mut c = Cursor::new(b);
            io::read_npy_stream(&mut c, n).map(|_| ())
        }),
        ("npz", "in.npz", |b, n| io::read_npz_bytes(b, n).map(|_| ())),
        ("samples-npy", "s.npy", |b, n| {
            io::samples_from_bytes(b, n).map(|_| ())
        }),
        ("samples-csv", "s.csv", |b, n| {
            io::samples_from_bytes(b, n).map(|_| ())
        }),
        ("samples-bz2", "s.csv.bz2", |b, n| {
            io::samples_from_bytes(b, n).map(|_| ())
        }),
        ("obs", "obs.csv", |b, n| {
            io::observation_rows_from_bytes(b, n).map(|_| ())
        }),
        ("safetensors", "m.safetensors", |b, n| {
            io::read_safetensors_bytes(b, n).map(|_| ())
        }),
    ]
}

/// Runs every reader on `input`; a panic is reported with the input dumped.
fn run_all(input: &[u8], what: &str) -> usize {
    let mut errs = 0;
    for (rname, fname, f) in readers() {
        match catch_unwind(AssertUnwindSafe(|| f(input, fname))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                check_err(&e, fname);
                errs += 1;
            }
            Err(_) => {
                let dump =
                    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("io_panic_{rname}.bin"));
                fs::write(&dump, input).unwrap();
                panic!(
                    "reader {rname} panicked on {what}; input saved to {}",
                    dump.display()
                );
            }
        }
    }
    errs
}

fn bz2(text: &str) -> Vec<u8> {
    let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap()
}

/// Valid inputs of every format to mutate.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    let d: Vec<f64> = (0..12).map(|i| i as f64 * 1.5).collect();
    v.push((
        "npy f64 4x3".into(),
        io::npy_bytes_f64(&[4, 3], &d).unwrap(),
    ));
    let f: Vec<f32> = (0..24).map(|i| i as f32).collect();
    v.push((
        "npy f32 2x3x4".into(),
        io::npy_bytes_f32(&[2, 3, 4], &f).unwrap(),
    ));
    for name in [
        "f64_f_3d.npy",
        "f64_v3_2d.npy",
        "i8_2d.npy",
        "stored.npz",
        "deflate.npz",
        "samples.csv.bz2",
    ] {
        v.push((name.into(), fs::read(fixture(name)).unwrap()));
    }
    v.push((
        "csv".into(),
        b"parameter_1,parameter_2\n-0.81,0.57\n1.0,2.0\n".to_vec(),
    ));
    v.push(("bz2 csv".into(), bz2("data_1,data_2\n1,2\n")));
    let meta = BTreeMap::from([("k".to_string(), "v".to_string())]);
    let w = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    v.push((
        "safetensors".into(),
        io::safetensors_bytes(&[("w", &[2, 3], &w), ("b", &[2], &w[..2])], &meta, "x").unwrap(),
    ));
    v
}

#[test]
fn every_truncation_of_binary_formats_is_an_error() {
    for (what, bytes) in corpus() {
        let binary_reader: Option<Reader> = if what.contains("npy") {
            Some(|b, n| io::read_npy_bytes(b, n).map(|_| ()))
        } else if what.contains("npz") {
            Some(|b, n| io::read_npz_bytes(b, n).map(|_| ()))
        } else if what.contains("safetensors") {
            Some(|b, n| io::read_safetensors_bytes(b, n).map(|_| ()))
        } else if what.contains("bz2") {
            Some(|b, n| io::samples_from_bytes(b, n).map(|_| ()))
        } else {
            None
        };
        assert!(
            run_all(&bytes, &what) < readers().len(),
            "{what} is not readable by anything"
        );
        for cut in 0..bytes.len() {
            run_all(&bytes[..cut], &format!("{what} cut at {cut}"));
            if let Some(f) = binary_reader {
                let r = f(&bytes[..cut], "cut.bin");
                let e = r
                    .err()
                    .unwrap_or_else(|| panic!("{what} truncated to {cut} bytes was accepted"));
                check_err(&e, "cut.bin");
            }
        }
    }
}

#[test]
fn random_mutations_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x5eed_1234);
    let corpus = corpus();
    let mut total_errs = 0usize;
    for round in 0..3000 {
        let (what, base) = &corpus[rng.random_range(0..corpus.len())];
        let mut b = base.clone();
        match rng.random_range(0..5) {
            // Flip a few random bits.
            0 => {
                for _ in 0..rng.random_range(1..4) {
                    let i = rng.random_range(0..b.len());
                    b[i] ^= 1 << rng.random_range(0..8);
                }
            }
            // Overwrite a byte with an interesting value.
            1 => {
                let i = rng.random_range(0..b.len());
                b[i] = [0u8, 0xff, 0x7f, 0x80, b'9', b'(', b',', b'\''][rng.random_range(0..8)];
            }
            // Delete a random range.
            2 => {
                let i = rng.random_range(0..b.len());
                let j = rng.random_range(i..=b.len().min(i + 16));
                b.drain(i..j);
            }
            // Insert random bytes.
            3 => {
                let i = rng.random_range(0..=b.len());
                let n = rng.random_range(1..16);
                let ins: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                b.splice(i..i, ins);
            }
            // Replace the header's digits (shape / lengths) with huge numbers.
            _ => {
                for x in b.iter_mut().take(200) {
                    if x.is_ascii_digit() && rng.random_bool(0.5) {
                        *x = b'9';
                    }
                }
            }
        }
        total_errs += run_all(&b, &format!("round {round}: mutated {what}"));
    }
    // Most mutated inputs are rejected by most readers; a reader that accepted
    // everything would be broken.
    assert!(total_errs > 3000 * 5, "only {total_errs} errors");
}

#[test]
fn random_bytes_with_valid_magics_never_panic() {
    let mut rng = StdRng::seed_from_u64(42);
    let prefixes: [&[u8]; 8] = [
        b"",
        b"\x93NUMPY\x01\x00",
        b"\x93NUMPY\x02\x00",
        b"\x93NUMPY\x03\x00\x10\x00\x00\x00",
        b"PK\x03\x04",
        b"PK\x05\x06",
        b"BZh9",
        b"\x10\x00\x00\x00\x00\x00\x00\x00{\"",
    ];
    for round in 0..2000 {
        let mut b = prefixes[round % prefixes.len()].to_vec();
        let n = rng.random_range(0..300);
        b.extend((0..n).map(|_| rng.random::<u8>()));
        let errs = run_all(&b, &format!("random round {round}"));
        assert_eq!(
            errs,
            readers().len(),
            "random bytes accepted (round {round})"
        );
    }
}

/// Builds a `.npy` with the given header dict text and raw data.
fn raw_npy(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    v.extend_from_slice(dict.as_bytes());
    v.extend_from_slice(data);
    v
}

#[test]
fn specific_bad_files_on_disk() {
    let dir = scratch("files");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "magic.npy",
            b"NUMPY\x01\x00garbage".to_vec(),
            "not a .npy file: bad magic bytes",
        ),
        (
            "zip.npy",
            fs::read(fixture("stored.npz")).unwrap(),
            "zip/.npz archive",
        ),
        (
            "version.npy",
            b"\x93NUMPY\x09\x00\x00\x00".to_vec(),
            "unsupported .npy format version 9.0",
        ),
        (
            "dict.npy",
            raw_npy("{'descr': '<f8', 'shape': (1,)}", &[0; 8]),
            "key 'fortran_order' missing",
        ),
        (
            "syntax.npy",
            raw_npy("{'descr' '<f8'}", &[]),
            "bad .npy header: expected ':'",
        ),
        (
            "dtype.npy",
            raw_npy(
                "{'descr': '<U8', 'fortran_order': False, 'shape': (1,)}",
                &[0; 32],
            ),
            "unsupported dtype '<U8'",
        ),
        (
            "complex.npy",
            raw_npy(
                "{'descr': '<c8', 'fortran_order': False, 'shape': (1,)}",
                &[0; 8],
            ),
            "unsupported dtype",
        ),
        (
            "absurd.npy",
            raw_npy(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,)}",
                &[0; 100],
            ),
            "truncated: header says 1000000000000 f32 (4000000000000 bytes), file has 100",
        ),
        (
            "overflow.npy",
            raw_npy(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (18446744073709551615, 2)}",
                &[],
            ),
            "too large",
        ),
    ];
    for (name, bytes, want) in &cases {
        let p = dir.join(name);
        fs::write(&p, bytes).unwrap();
        let e = io::read_npy_f64(&p).unwrap_err();
        check_err(&e, &p.display().to_string());
        assert!(
            e.to_string().contains(want),
            "{name}: got {e}, want {want:?}"
        );
    }
    // The same problems inside an .npz member name the archive and the member.
    let p = dir.join("member.npz");
    let file = fs::File::create(&p).unwrap();
    let mut zw = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zw.start_file("theta.npy", opts).unwrap();
    // Claims 800 MB of f64 but holds 1 MB of (highly compressible) zeros.
    zw.write_all(&raw_npy(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (100000000,)}",
        &vec![0; 1 << 20],
    ))
    .unwrap();
    zw.finish().unwrap();
    let e = io::read_npz(&p).unwrap_err();
    check_err(&e, &p.display().to_string());
    assert!(
        e.to_string().contains(
            "member 'theta.npy': truncated: header says 100000000 f64 (800000000 bytes), stream has 1048576"
        ),
        "{e}"
    );
    assert!(matches!(e.kind(), ErrorKind::InMember { .. }));

    // Wrong dtype / shape in safetensors.
    let p = dir.join("model.safetensors");
    let raw = [0u8; 8];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::I32, vec![2], &raw).unwrap();
    fs::write(
        &p,
        safetensors::tensor::serialize([("w", view)], None).unwrap(),
    )
    .unwrap();
    let e = io::read_safetensors(&p).unwrap_err();
    check_err(&e, &p.display().to_string());
    assert!(
        e.to_string()
            .ends_with("tensor 'w' has dtype I32, expected F32"),
        "{e}"
    );
    let mut st = fs::read(&p).unwrap();
    st.truncate(st.len() - 1);
    fs::write(&p, &st).unwrap();
    let e = io::read_safetensors(&p).unwrap_err();
    assert!(e.to_string().contains("bad safetensors file"), "{e}");

    // Samples: ragged CSV, garbage bz2, 3-D arrays.
    let p = dir.join("ragged.csv");
    fs::write(&p, "a,b\n1,2\n3,4,5\n").unwrap();
    let e = io::read_samples(&p).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: line 3: 3 fields, expected 2", p.display())
    );
    let p = dir.join("bad.csv.bz2");
    fs::write(&p, b"BZh91AY&SYgarbage").unwrap();
    let e = io::read_samples(&p).unwrap_err();
    assert!(e.to_string().contains("bad bzip2 data"), "{e}");

    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupted_npz_data_fails_the_crc_check() {
    let mut b = fs::read(fixture("stored.npz")).unwrap();
    // The last f64 of theta (value 32.25 = 0x4040200000000000) sits in the
    // stored data; change its lowest mantissa byte, which keeps the .npy valid.
    let pat = 32.25f64.to_le_bytes();
    let i = b
        .windows(8)
        .position(|w| w == pat)
        .expect("value 32.25 not found in stored.npz");
    b[i] ^= 1;
    let e = io::read_npz_bytes(&b, "crc.npz").unwrap_err();
    check_err(&e, "crc.npz");
    assert!(e.to_string().to_lowercase().contains("checksum"), "{e}");
}

#[test]
fn writer_errors_name_the_file() {
    let dir = scratch("werr");
    let p = dir.join("missing-dir").join("out.npz");
    let d = [1.0f64];
    let e = io::write_npz(&p, &[("a", &[1], NpyData::F64(&d))]).unwrap_err();
    check_err(&e, &p.display().to_string());
    assert!(
        e.to_string().contains("cannot create temporary file"),
        "{e}"
    );
    let e = io::write_npz(dir.join("x.npz"), &[("", &[1], NpyData::F64(&d))]).unwrap_err();
    assert!(e.to_string().ends_with("x.npz: array name is empty"), "{e}");
    fs::remove_dir_all(&dir).unwrap();
}

//! A folder of simulation shards, read one shard at a time.
//!
//! A shard is either an `.npz` holding arrays `theta` and `x` (what `gkl-gpu simulate --shard`
//! writes), or a pair of `.npy` files whose names differ only in `theta` ↔ `x`
//! (`part-007-theta.npy` with `part-007-x.npy`). Shards are taken in file-name order.
//! [`ShardSet::open`] reads only the headers and checks the dimensions across all shards;
//! [`ShardSet::iter`] then loads one shard per step, and [`ShardFiles::load_rows`] a range of
//! one shard's rows.

use super::error::{DataError, Result};
use super::simulations::{load_npy_pair, load_npz, shape_text, Simulations};
use crate::io::{
    read_npy_header, read_npy_rows, read_npz_headers, read_npz_rows, ErrorKind, IoError, NpyInfo,
};
use std::path::{Path, PathBuf};

/// Where one shard's arrays are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardFiles {
    Npz(PathBuf),
    NpyPair { theta: PathBuf, x: PathBuf },
}

impl ShardFiles {
    /// The file named in messages (the θ file of a pair).
    pub fn path(&self) -> &Path {
        match self {
            ShardFiles::Npz(p) => p,
            ShardFiles::NpyPair { theta, .. } => theta,
        }
    }

    /// Rows `rows` of the shard, without loading the others: `.npy` files are read from the
    /// first of those rows on (a seek), `.npz` members are decompressed up to the last of them
    /// and the rows before are discarded as they stream by.
    pub fn load_rows(&self, rows: std::ops::Range<usize>) -> Result<Simulations> {
        match self {
            ShardFiles::Npz(p) => {
                let mut a = read_npz_rows(p, &["theta", "x"], rows)?;
                let x = a.pop().expect("two arrays");
                let t = a.pop().expect("two arrays");
                Simulations::from_arrays((t, p), (x, p), p)
            }
            ShardFiles::NpyPair { theta, x } => {
                let t = read_npy_rows(theta, rows.clone())?;
                let xa = read_npy_rows(x, rows)?;
                Simulations::from_arrays((t, theta), (xa, x), theta)
            }
        }
    }
}

/// One shard: its files and its row count (from the headers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    pub files: ShardFiles,
    pub rows: usize,
}

/// The shards of a folder, with dimensions checked across all of them.
#[derive(Clone, Debug)]
pub struct ShardSet {
    dir: PathBuf,
    shards: Vec<Shard>,
    dim_theta: usize,
    dim_x: usize,
}

/// (rows, columns) of a 1-D or 2-D header.
fn rows_cols(info: &NpyInfo, file: &Path, name: &str) -> Result<(usize, usize)> {
    match *info.shape.as_slice() {
        [n] => Ok((n, 1)),
        [n, d] if d > 0 => Ok((n, d)),
        _ => Err(DataError::file(
            file,
            format!(
                "{name} must be 2-D (rows × columns) or 1-D, got shape {}",
                shape_text(&info.shape)
            ),
        )),
    }
}

fn missing(file: &Path, name: &str, available: &[&str]) -> DataError {
    DataError::Io(IoError::new(
        file,
        ErrorKind::Missing {
            what: "array",
            name: name.into(),
            available: if available.is_empty() {
                "none".into()
            } else {
                available.join(", ")
            },
        },
    ))
}

impl ShardSet {
    /// Lists the shards of `dir` and checks, from their headers only, that each has `theta` and
    /// `x` with equal row counts and that all shards have the same θ and x widths.
    pub fn open(dir: impl AsRef<Path>) -> Result<ShardSet> {
        let dir = dir.as_ref().to_path_buf();
        let entries = std::fs::read_dir(&dir).map_err(|e| IoError::io(&dir, "list", e))?;
        let mut names: Vec<PathBuf> = vec![];
        for e in entries {
            let e = e.map_err(|e| IoError::io(&dir, "list", e))?;
            let p = e.path();
            let lower = p
                .file_name()
                .map(|n| n.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            if p.is_file()
                && (lower.ends_with(".npz") || lower.ends_with(".npy"))
                && !lower.starts_with('.')
            {
                names.push(p);
            }
        }
        names.sort();
        let npy: Vec<&PathBuf> = names
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")))
            .collect();
        let mut used = vec![false; npy.len()];
        let mut files = vec![];
        for p in &names {
            if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npz")) {
                files.push(ShardFiles::Npz(p.clone()));
                continue;
            }
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(at) = stem.rfind("theta") {
                let partner = p.with_file_name(format!("{}x{}.npy", &stem[..at], &stem[at + 5..]));
                let Some(j) = npy.iter().position(|q| **q == partner) else {
                    return Err(DataError::file(
                        p,
                        format!("θ shard without its x partner {}", partner.display()),
                    ));
                };
                used[j] = true;
                if let Some(i) = npy.iter().position(|q| *q == p) {
                    used[i] = true;
                }
                files.push(ShardFiles::NpyPair {
                    theta: p.clone(),
                    x: partner,
                });
            }
        }
        if let Some(i) = used.iter().position(|u| !u) {
            return Err(DataError::file(
                npy[i],
                "an .npy shard must be a θ file (name containing 'theta') or the x partner of one (same name with 'x' for 'theta')",
            ));
        }
        if files.is_empty() {
            return Err(DataError::file(
                &dir,
                "no shards here (.npz files with arrays theta and x, or theta/x .npy pairs)",
            ));
        }
        files.sort_by(|a, b| a.path().cmp(b.path()));
        let mut shards = vec![];
        let mut dims: Option<(usize, usize, PathBuf)> = None;
        for f in files {
            let (ti, xi, file) = match &f {
                ShardFiles::Npz(p) => {
                    let mut h = read_npz_headers(p)?;
                    let names: Vec<String> = h.keys().cloned().collect();
                    let avail: Vec<&str> = names.iter().map(String::as_str).collect();
                    let t = h
                        .remove("theta")
                        .ok_or_else(|| missing(p, "theta", &avail))?;
                    let x = h.remove("x").ok_or_else(|| missing(p, "x", &avail))?;
                    (t, x, p.clone())
                }
                ShardFiles::NpyPair { theta, x } => {
                    (read_npy_header(theta)?, read_npy_header(x)?, theta.clone())
                }
            };
            let (nt, dt) = rows_cols(&ti, &file, "theta")?;
            let (nx, dx) = rows_cols(&xi, &file, "x")?;
            if nt != nx {
                return Err(DataError::file(
                    &file,
                    format!("theta has {nt} rows but x has {nx}"),
                ));
            }
            match &dims {
                None => dims = Some((dt, dx, file.clone())),
                Some((d0, x0, first)) if (*d0, *x0) != (dt, dx) => {
                    return Err(DataError::file(
                        &file,
                        format!(
                            "theta × x widths {dt} × {dx} differ from {d0} × {x0} in {}",
                            first.display()
                        ),
                    ))
                }
                _ => {}
            }
            shards.push(Shard { files: f, rows: nt });
        }
        let (dim_theta, dim_x, _) = dims.expect("at least one shard");
        Ok(ShardSet {
            dir,
            shards,
            dim_theta,
            dim_x,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }
    pub fn len(&self) -> usize {
        self.shards.len()
    }
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }
    /// Rows in all shards together.
    pub fn rows(&self) -> usize {
        self.shards.iter().map(|s| s.rows).sum()
    }
    pub fn dim_theta(&self) -> usize {
        self.dim_theta
    }
    pub fn dim_x(&self) -> usize {
        self.dim_x
    }

    /// Loads the shards one at a time, in order: (the shard's file, its simulations). Each is
    /// checked against the dimensions [`ShardSet::open`] found.
    pub fn iter(&self) -> impl Iterator<Item = Result<(PathBuf, Simulations)>> + '_ {
        self.shards.iter().map(move |s| {
            let sims = match &s.files {
                ShardFiles::Npz(p) => load_npz(p)?,
                ShardFiles::NpyPair { theta, x } => load_npy_pair(theta, x)?,
            };
            let file = s.files.path().to_path_buf();
            if (sims.rows(), sims.dim_theta, sims.dim_x) != (s.rows, self.dim_theta, self.dim_x) {
                return Err(DataError::file(
                    &file,
                    "changed since the shard set was opened",
                ));
            }
            Ok((file, sims))
        })
    }
}

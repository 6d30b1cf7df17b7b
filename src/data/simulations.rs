//! Simulations loaded from files: `.npz` with arrays `theta` and `x`, a pair of `.npy` files, or a
//! folder of shards; shape checks, and checks against the prior.

use super::error::{DataError, Result};
use super::shards::ShardSet;
use crate::io::{read_npy_f64, read_npz, Array};
use gkl_tasks::{Component, Prior};
use std::path::Path;

/// (θ, x) pairs, row-major, in the original space.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Simulations {
    pub theta: Vec<f64>,
    pub x: Vec<f64>,
    pub dim_theta: usize,
    pub dim_x: usize,
}

impl Simulations {
    /// Checks that `theta` is `rows × dim_theta` and `x` is `rows × dim_x`.
    pub fn new(theta: Vec<f64>, x: Vec<f64>, dim_theta: usize, dim_x: usize) -> Option<Self> {
        let rows = theta.len().checked_div(dim_theta)?;
        (dim_x > 0 && rows * dim_theta == theta.len() && rows.checked_mul(dim_x) == Some(x.len()))
            .then_some(Simulations {
                theta,
                x,
                dim_theta,
                dim_x,
            })
    }

    pub fn rows(&self) -> usize {
        self.theta.len().checked_div(self.dim_theta).unwrap_or(0)
    }

    /// Appends `other`'s rows (same dimensions required).
    pub fn append(&mut self, other: Simulations) -> std::result::Result<(), String> {
        if self.rows() == 0 && self.dim_theta == 0 {
            *self = other;
            return Ok(());
        }
        if other.dim_theta != self.dim_theta || other.dim_x != self.dim_x {
            return Err(format!(
                "θ × x dimensions {} × {} differ from the earlier {} × {}",
                other.dim_theta, other.dim_x, self.dim_theta, self.dim_x
            ));
        }
        self.theta.extend(other.theta);
        self.x.extend(other.x);
        Ok(())
    }

    /// Builds from two arrays read from `file` (1-D is one column; 2-D is rows × columns).
    pub(crate) fn from_arrays(
        theta: (Array, &Path),
        x: (Array, &Path),
        whole: &Path,
    ) -> Result<Self> {
        let (nt, dt, th) = matrix(theta.0, theta.1, "theta")?;
        let (nx, dx, xs) = matrix(x.0, x.1, "x")?;
        if nt != nx {
            return Err(DataError::file(
                whole,
                format!("theta has {nt} rows but x has {nx}"),
            ));
        }
        if nt == 0 {
            return Err(DataError::file(
                whole,
                "no simulations (theta and x have 0 rows)",
            ));
        }
        Ok(Simulations {
            theta: th,
            x: xs,
            dim_theta: dt,
            dim_x: dx,
        })
    }
}

/// A 1-D or 2-D array as (rows, columns, data).
fn matrix(a: Array, file: &Path, name: &str) -> Result<(usize, usize, Vec<f64>)> {
    match *a.shape.as_slice() {
        [n] => Ok((n, 1, a.data)),
        [n, 0] => Err(DataError::file(
            file,
            format!("{name} has shape {n}×0: no columns"),
        )),
        [n, d] => Ok((n, d, a.data)),
        _ => Err(DataError::file(
            file,
            format!(
                "{name} must be 2-D (rows × columns) or 1-D, got shape {}",
                shape_text(&a.shape)
            ),
        )),
    }
}

pub(crate) fn shape_text(shape: &[usize]) -> String {
    if shape.is_empty() {
        return "() (a scalar)".into();
    }
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("×")
}

/// Reads an `.npz` holding arrays `theta` (N × dθ) and `x` (N × dx), f32 or f64 (integer
/// dtypes too), C or Fortran order.
pub fn load_npz(path: impl AsRef<Path>) -> Result<Simulations> {
    let path = path.as_ref();
    let mut npz = read_npz(path)?;
    // Both present before either is taken (so a message lists everything the file holds).
    npz.get("theta")?;
    npz.get("x")?;
    let theta = npz.take("theta")?;
    let x = npz.take("x")?;
    Simulations::from_arrays((theta, path), (x, path), path)
}

/// Reads θ and x from two `.npy` files.
pub fn load_npy_pair(theta: impl AsRef<Path>, x: impl AsRef<Path>) -> Result<Simulations> {
    let (tp, xp) = (theta.as_ref(), x.as_ref());
    let t = read_npy_f64(tp)?;
    let xa = read_npy_f64(xp)?;
    let (nt, nx) = (t.shape.first().copied(), xa.shape.first().copied());
    if let (Some(nt), Some(nx), 1..=2, 1..=2) = (nt, nx, t.ndim(), xa.ndim()) {
        if nt != nx {
            return Err(DataError::file(
                xp,
                format!("x has {nx} rows but theta ({}) has {nt}", tp.display()),
            ));
        }
    }
    Simulations::from_arrays((t, tp), (xa, xp), tp)
}

/// Reads `--data PATH`: an `.npz` file, or a folder of shards (all of them, one at a time).
pub fn load_path(path: impl AsRef<Path>) -> Result<(Simulations, Option<usize>)> {
    let path = path.as_ref();
    if path.is_dir() {
        let set = ShardSet::open(path)?;
        let mut all = Simulations::default();
        for shard in set.iter() {
            let (file, sims) = shard?;
            all.append(sims).map_err(|m| DataError::file(file, m))?;
        }
        Ok((all, Some(set.len())))
    } else {
        Ok((load_npz(path)?, None))
    }
}

/// Checks the simulations against the prior: θ's width is the prior's dimension and every θ row
/// lies in the prior's support. `data` names the data in messages, `prior_name` the prior.
///
/// Values within float32 rounding (2⁻²² relative) outside a uniform coordinate's bounds are
/// clamped onto them rather than rejected, since θ drawn in float64 and stored as float32 lands
/// there; the number of values clamped is returned.
pub fn check_against_prior(
    s: &mut Simulations,
    prior: &Prior,
    data: &Path,
    prior_name: &str,
) -> Result<usize> {
    if s.dim_theta != prior.dim() {
        return Err(DataError::file(
            data,
            format!(
                "theta has {} columns but the prior ({prior_name}) has dimension {}",
                s.dim_theta,
                prior.dim()
            ),
        ));
    }
    let d = s.dim_theta;
    let comps: Vec<Option<Component>> = (0..d).map(|j| prior.component(j)).collect();
    let mut clamped = 0;
    let mut first_outside: Option<(usize, Vec<f64>)> = None;
    let mut outside = 0usize;
    for (i, row) in s.theta.chunks_exact_mut(d).enumerate() {
        let mut ok = true;
        for (v, c) in row.iter_mut().zip(&comps) {
            match c {
                Some(c @ Component::Uniform { low, high })
                    if !c.in_support(*v) && v.is_finite() =>
                {
                    let tol = |b: f64| b.abs().max(1.0) * f64::powi(2.0, -22);
                    if *v < *low && *low - *v <= tol(*low) {
                        *v = *low;
                        clamped += 1;
                    } else if *v > *high && *v - *high <= tol(*high) {
                        *v = *high;
                        clamped += 1;
                    } else {
                        ok = false;
                    }
                }
                Some(c) => ok &= c.in_support(*v),
                None => ok &= v.is_finite(),
            }
        }
        if !ok {
            outside += 1;
            first_outside.get_or_insert_with(|| (i, row.to_vec()));
        }
    }
    if let Some((i, row)) = first_outside {
        let shown: Vec<String> = row.iter().take(8).map(|v| format!("{v}")).collect();
        let also = if outside > 1 {
            format!(" and {} other row(s)", outside - 1)
        } else {
            String::new()
        };
        return Err(DataError::file(
            data,
            format!(
                "theta row {i} [{}{}]{also} lies outside the support of the prior ({prior_name})",
                shown.join(", "),
                if d > 8 { ", ..." } else { "" }
            ),
        ));
    }
    Ok(clamped)
}

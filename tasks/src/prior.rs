//! Priors with a user-facing JSON schema, densities, sampling and a bijection to ℝᵈ.
//!
//! JSON (the `type` tag selects the variant):
//! ```json
//! {"type": "box_uniform", "low": [-1, -1], "high": [1, 1]}
//! {"type": "gaussian", "mean": [0, 0], "cov": [[1, 0], [0, 1]]}
//! {"type": "lognormal", "loc": [-0.9, -2.1], "scale": [0.5, 0.2]}
//! {"type": "independent", "components": [
//!     {"type": "uniform", "low": 0, "high": 1},
//!     {"type": "normal", "loc": 0, "scale": 1},
//!     {"type": "lognormal", "loc": 0, "scale": 0.5}]}
//! ```
//! Unconstrained space: uniform coordinates map by the logit of the box, lognormal coordinates
//! by log, gaussian/normal coordinates by the identity.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::distributions::std_normal;
use crate::linalg;
use crate::special::{softplus, LN_SQRT_2PI};
use crate::TaskError;

/// One coordinate of an [`Prior::Independent`] prior.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Component {
    Uniform {
        low: f64,
        high: f64,
    },
    Normal {
        loc: f64,
        scale: f64,
    },
    #[serde(rename = "lognormal")]
    LogNormal {
        loc: f64,
        scale: f64,
    },
}

/// A prior distribution over θ ∈ ℝᵈ.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Prior {
    /// Independent U(low_i, high_i).
    BoxUniform { low: Vec<f64>, high: Vec<f64> },
    /// N(mean, cov) (full covariance).
    Gaussian { mean: Vec<f64>, cov: Vec<Vec<f64>> },
    /// Independent LogNormal(loc_i, scale_i): log θ_i ~ N(loc_i, scale_i²).
    #[serde(rename = "lognormal")]
    LogNormal { loc: Vec<f64>, scale: Vec<f64> },
    /// Independent one-dimensional components.
    Independent { components: Vec<Component> },
}

impl Component {
    pub fn validate(&self, i: usize) -> Result<(), TaskError> {
        let bad = |m: String| Err(TaskError::InvalidPrior(format!("components[{i}]: {m}")));
        match *self {
            Component::Uniform { low, high } => {
                if !low.is_finite() || !high.is_finite() {
                    return bad(format!(
                        "uniform bounds must be finite (low = {low}, high = {high})"
                    ));
                }
                if low >= high {
                    return bad(format!(
                        "uniform needs low < high (low = {low}, high = {high})"
                    ));
                }
            }
            Component::Normal { loc, scale } | Component::LogNormal { loc, scale } => {
                if !loc.is_finite() {
                    return bad(format!("loc must be finite (got {loc})"));
                }
                if !(scale > 0.0) || !scale.is_finite() {
                    return bad(format!("scale must be finite and > 0 (got {scale})"));
                }
            }
        }
        Ok(())
    }

    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        match *self {
            Component::Uniform { low, high } => low + (high - low) * rng.random::<f64>(),
            Component::Normal { loc, scale } => loc + scale * std_normal(rng),
            Component::LogNormal { loc, scale } => (loc + scale * std_normal(rng)).exp(),
        }
    }

    pub fn log_prob(&self, x: f64) -> f64 {
        match *self {
            Component::Uniform { low, high } => {
                if x >= low && x <= high {
                    -(high - low).ln()
                } else {
                    f64::NEG_INFINITY
                }
            }
            Component::Normal { loc, scale } => {
                let z = (x - loc) / scale;
                -0.5 * z * z - scale.ln() - LN_SQRT_2PI
            }
            Component::LogNormal { loc, scale } => {
                if x > 0.0 {
                    let lx = x.ln();
                    let z = (lx - loc) / scale;
                    -0.5 * z * z - scale.ln() - LN_SQRT_2PI - lx
                } else {
                    f64::NEG_INFINITY
                }
            }
        }
    }

    pub fn in_support(&self, x: f64) -> bool {
        match *self {
            Component::Uniform { low, high } => x >= low && x <= high,
            Component::Normal { .. } => x.is_finite(),
            Component::LogNormal { .. } => x > 0.0 && x.is_finite(),
        }
    }

    pub fn support(&self) -> (f64, f64) {
        match *self {
            Component::Uniform { low, high } => (low, high),
            Component::Normal { .. } => (f64::NEG_INFINITY, f64::INFINITY),
            Component::LogNormal { .. } => (0.0, f64::INFINITY),
        }
    }

    pub fn to_unconstrained(&self, x: f64) -> f64 {
        match *self {
            Component::Uniform { low, high } => ((x - low) / (high - x)).ln(),
            Component::Normal { .. } => x,
            Component::LogNormal { .. } => x.ln(),
        }
    }

    pub fn from_unconstrained(&self, u: f64) -> f64 {
        match *self {
            Component::Uniform { low, high } => {
                let s = crate::special::sigmoid(u);
                (low + (high - low) * s).clamp(low, high)
            }
            Component::Normal { .. } => u,
            Component::LogNormal { .. } => u.exp(),
        }
    }

    pub fn log_abs_det_jacobian(&self, u: f64) -> f64 {
        match *self {
            Component::Uniform { low, high } => (high - low).ln() - softplus(u) - softplus(-u),
            Component::Normal { .. } => 0.0,
            Component::LogNormal { .. } => u,
        }
    }

    pub fn mean_std(&self) -> (f64, f64) {
        match *self {
            Component::Uniform { low, high } => (0.5 * (low + high), (high - low) / 12f64.sqrt()),
            Component::Normal { loc, scale } => (loc, scale),
            Component::LogNormal { loc, scale } => {
                let s2 = scale * scale;
                let m = (loc + 0.5 * s2).exp();
                (m, m * s2.exp_m1().sqrt())
            }
        }
    }
}

impl Prior {
    /// N(0, var·I) in d dimensions.
    pub fn isotropic_gaussian(d: usize, var: f64) -> Prior {
        let cov = (0..d)
            .map(|i| (0..d).map(|j| if i == j { var } else { 0.0 }).collect())
            .collect();
        Prior::Gaussian {
            mean: vec![0.0; d],
            cov,
        }
    }

    /// Parses a prior from JSON and validates it.
    pub fn from_json(s: &str) -> Result<Prior, TaskError> {
        let p: Prior =
            serde_json::from_str(s).map_err(|e| TaskError::InvalidPrior(format!("JSON: {e}")))?;
        p.validate()?;
        Ok(p)
    }

    /// Pretty JSON in the user-facing schema.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("prior serializes")
    }

    /// Dimension d of θ.
    pub fn dim(&self) -> usize {
        match self {
            Prior::BoxUniform { low, .. } => low.len(),
            Prior::Gaussian { mean, .. } => mean.len(),
            Prior::LogNormal { loc, .. } => loc.len(),
            Prior::Independent { components } => components.len(),
        }
    }

    /// Checks lengths, finiteness, low < high, scale > 0, symmetric positive-definite cov.
    pub fn validate(&self) -> Result<(), TaskError> {
        let bad = |m: String| Err(TaskError::InvalidPrior(m));
        if self.dim() == 0 {
            return bad("prior has dimension 0".into());
        }
        match self {
            Prior::BoxUniform { low, high } => {
                if low.len() != high.len() {
                    return bad(format!(
                        "box_uniform: low has {} entries but high has {}",
                        low.len(),
                        high.len()
                    ));
                }
                for (i, (&l, &h)) in low.iter().zip(high.iter()).enumerate() {
                    if !l.is_finite() || !h.is_finite() {
                        return bad(format!(
                            "box_uniform: bounds must be finite (low[{i}] = {l}, high[{i}] = {h})"
                        ));
                    }
                    if l >= h {
                        return bad(format!(
                            "box_uniform: need low < high, but low[{i}] = {l} >= high[{i}] = {h}"
                        ));
                    }
                }
            }
            Prior::Gaussian { mean, cov } => {
                let d = mean.len();
                if cov.len() != d {
                    return bad(format!(
                        "gaussian: mean has {d} entries but cov has {} rows",
                        cov.len()
                    ));
                }
                for (i, row) in cov.iter().enumerate() {
                    if row.len() != d {
                        return bad(format!(
                            "gaussian: cov must be {d}×{d}, but row {i} has {} entries",
                            row.len()
                        ));
                    }
                }
                if let Some(i) = mean.iter().position(|m| !m.is_finite()) {
                    return bad(format!("gaussian: mean[{i}] is not finite"));
                }
                for i in 0..d {
                    for j in 0..d {
                        let (a, b) = (cov[i][j], cov[j][i]);
                        if !a.is_finite() {
                            return bad(format!("gaussian: cov[{i}][{j}] is not finite"));
                        }
                        if (a - b).abs() > 1e-10 * (1.0 + a.abs().max(b.abs())) {
                            return bad(format!("gaussian: cov is not symmetric (cov[{i}][{j}] = {a}, cov[{j}][{i}] = {b})"));
                        }
                    }
                }
                if linalg::cholesky(&self.cov_flat(), d).is_none() {
                    return bad("gaussian: cov is not positive definite".into());
                }
            }
            Prior::LogNormal { loc, scale } => {
                if loc.len() != scale.len() {
                    return bad(format!(
                        "lognormal: loc has {} entries but scale has {}",
                        loc.len(),
                        scale.len()
                    ));
                }
                for (i, (&l, &s)) in loc.iter().zip(scale.iter()).enumerate() {
                    if !l.is_finite() {
                        return bad(format!("lognormal: loc[{i}] = {l} is not finite"));
                    }
                    if !(s > 0.0) || !s.is_finite() {
                        return bad(format!(
                            "lognormal: scale[{i}] = {s} must be finite and > 0"
                        ));
                    }
                }
            }
            Prior::Independent { components } => {
                for (i, c) in components.iter().enumerate() {
                    c.validate(i)?;
                }
            }
        }
        Ok(())
    }

    fn cov_flat(&self) -> Vec<f64> {
        match self {
            Prior::Gaussian { cov, .. } => cov.iter().flat_map(|r| r.iter().cloned()).collect(),
            _ => unreachable!(),
        }
    }

    /// Cholesky factor of a gaussian prior's covariance (row-major, lower).
    fn gaussian_chol(&self) -> Vec<f64> {
        linalg::cholesky(&self.cov_flat(), self.dim())
            .expect("gaussian prior: cov not positive definite (call validate())")
    }

    /// Per-coordinate components of a factorized prior (None for gaussian).
    pub fn components(&self) -> Option<Vec<Component>> {
        match self {
            Prior::BoxUniform { low, high } => Some(
                low.iter()
                    .zip(high.iter())
                    .map(|(&low, &high)| Component::Uniform { low, high })
                    .collect(),
            ),
            Prior::LogNormal { loc, scale } => Some(
                loc.iter()
                    .zip(scale.iter())
                    .map(|(&loc, &scale)| Component::LogNormal { loc, scale })
                    .collect(),
            ),
            Prior::Independent { components } => Some(components.clone()),
            Prior::Gaussian { .. } => None,
        }
    }

    /// Component i of a factorized prior (None for gaussian). Allocation-free.
    #[inline]
    pub fn component(&self, i: usize) -> Option<Component> {
        match self {
            Prior::BoxUniform { low, high } => Some(Component::Uniform {
                low: low[i],
                high: high[i],
            }),
            Prior::LogNormal { loc, scale } => Some(Component::LogNormal {
                loc: loc[i],
                scale: scale[i],
            }),
            Prior::Independent { components } => Some(components[i]),
            Prior::Gaussian { .. } => None,
        }
    }

    /// n draws, row-major n×d.
    pub fn sample<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Vec<f64> {
        let d = self.dim();
        let mut out = vec![0.0; n * d];
        match self {
            Prior::Gaussian { mean, .. } => {
                let l = self.gaussian_chol();
                let mut z = vec![0.0; d];
                for row in out.chunks_mut(d) {
                    z.iter_mut().for_each(|v| *v = std_normal(rng));
                    linalg::lower_mul(&l, d, &z, row);
                    row.iter_mut().zip(mean.iter()).for_each(|(r, m)| *r += m);
                }
            }
            _ => {
                let comps = self.components().unwrap();
                for row in out.chunks_mut(d) {
                    for (r, c) in row.iter_mut().zip(comps.iter()) {
                        *r = c.sample(rng);
                    }
                }
            }
        }
        out
    }

    /// log p(θ) for one row θ; −∞ outside the support.
    pub fn log_prob(&self, theta: &[f64]) -> f64 {
        let d = self.dim();
        assert_eq!(
            theta.len(),
            d,
            "log_prob: θ has {} entries, prior dim is {d}",
            theta.len()
        );
        match self {
            Prior::BoxUniform { low, high } => {
                let mut s = 0.0;
                for i in 0..d {
                    if !(theta[i] >= low[i] && theta[i] <= high[i]) {
                        return f64::NEG_INFINITY;
                    }
                    s -= (high[i] - low[i]).ln();
                }
                s
            }
            Prior::Gaussian { mean, .. } => {
                let l = self.gaussian_chol();
                let mut r: Vec<f64> = theta.iter().zip(mean.iter()).map(|(t, m)| t - m).collect();
                if r.iter().any(|v| !v.is_finite()) {
                    return f64::NEG_INFINITY;
                }
                linalg::solve_lower_in_place(&l, d, &mut r);
                -0.5 * r.iter().map(|v| v * v).sum::<f64>()
                    - linalg::half_log_det(&l, d)
                    - d as f64 * LN_SQRT_2PI
            }
            Prior::LogNormal { loc, scale } => {
                let mut s = 0.0;
                for i in 0..d {
                    s += Component::LogNormal {
                        loc: loc[i],
                        scale: scale[i],
                    }
                    .log_prob(theta[i]);
                }
                s
            }
            Prior::Independent { components } => components
                .iter()
                .zip(theta)
                .map(|(c, &t)| c.log_prob(t))
                .sum(),
        }
    }

    /// Whether θ lies in the (closed) support.
    pub fn in_support(&self, theta: &[f64]) -> bool {
        match self {
            Prior::Gaussian { .. } => theta.iter().all(|t| t.is_finite()),
            _ => self
                .components()
                .unwrap()
                .iter()
                .zip(theta)
                .all(|(c, &t)| c.in_support(t)),
        }
    }

    /// (low, high) when every coordinate is bounded (box-like support), else None.
    pub fn bounds(&self) -> Option<(Vec<f64>, Vec<f64>)> {
        let (lo, hi) = self.support();
        if lo.iter().chain(hi.iter()).all(|v| v.is_finite()) {
            Some((lo, hi))
        } else {
            None
        }
    }

    /// Per-coordinate support (low, high), with ±∞ / 0 where unbounded.
    pub fn support(&self) -> (Vec<f64>, Vec<f64>) {
        match self {
            Prior::Gaussian { mean, .. } => (
                vec![f64::NEG_INFINITY; mean.len()],
                vec![f64::INFINITY; mean.len()],
            ),
            _ => self
                .components()
                .unwrap()
                .iter()
                .map(|c| c.support())
                .unzip(),
        }
    }

    /// Analytic per-coordinate mean and standard deviation.
    pub fn mean_std(&self) -> (Vec<f64>, Vec<f64>) {
        match self {
            Prior::Gaussian { mean, cov } => (
                mean.clone(),
                (0..mean.len()).map(|i| cov[i][i].sqrt()).collect(),
            ),
            _ => self
                .components()
                .unwrap()
                .iter()
                .map(|c| c.mean_std())
                .unzip(),
        }
    }

    /// θ → u ∈ ℝᵈ (logit of the box for uniform coordinates, log for lognormal, identity for gaussian).
    pub fn to_unconstrained(&self, theta: &[f64]) -> Vec<f64> {
        match self {
            Prior::Gaussian { .. } => theta.to_vec(),
            _ => self
                .components()
                .unwrap()
                .iter()
                .zip(theta)
                .map(|(c, &t)| c.to_unconstrained(t))
                .collect(),
        }
    }

    /// u ∈ ℝᵈ → θ (inverse of [`Prior::to_unconstrained`]).
    pub fn from_unconstrained(&self, u: &[f64]) -> Vec<f64> {
        match self {
            Prior::Gaussian { .. } => u.to_vec(),
            _ => self
                .components()
                .unwrap()
                .iter()
                .zip(u)
                .map(|(c, &v)| c.from_unconstrained(v))
                .collect(),
        }
    }

    /// log |det ∂θ/∂u| at u.
    pub fn log_abs_det_jacobian_from_unconstrained(&self, u: &[f64]) -> f64 {
        match self {
            Prior::Gaussian { .. } => 0.0,
            _ => self
                .components()
                .unwrap()
                .iter()
                .zip(u)
                .map(|(c, &v)| c.log_abs_det_jacobian(v))
                .sum(),
        }
    }

    /// Density of the prior pushed to u-space: log p(θ(u)) + log |det ∂θ/∂u|.
    pub fn log_prob_unconstrained(&self, u: &[f64]) -> f64 {
        let theta = self.from_unconstrained(u);
        self.log_prob(&theta) + self.log_abs_det_jacobian_from_unconstrained(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Xoshiro256pp;

    fn priors() -> Vec<Prior> {
        vec![
            Prior::BoxUniform {
                low: vec![-1.0, 0.5],
                high: vec![1.0, 3.0],
            },
            Prior::Gaussian {
                mean: vec![0.3, -1.0],
                cov: vec![vec![0.5, 0.2], vec![0.2, 0.3]],
            },
            Prior::LogNormal {
                loc: vec![-0.5, 0.2],
                scale: vec![0.5, 0.3],
            },
            Prior::Independent {
                components: vec![
                    Component::Uniform {
                        low: -2.0,
                        high: 0.0,
                    },
                    Component::LogNormal {
                        loc: 0.0,
                        scale: 0.4,
                    },
                ],
            },
            Prior::Independent {
                components: vec![
                    Component::Normal {
                        loc: 1.0,
                        scale: 2.0,
                    },
                    Component::Uniform {
                        low: 0.0,
                        high: 0.1,
                    },
                ],
            },
        ]
    }

    #[test]
    fn densities_integrate_to_one_2d() {
        // Integrate exp(log_prob) over a grid in u-space with the Jacobian (covers unbounded supports).
        for p in priors() {
            p.validate().unwrap();
            let m = 600;
            let (lo, hi) = (-12.0, 12.0);
            let h = (hi - lo) / m as f64;
            let mut total = 0.0;
            for i in 0..m {
                for j in 0..m {
                    let u = [lo + (i as f64 + 0.5) * h, lo + (j as f64 + 0.5) * h];
                    // scale the gaussian/normal grid: identity map, so the grid must cover it
                    total += p.log_prob_unconstrained(&u).exp() * h * h;
                }
            }
            assert!((total - 1.0).abs() < 2e-3, "{p:?}: integral {total}");
        }
    }

    #[test]
    fn density_integrates_1d_theta_space() {
        let c = Prior::Independent {
            components: vec![Component::LogNormal {
                loc: 0.3,
                scale: 0.6,
            }],
        };
        let m = 200_000;
        let h = 60.0 / m as f64;
        let s: f64 = (0..m)
            .map(|i| c.log_prob(&[(i as f64 + 0.5) * h]).exp() * h)
            .sum();
        assert!((s - 1.0).abs() < 1e-4, "{s}");
        let u = Prior::BoxUniform {
            low: vec![-3.0],
            high: vec![5.0],
        };
        let s: f64 = (0..m)
            .map(|i| {
                u.log_prob(&[-4.0 + (i as f64 + 0.5) * 10.0 / m as f64])
                    .exp()
                    * 10.0
                    / m as f64
            })
            .sum();
        assert!((s - 1.0).abs() < 1e-4, "{s}");
    }

    #[test]
    fn samples_match_moments_and_histogram() {
        let mut rng = Xoshiro256pp::from_seed_u64(11);
        let n = 100_000;
        for p in priors() {
            let x = p.sample(n, &mut rng);
            let d = p.dim();
            let (mean, std) = p.mean_std();
            for j in 0..d {
                let col: Vec<f64> = x.iter().skip(j).step_by(d).cloned().collect();
                let m = col.iter().sum::<f64>() / n as f64;
                let v = col.iter().map(|c| (c - m) * (c - m)).sum::<f64>() / (n - 1) as f64;
                assert!(
                    (m - mean[j]).abs() < 5.0 * std[j] / (n as f64).sqrt(),
                    "{p:?} dim {j}: mean {m} vs {}",
                    mean[j]
                );
                assert!(
                    (v.sqrt() / std[j] - 1.0).abs() < 0.02,
                    "{p:?} dim {j}: std {} vs {}",
                    v.sqrt(),
                    std[j]
                );
            }
            for row in x.chunks(d) {
                assert!(p.in_support(row) && p.log_prob(row).is_finite());
            }
            // Histogram check of the first coordinate's marginal in u-space against the pushed density.
            if let Some(comps) = p.components() {
                let c = &comps[0];
                let us: Vec<f64> = x.chunks(d).map(|r| c.to_unconstrained(r[0])).collect();
                let bins = 20;
                let (lo, hi) = (-3.0, 3.0);
                let mut counts = vec![0usize; bins];
                for &u in &us {
                    let k = ((u - lo) / (hi - lo) * bins as f64).floor();
                    if k >= 0.0 && (k as usize) < bins {
                        counts[k as usize] += 1;
                    }
                }
                for (k, &cnt) in counts.iter().enumerate() {
                    let a = lo + k as f64 * (hi - lo) / bins as f64;
                    let w = (hi - lo) / bins as f64;
                    let sub = 50;
                    let prob: f64 = (0..sub)
                        .map(|s| {
                            let u = a + (s as f64 + 0.5) * w / sub as f64;
                            (c.log_prob(c.from_unconstrained(u)) + c.log_abs_det_jacobian(u)).exp()
                                * w
                                / sub as f64
                        })
                        .sum();
                    let exp = prob * n as f64;
                    assert!(
                        (cnt as f64 - exp).abs() < 5.0 * exp.sqrt() + 5.0,
                        "{c:?} bin {k}: {cnt} vs {exp}"
                    );
                }
            }
        }
    }

    #[test]
    fn bijection_round_trip_and_jacobian() {
        let mut rng = Xoshiro256pp::from_seed_u64(5);
        for p in priors() {
            let d = p.dim();
            let x = p.sample(200, &mut rng);
            for row in x.chunks(d) {
                let u = p.to_unconstrained(row);
                let back = p.from_unconstrained(&u);
                for (a, b) in row.iter().zip(back.iter()) {
                    assert!((a - b).abs() < 1e-10 * (1.0 + a.abs()), "{p:?}: {a} vs {b}");
                }
                // Finite-difference Jacobian determinant (diagonal map, or identity).
                let h = 1e-5;
                let mut jac = vec![0.0; d * d];
                for j in 0..d {
                    let mut up = u.clone();
                    let mut dn = u.clone();
                    up[j] += h;
                    dn[j] -= h;
                    let (tp, tm) = (p.from_unconstrained(&up), p.from_unconstrained(&dn));
                    for i in 0..d {
                        jac[i * d + j] = (tp[i] - tm[i]) / (2.0 * h);
                    }
                }
                let det = if d == 2 {
                    jac[0] * jac[3] - jac[1] * jac[2]
                } else {
                    unreachable!()
                };
                let want = p.log_abs_det_jacobian_from_unconstrained(&u);
                assert!(
                    (det.abs().ln() - want).abs() < 1e-6,
                    "{p:?}: fd {} vs {want}",
                    det.abs().ln()
                );
            }
        }
    }

    #[test]
    fn json_schema_round_trip() {
        let s = r#"{"type": "box_uniform", "low": [-1, -2], "high": [1, 2]}"#;
        let p = Prior::from_json(s).unwrap();
        assert_eq!(
            p,
            Prior::BoxUniform {
                low: vec![-1.0, -2.0],
                high: vec![1.0, 2.0]
            }
        );
        let s = r#"{"type": "gaussian", "mean": [0, 1], "cov": [[1, 0.5], [0.5, 2]]}"#;
        assert!(matches!(
            Prior::from_json(s).unwrap(),
            Prior::Gaussian { .. }
        ));
        let s = r#"{"type": "lognormal", "loc": [0.1], "scale": [0.5]}"#;
        assert!(matches!(
            Prior::from_json(s).unwrap(),
            Prior::LogNormal { .. }
        ));
        let s = r#"{"type": "independent", "components": [{"type": "uniform", "low": 0, "high": 1},
                    {"type": "normal", "loc": 0, "scale": 1}, {"type": "lognormal", "loc": 0, "scale": 0.5}]}"#;
        let p = Prior::from_json(s).unwrap();
        assert_eq!(p.dim(), 3);
        for p in priors() {
            let back = Prior::from_json(&p.to_json()).unwrap();
            assert_eq!(back, p);
        }
        // Serialized form uses the documented tags.
        assert!(priors()[0].to_json().contains("\"box_uniform\""));
        assert!(priors()[2].to_json().contains("\"lognormal\""));
    }

    #[test]
    fn validation_errors_are_clear() {
        let cases = [
            (
                r#"{"type": "box_uniform", "low": [0, 0], "high": [1]}"#,
                "low has 2 entries but high has 1",
            ),
            (
                r#"{"type": "box_uniform", "low": [0, 2], "high": [1, 1]}"#,
                "low[1] = 2 >= high[1] = 1",
            ),
            (
                r#"{"type": "gaussian", "mean": [0, 0], "cov": [[1, 2], [2, 1]]}"#,
                "not positive definite",
            ),
            (
                r#"{"type": "gaussian", "mean": [0, 0], "cov": [[1, 0.1], [0, 1]]}"#,
                "not symmetric",
            ),
            (
                r#"{"type": "gaussian", "mean": [0, 0], "cov": [[1, 0, 0], [0, 1, 0]]}"#,
                "row 0 has 3 entries",
            ),
            (
                r#"{"type": "lognormal", "loc": [0], "scale": [-1]}"#,
                "scale[0] = -1 must be finite and > 0",
            ),
            (
                r#"{"type": "independent", "components": [{"type": "uniform", "low": 1, "high": 1}]}"#,
                "components[0]",
            ),
            (
                r#"{"type": "independent", "components": []}"#,
                "dimension 0",
            ),
            (r#"{"type": "beta", "a": 1}"#, "unknown variant"),
            (
                r#"{"type": "box_uniform", "low": [0], "hi": [1]}"#,
                "unknown field",
            ),
        ];
        for (s, want) in cases {
            let e = Prior::from_json(s).expect_err(s).to_string();
            assert!(
                e.contains(want),
                "{s}: error '{e}' does not mention '{want}'"
            );
        }
    }

    #[test]
    fn bounds_and_support() {
        let p = &priors()[0];
        assert_eq!(p.bounds(), Some((vec![-1.0, 0.5], vec![1.0, 3.0])));
        assert!(priors()[1].bounds().is_none());
        assert!(priors()[2].bounds().is_none());
        assert!(!p.in_support(&[1.5, 1.0]));
        assert_eq!(p.log_prob(&[1.5, 1.0]), f64::NEG_INFINITY);
        assert_eq!(priors()[2].log_prob(&[-0.1, 1.0]), f64::NEG_INFINITY);
    }
}

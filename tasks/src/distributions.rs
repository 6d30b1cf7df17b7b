//! Exact samplers used by the tasks: truncated normal (Robert 1995 style rejection).

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

#[inline]
pub fn std_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    StandardNormal.sample(rng)
}

/// Exact sample of Z ~ N(0,1) truncated to [a, b] (a < b; either may be infinite).
pub fn std_truncated_normal<R: Rng + ?Sized>(a: f64, b: f64, rng: &mut R) -> f64 {
    assert!(a < b, "truncated normal needs a < b (got [{a}, {b}])");
    if b <= 0.0 {
        return -std_truncated_normal(-b, -a, rng);
    }
    if a < 0.0 {
        // Interval contains 0.
        if b - a >= (2.0 * std::f64::consts::PI).sqrt() {
            // Normal rejection; acceptance ≥ ~0.49.
            loop {
                let z = std_normal(rng);
                if z >= a && z <= b {
                    return z;
                }
            }
        } else {
            // Uniform rejection with envelope 1 (the density's max is at 0 ∈ [a,b]).
            loop {
                let z = a + (b - a) * rng.random::<f64>();
                if rng.random::<f64>() <= (-0.5 * z * z).exp() {
                    return z;
                }
            }
        }
    }
    // 0 ≤ a < b.
    let lam = 0.5 * (a + (a * a + 4.0).sqrt());
    let threshold =
        2.0 * (0.5 + 0.25 * (a * a - a * (a * a + 4.0).sqrt())).exp() / (a + (a * a + 4.0).sqrt());
    if b - a < threshold {
        // Uniform rejection, envelope exp(-a²/2) at the left end.
        loop {
            let z = a + (b - a) * rng.random::<f64>();
            if rng.random::<f64>() <= (0.5 * (a * a - z * z)).exp() {
                return z;
            }
        }
    }
    // Translated-exponential rejection (Robert 1995).
    loop {
        let e: f64 = -(1.0 - rng.random::<f64>()).ln() / lam;
        let z = a + e;
        if z > b {
            continue;
        }
        if rng.random::<f64>() <= (-0.5 * (z - lam) * (z - lam)).exp() {
            return z;
        }
    }
}

/// Exact sample of N(mu, sigma²) truncated to [lo, hi].
pub fn truncated_normal<R: Rng + ?Sized>(
    mu: f64,
    sigma: f64,
    lo: f64,
    hi: f64,
    rng: &mut R,
) -> f64 {
    let z = std_truncated_normal((lo - mu) / sigma, (hi - mu) / sigma, rng);
    (mu + sigma * z).clamp(lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Xoshiro256pp;
    use crate::special::{log_ndtr_diff, LN_SQRT_2PI};

    /// Mean and variance of the standard normal truncated to [a,b], closed form.
    fn tn_moments(a: f64, b: f64) -> (f64, f64) {
        let lz = log_ndtr_diff(a, b);
        let pa = if a.is_finite() {
            (-0.5 * a * a - LN_SQRT_2PI - lz).exp()
        } else {
            0.0
        };
        let pb = if b.is_finite() {
            (-0.5 * b * b - LN_SQRT_2PI - lz).exp()
        } else {
            0.0
        };
        let mean = pa - pb;
        let aa = if a.is_finite() { a * pa } else { 0.0 };
        let bb = if b.is_finite() { b * pb } else { 0.0 };
        let var = 1.0 + aa - bb - mean * mean;
        (mean, var)
    }

    #[test]
    fn truncated_normal_moments_all_regimes() {
        let mut rng = Xoshiro256pp::from_seed_u64(3);
        let cases = [
            (-1.0, 1.0),
            (-0.2, 0.1),
            (-0.5, 8.0),
            (0.0, 0.5),
            (0.3, 0.4),
            (2.0, 2.2),
            (2.0, f64::INFINITY),
            (6.0, 9.0),
            (40.0, 41.0),
            (-3.0, -2.5),
            (f64::NEG_INFINITY, -5.0),
            (-50.0, 50.0),
        ];
        let n = 60_000;
        for (a, b) in cases {
            let (m, v) = tn_moments(a, b);
            let (mut s, mut s2) = (0.0, 0.0);
            for _ in 0..n {
                let z = std_truncated_normal(a, b, &mut rng);
                assert!(z >= a && z <= b);
                s += z;
                s2 += z * z;
            }
            let em = s / n as f64;
            let ev = s2 / n as f64 - em * em;
            let se = (v / n as f64).sqrt();
            assert!(
                (em - m).abs() < 5.0 * se + 1e-12,
                "[{a},{b}] mean {em} vs {m}"
            );
            assert!((ev / v - 1.0).abs() < 0.03, "[{a},{b}] var {ev} vs {v}");
        }
    }
}

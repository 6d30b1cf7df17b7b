//! Explicit ODE solvers: adaptive Dormand–Prince 5(4) stepping exactly onto the save times,
//! and a fixed-step classical RK4 (used as a check).

/// Tolerances and limits for [`dopri5`].
#[derive(Clone, Copy, Debug)]
pub struct OdeOptions {
    pub rtol: f64,
    pub atol: f64,
    /// Maximum number of attempted steps before giving up.
    pub max_steps: usize,
}

impl Default for OdeOptions {
    fn default() -> Self {
        Self {
            rtol: 1e-8,
            atol: 1e-10,
            max_steps: 100_000,
        }
    }
}

/// Why an ODE solve failed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OdeFailure {
    TooManySteps,
    NonFinite,
    StepTooSmall,
}

/// Statistics of one solve.
#[derive(Clone, Copy, Debug, Default)]
pub struct OdeStats {
    pub accepted: usize,
    pub rejected: usize,
    pub evals: usize,
}

// Dormand–Prince tableau.
const C2: f64 = 1.0 / 5.0;
const C3: f64 = 3.0 / 10.0;
const C4: f64 = 4.0 / 5.0;
const C5: f64 = 8.0 / 9.0;
const A21: f64 = 1.0 / 5.0;
const A31: f64 = 3.0 / 40.0;
const A32: f64 = 9.0 / 40.0;
const A41: f64 = 44.0 / 45.0;
const A42: f64 = -56.0 / 15.0;
const A43: f64 = 32.0 / 9.0;
const A51: f64 = 19372.0 / 6561.0;
const A52: f64 = -25360.0 / 2187.0;
const A53: f64 = 64448.0 / 6561.0;
const A54: f64 = -212.0 / 729.0;
const A61: f64 = 9017.0 / 3168.0;
const A62: f64 = -355.0 / 33.0;
const A63: f64 = 46732.0 / 5247.0;
const A64: f64 = 49.0 / 176.0;
const A65: f64 = -5103.0 / 18656.0;
const B1: f64 = 35.0 / 384.0;
const B3: f64 = 500.0 / 1113.0;
const B4: f64 = 125.0 / 192.0;
const B5: f64 = -2187.0 / 6784.0;
const B6: f64 = 11.0 / 84.0;
const E1: f64 = 71.0 / 57600.0;
const E3: f64 = -71.0 / 16695.0;
const E4: f64 = 71.0 / 1920.0;
const E5: f64 = -17253.0 / 339200.0;
const E6: f64 = 22.0 / 525.0;
const E7: f64 = -1.0 / 40.0;

/// Solves y' = f(t, y), y(t0) = y0 and writes y(`t_save[i]`) into `out[i]`.
/// `t_save` must be non-decreasing and ≥ t0. Steps are shortened to land exactly on each save time.
pub fn dopri5<const N: usize, F>(
    f: F,
    t0: f64,
    y0: [f64; N],
    t_save: &[f64],
    opts: &OdeOptions,
    out: &mut [[f64; N]],
) -> Result<OdeStats, OdeFailure>
where
    F: Fn(f64, &[f64; N], &mut [f64; N]),
{
    assert_eq!(out.len(), t_save.len());
    let mut stats = OdeStats::default();
    let mut t = t0;
    let mut y = y0;
    let mut k1 = [0.0; N];
    f(t, &y, &mut k1);
    stats.evals += 1;
    let t_end = *t_save.last().unwrap_or(&t0);
    let mut save_idx = 0;
    while save_idx < t_save.len() && t_save[save_idx] <= t {
        out[save_idx] = y;
        save_idx += 1;
    }
    if save_idx == t_save.len() {
        return Ok(stats);
    }
    let sc = |y: &[f64; N], i: usize| opts.atol + opts.rtol * y[i].abs();
    // Initial step (Hairer, Nørsett & Wanner, II.4).
    let mut h = {
        let d0 = (0..N)
            .map(|i| (y[i] / sc(&y, i)).powi(2))
            .sum::<f64>()
            .sqrt()
            / (N as f64).sqrt();
        let d1 = (0..N)
            .map(|i| (k1[i] / sc(&y, i)).powi(2))
            .sum::<f64>()
            .sqrt()
            / (N as f64).sqrt();
        let h0 = if d0 < 1e-5 || d1 < 1e-5 {
            1e-6
        } else {
            0.01 * d0 / d1
        };
        let mut y1 = [0.0; N];
        for i in 0..N {
            y1[i] = y[i] + h0 * k1[i];
        }
        let mut f1 = [0.0; N];
        f(t + h0, &y1, &mut f1);
        stats.evals += 1;
        let d2 = (0..N)
            .map(|i| ((f1[i] - k1[i]) / sc(&y, i)).powi(2))
            .sum::<f64>()
            .sqrt()
            / (N as f64).sqrt()
            / h0;
        let h1 = if d1.max(d2) <= 1e-15 {
            (h0 * 1e-3).max(1e-6)
        } else {
            (0.01 / d1.max(d2)).powf(0.2)
        };
        (100.0 * h0).min(h1).min(t_end - t)
    };
    let (mut k2, mut k3, mut k4, mut k5, mut k6, mut k7) =
        ([0.0; N], [0.0; N], [0.0; N], [0.0; N], [0.0; N], [0.0; N]);
    let mut ytmp = [0.0; N];
    let mut ynew = [0.0; N];
    let mut steps = 0usize;
    let mut err_prev: f64 = 1e-4;
    let mut last_rejected = false;
    while save_idx < t_save.len() {
        steps += 1;
        if steps > opts.max_steps {
            return Err(OdeFailure::TooManySteps);
        }
        let t_target = t_save[save_idx];
        let mut hit = false;
        let mut hs = h;
        if t + hs >= t_target - 1e-12 * t_target.abs().max(1.0) {
            hs = t_target - t;
            hit = true;
        }
        if hs <= 1e-14 * t.abs().max(1.0) {
            return Err(OdeFailure::StepTooSmall);
        }
        for i in 0..N {
            ytmp[i] = y[i] + hs * A21 * k1[i];
        }
        f(t + C2 * hs, &ytmp, &mut k2);
        for i in 0..N {
            ytmp[i] = y[i] + hs * (A31 * k1[i] + A32 * k2[i]);
        }
        f(t + C3 * hs, &ytmp, &mut k3);
        for i in 0..N {
            ytmp[i] = y[i] + hs * (A41 * k1[i] + A42 * k2[i] + A43 * k3[i]);
        }
        f(t + C4 * hs, &ytmp, &mut k4);
        for i in 0..N {
            ytmp[i] = y[i] + hs * (A51 * k1[i] + A52 * k2[i] + A53 * k3[i] + A54 * k4[i]);
        }
        f(t + C5 * hs, &ytmp, &mut k5);
        for i in 0..N {
            ytmp[i] =
                y[i] + hs * (A61 * k1[i] + A62 * k2[i] + A63 * k3[i] + A64 * k4[i] + A65 * k5[i]);
        }
        f(t + hs, &ytmp, &mut k6);
        for i in 0..N {
            ynew[i] = y[i] + hs * (B1 * k1[i] + B3 * k3[i] + B4 * k4[i] + B5 * k5[i] + B6 * k6[i]);
        }
        f(t + hs, &ynew, &mut k7);
        stats.evals += 6;
        let mut err = 0.0;
        for i in 0..N {
            let e =
                hs * (E1 * k1[i] + E3 * k3[i] + E4 * k4[i] + E5 * k5[i] + E6 * k6[i] + E7 * k7[i]);
            let s = opts.atol + opts.rtol * y[i].abs().max(ynew[i].abs());
            err += (e / s) * (e / s);
        }
        err = (err / N as f64).sqrt();
        if !err.is_finite() || ynew.iter().any(|v| !v.is_finite()) {
            // Treat as a rejected step with a strong reduction.
            stats.rejected += 1;
            h = hs * 0.2;
            last_rejected = true;
            if !h.is_finite() || h < 1e-14 {
                return Err(OdeFailure::NonFinite);
            }
            continue;
        }
        if err <= 1.0 {
            stats.accepted += 1;
            t = if hit { t_target } else { t + hs };
            y = ynew;
            k1 = k7;
            if hit {
                while save_idx < t_save.len() && t_save[save_idx] <= t {
                    out[save_idx] = y;
                    save_idx += 1;
                }
            }
            // PI step-size controller (β = 0.04, α = 0.2 − 0.75β).
            let fac = 0.9 * (-0.17 * err.max(1e-10).ln() + 0.04 * err_prev.ln()).exp();
            let fac = if last_rejected { fac.min(1.0) } else { fac };
            let hn = hs * fac.clamp(0.2, 10.0);
            // Do not let a clipped step shrink the natural step size.
            h = if hit { hn.max(h) } else { hn };
            err_prev = err.max(1e-4);
            last_rejected = false;
        } else {
            stats.rejected += 1;
            let fac = (0.9 * err.powf(-0.2)).max(0.2);
            h = hs * fac;
            last_rejected = true;
        }
    }
    Ok(stats)
}

/// Fixed-step classical RK4 from t0 over `n_steps` steps of size h; returns the state after
/// each step whose index is in `save_every` multiples (including step 0 = y0).
pub fn rk4_fixed<const N: usize, F>(
    f: F,
    t0: f64,
    y0: [f64; N],
    h: f64,
    n_steps: usize,
    save_every: usize,
) -> Vec<[f64; N]>
where
    F: Fn(f64, &[f64; N], &mut [f64; N]),
{
    let mut out = vec![y0];
    let mut y = y0;
    let mut t = t0;
    let (mut k1, mut k2, mut k3, mut k4, mut tmp) =
        ([0.0; N], [0.0; N], [0.0; N], [0.0; N], [0.0; N]);
    for step in 1..=n_steps {
        f(t, &y, &mut k1);
        for i in 0..N {
            tmp[i] = y[i] + 0.5 * h * k1[i];
        }
        f(t + 0.5 * h, &tmp, &mut k2);
        for i in 0..N {
            tmp[i] = y[i] + 0.5 * h * k2[i];
        }
        f(t + 0.5 * h, &tmp, &mut k3);
        for i in 0..N {
            tmp[i] = y[i] + h * k3[i];
        }
        f(t + h, &tmp, &mut k4);
        for i in 0..N {
            y[i] += h / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]);
        }
        t = t0 + step as f64 * h;
        if step % save_every == 0 {
            out.push(y);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_and_oscillator_exact() {
        // y' = -0.7 y
        let ts: Vec<f64> = (0..=10).map(|i| i as f64 * 0.9).collect();
        let mut out = vec![[0.0; 1]; ts.len()];
        dopri5(
            |_, y: &[f64; 1], d: &mut [f64; 1]| d[0] = -0.7 * y[0],
            0.0,
            [2.0],
            &ts,
            &OdeOptions::default(),
            &mut out,
        )
        .unwrap();
        for (t, y) in ts.iter().zip(out.iter()) {
            let want = 2.0 * (-0.7 * t).exp();
            assert!(
                (y[0] - want).abs() < 1e-7 * want.max(1e-3),
                "t={t}: {} vs {want}",
                y[0]
            );
        }
        // Harmonic oscillator over many periods.
        let ts: Vec<f64> = (0..=20).map(|i| i as f64 * 3.0).collect();
        let mut out = vec![[0.0; 2]; ts.len()];
        let st = dopri5(
            |_, y: &[f64; 2], d: &mut [f64; 2]| {
                d[0] = y[1];
                d[1] = -y[0];
            },
            0.0,
            [1.0, 0.0],
            &ts,
            &OdeOptions::default(),
            &mut out,
        )
        .unwrap();
        for (t, y) in ts.iter().zip(out.iter()) {
            assert!(
                (y[0] - t.cos()).abs() < 1e-7 && (y[1] + t.sin()).abs() < 1e-7,
                "t={t}: {y:?}"
            );
        }
        assert!(st.accepted > 10);
    }
}

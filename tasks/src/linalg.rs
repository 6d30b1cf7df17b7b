//! Dense small-matrix helpers (row-major `Vec<f64>`, d×d).

/// Cholesky factor L (lower, row-major) of a symmetric positive-definite matrix `a` (d×d).
/// Returns None if `a` is not (numerically) positive definite.
pub fn cholesky(a: &[f64], d: usize) -> Option<Vec<f64>> {
    assert_eq!(a.len(), d * d);
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut s = a[i * d + j];
            for k in 0..j {
                s -= l[i * d + k] * l[j * d + k];
            }
            if i == j {
                if !(s > 0.0) || !s.is_finite() {
                    return None;
                }
                l[i * d + i] = s.sqrt();
            } else {
                l[i * d + j] = s / l[j * d + j];
            }
        }
    }
    Some(l)
}

/// Solves L y = b in place (L lower-triangular, row-major).
pub fn solve_lower_in_place(l: &[f64], d: usize, b: &mut [f64]) {
    for i in 0..d {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i * d + k] * b[k];
        }
        b[i] = s / l[i * d + i];
    }
}

/// Solves Lᵀ y = b in place (L lower-triangular, row-major).
pub fn solve_upper_t_in_place(l: &[f64], d: usize, b: &mut [f64]) {
    for i in (0..d).rev() {
        let mut s = b[i];
        for k in i + 1..d {
            s -= l[k * d + i] * b[k];
        }
        b[i] = s / l[i * d + i];
    }
}

/// y = L z (L lower-triangular).
pub fn lower_mul(l: &[f64], d: usize, z: &[f64], out: &mut [f64]) {
    for i in 0..d {
        let mut s = 0.0;
        for k in 0..=i {
            s += l[i * d + k] * z[k];
        }
        out[i] = s;
    }
}

/// Σ log L_ii (= ½ log det A for A = L Lᵀ).
pub fn half_log_det(l: &[f64], d: usize) -> f64 {
    (0..d).map(|i| l[i * d + i].ln()).sum()
}

/// Inverse of an SPD matrix via its Cholesky factor.
pub fn spd_inverse(a: &[f64], d: usize) -> Option<Vec<f64>> {
    let l = cholesky(a, d)?;
    let mut inv = vec![0.0; d * d];
    let mut col = vec![0.0; d];
    for j in 0..d {
        col.iter_mut().for_each(|c| *c = 0.0);
        col[j] = 1.0;
        solve_lower_in_place(&l, d, &mut col);
        solve_upper_t_in_place(&l, d, &mut col);
        for i in 0..d {
            inv[i * d + j] = col[i];
        }
    }
    // symmetrize
    for i in 0..d {
        for j in 0..i {
            let v = 0.5 * (inv[i * d + j] + inv[j * d + i]);
            inv[i * d + j] = v;
            inv[j * d + i] = v;
        }
    }
    Some(inv)
}

/// C = A B for row-major A (n×m), B (m×p).
pub fn matmul(a: &[f64], b: &[f64], n: usize, m: usize, p: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * p];
    for i in 0..n {
        for k in 0..m {
            let aik = a[i * m + k];
            if aik == 0.0 {
                continue;
            }
            for j in 0..p {
                c[i * p + j] += aik * b[k * p + j];
            }
        }
    }
    c
}

/// Transpose of a row-major n×m matrix.
pub fn transpose(a: &[f64], n: usize, m: usize) -> Vec<f64> {
    let mut t = vec![0.0; n * m];
    for i in 0..n {
        for j in 0..m {
            t[j * n + i] = a[i * m + j];
        }
    }
    t
}

/// Weighted mean and covariance of rows (n×d) with non-negative weights summing to anything > 0.
pub fn weighted_mean_cov(x: &[f64], w: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let n = w.len();
    let ws: f64 = w.iter().sum();
    let mut mean = vec![0.0; d];
    for i in 0..n {
        for j in 0..d {
            mean[j] += w[i] * x[i * d + j];
        }
    }
    mean.iter_mut().for_each(|m| *m /= ws);
    let mut cov = vec![0.0; d * d];
    let mut c = vec![0.0; d];
    for i in 0..n {
        if w[i] == 0.0 {
            continue;
        }
        for j in 0..d {
            c[j] = x[i * d + j] - mean[j];
        }
        for a in 0..d {
            for b in 0..=a {
                cov[a * d + b] += w[i] * c[a] * c[b];
            }
        }
    }
    for a in 0..d {
        for b in 0..=a {
            let v = cov[a * d + b] / ws;
            cov[a * d + b] = v;
            cov[b * d + a] = v;
        }
    }
    (mean, cov)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_and_inverse() {
        let a = [4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0];
        let l = cholesky(&a, 3).unwrap();
        let lt = transpose(&l, 3, 3);
        let back = matmul(&l, &lt, 3, 3, 3);
        for (x, y) in back.iter().zip(a.iter()) {
            assert!((x - y).abs() < 1e-12);
        }
        let inv = spd_inverse(&a, 3).unwrap();
        let id = matmul(&a, &inv, 3, 3, 3);
        for i in 0..3 {
            for j in 0..3 {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((id[i * 3 + j] - want).abs() < 1e-12);
            }
        }
        assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
    }
}

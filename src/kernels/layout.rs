//! Host-side packing of row-major matrices into the kernels' vec4-padded layout.

/// Columns rounded up to a multiple of 4 (one vec4).
pub fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// `rows × cols` row-major f64 → `rows × pad4(cols)` f32 with zero padding.
pub fn pack(data: &[f64], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(
        data.len(),
        rows * cols,
        "pack: {} values for {rows}×{cols}",
        data.len()
    );
    let cp = pad4(cols);
    let mut out = vec![0f32; rows * cp];
    for r in 0..rows {
        for c in 0..cols {
            out[r * cp + c] = data[r * cols + c] as f32;
        }
    }
    out
}

/// Inverse of [`pack`]: drops the padding and widens to f64.
pub fn unpack(data: &[f32], rows: usize, cols: usize) -> Vec<f64> {
    let cp = pad4(cols);
    assert!(
        data.len() >= rows * cp,
        "unpack: {} values for {rows}×{cp}",
        data.len()
    );
    let mut out = vec![0f64; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[r * cols + c] = data[r * cp + c] as f64;
        }
    }
    out
}

/// A weight matrix `k × n` packed with its rows padded to pad4(k) (zero rows), as the dense kernels read it.
pub fn pack_weight(w: &[f64], k: usize, n: usize) -> Vec<f32> {
    let mut out = pack(w, k, n);
    out.resize(pad4(k) * pad4(n), 0.0);
    out
}

//! A plain-Rust f32 version of the residual-MLP training step (forward, MSE, backward, Adam),
//! single-threaded with cache-friendly loops: the baseline the GPU step is compared with.

use crate::models::mlp::{MlpConfig, MlpWeights};

/// y[r, :] = x[r, :] W + b  (W k×n row-major); i-k-j order so the inner loop is contiguous.
fn affine(x: &[f32], w: &[f32], b: &[f32], rows: usize, k: usize, n: usize, y: &mut [f32]) {
    for r in 0..rows {
        let yr = &mut y[r * n..(r + 1) * n];
        yr.copy_from_slice(b);
        for i in 0..k {
            let xv = x[r * k + i];
            let wr = &w[i * n..(i + 1) * n];
            for (o, wv) in yr.iter_mut().zip(wr) {
                *o += xv * wv;
            }
        }
    }
}

/// dx = dz Wᵀ
fn affine_back_input(dz: &[f32], w: &[f32], rows: usize, k: usize, n: usize, dx: &mut [f32]) {
    for r in 0..rows {
        let dzr = &dz[r * n..(r + 1) * n];
        for i in 0..k {
            let wr = &w[i * n..(i + 1) * n];
            dx[r * k + i] = dzr.iter().zip(wr).map(|(a, b)| a * b).sum();
        }
    }
}

/// dW = xᵀ dz, db = Σ dz
fn affine_back_weight(
    x: &[f32],
    dz: &[f32],
    rows: usize,
    k: usize,
    n: usize,
    dw: &mut [f32],
    db: &mut [f32],
) {
    dw.iter_mut().for_each(|v| *v = 0.0);
    db.iter_mut().for_each(|v| *v = 0.0);
    for r in 0..rows {
        let dzr = &dz[r * n..(r + 1) * n];
        for (a, b) in db.iter_mut().zip(dzr) {
            *a += b;
        }
        for i in 0..k {
            let xv = x[r * k + i];
            let dwr = &mut dw[i * n..(i + 1) * n];
            for (a, b) in dwr.iter_mut().zip(dzr) {
                *a += xv * b;
            }
        }
    }
}

/// One dense layer forward + backward (the GFLOP/s baseline): 6·rows·k·n flops.
pub fn dense_fwd_bwd(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    rows: usize,
    k: usize,
    n: usize,
    scratch: &mut DenseScratch,
) {
    affine(x, w, b, rows, k, n, &mut scratch.z);
    for v in scratch.z.iter_mut() {
        *v = v.max(0.0);
    }
    affine_back_input(&scratch.z, w, rows, k, n, &mut scratch.dx);
    affine_back_weight(x, &scratch.z, rows, k, n, &mut scratch.dw, &mut scratch.db);
}

pub struct DenseScratch {
    pub z: Vec<f32>,
    pub dx: Vec<f32>,
    pub dw: Vec<f32>,
    pub db: Vec<f32>,
}

impl DenseScratch {
    pub fn new(rows: usize, k: usize, n: usize) -> Self {
        DenseScratch {
            z: vec![0.0; rows * n],
            dx: vec![0.0; rows * k],
            dw: vec![0.0; k * n],
            db: vec![0.0; n],
        }
    }
}

/// The residual MLP with ReLU blocks, trained by Adam on MSE; f32 throughout.
pub struct CpuMlpTrainer {
    cfg: MlpConfig,
    rows: usize,
    w: Vec<Vec<f32>>,
    b: Vec<Vec<f32>>,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    step: i32,
    h: Vec<Vec<f32>>,
    z: Vec<Vec<f32>>,
    y: Vec<f32>,
}

impl CpuMlpTrainer {
    pub fn new(cfg: &MlpConfig, weights: &MlpWeights, rows: usize) -> Self {
        let w: Vec<Vec<f32>> = weights
            .w
            .iter()
            .map(|v| v.iter().map(|&a| a as f32).collect())
            .collect();
        let b: Vec<Vec<f32>> = weights
            .b
            .iter()
            .map(|v| v.iter().map(|&a| a as f32).collect())
            .collect();
        let m: Vec<Vec<f32>> = w.iter().chain(&b).map(|v| vec![0.0; v.len()]).collect();
        let hd = cfg.hidden;
        CpuMlpTrainer {
            cfg: cfg.clone(),
            rows,
            v: m.clone(),
            m,
            w,
            b,
            step: 0,
            h: vec![vec![0.0; rows * hd]; cfg.blocks + 1],
            z: vec![vec![0.0; rows * hd]; cfg.blocks],
            y: vec![0.0; rows * cfg.out_dim],
        }
    }

    /// One step on a batch; returns the batch MSE.
    pub fn step(&mut self, x: &[f32], t: &[f32], lr: f32) -> f32 {
        let (rows, hd, c) = (self.rows, self.cfg.hidden, self.cfg.clone());
        affine(
            x,
            &self.w[0],
            &self.b[0],
            rows,
            c.in_dim,
            hd,
            &mut self.h[0],
        );
        for j in 0..c.blocks {
            let (lo, hi) = self.h.split_at_mut(j + 1);
            affine(
                &lo[j],
                &self.w[j + 1],
                &self.b[j + 1],
                rows,
                hd,
                hd,
                &mut self.z[j],
            );
            for ((o, zz), hp) in hi[0].iter_mut().zip(&self.z[j]).zip(&lo[j]) {
                *o = hp + zz.max(0.0);
            }
        }
        let lo = c.blocks + 1;
        affine(
            &self.h[c.blocks],
            &self.w[lo],
            &self.b[lo],
            rows,
            hd,
            c.out_dim,
            &mut self.y,
        );
        let nn = (rows * c.out_dim) as f32;
        let mut loss = 0.0;
        let dy: Vec<f32> = self
            .y
            .iter()
            .zip(t)
            .map(|(p, q)| {
                loss += (p - q) * (p - q);
                2.0 * (p - q) / nn
            })
            .collect();
        let mut gw: Vec<Vec<f32>> = self.w.iter().map(|v| vec![0.0; v.len()]).collect();
        let mut gb: Vec<Vec<f32>> = self.b.iter().map(|v| vec![0.0; v.len()]).collect();
        affine_back_weight(
            &self.h[c.blocks],
            &dy,
            rows,
            hd,
            c.out_dim,
            &mut gw[lo],
            &mut gb[lo],
        );
        let mut dh = vec![0.0; rows * hd];
        affine_back_input(&dy, &self.w[lo], rows, hd, c.out_dim, &mut dh);
        let mut tmp = vec![0.0; rows * hd];
        for j in (0..c.blocks).rev() {
            let dz: Vec<f32> = dh
                .iter()
                .zip(&self.z[j])
                .map(|(g, zz)| if *zz > 0.0 { *g } else { 0.0 })
                .collect();
            affine_back_weight(
                &self.h[j],
                &dz,
                rows,
                hd,
                hd,
                &mut gw[j + 1],
                &mut gb[j + 1],
            );
            affine_back_input(&dz, &self.w[j + 1], rows, hd, hd, &mut tmp);
            for (a, b) in dh.iter_mut().zip(&tmp) {
                *a += b;
            }
        }
        affine_back_weight(x, &dh, rows, c.in_dim, hd, &mut gw[0], &mut gb[0]);
        // Adam with clipping at 5.
        let norm: f32 = gw
            .iter()
            .chain(&gb)
            .flatten()
            .map(|g| g * g)
            .sum::<f32>()
            .sqrt();
        let scale = (5.0 / (norm + 1e-6)).min(1.0);
        self.step += 1;
        let bc1 = 1.0 - 0.9f32.powi(self.step);
        let bc2 = 1.0 - 0.999f32.powi(self.step);
        let params = self.w.iter_mut().chain(self.b.iter_mut());
        let grads = gw.iter().chain(&gb);
        for (((p, g), m), v) in params
            .zip(grads)
            .zip(self.m.iter_mut())
            .zip(self.v.iter_mut())
        {
            for i in 0..p.len() {
                let gi = g[i] * scale;
                m[i] = 0.9 * m[i] + 0.1 * gi;
                v[i] = 0.999 * v[i] + 0.001 * gi * gi;
                p[i] -= lr * (m[i] / bc1) / ((v[i] / bc2).sqrt() + 1e-8);
            }
        }
        loss / nn
    }
}

//! The C2ST classifiers on the CPU, in f32: the network, batches, loss, L2 term and Adam steps of
//! the GPU backend, with `matrixmultiply`'s sgemm for the dense layers and one fold per rayon
//! task. Needs no GPU adapter.

use super::c2st::{C2stError, FoldTrainer, Setup};
use crate::kernels::adam::AdamConfig;
use crate::models::mlp::MlpWeights;
use rayon::prelude::*;
use std::ops::Range;

/// The classifier's shape: d inputs, two ReLU layers of h units, one logit. Its parameters live in
/// one flat vector, in layer order: W0 [d × h], b0 [h], W1 [h × h], b1 [h], W2 [h × 1], b2 [1]
/// (weights row-major, input × output, as in `MlpWeights`).
#[derive(Clone, Copy)]
struct Shape {
    d: usize,
    h: usize,
}

impl Shape {
    /// (inputs, outputs) of the three dense layers.
    fn layers(self) -> [(usize, usize); 3] {
        [(self.d, self.h), (self.h, self.h), (self.h, 1)]
    }

    /// Where layer l's weights and bias lie in the flat vector.
    fn slots(self) -> [(Range<usize>, Range<usize>); 3] {
        let mut off = 0;
        self.layers().map(|(k, n)| {
            let w = off..off + k * n;
            let b = w.end..w.end + n;
            off = b.end;
            (w, b)
        })
    }

    fn len(self) -> usize {
        self.slots()[2].1.end
    }
}

/// C = A·B + beta·C, C [m × n] row-major and contiguous; A [m × k] and B [k × n] are read through
/// (row, column) strides, so a transposed operand is the same slice with its strides swapped.
#[allow(clippy::too_many_arguments)]
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    sa: (usize, usize),
    b: &[f32],
    sb: (usize, usize),
    beta: f32,
    c: &mut [f32],
) {
    let last =
        |rows: usize, cols: usize, (rs, cs): (usize, usize)| (rows - 1) * rs + (cols - 1) * cs;
    assert!(m > 0 && k > 0 && n > 0, "gemm: empty operand");
    assert!(
        last(m, k, sa) < a.len() && last(k, n, sb) < b.len() && m * n <= c.len(),
        "gemm: operand out of bounds"
    );
    // SAFETY: the asserts keep every element sgemm reads or writes inside the slices, and `c`,
    // borrowed mutably, cannot alias `a` or `b`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            sa.0 as isize,
            sa.1 as isize,
            b.as_ptr(),
            sb.0 as isize,
            sb.1 as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// out [rows × n] = x [rows × k] · W [k × n] + b, then ReLU if `relu`.
#[allow(clippy::too_many_arguments)]
fn dense(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    rows: usize,
    k: usize,
    n: usize,
    relu: bool,
    out: &mut [f32],
) {
    let out = &mut out[..rows * n];
    for row in out.chunks_exact_mut(n) {
        row.copy_from_slice(b);
    }
    gemm(rows, k, n, x, (k, 1), w, (n, 1), 1.0, out);
    if relu {
        out.iter_mut().for_each(|v| *v = v.max(0.0));
    }
}

/// Logits z [rows] of input rows x [rows × d]; leaves both hidden layers' activations in h1, h2.
fn forward(
    s: Shape,
    p: &[f32],
    x: &[f32],
    rows: usize,
    h1: &mut [f32],
    h2: &mut [f32],
    z: &mut [f32],
) {
    let [(w0, b0), (w1, b1), (w2, b2)] = s.slots();
    dense(x, &p[w0], &p[b0], rows, s.d, s.h, true, h1);
    dense(h1, &p[w1], &p[b1], rows, s.h, s.h, true, h2);
    dense(h2, &p[w2], &p[b2], rows, s.h, 1, false, z);
}

/// One fold's classifier: parameters, gradient, Adam moments and the activations of one batch.
struct Fold {
    p: Vec<f32>,
    g: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    /// Adam steps taken.
    t: u32,
    x: Vec<f32>,
    y: Vec<f32>,
    h1: Vec<f32>,
    h2: Vec<f32>,
    /// The logits, then dL/dlogit.
    z: Vec<f32>,
    dh2: Vec<f32>,
    dh1: Vec<f32>,
}

/// What every fold's training reads.
struct Problem<'a> {
    s: Shape,
    /// All rows in f32, as the GPU holds them.
    data: &'a [f32],
    labels: &'a [f32],
    batch: usize,
    steps: usize,
    adam: AdamConfig,
    l2: f32,
}

/// gW = xᵀ·dz + l2·W [k × n] and gb = Σ_rows dz, for the layer that read x [rows × k].
#[allow(clippy::too_many_arguments)]
fn weight_grads(
    x: &[f32],
    dz: &[f32],
    w: &[f32],
    rows: usize,
    k: usize,
    n: usize,
    l2: f32,
    gw: &mut [f32],
    gb: &mut [f32],
) {
    for (g, &wi) in gw.iter_mut().zip(w) {
        *g = l2 * wi;
    }
    gemm(k, rows, n, x, (1, k), dz, (n, 1), 1.0, gw);
    gb.fill(0.0);
    for row in dz[..rows * n].chunks_exact(n) {
        for (g, &v) in gb.iter_mut().zip(row) {
            *g += v;
        }
    }
}

/// dh [rows × k] = dz [rows × n] · Wᵀ, zeroed where the ReLU output h was 0.
fn input_grad_relu(
    dz: &[f32],
    w: &[f32],
    h: &[f32],
    rows: usize,
    k: usize,
    n: usize,
    dh: &mut [f32],
) {
    let dh = &mut dh[..rows * k];
    gemm(rows, n, k, dz, (n, 1), w, (1, n), 0.0, dh);
    // A select, not a conditional store: the mask is random, so a branch would mispredict.
    for (g, &hv) in dh.iter_mut().zip(h) {
        *g = if hv > 0.0 { *g } else { 0.0 };
    }
}

impl Fold {
    fn new(s: Shape, init: &MlpWeights, batch: usize) -> Self {
        let p: Vec<f32> = init
            .w
            .iter()
            .zip(&init.b)
            .flat_map(|(w, b)| w.iter().chain(b))
            .map(|&v| v as f32)
            .collect();
        debug_assert_eq!(p.len(), s.len());
        let n = p.len();
        Fold {
            p,
            g: vec![0.0; n],
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
            x: vec![0.0; batch * s.d],
            y: vec![0.0; batch],
            h1: vec![0.0; batch * s.h],
            h2: vec![0.0; batch * s.h],
            z: vec![0.0; batch],
            dh2: vec![0.0; batch * s.h],
            dh1: vec![0.0; batch * s.h],
        }
    }

    /// One epoch over this fold's permutation; returns (Σ of the steps' mean batch losses, ‖W‖²).
    fn epoch(&mut self, pr: &Problem, perm: &[u32]) -> (f64, f64) {
        let mut sum = 0f32;
        for b in 0..pr.steps {
            // The last batch is completed from the start of the permutation, as on the GPU.
            let rows = (0..pr.batch).map(|j| perm[(b * pr.batch + j) % perm.len()] as usize);
            sum += self.step(pr, rows);
        }
        let sq = self.weights(pr.s).map(|v| (v as f64) * (v as f64)).sum();
        (sum as f64, sq)
    }

    /// The weights, biases excluded (what the L2 term counts).
    fn weights(&self, s: Shape) -> impl Iterator<Item = f32> + '_ {
        s.slots()
            .into_iter()
            .flat_map(move |(w, _)| self.p[w].iter().copied())
    }

    /// One Adam step on the batch of data rows `rows`; returns the batch's mean loss.
    fn step(&mut self, pr: &Problem, rows: impl Iterator<Item = usize>) -> f32 {
        let (s, batch) = (pr.s, pr.batch);
        let d = s.d;
        for (j, r) in rows.enumerate() {
            self.x[j * d..(j + 1) * d].copy_from_slice(&pr.data[r * d..(r + 1) * d]);
            self.y[j] = pr.labels[r];
        }
        forward(
            s,
            &self.p,
            &self.x,
            batch,
            &mut self.h1,
            &mut self.h2,
            &mut self.z,
        );

        // Binary cross-entropy of the logits, mean over the batch (the GPU's loss kernel).
        let inv = 1.0 / batch as f32;
        let mut loss = 0f32;
        for (z, &y) in self.z.iter_mut().zip(&self.y) {
            let v = *z;
            loss += (v.max(0.0) - y * v + (1.0 + (-v.abs()).exp()).ln()) * inv;
            *z = (1.0 / (1.0 + (-v.clamp(-80.0, 80.0)).exp()) - y) * inv;
        }

        let [(w0, b0), (w1, b1), (w2, b2)] = s.slots();
        let (p, g) = (&self.p, &mut self.g);
        let (g_lo, g_b2) = g.split_at_mut(b2.start);
        weight_grads(
            &self.h2,
            &self.z,
            &p[w2.clone()],
            batch,
            s.h,
            1,
            pr.l2,
            &mut g_lo[w2.clone()],
            g_b2,
        );
        input_grad_relu(&self.z, &p[w2], &self.h2, batch, s.h, 1, &mut self.dh2);
        let (g_lo, g_hi) = g.split_at_mut(b1.start);
        weight_grads(
            &self.h1,
            &self.dh2,
            &p[w1.clone()],
            batch,
            s.h,
            s.h,
            pr.l2,
            &mut g_lo[w1.clone()],
            &mut g_hi[..b1.len()],
        );
        input_grad_relu(&self.dh2, &p[w1], &self.h1, batch, s.h, s.h, &mut self.dh1);
        let (g_lo, g_hi) = g.split_at_mut(b0.start);
        weight_grads(
            &self.x,
            &self.dh1,
            &p[w0.clone()],
            batch,
            d,
            s.h,
            pr.l2,
            &mut g_lo[w0],
            &mut g_hi[..b0.len()],
        );

        self.adam(&pr.adam);
        loss
    }

    /// Adam with ε after bias correction, as the GPU's `adam_step` (Setup leaves its weight decay
    /// and clipping off).
    fn adam(&mut self, a: &AdamConfig) {
        self.t += 1;
        let t = self.t as f32;
        let (bc1, bc2) = (1.0 - a.beta1.powf(t), 1.0 - a.beta2.powf(t));
        for (((p, &g), m), v) in self
            .p
            .iter_mut()
            .zip(&self.g)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            *m = a.beta1 * *m + (1.0 - a.beta1) * g;
            *v = a.beta2 * *v + (1.0 - a.beta2) * g * g;
            // As shaders/adam.wgsl computes it, so both backends round alike.
            *p -= a.lr
                * if a.eps_on_raw_v {
                    *m * (bc2.sqrt() / bc1) / (v.sqrt() + a.eps)
                } else {
                    (*m / bc1) / ((*v / bc2).sqrt() + a.eps)
                };
        }
    }
}

pub(super) struct CpuFolds<'a> {
    setup: &'a Setup,
    s: Shape,
    data: Vec<f32>,
    folds: Vec<Fold>,
}

impl<'a> CpuFolds<'a> {
    pub fn new(setup: &'a Setup) -> Self {
        debug_assert!(setup.adam.weight_decay == 0.0 && setup.adam.max_norm <= 0.0);
        let s = Shape {
            d: setup.d,
            h: setup.mlp.hidden,
        };
        CpuFolds {
            setup,
            s,
            data: setup.data.iter().map(|&v| v as f32).collect(),
            folds: setup
                .weights
                .iter()
                .map(|w| Fold::new(s, w, setup.batch))
                .collect(),
        }
    }
}

impl FoldTrainer for CpuFolds<'_> {
    /// Trains the active folds in parallel; stopped ones are left as they are.
    fn epoch(&mut self, perm: &[u32], active: &[bool]) -> Result<Vec<(f64, f64)>, C2stError> {
        let st = self.setup;
        let pr = Problem {
            s: self.s,
            data: &self.data,
            labels: &st.labels,
            batch: st.batch,
            steps: st.steps,
            adam: st.adam,
            l2: st.l2,
        };
        Ok(self
            .folds
            .par_iter_mut()
            .zip(perm.par_chunks(st.n_train))
            .zip(active.par_iter())
            .map(|((fold, perm), &on)| {
                if on {
                    fold.epoch(&pr, perm)
                } else {
                    (0.0, 0.0)
                }
            })
            .collect())
    }

    fn accuracy(&mut self, f: usize) -> Result<f64, C2stError> {
        let (s, fold) = (self.s, &self.setup.folds[f]);
        let rows = fold.len();
        let x: Vec<f32> = fold
            .iter()
            .flat_map(|&i| self.data[i * s.d..(i + 1) * s.d].iter().copied())
            .collect();
        let (mut h1, mut h2, mut z) = (
            vec![0.0; rows * s.h],
            vec![0.0; rows * s.h],
            vec![0.0; rows],
        );
        forward(s, &self.folds[f].p, &x, rows, &mut h1, &mut h2, &mut z);
        let correct = fold
            .iter()
            .zip(&z)
            .filter(|(&i, &v)| (v > 0.0) == (self.setup.labels[i] > 0.5))
            .count();
        Ok(correct as f64 / rows as f64)
    }
}

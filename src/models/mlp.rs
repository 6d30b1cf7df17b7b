//! Residual MLP on the GPU, with an f64 CPU reference of the same network.
//!
//!   h₀ = x W_in + b_in
//!   h_{j+1} = h_j + act(h_j W_j + b_j)        j = 0 … blocks−1
//!   y = h_L W_out + b_out
//!
//! Parameters live in one arena (each tensor aligned for binding as a slice), so the optimizer is
//! one launch. A [`MlpPlan`] owns the activations for one batch size and the recorded launches of
//! the forward and backward passes; backward fuses each activation derivative into the launch
//! that produces the gradient feeding it (two launches per layer).

use crate::kernels::dense::{self, DenseParams};
use crate::kernels::layout::{pack_weight, pad4, unpack};
use crate::kernels::Activation;
use crate::runtime::{Dispatch, GpuContext, GpuResult, GpuTensor};
use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    pub in_dim: usize,
    pub out_dim: usize,
    pub hidden: usize,
    pub blocks: usize,
    pub act: Activation,
}

/// Arena alignment in elements: 256 bytes, the usual storage-offset alignment.
const ALIGN: usize = 64;

/// One dense layer's place in the arena.
#[derive(Clone, Debug)]
pub struct LayerSlot {
    pub k: usize,
    pub n: usize,
    pub w_off: usize,
    pub b_off: usize,
}


impl MlpConfig {
    /// (in, out) widths of every dense layer in order: input, blocks, output.
    pub fn layer_dims(&self) -> Vec<(usize, usize)> {
        let mut d = vec![(self.in_dim, self.hidden)];
        d.extend(std::iter::repeat_n((self.hidden, self.hidden), self.blocks));
        d.push((self.hidden, self.out_dim));
        d
    }

    /// Arena layout and total length (multiple of 4).
    pub fn arena_layout(&self, min_align: usize) -> (Vec<LayerSlot>, usize) {
        let a = |n: usize| n.div_ceil(min_align.max(4)) * min_align.max(4);
        let mut off = 0;
        let mut slots = vec![];
        for (k, n) in self.layer_dims() {
            let w_off = off;
            off = a(off + pad4(k) * pad4(n));
            let b_off = off;
            off = a(off + pad4(n));
            slots.push(LayerSlot { k, n, w_off, b_off });
        }
        (slots, off)
    }

    pub fn num_params(&self) -> usize {
        self.layer_dims().iter().map(|(k, n)| k * n + n).sum()
    }

    /// Multiply-adds of one forward pass per row (backward costs twice this).
    pub fn flops_per_row(&self) -> f64 {
        self.layer_dims().iter().map(|(k, n)| 2.0 * (*k * *n) as f64).sum()
    }
}

/// Unpadded f64 weights of every layer, row-major W [k×n] and b [n]; the CPU reference's form.
#[derive(Clone, Debug)]
pub struct MlpWeights {
    pub w: Vec<Vec<f64>>,
    pub b: Vec<Vec<f64>>,
}

impl MlpWeights {
    /// PyTorch-style uniform(±1/√fan_in) init; residual blocks start scaled down so the
    /// network is near its skip path at the start.
    pub fn init(cfg: &MlpConfig, rng: &mut impl Rng) -> Self {
        let dims = cfg.layer_dims();
        let last = dims.len() - 1;
        let mut w = vec![];
        let mut b = vec![];
        for (i, &(k, n)) in dims.iter().enumerate() {
            let bound = 1.0 / (k as f64).sqrt();
            let scale = if i > 0 && i < last { 0.5 } else { 1.0 };
            w.push((0..k * n).map(|_| rng.random_range(-bound..bound) * scale).collect());
            b.push((0..n).map(|_| rng.random_range(-bound..bound) * scale).collect());
        }
        MlpWeights { w, b }
    }

    /// Packs into an arena of `len` floats at the slots' offsets.
    pub fn to_arena(&self, slots: &[LayerSlot], len: usize) -> Vec<f32> {
        let mut a = vec![0f32; len];
        for (i, s) in slots.iter().enumerate() {
            let w = pack_weight(&self.w[i], s.k, s.n);
            a[s.w_off..s.w_off + w.len()].copy_from_slice(&w);
            for (j, &v) in self.b[i].iter().enumerate() {
                a[s.b_off + j] = v as f32;
            }
        }
        a
    }

    pub fn from_arena(arena: &[f32], slots: &[LayerSlot]) -> Self {
        let mut w = vec![];
        let mut b = vec![];
        for s in slots {
            w.push(unpack(&arena[s.w_off..s.w_off + pad4(s.k) * pad4(s.n)], s.k, s.n));
            b.push(arena[s.b_off..s.b_off + s.n].iter().map(|&v| v as f64).collect());
        }
        MlpWeights { w, b }
    }
}

/// The network's parameters and gradients on the GPU.
pub struct Mlp {
    pub config: MlpConfig,
    pub slots: Vec<LayerSlot>,
    pub params: GpuTensor,
    pub grads: GpuTensor,
}

impl Mlp {
    pub fn new(ctx: &GpuContext, config: MlpConfig, weights: &MlpWeights) -> GpuResult<Self> {
        let align_elems = (ctx.limits.min_storage_buffer_offset_alignment as usize / 4).max(ALIGN);
        let (slots, len) = config.arena_layout(align_elems);
        let params = ctx.tensor_from("mlp-params", &weights.to_arena(&slots, len))?;
        let grads = ctx.tensor_zeros("mlp-grads", len)?;
        Ok(Mlp { config, slots, params, grads })
    }

    pub fn weights(&self, ctx: &GpuContext) -> GpuResult<MlpWeights> {
        Ok(MlpWeights::from_arena(&ctx.read::<f32>(&self.params)?, &self.slots))
    }

    pub fn gradients(&self, ctx: &GpuContext) -> GpuResult<MlpWeights> {
        Ok(MlpWeights::from_arena(&ctx.read::<f32>(&self.grads)?, &self.slots))
    }

    fn w(&self, t: &GpuTensor, i: usize) -> GpuTensor {
        let s = &self.slots[i];
        t.view("w", s.w_off, pad4(s.k) * pad4(s.n))
    }

    fn b(&self, t: &GpuTensor, i: usize) -> GpuTensor {
        let s = &self.slots[i];
        t.view("b", s.b_off, pad4(s.n))
    }
}

/// Activations, gradients and recorded launches of one network for a fixed batch size.
pub struct MlpPlan {
    pub rows: usize,
    /// Input [rows, pad4(in)]: write a batch here.
    pub x: GpuTensor,
    /// Output [rows, pad4(out)].
    pub y: GpuTensor,
    /// Gradient of the loss w.r.t. the output [rows, pad4(out)]: a loss kernel writes it.
    pub dy: GpuTensor,
    pub forward: Vec<Dispatch>,
    pub backward: Vec<Dispatch>,
    _keep: Vec<GpuTensor>,
    _uniforms: Vec<wgpu::Buffer>,
}

impl MlpPlan {
    pub fn new(ctx: &GpuContext, mlp: &Mlp, rows: usize) -> GpuResult<Self> {
        let c = &mlp.config;
        let (h4, in4, out4) = (pad4(c.hidden), pad4(c.in_dim), pad4(c.out_dim));
        let nl = c.blocks + 2;
        let x = ctx.tensor_zeros("mlp-x", rows * in4)?;
        let y = ctx.tensor_zeros("mlp-y", rows * out4)?;
        let dy = ctx.tensor_zeros("mlp-dy", rows * out4)?;
        // h[j] for j = 0..=blocks, z[j] pre-activations of block j.
        let h: Vec<GpuTensor> = (0..=c.blocks).map(|_| ctx.tensor_zeros("mlp-h", rows * h4)).collect::<GpuResult<_>>()?;
        let z: Vec<GpuTensor> = (0..c.blocks).map(|_| ctx.tensor_zeros("mlp-z", rows * h4)).collect::<GpuResult<_>>()?;
        let dh: Vec<GpuTensor> = (0..=c.blocks).map(|_| ctx.tensor_zeros("mlp-dh", rows * h4)).collect::<GpuResult<_>>()?;
        let dz: Vec<GpuTensor> = (0..c.blocks).map(|_| ctx.tensor_zeros("mlp-dz", rows * h4)).collect::<GpuResult<_>>()?;
        let mut uniforms = vec![];
        let mut shapes = vec![];
        for s in &mlp.slots {
            let sh = DenseParams::new(rows, s.k, s.n);
            uniforms.push(ctx.uniform("dense-params", &sh));
            shapes.push(sh);
        }
        let (p, g) = (&mlp.params, &mlp.grads);
        let mut forward = vec![];
        forward.push(dense::forward(ctx, &uniforms[0], shapes[0], Activation::Identity, &x, &mlp.w(p, 0), &mlp.b(p, 0), None, None, &h[0])?);
        for j in 0..c.blocks {
            let l = j + 1;
            forward.push(dense::forward(ctx, &uniforms[l], shapes[l], c.act, &h[j], &mlp.w(p, l), &mlp.b(p, l), Some(&h[j]), Some(&z[j]), &h[j + 1])?);
        }
        let lo = nl - 1;
        forward.push(dense::forward(ctx, &uniforms[lo], shapes[lo], Activation::Identity, &h[c.blocks], &mlp.w(p, lo), &mlp.b(p, lo), None, None, &y)?);

        let mut backward = vec![];
        // Output layer: dh_L = dy W_outᵀ, and dz_{L-1} = dh_L ⊙ act'(z_{L-1}) fused.
        let epi = |j: usize| if c.blocks > 0 && j < c.blocks { Some((c.act, &z[j], &dz[j])) } else { None };
        let top = c.blocks;
        backward.push(dense::backward_input(ctx, &uniforms[lo], shapes[lo], &dy, &mlp.w(p, lo), None, if top > 0 { epi(top - 1) } else { None }, &dh[top])?);
        backward.push(dense::backward_weight(ctx, &uniforms[lo], shapes[lo], &h[top], &dy, &mlp.w(g, lo), &mlp.b(g, lo), false)?);
        for j in (0..c.blocks).rev() {
            let l = j + 1;
            // dh_j = dz_j W_jᵀ + dh_{j+1}; and dz_{j-1} fused.
            backward.push(dense::backward_input(ctx, &uniforms[l], shapes[l], &dz[j], &mlp.w(p, l), Some(&dh[j + 1]), if j > 0 { epi(j - 1) } else { None }, &dh[j])?);
            backward.push(dense::backward_weight(ctx, &uniforms[l], shapes[l], &h[j], &dz[j], &mlp.w(g, l), &mlp.b(g, l), false)?);
        }
        backward.push(dense::backward_weight(ctx, &uniforms[0], shapes[0], &x, &dh[0], &mlp.w(g, 0), &mlp.b(g, 0), false)?);

        let mut keep = vec![];
        keep.extend(h);
        keep.extend(z);
        keep.extend(dh);
        keep.extend(dz);
        Ok(MlpPlan { rows, x, y, dy, forward, backward, _keep: keep, _uniforms: uniforms })
    }
}

/// f64 reference of the same network.
pub mod cpu {
    use super::{MlpConfig, MlpWeights};
    use crate::kernels::dense::cpu as d;
    use crate::kernels::Activation;

    pub struct Tape {
        pub h: Vec<Vec<f64>>,
        pub z: Vec<Vec<f64>>,
        pub y: Vec<f64>,
    }

    pub fn forward(cfg: &MlpConfig, w: &MlpWeights, x: &[f64], rows: usize) -> Tape {
        let hd = cfg.hidden;
        let (_, h0) = d::forward(x, &w.w[0], &w.b[0], None, rows, cfg.in_dim, hd, Activation::Identity);
        let mut h = vec![h0];
        let mut z = vec![];
        for j in 0..cfg.blocks {
            let (zj, hj) = d::forward(&h[j], &w.w[j + 1], &w.b[j + 1], Some(&h[j]), rows, hd, hd, cfg.act);
            z.push(zj);
            h.push(hj);
        }
        let lo = cfg.blocks + 1;
        let (_, y) = d::forward(&h[cfg.blocks], &w.w[lo], &w.b[lo], None, rows, hd, cfg.out_dim, Activation::Identity);
        Tape { h, z, y }
    }

    /// Gradients of Σ dy ⊙ y with respect to every weight.
    pub fn backward(cfg: &MlpConfig, w: &MlpWeights, x: &[f64], rows: usize, tape: &Tape, dy: &[f64]) -> MlpWeights {
        let hd = cfg.hidden;
        let nl = cfg.blocks + 2;
        let mut gw = vec![vec![]; nl];
        let mut gb = vec![vec![]; nl];
        let lo = nl - 1;
        let (a, b) = d::backward_weight(&tape.h[cfg.blocks], dy, rows, hd, cfg.out_dim);
        gw[lo] = a;
        gb[lo] = b;
        let mut dh = d::backward_input(dy, &w.w[lo], None, rows, hd, cfg.out_dim);
        for j in (0..cfg.blocks).rev() {
            let dz = d::act_backward(&dh, &tape.z[j], cfg.act);
            let (a, b) = d::backward_weight(&tape.h[j], &dz, rows, hd, hd);
            gw[j + 1] = a;
            gb[j + 1] = b;
            dh = d::backward_input(&dz, &w.w[j + 1], Some(&dh), rows, hd, hd);
        }
        let (a, b) = d::backward_weight(x, &dh, rows, cfg.in_dim, hd);
        gw[0] = a;
        gb[0] = b;
        MlpWeights { w: gw, b: gb }
    }
}

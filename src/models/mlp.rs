//! Multi-layer perceptrons on the GPU, with an f64 CPU reference of the same network.
//!
//! Residual form (default):          plain form (`residual: false`):
//!   h₀ = x W₀ + b₀                    h₀ = act(x W₀ + b₀)
//!   h_l = h_{l−1} + act(h_{l−1} W_l + b_l)   h_l = act(h_{l−1} W_l + b_l)     l = 1 … blocks
//!   y = h_L W_out + b_out             y = h_L W_out + b_out
//!
//! Parameters live in one arena (each tensor aligned for binding as a slice), so the optimizer is
//! one launch. Several independent models of one shape (the folds of a cross-validation, say)
//! can share the arena and every launch: the kernels' grid depth walks the models.
//! A [`MlpPlan`] owns the activations for one batch size and the recorded launches of the
//! forward and backward passes; backward fuses each activation derivative into the launch that
//! produces the gradient feeding it (two launches per layer). [`MlpPlan::with_input_grad`] also
//! writes the gradient with respect to the input rows (one more launch).

use super::arena::{ArenaLayout, ParamArena};
use crate::kernels::dense::{self, DenseParams};
use crate::kernels::layout::{pack_weight, pad4, unpack};
use crate::kernels::Activation;
use crate::runtime::{Dispatch, GpuContext, GpuResult, GpuTensor};
use rand::Rng;
use serde::{Deserialize, Serialize};

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    pub in_dim: usize,
    pub out_dim: usize,
    pub hidden: usize,
    /// Hidden-to-hidden layers after the first hidden layer.
    pub blocks: usize,
    pub act: Activation,
    /// Skip connections around each block (and a linear first layer).
    #[serde(default = "yes")]
    pub residual: bool,
}

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

    /// Whether hidden layer `l` (0 = first) applies the activation (and so keeps a pre-activation).
    pub fn has_act(&self, l: usize) -> bool {
        !self.residual || l > 0
    }

    pub fn num_params(&self) -> usize {
        self.layer_dims().iter().map(|(k, n)| k * n + n).sum()
    }

    /// Multiply-adds of one forward pass per row (backward costs twice this).
    pub fn flops_per_row(&self) -> f64 {
        self.layer_dims()
            .iter()
            .map(|(k, n)| 2.0 * (*k * *n) as f64)
            .sum()
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
            let scale = if cfg.residual && i > 0 && i < last {
                0.5
            } else {
                1.0
            };
            w.push(
                (0..k * n)
                    .map(|_| rng.random_range(-bound..bound) * scale)
                    .collect(),
            );
            b.push(
                (0..n)
                    .map(|_| rng.random_range(-bound..bound) * scale)
                    .collect(),
            );
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
            w.push(unpack(
                &arena[s.w_off..s.w_off + pad4(s.k) * pad4(s.n)],
                s.k,
                s.n,
            ));
            b.push(
                arena[s.b_off..s.b_off + s.n]
                    .iter()
                    .map(|&v| v as f64)
                    .collect(),
            );
        }
        MlpWeights { w, b }
    }
}

/// The parameters and gradients of `models` networks of one shape, on the GPU.
pub struct Mlp {
    pub config: MlpConfig,
    pub models: usize,
    pub slots: Vec<LayerSlot>,
    /// Arena length of one model (floats); model m starts at m · model_len.
    pub model_len: usize,
    pub params: GpuTensor,
    pub grads: GpuTensor,
}

impl Mlp {
    pub fn new(ctx: &GpuContext, config: MlpConfig, weights: &MlpWeights) -> GpuResult<Self> {
        Self::new_batched(ctx, config, std::slice::from_ref(weights))
    }

    /// One model per entry of `weights`, all trained in the same launches.
    pub fn new_batched(
        ctx: &GpuContext,
        config: MlpConfig,
        weights: &[MlpWeights],
    ) -> GpuResult<Self> {
        let align = ArenaLayout::new(ctx).align;
        let arena = ParamArena::new(ctx, &Self::init_arena(&config, weights, align))?;
        Ok(Self::from_views(
            config,
            weights.len(),
            arena.params,
            arena.grads,
            align,
        ))
    }

    /// Floats one model occupies in an arena aligned to `align` floats.
    pub fn model_len(config: &MlpConfig, align: usize) -> usize {
        config.arena_layout(align).1
    }

    /// The arena contents for `weights` (one block per model).
    pub fn init_arena(config: &MlpConfig, weights: &[MlpWeights], align: usize) -> Vec<f32> {
        let (slots, len) = config.arena_layout(align);
        weights
            .iter()
            .flat_map(|w| w.to_arena(&slots, len))
            .collect()
    }

    /// Networks whose parameters and gradients are views into an arena owned elsewhere
    /// (length `models · model_len(config, align)` each).
    pub fn from_views(
        config: MlpConfig,
        models: usize,
        params: GpuTensor,
        grads: GpuTensor,
        align: usize,
    ) -> Self {
        let (slots, model_len) = config.arena_layout(align);
        assert!(
            params.len >= models * model_len && grads.len >= models * model_len,
            "arena block too small for the MLP"
        );
        Mlp {
            config,
            models,
            slots,
            model_len,
            params,
            grads,
        }
    }

    fn unpack_models(&self, arena: &[f32]) -> Vec<MlpWeights> {
        arena
            .chunks(self.model_len)
            .map(|a| MlpWeights::from_arena(a, &self.slots))
            .collect()
    }

    /// Weights of every model.
    pub fn weights_all(&self, ctx: &GpuContext) -> GpuResult<Vec<MlpWeights>> {
        Ok(self.unpack_models(&ctx.read::<f32>(&self.params)?))
    }

    pub fn weights(&self, ctx: &GpuContext) -> GpuResult<MlpWeights> {
        Ok(self.weights_all(ctx)?.swap_remove(0))
    }

    pub fn gradients_all(&self, ctx: &GpuContext) -> GpuResult<Vec<MlpWeights>> {
        Ok(self.unpack_models(&ctx.read::<f32>(&self.grads)?))
    }

    pub fn gradients(&self, ctx: &GpuContext) -> GpuResult<MlpWeights> {
        Ok(self.gradients_all(ctx)?.swap_remove(0))
    }

    /// W of layer i for all models: a view from model 0's W to the end of the last model's.
    fn w(&self, t: &GpuTensor, i: usize) -> GpuTensor {
        let s = &self.slots[i];
        t.view(
            "w",
            s.w_off,
            (self.models - 1) * self.model_len + pad4(s.k) * pad4(s.n),
        )
    }

    fn b(&self, t: &GpuTensor, i: usize) -> GpuTensor {
        let s = &self.slots[i];
        t.view("b", s.b_off, (self.models - 1) * self.model_len + pad4(s.n))
    }
}

/// Activations, gradients and recorded launches of the networks for a fixed batch size.
pub struct MlpPlan {
    pub rows: usize,
    /// Input [models, rows, pad4(in)]: write a batch here.
    pub x: GpuTensor,
    /// Output [models, rows, pad4(out)].
    pub y: GpuTensor,
    /// Gradient of the loss w.r.t. the output [models, rows, pad4(out)]: a loss kernel writes it.
    pub dy: GpuTensor,
    /// Gradient of the loss w.r.t. the input [models, rows, pad4(in)], written by the last
    /// `backward` launch: only for a plan from [`MlpPlan::with_input_grad`].
    pub dx: Option<GpuTensor>,
    pub forward: Vec<Dispatch>,
    pub backward: Vec<Dispatch>,
    _keep: Vec<GpuTensor>,
    _uniforms: Vec<wgpu::Buffer>,
}

impl MlpPlan {
    pub fn new(ctx: &GpuContext, mlp: &Mlp, rows: usize) -> GpuResult<Self> {
        Self::with_l2(ctx, mlp, rows, 0.0)
    }

    /// Forward only (no pre-activations kept, no gradient buffers, `backward` empty): evaluation
    /// of large batches, such as the rejection sampler's proposals.
    pub fn inference(ctx: &GpuContext, mlp: &Mlp, rows: usize) -> GpuResult<Self> {
        let c = &mlp.config;
        let f = mlp.models;
        let (h4, in4, out4) = (pad4(c.hidden), pad4(c.in_dim), pad4(c.out_dim));
        let lo = c.blocks + 1;
        let x = ctx.tensor_zeros("mlp-x", f * rows * in4)?;
        let y = ctx.tensor_zeros("mlp-y", f * rows * out4)?;
        // Two hidden buffers suffice: layer l reads h[(l+1)%2] and writes h[l%2].
        let h = [
            ctx.tensor_zeros("mlp-h", f * rows * h4)?,
            ctx.tensor_zeros("mlp-h", f * rows * h4)?,
        ];
        let mut uniforms = vec![];
        let mut forward = vec![];
        for (l, s) in mlp.slots.iter().enumerate() {
            let sh = DenseParams::new(rows, s.k, s.n).batched(f, mlp.model_len, mlp.model_len);
            uniforms.push(ctx.uniform("dense-params", &sh));
            let input = if l == 0 { &x } else { &h[(l + 1) % 2] };
            let out = if l == lo { &y } else { &h[l % 2] };
            let act = if l < lo && c.has_act(l) {
                c.act
            } else {
                Activation::Identity
            };
            let res = if c.residual && l > 0 && l < lo {
                Some(&h[(l + 1) % 2])
            } else {
                None
            };
            forward.push(dense::forward(
                ctx,
                &uniforms[l],
                sh,
                act,
                input,
                &mlp.w(&mlp.params, l),
                &mlp.b(&mlp.params, l),
                res,
                None,
                out,
            )?);
        }
        Ok(MlpPlan {
            rows,
            x,
            y,
            dy: ctx.tensor_zeros("mlp-dy-unused", 4)?,
            dx: None,
            forward,
            backward: vec![],
            _keep: h.into(),
            _uniforms: uniforms,
        })
    }

    /// With an L2 penalty `l2 · ‖W‖² / 2` on the weights (not biases) folded into their gradients.
    pub fn with_l2(ctx: &GpuContext, mlp: &Mlp, rows: usize, l2: f32) -> GpuResult<Self> {
        Self::build(ctx, mlp, rows, l2, false)
    }

    /// As [`MlpPlan::new`], and `backward` ends with the gradient with respect to the input rows,
    /// dX = dZ₀ W₀ᵀ (dZ₀: the gradient reaching the first layer's pre-activation), in `dx`.
    pub fn with_input_grad(ctx: &GpuContext, mlp: &Mlp, rows: usize) -> GpuResult<Self> {
        Self::build(ctx, mlp, rows, 0.0, true)
    }

    fn build(
        ctx: &GpuContext,
        mlp: &Mlp,
        rows: usize,
        l2: f32,
        input_grad: bool,
    ) -> GpuResult<Self> {
        let c = &mlp.config;
        let f = mlp.models;
        let (h4, in4, out4) = (pad4(c.hidden), pad4(c.in_dim), pad4(c.out_dim));
        let nl = c.blocks + 2;
        let lo = nl - 1;
        let top = c.blocks;
        let zeros = |label: &str, n: usize| ctx.tensor_zeros(label, f * rows * n);
        let x = zeros("mlp-x", in4)?;
        let y = zeros("mlp-y", out4)?;
        let dy = zeros("mlp-dy", out4)?;
        // Hidden layer l: output h[l], pre-activation z[l] (if it has an activation), and gradients.
        let h: Vec<GpuTensor> = (0..=top)
            .map(|_| zeros("mlp-h", h4))
            .collect::<GpuResult<_>>()?;
        let z: Vec<GpuTensor> = (0..=top)
            .map(|_| zeros("mlp-z", h4))
            .collect::<GpuResult<_>>()?;
        let dh: Vec<GpuTensor> = (0..=top)
            .map(|_| zeros("mlp-dh", h4))
            .collect::<GpuResult<_>>()?;
        let dz: Vec<GpuTensor> = (0..=top)
            .map(|_| zeros("mlp-dz", h4))
            .collect::<GpuResult<_>>()?;
        let mut uniforms = vec![];
        let mut shapes = vec![];
        for s in &mlp.slots {
            let sh = DenseParams::new(rows, s.k, s.n)
                .batched(f, mlp.model_len, mlp.model_len)
                .with_l2(l2);
            uniforms.push(ctx.uniform("dense-params", &sh));
            shapes.push(sh);
        }
        let l2w = |t: GpuTensor| if l2 != 0.0 { Some(t) } else { None };
        let (p, g) = (&mlp.params, &mlp.grads);
        let mut forward = vec![];
        for l in 0..=top {
            let input = if l == 0 { &x } else { &h[l - 1] };
            let act = if c.has_act(l) {
                c.act
            } else {
                Activation::Identity
            };
            let res = if c.residual && l > 0 {
                Some(&h[l - 1])
            } else {
                None
            };
            let zl = if c.has_act(l) { Some(&z[l]) } else { None };
            forward.push(dense::forward(
                ctx,
                &uniforms[l],
                shapes[l],
                act,
                input,
                &mlp.w(p, l),
                &mlp.b(p, l),
                res,
                zl,
                &h[l],
            )?);
        }
        forward.push(dense::forward(
            ctx,
            &uniforms[lo],
            shapes[lo],
            Activation::Identity,
            &h[top],
            &mlp.w(p, lo),
            &mlp.b(p, lo),
            None,
            None,
            &y,
        )?);

        // The gradient reaching layer l's pre-activation: dz[l] where it has an activation.
        let pre_grad = |l: usize| if c.has_act(l) { &dz[l] } else { &dh[l] };
        let epi = |l: usize| {
            if c.has_act(l) {
                Some((c.act, &z[l], &dz[l]))
            } else {
                None
            }
        };
        let mut backward = vec![];
        backward.push(dense::backward_input(
            ctx,
            &uniforms[lo],
            shapes[lo],
            &dy,
            &mlp.w(p, lo),
            None,
            epi(top),
            &dh[top],
        )?);
        backward.push(dense::backward_weight(
            ctx,
            &uniforms[lo],
            shapes[lo],
            &h[top],
            &dy,
            &mlp.w(g, lo),
            &mlp.b(g, lo),
            false,
            l2w(mlp.w(p, lo)).as_ref(),
        )?);
        for l in (0..=top).rev() {
            let input = if l == 0 { &x } else { &h[l - 1] };
            if l > 0 {
                let res = if c.residual { Some(&dh[l]) } else { None };
                backward.push(dense::backward_input(
                    ctx,
                    &uniforms[l],
                    shapes[l],
                    pre_grad(l),
                    &mlp.w(p, l),
                    res,
                    epi(l - 1),
                    &dh[l - 1],
                )?);
            }
            backward.push(dense::backward_weight(
                ctx,
                &uniforms[l],
                shapes[l],
                input,
                pre_grad(l),
                &mlp.w(g, l),
                &mlp.b(g, l),
                false,
                l2w(mlp.w(p, l)).as_ref(),
            )?);
        }
        let dx = if input_grad {
            let dx = zeros("mlp-dx", in4)?;
            backward.push(dense::backward_input(
                ctx,
                &uniforms[0],
                shapes[0],
                pre_grad(0),
                &mlp.w(p, 0),
                None,
                None,
                &dx,
            )?);
            Some(dx)
        } else {
            None
        };

        let mut keep = vec![];
        keep.extend(h);
        keep.extend(z);
        keep.extend(dh);
        keep.extend(dz);
        Ok(MlpPlan {
            rows,
            x,
            y,
            dy,
            dx,
            forward,
            backward,
            _keep: keep,
            _uniforms: uniforms,
        })
    }
}

/// f64 reference of the same network (one model).
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
        let mut h: Vec<Vec<f64>> = vec![];
        let mut z = vec![];
        for l in 0..=cfg.blocks {
            let (input, k) = if l == 0 {
                (x, cfg.in_dim)
            } else {
                (&h[l - 1][..], hd)
            };
            let act = if cfg.has_act(l) {
                cfg.act
            } else {
                Activation::Identity
            };
            let res = if cfg.residual && l > 0 {
                Some(input)
            } else {
                None
            };
            let (zl, hl) = d::forward(input, &w.w[l], &w.b[l], res, rows, k, hd, act);
            z.push(zl);
            h.push(hl);
        }
        let lo = cfg.blocks + 1;
        let (_, y) = d::forward(
            &h[cfg.blocks],
            &w.w[lo],
            &w.b[lo],
            None,
            rows,
            hd,
            cfg.out_dim,
            Activation::Identity,
        );
        Tape { h, z, y }
    }

    /// Gradients of Σ dy ⊙ y (+ l2·‖W‖²/2 over weights) with respect to every parameter.
    pub fn backward(
        cfg: &MlpConfig,
        w: &MlpWeights,
        x: &[f64],
        rows: usize,
        tape: &Tape,
        dy: &[f64],
        l2: f64,
    ) -> MlpWeights {
        backward_with_input(cfg, w, x, rows, tape, dy, l2).0
    }

    /// As [`backward`], and the gradient of Σ dy ⊙ y with respect to the input x [rows × in_dim].
    pub fn backward_with_input(
        cfg: &MlpConfig,
        w: &MlpWeights,
        x: &[f64],
        rows: usize,
        tape: &Tape,
        dy: &[f64],
        l2: f64,
    ) -> (MlpWeights, Vec<f64>) {
        let hd = cfg.hidden;
        let nl = cfg.blocks + 2;
        let mut gw = vec![vec![]; nl];
        let mut gb = vec![vec![]; nl];
        let lo = nl - 1;
        let (a, b) = d::backward_weight(&tape.h[cfg.blocks], dy, rows, hd, cfg.out_dim);
        gw[lo] = a;
        gb[lo] = b;
        let mut dh = d::backward_input(dy, &w.w[lo], None, rows, hd, cfg.out_dim);
        let mut dx = vec![];
        for l in (0..=cfg.blocks).rev() {
            let g = if cfg.has_act(l) {
                d::act_backward(&dh, &tape.z[l], cfg.act)
            } else {
                dh.clone()
            };
            let (input, k) = if l == 0 {
                (x, cfg.in_dim)
            } else {
                (&tape.h[l - 1][..], hd)
            };
            let (a, b) = d::backward_weight(input, &g, rows, k, hd);
            gw[l] = a;
            gb[l] = b;
            if l > 0 {
                dh = d::backward_input(
                    &g,
                    &w.w[l],
                    if cfg.residual { Some(&dh) } else { None },
                    rows,
                    hd,
                    hd,
                );
            } else {
                dx = d::backward_input(&g, &w.w[0], None, rows, cfg.in_dim, hd);
            }
        }
        for (g, wl) in gw.iter_mut().zip(&w.w) {
            for (gi, wi) in g.iter_mut().zip(wl) {
                *gi += l2 * wi;
            }
        }
        (MlpWeights { w: gw, b: gb }, dx)
    }
}

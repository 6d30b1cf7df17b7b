//! Generalized-KL losses of the ratio and hybrid surrogates (`shaders/gkl.wgsl`): assembling the
//! ratio network's joint and contrastive input rows, and the loss with its gradient and the
//! Monte-Carlo statistics of Z(x). f64 references in [`cpu`].

use crate::kernels::layout::pad4;
use crate::runtime::{groups_1d, Bind, Dispatch, GpuContext, GpuError, GpuResult, GpuTensor};

/// Where sexp turns linear (see the shader): e^20 ≈ 4.9e8 stays far from f32 overflow.
pub const SEXP_CAP: f64 = 20.0;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GklParams {
    pub b: u32,
    pub k: u32,
    pub d: u32,
    pub dx: u32,
    pub in4: u32,
    pub d4: u32,
    pub x4: u32,
    pub scale: f32,
    /// Rows counted by the loss (≤ b): the others get exactly zero gradients (the padding of a
    /// short last micro-batch).
    pub valid: u32,
    pub _pad: [u32; 3],
}

impl GklParams {
    /// `b` joint pairs, `k` contrastive pairs per x, θ width `d`, x width `dx`; scale 1/b.
    pub fn new(b: usize, k: usize, d: usize, dx: usize) -> Self {
        GklParams {
            b: b as u32,
            k: k as u32,
            d: d as u32,
            dx: dx as u32,
            in4: (pad4(d + dx) / 4) as u32,
            d4: (pad4(d) / 4) as u32,
            x4: (pad4(dx) / 4) as u32,
            scale: 1.0 / b as f32,
            valid: b as u32,
            _pad: [0; 3],
        }
    }

    /// A micro-batch of a batch of `batch` rows: loss scale 1/batch, only the first `valid` rows
    /// counted.
    pub fn micro(mut self, batch: usize, valid: usize) -> Self {
        self.scale = 1.0 / batch as f32;
        self.valid = valid.min(self.b as usize) as u32;
        self
    }

    /// Rows of the ratio network's batch: b joint + b·k contrastive.
    pub fn rows(&self) -> usize {
        (self.b * (1 + self.k)) as usize
    }
}

/// Where the contrastive θ' come from.
#[derive(Clone, Copy, Debug)]
pub enum Contrast<'a> {
    /// θ_{(i+k+1) mod B} of the same batch: prior draws (the ratio surrogate); needs k < B.
    Batch,
    /// Rows i·K + k of a [B·K, pad4(d)] buffer (draws from the base flow: the hybrid).
    Draws(&'a GpuTensor),
}

/// Writes `out` [B(1+K), pad4(d+dx)]: joint rows then contrastive rows (see the shader).
pub fn pairs(
    ctx: &GpuContext,
    uniform: &wgpu::Buffer,
    p: &GklParams,
    theta: &GpuTensor,
    x: &GpuTensor,
    contrast: Contrast,
    out: &GpuTensor,
) -> GpuResult<Dispatch> {
    if matches!(contrast, Contrast::Batch) && p.k >= p.b {
        return Err(GpuError::InvalidArgument(format!(
            "{} contrastive pairs per x need a batch of more than {} rows",
            p.k, p.k
        )));
    }
    let (dr, dw) = ctx.dummies()?;
    let (mode, neg) = match contrast {
        Contrast::Batch => (0.0, dr),
        Contrast::Draws(t) => (1.0, t),
    };
    ctx.dispatch(
        "gkl",
        "pairs",
        &[("WG", 64.0), ("MODE", mode)],
        &[
            Bind::U(uniform),
            Bind::T(theta),
            Bind::T(x),
            Bind::T(neg),
            Bind::T(out),
            Bind::T(dw),
        ],
        groups_1d(p.rows(), 64),
    )
}

/// The prior's support in network space for the hybrid's masked partition term: `bounds` is
/// [lo_0 … lo_{d−1}, hi_0 … hi_{d−1}] and `draws` the contrastive θ' [B·K, pad4(d)].
#[derive(Clone, Copy, Debug)]
pub struct SupportMask<'a> {
    pub bounds: &'a GpuTensor,
    pub draws: &'a GpuTensor,
}

/// One workgroup: dL/df into `df` (column 0 of [rows, 4]; skipped when `write_grad` is false) and
/// `acc[0..3] += (Σ −f_joint, Σ_i Ẑ_i, Σ_i Ẑ_i²)`. With `mask`, contrastive θ' outside the support
/// count as exp f = 0 (see the shader).
pub fn loss(
    ctx: &GpuContext,
    uniform: &wgpu::Buffer,
    f: &GpuTensor,
    df: &GpuTensor,
    acc: &GpuTensor,
    write_grad: bool,
    mask: Option<SupportMask>,
) -> GpuResult<Dispatch> {
    let (dr, _) = ctx.dummies()?;
    let (bounds, draws) = mask.map_or((dr, dr), |m| (m.bounds, m.draws));
    ctx.dispatch(
        "gkl",
        "loss",
        &[
            ("CAP", SEXP_CAP),
            ("WRITE_GRAD", write_grad as u8 as f64),
            ("MASKED", mask.is_some() as u8 as f64),
        ],
        &[
            Bind::U(uniform),
            Bind::T(f),
            Bind::T(bounds),
            Bind::T(draws),
            Bind::T(df),
            Bind::T(acc),
        ],
        [1, 1, 1],
    )
}

/// f64 references.
pub mod cpu {
    use super::SEXP_CAP;

    pub fn sexp(f: f64) -> f64 {
        if f <= SEXP_CAP {
            f.exp()
        } else {
            SEXP_CAP.exp() * (1.0 + f - SEXP_CAP)
        }
    }

    /// Ratio input rows (unpadded, width d + dx): joint then contrastive, as the shader orders them.
    /// `neg`: the hybrid's draws [B·K, d]; `None`: θ' from the batch.
    pub fn pairs(
        theta: &[f64],
        x: &[f64],
        neg: Option<&[f64]>,
        b: usize,
        k: usize,
        d: usize,
        dx: usize,
    ) -> Vec<f64> {
        let mut out = Vec::with_capacity(b * (1 + k) * (d + dx));
        for r in 0..b * (1 + k) {
            let (i, th) = if r < b {
                (r, &theta[r * d..(r + 1) * d])
            } else {
                let j = r - b;
                let i = j / k;
                match neg {
                    None => {
                        let s = (i + j % k + 1) % b;
                        (i, &theta[s * d..(s + 1) * d])
                    }
                    Some(n) => (i, &n[j * d..(j + 1) * d]),
                }
            };
            out.extend_from_slice(th);
            out.extend_from_slice(&x[i * dx..(i + 1) * dx]);
        }
        out
    }

    /// The loss L = (1/B) Σ_i [−f_i + (1/K) Σ_k sexp f_ik] over f = [joint B | contrastive B·K].
    pub fn loss(f: &[f64], b: usize, k: usize) -> f64 {
        loss_masked(f, b, k, None)
    }

    /// As [`loss`], the sum over k taken only where `inside[i·K + k]`.
    pub fn loss_masked(f: &[f64], b: usize, k: usize, inside: Option<&[bool]>) -> f64 {
        let mut l = 0.0;
        for i in 0..b {
            l -= f[i];
            l += (0..k)
                .filter(|&kk| inside.is_none_or(|m| m[i * k + kk]))
                .map(|kk| sexp(f[b + i * k + kk]))
                .sum::<f64>()
                / k as f64;
        }
        l / b as f64
    }

    /// Whether each row of `theta` [rows, d] lies in the box `bounds` = [lo…, hi…] (inclusive).
    pub fn inside(theta: &[f64], d: usize, bounds: &[f64]) -> Vec<bool> {
        theta
            .chunks(d)
            .map(|r| (0..d).all(|c| r[c] >= bounds[c] && r[c] <= bounds[d + c]))
            .collect()
    }

    /// dL/df and (Σ −f_joint, Σ Ẑ_i, Σ Ẑ_i²).
    pub fn loss_grad(f: &[f64], b: usize, k: usize) -> (Vec<f64>, [f64; 3]) {
        loss_grad_micro(f, b, k, b, b)
    }

    /// As [`loss_grad`] for a micro-batch of `b` rows of a batch of `batch`: the loss scale is
    /// 1/batch and only rows i < `valid` count (the others' gradients are zero).
    pub fn loss_grad_micro(
        f: &[f64],
        b: usize,
        k: usize,
        valid: usize,
        batch: usize,
    ) -> (Vec<f64>, [f64; 3]) {
        loss_grad_masked(f, b, k, valid, batch, None)
    }

    /// As [`loss_grad_micro`], with `inside[i·K + k]` false for contrastive θ' outside the
    /// support: they add nothing to Ẑ and get zero gradients.
    pub fn loss_grad_masked(
        f: &[f64],
        b: usize,
        k: usize,
        valid: usize,
        batch: usize,
        inside: Option<&[bool]>,
    ) -> (Vec<f64>, [f64; 3]) {
        let mut g = vec![0.0; f.len()];
        let mut s = [0.0; 3];
        for i in 0..valid.min(b) {
            g[i] = -1.0 / batch as f64;
            s[0] -= f[i];
            let mut z = 0.0;
            for kk in 0..k {
                let j = b + i * k + kk;
                if inside.is_some_and(|m| !m[i * k + kk]) {
                    continue;
                }
                z += sexp(f[j]);
                g[j] = f[j].min(SEXP_CAP).exp() / (batch * k) as f64;
            }
            z /= k as f64;
            s[1] += z;
            s[2] += z * z;
        }
        (g, s)
    }
}

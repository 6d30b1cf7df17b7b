//! Dense layer kernels (`shaders/dense.wgsl`): launchers and the f64 CPU reference.
//!
//! Forward  Z = X W + b, A = act(Z) (+ R)
//! Backward dX = dZ Wᵀ (+ R), optionally dZprev = dX ⊙ act'(Zprev); dW = Xᵀ dZ, db = Σ_rows dZ.

use super::activation::Activation;
use super::layout::pad4;
use crate::runtime::{Bind, Dispatch, GpuContext, GpuResult, GpuTensor};

pub const SHADER: &str = "dense";
const WG: u32 = 8;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DenseParams {
    pub rows: u32,
    pub k: u32,
    pub n: u32,
    pub k4: u32,
    pub n4: u32,
    /// Per-model strides, in floats /4 (vec4 units): input side, output side, W, b.
    pub sx: u32,
    pub sy: u32,
    pub sw: u32,
    pub sb: u32,
    pub l2: f32,
    pub models: u32,
    pub _pad: u32,
}

impl DenseParams {
    /// One model: X [rows, k] → Y [rows, n].
    pub fn new(rows: usize, k: usize, n: usize) -> Self {
        DenseParams {
            rows: rows as u32,
            k: k as u32,
            n: n as u32,
            k4: (pad4(k) / 4) as u32,
            n4: (pad4(n) / 4) as u32,
            sx: 0,
            sy: 0,
            sw: 0,
            sb: 0,
            l2: 0.0,
            models: 1,
            _pad: 0,
        }
    }

    /// `models` independent layers in one launch: activations packed model after model
    /// ([models, rows, pad4]), and W, b of model m at m·`w_stride`, m·`b_stride` floats.
    pub fn batched(mut self, models: usize, w_stride: usize, b_stride: usize) -> Self {
        assert!(
            w_stride % 4 == 0 && b_stride % 4 == 0,
            "strides must be whole vec4s"
        );
        self.models = models as u32;
        self.sx = self.rows * self.k4;
        self.sy = self.rows * self.n4;
        self.sw = (w_stride / 4) as u32;
        self.sb = (b_stride / 4) as u32;
        self
    }

    /// backward_weight adds `l2 · W` to dW.
    pub fn with_l2(mut self, l2: f32) -> Self {
        self.l2 = l2;
        self
    }
}

fn wg_consts() -> [(&'static str, f64); 2] {
    [("WG_X", WG as f64), ("WG_Y", WG as f64)]
}

/// Forward launch. `z` receives the pre-activation (needed by the backward pass) unless `act` is
/// the identity, in which case `a` is the pre-activation and `z` may be `None`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    ctx: &GpuContext,
    params: &wgpu::Buffer,
    shape: DenseParams,
    act: Activation,
    x: &GpuTensor,
    w: &GpuTensor,
    b: &GpuTensor,
    residual: Option<&GpuTensor>,
    z: Option<&GpuTensor>,
    a: &GpuTensor,
) -> GpuResult<Dispatch> {
    let (dr, dw) = ctx.dummies()?;
    let mut c = wg_consts().to_vec();
    c.push(("ACT", act.id()));
    c.push(("RESIDUAL", residual.is_some() as u8 as f64));
    ctx.dispatch(
        SHADER,
        "forward",
        &c,
        &[
            Bind::U(params),
            Bind::T(x),
            Bind::T(w),
            Bind::T(b),
            Bind::T(residual.unwrap_or(dr)),
            Bind::T(z.unwrap_or(dw)),
            Bind::T(a),
        ],
        [
            shape.n4.div_ceil(WG),
            shape.rows.div_ceil(4).div_ceil(WG),
            shape.models.max(1),
        ],
    )
}

/// Backward to the input. With `epilogue = Some((act, zprev, dzprev))` it also writes
/// `dzprev = dX ⊙ act'(zprev)`, fusing the previous layer's activation derivative.
#[allow(clippy::too_many_arguments)]
pub fn backward_input(
    ctx: &GpuContext,
    params: &wgpu::Buffer,
    shape: DenseParams,
    dz: &GpuTensor,
    w: &GpuTensor,
    residual_grad: Option<&GpuTensor>,
    epilogue: Option<(Activation, &GpuTensor, &GpuTensor)>,
    dx: &GpuTensor,
) -> GpuResult<Dispatch> {
    let (dr, dw) = ctx.dummies()?;
    let mut c = wg_consts().to_vec();
    c.push(("RESIDUAL", residual_grad.is_some() as u8 as f64));
    c.push(("EPI_ACT", epilogue.map_or(0.0, |e| e.0.id())));
    ctx.dispatch(
        SHADER,
        "backward_input",
        &c,
        &[
            Bind::U(params),
            Bind::T(dz),
            Bind::T(w),
            Bind::T(residual_grad.unwrap_or(dr)),
            Bind::T(epilogue.map_or(dr, |e| e.1)),
            Bind::T(dx),
            Bind::T(epilogue.map_or(dw, |e| e.2)),
        ],
        [
            shape.k4.div_ceil(WG),
            shape.rows.div_ceil(4).div_ceil(WG),
            shape.models.max(1),
        ],
    )
}

/// Weight and bias gradients; `accumulate` adds into `dw`, `db` instead of overwriting.
/// With `l2_weights = Some(W)` (and `shape.l2` set) the L2 penalty's gradient l2·W is added to dW.
#[allow(clippy::too_many_arguments)]
pub fn backward_weight(
    ctx: &GpuContext,
    params: &wgpu::Buffer,
    shape: DenseParams,
    x: &GpuTensor,
    dz: &GpuTensor,
    dw: &GpuTensor,
    db: &GpuTensor,
    accumulate: bool,
    l2_weights: Option<&GpuTensor>,
) -> GpuResult<Dispatch> {
    let (dr, _) = ctx.dummies()?;
    let mut c = wg_consts().to_vec();
    c.push(("ACCUM", accumulate as u8 as f64));
    c.push(("L2_ON", l2_weights.is_some() as u8 as f64));
    ctx.dispatch(
        SHADER,
        "backward_weight",
        &c,
        &[
            Bind::U(params),
            Bind::T(x),
            Bind::T(dz),
            Bind::T(l2_weights.unwrap_or(dr)),
            Bind::T(dr),
            Bind::T(dw),
            Bind::T(db),
        ],
        [
            shape.n4.div_ceil(WG),
            shape.k4.div_ceil(WG),
            shape.models.max(1),
        ],
    )
}

/// f64 references, row-major and unpadded.
pub mod cpu {
    use super::Activation;

    /// Returns (Z, A).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        x: &[f64],
        w: &[f64],
        b: &[f64],
        residual: Option<&[f64]>,
        rows: usize,
        k: usize,
        n: usize,
        act: Activation,
    ) -> (Vec<f64>, Vec<f64>) {
        let mut z = vec![0.0; rows * n];
        for r in 0..rows {
            for o in 0..n {
                let mut s = b[o];
                for i in 0..k {
                    s += x[r * k + i] * w[i * n + o];
                }
                z[r * n + o] = s;
            }
        }
        let mut a: Vec<f64> = z.iter().map(|&v| act.f(v)).collect();
        if let Some(res) = residual {
            for (ai, ri) in a.iter_mut().zip(res) {
                *ai += ri;
            }
        }
        (z, a)
    }

    /// dX = dZ Wᵀ (+ R).
    pub fn backward_input(
        dz: &[f64],
        w: &[f64],
        residual_grad: Option<&[f64]>,
        rows: usize,
        k: usize,
        n: usize,
    ) -> Vec<f64> {
        let mut dx = vec![0.0; rows * k];
        for r in 0..rows {
            for i in 0..k {
                let mut s = 0.0;
                for o in 0..n {
                    s += dz[r * n + o] * w[i * n + o];
                }
                dx[r * k + i] = s + residual_grad.map_or(0.0, |g| g[r * k + i]);
            }
        }
        dx
    }

    /// (dW, db).
    pub fn backward_weight(
        x: &[f64],
        dz: &[f64],
        rows: usize,
        k: usize,
        n: usize,
    ) -> (Vec<f64>, Vec<f64>) {
        let mut dw = vec![0.0; k * n];
        let mut db = vec![0.0; n];
        for r in 0..rows {
            for o in 0..n {
                let d = dz[r * n + o];
                db[o] += d;
                for i in 0..k {
                    dw[i * n + o] += x[r * k + i] * d;
                }
            }
        }
        (dw, db)
    }

    /// dZ = dA ⊙ act'(Z).
    pub fn act_backward(da: &[f64], z: &[f64], act: Activation) -> Vec<f64> {
        da.iter().zip(z).map(|(&g, &v)| g * act.df(v)).collect()
    }
}

//! Element-wise kernels (`shaders/elementwise.wgsl`) on flat arrays: activations and their
//! derivatives, and the gradient accumulation of micro-batched training steps.

use super::activation::Activation;
use crate::runtime::{groups_1d, Bind, Dispatch, GpuContext, GpuResult, GpuTensor};

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct EwParams {
    pub n: u32,
    pub alpha: f32,
    pub beta: f32,
    pub _pad: u32,
}

impl EwParams {
    pub fn new(n: usize) -> Self {
        EwParams {
            n: n as u32,
            alpha: 1.0,
            beta: 0.0,
            _pad: 0,
        }
    }

    /// The uniform of [`accumulate`]: overwrite (`add` false) or add.
    pub fn accumulate(n: usize, add: bool) -> Self {
        EwParams {
            n: n as u32,
            alpha: 1.0,
            beta: if add { 1.0 } else { 0.0 },
            _pad: 0,
        }
    }
}

const WG: u32 = 256;

/// y = act(x)
pub fn act_forward(
    ctx: &GpuContext,
    params: &wgpu::Buffer,
    n: usize,
    act: Activation,
    x: &GpuTensor,
    y: &GpuTensor,
) -> GpuResult<Dispatch> {
    let (dr, _) = ctx.dummies()?;
    ctx.dispatch(
        "elementwise",
        "act_forward",
        &[("ACT", act.id()), ("WG", WG as f64)],
        &[Bind::U(params), Bind::T(x), Bind::T(dr), Bind::T(y)],
        groups_1d(n, WG),
    )
}

/// dx = dy ⊙ act'(x)
#[allow(clippy::too_many_arguments)]
pub fn act_backward(
    ctx: &GpuContext,
    params: &wgpu::Buffer,
    n: usize,
    act: Activation,
    x: &GpuTensor,
    dy: &GpuTensor,
    dx: &GpuTensor,
) -> GpuResult<Dispatch> {
    ctx.dispatch(
        "elementwise",
        "act_backward",
        &[("ACT", act.id()), ("WG", WG as f64)],
        &[Bind::U(params), Bind::T(x), Bind::T(dy), Bind::T(dx)],
        groups_1d(n, WG),
    )
}

/// Gradient accumulation over micro-batches: `y = x` (`add` false) or `y = y + x` (`add` true)
/// on the first `n` elements. `params` holds [`EwParams::accumulate`]`(n, add)`.
pub fn accumulate(
    ctx: &GpuContext,
    params: &wgpu::Buffer,
    n: usize,
    x: &GpuTensor,
    y: &GpuTensor,
) -> GpuResult<Dispatch> {
    if x.len < n || y.len < n {
        return Err(crate::runtime::GpuError::InvalidArgument(format!(
            "accumulate over {n} elements: '{}' has {}, '{}' has {}",
            x.label, x.len, y.label, y.len
        )));
    }
    let (dr, _) = ctx.dummies()?;
    ctx.dispatch(
        "elementwise",
        "accumulate",
        &[("WG", WG as f64)],
        &[Bind::U(params), Bind::T(x), Bind::T(dr), Bind::T(y)],
        groups_1d(n, WG),
    )
}

/// f64 references.
pub mod cpu {
    /// `y = x` (`add` false) or `y += x` (`add` true), elementwise.
    pub fn accumulate(x: &[f64], y: &mut [f64], add: bool) {
        for (yi, &xi) in y.iter_mut().zip(x) {
            *yi = if add { *yi + xi } else { xi };
        }
    }
}

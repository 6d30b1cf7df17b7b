//! Element-wise activation kernels (`shaders/elementwise.wgsl`) on flat arrays.

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

//! Minibatch gathering on the GPU (`shaders/gather.wgsl`): lets a whole epoch of training steps
//! go out in one submission, each step picking its batch by the optimizer's step counter.

use crate::runtime::{groups_1d, Bind, Dispatch, GpuContext, GpuResult, GpuTensor};

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GatherParams {
    pub rows: u32,
    pub d4: u32,
    pub n_train: u32,
    pub steps: u32,
    pub models: u32,
    pub _pad: [u32; 3],
}

const WG: u32 = 64;

/// `data` [N, d4·4] and `labels` [N] resident; `perm` [models, n_train] of row indices;
/// `counter` word 0 selects the batch. Writes `x_out` [models, rows, d4·4] and `y_out` [models, rows, 4].
#[allow(clippy::too_many_arguments)]
pub fn gather_batch(
    ctx: &GpuContext,
    params: &wgpu::Buffer,
    p: &GatherParams,
    data: &GpuTensor,
    labels: &GpuTensor,
    perm: &GpuTensor,
    counter: &GpuTensor,
    x_out: &GpuTensor,
    y_out: &GpuTensor,
) -> GpuResult<Dispatch> {
    ctx.dispatch(
        "gather",
        "gather_batch",
        &[("WG", WG as f64)],
        &[
            Bind::U(params),
            Bind::T(data),
            Bind::T(labels),
            Bind::T(perm),
            Bind::T(counter),
            Bind::T(x_out),
            Bind::T(y_out),
        ],
        groups_1d((p.rows * p.models) as usize, WG),
    )
}

/// As [`gather_batch`] without labels: `x_out[m, r] = data[perm[m, (b·rows + r) mod n_train]]`.
#[allow(clippy::too_many_arguments)]
pub fn gather_rows(
    ctx: &GpuContext,
    params: &wgpu::Buffer,
    p: &GatherParams,
    data: &GpuTensor,
    perm: &GpuTensor,
    counter: &GpuTensor,
    x_out: &GpuTensor,
) -> GpuResult<Dispatch> {
    let (dr, dw) = ctx.dummies()?;
    ctx.dispatch(
        "gather",
        "gather_rows",
        &[("WG", WG as f64)],
        &[Bind::U(params), Bind::T(data), Bind::T(dr), Bind::T(perm), Bind::T(counter), Bind::T(x_out), Bind::T(dw)],
        groups_1d((p.rows * p.models) as usize, WG),
    )
}

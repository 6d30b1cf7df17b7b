//! Mean-squared-error loss with its gradient (`shaders/loss.wgsl`), and the f64 reference.

use crate::runtime::{groups_1d, Bind, Dispatch, GpuContext, GpuResult, GpuTensor};

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LossParams {
    pub rows: u32,
    pub n: u32,
    pub n4: u32,
    pub _pad: u32,
}

impl LossParams {
    pub fn new(rows: usize, n: usize) -> Self {
        LossParams {
            rows: rows as u32,
            n: n as u32,
            n4: n.div_ceil(4) as u32,
            _pad: 0,
        }
    }
}

const WG: u32 = 64;

pub fn mse(
    ctx: &GpuContext,
    params: &wgpu::Buffer,
    rows: usize,
    pred: &GpuTensor,
    target: &GpuTensor,
    dpred: &GpuTensor,
    row_loss: &GpuTensor,
) -> GpuResult<Dispatch> {
    ctx.dispatch(
        "loss",
        "mse",
        &[("WG", WG as f64)],
        &[
            Bind::U(params),
            Bind::T(pred),
            Bind::T(target),
            Bind::T(dpred),
            Bind::T(row_loss),
        ],
        groups_1d(rows, WG),
    )
}

pub mod cpu {
    /// (loss, dloss/dpred) of mean((pred − target)²) over all entries.
    pub fn mse(pred: &[f64], target: &[f64]) -> (f64, Vec<f64>) {
        let n = pred.len() as f64;
        let loss = pred
            .iter()
            .zip(target)
            .map(|(p, t)| (p - t) * (p - t))
            .sum::<f64>()
            / n;
        let grad = pred
            .iter()
            .zip(target)
            .map(|(p, t)| 2.0 * (p - t) / n)
            .collect();
        (loss, grad)
    }
}

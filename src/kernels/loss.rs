//! Batch losses with their gradients (`shaders/loss.wgsl`): mean squared error and binary
//! cross-entropy on logits, for one or many models at once; and the f64 references.

use crate::runtime::{groups_1d, Bind, Dispatch, GpuContext, GpuResult, GpuTensor};

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LossParams {
    pub rows: u32,
    pub n: u32,
    pub n4: u32,
    pub models: u32,
}

impl LossParams {
    pub fn new(rows: usize, n: usize) -> Self {
        Self::batched(rows, n, 1)
    }

    /// `models` blocks of `rows` rows each; every model's loss is a mean over its own rows.
    pub fn batched(rows: usize, n: usize, models: usize) -> Self {
        LossParams {
            rows: rows as u32,
            n: n as u32,
            n4: n.div_ceil(4) as u32,
            models: models as u32,
        }
    }
}

const WG: u32 = 64;

/// Mean squared error; `total_rows` = rows × models.
pub fn mse(
    ctx: &GpuContext,
    params: &wgpu::Buffer,
    total_rows: usize,
    pred: &GpuTensor,
    target: &GpuTensor,
    dpred: &GpuTensor,
    row_loss: &GpuTensor,
) -> GpuResult<Dispatch> {
    launch(
        ctx, "mse", params, total_rows, pred, target, dpred, row_loss,
    )
}

/// Binary cross-entropy of logits `pred[:, 0]` against labels `target[:, 0]` ∈ {0, 1}.
pub fn bce_logits(
    ctx: &GpuContext,
    params: &wgpu::Buffer,
    total_rows: usize,
    pred: &GpuTensor,
    target: &GpuTensor,
    dpred: &GpuTensor,
    row_loss: &GpuTensor,
) -> GpuResult<Dispatch> {
    launch(
        ctx,
        "bce_logits",
        params,
        total_rows,
        pred,
        target,
        dpred,
        row_loss,
    )
}

#[allow(clippy::too_many_arguments)]
fn launch(
    ctx: &GpuContext,
    entry: &'static str,
    params: &wgpu::Buffer,
    total_rows: usize,
    pred: &GpuTensor,
    target: &GpuTensor,
    dpred: &GpuTensor,
    row_loss: &GpuTensor,
) -> GpuResult<Dispatch> {
    ctx.dispatch(
        "loss",
        entry,
        &[("WG", WG as f64)],
        &[
            Bind::U(params),
            Bind::T(pred),
            Bind::T(target),
            Bind::T(dpred),
            Bind::T(row_loss),
        ],
        groups_1d(total_rows, WG),
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

    /// (loss, dloss/dlogit) of the mean binary cross-entropy of logits against 0/1 labels.
    pub fn bce_logits(logits: &[f64], labels: &[f64]) -> (f64, Vec<f64>) {
        let n = logits.len() as f64;
        let loss = logits
            .iter()
            .zip(labels)
            .map(|(&z, &y)| z.max(0.0) - y * z + (-z.abs()).exp().ln_1p())
            .sum::<f64>()
            / n;
        let grad = logits
            .iter()
            .zip(labels)
            .map(|(&z, &y)| (1.0 / (1.0 + (-z).exp()) - y) / n)
            .collect();
        (loss, grad)
    }
}

//! Minibatch gathering on the GPU (`shaders/gather.wgsl`): lets a whole epoch of training steps
//! go out in one submission, each step picking its batch by the optimizer's step counter. A batch
//! may be gathered in slices (micro-batches) whose gradients the trainer accumulates.

use crate::runtime::{groups_1d, Bind, Dispatch, GpuContext, GpuError, GpuResult, GpuTensor};

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GatherParams {
    /// Rows gathered per model (a whole batch, or one micro-batch of it).
    pub rows: u32,
    pub d4: u32,
    pub n_train: u32,
    pub steps: u32,
    pub models: u32,
    /// Rows per batch: batch b starts at permutation entry b·stride.
    pub stride: u32,
    /// First row of the micro-batch within its batch.
    pub row_off: u32,
    /// [`gather_contrast`]: contrastive rows per row.
    pub k: u32,
}

impl GatherParams {
    /// Whole batches of `rows` rows (`stride` = `rows`, no offset) over `n_train` permutation
    /// entries per model, `steps` batches per epoch, rows of `d4` vec4.
    pub fn new(rows: usize, d4: usize, n_train: usize, steps: usize, models: usize) -> Self {
        GatherParams {
            rows: rows as u32,
            d4: d4 as u32,
            n_train: n_train as u32,
            steps: steps as u32,
            models: models as u32,
            stride: rows as u32,
            row_off: 0,
            k: 1,
        }
    }

    /// The micro-batch of `rows` rows starting at row `row_off` of batches of `stride` rows.
    pub fn micro(mut self, stride: usize, row_off: usize, rows: usize) -> Self {
        self.stride = stride as u32;
        self.row_off = row_off as u32;
        self.rows = rows as u32;
        self
    }

    /// `k` contrastive rows per row ([`gather_contrast`]).
    pub fn contrastive(mut self, k: usize) -> Self {
        self.k = k as u32;
        self
    }
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
    let rows = (p.rows * p.models) as usize;
    launch(
        ctx,
        "gather_batch",
        params,
        data,
        Some((labels, y_out)),
        perm,
        counter,
        x_out,
        rows,
    )
}

/// As [`gather_batch`] without labels:
/// `x_out[m, r] = data[perm[m, (b·stride + row_off + r) mod n_train]]`, b = counter mod steps.
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
    let rows = (p.rows * p.models) as usize;
    launch(
        ctx,
        "gather_rows",
        params,
        data,
        None,
        perm,
        counter,
        x_out,
        rows,
    )
}

/// The ratio loss's contrastive rows of a micro-batch, taken from the whole batch as an unsplit
/// batch takes them (row i's k-th is batch row (i + k + 1) mod stride):
/// `x_out[m, r·k + j] = data[perm[m, (b·stride + (row_off + r + j + 1) mod stride) mod n_train]]`.
#[allow(clippy::too_many_arguments)]
pub fn gather_contrast(
    ctx: &GpuContext,
    params: &wgpu::Buffer,
    p: &GatherParams,
    data: &GpuTensor,
    perm: &GpuTensor,
    counter: &GpuTensor,
    x_out: &GpuTensor,
) -> GpuResult<Dispatch> {
    if p.k == 0 || p.stride == 0 {
        return Err(GpuError::InvalidArgument(
            "contrastive gather with k = 0 or an empty batch".into(),
        ));
    }
    let rows = (p.rows * p.k * p.models) as usize;
    launch(
        ctx,
        "gather_contrast",
        params,
        data,
        None,
        perm,
        counter,
        x_out,
        rows,
    )
}

/// One launch of `entry` over `rows` output rows; `labels` with their output, or dummies.
#[allow(clippy::too_many_arguments)]
fn launch(
    ctx: &GpuContext,
    entry: &'static str,
    params: &wgpu::Buffer,
    data: &GpuTensor,
    labels: Option<(&GpuTensor, &GpuTensor)>,
    perm: &GpuTensor,
    counter: &GpuTensor,
    x_out: &GpuTensor,
    rows: usize,
) -> GpuResult<Dispatch> {
    let (dr, dw) = ctx.dummies()?;
    let (labels, y_out) = labels.unwrap_or((dr, dw));
    ctx.dispatch(
        "gather",
        entry,
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
        groups_1d(rows, WG),
    )
}

/// f64 references.
pub mod cpu {
    use super::GatherParams;

    /// The permutation entry (index into `perm` of model `m`) of row j of the current batch.
    fn entry(p: &GatherParams, counter: u32, j: u32) -> usize {
        let b = counter % p.steps;
        ((b as u64 * p.stride as u64 + j as u64) % p.n_train as u64) as usize
    }

    /// Data row indices that [`super::gather_rows`] copies, model-major.
    pub fn rows(p: &GatherParams, perm: &[u32], counter: u32) -> Vec<usize> {
        let n = p.n_train as usize;
        (0..p.models as usize)
            .flat_map(|m| {
                (0..p.rows).map(move |r| perm[m * n + entry(p, counter, p.row_off + r)] as usize)
            })
            .collect()
    }

    /// Data row indices that [`super::gather_contrast`] copies, model-major.
    pub fn contrast(p: &GatherParams, perm: &[u32], counter: u32) -> Vec<usize> {
        let n = p.n_train as usize;
        let mut out = vec![];
        for m in 0..p.models as usize {
            for r in 0..p.rows {
                for j in 0..p.k {
                    let jj = (p.row_off + r + j + 1) % p.stride;
                    out.push(perm[m * n + entry(p, counter, jj)] as usize);
                }
            }
        }
        out
    }
}

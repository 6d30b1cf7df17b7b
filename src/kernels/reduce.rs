//! Column reductions over a batch (`shaders/reduce.wgsl`) and their f64 references.

use crate::runtime::{Bind, Dispatch, GpuContext, GpuResult, GpuTensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum = 0,
    Mean = 1,
    Max = 2,
    LogSumExp = 3,
}

impl ReduceOp {
    pub const ALL: [ReduceOp; 4] = [
        ReduceOp::Sum,
        ReduceOp::Mean,
        ReduceOp::Max,
        ReduceOp::LogSumExp,
    ];
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ReduceParams {
    pub rows: u32,
    pub cols: u32,
    pub stride: u32,
    pub col_stride: u32,
}

impl ReduceParams {
    /// A row-major matrix with row stride `stride`.
    pub fn row_major(rows: usize, cols: usize, stride: usize) -> Self {
        ReduceParams {
            rows: rows as u32,
            cols: cols as u32,
            stride: stride as u32,
            col_stride: 1,
        }
    }

    /// `cols` blocks of `rows` contiguous values (per-model batch losses): one result per block.
    pub fn blocks(rows: usize, cols: usize) -> Self {
        ReduceParams {
            rows: rows as u32,
            cols: cols as u32,
            stride: 1,
            col_stride: rows as u32,
        }
    }
}

/// Reduces the first `cols` columns of `x` (`rows` rows, row stride `stride` floats) into `out[cols]`.
/// With `accumulate`, the result is added to what `out` holds.
pub fn reduce_cols(
    ctx: &GpuContext,
    params: &wgpu::Buffer,
    cols: usize,
    op: ReduceOp,
    accumulate: bool,
    x: &GpuTensor,
    out: &GpuTensor,
) -> GpuResult<Dispatch> {
    ctx.dispatch(
        "reduce",
        "reduce_cols",
        &[("OP", op as u32 as f64), ("ACCUM", accumulate as u8 as f64)],
        &[Bind::U(params), Bind::T(x), Bind::T(out)],
        [cols as u32, 1, 1],
    )
}

pub mod cpu {
    use super::ReduceOp;

    pub fn reduce_cols(
        x: &[f64],
        rows: usize,
        cols: usize,
        stride: usize,
        op: ReduceOp,
    ) -> Vec<f64> {
        (0..cols)
            .map(|c| {
                let col = (0..rows).map(|r| x[r * stride + c]);
                match op {
                    ReduceOp::Sum => col.sum(),
                    ReduceOp::Mean => col.sum::<f64>() / rows.max(1) as f64,
                    ReduceOp::Max => col.fold(f64::NEG_INFINITY, f64::max),
                    ReduceOp::LogSumExp => {
                        let m = (0..rows)
                            .map(|r| x[r * stride + c])
                            .fold(f64::NEG_INFINITY, f64::max);
                        if m == f64::NEG_INFINITY {
                            return m;
                        }
                        m + col.map(|v| (v - m).exp()).sum::<f64>().ln()
                    }
                }
            })
            .collect()
    }
}

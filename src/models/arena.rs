//! One parameter arena for several networks (an embedding net and a flow, say), so that one
//! optimizer launch and one global gradient-norm clip cover all of them.

use crate::runtime::{GpuContext, GpuResult, GpuTensor};

/// Offsets of each network's block in the arena; every block starts at an offset that can be
/// bound as a storage slice (256 bytes on most adapters).
#[derive(Clone, Debug)]
pub struct ArenaLayout {
    pub align: usize,
    pub len: usize,
}

impl ArenaLayout {
    pub fn new(ctx: &GpuContext) -> Self {
        ArenaLayout {
            align: (ctx.limits.min_storage_buffer_offset_alignment as usize / 4).max(64),
            len: 0,
        }
    }

    /// Reserves `n` floats; returns their offset.
    pub fn reserve(&mut self, n: usize) -> usize {
        let off = self.len;
        self.len = (off + n).div_ceil(self.align) * self.align;
        off
    }
}

/// Parameters and their gradients, same layout.
pub struct ParamArena {
    pub params: GpuTensor,
    pub grads: GpuTensor,
}

impl ParamArena {
    pub fn new(ctx: &GpuContext, init: &[f32]) -> GpuResult<Self> {
        Ok(ParamArena {
            params: ctx.tensor_from("arena-params", init)?,
            grads: ctx.tensor_zeros("arena-grads", init.len())?,
        })
    }

    /// (params, grads) views of the block at `offset` of length `len`.
    pub fn block(&self, offset: usize, len: usize) -> (GpuTensor, GpuTensor) {
        (
            self.params.view("params", offset, len),
            self.grads.view("grads", offset, len),
        )
    }

    pub fn len(&self) -> usize {
        self.params.len
    }

    pub fn is_empty(&self) -> bool {
        self.params.len == 0
    }
}

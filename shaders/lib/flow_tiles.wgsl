// Tile loads of the flow kernels (prepended to flow_rows.wgsl and flow_wgrad.wgsl). A tile is 4
// vec4 rows (of a weight matrix, or of dL/dZ in wgrad) at addresses that are the same in every
// invocation; the kernels load row tile_row(k) for k < TILE_LOADS, then call tile_share.
// This version: every invocation loads all 4 rows (on a GPU, a same-address load is a broadcast).
// lib/flow_tiles_sg.wgsl has the same interface for CPU adapters (chosen by the shader loader).

const TILE_LOADS: u32 = 4u;

// Call at the start of an entry point, with every invocation active.
fn tiles_begin() {}

fn tile_row(k: u32) -> u32 {
    return k;
}

fn tile_share(m: mat4x4<f32>) -> mat4x4<f32> {
    return m;
}

// Whether an invocation that has nothing to compute must keep running (tile_share needs it).
fn tile_keep(busy: bool) -> bool {
    return busy;
}

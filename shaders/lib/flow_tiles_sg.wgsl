// Tile loads of the flow kernels on CPU adapters with subgroups (the shader loader prepends this in
// place of lib/flow_tiles.wgsl; same interface, see there). A CPU adapter runs a subgroup as one
// SIMD vector and loads from storage buffers lane by lane (lavapipe: a scalar load per lane and
// component, even at one address), so 4 row loads cost 4 loads in every lane. Here lane k of each
// group of 4 loads row k, and subgroup broadcasts hand the rows to every lane: a quarter of the
// loads (flow kernels about 25% faster on lavapipe). Lanes 0..3 of every subgroup must be active
// at each tile: the kernels keep idle invocations running instead of returning early.

const TILE_LOADS: u32 = 1u;

var<private> tile_lane: u32;

// Call at the start of an entry point, with every invocation active (then the rank among the
// active lanes is the subgroup invocation id).
fn tiles_begin() {
    tile_lane = subgroupExclusiveAdd(1u);
}

fn tile_row(k: u32) -> u32 {
    return tile_lane & 3u;
}

fn tile_share(m: mat4x4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(subgroupBroadcast(m[0], 0u), subgroupBroadcast(m[0], 1u),
                       subgroupBroadcast(m[0], 2u), subgroupBroadcast(m[0], 3u));
}

// Whether an invocation that has nothing to compute must keep running (tile_share needs it).
fn tile_keep(busy: bool) -> bool {
    return subgroupAny(busy);
}

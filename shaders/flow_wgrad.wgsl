// Conditional MADE flows: weight and bias gradients from the tapes (requires lib/flow_common.wgsl
// and lib/flow_tiles.wgsl or lib/flow_tiles_sg.wgsl).
//   wgrad:  dW = sum_rows A^T dZ per layer and transform, masked (masked and padding entries are
//           written as exact zeros, so the result overwrites the whole gradient arena). The bias is
//           the row of W fed by a constant 1.
//           Workgroup (x: tile of OBT output blocks, y: layer 0..L, z: transform * chunks + chunk);
//           lane = input block (4 rows of W; the last lane the bias row). All lanes of a workgroup
//           read the same dZ tile at the same time (one tile per 64 multiply-adds per lane, see
//           the tiles library); only the layer input A is a per-lane load.
//           With chunks > 1 each chunk of rows writes its own copy (partials), summed by `reduce`.
//   reduce: out = sum over chunks of the partial copies.
// With ACCUM the final result is added to `out` instead (the flow's gradient from another term,
// such as the gradient through the reparameterized samples added to the density term's).
// Tape layouts as in flow_rows.wgsl.

@group(0) @binding(0) var<uniform> p: FlowParams;
@group(0) @binding(1) var<storage, read> tape: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> gtape: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> ctxb: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> part: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;

override WGW: u32 = 16u;
override OBT: u32 = 16u;   // output blocks per workgroup, <= 16
override WGR: u32 = 64u;
override ACCUM: bool = false;  // add the result to out (wgrad with one chunk, or reduce)

// Layer input A, row r, block ib (ib == kin4: the bias's constant 1).
fn a_load(l: u32, t: u32, r: u32, ib: u32, kin4: u32) -> vec4<f32> {
    if (ib >= kin4) {
        return vec4<f32>(1.0, 0.0, 0.0, 0.0);
    }
    if (l == 0u) {
        if (ib < D4) {
            return tape[(t * p.rows + r) * D4 + ib];
        }
        let cb = ib - D4;
        let c = vec4<u32>(cb * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
        return select(vec4<f32>(0.0), ctxb[(r / p.ctx_div) * p.ctx_step * E4 + cb], c < vec4<u32>(E));
    }
    return tape[(T + 1u) * p.rows * D4 + ((t * L + l - 1u) * p.rows + r) * H4 + ib];
}

const RT: u32 = 8u;           // 4-row groups per row tile

var<private> at: array<mat4x4<f32>, RT>;      // layer input of the tile's rows: at[q][c] = row 4q+c
var<private> acc: array<mat4x4<f32>, 16>;     // dW tiles of this lane: acc[j][ii] = row 4ib+ii, block ob0+j

@compute @workgroup_size(WGW)
fn wgrad(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    tiles_begin();
    let l = wid.y;
    let t = wid.z / p.chunks;
    let s = wid.z % p.chunks;
    let kin4 = flow_kin4(l);
    let n4 = flow_n4(l);
    let ob0 = wid.x * OBT;
    // Lanes past the bias row run on (if tile_keep says so) with the bias row's input.
    let busy = lid.x <= kin4;
    let ib = min(lid.x, kin4);
    if (ob0 >= n4 || !tile_keep(busy)) {
        return;
    }
    let nb = min(OBT, n4 - ob0);
    let r_beg = s * p.chunk;
    let r_end = min(p.rows, r_beg + p.chunk);
    // Row 0 of this layer's gradient source.
    var gbase = ((t * L + l) * p.rows) * H4;
    if (l == L) {
        gbase = T * L * p.rows * H4 + t * p.rows * NO4;
    }
    let last = p.rows - 1u;
    for (var r0 = r_beg; r0 < r_end; r0 += 4u * RT) {
        let nq = min(RT, (r_end - r0 + 3u) / 4u);
        for (var q = 0u; q < nq; q++) {
            let rq = r0 + 4u * q;
            var m = mat4x4<f32>();
            for (var c = 0u; c < 4u; c++) {
                let r = rq + c;
                m[c] = select(vec4<f32>(0.0), a_load(l, t, min(r, last), ib, kin4), r < r_end);
            }
            at[q] = transpose(m);
        }
        for (var j = 0u; j < nb; j++) {
            var a = acc[j];
            for (var q = 0u; q < nq; q++) {
                let g0 = gbase + (r0 + 4u * q) * n4 + ob0 + j;
                // Rows past the end read a valid row; their A is zero.
                let glast = gbase + last * n4 + ob0 + j;
                var dm = mat4x4<f32>();
                for (var k = 0u; k < TILE_LOADS; k++) {
                    dm[k] = gtape[min(g0 + tile_row(k) * n4, glast)];
                }
                a += tile_share(dm) * at[q];
            }
            acc[j] = a;
        }
    }
    let base = select(0u, s * T * TS, p.chunks > 1u) + t * TS + flow_layer_off(l);
    if (!busy) {
        return;
    }
    let nrow = select(4u, 1u, ib == kin4);
    for (var j = 0u; j < nb; j++) {
        let cb = ob0 + j;
        for (var ii = 0u; ii < nrow; ii++) {
            let row = 4u * ib + ii;
            let v = acc[j][ii];
            let m = vec4<bool>(flow_mask(t, l, row, 4u * cb), flow_mask(t, l, row, 4u * cb + 1u),
                               flow_mask(t, l, row, 4u * cb + 2u), flow_mask(t, l, row, 4u * cb + 3u));
            var w = select(vec4<f32>(0.0), v, m);
            if (ACCUM && p.chunks == 1u) {
                w += out[base + row * n4 + cb];
            }
            out[base + row * n4 + cb] = w;
        }
    }
}

@compute @workgroup_size(WGR)
fn reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WGR;
    let n = T * TS;
    if (i >= n) {
        return;
    }
    var s = vec4<f32>(0.0);
    for (var c = 0u; c < p.chunks; c++) {
        s += part[c * n + i];
    }
    if (ACCUM) {
        s += out[i];
    }
    out[i] = s;
}

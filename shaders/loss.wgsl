// Mean squared error of a batch: pred, truth [rows, n] (vec4-padded rows).
// Writes dL/dpred for L = mean over rows and columns of (pred - truth)^2, and each row's
// contribution to L (row_loss[r] = sum_c (pred - truth)^2 / (rows * n)), which a sum reduction turns into L.

struct LossParams {
    rows: u32,
    n: u32,
    n4: u32,
    _pad: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: LossParams;
@group(0) @binding(1) var<storage, read> pred: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> truth: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dpred: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> row_loss: array<f32>;

@compute @workgroup_size(WG)
fn mse(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * WG;
    if (r >= p.rows) {
        return;
    }
    let inv = 1.0 / f32(p.rows * p.n);
    var s = 0.0;
    for (var c = 0u; c < p.n4; c = c + 1u) {
        let d = pred[r * p.n4 + c] - truth[r * p.n4 + c];
        s = s + dot(d, d);
        dpred[r * p.n4 + c] = 2.0 * inv * d;
    }
    row_loss[r] = s * inv;
}

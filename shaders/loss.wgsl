// Batch losses with their gradients, for `models` independent models laid out model after model
// ([models, rows, n4] vec4-padded rows). Each writes dL/dpred and every row's contribution to L,
// which a sum reduction per model turns into L.
//   mse:        L = mean over rows and columns of (pred - truth)^2
//   bce_logits: L = mean over rows of binary cross-entropy of logit pred[., 0] against label truth[., 0]

struct LossParams {
    rows: u32,    // rows per model
    n: u32,
    n4: u32,
    models: u32,
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
    if (r >= p.rows * p.models) {
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

@compute @workgroup_size(WG)
fn bce_logits(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * WG;
    if (r >= p.rows * p.models) {
        return;
    }
    let inv = 1.0 / f32(p.rows);
    let z = pred[r * p.n4].x;
    let y = truth[r * p.n4].x;
    // softplus(z) - y z, computed without overflow for large |z|.
    let loss = max(z, 0.0) - y * z + log(1.0 + exp(-abs(z)));
    let s = 1.0 / (1.0 + exp(-clamp(z, -80.0, 80.0)));
    dpred[r * p.n4] = vec4<f32>((s - y) * inv, 0.0, 0.0, 0.0);
    row_loss[r] = loss * inv;
}

// Gathers one minibatch per model from a data set resident on the GPU, so a whole epoch of
// steps can be queued in one submission. The batch index comes from a step counter that the
// optimizer advances on the GPU (word 0 of `counter`); each model reads its own permutation.
//   x_out[m, r, :] = data[perm[m, (b * rows + r) mod n_train], :]   with b = counter mod steps
//   y_out[m, r, 0] = labels[the same index]
// A last, partial batch wraps around to the start of the permutation.
// gather_rows does the same without labels (labels and y_out are then unused).

struct GatherParams {
    rows: u32,       // batch rows per model
    d4: u32,         // vec4 per data row
    n_train: u32,    // permutation length per model
    steps: u32,      // batches per epoch
    models: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: GatherParams;
@group(0) @binding(1) var<storage, read> data: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> labels: array<f32>;
@group(0) @binding(3) var<storage, read> perm: array<u32>;
@group(0) @binding(4) var<storage, read> counter: array<u32>;
@group(0) @binding(5) var<storage, read_write> x_out: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> y_out: array<vec4<f32>>;

// Copies the data row that batch row t (over all models) takes; returns its index.
fn copy_row(t: u32) -> u32 {
    let m = t / p.rows;
    let r = t % p.rows;
    let b = counter[0] % p.steps;
    let idx = perm[m * p.n_train + (b * p.rows + r) % p.n_train];
    for (var j = 0u; j < p.d4; j = j + 1u) {
        x_out[t * p.d4 + j] = data[idx * p.d4 + j];
    }
    return idx;
}

@compute @workgroup_size(WG)
fn gather_batch(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    if (t < p.rows * p.models) {
        y_out[t] = vec4<f32>(labels[copy_row(t)], 0.0, 0.0, 0.0);
    }
}

@compute @workgroup_size(WG)
fn gather_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    if (t < p.rows * p.models) {
        copy_row(t);
    }
}

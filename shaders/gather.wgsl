// Gathers one minibatch per model from a data set resident on the GPU, so a whole epoch of
// steps can be queued in one submission. The batch index comes from a step counter that the
// optimizer advances on the GPU (word 0 of `counter`); each model reads its own permutation.
// Batch b = counter mod steps holds the permutation entries b·stride .. b·stride + stride − 1
// (modulo n_train: a last, partial batch wraps around to the start of the permutation); a
// micro-batch is the slice of `rows` of them starting at row_off:
//   x_out[m, r, :] = data[perm[m, (b·stride + row_off + r) mod n_train], :]
//   y_out[m, r, 0] = labels[the same index]
// gather_rows does the same without labels (labels and y_out are then unused).
// gather_contrast writes the k contrastive rows of each of those rows: the other rows of the
// whole batch (all micro-batches), rolled as the ratio loss takes them from an unsplit batch:
//   x_out[m, r·k + j, :] = data[perm[m, (b·stride + (row_off + r + j + 1) mod stride) mod n_train], :]

struct GatherParams {
    rows: u32,       // rows gathered per model (the micro-batch)
    d4: u32,         // vec4 per data row
    n_train: u32,    // permutation length per model
    steps: u32,      // batches per epoch
    models: u32,
    stride: u32,     // rows per batch (= rows unless the batch is split into micro-batches)
    row_off: u32,    // first row of the micro-batch within its batch
    k: u32,          // gather_contrast: contrastive rows per row
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: GatherParams;
@group(0) @binding(1) var<storage, read> data: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> labels: array<f32>;
@group(0) @binding(3) var<storage, read> perm: array<u32>;
@group(0) @binding(4) var<storage, read> counter: array<u32>;
@group(0) @binding(5) var<storage, read_write> x_out: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> y_out: array<vec4<f32>>;

// The data row of row j (0 ≤ j < stride) of model m's current batch.
fn batch_row(m: u32, j: u32) -> u32 {
    let b = counter[0] % p.steps;
    return perm[m * p.n_train + (b * p.stride + j) % p.n_train];
}

fn copy_to(t: u32, idx: u32) {
    for (var j = 0u; j < p.d4; j = j + 1u) {
        x_out[t * p.d4 + j] = data[idx * p.d4 + j];
    }
}

// Copies the data row that output row t (over all models) takes; returns its index.
fn copy_row(t: u32) -> u32 {
    let idx = batch_row(t / p.rows, p.row_off + t % p.rows);
    copy_to(t, idx);
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

@compute @workgroup_size(WG)
fn gather_contrast(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    let per = p.rows * p.k;
    if (t < per * p.models) {
        let u = t % per;
        let j = (p.row_off + u / p.k + u % p.k + 1u) % p.stride;
        copy_to(t, batch_row(t / per, j));
    }
}

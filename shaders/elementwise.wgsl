// Element-wise kernels on flat f32 arrays (requires lib/activations.wgsl).
//   act_forward:  y = act(x)
//   act_backward: dx = dy * act'(x)
//   scale_add:    y = alpha * x + beta * y
//   accumulate:   y = x (beta == 0) or y = y + x (beta != 0): gradient accumulation over
//                 micro-batches (the sum of micro-batch gradients, one addition per micro-batch)

struct EwParams {
    n: u32,
    alpha: f32,
    beta: f32,
    _pad: u32,
}

override ACT: u32 = 0u;
override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: EwParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

fn flat_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

@compute @workgroup_size(WG)
fn act_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) {
        y[i] = act_f(ACT, x[i]);
    }
}

@compute @workgroup_size(WG)
fn act_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) {
        y[i] = dy[i] * act_df(ACT, x[i]);
    }
}

@compute @workgroup_size(WG)
fn scale_add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) {
        y[i] = p.alpha * x[i] + p.beta * y[i];
    }
}

@compute @workgroup_size(WG)
fn accumulate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) {
        if (p.beta == 0.0) {
            y[i] = x[i];
        } else {
            y[i] = y[i] + x[i];
        }
    }
}

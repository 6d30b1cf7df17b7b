// Adam with bias correction, optional decoupled weight decay (AdamW), and global-norm gradient
// clipping. All optimizer state lives on the GPU; the step counter too, so many steps can be
// queued without the host writing anything between them.
//   grad_norm (one workgroup): norm = ||g||, scale = min(1, max_norm / (norm + 1e-6)), step += 1
//   adam_step: m, v, theta update for every parameter, gradient scaled by `scale`.
// Parameters, gradients and moments are flat arrays padded to a multiple of 4 (read as vec4).

struct AdamParams {
    n4: u32,        // number of vec4 in the parameter arena
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    max_norm: f32,  // <= 0 disables clipping
    eps_on_raw_v: u32, // 1: lr * sqrt(bc2) / bc1 * m / (sqrt(v) + eps), scikit-learn's form
}

struct AdamState {
    step: u32,
    scale: f32,
    norm: f32,
    _pad: u32,
}

const WG_NORM: u32 = 256u;
override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: AdamParams;
@group(0) @binding(1) var<storage, read_write> theta: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> grad: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> m: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> v: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> state: AdamState;

var<workgroup> partial: array<f32, WG_NORM>;

@compute @workgroup_size(WG_NORM)
fn grad_norm(@builtin(local_invocation_id) lid: vec3<u32>) {
    let t = lid.x;
    var s = 0.0;
    for (var i = t; i < p.n4; i = i + WG_NORM) {
        let g = grad[i];
        s = s + dot(g, g);
    }
    partial[t] = s;
    workgroupBarrier();
    for (var h = WG_NORM / 2u; h > 0u; h = h / 2u) {
        if (t < h) {
            partial[t] = partial[t] + partial[t + h];
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        let norm = sqrt(partial[0]);
        var scale = 1.0;
        if (p.max_norm > 0.0) {
            scale = min(1.0, p.max_norm / (norm + 1e-6));
        }
        state.norm = norm;
        state.scale = scale;
        state.step = state.step + 1u;
    }
}

@compute @workgroup_size(WG)
fn adam_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.n4) {
        return;
    }
    let t = f32(state.step);
    let g = grad[i] * state.scale;
    let mi = p.beta1 * m[i] + (1.0 - p.beta1) * g;
    let vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    let bc1 = 1.0 - pow(p.beta1, t);
    let bc2 = 1.0 - pow(p.beta2, t);
    var upd: vec4<f32>;
    if (p.eps_on_raw_v == 1u) {
        upd = mi * (sqrt(bc2) / bc1) / (sqrt(vi) + vec4<f32>(p.eps));
    } else {
        upd = (mi / bc1) / (sqrt(vi / bc2) + vec4<f32>(p.eps));
    }
    var th = theta[i];
    th = th - p.lr * p.weight_decay * th;
    theta[i] = th - p.lr * upd;
}

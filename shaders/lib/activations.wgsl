// Activation functions and their derivatives, shared by the kernels that fuse them.
// Ids (override constant ACT): 0 identity, 1 ReLU, 2 GELU (tanh form), 3 SiLU, 4 ELU (alpha 1), 5 tanh.

// tanh that stays finite for large |x| on every backend.
fn safe_tanh(x: f32) -> f32 {
    return tanh(clamp(x, -15.0, 15.0));
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-clamp(x, -80.0, 80.0)));
}

const GELU_C: f32 = 0.7978845608028654; // sqrt(2/pi)
const GELU_A: f32 = 0.044715;

fn act_f(id: u32, x: f32) -> f32 {
    switch id {
        case 1u: { return max(x, 0.0); }
        case 2u: {
            let u = GELU_C * (x + GELU_A * x * x * x);
            return 0.5 * x * (1.0 + safe_tanh(u));
        }
        case 3u: { return x * sigmoid(x); }
        case 4u: { return select(exp(min(x, 0.0)) - 1.0, x, x > 0.0); }
        case 5u: { return safe_tanh(x); }
        default: { return x; }
    }
}

// d act / dx at pre-activation x.
fn act_df(id: u32, x: f32) -> f32 {
    switch id {
        case 1u: { return select(0.0, 1.0, x > 0.0); }
        case 2u: {
            let u = GELU_C * (x + GELU_A * x * x * x);
            let t = safe_tanh(u);
            let du = GELU_C * (1.0 + 3.0 * GELU_A * x * x);
            return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du;
        }
        case 3u: {
            let s = sigmoid(x);
            return s * (1.0 + x * (1.0 - s));
        }
        case 4u: { return select(exp(min(x, 0.0)), 1.0, x > 0.0); }
        case 5u: {
            let t = safe_tanh(x);
            return 1.0 - t * t;
        }
        default: { return 1.0; }
    }
}

fn act4(id: u32, v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(act_f(id, v.x), act_f(id, v.y), act_f(id, v.z), act_f(id, v.w));
}

fn act_df4(id: u32, v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(act_df(id, v.x), act_df(id, v.y), act_df(id, v.z), act_df(id, v.w));
}

// Zeroes the lanes of a vec4 column block that lie past the real column count `n`,
// so padding stays exactly zero.
fn mask_cols(v: vec4<f32>, block: u32, n: u32) -> vec4<f32> {
    let c = vec4<u32>(block * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
    return select(vec4<f32>(0.0), v, c < vec4<u32>(n));
}

// Batched dense layer, forward and backward, register-blocked for CPU adapters and GPUs alike.
// Layout: row-major matrices whose rows are padded to a multiple of 4 floats and read as vec4.
//   X [rows, k]   W [k, n] (rows padded to k4*4 with zeros)   b [n]   Z, A [rows, n]
// Each invocation owns a 4-row x 4-column block: 8 vec4 loads feed 64 multiply-adds, which is
// what makes this fast on lavapipe, where every storage load is expensive (see the notes).
// Many independent models (e.g. the folds of a cross-validation) run in one launch: the grid's z
// index picks the model, and each tensor advances by its per-model stride (in vec4 units).
// Requires lib/activations.wgsl before this file.

struct DenseParams {
    rows: u32,
    k: u32,
    n: u32,
    k4: u32,
    n4: u32,
    sx: u32,    // per-model stride of input-side tensors: X, dX, Zp, backward R
    sy: u32,    // per-model stride of output-side tensors: Z, A, dZ, forward R
    sw: u32,    // per-model stride of W and dW
    sb: u32,    // per-model stride of b and db
    l2: f32,    // backward_weight adds l2 * W to dW (an L2 penalty on weights, not biases)
    models: u32, // grid depth; read by the host only
    _pad1: u32,
}

override ACT: u32 = 0u;          // activation applied after the affine map
override RESIDUAL: bool = false; // forward: A += R; backward_input: dX += R
override EPI_ACT: u32 = 0u;      // backward_input: also write dX * act'(Zp) (0 = no such output)
override ACCUM: bool = false;    // backward_weight: add into dW, db instead of overwriting
override L2_ON: bool = false;    // backward_weight: add p.l2 * W to dW
override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;

@group(0) @binding(0) var<uniform> p: DenseParams;
@group(0) @binding(1) var<storage, read> in0: array<vec4<f32>>;       // forward: X; backward_input: dZ; backward_weight: X
@group(0) @binding(2) var<storage, read> in1: array<vec4<f32>>;       // forward: W; backward_input: W;  backward_weight: dZ
@group(0) @binding(3) var<storage, read> in2: array<vec4<f32>>;       // forward: b; backward_input: R;  backward_weight: (unused)
@group(0) @binding(4) var<storage, read> in3: array<vec4<f32>>;       // forward: R; backward_input: Zp; backward_weight: (unused)
@group(0) @binding(5) var<storage, read_write> out0: array<vec4<f32>>; // forward: Z; backward_input: dX; backward_weight: dW
@group(0) @binding(6) var<storage, read_write> out1: array<vec4<f32>>; // forward: A; backward_input: dX*act'(Zp); backward_weight: db

// Z = X W + b; A = act(Z) (+ R).  Dispatch: x over n4 column blocks, y over ceil(rows/4).
@compute @workgroup_size(WG_X, WG_Y)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let r0 = gid.y * 4u;
    if (c >= p.n4 || r0 >= p.rows) {
        return;
    }
    let ox = gid.z * p.sx;
    let oy = gid.z * p.sy;
    let ow = gid.z * p.sw;
    let last = p.rows - 1u;
    let r1 = min(r0 + 1u, last);
    let r2 = min(r0 + 2u, last);
    let r3 = min(r0 + 3u, last);
    let bias = in2[gid.z * p.sb + c];
    var a0 = bias;
    var a1 = bias;
    var a2 = bias;
    var a3 = bias;
    for (var kb = 0u; kb < p.k4; kb = kb + 1u) {
        let w0 = in1[ow + (kb * 4u) * p.n4 + c];
        let w1 = in1[ow + (kb * 4u + 1u) * p.n4 + c];
        let w2 = in1[ow + (kb * 4u + 2u) * p.n4 + c];
        let w3 = in1[ow + (kb * 4u + 3u) * p.n4 + c];
        let x0 = in0[ox + r0 * p.k4 + kb];
        let x1 = in0[ox + r1 * p.k4 + kb];
        let x2 = in0[ox + r2 * p.k4 + kb];
        let x3 = in0[ox + r3 * p.k4 + kb];
        a0 = a0 + x0.x * w0 + x0.y * w1 + x0.z * w2 + x0.w * w3;
        a1 = a1 + x1.x * w0 + x1.y * w1 + x1.z * w2 + x1.w * w3;
        a2 = a2 + x2.x * w0 + x2.y * w1 + x2.z * w2 + x2.w * w3;
        a3 = a3 + x3.x * w0 + x3.y * w1 + x3.z * w2 + x3.w * w3;
    }
    var z = array<vec4<f32>, 4>(a0, a1, a2, a3);
    for (var j = 0u; j < 4u; j = j + 1u) {
        let r = r0 + j;
        if (r < p.rows) {
            let zz = mask_cols(z[j], c, p.n);
            let o = oy + r * p.n4 + c;
            var a = act4(ACT, zz);
            if (RESIDUAL) {
                a = a + in3[o];
            }
            if (ACT != 0u) {
                out0[o] = zz;
            }
            out1[o] = mask_cols(a, c, p.n);
        }
    }
}

// dX = dZ W^T (+ R); optionally also dX * act'(Zp), the previous layer's pre-activation gradient.
// Here k is the input width (columns of dX), n the output width.  Dispatch: x over k4, y over ceil(rows/4).
@compute @workgroup_size(WG_X, WG_Y)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let r0 = gid.y * 4u;
    if (c >= p.k4 || r0 >= p.rows) {
        return;
    }
    let ox = gid.z * p.sx;
    let oy = gid.z * p.sy;
    let ow = gid.z * p.sw;
    let last = p.rows - 1u;
    let r1 = min(r0 + 1u, last);
    let r2 = min(r0 + 2u, last);
    let r3 = min(r0 + 3u, last);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var ob = 0u; ob < p.n4; ob = ob + 1u) {
        let w0 = in1[ow + (c * 4u) * p.n4 + ob];
        let w1 = in1[ow + (c * 4u + 1u) * p.n4 + ob];
        let w2 = in1[ow + (c * 4u + 2u) * p.n4 + ob];
        let w3 = in1[ow + (c * 4u + 3u) * p.n4 + ob];
        let d0 = in0[oy + r0 * p.n4 + ob];
        let d1 = in0[oy + r1 * p.n4 + ob];
        let d2 = in0[oy + r2 * p.n4 + ob];
        let d3 = in0[oy + r3 * p.n4 + ob];
        a0 = a0 + vec4<f32>(dot(d0, w0), dot(d0, w1), dot(d0, w2), dot(d0, w3));
        a1 = a1 + vec4<f32>(dot(d1, w0), dot(d1, w1), dot(d1, w2), dot(d1, w3));
        a2 = a2 + vec4<f32>(dot(d2, w0), dot(d2, w1), dot(d2, w2), dot(d2, w3));
        a3 = a3 + vec4<f32>(dot(d3, w0), dot(d3, w1), dot(d3, w2), dot(d3, w3));
    }
    var acc = array<vec4<f32>, 4>(a0, a1, a2, a3);
    for (var j = 0u; j < 4u; j = j + 1u) {
        let r = r0 + j;
        if (r < p.rows) {
            let i = ox + r * p.k4 + c;
            var dx = acc[j];
            if (RESIDUAL) {
                dx = dx + in2[i];
            }
            dx = mask_cols(dx, c, p.k);
            out0[i] = dx;
            if (EPI_ACT != 0u) {
                out1[i] = dx * act_df4(EPI_ACT, in3[i]);
            }
        }
    }
}

// dW = X^T dZ and db = column sums of dZ.  Dispatch: x over n4 column blocks, y over k4 row blocks.
@compute @workgroup_size(WG_X, WG_Y)
fn backward_weight(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let kb = gid.y;
    if (c >= p.n4 || kb >= p.k4) {
        return;
    }
    let ox = gid.z * p.sx;
    let oy = gid.z * p.sy;
    let ow = gid.z * p.sw;
    let ob = gid.z * p.sb;
    var g0 = vec4<f32>(0.0);
    var g1 = vec4<f32>(0.0);
    var g2 = vec4<f32>(0.0);
    var g3 = vec4<f32>(0.0);
    var gb = vec4<f32>(0.0);
    let rows4 = p.rows & ~3u;
    var r = 0u;
    // Four rows per trip: 8 loads, 64 multiply-adds.
    for (; r < rows4; r = r + 4u) {
        let x0 = in0[ox + r * p.k4 + kb];
        let x1 = in0[ox + (r + 1u) * p.k4 + kb];
        let x2 = in0[ox + (r + 2u) * p.k4 + kb];
        let x3 = in0[ox + (r + 3u) * p.k4 + kb];
        let d0 = in1[oy + r * p.n4 + c];
        let d1 = in1[oy + (r + 1u) * p.n4 + c];
        let d2 = in1[oy + (r + 2u) * p.n4 + c];
        let d3 = in1[oy + (r + 3u) * p.n4 + c];
        g0 = g0 + x0.x * d0 + x1.x * d1 + x2.x * d2 + x3.x * d3;
        g1 = g1 + x0.y * d0 + x1.y * d1 + x2.y * d2 + x3.y * d3;
        g2 = g2 + x0.z * d0 + x1.z * d1 + x2.z * d2 + x3.z * d3;
        g3 = g3 + x0.w * d0 + x1.w * d1 + x2.w * d2 + x3.w * d3;
        gb = gb + d0 + d1 + d2 + d3;
    }
    for (; r < p.rows; r = r + 1u) {
        let x0 = in0[ox + r * p.k4 + kb];
        let d0 = in1[oy + r * p.n4 + c];
        g0 = g0 + x0.x * d0;
        g1 = g1 + x0.y * d0;
        g2 = g2 + x0.z * d0;
        g3 = g3 + x0.w * d0;
        gb = gb + d0;
    }
    var g = array<vec4<f32>, 4>(g0, g1, g2, g3);
    for (var j = 0u; j < 4u; j = j + 1u) {
        let i = ow + (kb * 4u + j) * p.n4 + c;
        var v = mask_cols(g[j], c, p.n);
        if (L2_ON) {
            v = v + p.l2 * in2[i];
        }
        // Rows past k are padding of W: their gradient stays zero.
        v = select(vec4<f32>(0.0), v, kb * 4u + j < p.k);
        if (ACCUM) {
            v = v + out0[i];
        }
        out0[i] = v;
    }
    if (kb == 0u) {
        var b = mask_cols(gb, c, p.n);
        if (ACCUM) {
            b = b + out1[ob + c];
        }
        out1[ob + c] = b;
    }
}

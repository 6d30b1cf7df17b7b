// Generalized-KL losses of the ratio and hybrid surrogates (math: shared notes gkl.md).
//   pairs: builds the ratio network's input rows [θ, x] for one batch: rows 0..B are the joint
//          pairs (θ_i, x_i); rows B + i·K + k are the contrastive pairs (θ'_ik, x_i), θ'_ik either
//          another θ of the batch, θ_{(i+k+1) mod B} (prior draws: the ratio surrogate), or row
//          i·K + k of a buffer of draws from the base flow q(·|x_i) (the hybrid).
//   loss:  L = scale · Σ_{i < valid} [ −f(θ_i, x_i) + (1/K) Σ_k sexp(f(θ'_ik, x_i)) ]
//          (scale = 1/B; 1/(whole batch) for a micro-batch), writes dL/df for every row (exact
//          zeros for the rows of x_i, i ≥ valid: the padding of a short last micro-batch) and adds
//          Σ −f, Σ_i Ẑ_i and Σ_i Ẑ_i² over i < valid (Ẑ_i = (1/K) Σ_k sexp f, the Monte-Carlo
//          estimate of Z(x_i)) to acc[0..3].
//          With MASKED (the hybrid), a contrastive θ' outside the prior's support adds nothing to
//          Ẑ_i and gets a zero gradient: the surrogate is q(θ|x)·exp f(θ,x)·1_support(θ), the
//          density the rejection sampler draws from, so f need not fall to −∞ where the base
//          flow leaks mass outside a bounded prior. src_b then holds the support in network
//          space, [lo_0 … lo_{d−1}, hi_0 … hi_{d−1}], and src_c the draws θ' [B·K, d4·4].
// sexp(f) = exp(f) up to f = CAP, then its tangent line: convex, finite in f32, and its gradient
// (at most e^CAP) still pushes an overconfident f down instead of overflowing to inf/NaN.

struct GklParams {
    b: u32,      // joint pairs in the batch
    k: u32,      // contrastive pairs per x
    d: u32,      // θ width
    dx: u32,     // x width
    in4: u32,    // vec4s per ratio input row (pad4(d + dx) / 4)
    d4: u32,     // vec4s per θ row
    x4: u32,     // vec4s per x row
    scale: f32,  // loss scale (1/B)
    valid: u32,  // loss: rows i < valid count, the rest get zero gradients (≤ b)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 64u;
override MODE: u32 = 0u;        // pairs: 0 θ' from the batch (ratio), 1 θ' from `neg` (hybrid)
override CAP: f32 = 20.0;       // loss: where sexp turns linear
override WRITE_GRAD: bool = true;
override MASKED: bool = false;  // loss: drop contrastive θ' outside the support (see above)

@group(0) @binding(0) var<uniform> p: GklParams;
@group(0) @binding(1) var<storage, read> src_a: array<f32>;     // pairs: θ [B, d4·4];  loss: f [rows, 4]
@group(0) @binding(2) var<storage, read> src_b: array<f32>;     // pairs: x [B, x4·4];  loss (MASKED): support [2d]
@group(0) @binding(3) var<storage, read> src_c: array<f32>;     // pairs (MODE 1), loss (MASKED): θ' [B·K, d4·4]
@group(0) @binding(4) var<storage, read_write> out_a: array<f32>; // pairs: ratio input; loss: dL/df [rows, 4]
@group(0) @binding(5) var<storage, read_write> out_b: array<f32>; // loss: acc (+= three sums)

@compute @workgroup_size(WG)
fn pairs(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    let rows = p.b * (1u + p.k);
    if (r >= rows) {
        return;
    }
    var i = r;
    var src_row = r;
    var from_neg = false;
    if (r >= p.b) {
        let j = r - p.b;
        i = j / p.k;
        if (MODE == 0u) {
            src_row = (i + j % p.k + 1u) % p.b;
        } else {
            src_row = j;
            from_neg = true;
        }
    }
    let o = r * p.in4 * 4u;
    for (var c = 0u; c < p.d; c++) {
        var v: f32;
        if (from_neg) {
            v = src_c[src_row * p.d4 * 4u + c];
        } else {
            v = src_a[src_row * p.d4 * 4u + c];
        }
        out_a[o + c] = v;
    }
    for (var c = 0u; c < p.dx; c++) {
        out_a[o + p.d + c] = src_b[i * p.x4 * 4u + c];
    }
    for (var c = p.d + p.dx; c < p.in4 * 4u; c++) {
        out_a[o + c] = 0.0;
    }
}

fn sexp(f: f32) -> f32 {
    if (f <= CAP) {
        return exp(f);
    }
    return exp(CAP) * (1.0 + f - CAP);
}

// Whether contrastive row j's θ' lies inside the support (NaN fails every comparison).
fn inside_support(j: u32) -> bool {
    var ok = true;
    for (var c = 0u; c < p.d; c++) {
        let v = src_c[j * p.d4 * 4u + c];
        ok = ok && v >= src_b[c] && v <= src_b[p.d + c];
    }
    return ok;
}

const WGL: u32 = 256u;
var<workgroup> red: array<vec3<f32>, WGL>;

@compute @workgroup_size(WGL)
fn loss(@builtin(local_invocation_id) lid: vec3<u32>) {
    let t = lid.x;
    var s = vec3<f32>(0.0);
    let inv_k = 1.0 / f32(p.k);
    for (var i = t; i < p.b; i += WGL) {
        if (i >= p.valid) {
            if (WRITE_GRAD) {
                out_a[i * 4u] = 0.0;
                for (var k = 0u; k < p.k; k++) {
                    out_a[(p.b + i * p.k + k) * 4u] = 0.0;
                }
            }
            continue;
        }
        let f = src_a[i * 4u];
        s.x -= f;
        if (WRITE_GRAD) {
            out_a[i * 4u] = -p.scale;
        }
        var z = 0.0;
        for (var k = 0u; k < p.k; k++) {
            let j = p.b + i * p.k + k;
            let fe = src_a[j * 4u];
            if (MASKED && !inside_support(i * p.k + k)) {
                if (WRITE_GRAD) {
                    out_a[j * 4u] = 0.0;
                }
                continue;
            }
            z += sexp(fe);
            if (WRITE_GRAD) {
                out_a[j * 4u] = p.scale * inv_k * exp(min(fe, CAP));
            }
        }
        z *= inv_k;
        s.y += z;
        s.z += z * z;
    }
    red[t] = s;
    workgroupBarrier();
    for (var h = WGL / 2u; h > 0u; h >>= 1u) {
        if (t < h) {
            red[t] += red[t + h];
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        out_b[0] += red[0].x;
        out_b[1] += red[0].y;
        out_b[2] += red[0].z;
    }
}

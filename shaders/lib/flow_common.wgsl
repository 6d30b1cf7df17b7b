// Conditional MADE flows (MAF and the rational-quadratic neural spline flow): shared definitions,
// prepended to flow_rows.wgsl and flow_wgrad.wgsl. Self-contained (validated on its own).
//
// Parameter layout of one transform (vec4 units; every transform has the same shape, TS apart):
//   layer 0:   W0 rows [x: 4*D4 | context: 4*E4] then a bias row, H4 vec4 columns     (SIZE0)
//   hidden l:  W rows 4*H4 then a bias row, H4 columns, l = 1 .. L-1                   (SIZEH each)
//   output:    W rows 4*H4 then a bias row, NO4 columns; column c = dim (c / PS), parameter (c % PS)
// Masked and padding entries are exactly zero: initialised so, and their gradients are written as
// zero, so Adam never moves them.
//
// MADE degrees (nflows, non-random): input dim i of transform t has degree i+1 (t even) or D-i
// (t odd: the reversed ordering, a permutation without moving data); hidden unit j has degree
// j % max(1, D-1) + min(1, D-1), or j % D with CTX_ALL. Hidden units see inputs of degree <= theirs,
// outputs of dim i see hidden units of degree < deg(i); the context reaches every unit of the first
// layer. With CTX_ALL the units of degree 0 see the context only, so every dim's map depends on it
// (nflows' degrees leave the first dim of each order unconditional).
//
// Row tiles: the per-row kernels give each invocation 4 rows. A "unit-major" mat4x4 U holds a
// vec4 block of 4 units for each of the 4 rows (U[c] = row c), which is what the row-major
// [rows, n4] tensors load as; transpose(U)[k] is unit k over the 4 rows.

struct FlowParams {
    rows: u32,
    ctx_step: u32,   // 1: context row r / ctx_div for row r; 0: every row uses context row 0
    chunk: u32,      // wgrad: rows per chunk
    chunks: u32,     // wgrad: number of row chunks (partial sums when > 1)
    scale: f32,      // backward: L = scale * sum_rows(-log q) (times the row weight if any)
    key_lo: u32,     // sample: Philox stream
    key_hi: u32,
    off_lo: u32,
    off_hi: u32,
    stream: u32,
    zero: u32,       // always 0: added to loop bounds so compilers keep the loops (compile time)
    ctx_div: u32,    // rows per context row (>= 1): K samples per x share its context
    row_off: u32,    // sample: row r draws the Philox normals of row row_off + r (a micro-batch's
                     // rows draw what the same rows of the whole batch would)
    grad_off: u32,   // inverse_backward: dL/dtheta of row r is at floats (grad_off + r) * grad_stride + i
    grad_stride: u32,
    _pad2: u32,
}

override KIND: u32 = 0u;     // 0 MAF (affine), 1 NSF (rational-quadratic spline)
override D: u32 = 2u;        // theta dimension
override D4: u32 = 1u;
override E: u32 = 2u;        // context dimension
override E4: u32 = 1u;
override H: u32 = 50u;       // hidden width
override H4: u32 = 13u;
override L: u32 = 2u;        // hidden layers
override T: u32 = 5u;        // transforms
override K: u32 = 10u;       // spline bins
override P: u32 = 2u;        // transform parameters per dim: 2 (MAF) or 3K-1 (NSF)
override PS: u32 = 2u;       // output columns per dim: 2 (MAF) or 4*PS4 (NSF)
override PS4: u32 = 1u;
override NO4: u32 = 1u;      // output vec4 columns: ceil(D*PS/4)
override SIZE0: u32 = 26u;
override SIZEH: u32 = 689u;
override TS: u32 = 768u;     // vec4 per transform
override ACT: u32 = 5u;
override NEED_Z: bool = false; // activation derivative needs the pre-activation (GELU, SiLU)
override TAIL_B: f32 = 3.0;
override ALPHA_MAX: f32 = 5.0;
override MIN_W: f32 = 1e-3;
override MIN_H: f32 = 1e-3;
override MIN_D: f32 = 1e-3;
override DV_SHIFT: f32 = 0.0;   // inner derivatives MIN_D + softplus(raw + DV_SHIFT): ln(e^(1-MIN_D) - 1) makes raw 0 the identity
override CTX_ALL: bool = false; // hidden units of degree 0 (context only), see above
override RAW_SCALE: f32 = 1.0; // widths and heights logits are scaled by this (1/sqrt(H), as nflows)

// Spline capacities (bins <= 32); those of the per-row kernels are in lib/flow_limits.wgsl.
const MAXK: u32 = 32u;
const MAXK1: u32 = 33u;
const MAXP: u32 = 96u;
const LOG_2PI: f32 = 1.8378770664093453;

// A zero the compiler cannot see through (set from the uniform by every entry point): loops over
// transforms, layers and dims add it to their bound so they are not unrolled, which keeps the
// pipelines' compile time in seconds on CPU adapters.
var<private> nz: u32;

// ---- layout and masks ----

// Offset (vec4) of layer l within a transform; l = L is the output layer.
fn flow_layer_off(l: u32) -> u32 {
    if (l == 0u) {
        return 0u;
    }
    return SIZE0 + (l - 1u) * SIZEH;
}

fn flow_kin4(l: u32) -> u32 {
    return select(H4, D4 + E4, l == 0u);
}

fn flow_n4(l: u32) -> u32 {
    return select(H4, NO4, l == L);
}

fn deg_in(t: u32, i: u32) -> u32 {
    return select(i + 1u, D - i, (t & 1u) == 1u);
}

fn deg_h(j: u32) -> u32 {
    if (CTX_ALL) { return j % D; }
    let dm1 = D - 1u;
    return j % max(1u, dm1) + min(1u, dm1);
}

// The dim whose degree is k (1-based) in transform t.
fn dim_of_degree(t: u32, k: u32) -> u32 {
    return select(k - 1u, D - k, (t & 1u) == 1u);
}

// Whether weight (row, col) of layer l of transform t is free (not masked, not padding).
// row = 4 * kin4(l) is the bias row.
fn flow_mask(t: u32, l: u32, row: u32, col: u32) -> bool {
    let bias = row == 4u * flow_kin4(l);
    if (l == L) {
        let dim = col / PS;
        let ok = dim < D && (col % PS) < P;
        if (bias) {
            return ok;
        }
        return ok && row < H && deg_in(t, dim) > deg_h(row);
    }
    if (col >= H) {
        return false;
    }
    if (bias) {
        return true;
    }
    if (l == 0u) {
        if (row < 4u * D4) {
            return row < D && deg_h(col) >= deg_in(t, row);
        }
        return row - 4u * D4 < E;
    }
    return row < H && deg_h(col) >= deg_h(row);
}

// ---- activations (ids as lib/activations.wgsl) ----

fn flow_tanh4(x: vec4<f32>) -> vec4<f32> {
    return tanh(clamp(x, vec4<f32>(-15.0), vec4<f32>(15.0)));
}

fn flow_sigmoid4(x: vec4<f32>) -> vec4<f32> {
    return 1.0 / (1.0 + exp(-clamp(x, vec4<f32>(-80.0), vec4<f32>(80.0))));
}

fn flow_act4(x: vec4<f32>) -> vec4<f32> {
    switch ACT {
        case 1u: { return max(x, vec4<f32>(0.0)); }
        case 2u: {
            let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
            return 0.5 * x * (1.0 + flow_tanh4(u));
        }
        case 3u: { return x * flow_sigmoid4(x); }
        case 4u: { return select(exp(min(x, vec4<f32>(0.0))) - 1.0, x, x > vec4<f32>(0.0)); }
        case 5u: { return flow_tanh4(x); }
        default: { return x; }
    }
}

// act'(z) from the activation h = act(z) (identity, ReLU, ELU, tanh) or from z (GELU, SiLU).
fn flow_act_df4(h: vec4<f32>, z: vec4<f32>) -> vec4<f32> {
    switch ACT {
        case 1u: { return select(vec4<f32>(0.0), vec4<f32>(1.0), h > vec4<f32>(0.0)); }
        case 2u: {
            let u = 0.7978845608028654 * (z + 0.044715 * z * z * z);
            let t = flow_tanh4(u);
            let du = 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * z * z);
            return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * du;
        }
        case 3u: {
            let s = flow_sigmoid4(z);
            return s * (1.0 + z * (1.0 - s));
        }
        case 4u: { return select(h + 1.0, vec4<f32>(1.0), h > vec4<f32>(0.0)); }
        case 5u: { return 1.0 - h * h; }
        default: { return vec4<f32>(1.0); }
    }
}

// Column-wise product of two unit-major tiles.
fn mat_mul_elem(a: mat4x4<f32>, b: mat4x4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(a[0] * b[0], a[1] * b[1], a[2] * b[2], a[3] * b[3]);
}

// ---- affine (MAF) ----
// z = (x - mu) * exp(-alpha), alpha = ALPHA_MAX * tanh(a / ALPHA_MAX): log|dz/dx| = -alpha.

fn soft_clamp_t(a: vec4<f32>) -> vec4<f32> {
    return flow_tanh4(a / ALPHA_MAX);
}

// ---- rational-quadratic spline (NSF; Durkan et al. 2019, linear tails as nflows) ----
// Per dim: raw[0..K) width logits, raw[K..2K) height logits, raw[2K..3K-1) interior derivative
// logits; each vec4 holds one parameter for the 4 rows of the tile.

var<private> sp_raw: array<vec4<f32>, MAXP>;
var<private> sp_graw: array<vec4<f32>, MAXP>;
var<private> sp_sw: array<vec4<f32>, MAXK>;   // softmax of the width logits
var<private> sp_sh: array<vec4<f32>, MAXK>;
var<private> sp_cw: array<vec4<f32>, MAXK1>;  // knots x
var<private> sp_ch: array<vec4<f32>, MAXK1>;  // knots y
var<private> sp_dv: array<vec4<f32>, MAXK1>;  // derivatives at the knots

fn softplus4(u: vec4<f32>) -> vec4<f32> {
    return max(u, vec4<f32>(0.0)) + log(1.0 + exp(-abs(u)));
}

// Knots and derivatives from sp_raw.
fn rq_knots() {
    var mw = sp_raw[0] * RAW_SCALE;
    var mh = sp_raw[K] * RAW_SCALE;
    for (var k = 1u; k < K + nz; k++) {
        mw = max(mw, sp_raw[k] * RAW_SCALE);
        mh = max(mh, sp_raw[K + k] * RAW_SCALE);
    }
    var sw = vec4<f32>(0.0);
    var sh = vec4<f32>(0.0);
    for (var k = 0u; k < K + nz; k++) {
        let ew = exp(sp_raw[k] * RAW_SCALE - mw);
        let eh = exp(sp_raw[K + k] * RAW_SCALE - mh);
        sp_sw[k] = ew;
        sp_sh[k] = eh;
        sw += ew;
        sh += eh;
    }
    let iw = 1.0 / sw;
    let ih = 1.0 / sh;
    let cw = 1.0 - MIN_W * f32(K);
    let ch = 1.0 - MIN_H * f32(K);
    var aw = vec4<f32>(0.0);
    var ah = vec4<f32>(0.0);
    sp_cw[0] = vec4<f32>(-TAIL_B);
    sp_ch[0] = vec4<f32>(-TAIL_B);
    for (var k = 0u; k < K + nz; k++) {
        sp_sw[k] *= iw;
        sp_sh[k] *= ih;
        aw += MIN_W + cw * sp_sw[k];
        ah += MIN_H + ch * sp_sh[k];
        sp_cw[k + 1u] = 2.0 * TAIL_B * aw - TAIL_B;
        sp_ch[k + 1u] = 2.0 * TAIL_B * ah - TAIL_B;
    }
    sp_cw[K] = vec4<f32>(TAIL_B);
    sp_ch[K] = vec4<f32>(TAIL_B);
    sp_dv[0] = vec4<f32>(1.0);
    sp_dv[K] = vec4<f32>(1.0);
    for (var k = 1u; k < K + nz; k++) {
        sp_dv[k] = MIN_D + softplus4(sp_raw[2u * K + k - 1u] + DV_SHIFT);
    }
}

struct RqBin {
    idx: vec4<u32>,
    xk: vec4<f32>,
    w: vec4<f32>,
    yk: vec4<f32>,
    h: vec4<f32>,
    dk: vec4<f32>,
    dk1: vec4<f32>,
}

// The bin holding v (searched on the x knots, or on the y knots when `by_y`), per row.
fn rq_bin(v: vec4<f32>, by_y: bool) -> RqBin {
    var idx = vec4<u32>(0u);
    for (var k = 1u; k < K + nz; k++) {
        let kn = select(sp_cw[k], sp_ch[k], by_y);
        idx += select(vec4<u32>(0u), vec4<u32>(1u), v >= kn);
    }
    var b: RqBin;
    b.idx = idx;
    b.xk = sp_cw[0];
    b.w = sp_cw[1] - sp_cw[0];
    b.yk = sp_ch[0];
    b.h = sp_ch[1] - sp_ch[0];
    b.dk = sp_dv[0];
    b.dk1 = sp_dv[1];
    for (var k = 1u; k < K + nz; k++) {
        let m = idx == vec4<u32>(k);
        b.xk = select(b.xk, sp_cw[k], m);
        b.w = select(b.w, sp_cw[k + 1u] - sp_cw[k], m);
        b.yk = select(b.yk, sp_ch[k], m);
        b.h = select(b.h, sp_ch[k + 1u] - sp_ch[k], m);
        b.dk = select(b.dk, sp_dv[k], m);
        b.dk1 = select(b.dk1, sp_dv[k + 1u], m);
    }
    return b;
}

struct RqOut {
    y: vec4<f32>,
    ld: vec4<f32>,
}

fn rq_inside(v: vec4<f32>) -> vec4<bool> {
    return (v >= vec4<f32>(-TAIL_B)) & (v <= vec4<f32>(TAIL_B));
}

// log dy/dx inside the bin at xi.
fn rq_logdet(b: RqBin, xi: vec4<f32>) -> vec4<f32> {
    let s = b.h / b.w;
    let t2 = xi * (1.0 - xi);
    let den = s + (b.dk + b.dk1 - 2.0 * s) * t2;
    let om = 1.0 - xi;
    let m = b.dk1 * xi * xi + 2.0 * s * t2 + b.dk * om * om;
    return log(s * s * m) - 2.0 * log(den);
}

// Forward y = g(x) and log g'(x) (knots from rq_knots).
fn rq_forward(x: vec4<f32>) -> RqOut {
    let inside = rq_inside(x);
    let xc = clamp(x, vec4<f32>(-TAIL_B), vec4<f32>(TAIL_B));
    let b = rq_bin(xc, false);
    let xi = clamp((xc - b.xk) / b.w, vec4<f32>(0.0), vec4<f32>(1.0));
    let s = b.h / b.w;
    let t2 = xi * (1.0 - xi);
    let den = s + (b.dk + b.dk1 - 2.0 * s) * t2;
    let y = b.yk + b.h * (s * xi * xi + b.dk * t2) / den;
    var o: RqOut;
    o.y = select(x, y, inside);
    o.ld = select(vec4<f32>(0.0), rq_logdet(b, xi), inside);
    return o;
}

// Inverse x = g^-1(y), with log g'(x) (the forward log-determinant at the result).
fn rq_inverse(y: vec4<f32>) -> RqOut {
    let inside = rq_inside(y);
    let yc = clamp(y, vec4<f32>(-TAIL_B), vec4<f32>(TAIL_B));
    let b = rq_bin(yc, true);
    let s = b.h / b.w;
    let dy = yc - b.yk;
    let sum = b.dk + b.dk1 - 2.0 * s;
    let qa = b.h * (s - b.dk) + dy * sum;
    let qb = b.h * b.dk - dy * sum;
    let qc = -s * dy;
    let disc = max(qb * qb - 4.0 * qa * qc, vec4<f32>(0.0));
    let xi = clamp(2.0 * qc / (-qb - sqrt(disc)), vec4<f32>(0.0), vec4<f32>(1.0));
    var o: RqOut;
    o.y = select(y, xi * b.w + b.xk, inside);
    o.ld = select(vec4<f32>(0.0), rq_logdet(b, xi), inside);
    return o;
}

// Backward of L(y, ld) with dL/dy = gy, dL/dld = gl: writes dL/draw into sp_graw[0 .. P) and
// returns dL/dx. Knots from rq_knots (sp_raw unchanged).
fn rq_backward(x: vec4<f32>, gy: vec4<f32>, gl: vec4<f32>) -> vec4<f32> {
    let inside = rq_inside(x);
    let xc = clamp(x, vec4<f32>(-TAIL_B), vec4<f32>(TAIL_B));
    let b = rq_bin(xc, false);
    let xi = clamp((xc - b.xk) / b.w, vec4<f32>(0.0), vec4<f32>(1.0));
    let s = b.h / b.w;
    let om = 1.0 - xi;
    let t2 = xi * om;
    let sum = b.dk + b.dk1 - 2.0 * s;
    let den = s + sum * t2;
    let n = s * xi * xi + b.dk * t2;
    let m = b.dk1 * xi * xi + 2.0 * s * t2 + b.dk * om * om;
    let id = 1.0 / den;
    let id2 = id * id;
    let im = 1.0 / m;
    let n_xi = 2.0 * s * xi + b.dk * (1.0 - 2.0 * xi);
    let d_xi = sum * (1.0 - 2.0 * xi);
    let m_xi = 2.0 * b.dk1 * xi + 2.0 * s * (1.0 - 2.0 * xi) - 2.0 * b.dk * om;
    // Partials of y and of ld in (xi, s, dk, dk1, h), then combined with the upstream gradients.
    let y_xi = b.h * (n_xi * den - n * d_xi) * id2;
    let y_s = b.h * (xi * xi * den - n * (1.0 - 2.0 * t2)) * id2;
    let y_dk = b.h * t2 * (den - n) * id2;
    let y_dk1 = -b.h * n * t2 * id2;
    let y_h = n * id;
    let l_xi = m_xi * im - 2.0 * d_xi * id;
    let l_s = 2.0 / s + 2.0 * t2 * im - 2.0 * (1.0 - 2.0 * t2) * id;
    let l_dk = om * om * im - 2.0 * t2 * id;
    let l_dk1 = xi * xi * im - 2.0 * t2 * id;
    let zero = vec4<f32>(0.0);
    let g_xi = gy * y_xi + gl * l_xi;
    let g_s = select(zero, gy * y_s + gl * l_s, inside);
    let g_dk = select(zero, gy * y_dk + gl * l_dk, inside);
    let g_dk1 = select(zero, gy * y_dk1 + gl * l_dk1, inside);
    let iw = 1.0 / b.w;
    let g_x = select(gy, g_xi * iw, inside);
    let g_xk = select(zero, -g_xi * iw, inside);
    let g_w = select(zero, -(g_xi * xi + g_s * s) * iw, inside);
    let g_yk = select(zero, gy, inside);
    let g_h = select(zero, gy * y_h + g_s * iw, inside);
    // Knot m (< K) sits at -B + 2B * sum_{j<m} wn_j: the bin's left knot moves with every width
    // before it, its width with its own normalised width only.
    let cw = 1.0 - MIN_W * f32(K);
    let chh = 1.0 - MIN_H * f32(K);
    var dotw = vec4<f32>(0.0);
    var doth = vec4<f32>(0.0);
    for (var j = 0u; j < K + nz; j++) {
        let jv = vec4<u32>(j);
        let before = jv < b.idx;
        let same = jv == b.idx;
        let gw = 2.0 * TAIL_B * cw * (select(zero, g_xk, before) + select(zero, g_w, same));
        let gh = 2.0 * TAIL_B * chh * (select(zero, g_yk, before) + select(zero, g_h, same));
        sp_graw[j] = gw;
        sp_graw[K + j] = gh;
        dotw += sp_sw[j] * gw;
        doth += sp_sh[j] * gh;
    }
    for (var j = 0u; j < K + nz; j++) {
        sp_graw[j] = sp_sw[j] * (sp_graw[j] - dotw) * RAW_SCALE;
        sp_graw[K + j] = sp_sh[j] * (sp_graw[K + j] - doth) * RAW_SCALE;
    }
    for (var k = 1u; k < K + nz; k++) {
        let kv = vec4<u32>(k);
        let g = select(zero, g_dk, kv == b.idx) + select(zero, g_dk1, kv == b.idx + 1u);
        sp_graw[2u * K + k - 1u] = g * flow_sigmoid4(sp_raw[2u * K + k - 1u] + DV_SHIFT);
    }
    return g_x;
}

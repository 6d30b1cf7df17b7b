// Column reductions over a batch: element (r, c) of the input is x[r * stride + c * col_stride]
// (row-major matrices: col_stride 1; per-model rows laid model after model: stride 1,
// col_stride rows), output [cols].
// OP: 0 sum, 1 mean, 2 max, 3 log-sum-exp.  One workgroup per column; each invocation folds a
// strided slice of rows, then a tree in workgroup memory combines the partial results.
// Log-sum-exp keeps a running (max, sum of exp(x - max)) pair, so it is one pass and never overflows.

struct ReduceParams {
    rows: u32,
    cols: u32,
    stride: u32,
    col_stride: u32,
}

override OP: u32 = 0u;
override ACCUM: bool = false; // add the result to out[c] (accumulating losses across steps)
const WG: u32 = 256u;
const NEG_INF: f32 = -3.4028235e38;

@group(0) @binding(0) var<uniform> p: ReduceParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> s_a: array<f32, WG>;
var<workgroup> s_b: array<f32, WG>;

// Combine two (max, scaled-sum) pairs of log-sum-exp.
fn lse_merge(m1: f32, s1: f32, m2: f32, s2: f32) -> vec2<f32> {
    let m = max(m1, m2);
    if (m <= NEG_INF) {
        return vec2<f32>(NEG_INF, 0.0);
    }
    return vec2<f32>(m, s1 * exp(m1 - m) + s2 * exp(m2 - m));
}

@compute @workgroup_size(WG)
fn reduce_cols(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let c = wid.x;
    let t = lid.x;
    var a = 0.0;
    var b = 0.0;
    if (OP == 2u || OP == 3u) {
        a = NEG_INF;
    }
    if (c < p.cols) {
        for (var r = t; r < p.rows; r = r + WG) {
            let v = x[r * p.stride + c * p.col_stride];
            switch OP {
                case 2u: { a = max(a, v); }
                case 3u: {
                    let m = lse_merge(a, b, v, 1.0);
                    a = m.x;
                    b = m.y;
                }
                default: { a = a + v; }
            }
        }
    }
    s_a[t] = a;
    s_b[t] = b;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h = h / 2u) {
        if (t < h) {
            switch OP {
                case 2u: { s_a[t] = max(s_a[t], s_a[t + h]); }
                case 3u: {
                    let m = lse_merge(s_a[t], s_b[t], s_a[t + h], s_b[t + h]);
                    s_a[t] = m.x;
                    s_b[t] = m.y;
                }
                default: { s_a[t] = s_a[t] + s_a[t + h]; }
            }
        }
        workgroupBarrier();
    }
    if (t == 0u && c < p.cols) {
        var r = s_a[0];
        switch OP {
            case 1u: { r = r / f32(max(p.rows, 1u)); }
            case 3u: { r = s_a[0] + log(s_b[0]); }
            default: {}
        }
        if (ACCUM) {
            r = r + out[c];
        }
        out[c] = r;
    }
}

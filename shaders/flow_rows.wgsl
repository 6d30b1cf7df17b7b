// Conditional MADE flows, per-row passes (requires lib/philox.wgsl, lib/flow_common.wgsl,
// lib/flow_limits.wgsl or lib/flow_limits_wide.wgsl, and lib/flow_tiles.wgsl or
// lib/flow_tiles_sg.wgsl). Each invocation carries 4 rows through every
// transform and every MADE layer in registers and private memory; weights are read in 4x4 tiles
// at addresses that are the same for every invocation (see the tiles library). Invocations past
// the last row run on with clamped rows and store nothing (the subgroup tile loads need them).
// One launch per pass:
//   forward:  theta -> log q(theta | c), writing the tape the backward pass reads
//   backward: tape -> dL/d(pre-activations), dL/d(MADE outputs) (for flow_wgrad), dL/dcontext
//   sample:   z (Philox or a buffer) -> theta by inverting every transform, and log q(theta | c)
//   inverse_backward: gradients through the sample theta = T^-1(z; c) with z fixed (the
//             reparameterized sample): reads the forward tape at theta and dL/dtheta, writes the
//             gradient tape (for flow_wgrad) and dL/dcontext per row
//   context_sum: dL/dcontext per context row = the sum over the rows that share it
//
// Tape (vec4 units), rows R:  XS = 0: x_t, t = 0..T      [(T+1), R, D4]   (x_0 = theta, x_T = z)
//                             HS: hidden activations       [T, L, R, H4]
//                             ZS: pre-activations (NEED_Z)  [T, L, R, H4]
//                             OS: raw MADE outputs         [T, R, NO4]
// Gradient tape:              DZ = 0: dL/dz of hidden layers [T, L, R, H4];  DO: dL/d(outputs) [T, R, NO4]

@group(0) @binding(0) var<uniform> p: FlowParams;
@group(0) @binding(1) var<storage, read> prm: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> in_a: array<vec4<f32>>;     // forward: theta; backward, inverse_backward: tape; sample: z (Z_BUF); context_sum: dL/dcontext per row
@group(0) @binding(3) var<storage, read> in_b: array<vec4<f32>>;     // context [rows or 1, E4]
@group(0) @binding(4) var<storage, read> in_w: array<f32>;           // backward: per-row weights (ROW_W); inverse_backward: dL/dtheta
@group(0) @binding(5) var<storage, read_write> out_a: array<vec4<f32>>; // forward: tape; backward, inverse_backward: gradient tape; sample: theta
@group(0) @binding(6) var<storage, read_write> out_b: array<vec4<f32>>; // backward, inverse_backward: dL/dcontext [rows, E4]; context_sum: per context row
@group(0) @binding(7) var<storage, read_write> out_f: array<f32>;       // forward, sample: log q [rows]

override WG: u32 = 64u;
override Z_BUF: bool = false;  // sample: z from in_a [rows, D4] instead of the Philox stream
override ROW_W: bool = false;  // backward: L = scale * sum_r w_r * (-log q_r) with w from in_w
override TAPE: bool = true;    // forward: write the tape (off for evaluation only)
override STEP_CTR: bool = false; // sample: add the optimizer's GPU step counter (in_w word 0) to the
                                 // stream offset, so each step of a queued epoch draws fresh z
override CTX_GRAD: bool = true;  // inverse_backward: write dL/dcontext (out_b)
override ACCUM: bool = false;    // context_sum: add to out_b instead of overwriting

var<private> xd: array<vec4<f32>, MAXD>;        // current x, one vec4 (4 rows) per dim
var<private> yd: array<vec4<f32>, MAXD>;        // sample: the transform's output being inverted
var<private> gx: array<vec4<f32>, MAXD>;        // backward: dL/dx_{t+1}
var<private> gn: array<vec4<f32>, MAXD>;        // backward: dL/dx_t
var<private> xu: array<mat4x4<f32>, MAXD4>;     // x as unit-major tiles
var<private> cu: array<mat4x4<f32>, MAXE4>;     // context tiles
var<private> dcu: array<mat4x4<f32>, MAXE4>;    // backward: dL/dcontext
var<private> hb: array<mat4x4<f32>, MAXH4>;     // activations of the current hidden layer
var<private> zb: array<mat4x4<f32>, MAXH4>;     // pre-activations / backward: dL/dz
var<private> db: array<mat4x4<f32>, MAXH4>;     // backward: dL/dh
var<private> ob: array<mat4x4<f32>, MAXO4>;     // output tiles
var<private> dtot: array<mat4x4<f32>, MAXH4>;   // inverse_backward: dL/dh of the last hidden layer, all dims

fn flat_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

fn rows4(r0: u32) -> vec4<u32> {
    let last = p.rows - 1u;
    return vec4<u32>(min(r0, last), min(r0 + 1u, last), min(r0 + 2u, last), min(r0 + 3u, last));
}

// Weight tile: rows row..row+3, vec4 column cb, of a layer at `base` with n4 columns.
fn wtile(base: u32, row: u32, n4: u32, cb: u32) -> mat4x4<f32> {
    let i = base + row * n4 + cb;
    var m = mat4x4<f32>();
    for (var k = 0u; k < TILE_LOADS; k++) {
        m[k] = prm[i + tile_row(k) * n4];
    }
    return tile_share(m);
}

fn btile(i: u32) -> mat4x4<f32> {
    let b = prm[i];
    return mat4x4<f32>(b, b, b, b);
}

fn cols_mask(v: vec4<f32>, block: u32, n: u32) -> vec4<f32> {
    let c = vec4<u32>(block * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
    return select(vec4<f32>(0.0), v, c < vec4<u32>(n));
}

// ---- tape addressing (vec4 index of row r, block b) ----
fn t_xs(t: u32, r: u32, b: u32) -> u32 {
    return (t * p.rows + r) * D4 + b;
}
fn t_hs(t: u32, l: u32, r: u32, b: u32) -> u32 {
    return (T + 1u) * p.rows * D4 + ((t * L + l) * p.rows + r) * H4 + b;
}
fn t_zs(t: u32, l: u32, r: u32, b: u32) -> u32 {
    return t_hs(t, l, r, b) + T * L * p.rows * H4;
}
fn t_os(t: u32, r: u32, b: u32) -> u32 {
    let zs = select(0u, T * L * p.rows * H4, NEED_Z);
    return (T + 1u) * p.rows * D4 + T * L * p.rows * H4 + zs + (t * p.rows + r) * NO4 + b;
}
fn g_dz(t: u32, l: u32, r: u32, b: u32) -> u32 {
    return ((t * L + l) * p.rows + r) * H4 + b;
}
fn g_do(t: u32, r: u32, b: u32) -> u32 {
    return T * L * p.rows * H4 + (t * p.rows + r) * NO4 + b;
}

fn store_tile(idx0: u32, stride: u32, r0: u32, v: mat4x4<f32>) {
    for (var c = 0u; c < 4u; c++) {
        if (r0 + c < p.rows) {
            out_a[idx0 + c * stride] = v[c];
        }
    }
}

fn load_context(rr: vec4<u32>) {
    let cr = (rr / p.ctx_div) * p.ctx_step;
    for (var ib = 0u; ib < E4; ib++) {
        cu[ib] = mat4x4<f32>(
            cols_mask(in_b[cr.x * E4 + ib], ib, E),
            cols_mask(in_b[cr.y * E4 + ib], ib, E),
            cols_mask(in_b[cr.z * E4 + ib], ib, E),
            cols_mask(in_b[cr.w * E4 + ib], ib, E));
    }
}

// xd <- rows of a [rows, D4] block tensor at vec4 index base + r * D4.
fn load_x_tape(t: u32, rr: vec4<u32>) {
    for (var ib = 0u; ib < D4; ib++) {
        let u = mat4x4<f32>(in_a[t_xs(t, rr.x, ib)], in_a[t_xs(t, rr.y, ib)],
                            in_a[t_xs(t, rr.z, ib)], in_a[t_xs(t, rr.w, ib)]);
        let x = transpose(u);
        for (var c = 0u; c < 4u; c++) {
            xd[4u * ib + c] = x[c];
        }
    }
}

fn x_tile(ib: u32) -> mat4x4<f32> {
    return transpose(mat4x4<f32>(xd[4u * ib], xd[4u * ib + 1u], xd[4u * ib + 2u], xd[4u * ib + 3u]));
}

fn store_x(t: u32, r0: u32) {
    for (var ib = 0u; ib < D4; ib++) {
        store_tile(t_xs(t, r0, ib), D4, r0, x_tile(ib));
    }
}

// The hidden layers of transform t's MADE on xd and the context: hb = last hidden activations.
fn made_hidden(t: u32, tape: bool, r0: u32) {
    let tb = t * TS;
    for (var ib = 0u; ib < D4; ib++) {
        xu[ib] = x_tile(ib);
    }
    let bias0 = tb + 4u * (D4 + E4) * H4;
    for (var jb = 0u; jb < H4; jb++) {
        var acc = btile(bias0 + jb);
        for (var ib = 0u; ib < D4; ib++) {
            acc += wtile(tb, 4u * ib, H4, jb) * xu[ib];
        }
        for (var ib = 0u; ib < E4; ib++) {
            acc += wtile(tb, 4u * (D4 + ib), H4, jb) * cu[ib];
        }
        zb[jb] = acc;
    }
    for (var l = 0u; l < L + nz; l++) {
        if (l > 0u) {
            let base = tb + SIZE0 + (l - 1u) * SIZEH;
            let bb = base + 4u * H4 * H4;
            for (var jb = 0u; jb < H4; jb++) {
                var acc = btile(bb + jb);
                for (var ib = 0u; ib < H4; ib++) {
                    acc += wtile(base, 4u * ib, H4, jb) * hb[ib];
                }
                zb[jb] = acc;
            }
        }
        for (var jb = 0u; jb < H4; jb++) {
            let z = zb[jb];
            let h = mat4x4<f32>(flow_act4(z[0]), flow_act4(z[1]), flow_act4(z[2]), flow_act4(z[3]));
            hb[jb] = h;
            if (tape) {
                store_tile(t_hs(t, l, r0, jb), H4, r0, h);
                if (NEED_Z) {
                    store_tile(t_zs(t, l, r0, jb), H4, r0, z);
                }
            }
        }
    }
}

// Output tile cb of transform t's MADE from hb.
fn made_out(t: u32, cb: u32) -> mat4x4<f32> {
    let base = t * TS + SIZE0 + (L - 1u) * SIZEH;
    var acc = btile(base + 4u * H4 * NO4 + cb);
    for (var ib = 0u; ib < H4; ib++) {
        acc += wtile(base, 4u * ib, NO4, cb) * hb[ib];
    }
    return acc;
}

// Applies transform t to xd (theta -> z direction); returns its log|det| per row.
fn transform_forward(t: u32, tape: bool, r0: u32) -> vec4<f32> {
    var ld = vec4<f32>(0.0);
    if (KIND == 0u) {
        for (var cb = 0u; cb < NO4; cb++) {
            let o = made_out(t, cb);
            if (tape) {
                store_tile(t_os(t, r0, cb), NO4, r0, o);
            }
            let ot = transpose(o);
            for (var hh = 0u; hh < 2u; hh++) {
                let i = 2u * cb + hh;
                if (i < D) {
                    let alpha = ALPHA_MAX * soft_clamp_t(ot[2u * hh + 1u]);
                    xd[i] = (xd[i] - ot[2u * hh]) * exp(-alpha);
                    ld -= alpha;
                }
            }
        }
    } else {
        for (var i = 0u; i < D + nz; i++) {
            for (var q = 0u; q < PS4; q++) {
                let o = made_out(t, i * PS4 + q);
                if (tape) {
                    store_tile(t_os(t, r0, i * PS4 + q), NO4, r0, o);
                }
                let ot = transpose(o);
                for (var c = 0u; c < 4u; c++) {
                    sp_raw[4u * q + c] = ot[c];
                }
            }
            rq_knots();
            let r = rq_forward(xd[i]);
            xd[i] = r.y;
            ld += r.ld;
        }
    }
    return ld;
}

fn log_normal(n: u32) -> vec4<f32> {
    var s = vec4<f32>(-0.5 * f32(D) * LOG_2PI);
    for (var i = 0u; i < n; i++) {
        s -= 0.5 * xd[i] * xd[i];
    }
    return s;
}

fn store_rows_f(r0: u32, v: vec4<f32>) {
    for (var c = 0u; c < 4u; c++) {
        if (r0 + c < p.rows) {
            out_f[r0 + c] = v[c];
        }
    }
}

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    tiles_begin();
    nz = p.zero;
    let r0 = flat_id(gid, nwg) * 4u;
    let rr = rows4(r0);
    load_context(rr);
    for (var ib = 0u; ib < D4; ib++) {
        let u = mat4x4<f32>(
            cols_mask(in_a[rr.x * D4 + ib], ib, D), cols_mask(in_a[rr.y * D4 + ib], ib, D),
            cols_mask(in_a[rr.z * D4 + ib], ib, D), cols_mask(in_a[rr.w * D4 + ib], ib, D));
        let x = transpose(u);
        for (var c = 0u; c < 4u; c++) {
            xd[4u * ib + c] = x[c];
        }
    }
    var ld = vec4<f32>(0.0);
    for (var t = 0u; t < T + nz; t++) {
        if (TAPE) {
            store_x(t, r0);
        }
        made_hidden(t, TAPE, r0);
        ld += transform_forward(t, TAPE, r0);
    }
    if (TAPE) {
        store_x(T, r0);
    }
    store_rows_f(r0, log_normal(D) + ld);
}

// Backward of transform t's elementwise map: reads xd (x_t), gx (dL/dx_{t+1}), the raw outputs;
// writes gn (direct part of dL/dx_t), the output gradients to the gradient tape, and dL/dh of
// the last hidden layer into db.
fn transform_backward(t: u32, rr: vec4<u32>, r0: u32, wv: vec4<f32>) {
    let base = t * TS + SIZE0 + (L - 1u) * SIZEH;
    if (KIND == 0u) {
        for (var cb = 0u; cb < NO4; cb++) {
            let ot = transpose(mat4x4<f32>(in_a[t_os(t, rr.x, cb)], in_a[t_os(t, rr.y, cb)],
                                           in_a[t_os(t, rr.z, cb)], in_a[t_os(t, rr.w, cb)]));
            var dt = mat4x4<f32>();
            for (var hh = 0u; hh < 2u; hh++) {
                let i = 2u * cb + hh;
                if (i < D) {
                    let th = soft_clamp_t(ot[2u * hh + 1u]);
                    let s = exp(-ALPHA_MAX * th);
                    let z = (xd[i] - ot[2u * hh]) * s;
                    let g = gx[i];
                    dt[2u * hh] = -g * s;
                    dt[2u * hh + 1u] = (-g * z - wv) * (1.0 - th * th);
                    gn[i] = g * s;
                }
            }
            ob[cb] = transpose(dt);
            store_tile(g_do(t, r0, cb), NO4, r0, ob[cb]);
        }
        for (var ib = 0u; ib < H4; ib++) {
            var acc = mat4x4<f32>();
            for (var cb = 0u; cb < NO4; cb++) {
                acc += transpose(wtile(base, 4u * ib, NO4, cb)) * ob[cb];
            }
            db[ib] = acc;
        }
    } else {
        for (var ib = 0u; ib < H4 + nz; ib++) {
            db[ib] = mat4x4<f32>();
        }
        for (var i = 0u; i < D + nz; i++) {
            for (var q = 0u; q < PS4 + nz; q++) {
                let cb = i * PS4 + q;
                let ot = transpose(mat4x4<f32>(in_a[t_os(t, rr.x, cb)], in_a[t_os(t, rr.y, cb)],
                                               in_a[t_os(t, rr.z, cb)], in_a[t_os(t, rr.w, cb)]));
                for (var c = 0u; c < 4u; c++) {
                    sp_raw[4u * q + c] = ot[c];
                }
            }
            rq_knots();
            gn[i] = rq_backward(xd[i], gx[i], wv);
            for (var j = P; j < 4u * PS4; j++) {
                sp_graw[j] = vec4<f32>(0.0);
            }
            for (var q = 0u; q < PS4 + nz; q++) {
                ob[q] = transpose(mat4x4<f32>(sp_graw[4u * q], sp_graw[4u * q + 1u],
                                              sp_graw[4u * q + 2u], sp_graw[4u * q + 3u]));
                store_tile(g_do(t, r0, i * PS4 + q), NO4, r0, ob[q]);
            }
            for (var ib = 0u; ib < H4 + nz; ib++) {
                var acc = db[ib];
                for (var q = 0u; q < PS4 + nz; q++) {
                    acc += transpose(wtile(base, 4u * ib, NO4, i * PS4 + q)) * ob[q];
                }
                db[ib] = acc;
            }
        }
    }
}

// Back-propagates db (dL/dh of the last hidden layer of transform t) through the MADE's hidden
// layers, with the activations of the tape: leaves dL/dz of layer 0 in zb, and with `store` writes
// every hidden layer's dL/dz to the gradient tape.
fn made_hidden_backward(t: u32, rr: vec4<u32>, r0: u32, store: bool) {
    let tb = t * TS;
    for (var ll = 0u; ll < L + nz; ll++) {
        let l = L - 1u - ll;
        // dz = dh * act'(z)
        for (var jb = 0u; jb < H4; jb++) {
            let h = mat4x4<f32>(in_a[t_hs(t, l, rr.x, jb)], in_a[t_hs(t, l, rr.y, jb)],
                                in_a[t_hs(t, l, rr.z, jb)], in_a[t_hs(t, l, rr.w, jb)]);
            var z = h;
            if (NEED_Z) {
                z = mat4x4<f32>(in_a[t_zs(t, l, rr.x, jb)], in_a[t_zs(t, l, rr.y, jb)],
                                in_a[t_zs(t, l, rr.z, jb)], in_a[t_zs(t, l, rr.w, jb)]);
            }
            let dfd = mat4x4<f32>(flow_act_df4(h[0], z[0]), flow_act_df4(h[1], z[1]),
                                  flow_act_df4(h[2], z[2]), flow_act_df4(h[3], z[3]));
            let dz = mat_mul_elem(db[jb], dfd);
            zb[jb] = dz;
            if (store) {
                store_tile(g_dz(t, l, r0, jb), H4, r0, dz);
            }
        }
        if (l > 0u) {
            let base = tb + SIZE0 + (l - 1u) * SIZEH;
            for (var ib = 0u; ib < H4; ib++) {
                var acc = mat4x4<f32>();
                for (var jb = 0u; jb < H4; jb++) {
                    acc += transpose(wtile(base, 4u * ib, H4, jb)) * zb[jb];
                }
                db[ib] = acc;
            }
        }
    }
}

// dL/dx_t of the x block ib from layer 0's dL/dz (zb): g[c] is dim 4 ib + c over the 4 rows.
fn made_x_grad(tb: u32, ib: u32) -> mat4x4<f32> {
    var acc = mat4x4<f32>();
    for (var jb = 0u; jb < H4; jb++) {
        acc += transpose(wtile(tb, 4u * ib, H4, jb)) * zb[jb];
    }
    return transpose(acc);
}

// dcu += dL/dcontext from layer 0's dL/dz (zb).
fn made_context_grad(tb: u32) {
    for (var ib = 0u; ib < E4; ib++) {
        var acc = dcu[ib];
        for (var jb = 0u; jb < H4; jb++) {
            acc += transpose(wtile(tb, 4u * (D4 + ib), H4, jb)) * zb[jb];
        }
        dcu[ib] = acc;
    }
}

fn store_dcontext(r0: u32) {
    for (var ib = 0u; ib < E4; ib++) {
        for (var c = 0u; c < 4u; c++) {
            if (r0 + c < p.rows) {
                out_b[(r0 + c) * E4 + ib] = cols_mask(dcu[ib][c], ib, E);
            }
        }
    }
}

@compute @workgroup_size(WG)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    tiles_begin();
    nz = p.zero;
    let r0 = flat_id(gid, nwg) * 4u;
    let rr = rows4(r0);
    let valid = (vec4<u32>(r0) + vec4<u32>(0u, 1u, 2u, 3u)) < vec4<u32>(p.rows);
    // dL/dlog q per row.
    var wv = select(vec4<f32>(0.0), vec4<f32>(-p.scale), valid);
    if (ROW_W) {
        wv *= vec4<f32>(in_w[rr.x], in_w[rr.y], in_w[rr.z], in_w[rr.w]);
    }
    load_x_tape(T, rr);
    for (var i = 0u; i < D; i++) {
        gx[i] = -wv * xd[i];
    }
    for (var ib = 0u; ib < E4; ib++) {
        dcu[ib] = mat4x4<f32>();
    }
    for (var tt = 0u; tt < T + nz; tt++) {
        let t = T - 1u - tt;
        let tb = t * TS;
        load_x_tape(t, rr);
        transform_backward(t, rr, r0, wv);
        made_hidden_backward(t, rr, r0, true);
        // Layer 0: into x_t and the context.
        for (var ib = 0u; ib < D4; ib++) {
            let g = made_x_grad(tb, ib);
            for (var c = 0u; c < 4u; c++) {
                let i = 4u * ib + c;
                if (i < D) {
                    gx[i] = gn[i] + g[c];
                }
            }
        }
        made_context_grad(tb);
    }
    store_dcontext(r0);
}

// Standard normal number j of the Philox stream (as kernels::rng::RngStream::normal).
fn philox_normal(j: u32) -> f32 {
    var off_hi = p.off_hi;
    if (STEP_CTR) {
        off_hi += bitcast<u32>(in_w[0]);
    }
    let b = philox4x32_10(vec4<u32>(j / 4u, p.off_lo, off_hi, p.stream), vec2<u32>(p.key_lo, p.key_hi));
    let lane = j % 4u;
    let hi = lane >= 2u;
    let n = box_muller(u32_to_unit(select(b.x, b.z, hi)), u32_to_unit(select(b.y, b.w, hi)));
    return select(n.x, n.y, (lane & 1u) == 1u);
}

@compute @workgroup_size(WG)
fn sample(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    tiles_begin();
    nz = p.zero;
    let r0 = flat_id(gid, nwg) * 4u;
    let rr = rows4(r0);
    load_context(rr);
    for (var i = 0u; i < MAXD; i++) {
        xd[i] = vec4<f32>(0.0);
    }
    if (Z_BUF) {
        for (var ib = 0u; ib < D4; ib++) {
            let x = transpose(mat4x4<f32>(
                cols_mask(in_a[rr.x * D4 + ib], ib, D), cols_mask(in_a[rr.y * D4 + ib], ib, D),
                cols_mask(in_a[rr.z * D4 + ib], ib, D), cols_mask(in_a[rr.w * D4 + ib], ib, D)));
            for (var c = 0u; c < 4u; c++) {
                xd[4u * ib + c] = x[c];
            }
        }
    } else {
        for (var i = 0u; i < D; i++) {
            let g = rr + vec4<u32>(p.row_off);
            xd[i] = vec4<f32>(philox_normal(g.x * D + i), philox_normal(g.y * D + i),
                              philox_normal(g.z * D + i), philox_normal(g.w * D + i));
        }
    }
    var lq = log_normal(D);
    for (var tt = 0u; tt < T + nz; tt++) {
        let t = T - 1u - tt;
        for (var i = 0u; i < D; i++) {
            yd[i] = xd[i];
            xd[i] = vec4<f32>(0.0);
        }
        for (var k = 1u; k <= D + nz; k++) {
            let i = dim_of_degree(t, k);
            made_hidden(t, false, r0);
            if (KIND == 0u) {
                let ot = transpose(made_out(t, i / 2u));
                let hh = i % 2u;
                let alpha = ALPHA_MAX * soft_clamp_t(ot[2u * hh + 1u]);
                xd[i] = yd[i] * exp(alpha) + ot[2u * hh];
                lq -= alpha;
            } else {
                for (var q = 0u; q < PS4; q++) {
                    let ot = transpose(made_out(t, i * PS4 + q));
                    for (var c = 0u; c < 4u; c++) {
                        sp_raw[4u * q + c] = ot[c];
                    }
                }
                rq_knots();
                let r = rq_inverse(yd[i]);
                xd[i] = r.y;
                lq += r.ld;
            }
        }
    }
    for (var ib = 0u; ib < D4; ib++) {
        store_tile(r0 * D4 + ib, D4, r0, x_tile(ib));
    }
    store_rows_f(r0, lq);
}

// Gradients through the sample theta = x_0 = T^-1(z; c), z = x_T held fixed. Reads the forward tape
// at theta (x_t, the MADE's activations and outputs at x_t: the values the sequential inverse
// produced) and dL/dtheta; writes the gradient tape (dL/dz of every hidden layer, dL/d(outputs)),
// from which flow_wgrad forms the weight gradients, and dL/dcontext per row (CTX_GRAD).
// Transform t maps x_t to x_{t+1} = F_t(x_t; c); with g = dL/dx_t, v = J^-T g is dL/dx_{t+1} and
// the transform's parameters (and c) get -v^T dF_t/d(params): implicit differentiation. J is
// triangular in the transform's order, so the solve runs over the dims from the last in that
// order to the first: v_i = g_i / g'(x_i); dim i's outputs get -v_i dg/d(params_i) (MAF:
// d mu = g_i, d a = g_i (x_i - mu)(1 - tanh^2(a / ALPHA_MAX))), which are back-propagated through
// the MADE at x_t into g of the dims before it (the MADE's output i sees only those). The MADE's
// weights and the context see the sum over dims: one more pass through the hidden layers, from
// the summed dL/dh of the last hidden layer. Transforms from t = 0 (the order opposite to sampling).
@compute @workgroup_size(WG)
fn inverse_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    tiles_begin();
    nz = p.zero;
    let r0 = flat_id(gid, nwg) * 4u;
    let rr = rows4(r0);
    let valid = (vec4<u32>(r0) + vec4<u32>(0u, 1u, 2u, 3u)) < vec4<u32>(p.rows);
    let gr = (vec4<u32>(p.grad_off) + rr) * p.grad_stride;
    for (var i = 0u; i < D; i++) {
        let g = vec4<f32>(in_w[gr.x + i], in_w[gr.y + i], in_w[gr.z + i], in_w[gr.w + i]);
        gx[i] = select(vec4<f32>(0.0), g, valid);
    }
    for (var ib = 0u; ib < E4; ib++) {
        dcu[ib] = mat4x4<f32>();
    }
    for (var t = 0u; t < T + nz; t++) {
        let tb = t * TS;
        let base = tb + SIZE0 + (L - 1u) * SIZEH;
        load_x_tape(t, rr);
        for (var ib = 0u; ib < H4; ib++) {
            dtot[ib] = mat4x4<f32>();
        }
        if (KIND == 0u) {
            for (var cb = 0u; cb < NO4; cb++) {
                ob[cb] = mat4x4<f32>();
            }
        }
        for (var kk = 0u; kk < D + nz; kk++) {
            let k = D - kk;
            let i = dim_of_degree(t, k);
            if (KIND == 0u) {
                let cb = i / 2u;
                let hh = i % 2u;
                let ot = transpose(mat4x4<f32>(in_a[t_os(t, rr.x, cb)], in_a[t_os(t, rr.y, cb)],
                                               in_a[t_os(t, rr.z, cb)], in_a[t_os(t, rr.w, cb)]));
                let th = soft_clamp_t(ot[2u * hh + 1u]);
                let g = gx[i];
                gn[i] = g * exp(ALPHA_MAX * th);
                var dt = mat4x4<f32>();
                dt[2u * hh] = g;
                dt[2u * hh + 1u] = g * (xd[i] - ot[2u * hh]) * (1.0 - th * th);
                let o = transpose(dt);
                ob[cb] += o;
                for (var ib = 0u; ib < H4; ib++) {
                    let a = transpose(wtile(base, 4u * ib, NO4, cb)) * o;
                    db[ib] = a;
                    dtot[ib] += a;
                }
            } else {
                for (var q = 0u; q < PS4 + nz; q++) {
                    let cb = i * PS4 + q;
                    let ot = transpose(mat4x4<f32>(in_a[t_os(t, rr.x, cb)], in_a[t_os(t, rr.y, cb)],
                                                   in_a[t_os(t, rr.z, cb)], in_a[t_os(t, rr.w, cb)]));
                    for (var c = 0u; c < 4u; c++) {
                        sp_raw[4u * q + c] = ot[c];
                    }
                }
                rq_knots();
                // g'(x_i), and dg/d(raw) in sp_graw (identity tails: 1 and zeros).
                let gp = rq_backward(xd[i], vec4<f32>(1.0), vec4<f32>(0.0));
                let v = gx[i] / gp;
                gn[i] = v;
                for (var j = 0u; j < 4u * PS4; j++) {
                    sp_graw[j] = select(vec4<f32>(0.0), -v * sp_graw[j], j < P);
                }
                for (var q = 0u; q < PS4 + nz; q++) {
                    ob[q] = transpose(mat4x4<f32>(sp_graw[4u * q], sp_graw[4u * q + 1u],
                                                  sp_graw[4u * q + 2u], sp_graw[4u * q + 3u]));
                    store_tile(g_do(t, r0, i * PS4 + q), NO4, r0, ob[q]);
                }
                for (var ib = 0u; ib < H4; ib++) {
                    var a = mat4x4<f32>();
                    for (var q = 0u; q < PS4 + nz; q++) {
                        a += transpose(wtile(base, 4u * ib, NO4, i * PS4 + q)) * ob[q];
                    }
                    db[ib] = a;
                    dtot[ib] += a;
                }
            }
            // Into the dims before dim i (the first dim's parameters see no hidden unit).
            if (k > 1u) {
                made_hidden_backward(t, rr, r0, false);
                for (var ib = 0u; ib < D4; ib++) {
                    let g = made_x_grad(tb, ib);
                    for (var c = 0u; c < 4u; c++) {
                        let j = 4u * ib + c;
                        if (j < D) {
                            gx[j] += g[c];
                        }
                    }
                }
            }
        }
        if (KIND == 0u) {
            for (var cb = 0u; cb < NO4; cb++) {
                store_tile(g_do(t, r0, cb), NO4, r0, ob[cb]);
            }
        }
        for (var ib = 0u; ib < H4; ib++) {
            db[ib] = dtot[ib];
        }
        made_hidden_backward(t, rr, r0, true);
        if (CTX_GRAD) {
            made_context_grad(tb);
        }
        for (var i = 0u; i < D; i++) {
            gx[i] = gn[i];
        }
    }
    if (CTX_GRAD) {
        store_dcontext(r0);
    }
}

// out_b [rows / ctx_div, E4] (+)= the sum of in_a [rows, E4] over each group of ctx_div rows.
@compute @workgroup_size(WG)
fn context_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = flat_id(gid, nwg);
    let n = p.rows / p.ctx_div;
    if (j >= n * E4) {
        return;
    }
    let i = j / E4;
    let ib = j % E4;
    var s = vec4<f32>(0.0);
    for (var k = 0u; k < p.ctx_div; k++) {
        s += in_a[(i * p.ctx_div + k) * E4 + ib];
    }
    if (ACCUM) {
        s += out_b[j];
    }
    out_b[j] = s;
}

// Rejection sampler, step 1: proposals for every live observation (requires lib/philox.wgsl).
// Row r belongs to slot r / P (slots < SLOTS are live). A proposal is either a prior draw made
// here from the counter-based stream (MODE 0, the ratio surrogate) or a draw of the base flow,
// already in network space (MODE 1, the hybrid). Each row gets:
//   mlp_in[r]  = [θ in network space (unconstrained if UNCON, then z-scored), x of its slot, 0...]
//   theta[r]   = [θ in the original space, 1 if θ is inside the prior's support else 0]
// Prior pack (f32): kind[D] (0 uniform(a, b), 1 normal a + L z, 2 lognormal exp(a + L_ii z)),
// a[D], b[D], L[D·D] (lower triangular, row-major), z-score mean[D], std[D].

struct ProposeParams {
    rows: u32,      // rows in use this round (SLOTS · P)
    p: u32,         // proposals per slot
    round: u32,     // round index: the stream's counter word 1
    stream: u32,
    key_lo: u32,
    key_hi: u32,
    rows_max: u32,  // rows of every buffer (the launch covers them all)
    _p1: u32,
}

override WG: u32 = 64u;
override MODE: u32 = 0u;
override D: u32 = 2u;
override DX: u32 = 2u;
override IN4: u32 = 1u;   // vec4s per mlp_in row
override SD4: u32 = 1u;   // vec4s per flow-sample row (MODE 1)
override X4: u32 = 1u;    // vec4s per x row
override UNCON: bool = false;

@group(0) @binding(0) var<uniform> p: ProposeParams;
@group(0) @binding(1) var<storage, read> prior: array<f32>;
@group(0) @binding(2) var<storage, read> draws: array<f32>;    // MODE 1: flow samples [rows, SD4·4]
@group(0) @binding(3) var<storage, read> xs: array<f32>;       // x of each slot [slots, X4·4]
@group(0) @binding(4) var<storage, read_write> mlp_in: array<f32>;
@group(0) @binding(5) var<storage, read_write> theta: array<f32>; // [rows_max, D + 1]

fn kind(i: u32) -> u32 { return u32(prior[i]); }
fn pa(i: u32) -> f32 { return prior[D + i]; }
fn pb(i: u32) -> f32 { return prior[2u * D + i]; }
fn pl(i: u32, j: u32) -> f32 { return prior[3u * D + i * D + j]; }
fn zmean(i: u32) -> f32 { return prior[3u * D + D * D + i]; }
fn zstd(i: u32) -> f32 { return prior[4u * D + D * D + i]; }

fn bits(r: u32, word: u32) -> vec4<u32> {
    return philox4x32_10(vec4<u32>(r, p.round, word, p.stream), vec2<u32>(p.key_lo, p.key_hi));
}

// Standard normal number i of row r (pairs share one Box-Muller transform).
fn normal_at(r: u32, i: u32) -> f32 {
    let b = bits(r, 0x10000u + i / 2u);
    let n = box_muller(u32_to_unit(b.x), u32_to_unit(b.y));
    return select(n.x, n.y, (i & 1u) == 1u);
}

fn uniform_at(r: u32, i: u32) -> f32 {
    return u32_to_unit(bits(r, i).x);
}

@compute @workgroup_size(WG)
fn propose(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * WG;
    if (r >= p.rows_max) {
        return;
    }
    let live = r < p.rows;
    let slot = r / p.p;
    var inside = live;
    for (var i = 0u; i < D; i++) {
        var t: f32;   // original space
        var u: f32;   // unconstrained (or original) space, before z-scoring
        if (MODE == 0u) {
            let k = kind(i);
            if (k == 0u) {
                t = pa(i) + (pb(i) - pa(i)) * uniform_at(r, i);
            } else if (k == 1u) {
                var s = pa(i);
                for (var j = 0u; j <= i; j++) {
                    s += pl(i, j) * normal_at(r, j);
                }
                t = s;
            } else {
                t = exp(pa(i) + pl(i, i) * normal_at(r, i));
            }
            u = t;
            if (UNCON) {
                if (k == 0u) {
                    u = log((t - pa(i)) / (pb(i) - t));
                } else if (k == 2u) {
                    u = log(t);
                }
            }
            mlp_in[r * IN4 * 4u + i] = select(0.0, (u - zmean(i)) / zstd(i), live);
        } else {
            let z = draws[r * SD4 * 4u + i];
            u = z * zstd(i) + zmean(i);
            t = u;
            let k = kind(i);
            if (UNCON) {
                if (k == 0u) {
                    t = pa(i) + (pb(i) - pa(i)) / (1.0 + exp(-u));
                    t = clamp(t, pa(i), pb(i));
                } else if (k == 2u) {
                    t = exp(u);
                }
            }
            if (k == 0u) {
                inside = inside && t >= pa(i) && t <= pb(i);
            } else if (k == 2u) {
                inside = inside && t > 0.0;
            }
            // NaN fails every comparison; an infinite value is outside any support.
            inside = inside && (t == t) && abs(t) <= 3.4e38;
            mlp_in[r * IN4 * 4u + i] = select(0.0, z, live);
        }
        theta[r * (D + 1u) + i] = t;
    }
    for (var c = 0u; c < DX; c++) {
        mlp_in[r * IN4 * 4u + D + c] = select(0.0, xs[slot * X4 * 4u + c], live);
    }
    for (var c = D + DX; c < IN4 * 4u; c++) {
        mlp_in[r * IN4 * 4u + c] = 0.0;
    }
    theta[r * (D + 1u) + D] = select(0.0, 1.0, inside);
}

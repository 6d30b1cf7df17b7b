// Rejection sampler, step 2: accept each inside-support proposal with probability
// exp(f − log M) of its observation and compact the accepted θ into that observation's output
// rows, so only accepted samples are ever read back. Requires lib/philox.wgsl.
// Per workgroup (P is a multiple of WG, so a workgroup serves one slot) it also writes
//   partials[w] = (Σ exp(f − log M) over inside rows, max f over inside rows, inside count, 0)
// from which the host updates Z(x_o) = E[exp f · 1_support] and checks M.
// info[slot] = (observation index, bits of log M, capacity N, 1 to accept / 0 for the warm-up
// that only gathers statistics).
// counters[2o] = accepted so far (may pass N; only the first N are stored), counters[2o+1] =
// proposals whose f exceeded log M (M was too small).

struct AcceptParams {
    rows: u32,
    p: u32,
    round: u32,
    stream: u32,
    key_lo: u32,
    key_hi: u32,
    rows_max: u32,
    _p1: u32,
}

const WG: u32 = 256u;
override D: u32 = 2u;

@group(0) @binding(0) var<uniform> p: AcceptParams;
@group(0) @binding(1) var<storage, read> fvals: array<vec4<f32>>;   // ratio net output [rows, 4]
@group(0) @binding(2) var<storage, read> theta: array<f32>;        // [rows, D + 1]
@group(0) @binding(3) var<storage, read> info: array<vec4<u32>>;   // [slots]
@group(0) @binding(4) var<storage, read_write> counters: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;    // [observations, N, D + 1]: θ, f
@group(0) @binding(6) var<storage, read_write> partials: array<vec4<f32>>;

var<workgroup> red: array<vec3<f32>, WG>;

@compute @workgroup_size(WG)
fn accept(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
          @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * WG;
    let w = wid.x + wid.y * nwg.x;
    let t = lid.x;
    var s = vec3<f32>(0.0, -3.4e38, 0.0);
    if (r < p.rows) {
        let slot = r / p.p;
        let inf = info[slot];
        let o = inf.x;
        let log_m = bitcast<f32>(inf.y);
        let f = fvals[r].x;
        let inside = theta[r * (D + 1u) + D] > 0.5 && (f == f);
        if (inside) {
            s = vec3<f32>(exp(f - log_m), f, 1.0);
            if (inf.w == 1u) {
                if (f > log_m) {
                    atomicAdd(&counters[2u * o + 1u], 1u);
                }
                let b = philox4x32_10(vec4<u32>(r, p.round, 0xACCE97u, p.stream), vec2<u32>(p.key_lo, p.key_hi));
                if (log(u32_to_unit(b.x)) < f - log_m) {
                    let k = atomicAdd(&counters[2u * o], 1u);
                    if (k < inf.z) {
                        let dst = (o * inf.z + k) * (D + 1u);
                        for (var i = 0u; i < D; i++) {
                            out[dst + i] = theta[r * (D + 1u) + i];
                        }
                        // f travels with the sample: raising M later thins stored samples exactly.
                        out[dst + D] = f;
                    }
                }
            }
        }
    }
    red[t] = s;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
        if (t < h) {
            let a = red[t];
            let b = red[t + h];
            red[t] = vec3<f32>(a.x + b.x, max(a.y, b.y), a.z + b.z);
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        partials[w] = vec4<f32>(red[0], 0.0);
    }
}

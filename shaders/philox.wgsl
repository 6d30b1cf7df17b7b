// Fills a buffer from the Philox stream (requires lib/philox.wgsl).
// Element j of the output comes from counter (j / 4, offset_lo, offset_hi, stream), lane j % 4, so any
// slice of the stream can be regenerated anywhere, on the GPU or on the CPU.
// MODE: 0 raw u32 bits, 1 uniform (0,1), 2 standard normal. Output stored as u32 bits.

struct RngParams {
    n: u32,
    key_lo: u32,
    key_hi: u32,
    offset_lo: u32,
    offset_hi: u32,
    stream: u32,
    _pad0: u32,
    _pad1: u32,
}

override MODE: u32 = 0u;
override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: RngParams;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(WG)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let base = i * 4u;
    if (base >= p.n) {
        return;
    }
    let bits = philox4x32_10(vec4<u32>(i, p.offset_lo, p.offset_hi, p.stream), vec2<u32>(p.key_lo, p.key_hi));
    var o = bits;
    if (MODE == 1u) {
        o = vec4<u32>(
            bitcast<u32>(u32_to_unit(bits.x)),
            bitcast<u32>(u32_to_unit(bits.y)),
            bitcast<u32>(u32_to_unit(bits.z)),
            bitcast<u32>(u32_to_unit(bits.w)));
    } else if (MODE == 2u) {
        let a = box_muller(u32_to_unit(bits.x), u32_to_unit(bits.y));
        let b = box_muller(u32_to_unit(bits.z), u32_to_unit(bits.w));
        o = vec4<u32>(bitcast<u32>(a.x), bitcast<u32>(a.y), bitcast<u32>(b.x), bitcast<u32>(b.y));
    }
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (base + j < p.n) {
            out[base + j] = o[j];
        }
    }
}

//! Philox4x32-10 counter-based random numbers, bit-identical on the CPU and in WGSL
//! (`shaders/lib/philox.wgsl`, filled by `shaders/philox.wgsl`).
//!
//! Element j of a stream (key, offset, stream id) is lane j % 4 of
//! philox(counter = (j / 4, offset_lo, offset_hi, stream), key): any slice can be regenerated
//! anywhere, which is what lets the GPU and the CPU reference consume the same draws.

use crate::runtime::{groups_1d, Bind, Dispatch, GpuContext, GpuResult, GpuTensor};

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

#[inline]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = (a as u64) * (b as u64);
    ((p >> 32) as u32, p as u32)
}

/// The Philox4x32 block function with 10 rounds.
pub fn philox4x32(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for _ in 0..10 {
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
        k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
    }
    c
}

/// Uniform in (0, 1) from 23 bits, as the shader computes it (exact in f32).
pub fn unit_f32(u: u32) -> f32 {
    ((u >> 9) as f32 + 0.5) * (1.0 / 8_388_608.0)
}

/// Box–Muller on two uniforms.
pub fn box_muller(u1: f32, u2: f32) -> (f32, f32) {
    let r = (-2.0 * u1.ln()).sqrt();
    let a = std::f32::consts::TAU * u2;
    (r * a.cos(), r * a.sin())
}

/// A position in the Philox stream space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RngStream {
    pub seed: u64,
    pub offset: u64,
    pub stream: u32,
}

impl RngStream {
    pub fn new(seed: u64, stream: u32) -> Self {
        RngStream {
            seed,
            offset: 0,
            stream,
        }
    }

    fn block(&self, i: u32) -> [u32; 4] {
        philox4x32(
            [
                i,
                self.offset as u32,
                (self.offset >> 32) as u32,
                self.stream,
            ],
            [self.seed as u32, (self.seed >> 32) as u32],
        )
    }

    /// The first `n` raw words of this stream.
    pub fn bits(&self, n: usize) -> Vec<u32> {
        (0..n.div_ceil(4) as u32)
            .flat_map(|i| self.block(i))
            .take(n)
            .collect()
    }

    pub fn uniform(&self, n: usize) -> Vec<f32> {
        self.bits(n).into_iter().map(unit_f32).collect()
    }

    pub fn normal(&self, n: usize) -> Vec<f32> {
        (0..n.div_ceil(4) as u32)
            .flat_map(|i| {
                let b = self.block(i);
                let (a0, a1) = box_muller(unit_f32(b[0]), unit_f32(b[1]));
                let (b0, b1) = box_muller(unit_f32(b[2]), unit_f32(b[3]));
                [a0, a1, b0, b1]
            })
            .take(n)
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RngMode {
    Bits = 0,
    Uniform = 1,
    Normal = 2,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RngParams {
    pub n: u32,
    pub key_lo: u32,
    pub key_hi: u32,
    pub offset_lo: u32,
    pub offset_hi: u32,
    pub stream: u32,
    pub _pad: [u32; 2],
}

impl RngParams {
    pub fn new(n: usize, s: &RngStream) -> Self {
        RngParams {
            n: n as u32,
            key_lo: s.seed as u32,
            key_hi: (s.seed >> 32) as u32,
            offset_lo: s.offset as u32,
            offset_hi: (s.offset >> 32) as u32,
            stream: s.stream,
            _pad: [0; 2],
        }
    }
}

const WG: u32 = 64;

/// Fills the first `n` words of `out` from the stream (params written with [`RngParams::new`]).
pub fn fill(
    ctx: &GpuContext,
    params: &wgpu::Buffer,
    n: usize,
    mode: RngMode,
    out: &GpuTensor,
) -> GpuResult<Dispatch> {
    ctx.dispatch(
        "philox",
        "fill",
        &[("MODE", mode as u32 as f64), ("WG", WG as f64)],
        &[Bind::U(params), Bind::T(out)],
        groups_1d(n.div_ceil(4), WG),
    )
}

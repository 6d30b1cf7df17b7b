//! A small, fast, portable RNG (xoshiro256++) and per-row stream derivation.
//!
//! The algorithm is fixed here (not delegated to `rand::rngs::SmallRng`, whose algorithm may
//! change between rand versions), so simulations are reproducible for a given seed.

use rand::RngCore;

/// SplitMix64 step: advances `state` and returns a well-mixed 64-bit value.
#[inline]
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mixes a sequence of words into one 64-bit key (order-sensitive).
pub fn mix_key(words: &[u64]) -> u64 {
    let mut h = 0x6A09_E667_F3BC_C908u64;
    for &w in words {
        let mut s = h ^ w;
        h = splitmix64(&mut s);
        let mut s2 = h.rotate_left(17) ^ 0x3C6E_F372_FE94_F82B;
        h ^= splitmix64(&mut s2);
    }
    h
}

/// xoshiro256++ (Blackman & Vigna).
#[derive(Clone, Debug)]
pub struct Xoshiro256pp {
    s: [u64; 4],
}

impl Xoshiro256pp {
    /// Seeds the four state words from a SplitMix64 stream started at `seed`.
    pub fn from_seed_u64(seed: u64) -> Self {
        let mut st = seed;
        let mut s = [0u64; 4];
        for w in s.iter_mut() {
            *w = splitmix64(&mut st);
        }
        if s == [0; 4] {
            s[0] = 1;
        }
        Self { s }
    }

    /// An independent stream for (`seed`, `stream`, ...): e.g. (seed, row index).
    pub fn for_stream(words: &[u64]) -> Self {
        Self::from_seed_u64(mix_key(words))
    }

    #[inline]
    fn next(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }
}

impl RngCore for Xoshiro256pp {
    #[inline]
    fn next_u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }
    #[inline]
    fn next_u64(&mut self) -> u64 {
        self.next()
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// The RNG used for row `row` of a batch simulated with `seed`.
#[inline]
pub fn row_rng(seed: u64, row: usize) -> Xoshiro256pp {
    Xoshiro256pp::for_stream(&[seed, row as u64])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn streams_differ_and_repeat() {
        let a: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(row_rng(1, 0), |r, _: u64| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(row_rng(1, 0), |r, _: u64| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(row_rng(1, 1), |r, _: u64| Some(r.next_u64()))
            .collect();
        let d: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(row_rng(2, 0), |r, _: u64| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn uniform_moments() {
        let mut r = Xoshiro256pp::from_seed_u64(7);
        let n = 200_000;
        let (mut s, mut s2) = (0.0, 0.0);
        for _ in 0..n {
            let u: f64 = r.random();
            s += u;
            s2 += u * u;
        }
        let m = s / n as f64;
        let v = s2 / n as f64 - m * m;
        assert!((m - 0.5).abs() < 0.003, "{m}");
        assert!((v - 1.0 / 12.0).abs() < 0.002, "{v}");
    }
}

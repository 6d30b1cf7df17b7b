//! Throughput benchmarks (not tests): the GPU kernels against plain-Rust CPU versions of the
//! same work, timed in the same run so the ratio is what counts.

pub mod cpu_mlp;
pub mod kernels;

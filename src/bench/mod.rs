//! Benchmarks. `kernels`/`cpu_mlp`: throughput of the GPU kernels against plain-Rust CPU versions
//! of the same work, timed in the same run so the ratio is what counts; `throughput`: the same
//! per method (training steps and samplers). `grid` and the modules
//! beside it: the SBI benchmark (`gkl-gpu bench`): C2ST per task, method and simulation budget
//! against reference posteriors, wall times, the sbi peer, tables and figures.

pub mod cpu_mlp;
pub mod grid;
pub mod journal;
pub mod kernels;
pub mod peer;
pub mod plots;
pub mod published;
pub mod report;
pub mod throughput;

//! Metrics of posterior quality.

pub mod c2st;
mod c2st_cpu;
mod c2st_gpu;
pub mod numpy_rng;

//! gkl-gpu: simulation-based inference with the generalized KL divergence, on the GPU through
//! WGSL compute shaders (wgpu).
//!
//! Layers, bottom up: [`runtime`] (device, pipelines, buffers), [`kernels`] (one WGSL file each,
//! with a CPU f64 reference beside it), [`models`] (networks built from kernels), [`training`].

pub mod bench;
pub mod data;
pub mod error;
pub mod evaluation;
pub mod io;
pub mod kernels;
pub mod models;
pub mod runtime;
pub mod sampling;
pub mod training;

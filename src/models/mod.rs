//! Networks built from the kernels.
pub mod arena;
pub mod mlp;

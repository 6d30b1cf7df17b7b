//! Networks built from the kernels.
pub mod mlp;

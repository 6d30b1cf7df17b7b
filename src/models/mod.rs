//! Networks built from the kernels.
pub mod arena;
pub mod flow;
pub mod mlp;
pub mod posterior;

//! Compute kernels: each wraps one WGSL file under `shaders/` and carries an f64 CPU reference
//! (`cpu` submodules) that the tests compare against.

pub mod activation;
pub mod adam;
pub mod dense;
pub mod elementwise;
pub mod gather;
pub mod gkl;
pub mod layout;
pub mod loss;
pub mod reduce;
pub mod rng;

pub use activation::Activation;

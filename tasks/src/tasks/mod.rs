//! The task implementations.

pub mod bernoulli_glm;
pub mod gaussian_linear;
pub mod gaussian_linear_d;
pub mod gaussian_mixture;
pub mod lotka_volterra;
pub mod sir;
pub mod slcp;
pub mod two_moons;

//! Drawing samples from trained posteriors.

pub mod npe;
pub mod rejection;

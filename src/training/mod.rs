//! Training loops.
pub mod npe;
pub mod preprocess;
pub mod regress;

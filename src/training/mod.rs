//! Training loops.
pub mod regress;

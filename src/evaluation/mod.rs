//! Metrics of posterior quality.

pub mod c2st;

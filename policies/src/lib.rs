//! placeholder
pub mod lm;

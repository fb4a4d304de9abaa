//! The commands users run: `train`, `eval`, `search`.

pub mod eval;
pub mod search;
pub mod train;

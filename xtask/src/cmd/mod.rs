//! The commands users run: `train`, `eval`, `search`, `export`, `encode`.

pub mod encode;
pub mod eval;
pub mod export;
pub mod search;
pub mod train;

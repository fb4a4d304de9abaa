//! The commands users run: `train`, `eval`, `search`, `export`.

pub mod eval;
pub mod export;
pub mod search;
pub mod train;
mod train_dir;

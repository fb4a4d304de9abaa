//! `nhl`: learn binary hash codes of many lengths in one training run with the Nested Hash Layer,
//! on a pure-Rust GPU compute core (wgpu + WGSL) or the CPU, and search them by Hamming distance.
//!
//! This crate only re-exports the workspace crates; import them one by one to keep dependencies
//! small (`nhl-index` alone has no GPU code).
//!
//! * [`kernels`]: the backend trait, the wgpu backend and the CPU reference backend.
//! * [`autograd`]: the minimal reverse-mode tape.
//! * [`train`]: data, model, losses, NHL weighting and distillation, training loop, encoder.
//! * [`index`]: packed codes, SIMD Hamming search, mAP.
#![deny(missing_docs)]

pub use nhl_autograd as autograd;
pub use nhl_index as index;
pub use nhl_kernels as kernels;
pub use nhl_train as train;

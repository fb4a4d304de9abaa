//! Nested Hash Layer training: data sets, the nested hash model, hashing losses, the NHL
//! dominance-aware weighting and cascade distillation, the Adam optimiser, the training loop,
//! evaluation and checkpoints.
//!
//! One forward pass projects the backbone features to the longest code once; the `b`-bit code
//! is its first `b` columns. Every length's loss is evaluated on its prefix, the per-length
//! output gradients are weighted (docs/METHOD.md section 2, exactly, through batch Gram matrices) and
//! summed into one gradient of the longest code, and one backward pass updates everything.
//!
//! ```no_run
//! use nhl_kernels::cpu::CpuBackend;
//! use nhl_train::{config::TrainConfig, data::{load_protocol, Protocol}, trainer::train};
//!
//! let split = load_protocol(Protocol::FmnistT10k, None)?;
//! let config = TrainConfig { epochs: 2, ..TrainConfig::default() };
//! let outcome = train(&CpuBackend::<f32>::new(), &split, &config, &mut |_| {})?;
//! assert_eq!(outcome.codes.len(), 5); // 8, 16, 32, 64 and 128 bits from one run
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod divergence;
pub mod encoder;
pub mod error;
pub mod limits;
pub mod losses;
pub mod metrics;
pub mod model;
pub mod nhl;
pub mod optim;
pub mod report;
pub mod run_dir;
pub mod run_loop;
mod safetensors_header;
pub mod step_phases;
pub mod targets;
pub mod train_state;
pub mod trainer;
pub mod validate;
pub mod weighting;

pub use error::TrainError;

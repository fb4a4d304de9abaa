//! Compute core of `nhl`: one narrow [`Backend`] trait of general tensor ops, extended by the
//! fused ops of nested-hash training ([`HashingOps`]); a GPU implementation on wgpu with
//! hand-written WGSL (Vulkan, Metal, DX12), and a plain-Rust CPU implementation that is both the
//! fallback and the reference every GPU kernel is tested against.
//!
//! With the `testing` feature (for the dev-dependencies of the workspace's crates) it also
//! exports the helpers their tests share: `testing` and `gpu::test_backend`.
//!
//! ```
//! use nhl_kernels::{Backend, Shape, cpu::CpuBackend};
//!
//! let cpu = CpuBackend::<f32>::new();
//! let x = cpu.upload(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], Shape::new(2, 3))?;
//! let w = cpu.upload(&[1.0, 0.0, 0.0, 0.0, 1.0, 1.0], Shape::new(2, 3))?;
//! let b = cpu.upload(&[0.5, -0.5], Shape::new(1, 2))?;
//! // The nested projection Y = X W^T + b.
//! let y = cpu.matmul(&x, false, &w, true, Some(&b))?;
//! assert_eq!(cpu.download(&y)?, vec![1.5, 4.5, 4.5, 10.5]);
//! # Ok::<(), nhl_kernels::KernelError>(())
//! ```
#![deny(missing_docs)]

pub mod backend;
pub mod cpu;
pub mod error;
pub mod gpu;
pub mod hashing;
pub mod real;
pub mod rng;
pub mod shaders;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use backend::{AdamStep, Backend, Binary, Reduce, Shape, Unary};
pub use error::KernelError;
pub use hashing::{BankLoss, BankPair, HashingOps, Quantisation, COSINE_EPS};
pub use real::Real;

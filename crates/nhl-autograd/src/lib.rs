//! A minimal reverse-mode tape over the [`nhl_kernels::Backend`] trait: enough to write every
//! hashing loss without a hand-written gradient.
//!
//! Nodes live in an arena in creation order; `backward` walks it in reverse, `match`es on each
//! node's op, sums gradients on fan-in and keys them by node id, so the gradient of any
//! intermediate tensor (each code length's output, say) can be read afterwards. Nothing is
//! recorded during backward, and [`Tape::no_grad`] records nothing at all. Tensors stay on their
//! backend; only [`Tape::to_vec`] copies to the host.
//!
//! ```
//! use nhl_autograd::Tape;
//! use nhl_kernels::{cpu::CpuBackend, Backend, Shape};
//!
//! let cpu = CpuBackend::<f64>::new();
//! let tape = Tape::new(&cpu);
//! let x = tape.leaf(cpu.upload(&[0.5, -1.0, 2.0], Shape::new(1, 3))?);
//! // L = mean(tanh(x)^2); dL/dx = 2 tanh(x) (1 - tanh(x)^2) / 3.
//! let t = tape.tanh(&x)?;
//! let loss = tape.mean_all(&tape.square(&t)?)?;
//! let grads = tape.backward(&loss)?;
//! let g = cpu.download(grads.get(&x).unwrap())?;
//! let want = 2.0 * 0.5f64.tanh() * (1.0 - 0.5f64.tanh().powi(2)) / 3.0;
//! assert!((g[0] - want).abs() < 1e-12);
//! assert_eq!(tape.len(), 0); // backward released the nodes
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod error;
pub mod ops;
pub mod params;
pub mod tape;

pub use error::AutogradError;
pub use params::{Param, ParamId, Params};
pub use tape::{Gradients, NodeId, Tape, Tensor};

impl<B: nhl_kernels::Backend> Tape<'_, B> {
    /// Copies a tensor's value to the host (the only op that does).
    pub fn to_vec(&self, t: &Tensor<B>) -> Result<Vec<B::Elem>, AutogradError> {
        Ok(self.backend().download(t.value())?)
    }
}

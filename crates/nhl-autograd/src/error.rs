//! Errors of the tape.

use nhl_kernels::{KernelError, Shape};

/// What a tape op or a backward pass can report.
#[derive(Debug, thiserror::Error)]
pub enum AutogradError {
    /// A kernel refused its operands or the device failed.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// `backward` needs a `1 x 1` root.
    #[error("backward needs a scalar root, got shape {shape}")]
    NotScalar {
        /// The root's shape.
        shape: Shape,
    },
    /// A seed gradient whose shape differs from its tensor's.
    #[error("seed gradient has shape {got}, expected {expected}")]
    SeedShape {
        /// The tensor's shape.
        expected: Shape,
        /// The seed's shape.
        got: Shape,
    },
    /// A seed on a tensor that is not recorded (a constant, detached, or made in no-grad mode).
    #[error("cannot seed backward at a tensor that is not recorded on the tape")]
    NoNode,
    /// A parameter name used twice.
    #[error("parameter {0:?} is already registered")]
    DuplicateParam(String),
}

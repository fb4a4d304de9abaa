//! The one error type of the compute core.

use crate::backend::Shape;

/// Everything a kernel or the device can report.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// Operand shapes do not fit the op.
    #[error("{op}: shape mismatch: {detail}")]
    Shape {
        /// The op that refused its operands.
        op: &'static str,
        /// What was given and what was expected.
        detail: String,
    },
    /// Host data of the wrong length for a buffer.
    #[error("{op}: expected {expected} elements for shape {shape}, got {got}")]
    Length {
        /// The op.
        op: &'static str,
        /// The buffer's shape.
        shape: Shape,
        /// `shape.len()`.
        expected: usize,
        /// What the host slice held.
        got: usize,
    },
    /// A row index outside the table.
    #[error("{op}: row index {index} out of range for a table of {rows} rows")]
    Index {
        /// The op.
        op: &'static str,
        /// The offending index.
        index: u32,
        /// Rows in the table.
        rows: usize,
    },
    /// An in-place op was given a handle whose buffer other live handles (clones) share. The
    /// write would reach the clones on one backend and not on another, so every backend refuses.
    #[error(
        "{op}: `{operand}` shares its buffer with another live handle (a clone); an in-place op \
         needs the only handle, so drop the others first"
    )]
    SharedBuffer {
        /// The in-place op.
        op: &'static str,
        /// The operand it would update.
        operand: &'static str,
    },
    /// No GPU adapter that fits was found.
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    /// The adapter lacks a feature or limit the kernels need.
    #[error("adapter {adapter} is unsuitable: {reason}")]
    Unsuitable {
        /// Adapter name.
        adapter: String,
        /// What is missing.
        reason: String,
    },
    /// wgpu reported an error (validation, out of memory, device lost) for an op.
    #[error("GPU error in {op}: {message}")]
    Device {
        /// The op or stage.
        op: &'static str,
        /// wgpu's message.
        message: String,
    },
    /// A buffer larger than the device allows.
    #[error("{op}: buffer of {bytes} bytes exceeds the device limit of {limit} bytes")]
    TooLarge {
        /// The op.
        op: &'static str,
        /// Requested size.
        bytes: u64,
        /// The device's limit.
        limit: u64,
    },
}

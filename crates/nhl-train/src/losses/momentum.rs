//! MDSH's momentum model (docs/METHOD.md 5.11): a copy of backbone and hash layer that follows
//! the trained model, `key <- m key + (1 - m) model` before each step, and whose codes fill the
//! bank that MDSH's pair term reads.

use nhl_autograd::Tape;
use nhl_kernels::Backend;

use crate::error::TrainError;
use crate::model::NestedHashModel;

/// The momentum ("key") model and its momentum `m`; no gradient ever reaches it.
pub struct MomentumHead<B: Backend> {
    /// The key model's parameters.
    pub model: NestedHashModel<B>,
    /// The momentum `m`.
    pub momentum: f64,
}

impl<B: Backend> MomentumHead<B> {
    /// A key model equal to `model`.
    pub fn new(backend: &B, model: &NestedHashModel<B>, momentum: f64) -> Result<Self, TrainError> {
        Ok(Self {
            model: model.duplicate(backend)?,
            momentum,
        })
    }

    /// Moves the key model towards `model` (once per training step, before the step's losses).
    pub fn follow(&mut self, backend: &B, model: &NestedHashModel<B>) -> Result<(), TrainError> {
        self.model.follow(backend, model, self.momentum)
    }

    /// The key model's codes of the batch features `x` (`n x B`).
    pub fn codes(&self, backend: &B, x: &B::Buf) -> Result<B::Buf, TrainError> {
        let tape = Tape::new(backend);
        let out = tape.no_grad(|| self.model.forward(&tape, &tape.constant(x.clone())))?;
        Ok(out.codes.value().clone())
    }
}

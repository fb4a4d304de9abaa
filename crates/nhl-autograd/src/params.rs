//! Named parameters with their gradients, for the optimiser.

use nhl_kernels::Backend;

use crate::error::AutogradError;
use crate::tape::{Gradients, Tape, Tensor};

/// Handle of a registered parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParamId(pub(crate) usize);

/// One named parameter: its value and accumulated gradient.
#[derive(Debug)]
pub struct Param<B: Backend> {
    /// Unique name (`backbone.weight`, `hash.bias`, ...).
    pub name: String,
    /// Current value.
    pub value: B::Buf,
    /// Gradient summed over the backward passes since the last [`Params::zero_grad`].
    pub grad: Option<B::Buf>,
}

/// The named parameters of a model, in registration order.
#[derive(Debug)]
pub struct Params<B: Backend> {
    entries: Vec<Param<B>>,
}

impl<B: Backend> Default for Params<B> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<B: Backend> Params<B> {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a parameter under a unique name.
    pub fn add(&mut self, name: &str, value: B::Buf) -> Result<ParamId, AutogradError> {
        if self.entries.iter().any(|p| p.name == name) {
            return Err(AutogradError::DuplicateParam(name.to_string()));
        }
        self.entries.push(Param {
            name: name.to_string(),
            value,
            grad: None,
        });
        Ok(ParamId(self.entries.len() - 1))
    }

    /// The parameter behind `id`.
    pub fn get(&self, id: ParamId) -> &Param<B> {
        &self.entries[id.0]
    }

    /// Mutable access (the optimiser updates values in place).
    pub fn get_mut(&mut self, id: ParamId) -> &mut Param<B> {
        &mut self.entries[id.0]
    }

    /// All parameters in registration order with their ids.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &Param<B>)> {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, p)| (ParamId(i), p))
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when none is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records the leaf of parameter `id` on `tape`.
    pub fn leaf(&self, tape: &Tape<'_, B>, id: ParamId) -> Tensor<B> {
        tape.param(id, self.entries[id.0].value.clone())
    }

    /// Adds the parameter gradients of a backward pass into each parameter's `grad`.
    pub fn accumulate(&mut self, backend: &B, grads: &Gradients<B>) -> Result<(), AutogradError> {
        for (id, g) in grads.params() {
            let slot = &mut self.entries[id.0].grad;
            *slot = Some(match slot.take() {
                Some(prev) => backend.binary(nhl_kernels::Binary::Add, &prev, g)?,
                None => g.clone(),
            });
        }
        Ok(())
    }

    /// Forgets every gradient.
    pub fn zero_grad(&mut self) {
        for p in &mut self.entries {
            p.grad = None;
        }
    }
}

//! Adam with coupled weight decay, as `torch.optim.Adam(weight_decay=...)` does it.

use nhl_autograd::Params;
use nhl_kernels::{AdamStep, Backend};

use crate::error::TrainError;

/// Adam state: first and second moments per parameter and the step count.
pub struct Adam<B: Backend> {
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    step: i32,
    moments: Vec<(B::Buf, B::Buf)>,
}

impl<B: Backend> Adam<B> {
    /// Zero moments for every parameter of `params`; betas (0.9, 0.999), eps 1e-8.
    pub fn new(
        backend: &B,
        params: &Params<B>,
        lr: f32,
        weight_decay: f32,
    ) -> Result<Self, TrainError> {
        let moments = params
            .iter()
            .map(|(_, p)| {
                let shape = backend.shape(&p.value);
                Ok((backend.zeros(shape)?, backend.zeros(shape)?))
            })
            .collect::<Result<_, nhl_kernels::KernelError>>()?;
        Ok(Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            step: 0,
            moments,
        })
    }

    /// One update of every parameter that has a gradient, then clears the gradients.
    pub fn step(&mut self, backend: &B, params: &mut Params<B>) -> Result<(), TrainError> {
        self.step += 1;
        let step = AdamStep {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            bias1: 1.0 - self.beta1.powi(self.step),
            bias2: 1.0 - self.beta2.powi(self.step),
        };
        let ids: Vec<_> = params.iter().map(|(id, _)| id).collect();
        for (id, (m, v)) in ids.into_iter().zip(&mut self.moments) {
            let p = params.get_mut(id);
            if let Some(g) = p.grad.take() {
                backend.adam_step(&mut p.value, &g, m, v, step)?;
            }
        }
        Ok(())
    }
}

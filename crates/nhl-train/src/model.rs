//! The protocol's model: an MLP backbone `Linear(d -> hidden) + ReLU` and one nested hash layer
//! `Linear(hidden -> B)` whose first `b` outputs are the `b`-bit code.

use std::path::Path;

use nhl_autograd::{ParamId, Params, Tape, Tensor};
use nhl_kernels::rng::SplitMix64;
use nhl_kernels::{Backend, KernelError, Real, Shape};

use crate::checkpoint::Checkpoint;
use crate::error::TrainError;

/// A parameter copied to the host: what a run reports and a checkpoint stores.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedParam {
    /// Name, e.g. `hash.weight` (prefixed `b{bits}.` for the models of a `single` run).
    pub name: String,
    /// `[rows, cols]`.
    pub shape: [usize; 2],
    /// `rows * cols` values, row-major.
    pub data: Vec<f32>,
}

/// Backbone and nested hash head, with their parameters on a backend.
pub struct NestedHashModel<B: Backend> {
    /// Named parameters: `backbone.weight`, `backbone.bias`, `hash.weight`, `hash.bias`.
    pub params: Params<B>,
    w1: ParamId,
    b1: ParamId,
    w2: ParamId,
    b2: ParamId,
    input_dim: usize,
    code_bits: usize,
}

/// The outputs of one forward pass.
pub struct Forward<B: Backend> {
    /// Input of the hash layer (`n x hidden`): the `X` of the NHL Gram identity.
    pub features: Tensor<B>,
    /// The longest code's real-valued output (`n x B`); length `b` is its first `b` columns.
    pub codes: Tensor<B>,
}

fn upload<B: Backend>(backend: &B, data: Vec<f64>, shape: Shape) -> Result<B::Buf, KernelError> {
    let data: Vec<B::Elem> = data.into_iter().map(B::Elem::from_f64).collect();
    backend.upload(&data, shape)
}

/// The widths of a model: `Linear(input_dim -> hidden) + ReLU`, then `Linear(hidden -> code_bits)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelDims {
    /// Features per item.
    pub input_dim: usize,
    /// Backbone hidden width.
    pub hidden: usize,
    /// Width of the hash layer (the longest code).
    pub code_bits: usize,
}

impl<B: Backend> NestedHashModel<B> {
    /// A freshly initialised model: backbone weight and bias uniform in `+-1/sqrt(input_dim)`
    /// (PyTorch's default), hash weight `N(0, 0.01^2)`, hash bias 0. Draws come from `seed` in a
    /// fixed order, so the same seed gives the same model on every backend.
    pub fn new(
        backend: &B,
        input_dim: usize,
        hidden: usize,
        code_bits: usize,
        seed: u64,
    ) -> Result<Self, TrainError> {
        let mut rng = SplitMix64::new(seed);
        let bound = 1.0 / (input_dim as f64).sqrt();
        let mut uniform = |n: usize| {
            (0..n)
                .map(|_| rng.uniform(-bound, bound))
                .collect::<Vec<f64>>()
        };
        let w1 = uniform(hidden * input_dim);
        let b1 = uniform(hidden);
        let w2: Vec<f64> = (0..code_bits * hidden)
            .map(|_| 0.01 * rng.normal())
            .collect();
        let mut params = Params::new();
        let w1 = params.add(
            "backbone.weight",
            upload(backend, w1, Shape::new(hidden, input_dim))?,
        )?;
        let b1 = params.add("backbone.bias", upload(backend, b1, Shape::new(1, hidden))?)?;
        let w2 = params.add(
            "hash.weight",
            upload(backend, w2, Shape::new(code_bits, hidden))?,
        )?;
        let b2 = params.add("hash.bias", backend.zeros(Shape::new(1, code_bits))?)?;
        Ok(Self {
            params,
            w1,
            b1,
            w2,
            b2,
            input_dim,
            code_bits,
        })
    }

    /// The model stored in `ckpt` under the names `{prefix}backbone.weight`, ... (the prefix is
    /// `b{bits}.` for a model of a `single` run, empty otherwise), whose tensors must have the
    /// shapes `dims` gives; errors name `path`, the file the checkpoint came from.
    pub fn from_checkpoint(
        backend: &B,
        ckpt: &Checkpoint,
        path: &Path,
        prefix: &str,
        dims: ModelDims,
    ) -> Result<Self, TrainError> {
        let ModelDims {
            input_dim,
            hidden,
            code_bits,
        } = dims;
        let mut params = Params::new();
        let mut add = |name: &str, shape: [usize; 2]| -> Result<ParamId, TrainError> {
            let full = format!("{prefix}{name}");
            ckpt.expect(path, &[(full.as_str(), shape)])?;
            let stored = ckpt.get(&full).ok_or_else(|| TrainError::TensorMissing {
                path: path.to_path_buf(),
                tensor: full.clone(),
            })?;
            let data = stored.data.iter().map(|&v| f64::from(v)).collect();
            Ok(params.add(name, upload(backend, data, Shape::new(shape[0], shape[1]))?)?)
        };
        let w1 = add("backbone.weight", [hidden, input_dim])?;
        let b1 = add("backbone.bias", [1, hidden])?;
        let w2 = add("hash.weight", [code_bits, hidden])?;
        let b2 = add("hash.bias", [1, code_bits])?;
        Ok(Self {
            params,
            w1,
            b1,
            w2,
            b2,
            input_dim,
            code_bits,
        })
    }

    /// Features per item.
    pub fn input_dim(&self) -> usize {
        self.input_dim
    }

    /// Width of the hash layer (the longest code).
    pub fn code_bits(&self) -> usize {
        self.code_bits
    }

    /// The hash layer's real outputs `u = relu(x W1^T + b1) W2^T + b2` (`rows x code_bits`,
    /// row-major) of the `rows` items of `x` (`rows x input_dim`, row-major), computed by
    /// [`forward`](Self::forward) without recording gradients: bit `j` of an item's code is
    /// `u_j > 0`. Evaluation after training and the encoder both go through it, so that the same
    /// parameters on the same backend give the same codes.
    pub fn outputs(
        &self,
        backend: &B,
        x: &[B::Elem],
        rows: usize,
    ) -> Result<Vec<B::Elem>, TrainError> {
        if rows == 0 {
            return Ok(Vec::new());
        }
        let tape = Tape::new(backend);
        let x = backend.upload(x, Shape::new(rows, self.input_dim))?;
        let fwd = tape.no_grad(|| self.forward(&tape, &tape.constant(x)))?;
        Ok(backend.download(fwd.codes.value())?)
    }

    /// One flag per hidden unit of the backbone: whether it fires, `relu(x W1^T + b1)_j > 0`, for
    /// at least one of the `rows` items of `x`. A unit that fires for no training item is dead:
    /// it passes no gradient, so it never learns again, and the codes are built from the units
    /// left (docs/METHOD.md Q16).
    pub fn fired_units(
        &self,
        backend: &B,
        x: &[B::Elem],
        rows: usize,
    ) -> Result<Vec<bool>, TrainError> {
        let width = backend.shape(&self.params.get(self.w1).value).rows;
        let mut fired = vec![false; width];
        if rows == 0 {
            return Ok(fired);
        }
        let tape = Tape::new(backend);
        let x = backend.upload(x, Shape::new(rows, self.input_dim))?;
        let fwd = tape.no_grad(|| self.forward(&tape, &tape.constant(x)))?;
        for row in backend.download(fwd.features.value())?.chunks_exact(width) {
            for (flag, &h) in fired.iter_mut().zip(row) {
                *flag |= h > B::Elem::zero();
            }
        }
        Ok(fired)
    }

    /// `h = relu(x W1^T + b1)`, `u = h W2^T + b2`, recorded on `tape`.
    pub fn forward(&self, tape: &Tape<'_, B>, x: &Tensor<B>) -> Result<Forward<B>, TrainError> {
        let w1 = self.params.leaf(tape, self.w1);
        let b1 = self.params.leaf(tape, self.b1);
        let w2 = self.params.leaf(tape, self.w2);
        let b2 = self.params.leaf(tape, self.b2);
        let features = tape.relu(&tape.linear(x, &w1, &b1)?)?;
        let codes = tape.linear(&features, &w2, &b2)?;
        Ok(Forward { features, codes })
    }

    /// Adds the hash layer's gradient for an output gradient `d` (`n x B`) at hash-layer input
    /// `features`: `dW2 += d^T X`, `db2 += colsum(d)` (the reference's leftover gradient, Q3).
    pub fn add_hash_grad(
        &mut self,
        backend: &B,
        d: &B::Buf,
        features: &B::Buf,
    ) -> Result<(), TrainError> {
        let dw = backend.matmul(d, true, features, false, None)?;
        let db = backend.reduce(nhl_kernels::Reduce::ColSums, d)?;
        for (id, g) in [(self.w2, dw), (self.b2, db)] {
            let p = self.params.get_mut(id);
            p.grad = Some(match p.grad.take() {
                Some(prev) => backend.binary(nhl_kernels::Binary::Add, &prev, &g)?,
                None => g,
            });
        }
        Ok(())
    }

    /// A copy with parameters of its own (not shared with `self`): MDSH's momentum model starts as
    /// one.
    pub fn duplicate(&self, backend: &B) -> Result<Self, TrainError> {
        let mut params = Params::new();
        for (_, p) in self.params.iter() {
            let copy = backend.upload(&backend.download(&p.value)?, backend.shape(&p.value))?;
            params.add(&p.name, copy)?;
        }
        Ok(Self { params, ..*self })
    }

    /// Moves every parameter towards `source`'s: `p <- p + (1 - momentum) (p_source - p)`, that is
    /// `momentum p + (1 - momentum) p_source` (a momentum model's update), in place.
    pub fn follow(
        &mut self,
        backend: &B,
        source: &NestedHashModel<B>,
        momentum: f64,
    ) -> Result<(), TrainError> {
        let ids: Vec<ParamId> = self.params.iter().map(|(id, _)| id).collect();
        for id in ids {
            let target = &source.params.get(id).value;
            let p = self.params.get_mut(id);
            let step = backend.binary(nhl_kernels::Binary::Sub, target, &p.value)?;
            backend.add_prefix_scaled(&mut p.value, 0, &step, (1.0 - momentum) as f32)?;
        }
        Ok(())
    }

    /// Every parameter copied to the host, names prefixed with `prefix`.
    pub fn export(&self, backend: &B, prefix: &str) -> Result<Vec<NamedParam>, TrainError> {
        self.params
            .iter()
            .map(|(_, p)| {
                let s = backend.shape(&p.value);
                let data = backend
                    .download(&p.value)?
                    .into_iter()
                    .map(|v| v.to_f64() as f32)
                    .collect();
                Ok(NamedParam {
                    name: format!("{prefix}{}", p.name),
                    shape: [s.rows, s.cols],
                    data,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use nhl_kernels::cpu::CpuBackend;
    use nhl_kernels::rng::SplitMix64;
    use nhl_kernels::{Backend, Shape};

    use super::NestedHashModel;

    /// Units whose bias is pushed far below any pre-activation never fire; every other unit of
    /// this backbone fires for some of the random positive inputs, whichever chunk they come in.
    #[test]
    fn fired_units_finds_exactly_the_units_that_never_fire() {
        let cpu = CpuBackend::<f32>::new();
        let (input_dim, hidden, rows) = (13, 37, 29);
        let mut model = NestedHashModel::new(&cpu, input_dim, hidden, 8, 5).unwrap();
        let dead = [0usize, 7, 8, 36];
        let mut bias = cpu.download(&model.params.get(model.b1).value).unwrap();
        for &j in &dead {
            bias[j] = -1e3;
        }
        // Every other unit gets a positive bias, so it fires for any input.
        for (j, b) in bias.iter_mut().enumerate() {
            if !dead.contains(&j) {
                *b = b.abs() + 10.0;
            }
        }
        model.params.get_mut(model.b1).value = cpu.upload(&bias, Shape::new(1, hidden)).unwrap();
        let mut rng = SplitMix64::new(11);
        let x: Vec<f32> = (0..rows * input_dim)
            .map(|_| rng.uniform(0.0, 1.0) as f32)
            .collect();
        let whole = model.fired_units(&cpu, &x, rows).unwrap();
        assert_eq!(whole.len(), hidden);
        for (j, &fired) in whole.iter().enumerate() {
            assert_eq!(fired, !dead.contains(&j), "unit {j}");
        }
        // No rows: nothing fired, one flag per unit all the same.
        assert_eq!(
            model.fired_units(&cpu, &[], 0).unwrap(),
            vec![false; hidden]
        );
    }

    /// A unit that fires only for one item is found in any chunk holding that item.
    #[test]
    fn a_unit_firing_for_one_item_is_live() {
        let cpu = CpuBackend::<f32>::new();
        let (input_dim, hidden) = (3, 5);
        let mut model = NestedHashModel::new(&cpu, input_dim, hidden, 4, 1).unwrap();
        // Unit 2 reads feature 0 with weight 1 and bias -0.5: it fires only when x_0 > 0.5.
        let mut w = vec![0.0f32; hidden * input_dim];
        w[2 * input_dim] = 1.0;
        let b = vec![-0.5f32; hidden];
        model.params.get_mut(model.w1).value =
            cpu.upload(&w, Shape::new(hidden, input_dim)).unwrap();
        model.params.get_mut(model.b1).value = cpu.upload(&b, Shape::new(1, hidden)).unwrap();
        let quiet = [0.1f32, 0.9, 0.9, 0.2, 0.0, 0.0];
        assert_eq!(
            model.fired_units(&cpu, &quiet, 2).unwrap(),
            vec![false; hidden]
        );
        let loud = [0.1f32, 0.9, 0.9, 0.7, 0.0, 0.0];
        let fired = model.fired_units(&cpu, &loud, 2).unwrap();
        assert_eq!(fired, vec![false, false, true, false, false]);
    }
}

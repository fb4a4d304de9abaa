//! The base hashing losses (docs/METHOD.md section 5), each written with tape ops only, so every
//! gradient comes from the checked backward rules; CSQ also has a fused kernel
//! ([`LengthLoss::fused`]) that training uses and that is tested against its tape form. One
//! [`LengthLoss`] per code length.

use nhl_autograd::{Tape, Tensor};
use nhl_kernels::{Backend, HashingOps, KernelError, Shape, Unary};

use crate::config::Method;
use crate::data::Dataset;
use crate::error::TrainError;
use crate::model::NamedParam;
use crate::targets::{csq_centres, dpn_targets, prefix_columns, target_table};
use crate::train_state::{download, LossState, StateTensors};

/// CSQ's quantisation weight `lambda`.
const CSQ_LAMBDA: f64 = 1e-4;
/// DPN's margin `m` and share of -1 entries `p`.
const DPN_MARGIN: f64 = 1.0;
const DPN_P: f64 = 0.5;
/// The quantisation weight `alpha` of DSH and DHN.
const PAIR_ALPHA: f64 = 0.1;

impl Method {
    /// True for the losses that compare the batch with a memory bank of all training codes.
    pub fn needs_bank(self) -> bool {
        matches!(self, Method::Dsh | Method::Dhn)
    }
}

/// The memory bank of DSH/DHN: the last code (longest length; prefixes serve the shorter ones)
/// and the labels of every training item, zero until the item is visited. Only training steps
/// write it; evaluation never does.
pub struct Bank<B: Backend> {
    codes: B::Buf,
    labels: B::Buf,
}

impl<B: Backend> Bank<B> {
    /// An all-zero bank of `n` items.
    pub fn new(
        backend: &B,
        n: usize,
        code_bits: usize,
        n_classes: usize,
    ) -> Result<Self, TrainError> {
        Ok(Self {
            codes: backend.zeros(Shape::new(n, code_bits))?,
            labels: backend.zeros(Shape::new(n, n_classes))?,
        })
    }

    /// Writes the batch's codes (detached) and labels at rows `idx`.
    pub fn update(
        &mut self,
        backend: &B,
        idx: &B::Idx,
        codes: &B::Buf,
        labels: &B::Buf,
    ) -> Result<(), TrainError> {
        backend.set_rows(&mut self.codes, idx, codes)?;
        Ok(backend.set_rows(&mut self.labels, idx, labels)?)
    }
}

impl<B: Backend> LossState<B> for Bank<B> {
    fn save_state(&self, backend: &B) -> Result<Vec<NamedParam>, TrainError> {
        Ok(vec![
            download(backend, "codes", &self.codes)?,
            download(backend, "labels", &self.labels)?,
        ])
    }

    fn load_state(&mut self, backend: &B, tensors: &StateTensors) -> Result<(), TrainError> {
        tensors.restore(backend, "codes", &mut self.codes)?;
        tensors.restore(backend, "labels", &mut self.labels)
    }
}

/// A `1 x 1` loss and its gradient with respect to the output it was computed from.
pub type LossAndGrad<B> = (<B as Backend>::Buf, <B as Backend>::Buf);

/// What a loss may read about the current batch.
pub struct BatchContext<'a, B: Backend> {
    /// Indices of the batch items in the training set.
    pub idx: &'a B::Idx,
    /// The rows of the batch items' targets in the target tables of the centre-based losses:
    /// [`crate::targets::target_rows`] at the batch items.
    pub target_rows: &'a B::Idx,
    /// Multi-hot labels of the batch (`n x C`).
    pub labels: &'a B::Buf,
    /// The memory bank, already holding this batch.
    pub bank: Option<&'a Bank<B>>,
}

/// One length's base loss and its per-length state.
pub enum LengthLoss<B: Backend> {
    /// CSQ: `BCE((v+1)/2, (h+1)/2) + lambda mean((|v| - 1)^2)`, `v = tanh(u)`, `h` the item's
    /// hash centre, row [`BatchContext::target_rows`] of `targets`.
    Csq {
        /// The target table ([`crate::targets::target_table`]), entries in {-1, 1}, `b` wide.
        targets: B::Buf,
    },
    /// DPN: `mean(max(0, m - u * t))` against the class target vector `t`.
    Dpn {
        /// The target table ([`crate::targets::target_table`]), entries in {-1, 1}, `b` wide.
        targets: B::Buf,
    },
    /// DSH: `mean[s/2 d + (1-s)/2 max(m - d, 0)] + alpha mean(|1 - |u||)` over the bank, with
    /// `d_ij = ||u_i - U_j||^2` and `m = 2b`.
    Dsh {
        /// Code length `b`.
        bits: usize,
    },
    /// DHN: `mean(softplus(theta) - s theta) + alpha mean(log cosh(|u| - 1))` over the bank, with
    /// `theta_ij = u_i . U_j / 2`.
    Dhn {
        /// Code length `b`.
        bits: usize,
    },
}

impl<B: Backend> LengthLoss<B> {
    /// The loss of `method` for `bits`-bit codes of the items of `train`.
    ///
    /// `prefix_of`, when given, is an `n_classes x width` centre matrix whose first `bits`
    /// columns are this length's CSQ centres (prefix-consistent centres); otherwise each length
    /// draws its own, as the reference does.
    pub fn new(
        backend: &B,
        method: Method,
        bits: usize,
        train: &Dataset,
        seed: u64,
        prefix_of: Option<(&[f32], usize)>,
    ) -> Result<Self, TrainError> {
        let per_item = |centres: Vec<f32>| -> Result<B::Buf, TrainError> {
            // Classes are validated when the data set is built, so every label has a centre.
            let table: Vec<B::Elem> = target_table(&centres, bits, &train.labels, seed)?
                .into_iter()
                .map(|v| nhl_kernels::Real::from_f64(v as f64))
                .collect();
            let rows = table.len() / bits;
            Ok(backend.upload(&table, Shape::new(rows, bits))?)
        };
        Ok(match method {
            Method::Csq => {
                let centres = match prefix_of {
                    Some((long, width)) => prefix_columns(long, width, bits),
                    None => csq_centres(bits, train.n_classes(), seed),
                };
                LengthLoss::Csq {
                    targets: per_item(centres)?,
                }
            }
            Method::Dpn => LengthLoss::Dpn {
                targets: per_item(dpn_targets(bits, train.n_classes(), DPN_P, seed))?,
            },
            Method::Dsh => LengthLoss::Dsh { bits },
            Method::Dhn => LengthLoss::Dhn { bits },
        })
    }

    /// The loss of the batch outputs `u` (`n x b`), a `1 x 1` tensor on `tape`.
    pub fn eval(
        &self,
        tape: &Tape<'_, B>,
        u: &Tensor<B>,
        ctx: &BatchContext<'_, B>,
    ) -> Result<Tensor<B>, TrainError> {
        let be = tape.backend();
        match self {
            LengthLoss::Csq { targets } => {
                let h = be.gather_rows(targets, ctx.target_rows)?;
                let t = tape
                    .constant(be.unary(Unary::AddScalar(0.5), &be.unary(Unary::Scale(0.5), &h)?)?);
                let v = tape.tanh(u)?;
                let p = tape.add_scalar(&tape.scale(&v, 0.5)?, 0.5)?;
                let centre = tape.mean_all(&tape.bce(&p, &t)?)?;
                let quant =
                    tape.mean_all(&tape.square(&tape.add_scalar(&tape.abs(&v)?, -1.0)?)?)?;
                Ok(tape.add(&centre, &tape.scale(&quant, CSQ_LAMBDA)?)?)
            }
            LengthLoss::Dpn { targets } => {
                let t = tape.constant(be.gather_rows(targets, ctx.target_rows)?);
                let margin = tape.add_scalar(&tape.scale(&tape.mul(u, &t)?, -1.0)?, DPN_MARGIN)?;
                Ok(tape.mean_all(&tape.relu(&margin)?)?)
            }
            LengthLoss::Dsh { bits } => {
                let (bank_codes, s) = bank_view(be, ctx, *bits)?;
                let bank_codes_t = tape.constant(bank_codes.clone());
                // ||u_i - U_j||^2 = |u_i|^2 + |U_j|^2 - 2 u_i . U_j.
                let ones = be.fill(Shape::new(1, *bits), 1.0)?;
                let bank_sq = tape.constant(be.matmul(
                    &ones,
                    false,
                    &be.unary(Unary::Square, &bank_codes)?,
                    true,
                    None,
                )?);
                let u_sq = tape.row_sums(&tape.square(u)?)?;
                let cross = tape.matmul_nt(u, &bank_codes_t)?;
                let dist = tape.add(&tape.add(&tape.scale(&cross, -2.0)?, &u_sq)?, &bank_sq)?;
                let s_t = tape.constant(s.clone());
                let dis = tape
                    .constant(be.unary(Unary::AddScalar(1.0), &be.unary(Unary::Scale(-1.0), &s)?)?);
                let pull = tape.mul(&dist, &s_t)?;
                let push = tape.mul(
                    &tape.relu(&tape.add_scalar(&tape.scale(&dist, -1.0)?, 2.0 * *bits as f64)?)?,
                    &dis,
                )?;
                let pair = tape.scale(&tape.mean_all(&tape.add(&pull, &push)?)?, 0.5)?;
                let quant = tape.mean_all(
                    &tape.abs(&tape.add_scalar(&tape.scale(&tape.abs(u)?, -1.0)?, 1.0)?)?,
                )?;
                Ok(tape.add(&pair, &tape.scale(&quant, PAIR_ALPHA)?)?)
            }
            LengthLoss::Dhn { bits } => {
                let (bank_codes, s) = bank_view(be, ctx, *bits)?;
                let theta = tape.scale(&tape.matmul_nt(u, &tape.constant(bank_codes))?, 0.5)?;
                let nll = tape.sub(
                    &tape.softplus(&theta)?,
                    &tape.mul(&theta, &tape.constant(s))?,
                )?;
                let quant =
                    tape.mean_all(&tape.log_cosh(&tape.add_scalar(&tape.abs(u)?, -1.0)?)?)?;
                Ok(tape.add(&tape.mean_all(&nll)?, &tape.scale(&quant, PAIR_ALPHA)?)?)
            }
        }
    }
}

/// The per-length losses keep their targets, which their construction derives from the seed,
/// and nothing that a step changes; a variant with such state saves it here.
impl<B: Backend> LossState<B> for LengthLoss<B> {
    fn save_state(&self, _backend: &B) -> Result<Vec<NamedParam>, TrainError> {
        match self {
            LengthLoss::Csq { .. }
            | LengthLoss::Dpn { .. }
            | LengthLoss::Dsh { .. }
            | LengthLoss::Dhn { .. } => Ok(Vec::new()),
        }
    }

    fn load_state(&mut self, _backend: &B, _tensors: &StateTensors) -> Result<(), TrainError> {
        match self {
            LengthLoss::Csq { .. }
            | LengthLoss::Dpn { .. }
            | LengthLoss::Dsh { .. }
            | LengthLoss::Dhn { .. } => Ok(()),
        }
    }
}

impl<B: HashingOps> LengthLoss<B> {
    /// The loss and its gradient `dJ/dU` (`n x b`) from one fused kernel that reads the first `b`
    /// columns of `codes` (`n x B`) in place, for the losses that have one (CSQ:
    /// [`HashingOps::csq_objective`], the same function as [`LengthLoss::eval`]); `None`
    /// otherwise. `target_rows`: [`BatchContext::target_rows`].
    pub fn fused(
        &self,
        backend: &B,
        codes: &B::Buf,
        target_rows: &B::Idx,
    ) -> Option<Result<LossAndGrad<B>, TrainError>> {
        match self {
            LengthLoss::Csq { targets } => {
                let bits = backend.shape(targets).cols;
                Some(
                    backend
                        .csq_objective(codes, bits, targets, target_rows, CSQ_LAMBDA)
                        .map_err(TrainError::from),
                )
            }
            LengthLoss::Dpn { .. } | LengthLoss::Dsh { .. } | LengthLoss::Dhn { .. } => None,
        }
    }
}

/// The bank's `b`-bit codes (`N x b`) and the batch-to-bank similarity `s_ij = 1[y_i . Y_j > 0]`
/// (`n x N`); unvisited bank rows have no label, so they count as dissimilar.
fn bank_view<B: Backend>(
    be: &B,
    ctx: &BatchContext<'_, B>,
    bits: usize,
) -> Result<(B::Buf, B::Buf), KernelError> {
    let bank = ctx.bank.ok_or(KernelError::Shape {
        op: "bank loss",
        detail: "no memory bank was set up".into(),
    })?;
    let width = be.shape(&bank.codes).cols;
    let codes = if bits == width {
        bank.codes.clone()
    } else {
        be.slice_cols(&bank.codes, 0, bits)?
    };
    let shared = be.matmul(ctx.labels, false, &bank.labels, true, None)?;
    let s = be.unary(Unary::Clamp { lo: 0.0, hi: 1.0 }, &shared)?;
    Ok((codes, s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhl_index::eval::Labels;
    use nhl_kernels::cpu::CpuBackend;
    use nhl_kernels::testing::{assert_close, random_vec};

    type Cpu = CpuBackend<f64>;

    fn train_set(n: usize, classes: &[u32]) -> Dataset {
        Dataset {
            features: vec![0.0; n],
            dim: 1,
            labels: Labels::Single(classes.to_vec()),
            n_classes: 4,
        }
    }

    /// Evaluates a loss at `u` and returns (value, gradient) on the f64 CPU backend.
    fn value_and_grad(
        loss: &LengthLoss<Cpu>,
        cpu: &Cpu,
        u: &[f64],
        shape: Shape,
        ctx: &BatchContext<'_, Cpu>,
    ) -> (f64, Vec<f64>) {
        let tape = Tape::new(cpu);
        let leaf = tape.leaf(cpu.upload(u, shape).unwrap());
        let l = loss.eval(&tape, &leaf, ctx).unwrap();
        let value = tape.to_vec(&l).unwrap()[0];
        let grads = tape.backward(&l).unwrap();
        (value, cpu.download(grads.get(&leaf).unwrap()).unwrap())
    }

    fn finite_difference(
        loss: &LengthLoss<Cpu>,
        cpu: &Cpu,
        u: &[f64],
        shape: Shape,
        ctx: &BatchContext<'_, Cpu>,
    ) -> Vec<f64> {
        (0..u.len())
            .map(|i| {
                let mut p = u.to_vec();
                p[i] += 1e-6;
                let mut m = u.to_vec();
                m[i] -= 1e-6;
                (value_and_grad(loss, cpu, &p, shape, ctx).0
                    - value_and_grad(loss, cpu, &m, shape, ctx).0)
                    / 2e-6
            })
            .collect()
    }

    #[test]
    fn csq_hand_checked_value_and_gradient() {
        let cpu = Cpu::new();
        // Two items of class 0 and 1; 2-bit codes: centres are Hadamard rows [1, 1] and [1, -1].
        let loss = LengthLoss::new(&cpu, Method::Csq, 2, &train_set(2, &[0, 1]), 0, None).unwrap();
        let idx = cpu.upload_idx(&[1, 0]).unwrap();
        let labels = cpu.zeros(Shape::new(2, 4)).unwrap();
        let ctx = BatchContext {
            idx: &idx,
            // Every item of these training sets is its own class.
            target_rows: &idx,
            labels: &labels,
            bank: None,
        };
        let u = [0.3, -0.2, 1.1, 0.4];
        let (value, grad) = value_and_grad(&loss, &cpu, &u, Shape::new(2, 2), &ctx);
        // Batch row 0 is item 1 (target [1, -1]), row 1 is item 0 (target [1, 1]).
        let targets = [1.0, -1.0, 1.0, 1.0];
        let mut want = 0.0;
        for (x, t) in u.iter().zip(targets) {
            let v = f64::tanh(*x);
            let (p, tt) = ((v + 1.0) / 2.0, (t + 1.0) / 2.0);
            want += -(tt * p.ln() + (1.0 - tt) * (1.0 - p).ln()) / 4.0
                + 1e-4 * (v.abs() - 1.0).powi(2) / 4.0;
        }
        assert_close("csq value", &[value], &[want], 1e-12, 1e-12);
        assert_close(
            "csq grad",
            &grad,
            &finite_difference(&loss, &cpu, &u, Shape::new(2, 2), &ctx),
            1e-8,
            1e-6,
        );
    }

    #[test]
    fn dpn_hand_checked_value_and_gradient() {
        let cpu = Cpu::new();
        let loss =
            LengthLoss::new(&cpu, Method::Dpn, 4, &train_set(3, &[0, 1, 2]), 3, None).unwrap();
        let LengthLoss::Dpn { targets } = &loss else {
            unreachable!()
        };
        let t = cpu.download(targets).unwrap();
        assert!(
            t.chunks(4)
                .all(|row| row.iter().filter(|&&v| v < 0.0).count() == 2),
            "half of each target is -1"
        );
        let idx = cpu.upload_idx(&[2, 0]).unwrap();
        let labels = cpu.zeros(Shape::new(2, 4)).unwrap();
        let ctx = BatchContext {
            idx: &idx,
            // Every item of these training sets is its own class.
            target_rows: &idx,
            labels: &labels,
            bank: None,
        };
        let u = random_vec(5, 8, -2.0, 2.0);
        let (value, grad) = value_and_grad(&loss, &cpu, &u, Shape::new(2, 4), &ctx);
        let rows = [2usize, 0];
        let want: f64 = (0..8)
            .map(|i| (1.0 - u[i] * t[rows[i / 4] * 4 + i % 4]).max(0.0))
            .sum::<f64>()
            / 8.0;
        assert_close("dpn value", &[value], &[want], 1e-12, 1e-12);
        assert_close(
            "dpn grad",
            &grad,
            &finite_difference(&loss, &cpu, &u, Shape::new(2, 4), &ctx),
            1e-8,
            1e-6,
        );
    }

    /// A bank of 3 items (item 2 unvisited) and a batch of 2 items, 3-bit codes.
    fn bank_case(cpu: &Cpu) -> (Bank<Cpu>, Vec<f64>, Vec<f64>) {
        let mut bank = Bank::new(cpu, 3, 4, 2).unwrap();
        let codes = [0.5, -1.0, 0.25, 9.0, -0.5, 0.75, 1.0, 9.0];
        let labels = [1.0, 0.0, 0.0, 1.0];
        bank.update(
            cpu,
            &cpu.upload_idx(&[0, 1]).unwrap(),
            &cpu.upload(&codes, Shape::new(2, 4)).unwrap(),
            &cpu.upload(&labels, Shape::new(2, 2)).unwrap(),
        )
        .unwrap();
        // The prefix (3 bits) of the bank rows, then the similarity of batch labels [1,0], [0,1].
        let bank3 = vec![0.5, -1.0, 0.25, -0.5, 0.75, 1.0, 0.0, 0.0, 0.0];
        let s = vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        (bank, bank3, s)
    }

    #[test]
    fn dsh_hand_checked_value_and_gradient() {
        let cpu = Cpu::new();
        let (bank, b3, s) = bank_case(&cpu);
        let loss = LengthLoss::<Cpu>::Dsh { bits: 3 };
        let idx = cpu.upload_idx(&[0, 1]).unwrap();
        let labels = cpu.upload(&[1.0, 0.0, 0.0, 1.0], Shape::new(2, 2)).unwrap();
        let ctx = BatchContext {
            idx: &idx,
            // Every item of these training sets is its own class.
            target_rows: &idx,
            labels: &labels,
            bank: Some(&bank),
        };
        let u = random_vec(6, 6, -1.5, 1.5);
        let (value, grad) = value_and_grad(&loss, &cpu, &u, Shape::new(2, 3), &ctx);
        let mut pair = 0.0;
        for i in 0..2 {
            for j in 0..3 {
                let d: f64 = (0..3).map(|c| (u[i * 3 + c] - b3[j * 3 + c]).powi(2)).sum();
                let sim = s[i * 3 + j];
                pair += sim / 2.0 * d + (1.0 - sim) / 2.0 * (6.0 - d).max(0.0);
            }
        }
        let quant: f64 = u.iter().map(|x| (1.0 - x.abs()).abs()).sum::<f64>() / 6.0;
        assert_close(
            "dsh value",
            &[value],
            &[pair / 6.0 + 0.1 * quant],
            1e-12,
            1e-12,
        );
        assert_close(
            "dsh grad",
            &grad,
            &finite_difference(&loss, &cpu, &u, Shape::new(2, 3), &ctx),
            1e-7,
            1e-6,
        );
    }

    #[test]
    fn dhn_hand_checked_value_and_gradient() {
        let cpu = Cpu::new();
        let (bank, b3, s) = bank_case(&cpu);
        let loss = LengthLoss::<Cpu>::Dhn { bits: 3 };
        let idx = cpu.upload_idx(&[0, 1]).unwrap();
        let labels = cpu.upload(&[1.0, 0.0, 0.0, 1.0], Shape::new(2, 2)).unwrap();
        let ctx = BatchContext {
            idx: &idx,
            // Every item of these training sets is its own class.
            target_rows: &idx,
            labels: &labels,
            bank: Some(&bank),
        };
        let u = random_vec(7, 6, -1.5, 1.5);
        let (value, grad) = value_and_grad(&loss, &cpu, &u, Shape::new(2, 3), &ctx);
        let mut nll = 0.0;
        for i in 0..2 {
            for j in 0..3 {
                let theta: f64 = 0.5 * (0..3).map(|c| u[i * 3 + c] * b3[j * 3 + c]).sum::<f64>();
                nll += (1.0 + theta.exp()).ln() - s[i * 3 + j] * theta;
            }
        }
        let quant: f64 = u.iter().map(|x| (x.abs() - 1.0).cosh().ln()).sum::<f64>() / 6.0;
        assert_close(
            "dhn value",
            &[value],
            &[nll / 6.0 + 0.1 * quant],
            1e-12,
            1e-12,
        );
        assert_close(
            "dhn grad",
            &grad,
            &finite_difference(&loss, &cpu, &u, Shape::new(2, 3), &ctx),
            1e-7,
            1e-6,
        );
    }
}

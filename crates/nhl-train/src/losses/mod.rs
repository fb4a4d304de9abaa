//! The twelve base hashing losses (docs/METHOD.md section 5), one [`LengthLoss`] per code length,
//! and the state a run's losses keep ([`LossSet`]: the memory bank, MDSH's momentum model).
//!
//! Every loss is written with tape ops ([`LengthLoss::eval`]), so every gradient comes from the
//! checked backward rules; that form is the reference. Training takes faster paths where the
//! tape would dominate a step, each tested against the tape form: CSQ, DTSH and HashNet have
//! fused kernels of their own ([`LengthLoss::fused`]), and the memory-bank terms of all lengths
//! are computed at once by [`nhl_kernels::HashingOps::bank_objectives`] ([`bank_terms`]).

mod bank;
mod centre;
mod momentum;
pub mod params;
mod set;
#[cfg(test)]
mod set_tests;
mod triplet;
mod within;

pub use bank::{bank_terms, Bank};
pub use momentum::MomentumHead;
pub use set::LossSet;

use nhl_autograd::{Tape, Tensor};
use nhl_kernels::{Backend, BankLoss, BankPair, HashingOps, KernelError, Quantisation, Shape};

use crate::config::Method;
use crate::data::Dataset;
use crate::error::TrainError;
use crate::targets::{csq_centres, dpn_targets, prefix_columns, target_table};
use params::LossParams;

/// A `1 x 1` loss and its gradient with respect to the output it was computed from.
pub type LossAndGrad<B> = (<B as Backend>::Buf, <B as Backend>::Buf);

/// What a loss may read about the current batch.
pub struct BatchContext<'a, B: Backend> {
    /// Indices of the batch items in the training set.
    pub idx: &'a B::Idx,
    /// The rows of the batch items' targets in the target tables of CSQ and DPN:
    /// [`crate::targets::target_rows`] at the batch items.
    pub target_rows: &'a B::Idx,
    /// Multi-hot labels of the batch (`n x C`).
    pub labels: &'a B::Buf,
    /// The memory bank, already holding this batch.
    pub bank: Option<&'a Bank<B>>,
    /// The epoch, counted from 0 (HashNet's continuation, MDSH's delayed pair term).
    pub epoch: usize,
}

/// MDSH's pair term against the bank of the momentum model's codes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DelayedPair {
    /// Its weight `beta`.
    pub weight: f64,
    /// The first epoch (from 0) it is on.
    pub from_epoch: usize,
}

/// One length's base loss and its per-length state.
pub enum LengthLoss<B: Backend> {
    /// CSQ: `BCE((v+1)/2, (h+1)/2) + lambda mean((|v| - 1)^2)`, `v = tanh(u)`, `h` the item's
    /// hash centre, row [`BatchContext::target_rows`] of `targets`.
    Csq {
        /// The target table ([`crate::targets::target_table`]), entries in {-1, 1}, `b` wide.
        targets: B::Buf,
        /// The quantisation weight.
        lambda: f64,
    },
    /// DPN: `mean(max(0, m - u * t))` against the class target vector `t`.
    Dpn {
        /// The target table ([`crate::targets::target_table`]), entries in {-1, 1}, `b` wide.
        targets: B::Buf,
        /// The margin `m`.
        margin: f64,
    },
    /// DSH, DHN, DBDH and DPSH: a memory-bank loss of `bits`-bit codes (see [`BankLoss`]).
    Bank {
        /// Code length `b`.
        bits: usize,
        /// The loss.
        loss: BankLoss,
    },
    /// HashNet: the class-balanced likelihood of `alpha tanh(s u) tanh(s u)^T`,
    /// `s = sqrt(floor(epoch / step) + 1)`.
    Hashnet {
        /// Scale of the pair logits.
        alpha: f64,
        /// Epochs per continuation step.
        step: usize,
    },
    /// DCH: Cauchy cross-entropy of cosine distances, class-balanced, plus its quantisation.
    Dch {
        /// Scale of the Cauchy distribution.
        gamma: f64,
        /// Quantisation weight.
        lambda: f64,
    },
    /// DTSH: triplet likelihood within the batch plus `lambda mean((u - sign u)^2)`.
    Dtsh {
        /// Triplet margin.
        alpha: f64,
        /// Quantisation weight.
        lambda: f64,
    },
    /// LCDSH: pairwise likelihood plus agreement with the constant sign codes' similarity.
    Lcdsh {
        /// Weight of the agreement term.
        lambda: f64,
    },
    /// SHCIR: softmax over the cosines to the class centres (single-label data).
    Shcir {
        /// Class centres `C x b`, entries in {-1, 1}.
        centres: B::Buf,
        /// Quantisation weight.
        lambda: f64,
    },
    /// MDSH: multi-label BCE over the softmax of the cosines to the class centres, and the delayed
    /// pair term against the bank of momentum codes.
    Mdsh {
        /// Class centres `C x b`, entries in {-1, 1}.
        centres: B::Buf,
        /// Quantisation weight.
        lambda: f64,
        /// The pair term; `None` reproduces the reference, where it never runs.
        pair: Option<DelayedPair>,
    },
}

impl Method {
    /// True for the losses that read a memory bank of all training items (MDSH's holds the
    /// momentum model's codes).
    pub fn needs_bank(self) -> bool {
        matches!(
            self,
            Method::Dsh | Method::Dhn | Method::Dbdh | Method::Dpsh | Method::Mdsh
        )
    }

    /// True for the losses that compare each item with one class centre per class (SHCIR and
    /// MDSH use CSQ's Hadamard centres: docs/METHOD.md 5.11).
    pub fn uses_hash_centres(self) -> bool {
        matches!(self, Method::Csq | Method::Shcir | Method::Mdsh)
    }
}

impl<B: Backend> LengthLoss<B> {
    /// The loss of `params.method()` for `bits`-bit codes of the items of `train`.
    ///
    /// `prefix_of`, when given, is an `n_classes x width` centre matrix whose first `bits`
    /// columns are this length's hash centres (prefix-consistent centres, for CSQ, SHCIR and
    /// MDSH); otherwise each length draws its own, as the reference does.
    pub fn new(
        backend: &B,
        params: &LossParams,
        bits: usize,
        train: &Dataset,
        seed: u64,
        prefix_of: Option<(&[f32], usize)>,
    ) -> Result<Self, TrainError> {
        let method = params.method();
        let per_item = |centres: Vec<f32>| -> Result<B::Buf, TrainError> {
            // Classes are validated when the data set is built, so every label has a centre.
            let table = target_table(&centres, bits, &train.labels, seed)?;
            upload(backend, &table, bits)
        };
        let hash_centres = || match prefix_of {
            Some((long, width)) => prefix_columns(long, width, bits),
            None => csq_centres(bits, train.n_classes(), seed),
        };
        // DSH, DHN, DBDH and DPSH differ only in their pair and quantisation terms.
        let bank = |pair, quant, clamp_unit| LengthLoss::Bank {
            bits,
            loss: BankLoss {
                pair,
                pair_weight: 1.0,
                quant,
                alpha: params.get("alpha"),
                clamp_unit,
            },
        };
        Ok(match method {
            Method::Csq => LengthLoss::Csq {
                targets: per_item(hash_centres())?,
                lambda: params.get("lambda"),
            },
            Method::Dpn => LengthLoss::Dpn {
                targets: per_item(dpn_targets(bits, train.n_classes(), params.get("p"), seed))?,
                margin: params.get("m"),
            },
            Method::Dsh => bank(
                BankPair::Contrastive {
                    margin: params.get("margin"),
                },
                Quantisation::AbsGap,
                false,
            ),
            Method::Dhn => bank(BankPair::Likelihood, Quantisation::LogCosh, false),
            Method::Dbdh => {
                let balance = if params.get("p") == 1.0 {
                    Quantisation::RowMeanAbs
                } else {
                    Quantisation::RowMeanSquare
                };
                bank(BankPair::Likelihood, balance, true)
            }
            Method::Dpsh => bank(BankPair::Likelihood, Quantisation::SignGap, false),
            Method::Hashnet => LengthLoss::Hashnet {
                alpha: params.get("alpha"),
                step: params.get("step") as usize,
            },
            Method::Dch => LengthLoss::Dch {
                gamma: params.get("gamma"),
                lambda: params.get("lambda"),
            },
            Method::Dtsh => LengthLoss::Dtsh {
                alpha: params.get("alpha"),
                lambda: params.get("lambda"),
            },
            Method::Lcdsh => LengthLoss::Lcdsh {
                lambda: params.get("lambda"),
            },
            Method::Shcir => LengthLoss::Shcir {
                centres: upload(backend, &hash_centres(), bits)?,
                lambda: params.get("lambda"),
            },
            Method::Mdsh => LengthLoss::Mdsh {
                centres: upload(backend, &hash_centres(), bits)?,
                lambda: params.get("lambda"),
                pair: (!params.flag("reference_dead_pair")).then(|| DelayedPair {
                    weight: params.get("beta"),
                    from_epoch: params.get("pair_from") as usize,
                }),
            },
        })
    }

    /// The whole loss of the batch outputs `u` (`n x b`), a `1 x 1` tensor on `tape`: the
    /// reference every faster path is tested against.
    pub fn eval(
        &self,
        tape: &Tape<'_, B>,
        u: &Tensor<B>,
        ctx: &BatchContext<'_, B>,
    ) -> Result<Tensor<B>, TrainError> {
        self.eval_terms(tape, u, ctx, true)?
            .ok_or_else(|| no_term("eval").into())
    }

    /// The loss without its memory-bank term ([`LengthLoss::bank_term`]) when `with_bank` is
    /// false; `None` when nothing else is left.
    pub fn eval_terms(
        &self,
        tape: &Tape<'_, B>,
        u: &Tensor<B>,
        ctx: &BatchContext<'_, B>,
        with_bank: bool,
    ) -> Result<Option<Tensor<B>>, TrainError> {
        let bank = with_bank
            .then(|| self.bank_term(ctx.epoch).map(|l| (l, u.shape().cols)))
            .flatten()
            .map(|(loss, bits)| bank::bank_tape(tape, u, ctx, bits, &loss))
            .transpose()?;
        let own = match self {
            LengthLoss::Csq { targets, lambda } => {
                Some(centre::csq(tape, u, targets, ctx, *lambda)?)
            }
            LengthLoss::Dpn { targets, margin } => {
                Some(centre::dpn(tape, u, targets, ctx, *margin)?)
            }
            LengthLoss::Bank { .. } => None,
            LengthLoss::Hashnet { alpha, step } => {
                Some(within::hashnet(tape, u, ctx, *alpha, *step)?)
            }
            LengthLoss::Dch { gamma, lambda } => Some(within::dch(tape, u, ctx, *gamma, *lambda)?),
            LengthLoss::Dtsh { alpha, lambda } => {
                Some(triplet::dtsh(tape, u, ctx, *alpha, *lambda)?)
            }
            LengthLoss::Lcdsh { lambda } => Some(within::lcdsh(tape, u, ctx, *lambda)?),
            LengthLoss::Shcir { centres, lambda } => {
                Some(centre::shcir(tape, u, centres, ctx, *lambda)?)
            }
            LengthLoss::Mdsh {
                centres, lambda, ..
            } => Some(centre::mdsh(tape, u, centres, ctx, *lambda)?),
        };
        Ok(match (own, bank) {
            (Some(a), Some(b)) => Some(tape.add(&a, &b)?),
            (a, b) => a.or(b),
        })
    }

    /// The memory-bank term of this length at `epoch`, which training computes for all lengths
    /// at once by [`bank_terms`]: the whole loss of DSH, DHN, DBDH and DPSH, MDSH's pair term
    /// once it is on.
    pub fn bank_term(&self, epoch: usize) -> Option<BankLoss> {
        match self {
            LengthLoss::Bank { loss, .. } => Some(*loss),
            LengthLoss::Mdsh {
                pair: Some(pair), ..
            } if epoch >= pair.from_epoch => Some(BankLoss {
                pair: BankPair::CosinePositive,
                pair_weight: pair.weight,
                quant: Quantisation::None,
                alpha: 0.0,
                clamp_unit: false,
            }),
            _ => None,
        }
    }
}

impl<B: HashingOps> LengthLoss<B> {
    /// The loss and its gradient `dJ/dU` (`n x b`) from one fused kernel that reads the first `b`
    /// columns of `codes` (`n x B`) in place, for the losses that have one (CSQ:
    /// [`HashingOps::csq_objective`]; DTSH: [`HashingOps::dtsh_objective`]; HashNet:
    /// [`HashingOps::hashnet_objective`]; each the same function as [`LengthLoss::eval`]); `None`
    /// otherwise.
    pub fn fused(
        &self,
        backend: &B,
        codes: &B::Buf,
        bits: usize,
        ctx: &BatchContext<'_, B>,
    ) -> Option<Result<LossAndGrad<B>, TrainError>> {
        let out = match self {
            LengthLoss::Csq { targets, lambda } => {
                backend.csq_objective(codes, bits, targets, ctx.target_rows, *lambda)
            }
            LengthLoss::Dtsh { alpha, lambda } => {
                backend.dtsh_objective(codes, bits, ctx.labels, *alpha, *lambda)
            }
            LengthLoss::Hashnet { alpha, step } => backend.hashnet_objective(
                codes,
                bits,
                ctx.labels,
                *alpha,
                within::hashnet_scale(ctx.epoch, *step),
            ),
            _ => return None,
        };
        Some(out.map_err(TrainError::from))
    }
}

/// `values` as a `rows x bits` buffer of the backend's element type.
fn upload<B: Backend>(backend: &B, values: &[f32], bits: usize) -> Result<B::Buf, TrainError> {
    let data: Vec<B::Elem> = values
        .iter()
        .map(|&v| nhl_kernels::Real::from_f64(v as f64))
        .collect();
    Ok(backend.upload(&data, Shape::new(values.len() / bits.max(1), bits))?)
}

/// The pair similarity `s_pq = 1[y_p . y_q > 0]` of the batch (`n x n`), a constant.
fn batch_similarity<B: Backend>(be: &B, labels: &B::Buf) -> Result<B::Buf, KernelError> {
    let shared = be.matmul(labels, false, labels, true, None)?;
    be.unary(nhl_kernels::Unary::Clamp { lo: 0.0, hi: 1.0 }, &shared)
}

fn no_term(op: &'static str) -> KernelError {
    KernelError::Shape {
        op,
        detail: "the loss has no term to evaluate".into(),
    }
}

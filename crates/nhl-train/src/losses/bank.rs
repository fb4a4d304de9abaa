//! The memory bank (docs/METHOD.md 5, "The memory bank") and the losses that read it: DSH, DHN,
//! DBDH, DPSH (5.3-5.6) and MDSH's pair term (5.11). [`bank_tape`] writes a bank loss with tape
//! ops, the reference; training computes every length's bank term at once with
//! [`HashingOps::bank_objectives`] ([`bank_terms`]).

use nhl_autograd::{Tape, Tensor};
use nhl_kernels::{
    Backend, BankLoss, BankPair, HashingOps, KernelError, Quantisation, Shape, Unary, COSINE_EPS,
};

use super::{BatchContext, LengthLoss, LossAndGrad};
use crate::error::TrainError;

/// The memory bank: a code row (of the longest length; its prefixes serve the shorter ones) and
/// a label row for every training item, zero until the item is first visited. Only training steps
/// write it; evaluation never does.
pub struct Bank<B: Backend> {
    /// `N_train x B` codes.
    pub codes: B::Buf,
    /// `N_train x C` multi-hot labels.
    pub labels: B::Buf,
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

fn no_bank() -> KernelError {
    KernelError::Shape {
        op: "bank loss",
        detail: "no memory bank was set up".into(),
    }
}

/// The bank's `b`-bit codes (`N x b`) and the batch-to-bank similarity `s_ij = 1[y_i . Y_j > 0]`
/// (`n x N`); unvisited bank rows have no label, so they count as dissimilar.
fn bank_view<B: Backend>(
    be: &B,
    ctx: &BatchContext<'_, B>,
    bits: usize,
) -> Result<(B::Buf, B::Buf), KernelError> {
    let bank = ctx.bank.ok_or_else(no_bank)?;
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

/// `1 - x` on the backend.
fn complement<B: Backend>(be: &B, x: &B::Buf) -> Result<B::Buf, KernelError> {
    be.unary(Unary::AddScalar(1.0), &be.unary(Unary::Scale(-1.0), x)?)
}

/// The bank loss `loss` of the batch outputs `u` (`n x b`) with tape ops (see [`BankLoss`]).
pub(super) fn bank_tape<B: Backend>(
    tape: &Tape<'_, B>,
    u: &Tensor<B>,
    ctx: &BatchContext<'_, B>,
    bits: usize,
    loss: &BankLoss,
) -> Result<Tensor<B>, TrainError> {
    let be = tape.backend();
    let (bank_codes, s) = bank_view(be, ctx, bits)?;
    let clamped;
    let u = if loss.clamp_unit {
        clamped = tape.clamp(u, -1.0, 1.0)?;
        &clamped
    } else {
        u
    };
    let pair = match loss.pair {
        BankPair::Contrastive { margin } => {
            // ||u_i - U_j||^2 = |u_i|^2 + |U_j|^2 - 2 u_i . U_j.
            let ones = be.fill(Shape::new(1, bits), 1.0)?;
            let bank_sq = tape.constant(be.matmul(
                &ones,
                false,
                &be.unary(Unary::Square, &bank_codes)?,
                true,
                None,
            )?);
            let u_sq = tape.row_sums(&tape.square(u)?)?;
            let cross = tape.matmul_nt(u, &tape.constant(bank_codes))?;
            let dist = tape.add(&tape.add(&tape.scale(&cross, -2.0)?, &u_sq)?, &bank_sq)?;
            let push =
                tape.relu(&tape.add_scalar(&tape.scale(&dist, -1.0)?, margin * bits as f64)?)?;
            let pull = tape.mul(&dist, &tape.constant(s.clone()))?;
            let push = tape.mul(&push, &tape.constant(complement(be, &s)?))?;
            tape.scale(&tape.mean_all(&tape.add(&pull, &push)?)?, 0.5)?
        }
        BankPair::Likelihood => {
            let theta = tape.scale(&tape.matmul_nt(u, &tape.constant(bank_codes))?, 0.5)?;
            let nll = tape.sub(
                &tape.softplus(&theta)?,
                &tape.mul(&theta, &tape.constant(s))?,
            )?;
            tape.mean_all(&nll)?
        }
        BankPair::CosinePositive => {
            let eps = COSINE_EPS as f32;
            let unit_bank = tape.constant(be.row_normalize(&bank_codes, eps)?);
            let cos = tape.matmul_nt(&tape.row_normalize(u, eps)?, &unit_bank)?;
            let x = tape.add_scalar(&tape.scale(&cos, -0.5)?, 0.5)?;
            let similar = be.reduce(nhl_kernels::Reduce::All, &s)?;
            let count = be.unary(
                Unary::Clamp {
                    lo: 1.0,
                    hi: f64::INFINITY,
                },
                &similar,
            )?;
            let total = tape.sum_all(&tape.mul(&tape.softplus(&x)?, &tape.constant(s))?)?;
            tape.div(&total, &tape.constant(count))?
        }
    };
    let quant = match loss.quant {
        Quantisation::None => None,
        Quantisation::AbsGap => Some(
            tape.mean_all(&tape.abs(&tape.add_scalar(&tape.scale(&tape.abs(u)?, -1.0)?, 1.0)?)?)?,
        ),
        Quantisation::LogCosh => {
            Some(tape.mean_all(&tape.log_cosh(&tape.add_scalar(&tape.abs(u)?, -1.0)?)?)?)
        }
        Quantisation::SignGap => {
            let sign = tape.constant(be.unary(Unary::Sign, u.value())?);
            Some(tape.mean_all(&tape.square(&tape.sub(u, &sign)?)?)?)
        }
        Quantisation::RowMeanSquare => Some(tape.mean_all(&tape.square(&tape.row_means(u)?)?)?),
        Quantisation::RowMeanAbs => Some(tape.mean_all(&tape.abs(&tape.row_means(u)?)?)?),
    };
    let pair = tape.scale(&pair, loss.pair_weight)?;
    Ok(match quant {
        Some(q) => tape.add(&pair, &tape.scale(&q, loss.alpha)?)?,
        None => pair,
    })
}

/// The memory-bank term ([`LengthLoss::bank_term`]) of every length that has one at this epoch,
/// all at once by [`HashingOps::bank_objectives`] on the first `bits[k]` columns of `codes`; the
/// entry of a length without one is `None`.
pub fn bank_terms<B: HashingOps>(
    be: &B,
    losses: &[LengthLoss<B>],
    bits: &[usize],
    codes: &B::Buf,
    ctx: &BatchContext<'_, B>,
) -> Result<Vec<Option<LossAndGrad<B>>>, TrainError> {
    let terms: Vec<Option<BankLoss>> = losses.iter().map(|l| l.bank_term(ctx.epoch)).collect();
    let mut out: Vec<Option<LossAndGrad<B>>> = losses.iter().map(|_| None).collect();
    let Some(loss) = terms.iter().flatten().next().copied() else {
        return Ok(out);
    };
    // One run's lengths share one loss; only the lengths differ.
    if terms.iter().flatten().any(|t| *t != loss) {
        return Err(KernelError::Shape {
            op: "bank_terms",
            detail: "the lengths' bank losses differ".into(),
        }
        .into());
    }
    let with: Vec<usize> = (0..losses.len()).filter(|&k| terms[k].is_some()).collect();
    let lengths: Vec<usize> = with.iter().map(|&k| bits[k]).collect();
    let bank = ctx.bank.ok_or_else(no_bank)?;
    let results = be.bank_objectives(
        codes,
        &lengths,
        ctx.labels,
        &bank.codes,
        &bank.labels,
        &loss,
    )?;
    for (k, result) in with.into_iter().zip(results) {
        out[k] = Some(result);
    }
    Ok(out)
}

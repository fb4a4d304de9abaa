//! DTSH (docs/METHOD.md 5.9) on the tape, the reference of the fused
//! [`nhl_kernels::HashingOps::dtsh_objective`].
//!
//! The triplets `(a, p, q)` are laid out as an `n x n^2` matrix, row `a`, column `p n + q`:
//! `T = theta (E_1 - E_2)` with the constant expansion matrices `E_1[p, p n + q] = 1` and
//! `E_2[q, p n + q] = 1`, so `T[a, p n + q] = theta_ap - theta_aq`. The weights `W[a, p n + q] =
//! s_ap (1 - s_aq) r_a` keep the (similar, dissimilar) pairs of the qualifying anchors, with
//! `r_a = 1 / (P_a N_a count)`: each anchor's mean, averaged over the qualifying anchors. The
//! `n^3` entries make this form slow; training uses the fused kernel.

use nhl_autograd::{Tape, Tensor};
use nhl_kernels::{Backend, Binary, KernelError, Real, Reduce, Shape, Unary};

use super::{batch_similarity, BatchContext};
use crate::error::TrainError;

/// The expansion matrices `E_1` and `E_2` (`n x n^2`).
fn expansions<B: Backend>(be: &B, n: usize) -> Result<(B::Buf, B::Buf), KernelError> {
    let mut first = vec![B::Elem::zero(); n * n * n];
    let mut second = vec![B::Elem::zero(); n * n * n];
    for p in 0..n {
        for q in 0..n {
            first[p * n * n + p * n + q] = B::Elem::one();
            second[q * n * n + p * n + q] = B::Elem::one();
        }
    }
    let shape = Shape::new(n, n * n);
    Ok((be.upload(&first, shape)?, be.upload(&second, shape)?))
}

/// `W` of the module docs, from the batch similarity `s` (`n x n`).
fn triplet_weights<B: Backend>(
    be: &B,
    s: &B::Buf,
    e1: &B::Buf,
    e2: &B::Buf,
) -> Result<B::Buf, KernelError> {
    let n = be.shape(s).rows;
    let dis = be.unary(Unary::AddScalar(1.0), &be.unary(Unary::Scale(-1.0), s)?)?;
    let similar = be.reduce(Reduce::RowSums, s)?;
    let dissimilar = be.unary(
        Unary::AddScalar(n as f64),
        &be.unary(Unary::Scale(-1.0), &similar)?,
    )?;
    // P_a N_a is a whole number; the anchor qualifies when it is at least 1.
    let pairs = be.binary(Binary::Mul, &similar, &dissimilar)?;
    let qualifies = be.unary(Unary::Clamp { lo: 0.0, hi: 1.0 }, &pairs)?;
    let floor = |x: &B::Buf| {
        be.unary(
            Unary::Clamp {
                lo: 1.0,
                hi: f64::INFINITY,
            },
            x,
        )
    };
    let count = floor(&be.reduce(Reduce::All, &qualifies)?)?;
    let r = be.binary(
        Binary::Div,
        &be.binary(Binary::Div, &qualifies, &floor(&pairs)?)?,
        &count,
    )?;
    let pos = be.matmul(s, false, e1, false, None)?;
    let neg = be.matmul(&dis, false, e2, false, None)?;
    be.binary(Binary::Mul, &be.binary(Binary::Mul, &pos, &neg)?, &r)
}

/// DTSH: the mean over qualifying anchors of the mean over their (similar, dissimilar) pairs of
/// `softplus(-clamp(theta_ap - theta_aq - alpha, -100, 50))`, `theta = u u^T`, plus
/// `lambda mean((u - sign u)^2)`.
pub(super) fn dtsh<B: Backend>(
    tape: &Tape<'_, B>,
    u: &Tensor<B>,
    ctx: &BatchContext<'_, B>,
    alpha: f64,
    lambda: f64,
) -> Result<Tensor<B>, TrainError> {
    let be = tape.backend();
    let n = u.shape().rows;
    let s = batch_similarity(be, ctx.labels)?;
    let (e1, e2) = expansions(be, n)?;
    let w = triplet_weights(be, &s, &e1, &e2)?;
    let spread = tape.constant(be.binary(Binary::Sub, &e1, &e2)?);
    let theta = tape.matmul_nt(u, u)?;
    let t = tape.clamp(
        &tape.add_scalar(&tape.matmul(&theta, false, &spread, false, None)?, -alpha)?,
        -100.0,
        50.0,
    )?;
    let triplets =
        tape.sum_all(&tape.mul(&tape.softplus(&tape.scale(&t, -1.0)?)?, &tape.constant(w))?)?;
    let sign = tape.constant(be.unary(Unary::Sign, u.value())?);
    let quant = tape.mean_all(&tape.square(&tape.sub(u, &sign)?)?)?;
    Ok(tape.add(&triplets, &tape.scale(&quant, lambda)?)?)
}

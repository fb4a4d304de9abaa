//! The losses that compare each item with per-class targets: CSQ and DPN (docs/METHOD.md 5.1,
//! 5.2), and the class-centre terms of SHCIR and MDSH (5.11), on the tape.

use nhl_autograd::{Tape, Tensor};
use nhl_kernels::{Backend, Unary};

use super::BatchContext;
use crate::error::TrainError;

/// The floor of the row norms in the cosines to the class centres (PyTorch's `F.normalize`).
const NORMALIZE_EPS: f32 = 1e-12;

/// CSQ: `mean BCE((v+1)/2, (h+1)/2) + lambda mean((|v| - 1)^2)`, `v = tanh(u)`, `h` the item's
/// row of `targets`.
pub(super) fn csq<B: Backend>(
    tape: &Tape<'_, B>,
    u: &Tensor<B>,
    targets: &B::Buf,
    ctx: &BatchContext<'_, B>,
    lambda: f64,
) -> Result<Tensor<B>, TrainError> {
    let be = tape.backend();
    let h = be.gather_rows(targets, ctx.target_rows)?;
    let t = tape.constant(be.unary(Unary::AddScalar(0.5), &be.unary(Unary::Scale(0.5), &h)?)?);
    let v = tape.tanh(u)?;
    let p = tape.add_scalar(&tape.scale(&v, 0.5)?, 0.5)?;
    let centre = tape.mean_all(&tape.bce(&p, &t)?)?;
    let quant = tape.mean_all(&tape.square(&tape.add_scalar(&tape.abs(&v)?, -1.0)?)?)?;
    Ok(tape.add(&centre, &tape.scale(&quant, lambda)?)?)
}

/// DPN: `mean(max(0, m - u * t))`, `t` the item's row of `targets`.
pub(super) fn dpn<B: Backend>(
    tape: &Tape<'_, B>,
    u: &Tensor<B>,
    targets: &B::Buf,
    ctx: &BatchContext<'_, B>,
    margin: f64,
) -> Result<Tensor<B>, TrainError> {
    let be = tape.backend();
    let t = tape.constant(be.gather_rows(targets, ctx.target_rows)?);
    let hinge = tape.add_scalar(&tape.scale(&tape.mul(u, &t)?, -1.0)?, margin)?;
    Ok(tape.mean_all(&tape.relu(&hinge)?)?)
}

/// The softmax over the classes of `sqrt(b) cos(u_i, z_c)`, `n x C`, and `mean((|u| - 1)^2)`.
///
/// With centres in {-1, 1}, `sqrt(b) z_c / ||z_c|| = z_c`, so the logits are `rownorm(u) Z^T`.
/// A logit is at most `sqrt(b)` in magnitude, so the exponentials need no shift.
fn centre_softmax<B: Backend>(
    tape: &Tape<'_, B>,
    u: &Tensor<B>,
    centres: &B::Buf,
) -> Result<(Tensor<B>, Tensor<B>), TrainError> {
    let unit = tape.row_normalize(u, NORMALIZE_EPS)?;
    let e = tape.exp(&tape.matmul_nt(&unit, &tape.constant(centres.clone()))?)?;
    let p = tape.div(&e, &tape.row_sums(&e)?)?;
    let quant = tape.mean_all(&tape.square(&tape.add_scalar(&tape.abs(u)?, -1.0)?)?)?;
    Ok((p, quant))
}

/// `log(1 - p)` elementwise.
fn log_complement<B: Backend>(tape: &Tape<'_, B>, p: &Tensor<B>) -> Result<Tensor<B>, TrainError> {
    Ok(tape.log(&tape.add_scalar(&tape.scale(p, -1.0)?, 1.0)?)?)
}

/// `y log P + w (1 - y) log(1 - P)` elementwise: the labels' log-likelihood under the class
/// probabilities `P`, the absent classes' terms weighted by `w`.
fn label_log_likelihood<B: Backend>(
    tape: &Tape<'_, B>,
    p: &Tensor<B>,
    y: &B::Buf,
    w: f64,
) -> Result<Tensor<B>, TrainError> {
    let be = tape.backend();
    let absent = be.unary(Unary::AddScalar(1.0), &be.unary(Unary::Scale(-1.0), y)?)?;
    let absent = if w == 1.0 {
        absent
    } else {
        be.unary(Unary::Scale(w), &absent)?
    };
    let own = tape.mul(&tape.log(p)?, &tape.constant(y.clone()))?;
    let rest = tape.mul(&log_complement(tape, p)?, &tape.constant(absent))?;
    Ok(tape.add(&own, &rest)?)
}

/// SHCIR: `-mean_i [log P_{i,y_i} + sum_{c != y_i} log(1 - P_ic) / (C - 1)] + lambda mean((|u| -
/// 1)^2)`, `P` the softmax of [`centre_softmax`]; the labels are one-hot (single-label data, which
/// training checks before it starts).
pub(super) fn shcir<B: Backend>(
    tape: &Tape<'_, B>,
    u: &Tensor<B>,
    centres: &B::Buf,
    ctx: &BatchContext<'_, B>,
    lambda: f64,
) -> Result<Tensor<B>, TrainError> {
    let (p, quant) = centre_softmax(tape, u, centres)?;
    let classes = p.shape().cols as f64;
    let likelihood = label_log_likelihood(tape, &p, ctx.labels, 1.0 / (classes - 1.0))?;
    let per_item = tape.scale(&tape.row_sums(&likelihood)?, -1.0)?;
    Ok(tape.add(&tape.mean_all(&per_item)?, &tape.scale(&quant, lambda)?)?)
}

/// MDSH's class term: `-mean_ic [y log P + (1 - y) log(1 - P)] + lambda mean((|u| - 1)^2)` with
/// the multi-hot labels `y` and the softmax `P` of [`centre_softmax`].
pub(super) fn mdsh<B: Backend>(
    tape: &Tape<'_, B>,
    u: &Tensor<B>,
    centres: &B::Buf,
    ctx: &BatchContext<'_, B>,
    lambda: f64,
) -> Result<Tensor<B>, TrainError> {
    let (p, quant) = centre_softmax(tape, u, centres)?;
    let likelihood = label_log_likelihood(tape, &p, ctx.labels, 1.0)?;
    let bce = tape.scale(&tape.mean_all(&likelihood)?, -1.0)?;
    Ok(tape.add(&bce, &tape.scale(&quant, lambda)?)?)
}

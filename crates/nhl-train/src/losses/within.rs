//! The pairwise losses within the batch, on the tape: HashNet, DCH and LCDSH (docs/METHOD.md
//! 5.7, 5.8 and 5.10). HashNet's form is the reference of the fused
//! [`nhl_kernels::HashingOps::hashnet_objective`]. Each compares every pair of batch items, the diagonal included, with the
//! similarity `s_pq = 1[y_p . y_q > 0]`.

use nhl_autograd::{Tape, Tensor};
use nhl_kernels::{Backend, KernelError, Reduce, Unary};

use super::{batch_similarity, BatchContext};
use crate::error::TrainError;

/// `count` floored at 1, so that an empty group's (zero) sum is divided by 1.
fn at_least_one<B: Backend>(be: &B, count: &B::Buf) -> Result<B::Buf, KernelError> {
    be.unary(
        Unary::Clamp {
            lo: 1.0,
            hi: f64::INFINITY,
        },
        count,
    )
}

/// The class-balanced pair weights `s / max(#sim, 1) + (1 - s) / max(#dis, 1)` times `scale`:
/// each group's terms sum to `scale` times its mean, and a group without pairs adds nothing.
fn balanced_weights<B: Backend>(be: &B, s: &B::Buf, scale: f64) -> Result<B::Buf, KernelError> {
    let dis = be.unary(Unary::AddScalar(1.0), &be.unary(Unary::Scale(-1.0), s)?)?;
    let per_group = |mask: &B::Buf| -> Result<B::Buf, KernelError> {
        let count = at_least_one(be, &be.reduce(Reduce::All, mask)?)?;
        be.binary(
            nhl_kernels::Binary::Div,
            &be.unary(Unary::Scale(scale), mask)?,
            &count,
        )
    };
    be.binary(nhl_kernels::Binary::Add, &per_group(s)?, &per_group(&dis)?)
}

/// HashNet's continuation at `epoch` (counted from 0): `sqrt(floor(epoch / step) + 1)`, the
/// scale of its activation, sharper every `step` epochs.
pub(super) fn hashnet_scale(epoch: usize, step: usize) -> f64 {
    ((epoch / step.max(1) + 1) as f64).sqrt()
}

/// HashNet: with `v = tanh(c u)`, `c = sqrt(floor(epoch / step) + 1)` (the continuation) and
/// `z = alpha v v^T`, the class-balanced mean of `softplus(z) - s z`:
/// `sum_{s=1} l / #sim + sum_{s=0} l / #dis`.
pub(super) fn hashnet<B: Backend>(
    tape: &Tape<'_, B>,
    u: &Tensor<B>,
    ctx: &BatchContext<'_, B>,
    alpha: f64,
    step: usize,
) -> Result<Tensor<B>, TrainError> {
    let be = tape.backend();
    let scale = hashnet_scale(ctx.epoch, step);
    let s = batch_similarity(be, ctx.labels)?;
    let v = tape.tanh(&tape.scale(u, scale)?)?;
    let z = tape.scale(&tape.matmul_nt(&v, &v)?, alpha)?;
    let l = tape.sub(
        &tape.softplus(&z)?,
        &tape.mul(&z, &tape.constant(s.clone()))?,
    )?;
    let w = tape.constant(balanced_weights(be, &s, 1.0)?);
    Ok(tape.sum_all(&tape.mul(&l, &w)?)?)
}

/// The Cauchy distance `delta = (1 - min(cos, 0.99)) b / 2` of the cosine `inner / max(norms,
/// 1e-4)`.
fn cauchy_distance<B: Backend>(
    tape: &Tape<'_, B>,
    inner: &Tensor<B>,
    norms: &Tensor<B>,
    bits: usize,
) -> Result<Tensor<B>, TrainError> {
    let cos = tape.div(inner, &tape.clamp(norms, 1e-4, f64::INFINITY)?)?;
    let capped = tape.clamp(&cos, f64::NEG_INFINITY, 0.99)?;
    Ok(tape.scale(
        &tape.add_scalar(&tape.scale(&capped, -1.0)?, 1.0)?,
        bits as f64 / 2.0,
    )?)
}

/// DCH: `mean_pq w_pq [s log(delta / gamma) + log(1 + gamma / delta)] + lambda mean_p log(1 +
/// delta(|u_p|, 1) / gamma)`, with `w = s n^2 / #sim + (1 - s) n^2 / #dis` (which is 1 when one
/// group is empty).
pub(super) fn dch<B: Backend>(
    tape: &Tape<'_, B>,
    u: &Tensor<B>,
    ctx: &BatchContext<'_, B>,
    gamma: f64,
    lambda: f64,
) -> Result<Tensor<B>, TrainError> {
    let be = tape.backend();
    let (n, bits) = (u.shape().rows, u.shape().cols);
    let s = batch_similarity(be, ctx.labels)?;
    let norms = tape.sqrt(&tape.row_sums(&tape.square(u)?)?)?;
    let delta = cauchy_distance(
        tape,
        &tape.matmul_nt(u, u)?,
        &tape.matmul_nt(&norms, &norms)?,
        bits,
    )?;
    let gammas = tape.constant(be.fill(delta.shape(), gamma as f32)?);
    let log_ratio = tape.log(&tape.scale(&delta, 1.0 / gamma)?)?;
    let cauchy = tape.add(
        &tape.mul(&log_ratio, &tape.constant(s.clone()))?,
        &tape.log(&tape.add_scalar(&tape.div(&gammas, &delta)?, 1.0)?)?,
    )?;
    let w = tape.constant(balanced_weights(be, &s, (n * n) as f64)?);
    let pair = tape.mean_all(&tape.mul(&cauchy, &w)?)?;
    // delta(|u_p|, 1): the cosine of |u_p| and the all-ones vector, whose norm is sqrt(b).
    let abs_sums = tape.row_sums(&tape.abs(u)?)?;
    let to_ones = cauchy_distance(
        tape,
        &abs_sums,
        &tape.scale(&norms, (bits as f64).sqrt())?,
        bits,
    )?;
    let quant =
        tape.mean_all(&tape.log(&tape.add_scalar(&tape.scale(&to_ones, 1.0 / gamma)?, 1.0)?)?)?;
    Ok(tape.add(&pair, &tape.scale(&quant, lambda)?)?)
}

/// LCDSH: with `sigma = 2 s - 1`, `theta = clamp(u u^T / 2, -50, 50)` and the sign codes
/// `beta = sign(u)` as a constant: `mean softplus(-sigma theta) + lambda mean (sigmoid(theta) -
/// sigmoid(beta beta^T / 2))^2`.
pub(super) fn lcdsh<B: Backend>(
    tape: &Tape<'_, B>,
    u: &Tensor<B>,
    ctx: &BatchContext<'_, B>,
    lambda: f64,
) -> Result<Tensor<B>, TrainError> {
    let be = tape.backend();
    let s = batch_similarity(be, ctx.labels)?;
    let minus_sigma = be.unary(Unary::AddScalar(1.0), &be.unary(Unary::Scale(-2.0), &s)?)?;
    let theta = tape.clamp(&tape.scale(&tape.matmul_nt(u, u)?, 0.5)?, -50.0, 50.0)?;
    let likelihood =
        tape.mean_all(&tape.softplus(&tape.mul(&theta, &tape.constant(minus_sigma))?)?)?;
    let sign = be.unary(Unary::Sign, u.value())?;
    let target = be.unary(
        Unary::Sigmoid,
        &be.unary(
            Unary::Scale(0.5),
            &be.matmul(&sign, false, &sign, true, None)?,
        )?,
    )?;
    let gap = tape.sub(&tape.sigmoid(&theta)?, &tape.constant(target))?;
    let agreement = tape.mean_all(&tape.square(&gap)?)?;
    Ok(tape.add(&likelihood, &tape.scale(&agreement, lambda)?)?)
}

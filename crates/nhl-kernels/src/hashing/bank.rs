//! The memory-bank losses of every code length at once ([`super::HashingOps::bank_objectives`]):
//! what they compute, and the operand checks both twins share.
//!
//! Batch `u` (`n x B`), bank codes `U` (`N x W`, `W >= B`), labels `y` (`n x C`) and bank labels
//! `Y` (`N x C`); `s_ij = 1[y_i . Y_j > 0]`. Length `k` reads the first `b_k` columns of both
//! codes, so the inner products of all lengths are running sums over column blocks,
//! `theta_k = theta_{k-1} + u[:, b_{k-1}..b_k] U[:, b_{k-1}..b_k]^T`, and each gradient is a matrix
//! product `G_k U[:, :b_k]` with an `n x N` coefficient matrix `G_k`: no `n x N x b` tensor is
//! ever formed.

use crate::backend::Shape;
use crate::error::KernelError;

/// The floor of the norms in [`BankPair::CosinePositive`] (PyTorch's `F.normalize`).
pub const COSINE_EPS: f64 = 1e-12;

/// The pair term of a memory-bank loss (docs/METHOD.md 5.3-5.6 and 5.11).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BankPair {
    /// DSH: `mean_ij [(s/2) d + ((1 - s)/2) max(m - d, 0)]` with `d_ij = ||u_i - U_j||^2` and
    /// the margin `m = margin * b`.
    Contrastive {
        /// The margin per code bit.
        margin: f64,
    },
    /// DHN, DBDH and DPSH: `mean_ij [softplus(t) - s t]` with `t_ij = u_i . U_j / 2`.
    Likelihood,
    /// MDSH's pair term: `sum_ij s softplus((1 - c_ij) / 2) / max(sum_ij s, 1)` with the cosine
    /// `c_ij = u_i . U_j / (max(||u_i||, eps) max(||U_j||, eps))`, `eps` = [`COSINE_EPS`].
    CosinePositive,
}

/// The per-code term of a memory-bank loss, on the (clamped) batch codes `u` (`n x b`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantisation {
    /// No such term.
    None,
    /// DSH: `mean | 1 - |u| |`.
    AbsGap,
    /// DHN: `mean log cosh(|u| - 1)`.
    LogCosh,
    /// DPSH: `mean (u - sign u)^2`.
    SignGap,
    /// DBDH with `p = 2`: `mean_i (mean_j u_ij)^2`.
    RowMeanSquare,
    /// DBDH with `p = 1`: `mean_i |mean_j u_ij|`.
    RowMeanAbs,
}

/// One memory-bank loss: `J = pair_weight * pair + alpha * quantisation`, on `clamp(u, -1, 1)`
/// when `clamp_unit` (DBDH; a hard clamp passes no gradient outside `[-1, 1]`), else on `u`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BankLoss {
    /// The pair term against the bank.
    pub pair: BankPair,
    /// Its weight.
    pub pair_weight: f64,
    /// The per-code term.
    pub quant: Quantisation,
    /// Its weight.
    pub alpha: f64,
    /// Clamp the batch codes to `[-1, 1]` first.
    pub clamp_unit: bool,
}

impl BankPair {
    /// The small integer the GPU kernels dispatch on.
    pub(super) fn code(self) -> u32 {
        match self {
            BankPair::Contrastive { .. } => 0,
            BankPair::Likelihood => 1,
            BankPair::CosinePositive => 2,
        }
    }
}

impl Quantisation {
    /// The small integer the GPU kernels dispatch on.
    pub(super) fn code(self) -> u32 {
        match self {
            Quantisation::None => 0,
            Quantisation::AbsGap => 1,
            Quantisation::LogCosh => 2,
            Quantisation::SignGap => 3,
            Quantisation::RowMeanSquare => 4,
            Quantisation::RowMeanAbs => 5,
        }
    }
}

/// Checks the operands of [`super::HashingOps::bank_objectives`]: a non-empty batch, lengths
/// strictly increasing within the batch's width, labels `n x C`, a bank at least as wide as the
/// longest length with one label row (`C` wide) per code row.
pub(super) fn bank_dims(
    u: Shape,
    bits: &[usize],
    labels: Shape,
    bank: Shape,
    bank_labels: Shape,
) -> Result<(), KernelError> {
    let longest = bits.last().copied().unwrap_or(0);
    let detail = if u.rows == 0 || bits.is_empty() || bits[0] == 0 || longest > u.cols {
        format!(
            "lengths {bits:?} of a {u} batch (expected 1 <= b <= {})",
            u.cols
        )
    } else if bits.windows(2).any(|w| w[0] >= w[1]) {
        format!("lengths {bits:?} (expected strictly increasing)")
    } else if labels.rows != u.rows {
        format!("labels {labels} for a batch of {} rows", u.rows)
    } else if bank.cols < longest || bank.rows == 0 {
        format!(
            "a bank {bank} for {longest}-bit codes (expected N >= 1 rows, >= {longest} columns)"
        )
    } else if bank_labels != Shape::new(bank.rows, labels.cols) {
        format!(
            "bank labels {bank_labels} (expected [{}, {}])",
            bank.rows, labels.cols
        )
    } else {
        return Ok(());
    };
    Err(KernelError::Shape {
        op: "bank_objectives",
        detail,
    })
}

/// Checks the operands of a within-batch objective (`op`: [`super::HashingOps::dtsh_objective`]
/// or [`super::HashingOps::hashnet_objective`]): a non-empty batch, `1 <= bits <= u.cols` and one
/// label row per batch row.
pub(super) fn batch_dims(
    op: &'static str,
    u: Shape,
    bits: usize,
    labels: Shape,
) -> Result<(), KernelError> {
    if u.rows == 0 || bits == 0 || bits > u.cols || labels.rows != u.rows {
        return Err(KernelError::Shape {
            op,
            detail: format!(
                "{bits} bits of a {u} batch with labels {labels} (expected a non-empty batch, \
                 1 <= bits <= {}, one label row per item)",
                u.cols
            ),
        });
    }
    Ok(())
}

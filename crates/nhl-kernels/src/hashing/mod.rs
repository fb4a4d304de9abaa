//! The fused ops of nested-hash training, as an extension of the general tensor core:
//! [`HashingOps`] adds to a [`Backend`] the per-length objectives (CSQ, SP distillation, the
//! memory-bank losses of all lengths at once, DTSH's triplets, HashNet's batch likelihood), the
//! gradient products of the dominance weights, the weights themselves and the weighted gradient
//! combine. The CPU twin of every op is in `cpu.rs`, the GPU twin in `gpu.rs`, and the shape
//! checks both twins share are here, so that both refuse the same operands with the same error.
//!
//! The dominance-weight rule is not defined here. It belongs to training, which writes it once,
//! in `nhl_train::weighting`; [`HashingOps::dominance_weights`] takes it as a function argument
//! ([`WeightRule`]). A backend whose buffers live in host memory evaluates that function on the
//! products. A device backend instead runs its own kernel, the device twin of the rule
//! (`dominance_weights` in `shaders/loss.wgsl`), so that a training step reads nothing back;
//! the twin's parity test compares it with the rule on seeded random products.

mod bank;
pub(crate) mod bank_cpu;
pub(crate) mod bank_pairs;
mod cpu;
pub(crate) mod csq_row;
mod gpu;
mod hashnet_cpu;
mod label_masks;
pub(crate) mod pairs_gpu;
mod sp_cpu;
pub(crate) mod triplet_cpu;

pub use bank::{BankLoss, BankPair, Quantisation, COSINE_EPS};

use crate::backend::{Backend, Shape};
use crate::error::KernelError;

/// The host form of a dominance-weight rule: from the `K(K+1)/2` gradient products `p_ij`,
/// `i <= j`, in row-major order of the upper triangle, the number of lengths `K` and the
/// threshold `beta`, the `K` weights.
pub type WeightRule = fn(&[f64], usize, f64) -> Vec<f64>;

/// A `1 x 1` objective and its gradient with respect to the codes it was computed from.
pub type ObjectiveAndGrad<Buf> = (Buf, Buf);

/// The hashing-specific fused ops, on any [`Backend`] that implements them.
///
/// Every op reads its inputs in place and returns new buffers, except
/// [`HashingOps::add_prefix_weighted`], which updates its `&mut` output in place under the rule
/// of every in-place op (see [`Backend`]): the handle must be the only one to its buffer.
pub trait HashingOps: Backend {
    /// The fused CSQ objective of one code length and its gradient, in one pass.
    ///
    /// `U` is the first `bits` columns of `u` (`n x B`, read in place), `h_i = targets[idx[i]]`
    /// the item's hash centre (`targets` is `N x bits`, entries in `{-1, 1}`), `v = tanh(U)`,
    /// `p = (v + 1) / 2`, `t = (h + 1) / 2` and `m = n * bits`. Returns the `1 x 1` objective
    /// `J = (1/m) sum BCE(p, t) + lambda (1/m) sum (|v| - 1)^2` (each BCE log clamped at -100, as
    /// [`crate::Binary::Bce`]) and the `n x bits` gradient
    /// `dJ/dU = (1/m) (dBCE/dp / 2 + 2 lambda (|v| - 1) sign(v)) (1 - v^2)`.
    fn csq_objective(
        &self,
        u: &Self::Buf,
        bits: usize,
        targets: &Self::Buf,
        idx: &Self::Idx,
        lambda: f64,
    ) -> Result<(Self::Buf, Self::Buf), KernelError>;

    /// The fused similarity-preserving distillation of a short code prefix by a longer one, and
    /// the student's gradient (the teacher is detached).
    ///
    /// With `S` the first `student_bits` and `T` the first `teacher_bits` columns of `u`
    /// (`n x B`, read in place), `A = S S^T`, `G_t = T T^T`, `Y = rownorm(A)` and
    /// `Y_t = rownorm(G_t)` (each row divided by `max(||row||, eps)`): returns the `1 x 1`
    /// `SP = (1/n^2) sum_pq (Y_t - Y)_pq^2` and the `n x student_bits` gradient
    /// `dSP/dS = (dA + dA^T) S`, where `dY = -2 (Y_t - Y) / n^2` and `dA` is the backward of the
    /// row normalisation ([`Backend::row_normalize_bwd`]).
    fn sp_distill(
        &self,
        u: &Self::Buf,
        student_bits: usize,
        teacher_bits: usize,
        eps: f32,
    ) -> Result<(Self::Buf, Self::Buf), KernelError>;

    /// The memory-bank loss `loss` of every length `bits[k]` at once, with each length's gradient.
    ///
    /// `u` is the batch (`n x B`, read in place), `labels` its multi-hot labels (`n x C`),
    /// `bank` the bank's codes (`N x W`, `W >= bits[K-1]`) and `bank_labels` its labels
    /// (`N x C`), already holding this batch. Length `k` compares the first `b_k` columns of `u`
    /// (clamped to `[-1, 1]` when `loss.clamp_unit`) with the first `b_k` columns of every bank
    /// row, with `s_ij = 1[y_i . Y_j > 0]` ([`BankPair`] defines the pair terms). Returns, per
    /// length, the `1 x 1` objective `J_k = loss.pair_weight * pair + loss.alpha * quantisation`
    /// and its gradient `dJ_k/dU_k` (`n x b_k`). Nothing `n x N x b` is ever formed: the inner
    /// products of all lengths are running sums over column blocks and each gradient is a matrix
    /// product with the bank (see `bank.rs`).
    fn bank_objectives(
        &self,
        u: &Self::Buf,
        bits: &[usize],
        labels: &Self::Buf,
        bank: &Self::Buf,
        bank_labels: &Self::Buf,
        loss: &BankLoss,
    ) -> Result<Vec<ObjectiveAndGrad<Self::Buf>>, KernelError>;

    /// DTSH's triplet objective of one length and its gradient (docs/METHOD.md 5.9).
    ///
    /// `U` is the first `bits` columns of `u` (`n x B`, read in place), `labels` the batch's
    /// multi-hot labels, `theta = U U^T` and `s_pq = 1[y_p . y_q > 0]`. An anchor `a` qualifies
    /// with at least one similar and one dissimilar item (itself counts as similar); for each,
    /// the mean over its similar `p` and dissimilar `q` of `softplus(-t)`,
    /// `t = clamp(theta_ap - theta_aq - alpha, -100, 50)` (the clamp passes no gradient outside).
    /// Returns the `1 x 1` `J = mean over qualifying anchors (0 without any) + lambda mean((U -
    /// sign U)^2)` and `dJ/dU` (`n x bits`).
    fn dtsh_objective(
        &self,
        u: &Self::Buf,
        bits: usize,
        labels: &Self::Buf,
        alpha: f64,
        lambda: f64,
    ) -> Result<(Self::Buf, Self::Buf), KernelError>;

    /// HashNet's objective of one length and its gradient (docs/METHOD.md 5.7).
    ///
    /// `U` is the first `bits` columns of `u` (`n x B`, read in place), `labels` the batch's
    /// multi-hot labels, `v = tanh(scale U)` (`scale` is the continuation's), `z = alpha v v^T`
    /// (`n x n`, diagonal included) and `s_pq = 1[y_p . y_q > 0]`. Returns the `1 x 1`
    /// class-balanced likelihood `J = sum_{s=1} l / max(#sim, 1) + sum_{s=0} l / max(#dis, 1)`,
    /// `l = softplus(z) - s z`, and `dJ/dU = alpha ((dZ + dZ^T) v) scale (1 - v^2)` (`n x bits`),
    /// where `dZ_pq = w_pq (sigmoid(z_pq) - s_pq)` and `w_pq` is the pair's group weight.
    fn hashnet_objective(
        &self,
        u: &Self::Buf,
        bits: usize,
        labels: &Self::Buf,
        alpha: f64,
        scale: f64,
    ) -> Result<(Self::Buf, Self::Buf), KernelError>;

    /// Every pairwise prefix dot product of stacked per-length blocks (the gradient products of
    /// the dominance weights).
    ///
    /// `d` and `f` are `n x S` with block `k` in columns `o_k .. o_k + b_k`, where
    /// `o_k = b_0 + ... + b_(k-1)`, `S = sum_k b_k` and `bits = [b_0, ...]` is non-decreasing.
    /// Returns `1 x K(K+1)/2`: slot by slot over the pairs `i <= j` in row-major order of the
    /// upper triangle, `sum_{p < n, c < b_i} d[p, o_i + c] f[p, o_j + c]`. With `d` the stacked
    /// per-length output gradients `D_k` and `f = (X X^T) d` these are the `p_ij` and `N_i` of
    /// the dominance weights.
    fn prefix_pair_dots(
        &self,
        d: &Self::Buf,
        f: &Self::Buf,
        bits: &[usize],
    ) -> Result<Self::Buf, KernelError>;

    /// The dominance weights of `k` lengths (docs/METHOD.md 2.2 steps 3-6) from the
    /// `1 x K(K+1)/2` products of [`HashingOps::prefix_pair_dots`], as a `1 x K` buffer on the
    /// backend.
    ///
    /// `rule` is the host form of the rule that training defines (see the module docs): the CPU
    /// backend returns `rule(products, k, beta)`; the GPU backend runs the rule's device twin on
    /// the device and never calls `rule`, so that nothing is read back.
    fn dominance_weights(
        &self,
        products: &Self::Buf,
        k: usize,
        beta: f32,
        rule: WeightRule,
    ) -> Result<Self::Buf, KernelError>;

    /// `out[:, start .. start + x.cols] += weights[index] * x` with the scale read from a `1 x K`
    /// buffer on the backend ([`HashingOps::dominance_weights`]), so that the gradient combine
    /// needs no read-back. `out` is updated in place and must be the only handle to its buffer
    /// ([`KernelError::SharedBuffer`] otherwise).
    fn add_prefix_weighted(
        &self,
        out: &mut Self::Buf,
        start: usize,
        x: &Self::Buf,
        weights: &Self::Buf,
        index: usize,
    ) -> Result<(), KernelError>;
}

/// Checks the operands of [`HashingOps::csq_objective`]: a non-empty batch,
/// `1 <= bits <= u.cols`, a target table `N x bits` and one index per row of `u` (index ranges
/// are the backend's).
fn csq_dims(u: Shape, bits: usize, targets: Shape, n_idx: usize) -> Result<(), KernelError> {
    let detail = if u.rows == 0 {
        format!("an empty batch {u}")
    } else if bits == 0 || bits > u.cols {
        format!("{bits} bits of a {u} output (expected 1..={})", u.cols)
    } else if targets.cols != bits {
        format!("targets {targets} for {bits} bits")
    } else if n_idx != u.rows {
        format!("{n_idx} indices for a batch of {} rows", u.rows)
    } else {
        return Ok(());
    };
    Err(KernelError::Shape {
        op: "csq_objective",
        detail,
    })
}

/// Checks the operands of [`HashingOps::sp_distill`]: a non-empty batch and
/// `1 <= student_bits <= teacher_bits <= u.cols`.
fn sp_dims(u: Shape, student: usize, teacher: usize) -> Result<(), KernelError> {
    if u.rows == 0 || student == 0 || student > teacher || teacher > u.cols {
        return Err(KernelError::Shape {
            op: "sp_distill",
            detail: format!(
                "student {student} and teacher {teacher} bits of a {u} output (expected a \
                 non-empty batch and 1 <= student <= teacher <= {})",
                u.cols
            ),
        });
    }
    Ok(())
}

/// Checks the operands of [`HashingOps::prefix_pair_dots`]: equal shapes, at least one length,
/// lengths non-decreasing and summing to the column count.
fn pair_dots_dims(d: Shape, f: Shape, bits: &[usize]) -> Result<(), KernelError> {
    let total: usize = bits.iter().sum();
    if d != f || bits.is_empty() || total != d.cols || bits.windows(2).any(|w| w[0] > w[1]) {
        return Err(KernelError::Shape {
            op: "prefix_pair_dots",
            detail: format!(
                "blocks {bits:?} (expected non-decreasing, summing to the columns) of d {d} and \
                 f {f} (expected equal shapes)"
            ),
        });
    }
    Ok(())
}

/// Checks the operands of [`HashingOps::dominance_weights`]: at least one length and
/// `K(K+1)/2` products in one row.
fn weights_dims(products: Shape, k: usize) -> Result<(), KernelError> {
    if k == 0 || products.rows != 1 || products.cols != k * (k + 1) / 2 {
        return Err(KernelError::Shape {
            op: "dominance_weights",
            detail: format!(
                "products {products} for {k} lengths (expected 1 x {}, K >= 1)",
                k * (k + 1) / 2
            ),
        });
    }
    Ok(())
}

/// Checks the operands of [`HashingOps::add_prefix_weighted`] besides the prefix add's own: a
/// `1 x K` weight row and `index < K`.
fn weight_index_dims(weights: Shape, index: usize) -> Result<(), KernelError> {
    if weights.rows != 1 || index >= weights.cols {
        return Err(KernelError::Shape {
            op: "add_prefix_weighted",
            detail: format!("weight {index} of {weights} (expected a 1 x K row, index < K)"),
        });
    }
    Ok(())
}

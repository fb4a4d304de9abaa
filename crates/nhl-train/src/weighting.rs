//! The dominance weights of the per-length objectives (docs/METHOD.md section 2): the rule,
//! written once here, and the gradient products it reads, computed exactly from batch Gram
//! matrices.
//!
//! The rule is the host function [`dominance_weights`]. A training step does not call it itself:
//! [`GradientProducts::weights`] hands it to the backend's [`HashingOps::dominance_weights`],
//! where the CPU backend evaluates it on the products and the GPU backend runs its device twin
//! (the `dominance_weights` kernel of `shaders/loss.wgsl`), so that the weights stay on the
//! device and a step reads nothing back. The twin is checked against this rule on seeded random products,
//! conflicts included, by the `weighting` test of this crate; the kernels only evaluate the rule,
//! they never define it.

use nhl_kernels::{Backend, HashingOps, Shape};

use crate::error::TrainError;

/// The dominance-aware weights of `k` lengths (docs/METHOD.md 2.2 steps 3-6) from the gradient
/// products `p_ij`, `i <= j`, in row-major order of the upper triangle (`N_i = p_ii`).
///
/// For each shorter length `i`: `tau_i = beta N_i / (K - 1)`; for each longer `j`,
/// `a_ij = tau_i / (-p_ij)` when `p_ij < 0` and `-p_ij > tau_i`, else 1; then
/// `a_ij <- min(a_ij, a_{i,i+1})` for `j >= i + 2` (the cap is the adjacent pair's value, not a
/// running minimum, as the reference does). `omega_1 = 1`, `omega_k = prod_{i<k} a_ik`, and
/// `w_k = K omega_k / sum_l omega_l` (so the weights sum to `K`). Its signature is that of
/// [`nhl_kernels::hashing::WeightRule`].
///
/// # Panics
/// When `products` does not hold `k (k + 1) / 2` values (a caller bug; the backend op checks the
/// shape before it calls the rule).
pub fn dominance_weights(products: &[f64], k: usize, beta: f64) -> Vec<f64> {
    assert_eq!(
        products.len(),
        k * (k + 1) / 2,
        "one product per pair i <= j"
    );
    // Slot of (i, j), i <= j, in the row-major upper triangle.
    let at = |i: usize, j: usize| products[i * (2 * k - i + 1) / 2 + (j - i)];
    if k < 2 {
        return vec![1.0; k];
    }
    let mut a = vec![vec![1.0; k]; k];
    for (i, row) in a.iter_mut().enumerate().take(k - 1) {
        let tau = beta * at(i, i) / (k - 1) as f64;
        for (j, aij) in row.iter_mut().enumerate().skip(i + 1) {
            let p = at(i, j);
            if p < 0.0 && -p > tau {
                *aij = tau / -p;
            }
        }
        let adjacent = row[i + 1];
        for aij in row.iter_mut().skip(i + 2) {
            *aij = aij.min(adjacent);
        }
    }
    let omega: Vec<f64> = (0..k).map(|j| (0..j).map(|i| a[i][j]).product()).collect();
    let total: f64 = omega.iter().sum();
    omega.iter().map(|o| k as f64 * o / total).collect()
}

/// Inner products of the per-length weight gradients on shared rows, kept on the backend.
///
/// With `D_k = dJ_k/dU_k` (`n x b_k`) and hash-layer input `X`, the weight gradient of length `k`
/// is `g_k = D_k^T X`. For `i < j`, on the `b_i` rows both touch:
/// `p_ij = <g_i, g_j[:b_i]> = sum_pq (D_i D_j[:, :b_i]^T)_pq (X X^T)_pq`, and `N_i = ||g_i||^2`
/// is the same with `j = i`. With `F_j = G D_j` (`G = X X^T`) this is
/// `p_ij = sum_{p, c < b_i} D_i[p, c] F_j[p, c]`: one `n x n x sum_k b_k` product of the stacked
/// `D_k` and one prefix dot per pair; no gradient of `W` is ever formed.
pub struct GradientProducts<B: Backend> {
    /// `1 x K(K+1)/2`: the `p_ij`, `i <= j`, in row-major order of the upper triangle.
    packed: B::Buf,
    /// The number of lengths `K`.
    k: usize,
}

impl<B: HashingOps> GradientProducts<B> {
    /// Every `p_ij` and `N_i` of the output gradients `d` (one per length, in length order) and
    /// the batch Gram matrix `gram` of the hash layer's input: the `D_k` stacked side by side
    /// into `D`, `F = G D` in one product, then every prefix dot
    /// ([`HashingOps::prefix_pair_dots`]).
    pub fn new(backend: &B, gram: &B::Buf, d: &[B::Buf]) -> Result<Self, TrainError> {
        let bits: Vec<usize> = d.iter().map(|dk| backend.shape(dk).cols).collect();
        let n = backend.shape(gram).rows;
        let mut stacked = backend.zeros(Shape::new(n, bits.iter().sum()))?;
        let mut offset = 0;
        for (dk, b) in d.iter().zip(&bits) {
            backend.add_prefix_scaled(&mut stacked, offset, dk, 1.0)?;
            offset += b;
        }
        let f = backend.matmul(gram, false, &stacked, false, None)?;
        Ok(Self {
            packed: backend.prefix_pair_dots(&stacked, &f, &bits)?,
            k: d.len(),
        })
    }

    /// The `1 x K` dominance weights of these products under [`dominance_weights`] with
    /// threshold `beta`, left on the backend.
    pub fn weights(&self, backend: &B, beta: f32) -> Result<B::Buf, TrainError> {
        Ok(backend.dominance_weights(&self.packed, self.k, beta, dominance_weights)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhl_kernels::cpu::CpuBackend;
    use nhl_kernels::testing::{assert_close, random_vec};

    /// The reference's literal loop (docs/METHOD.md 2.2), on explicit flattened gradients of `W`.
    fn literal_weights(g: &[Vec<f64>], rows: &[usize], d: usize, beta: f64) -> Vec<f64> {
        let k = g.len();
        let dot = |a: &[f64], b: &[f64], len: usize| {
            a[..len]
                .iter()
                .zip(&b[..len])
                .map(|(x, y)| x * y)
                .sum::<f64>()
        };
        let mut a = vec![vec![1.0; k]; k];
        for i in 0..k - 1 {
            let len = rows[i] * d;
            let n_i = dot(&g[i], &g[i], len);
            let tau = beta * n_i / (k - 1) as f64;
            for j in i + 1..k {
                let p = dot(&g[i], &g[j], len);
                if p < 0.0 && -p > tau {
                    a[i][j] = tau / -p;
                }
            }
            for j in i + 2..k {
                if a[i][j] > a[i][i + 1] {
                    a[i][j] = a[i][i + 1];
                }
            }
        }
        let mut omega = vec![1.0; k];
        for (j, o) in omega.iter_mut().enumerate().skip(1) {
            for row in a.iter().take(j) {
                *o *= row[j];
            }
        }
        let s: f64 = omega.iter().sum();
        omega.iter().map(|o| o * k as f64 / s).collect()
    }

    #[test]
    fn gram_identity_weights_equal_explicit_gradient_weights() {
        let cpu = CpuBackend::<f64>::new();
        let bits = [2usize, 4, 8, 16];
        let (n, d) = (7, 11);
        let mut saw_conflict = false;
        for seed in 0..40u64 {
            let x = random_vec(1000 + seed, n * d, -1.0, 1.0);
            let ds: Vec<Vec<f64>> = bits
                .iter()
                .enumerate()
                .map(|(k, &b)| random_vec(seed * 31 + k as u64, n * b, -1.0, 1.0))
                .collect();
            // Explicit g_k = D_k^T X, flattened row-major over the full B x d weight.
            let g: Vec<Vec<f64>> = ds
                .iter()
                .zip(bits)
                .map(|(dk, b)| {
                    let mut gk = vec![0.0; 16 * d];
                    for r in 0..b {
                        for c in 0..d {
                            gk[r * d + c] = (0..n).map(|p| dk[p * b + r] * x[p * d + c]).sum();
                        }
                    }
                    gk
                })
                .collect();
            let want = literal_weights(&g, &bits, d, 1.0);
            let xb = cpu.upload(&x, Shape::new(n, d)).unwrap();
            let gram = cpu.gram(&xb).unwrap();
            let dbufs: Vec<_> = ds
                .iter()
                .zip(bits)
                .map(|(dk, b)| cpu.upload(dk, Shape::new(n, b)).unwrap())
                .collect();
            let products = GradientProducts::new(&cpu, &gram, &dbufs).unwrap();
            let got = cpu.download(&products.weights(&cpu, 1.0).unwrap()).unwrap();
            assert_close(&format!("weights seed {seed}"), &got, &want, 1e-12, 1e-10);
            saw_conflict |= got.iter().any(|w| (w - 1.0).abs() > 1e-6);
        }
        assert!(
            saw_conflict,
            "random gradients must exercise the down-weighting"
        );
    }

    #[test]
    fn weights_without_conflict_are_all_one() {
        // p_00, p_01, p_02, p_11, p_12, p_22.
        assert_eq!(
            dominance_weights(&[4.0, 1.0, 2.0, 3.0, 0.5, 9.0], 3, 1.0),
            vec![1.0, 1.0, 1.0]
        );
        // A strong conflict of the shortest with the middle length halves... then renormalises:
        // tau_0 = 1, a_01 = 1/2, a_02 = min(1, 1/2) = 1/2; omega = [1, 1/2, 1/2], sum 2.
        assert_close(
            "weights",
            &dominance_weights(&[2.0, -2.0, 0.0, 1.0, 0.0, 1.0], 3, 1.0),
            &[1.5, 0.75, 0.75],
            1e-15,
            0.0,
        );
    }
}

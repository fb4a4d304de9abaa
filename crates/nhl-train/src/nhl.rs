//! The two parts of NHL that sit above the base loss: the dominance-aware weights of the
//! per-length objectives (NHL-SPEC section 2), computed exactly from batch Gram matrices, and the
//! long-to-short cascade self-distillation (section 3).

use nhl_autograd::{AutogradError, Tape, Tensor};
use nhl_kernels::{Backend, Binary, KernelError, Reduce, Shape};

/// Inner products of the per-length weight gradients on shared rows.
///
/// With `D_k = dJ_k/dU_k` (`n x b_k`) and hash-layer input `X`, the weight gradient of length `k`
/// is `g_k = D_k^T X`. For `i < j`, on the `b_i` rows both touch:
/// `p_ij = <g_i, g_j[:b_i]> = sum_pq (D_i D_j[:, :b_i]^T)_pq (X X^T)_pq`, and `N_i = ||g_i||^2`
/// is the same with `j = i`. With `F_j = G D_j` (`G = X X^T`) this is
/// `p_ij = sum_{p, c < b_i} D_i[p, c] F_j[p, c]`: one `n x n x b_j` product per length and a
/// dot per pair, no gradient of `W` is ever formed.
#[derive(Clone, Debug, PartialEq)]
pub struct GradientProducts {
    /// `p[i][j]` for `i < j`; `p[i][i] = N_i`. Entries with `i > j` are unused (zero).
    pub p: Vec<Vec<f64>>,
}

impl GradientProducts {
    /// Computes every `p_ij` and `N_i` on the backend with one host read-back.
    pub fn from_gram<B: Backend>(
        backend: &B,
        gram: &B::Buf,
        d: &[B::Buf],
    ) -> Result<Self, KernelError> {
        let k = d.len();
        let f: Vec<B::Buf> = d
            .iter()
            .map(|dk| backend.matmul(gram, false, dk, false, None))
            .collect::<Result<_, _>>()?;
        // Pack the K(K+1)/2 dots into one row so that the GPU synchronises once per step.
        let pairs: Vec<(usize, usize)> = (0..k).flat_map(|i| (i..k).map(move |j| (i, j))).collect();
        let mut packed = backend.zeros(Shape::new(1, pairs.len()))?;
        for (slot, &(i, j)) in pairs.iter().enumerate() {
            let bi = backend.shape(&d[i]).cols;
            let fj = if backend.shape(&f[j]).cols == bi {
                f[j].clone()
            } else {
                backend.slice_cols(&f[j], 0, bi)?
            };
            let dot = backend.reduce(Reduce::All, &backend.binary(Binary::Mul, &d[i], &fj)?)?;
            backend.add_prefix_scaled(&mut packed, slot, &dot, 1.0)?;
        }
        let values = backend.download(&packed)?;
        let mut p = vec![vec![0.0; k]; k];
        for (&(i, j), v) in pairs.iter().zip(values) {
            p[i][j] = nhl_kernels::Real::to_f64(v);
        }
        Ok(Self { p })
    }
}

/// The dominance-aware weights `w_k` (NHL-SPEC 2.2 steps 3-6), summing to `K`.
///
/// For each shorter length `i`: `tau_i = beta N_i / (K - 1)`; for each longer `j`,
/// `a_ij = tau_i / (-p_ij)` when `p_ij < 0` and `-p_ij > tau_i`, else 1; then
/// `a_ij <- min(a_ij, a_{i,i+1})` for `j >= i + 2` (the cap is the adjacent pair's value, not a
/// running minimum, as the reference does). `omega_1 = 1`, `omega_k = prod_{i<k} a_ik`, and
/// `w_k = K omega_k / sum_l omega_l`.
pub fn dominance_weights(products: &GradientProducts, beta: f64) -> Vec<f64> {
    let p = &products.p;
    let k = p.len();
    if k < 2 {
        return vec![1.0; k];
    }
    let mut a = vec![vec![1.0; k]; k];
    for i in 0..k - 1 {
        let tau = beta * p[i][i] / (k - 1) as f64;
        for j in i + 1..k {
            let conflict = -p[i][j];
            if p[i][j] < 0.0 && conflict > tau {
                a[i][j] = tau / conflict;
            }
        }
        for j in i + 2..k {
            a[i][j] = a[i][j].min(a[i][i + 1]);
        }
    }
    let omega: Vec<f64> = (0..k).map(|j| (0..j).map(|i| a[i][j]).product()).collect();
    let total: f64 = omega.iter().sum();
    omega.iter().map(|o| k as f64 * o / total).collect()
}

/// Similarity-preserving distillation `SP(S, T) = sum_pq (G^_t - G^_s)_pq^2 / n^2`, with
/// `G = U U^T` row-normalised by `max(||row||, 1e-12)`; the teacher `T` is detached.
pub fn sp_distill<B: Backend>(
    tape: &Tape<'_, B>,
    student: &Tensor<B>,
    teacher: &Tensor<B>,
) -> Result<Tensor<B>, AutogradError> {
    let n = student.shape().rows as f64;
    let teacher = teacher.detach();
    let gs = tape.row_normalize(&tape.matmul_nt(student, student)?, 1e-12)?;
    let gt = tape.row_normalize(&tape.matmul_nt(&teacher, &teacher)?, 1e-12)?;
    let diff = tape.sub(&gt, &gs)?;
    tape.scale(&tape.sum_all(&tape.square(&diff)?)?, 1.0 / (n * n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhl_kernels::cpu::CpuBackend;
    use nhl_kernels::testing::{assert_close, random_vec};

    /// The reference's literal loop (NHL-SPEC 2.2), on explicit flattened gradients of `W`.
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
            let products = GradientProducts::from_gram(&cpu, &gram, &dbufs).unwrap();
            let got = dominance_weights(&products, 1.0);
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
        let p = GradientProducts {
            p: vec![
                vec![4.0, 1.0, 2.0],
                vec![0.0, 3.0, 0.5],
                vec![0.0, 0.0, 9.0],
            ],
        };
        assert_eq!(dominance_weights(&p, 1.0), vec![1.0, 1.0, 1.0]);
        // A strong conflict of the shortest with the middle length halves... then renormalises.
        let p = GradientProducts {
            p: vec![
                vec![2.0, -2.0, 0.0],
                vec![0.0, 1.0, 0.0],
                vec![0.0, 0.0, 1.0],
            ],
        };
        // tau_0 = 1, a_01 = 1/2, a_02 = min(1, 1/2) = 1/2; omega = [1, 1/2, 1/2], sum 2.
        assert_close(
            "weights",
            &dominance_weights(&p, 1.0),
            &[1.5, 0.75, 0.75],
            1e-15,
            0.0,
        );
    }

    #[test]
    fn sp_distill_matches_its_definition_and_ignores_the_teacher_gradient() {
        let cpu = CpuBackend::<f64>::new();
        let tape = Tape::new(&cpu);
        let (n, bs, bt) = (5, 3, 6);
        let s = random_vec(1, n * bs, -1.0, 1.0);
        let t = random_vec(2, n * bt, -1.0, 1.0);
        let st = tape.leaf(cpu.upload(&s, Shape::new(n, bs)).unwrap());
        let tt = tape.leaf(cpu.upload(&t, Shape::new(n, bt)).unwrap());
        let loss = sp_distill(&tape, &st, &tt).unwrap();
        let norm_gram = |u: &[f64], b: usize| -> Vec<f64> {
            let mut g = vec![0.0; n * n];
            for p in 0..n {
                for q in 0..n {
                    g[p * n + q] = (0..b).map(|c| u[p * b + c] * u[q * b + c]).sum();
                }
                let norm = g[p * n..(p + 1) * n]
                    .iter()
                    .map(|v| v * v)
                    .sum::<f64>()
                    .sqrt()
                    .max(1e-12);
                for q in 0..n {
                    g[p * n + q] /= norm;
                }
            }
            g
        };
        let (gs, gt) = (norm_gram(&s, bs), norm_gram(&t, bt));
        let want: f64 = gs
            .iter()
            .zip(&gt)
            .map(|(a, b)| (b - a).powi(2))
            .sum::<f64>()
            / (n * n) as f64;
        assert_close("sp", &tape.to_vec(&loss).unwrap(), &[want], 1e-14, 1e-12);
        let grads = tape.backward(&loss).unwrap();
        assert!(grads.get(&tt).is_none(), "the teacher is detached");
        assert!(grads.get(&st).is_some());
    }
}

//! The two parts of NHL that sit above the base loss: the dominance-aware weights of the
//! per-length objectives (NHL-SPEC section 2), computed exactly from batch Gram matrices, and the
//! long-to-short cascade self-distillation (section 3).

use nhl_autograd::{AutogradError, Tape, Tensor};
use nhl_kernels::{Backend, KernelError, Shape};
use rayon::prelude::*;

use crate::losses::{BatchContext, LengthLoss};

/// The floor of the row norms in the distillation's Gram normalisation.
const SP_EPS: f32 = 1e-12;

/// Every length's objective `J_k` and output gradient `D_k = dJ_k / dU_k` for one batch.
pub struct LengthGradients<B: Backend> {
    /// `1 x K`: `J_k = L_k (+ lambda_D SP(U_k, sg(U_{k+1})))` in slot `k`.
    pub objectives: B::Buf,
    /// `D_k` (`n x b_k`), in length order.
    pub d: Vec<B::Buf>,
}

/// How [`length_gradients`] computes each `J_k` and `D_k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectivePath {
    /// Fused kernels: [`Backend::csq_objective`] for CSQ (the other losses on a small tape of
    /// their own) and [`Backend::sp_distill`], each reading its prefix of `U` in place.
    Fused,
    /// Every objective written with tape ops on per-length leaves, then one reverse walk: the
    /// reference the fused path is tested against.
    Tape,
}

/// `J_k` and `D_k` of every length `bits[k]` from the shared output `codes` (`n x B`).
///
/// `J_k` depends only on `U_k` (the first `b_k` columns) and on a detached `U_{k+1}`, so `D_k` is
/// exact without `K` backward passes (NHL-SPEC 2.4). With `distill_weight = Some(lambda_D)`,
/// `J_k` adds `lambda_D SP(U_k, sg(U_{k+1}))` for every `k < K` (section 3).
pub fn length_gradients<B: Backend>(
    be: &B,
    losses: &[LengthLoss<B>],
    bits: &[usize],
    codes: &B::Buf,
    ctx: &BatchContext<'_, B>,
    distill_weight: Option<f64>,
    path: ObjectivePath,
) -> Result<LengthGradients<B>, AutogradError> {
    if losses.len() != bits.len() {
        return Err(AutogradError::Kernel(KernelError::Shape {
            op: "length_gradients",
            detail: format!("{} losses for {} lengths", losses.len(), bits.len()),
        }));
    }
    if path == ObjectivePath::Tape {
        return tape_gradients(be, losses, bits, codes, ctx, distill_weight);
    }
    // Each length's objective and gradients are independent of the others' (the teacher is read,
    // never written): on a backend that runs parallel calls in parallel they are computed on
    // rayon's pool, then combined in length order exactly as one thread would.
    let one = |k: usize| length_terms(be, &losses[k], bits, k, codes, ctx, distill_weight);
    let terms: Vec<LengthTerms<B>> = if be.parallel_calls() {
        (0..bits.len())
            .into_par_iter()
            .map(one)
            .collect::<Result<_, _>>()?
    } else {
        (0..bits.len()).map(one).collect::<Result<_, _>>()?
    };
    let mut objectives = be.zeros(Shape::new(1, bits.len()))?;
    let mut d = Vec::with_capacity(bits.len());
    for (k, terms) in terms.into_iter().enumerate() {
        let mut dk = terms.grad;
        be.add_prefix_scaled(&mut objectives, k, &terms.base, 1.0)?;
        if let (Some(weight), Some((sp, dsp))) = (distill_weight, terms.distill) {
            be.add_prefix_scaled(&mut objectives, k, &sp, weight as f32)?;
            be.add_prefix_scaled(&mut dk, 0, &dsp, weight as f32)?;
        }
        d.push(dk);
    }
    Ok(LengthGradients { objectives, d })
}

/// One length's terms before they are combined.
struct LengthTerms<B: Backend> {
    /// The base objective `L_k` (`1 x 1`).
    base: B::Buf,
    /// `dL_k / dU_k` (`n x b_k`).
    grad: B::Buf,
    /// With distillation and `k < K`: `SP(U_k, sg(U_{k+1}))` and its gradient.
    distill: Option<(B::Buf, B::Buf)>,
}

/// The [`LengthTerms`] of length `k`, by the fused kernels (the base loss on a tape of its own
/// when it has no fused kernel).
fn length_terms<B: Backend>(
    be: &B,
    loss: &LengthLoss<B>,
    bits: &[usize],
    k: usize,
    codes: &B::Buf,
    ctx: &BatchContext<'_, B>,
    distill_weight: Option<f64>,
) -> Result<LengthTerms<B>, AutogradError> {
    let b = bits[k];
    let (j, dk) = match loss.fused(be, codes, ctx.target_rows) {
        Some(fused) => fused?,
        None => {
            let tape = Tape::new(be);
            let leaf = tape.leaf(prefix(be, codes, b)?);
            let j = loss.eval(&tape, &leaf, ctx)?;
            let grads = tape.backward(&j)?;
            let dk = match grads.get(&leaf) {
                Some(g) => g.clone(),
                None => be.zeros(leaf.shape())?,
            };
            (j.value().clone(), dk)
        }
    };
    let distill = match (distill_weight, bits.get(k + 1)) {
        (Some(_), Some(&teacher)) => Some(be.sp_distill(codes, b, teacher, SP_EPS)?),
        _ => None,
    };
    Ok(LengthTerms {
        base: j,
        grad: dk,
        distill,
    })
}

/// The first `bits` columns of `codes` as their own buffer (the whole buffer when it is that wide).
fn prefix<B: Backend>(be: &B, codes: &B::Buf, bits: usize) -> Result<B::Buf, KernelError> {
    if be.shape(codes).cols == bits {
        Ok(codes.clone())
    } else {
        be.slice_cols(codes, 0, bits)
    }
}

/// [`ObjectivePath::Tape`]: one leaf per length, every objective on one tape, one reverse walk
/// seeded with 1 at every `J_k`.
fn tape_gradients<B: Backend>(
    be: &B,
    losses: &[LengthLoss<B>],
    bits: &[usize],
    codes: &B::Buf,
    ctx: &BatchContext<'_, B>,
    distill_weight: Option<f64>,
) -> Result<LengthGradients<B>, AutogradError> {
    let tape = Tape::new(be);
    let leaves: Vec<Tensor<B>> = bits
        .iter()
        .map(|&b| Ok(tape.leaf(prefix(be, codes, b)?)))
        .collect::<Result<_, KernelError>>()?;
    let mut js = Vec::with_capacity(leaves.len());
    for (k, leaf) in leaves.iter().enumerate() {
        let mut j = losses[k].eval(&tape, leaf, ctx)?;
        if let (Some(weight), Some(teacher)) = (distill_weight, leaves.get(k + 1)) {
            let sp = sp_distill(&tape, leaf, teacher)?;
            j = tape.add(&j, &tape.scale(&sp, weight)?)?;
        }
        js.push(j);
    }
    let mut objectives = be.zeros(Shape::new(1, js.len()))?;
    for (k, j) in js.iter().enumerate() {
        be.add_prefix_scaled(&mut objectives, k, j.value(), 1.0)?;
    }
    let one = be.fill(Shape::scalar(), 1.0)?;
    let seeds: Vec<(&Tensor<B>, B::Buf)> = js.iter().map(|j| (j, one.clone())).collect();
    let grads = tape.backward_from(&seeds)?;
    let d = leaves
        .iter()
        .map(|l| match grads.get(l) {
            Some(g) => Ok(g.clone()),
            None => be.zeros(l.shape()),
        })
        .collect::<Result<_, KernelError>>()?;
    Ok(LengthGradients { objectives, d })
}

/// Inner products of the per-length weight gradients on shared rows.
///
/// With `D_k = dJ_k/dU_k` (`n x b_k`) and hash-layer input `X`, the weight gradient of length `k`
/// is `g_k = D_k^T X`. For `i < j`, on the `b_i` rows both touch:
/// `p_ij = <g_i, g_j[:b_i]> = sum_pq (D_i D_j[:, :b_i]^T)_pq (X X^T)_pq`, and `N_i = ||g_i||^2`
/// is the same with `j = i`. With `F_j = G D_j` (`G = X X^T`) this is
/// `p_ij = sum_{p, c < b_i} D_i[p, c] F_j[p, c]`: one `n x n x sum_k b_k` product of the stacked
/// `D_k` and one prefix dot per pair; no gradient of `W` is ever formed.
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
        let packed = Self::packed(backend, gram, d)?;
        let values: Vec<f64> = backend
            .download(&packed)?
            .into_iter()
            .map(nhl_kernels::Real::to_f64)
            .collect();
        Ok(Self::from_values(d.len(), &values))
    }

    /// The `K(K+1)/2` products on the device (`1 x K(K+1)/2`, pairs `i <= j` in row-major order
    /// of the upper triangle), for [`Backend::dominance_weights`] or one read-back:
    /// the `D_k` stacked side by side into `D`, `F = G D` in one product, then every prefix dot
    /// ([`Backend::prefix_pair_dots`]).
    pub fn packed<B: Backend>(
        backend: &B,
        gram: &B::Buf,
        d: &[B::Buf],
    ) -> Result<B::Buf, KernelError> {
        let bits: Vec<usize> = d.iter().map(|dk| backend.shape(dk).cols).collect();
        let n = backend.shape(gram).rows;
        let mut stacked = backend.zeros(Shape::new(n, bits.iter().sum()))?;
        let mut offset = 0;
        for (dk, b) in d.iter().zip(&bits) {
            backend.add_prefix_scaled(&mut stacked, offset, dk, 1.0)?;
            offset += b;
        }
        let f = backend.matmul(gram, false, &stacked, false, None)?;
        backend.prefix_pair_dots(&stacked, &f, &bits)
    }

    /// The products of `k` lengths from the values of [`GradientProducts::packed`].
    pub fn from_values(k: usize, values: &[f64]) -> Self {
        let mut p = vec![vec![0.0; k]; k];
        let pairs = (0..k).flat_map(|i| (i..k).map(move |j| (i, j)));
        for ((i, j), &v) in pairs.zip(values) {
            p[i][j] = v;
        }
        Self { p }
    }
}

/// The dominance-aware weights `w_k` (NHL-SPEC 2.2 steps 3-6), summing to `K`, on the host:
/// the rule of [`nhl_kernels::cpu::scalar::dominance_weights`] (which the training step runs on
/// the device through [`Backend::dominance_weights`]) applied to these products.
pub fn dominance_weights(products: &GradientProducts, beta: f64) -> Vec<f64> {
    let k = products.p.len();
    let upper: Vec<f64> = (0..k)
        .flat_map(|i| (i..k).map(move |j| (i, j)))
        .map(|(i, j)| products.p[i][j])
        .collect();
    nhl_kernels::cpu::scalar::dominance_weights(&upper, k, beta)
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
    let gs = tape.row_normalize(&tape.matmul_nt(student, student)?, SP_EPS)?;
    let gt = tape.row_normalize(&tape.matmul_nt(&teacher, &teacher)?, SP_EPS)?;
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

    /// The fused path (CSQ and SP kernels) gives the tape path's objectives and `D_k`, for CSQ
    /// (both fused) and DPN (base loss on a tape, SP fused), with and without distillation.
    #[test]
    fn fused_objectives_equal_the_tape_objectives() {
        use crate::config::Method;
        use crate::data::Dataset;
        use nhl_index::eval::Labels;

        let cpu = CpuBackend::<f64>::new();
        let (items, n, bits) = (12usize, 9usize, [4usize, 8, 16]);
        let train = Dataset {
            features: vec![0.0; items],
            dim: 1,
            labels: Labels::Single((0..items as u32).map(|i| i % 4).collect()),
            n_classes: 4,
        };
        let batch = [3, 0, 11, 5, 5, 7, 1, 9, 2];
        let idx = cpu.upload_idx(&batch).unwrap();
        let rows = crate::targets::target_rows(&train.labels);
        let target_rows = cpu.upload_idx(&batch.map(|i| rows[i as usize])).unwrap();
        let labels = cpu.zeros(Shape::new(n, 4)).unwrap();
        let ctx = BatchContext {
            idx: &idx,
            target_rows: &target_rows,
            labels: &labels,
            bank: None,
        };
        let codes = cpu
            .upload(&random_vec(77, n * 16, -2.0, 2.0), Shape::new(n, 16))
            .unwrap();
        for method in [Method::Csq, Method::Dpn] {
            let losses: Vec<_> = bits
                .iter()
                .map(|&b| LengthLoss::new(&cpu, method, b, &train, 5, None).unwrap())
                .collect();
            for distill in [None, Some(0.75)] {
                let run = |path| {
                    length_gradients(&cpu, &losses, &bits, &codes, &ctx, distill, path).unwrap()
                };
                let (fused, tape) = (run(ObjectivePath::Fused), run(ObjectivePath::Tape));
                let what = format!("{method:?} distill {distill:?}");
                let objectives = cpu.download(&fused.objectives).unwrap();
                assert!(
                    objectives.iter().all(|&j| j > 0.0),
                    "{what}: {objectives:?}"
                );
                assert_close(
                    &format!("{what} objectives"),
                    &objectives,
                    &cpu.download(&tape.objectives).unwrap(),
                    1e-14,
                    1e-12,
                );
                for (k, (f, t)) in fused.d.iter().zip(&tape.d).enumerate() {
                    assert_eq!(cpu.shape(f), Shape::new(n, bits[k]));
                    assert_close(
                        &format!("{what} D_{k}"),
                        &cpu.download(f).unwrap(),
                        &cpu.download(t).unwrap(),
                        1e-15,
                        1e-11,
                    );
                }
            }
        }
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

//! Every length's objective and output gradient from the one shared output, with the
//! long-to-short cascade self-distillation (docs/METHOD.md section 3). The dominance weights that
//! combine the gradients are in [`crate::weighting`].

use nhl_autograd::Tape;
use nhl_kernels::{Backend, HashingOps, KernelError, Shape};
use rayon::prelude::*;

use crate::error::TrainError;
use crate::losses::{bank_terms, BatchContext, LengthLoss};

/// The floor of the row norms in the distillation's Gram normalisation.
const SP_EPS: f32 = 1e-12;

/// Every length's objective `J_k` and output gradient `D_k = dJ_k / dU_k` for one batch.
pub struct LengthGradients<B: Backend> {
    /// `1 x K`: `J_k = L_k (+ lambda_D SP(U_k, sg(U_{k+1})))` in slot `k`.
    pub objectives: B::Buf,
    /// `D_k` (`n x b_k`), in length order.
    pub d: Vec<B::Buf>,
}

/// `J_k` and `D_k` of every length `bits[k]` from the shared output `codes` (`n x B`): the
/// memory-bank terms of all lengths at once ([`bank_terms`]), the rest of each length's loss by a
/// fused kernel where it has one ([`LengthLoss::fused`]) or on a small tape of its own, and the
/// distillation by [`HashingOps::sp_distill`], each reading its prefix of `U` in place.
///
/// `J_k` depends only on `U_k` (the first `b_k` columns) and on a detached `U_{k+1}`, so `D_k` is
/// exact without `K` backward passes (docs/METHOD.md 2.4). The base loss of length `k` enters
/// `J_k` times `base_scales[k]` ([`crate::config::LengthScale::factors`]). With `distill_weight =
/// Some(lambda_D)`, `J_k` adds `lambda_D SP(U_k, sg(U_{k+1}))` for every `k < K` (section 3).
pub fn length_gradients<B: HashingOps>(
    be: &B,
    losses: &[LengthLoss<B>],
    bits: &[usize],
    codes: &B::Buf,
    ctx: &BatchContext<'_, B>,
    base_scales: &[f64],
    distill_weight: Option<f64>,
) -> Result<LengthGradients<B>, TrainError> {
    if losses.len() != bits.len() || base_scales.len() != bits.len() {
        return Err(KernelError::Shape {
            op: "length_gradients",
            detail: format!(
                "{} losses and {} base scales for {} lengths",
                losses.len(),
                base_scales.len(),
                bits.len()
            ),
        }
        .into());
    }
    let banked = bank_terms(be, losses, bits, codes, ctx)?;
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
    for (k, (terms, bank)) in terms.into_iter().zip(banked).enumerate() {
        let scale = base_scales[k];
        let mut dk = None;
        for (j, g) in terms.own.into_iter().chain(bank) {
            be.add_prefix_scaled(&mut objectives, k, &j, scale as f32)?;
            match &mut dk {
                None => dk = Some(g),
                Some(sum) => be.add_prefix_scaled(sum, 0, &g, 1.0)?,
            }
        }
        let mut dk = dk.ok_or_else(|| KernelError::Shape {
            op: "length_gradients",
            detail: format!("the loss of length {} has no term", bits[k]),
        })?;
        if scale != 1.0 {
            let mut scaled = be.zeros(be.shape(&dk))?;
            be.add_prefix_scaled(&mut scaled, 0, &dk, scale as f32)?;
            dk = scaled;
        }
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
    /// The base objective without its memory-bank term and the gradient `dL_k / dU_k`
    /// (`n x b_k`); `None` for a loss that is all bank term.
    own: Option<(B::Buf, B::Buf)>,
    /// With distillation and `k < K`: `SP(U_k, sg(U_{k+1}))` and its gradient.
    distill: Option<(B::Buf, B::Buf)>,
}

/// The [`LengthTerms`] of length `k`, by the fused kernels (the base loss on a tape of its own
/// when it has no fused kernel).
fn length_terms<B: HashingOps>(
    be: &B,
    loss: &LengthLoss<B>,
    bits: &[usize],
    k: usize,
    codes: &B::Buf,
    ctx: &BatchContext<'_, B>,
    distill_weight: Option<f64>,
) -> Result<LengthTerms<B>, TrainError> {
    let b = bits[k];
    let own = match loss.fused(be, codes, b, ctx) {
        Some(fused) => Some(fused?),
        None => {
            let tape = Tape::new(be);
            let leaf = tape.leaf(prefix(be, codes, b)?);
            match loss.eval_terms(&tape, &leaf, ctx, false)? {
                Some(j) => {
                    let grads = tape.backward(&j)?;
                    let dk = match grads.get(&leaf) {
                        Some(g) => g.clone(),
                        None => be.zeros(leaf.shape())?,
                    };
                    Some((j.value().clone(), dk))
                }
                None => None,
            }
        }
    };
    let distill = match (distill_weight, bits.get(k + 1)) {
        (Some(_), Some(&teacher)) => Some(be.sp_distill(codes, b, teacher, SP_EPS)?),
        _ => None,
    };
    Ok(LengthTerms { own, distill })
}

/// The first `bits` columns of `codes` as their own buffer (the whole buffer when it is that wide).
fn prefix<B: Backend>(be: &B, codes: &B::Buf, bits: usize) -> Result<B::Buf, TrainError> {
    if be.shape(codes).cols == bits {
        Ok(codes.clone())
    } else {
        Ok(be.slice_cols(codes, 0, bits)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhl_autograd::{AutogradError, Tensor};
    use nhl_kernels::cpu::CpuBackend;
    use nhl_kernels::testing::{assert_close, random_vec};

    /// The reference of [`length_gradients`]: every objective written with tape ops on per-length
    /// leaves, all on one tape, then one reverse walk seeded with 1 at every `J_k`.
    fn tape_gradients<B: Backend>(
        be: &B,
        losses: &[LengthLoss<B>],
        bits: &[usize],
        codes: &B::Buf,
        ctx: &BatchContext<'_, B>,
        base_scales: &[f64],
        distill_weight: Option<f64>,
    ) -> Result<LengthGradients<B>, TrainError> {
        let tape = Tape::new(be);
        let leaves: Vec<Tensor<B>> = bits
            .iter()
            .map(|&b| Ok(tape.leaf(prefix(be, codes, b)?)))
            .collect::<Result<_, TrainError>>()?;
        let mut js = Vec::with_capacity(leaves.len());
        for (k, leaf) in leaves.iter().enumerate() {
            let mut j = tape.scale(&losses[k].eval(&tape, leaf, ctx)?, base_scales[k])?;
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

    /// The reference of [`HashingOps::sp_distill`] on the tape: similarity-preserving distillation
    /// `SP(S, T) = sum_pq (G^_t - G^_s)_pq^2 / n^2`, with `G = U U^T` row-normalised by
    /// `max(||row||, 1e-12)`; the teacher `T` is detached.
    fn sp_distill<B: Backend>(
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

    /// The training path (fused CSQ, DTSH, HashNet, bank and SP kernels, the rest on small tapes)
    /// gives the tape path's objectives and `D_k` for every method, on single-label and
    /// multi-label data, with and without distillation, at epochs before and after MDSH's pair
    /// term starts (and HashNet's continuation steps up), with the base losses plain and per bit
    /// (the distillation term is never scaled).
    #[test]
    fn fused_objectives_equal_the_tape_objectives() {
        use crate::config::{LengthScale, Method};
        use crate::data::Dataset;
        use crate::losses::params::LossParams;
        use crate::losses::Bank;
        use nhl_index::eval::Labels;

        let cpu = CpuBackend::<f64>::new();
        let (items, n, classes, bits) = (12usize, 9usize, 4usize, [4usize, 8, 16]);
        let multi = Labels::Multi {
            n_classes: classes,
            rows: (0..items)
                .map(|i| match i % 5 {
                    0 => vec![],
                    1 => vec![0, 3],
                    r => vec![r as u32 - 1],
                })
                .collect(),
        };
        let single = Labels::Single((0..items as u32).map(|i| i % classes as u32).collect());
        let batch = [3, 0, 11, 5, 5, 7, 1, 9, 2];
        let codes = cpu
            .upload(&random_vec(77, n * 16, -2.0, 2.0), Shape::new(n, 16))
            .unwrap();
        for labels in [single, multi] {
            let train = Dataset {
                features: vec![0.0; items],
                dim: 1,
                labels,
                n_classes: classes,
            };
            let label_rows = train.label_matrix();
            let batch_labels: Vec<f64> = batch
                .iter()
                .flat_map(|&i| label_rows[i * classes..(i + 1) * classes].to_vec())
                .map(f64::from)
                .collect();
            let idx = cpu.upload_idx(&batch.map(|i| i as u32)).unwrap();
            let rows = crate::targets::target_rows(&train.labels);
            let target_rows = cpu.upload_idx(&batch.map(|i| rows[i])).unwrap();
            let labels = cpu.upload(&batch_labels, Shape::new(n, classes)).unwrap();
            let mut bank = Bank::new(&cpu, items, 16, classes).unwrap();
            let all: Vec<u32> = (0..items as u32).collect();
            let bank_labels: Vec<f64> = label_rows.iter().map(|&v| f64::from(v)).collect();
            bank.update(
                &cpu,
                &cpu.upload_idx(&all).unwrap(),
                &cpu.upload(
                    &random_vec(78, items * 16, -1.5, 1.5),
                    Shape::new(items, 16),
                )
                .unwrap(),
                &cpu.upload(&bank_labels, Shape::new(items, classes))
                    .unwrap(),
            )
            .unwrap();
            for method in Method::ALL {
                if method == Method::Shcir && matches!(train.labels, Labels::Multi { .. }) {
                    continue;
                }
                let params = LossParams::defaults(method);
                let losses: Vec<_> = bits
                    .iter()
                    .map(|&b| LengthLoss::new(&cpu, &params, b, &train, 5, None).unwrap())
                    .collect();
                let cases = [(0, None), (9, Some(0.75)), (25, None)]
                    .into_iter()
                    .flat_map(|c| {
                        [LengthScale::Plain, LengthScale::PerBit].map(move |scale| (c, scale))
                    });
                for ((epoch, distill), scale) in cases {
                    let scales = scale.factors(method, &bits);
                    let ctx = BatchContext {
                        idx: &idx,
                        target_rows: &target_rows,
                        labels: &labels,
                        bank: Some(&bank),
                        epoch,
                    };
                    let fused =
                        length_gradients(&cpu, &losses, &bits, &codes, &ctx, &scales, distill)
                            .unwrap();
                    let tape = tape_gradients(&cpu, &losses, &bits, &codes, &ctx, &scales, distill)
                        .unwrap();
                    let what = format!(
                        "{method} epoch {epoch} distill {distill:?} {scale:?} multi {}",
                        matches!(train.labels, Labels::Multi { .. })
                    );
                    let objectives = cpu.download(&fused.objectives).unwrap();
                    assert!(
                        objectives.iter().all(|j| j.is_finite()),
                        "{what}: {objectives:?}"
                    );
                    assert_close(
                        &format!("{what} objectives"),
                        &objectives,
                        &cpu.download(&tape.objectives).unwrap(),
                        1e-13,
                        1e-11,
                    );
                    for (k, (f, t)) in fused.d.iter().zip(&tape.d).enumerate() {
                        assert_eq!(cpu.shape(f), Shape::new(n, bits[k]));
                        assert_close(
                            &format!("{what} D_{k}"),
                            &cpu.download(f).unwrap(),
                            &cpu.download(t).unwrap(),
                            1e-14,
                            1e-10,
                        );
                    }
                }
            }
        }
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

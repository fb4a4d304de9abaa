//! [`HashingOps`] on the CPU backend, in plain Rust: the reference of the GPU twin in `gpu.rs`.

use super::bank::{bank_dims, batch_dims, BankLoss};
use super::bank_cpu::{bank_objectives, BankInputs, BatchCodes};
use super::hashnet_cpu::hashnet_objective;
use super::sp_cpu::{sp_distill, SpInputs};
use super::triplet_cpu::dtsh_objective;
use super::{
    csq_dims, csq_row, pair_dots_dims, sp_dims, weight_index_dims, weights_dims, HashingOps,
    WeightRule,
};
use crate::backend::Shape;
use crate::cpu::{self, CpuBackend, CpuBuf, CpuIdx};
use crate::error::KernelError;
use crate::real::Real;

impl<T: Real> HashingOps for CpuBackend<T> {
    fn csq_objective(
        &self,
        u: &CpuBuf<T>,
        bits: usize,
        targets: &CpuBuf<T>,
        idx: &CpuIdx,
        lambda: f64,
    ) -> Result<(CpuBuf<T>, CpuBuf<T>), KernelError> {
        csq_dims(u.shape, bits, targets.shape, idx.0.len())?;
        cpu::check_indices("csq_objective", &idx.0, targets.shape.rows)?;
        let (n, width) = (u.shape.rows, u.shape.cols);
        let lambda = T::from_f64(lambda);
        let inv = T::one() / T::from_f64((n * bits) as f64);
        let mut grad = vec![T::zero(); n * bits];
        // Per-element BCE and quantisation terms, summed after the vector pass.
        let mut terms = vec![T::zero(); 2 * n * bits];
        let (bce_terms, quant_terms) = terms.split_at_mut(n * bits);
        let batch = csq_row::CsqBatch {
            u: &u.data,
            width,
            targets: &targets.data,
            idx: &idx.0,
            bits,
            lambda,
            inv,
        };
        let terms = csq_row::CsqTerms {
            grad: &mut grad,
            bce: bce_terms,
            quant: quant_terms,
        };
        csq_row::csq_rows(&batch, terms);
        // Serial and in row-major order: the sums match the tape's mean over the same elements.
        let (mut bce, mut quant) = (T::zero(), T::zero());
        for (&b, &q) in bce_terms.iter().zip(quant_terms.iter()) {
            bce += b;
            quant += q;
        }
        let loss = bce * inv + lambda * (quant * inv);
        Ok((
            CpuBuf::new(Shape::scalar(), vec![loss]),
            CpuBuf::new(Shape::new(n, bits), grad),
        ))
    }

    fn bank_objectives(
        &self,
        u: &CpuBuf<T>,
        bits: &[usize],
        labels: &CpuBuf<T>,
        bank: &CpuBuf<T>,
        bank_labels: &CpuBuf<T>,
        loss: &BankLoss,
    ) -> Result<Vec<(CpuBuf<T>, CpuBuf<T>)>, KernelError> {
        bank_dims(u.shape, bits, labels.shape, bank.shape, bank_labels.shape)?;
        let clamped: Vec<T>;
        let codes = if loss.clamp_unit {
            clamped = u
                .data
                .iter()
                .map(|&v| v.max(-T::one()).min(T::one()))
                .collect();
            &clamped
        } else {
            &u.data[..]
        };
        let inputs = BankInputs {
            codes,
            n: u.shape.rows,
            width: u.shape.cols,
            bits,
            labels: &labels.data,
            classes: labels.shape.cols,
            bank: &bank.data,
            bank_cols: bank.shape.cols,
            bank_labels: &bank_labels.data,
            loss: *loss,
        };
        Ok(bank_objectives(&inputs, &u.data, bank.shape.rows))
    }

    fn dtsh_objective(
        &self,
        u: &CpuBuf<T>,
        bits: usize,
        labels: &CpuBuf<T>,
        alpha: f64,
        lambda: f64,
    ) -> Result<(CpuBuf<T>, CpuBuf<T>), KernelError> {
        within_batch("dtsh_objective", u, bits, labels, |inp| {
            dtsh_objective(inp, alpha, lambda)
        })
    }

    fn hashnet_objective(
        &self,
        u: &CpuBuf<T>,
        bits: usize,
        labels: &CpuBuf<T>,
        alpha: f64,
        scale: f64,
    ) -> Result<(CpuBuf<T>, CpuBuf<T>), KernelError> {
        within_batch("hashnet_objective", u, bits, labels, |inp| {
            hashnet_objective(inp, alpha, scale)
        })
    }

    fn prefix_pair_dots(
        &self,
        d: &CpuBuf<T>,
        f: &CpuBuf<T>,
        bits: &[usize],
    ) -> Result<CpuBuf<T>, KernelError> {
        pair_dots_dims(d.shape, f.shape, bits)?;
        let cols = d.shape.cols;
        let offsets: Vec<usize> = bits
            .iter()
            .scan(0, |o, &b| {
                *o += b;
                Some(*o - b)
            })
            .collect();
        let mut out = Vec::with_capacity(bits.len() * (bits.len() + 1) / 2);
        for i in 0..bits.len() {
            for j in i..bits.len() {
                let (oi, oj, b) = (offsets[i], offsets[j], bits[i]);
                let dot = d
                    .data
                    .chunks(cols)
                    .zip(f.data.chunks(cols))
                    .map(|(dr, fr)| {
                        dr[oi..oi + b]
                            .iter()
                            .zip(&fr[oj..oj + b])
                            .map(|(&x, &y)| x * y)
                            .sum::<T>()
                    })
                    .sum::<T>();
                out.push(dot);
            }
        }
        Ok(CpuBuf::new(Shape::new(1, out.len()), out))
    }

    fn dominance_weights(
        &self,
        products: &CpuBuf<T>,
        k: usize,
        beta: f32,
        rule: WeightRule,
    ) -> Result<CpuBuf<T>, KernelError> {
        weights_dims(products.shape, k)?;
        let values: Vec<f64> = products.data.iter().map(|v| v.to_f64()).collect();
        let weights: Vec<T> = rule(&values, k, beta as f64)
            .into_iter()
            .map(T::from_f64)
            .collect();
        if weights.len() != k {
            return Err(KernelError::Shape {
                op: "dominance_weights",
                detail: format!("the rule gave {} weights for {k} lengths", weights.len()),
            });
        }
        Ok(CpuBuf::new(Shape::new(1, k), weights))
    }

    fn sp_distill(
        &self,
        u: &CpuBuf<T>,
        student_bits: usize,
        teacher_bits: usize,
        eps: f32,
    ) -> Result<(CpuBuf<T>, CpuBuf<T>), KernelError> {
        sp_dims(u.shape, student_bits, teacher_bits)?;
        let n = u.shape.rows;
        let (value, grad) = sp_distill(&SpInputs {
            u: &u.data,
            n,
            width: u.shape.cols,
            student_bits,
            teacher_bits,
            eps: T::from_f64(eps as f64),
        });
        Ok((
            CpuBuf::new(Shape::scalar(), vec![value]),
            CpuBuf::new(Shape::new(n, student_bits), grad),
        ))
    }

    fn add_prefix_weighted(
        &self,
        out: &mut CpuBuf<T>,
        start: usize,
        x: &CpuBuf<T>,
        weights: &CpuBuf<T>,
        index: usize,
    ) -> Result<(), KernelError> {
        weight_index_dims(weights.shape, index)?;
        cpu::add_prefix("add_prefix_weighted", out, start, x, weights.data[index])
    }
}

/// A within-batch objective `op` (`objective` of the first `bits` columns of `u` and the
/// labels) after the shared shape checks, as a `1 x 1` value and an `n x bits` gradient.
fn within_batch<T: Real>(
    op: &'static str,
    u: &CpuBuf<T>,
    bits: usize,
    labels: &CpuBuf<T>,
    objective: impl FnOnce(&BatchCodes<'_, T>) -> (T, Vec<T>),
) -> Result<(CpuBuf<T>, CpuBuf<T>), KernelError> {
    batch_dims(op, u.shape, bits, labels.shape)?;
    let (loss, grad) = objective(&BatchCodes {
        u: &u.data,
        n: u.shape.rows,
        width: u.shape.cols,
        bits,
        labels: &labels.data,
        classes: labels.shape.cols,
    });
    Ok((
        CpuBuf::new(Shape::scalar(), vec![loss]),
        CpuBuf::new(Shape::new(u.shape.rows, bits), grad),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backend;

    /// The CPU backend returns what the rule it is given returns, and refuses a rule that gives
    /// another number of weights than lengths.
    #[test]
    fn dominance_weights_apply_the_given_rule() {
        let cpu = CpuBackend::<f64>::new();
        let products = cpu.upload(&[4.0, -1.0, 9.0], Shape::new(1, 3)).unwrap();
        let scaled: WeightRule = |p, k, beta| (0..k).map(|i| beta * p[i]).collect();
        let w = cpu.dominance_weights(&products, 2, 0.5, scaled).unwrap();
        assert_eq!(cpu.download(&w).unwrap(), vec![2.0, -0.5]);
        let short: WeightRule = |_, _, _| vec![1.0];
        assert!(matches!(
            cpu.dominance_weights(&products, 2, 0.5, short),
            Err(KernelError::Shape {
                op: "dominance_weights",
                ..
            })
        ));
    }
}

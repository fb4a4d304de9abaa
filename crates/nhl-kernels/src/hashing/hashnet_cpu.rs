//! [`HashingOps::hashnet_objective`](super::HashingOps::hashnet_objective) on the CPU: the
//! class-balanced pair likelihood of `z = alpha v v^T`, `v = tanh(scale U)`, in one pass over
//! the `n x n` pairs, then `dJ/dU = alpha ((dZ + dZ^T) v) scale (1 - v^2)` by one product.

use super::bank_cpu::{batch_similarity, gemm, softplus_sigmoid, sum_lanes};
use crate::real::Real;

/// The operands: the first `bits` of the `width` columns of `u` (`n` rows), `n x classes`
/// labels, the pair scale `alpha` and the continuation's `scale`.
pub(super) struct HashnetInputs<'a, T> {
    pub u: &'a [T],
    pub n: usize,
    pub width: usize,
    pub bits: usize,
    pub labels: &'a [T],
    pub classes: usize,
    pub alpha: f64,
    pub scale: f64,
}

/// `(J, dJ/dU)` of one length (`dJ/dU` is `n x bits`).
pub(super) fn hashnet_objective<T: Real>(inp: &HashnetInputs<'_, T>) -> (T, Vec<T>) {
    let (n, b) = (inp.n, inp.bits);
    let (alpha, scale) = (T::from_f64(inp.alpha), T::from_f64(inp.scale));
    let v: Vec<T> = inp
        .u
        .chunks_exact(inp.width)
        .take(n)
        .flat_map(|row| row[..b].iter().map(move |&x| (scale * x).tanh_lanes()))
        .collect();
    let mut z = vec![T::zero(); n * n];
    // SAFETY: v is n x b, its transpose b x n (row stride 1, column stride b); z is n x n.
    unsafe { gemm((n, b, n), v.as_ptr(), (b, 1), v.as_ptr(), (1, b), &mut z, n) };
    let s = batch_similarity(inp.labels, n, inp.classes);
    let similar = s.iter().filter(|&&x| x > T::zero()).count();
    // Each group's terms are divided by its pair count, floored at 1 (an empty group adds 0).
    let per_pair = |count: usize| T::one() / T::from_f64(count.max(1) as f64);
    let (w_sim, w_dis) = (per_pair(similar), per_pair(n * n - similar));
    let mut values = vec![T::zero(); n * n];
    let mut dz = vec![T::zero(); n * n];
    for (((value, d), &raw), &sim) in values.iter_mut().zip(&mut dz).zip(&z).zip(&s) {
        let zz = alpha * raw;
        let (softplus, sigmoid) = softplus_sigmoid(zz);
        let w = if sim > T::zero() { w_sim } else { w_dis };
        *value = w * (softplus - sim * zz);
        *d = w * (sigmoid - sim);
    }
    // z is symmetric in exact arithmetic; the sum of both halves keeps the gradient exact for
    // the values the product gave.
    let mut sym = vec![T::zero(); n * n];
    for p in 0..n {
        for q in 0..n {
            sym[p * n + q] = alpha * (dz[p * n + q] + dz[q * n + p]);
        }
    }
    let mut grad = vec![T::zero(); n * b];
    // SAFETY: sym is n x n, v is n x b, the output n x b.
    unsafe {
        gemm(
            (n, n, b),
            sym.as_ptr(),
            (n, 1),
            v.as_ptr(),
            (b, 1),
            &mut grad,
            b,
        )
    };
    for (g, &t) in grad.iter_mut().zip(&v) {
        *g = *g * scale * (T::one() - t * t);
    }
    (sum_lanes(&values), grad)
}

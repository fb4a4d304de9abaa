//! [`HashingOps::hashnet_objective`](super::HashingOps::hashnet_objective) on the CPU: the
//! class-balanced pair likelihood of `z = alpha v v^T`, `v = tanh(scale U)`, in one pass over
//! the `n x n` pairs, then `dJ/dU = alpha ((dZ + dZ^T) v) scale (1 - v^2)` by one product.

use super::bank_cpu::{
    batch_similarity, gemm, softplus_sigmoid, sum_lanes, symmetric_times, BatchCodes,
};
use crate::real::Real;

/// `(J, dJ/dU)` of one length (`dJ/dU` is `n x bits`), with the pair scale `alpha` and the
/// continuation's `scale`.
pub(super) fn hashnet_objective<T: Real>(
    inp: &BatchCodes<'_, T>,
    alpha: f64,
    scale: f64,
) -> (T, Vec<T>) {
    let (n, b) = (inp.n, inp.bits);
    let (alpha, scale) = (T::from_f64(alpha), T::from_f64(scale));
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
    let mut grad = symmetric_times(&dz, n, alpha, (&v, b, b));
    for (g, &t) in grad.iter_mut().zip(&v) {
        *g = *g * scale * (T::one() - t * t);
    }
    (sum_lanes(&values), grad)
}

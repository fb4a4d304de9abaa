//! [`HashingOps::dtsh_objective`](super::HashingOps::dtsh_objective) on the CPU: the triplet
//! likelihood of every anchor over its (similar, dissimilar) pairs, with the gradient of the
//! inner products accumulated per anchor row, then `dJ/dU = (dTheta + dTheta^T) U`.

use super::bank::Quantisation;
use super::bank_cpu::{batch_similarity, gemm, quantisation, softplus_sigmoid, sum_lanes};
use crate::real::Real;

/// The bounds of the clamped triplet logit.
const T_LO: f64 = -100.0;
const T_HI: f64 = 50.0;

/// The operands: the first `bits` of the `width` columns of `u` (`n` rows) and `n x classes`
/// labels.
pub(super) struct TripletInputs<'a, T> {
    pub u: &'a [T],
    pub n: usize,
    pub width: usize,
    pub bits: usize,
    pub labels: &'a [T],
    pub classes: usize,
    pub alpha: f64,
    pub lambda: f64,
}

/// One anchor row's triplet terms: for every similar `p`, the loop over all `q` (dissimilar ones
/// count) of `softplus(-t)` with `t = clamp(theta_p - theta_q - alpha, -100, 50)`; adds the
/// weighted derivatives into `dtheta` (the anchor's row) and returns the row's loss sum.
#[inline(always)]
fn anchor_row<T: Real>(theta: &[T], s: &[T], alpha: T, weight: T, dtheta: &mut [T]) -> T {
    let n = theta.len();
    let (lo, hi) = (T::from_f64(T_LO), T::from_f64(T_HI));
    let mut value = vec![T::zero(); n];
    let mut grad = vec![T::zero(); n];
    let mut total = T::zero();
    for p in 0..n {
        if s[p] <= T::zero() {
            continue;
        }
        for (((v, g), &tq), &sq) in value.iter_mut().zip(grad.iter_mut()).zip(theta).zip(s) {
            let dissimilar = T::one() - sq;
            let r = theta[p] - tq - alpha;
            let t = r.max(lo).min(hi);
            let pass = if r >= lo && r <= hi {
                T::one()
            } else {
                T::zero()
            };
            let (sp, sig) = softplus_sigmoid(-t);
            *v = dissimilar * sp;
            // d softplus(-t) / dt = -sigmoid(-t); the clamp passes it inside its bounds.
            *g = -dissimilar * sig * pass * weight;
        }
        total += sum_lanes(&value);
        dtheta[p] += sum_lanes(&grad);
        for (d, &g) in dtheta.iter_mut().zip(&grad) {
            *d = *d - g;
        }
    }
    total * weight
}

/// `(J, dJ/dU)` of one length (`dJ/dU` is `n x bits`).
pub(super) fn dtsh_objective<T: Real>(inp: &TripletInputs<'_, T>) -> (T, Vec<T>) {
    let (n, b) = (inp.n, inp.bits);
    let mut theta = vec![T::zero(); n * n];
    // SAFETY: U is n x b (row stride width >= b), U^T is b x n (row stride 1, column stride
    // width); the output is n x n.
    unsafe {
        gemm(
            (n, b, n),
            inp.u.as_ptr(),
            (inp.width, 1),
            inp.u.as_ptr(),
            (1, inp.width),
            &mut theta,
            n,
        );
    }
    let s = batch_similarity(inp.labels, n, inp.classes);
    // An anchor qualifies with at least one similar item (itself counts) and one dissimilar.
    let similar: Vec<usize> = s
        .chunks_exact(n)
        .map(|row| row.iter().filter(|&&v| v > T::zero()).count())
        .collect();
    let qualifies = |a: usize| similar[a] >= 1 && similar[a] < n;
    let count = (0..n).filter(|&a| qualifies(a)).count();
    let alpha = T::from_f64(inp.alpha);
    let mut dtheta = vec![T::zero(); n * n];
    let mut value = T::zero();
    for a in (0..n).filter(|&a| qualifies(a)) {
        let pairs = similar[a] * (n - similar[a]) * count;
        let weight = T::one() / T::from_f64(pairs as f64);
        value += anchor_row(
            &theta[a * n..(a + 1) * n],
            &s[a * n..(a + 1) * n],
            alpha,
            weight,
            &mut dtheta[a * n..(a + 1) * n],
        );
    }
    let mut sym = vec![T::zero(); n * n];
    for p in 0..n {
        for q in 0..n {
            sym[p * n + q] = dtheta[p * n + q] + dtheta[q * n + p];
        }
    }
    let mut grad = vec![T::zero(); n * b];
    // SAFETY: sym is n x n, U the n x b prefix (row stride width), the output n x b.
    unsafe {
        gemm(
            (n, n, b),
            sym.as_ptr(),
            (n, 1),
            inp.u.as_ptr(),
            (inp.width, 1),
            &mut grad,
            b,
        )
    };
    let (quant, quant_grad) = quantisation(Quantisation::SignGap, inp.u, n, inp.width, b);
    let lambda = T::from_f64(inp.lambda);
    for (g, &q) in grad.iter_mut().zip(&quant_grad) {
        *g += lambda * q;
    }
    (value + lambda * quant, grad)
}

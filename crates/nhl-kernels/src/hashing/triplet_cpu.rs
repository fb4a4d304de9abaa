//! [`HashingOps::dtsh_objective`](super::HashingOps::dtsh_objective) on the CPU: the triplet
//! likelihood of every anchor over its (similar, dissimilar) pairs, with the gradient of the
//! inner products accumulated per anchor row, then `dJ/dU = (dTheta + dTheta^T) U`.

use super::bank::Quantisation;
use super::bank_cpu::{
    batch_similarity, gemm, quantisation, softplus_sigmoid, sum_lanes, symmetric_times, BatchCodes,
};
use crate::cpu::isa::Isa;
use crate::real::Real;

/// The bounds of the clamped triplet logit.
const T_LO: f64 = -100.0;
const T_HI: f64 = 50.0;

/// One anchor row's triplet terms: for every similar `p`, the loop over all `q` (dissimilar ones
/// count) of `softplus(-t)` with `t = clamp(theta_p - theta_q - alpha, -100, 50)`; adds the
/// weighted derivatives into `dtheta` (the anchor's row) and returns the row's loss sum.
/// `value` and `grad` are scratch rows of the row's length.
#[inline(always)]
fn anchor_row<T: Real>(
    theta: &[T],
    s: &[T],
    alpha: T,
    weight: T,
    dtheta: &mut [T],
    (value, grad): (&mut [T], &mut [T]),
) -> T {
    let n = theta.len();
    // Equal lengths up front, so that the loop below indexes without bounds checks and
    // vectorises.
    let (s, dtheta, value, grad) = (&s[..n], &mut dtheta[..n], &mut value[..n], &mut grad[..n]);
    let (lo, hi) = (T::from_f64(T_LO), T::from_f64(T_HI));
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
        total += sum_lanes(value);
        dtheta[p] += sum_lanes(grad);
        for (d, &g) in dtheta.iter_mut().zip(grad.iter()) {
            *d = *d - g;
        }
    }
    total * weight
}

/// One length's triplet inputs for [`anchor_rows`]: `theta` and `s` (`n x n`), and per anchor
/// its weight `1 / (P_a N_a count)`, zero for an anchor that does not qualify.
#[derive(Clone, Copy)]
pub(crate) struct Anchors<'a, T> {
    pub(crate) theta: &'a [T],
    pub(crate) s: &'a [T],
    pub(crate) weights: &'a [T],
    pub(crate) alpha: T,
}

/// The weighted triplet sum of every qualifying anchor, with its derivatives added into
/// `dtheta` (`n x n`; see [`anchor_row`]). Compiled for the baseline, AVX2 and AVX-512F, the same
/// IEEE operations in the same order in each, so the result does not depend on which one runs
/// (`dtsh_anchor_rows_give_the_same_bits_on_every_isa`, in `cpu::isa_bits`); the widest the CPU
/// has runs, which takes a DTSH `full` step's objectives from about 0.87 to 0.48 ms against the
/// baseline build (`cargo xtask bench train --method dtsh`).
fn anchor_rows<T: Real>(anchors: &Anchors<'_, T>, dtheta: &mut [T]) -> T {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is available, which is all `anchor_rows_avx512` is compiled for.
        return unsafe { anchor_rows_avx512(anchors, dtheta) };
    }
    anchor_rows_on(Isa::best(), anchors, dtheta)
}

/// [`anchor_rows_body`] compiled with AVX-512F enabled.
///
/// # Safety
/// The CPU supports AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn anchor_rows_avx512<T: Real>(anchors: &Anchors<'_, T>, dtheta: &mut [T]) -> T {
    anchor_rows_body(anchors, dtheta)
}

/// [`anchor_rows`] with its loop built for `isa`.
pub(crate) fn anchor_rows_on<T: Real>(isa: Isa, anchors: &Anchors<'_, T>, dtheta: &mut [T]) -> T {
    #[cfg(target_arch = "x86_64")]
    if isa.is_avx2() {
        // SAFETY: an `Isa` says AVX2 only when the CPU has it, which is all
        // `anchor_rows_avx2` is compiled for.
        return unsafe { anchor_rows_avx2(anchors, dtheta) };
    }
    // Elsewhere the baseline build is the only one.
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    anchor_rows_body(anchors, dtheta)
}

/// [`anchor_rows_body`] compiled with AVX2 enabled.
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn anchor_rows_avx2<T: Real>(anchors: &Anchors<'_, T>, dtheta: &mut [T]) -> T {
    anchor_rows_body(anchors, dtheta)
}

#[inline(always)]
fn anchor_rows_body<T: Real>(anchors: &Anchors<'_, T>, dtheta: &mut [T]) -> T {
    let n = anchors.weights.len();
    let (mut value, mut grad) = (vec![T::zero(); n], vec![T::zero(); n]);
    let mut total = T::zero();
    for (a, &weight) in anchors.weights.iter().enumerate() {
        if weight == T::zero() {
            continue;
        }
        let row = a * n..(a + 1) * n;
        total += anchor_row(
            &anchors.theta[row.clone()],
            &anchors.s[row.clone()],
            anchors.alpha,
            weight,
            &mut dtheta[row],
            (&mut value, &mut grad),
        );
    }
    total
}

/// `(J, dJ/dU)` of one length (`dJ/dU` is `n x bits`).
pub(super) fn dtsh_objective<T: Real>(
    inp: &BatchCodes<'_, T>,
    alpha: f64,
    lambda: f64,
) -> (T, Vec<T>) {
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
    let weights: Vec<T> = (0..n)
        .map(|a| match qualifies(a) {
            true => T::one() / T::from_f64((similar[a] * (n - similar[a]) * count) as f64),
            false => T::zero(),
        })
        .collect();
    let mut dtheta = vec![T::zero(); n * n];
    let anchors = Anchors {
        theta: &theta,
        s: &s,
        weights: &weights,
        alpha: T::from_f64(alpha),
    };
    let value = anchor_rows(&anchors, &mut dtheta);
    let mut grad = symmetric_times(&dtheta, n, T::one(), (inp.u, inp.width, b));
    let (quant, quant_grad) = quantisation(Quantisation::SignGap, inp.u, n, inp.width, b);
    let lambda = T::from_f64(lambda);
    for (g, &q) in grad.iter_mut().zip(&quant_grad) {
        *g += lambda * q;
    }
    (value + lambda * quant, grad)
}

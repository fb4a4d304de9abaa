//! The elementwise Adam update as a loop the compiler vectorises, compiled once for the baseline
//! instruction set, once for AVX2 and once for AVX-512F. Every build performs the same IEEE
//! operations in the same order (Rust never fuses a multiply and an add on its own), so results
//! do not depend on which one runs (a NaN's sign and payload aside, see [`super::isa`]).
//!
//! The loop is bound by its divisions and square root per element, not by memory, so the
//! AVX-512 build's sixteen lanes go further than AVX2's eight where the CPU divides a whole 512-bit
//! register at once: measured, a DHN `full` training step spent about 30% less time in the update.

use super::isa::Isa;
use crate::real::Real;

/// One step's Adam constants in the element type (`bias_t = 1 - beta_t^step`).
#[derive(Clone, Copy)]
pub(super) struct AdamConsts<T> {
    pub lr: T,
    pub beta1: T,
    pub beta2: T,
    pub eps: T,
    pub weight_decay: T,
    pub bias1: T,
    pub bias2: T,
}

/// For each element: `g' = g + wd p`, `m = b1 m + (1 - b1) g'`, `v = b2 v + (1 - b2) g'^2`,
/// `p -= lr (m / bias1) / (sqrt(v / bias2) + eps)`, the formula of `shaders/adam.wgsl`.
pub(super) fn adam_update<T: Real>(
    c: AdamConsts<T>,
    p: &mut [T],
    m: &mut [T],
    v: &mut [T],
    g: &[T],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is available, which is all `adam_update_avx512` is compiled for.
        return unsafe { adam_update_avx512(c, (p, m, v, g)) };
    }
    adam_update_on(Isa::best(), c, p, m, v, g)
}

/// What one update reads and writes: parameters, first and second moments, gradient.
pub(super) type AdamSlices<'a, T> = (&'a mut [T], &'a mut [T], &'a mut [T], &'a [T]);

/// [`adam_update_body`] compiled with AVX-512F enabled (sixteen `f32` lanes).
///
/// # Safety
/// The CPU supports AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn adam_update_avx512<T: Real>(c: AdamConsts<T>, s: AdamSlices<'_, T>) {
    adam_update_body(c, s)
}

/// [`adam_update`] with its loop built for `isa`.
pub(super) fn adam_update_on<T: Real>(
    isa: Isa,
    c: AdamConsts<T>,
    p: &mut [T],
    m: &mut [T],
    v: &mut [T],
    g: &[T],
) {
    #[cfg(target_arch = "x86_64")]
    if isa.is_avx2() {
        // SAFETY: an `Isa` says AVX2 only when the CPU has it, which is all `adam_update_avx2`
        // needs.
        return unsafe { adam_update_avx2(c, (p, m, v, g)) };
    }
    // Elsewhere the baseline build is the only one.
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    adam_update_body(c, (p, m, v, g))
}

/// [`adam_update_body`] compiled with AVX2 enabled (eight `f32` lanes instead of four).
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn adam_update_avx2<T: Real>(c: AdamConsts<T>, s: AdamSlices<'_, T>) {
    adam_update_body(c, s)
}

#[inline(always)]
fn adam_update_body<T: Real>(c: AdamConsts<T>, s: AdamSlices<'_, T>) {
    // `1 - beta^step` rounds to exactly 1 once `beta^step` is below half an ulp of 1 (in `f32`,
    // from step 165 on for `beta1 = 0.9` and from step 17,321 on for `beta2 = 0.999`), and
    // `x / 1` is `x` itself: the loops without those divisions give the same bits and save one
    // or two of the four divisions and roots per element.
    let (one, one_v) = (c.bias1 == T::one(), c.bias2 == T::one());
    match (one, one_v) {
        (true, true) => adam_loop::<T, false, false>(c, s),
        (true, false) => adam_loop::<T, false, true>(c, s),
        (false, true) => adam_loop::<T, true, false>(c, s),
        (false, false) => adam_loop::<T, true, true>(c, s),
    }
}

/// The update's loop, dividing the first moment by `bias1` when `DIVIDE_M` and the second by
/// `bias2` when `DIVIDE_V`.
#[inline(always)]
fn adam_loop<T: Real, const DIVIDE_M: bool, const DIVIDE_V: bool>(
    c: AdamConsts<T>,
    (p, m, v, g): AdamSlices<'_, T>,
) {
    // Zipped iterators: no bounds checks, so the loop vectorises.
    for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
        let g = g + c.weight_decay * *p;
        *m = c.beta1 * *m + (T::one() - c.beta1) * g;
        *v = c.beta2 * *v + (T::one() - c.beta2) * g * g;
        let m_hat = if DIVIDE_M { *m / c.bias1 } else { *m };
        let v_hat = if DIVIDE_V { *v / c.bias2 } else { *v };
        *p = *p - c.lr * m_hat / (v_hat.sqrt() + c.eps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// At steps where neither correction, only `bias1`, and (in `f32`) both round to exactly 1,
    /// the update gives the bits of the loop that always divides the moments by them, in both
    /// element types.
    fn same_bits_as_the_dividing_loop<T: Real>() {
        let mut rng = SplitMix64::new(91);
        let mut draw = |n: usize, lo: f64, hi: f64| -> Vec<T> {
            (0..n).map(|_| T::from_f64(rng.uniform(lo, hi))).collect()
        };
        let n = 1037;
        let (p, m, v, g) = (
            draw(n, -1.0, 1.0),
            draw(n, -0.1, 0.1),
            draw(n, 0.0, 0.01),
            draw(n, -1.0, 1.0),
        );
        let f = T::from_f64;
        let f32_type = std::mem::size_of::<T>() == 4;
        for (step, ones) in [
            (37, (false, false)),
            (400, (true, false)),
            (20_000, (true, f32_type)),
        ] {
            let c = AdamConsts {
                lr: f(1e-3),
                beta1: f(0.9),
                beta2: f(0.999),
                eps: f(1e-8),
                weight_decay: f(1e-4),
                bias1: f(1.0 - 0.9f64.powi(step)),
                bias2: f(1.0 - 0.999f64.powi(step)),
            };
            assert_eq!(
                (c.bias1 == T::one(), c.bias2 == T::one()),
                ones,
                "step {step}"
            );
            let (mut p1, mut m1, mut v1) = (p.clone(), m.clone(), v.clone());
            adam_update(c, &mut p1, &mut m1, &mut v1, &g);
            let (mut p2, mut m2, mut v2) = (p.clone(), m.clone(), v.clone());
            adam_loop::<T, true, true>(c, (&mut p2, &mut m2, &mut v2, &g));
            let bits = |xs: &[T]| xs.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>();
            for (got, want) in [(p1, p2), (m1, m2), (v1, v2)] {
                assert_eq!(bits(&got), bits(&want), "step {step}");
            }
        }
    }

    #[test]
    fn skipping_the_divisions_by_corrections_of_one_keeps_the_bits() {
        same_bits_as_the_dividing_loop::<f32>();
        same_bits_as_the_dividing_loop::<f64>();
    }
}

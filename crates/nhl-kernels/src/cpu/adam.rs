//! The elementwise Adam update as a loop the compiler vectorises, compiled once for the baseline
//! instruction set, once for AVX2 and once for AVX-512F. Every build performs the same IEEE
//! operations in the same order (Rust never fuses a multiply and an add on its own), so results
//! do not depend on which one runs (a NaN's sign and payload aside, see [`super::isa`]).
//!
//! The loop is bound by its three divisions and square root per element, not by memory, so the
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
fn adam_update_body<T: Real>(c: AdamConsts<T>, (p, m, v, g): AdamSlices<'_, T>) {
    // Zipped iterators: no bounds checks, so the loop vectorises.
    for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
        let g = g + c.weight_decay * *p;
        *m = c.beta1 * *m + (T::one() - c.beta1) * g;
        *v = c.beta2 * *v + (T::one() - c.beta2) * g * g;
        *p = *p - c.lr * (*m / c.bias1) / ((*v / c.bias2).sqrt() + c.eps);
    }
}

//! The fused CSQ objective of a batch as a loop the compiler vectorises: every element's terms
//! are a fixed sequence of arithmetic and selects ([`Real::tanh_lanes`], the branch-free
//! [`scalar::bce_and_grad`]), compiled once for the baseline instruction set and once for AVX2.
//! Both builds perform the same IEEE operations in the same order (Rust never fuses a multiply
//! and an add on its own), so the result does not depend on which one runs (a NaN's sign and
//! payload aside, see [`crate::cpu::isa`]).

use crate::backend::Unary;
use crate::cpu::isa::Isa;
use crate::cpu::scalar;
use crate::real::Real;

/// The inputs of one batch of the fused CSQ objective: row `r` uses the first `bits` of the
/// `width` outputs of row `r` of `u` and the target row `idx[r]` of `targets` (`bits` wide).
pub(crate) struct CsqBatch<'a, T> {
    pub u: &'a [T],
    pub width: usize,
    pub targets: &'a [T],
    pub idx: &'a [u32],
    pub bits: usize,
    pub lambda: T,
    pub inv: T,
}

/// The per-element terms of a [`CsqBatch`], `n x bits` each. For each element, with
/// `v = tanh(u_j)`, `p = (v + 1) / 2`, `t = (h_j + 1) / 2` and `a = |v| - 1`: `bce[j] = BCE(p, t)`,
/// `quant[j] = a^2` and `grad[j] = inv (dBCE/dp / 2 + 2 lambda a sign(v)) (1 - v^2)`, the
/// gradient of `inv * (sum BCE + lambda sum a^2)` with respect to `u_j`.
pub(crate) struct CsqTerms<'a, T> {
    pub grad: &'a mut [T],
    pub bce: &'a mut [T],
    pub quant: &'a mut [T],
}

/// Writes the terms of `batch` into `out`. The whole batch is one call, so that the loop's
/// constants are loaded once and the long dependency chain of one row (a tanh, two logs, three
/// divisions) overlaps with the next: rows of eight elements, one vector each, left it
/// latency-bound at one call per row.
///
/// # Panics
/// When a slice is shorter than the shapes say or an index is out of range (callers check both).
pub(crate) fn csq_rows<T: Real>(batch: &CsqBatch<'_, T>, out: CsqTerms<'_, T>) {
    csq_rows_on(Isa::best(), batch, out)
}

/// [`csq_rows`] with its loop built for `isa`.
///
/// # Panics
/// As [`csq_rows`].
pub(crate) fn csq_rows_on<T: Real>(isa: Isa, batch: &CsqBatch<'_, T>, out: CsqTerms<'_, T>) {
    #[cfg(target_arch = "x86_64")]
    if isa.is_avx2() {
        // SAFETY: an `Isa` says AVX2 only when the CPU has it, which is all `csq_rows_avx2`
        // needs.
        return unsafe { csq_rows_avx2(batch, out) };
    }
    // Elsewhere the baseline build is the only one.
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    csq_rows_body(batch, out)
}

/// [`csq_rows_body`] compiled with AVX2 enabled (eight `f32` lanes instead of four).
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn csq_rows_avx2<T: Real>(batch: &CsqBatch<'_, T>, out: CsqTerms<'_, T>) {
    csq_rows_body(batch, out)
}

#[inline(always)]
fn csq_rows_body<T: Real>(batch: &CsqBatch<'_, T>, out: CsqTerms<'_, T>) {
    let CsqBatch {
        u,
        width,
        targets,
        idx,
        bits,
        lambda,
        inv,
    } = *batch;
    let rows = out
        .grad
        .chunks_exact_mut(bits)
        .zip(out.bce.chunks_exact_mut(bits))
        .zip(out.quant.chunks_exact_mut(bits));
    for (r, ((g, b), q)) in rows.enumerate() {
        let item = idx[r] as usize;
        let h = &targets[item * bits..(item + 1) * bits];
        csq_row_body(&u[r * width..r * width + bits], h, lambda, inv, g, b, q);
    }
}

/// One row of [`csq_rows_body`].
#[inline(always)]
fn csq_row_body<T: Real>(
    u: &[T],
    h: &[T],
    lambda: T,
    inv: T,
    grad: &mut [T],
    bce: &mut [T],
    quant: &mut [T],
) {
    let half = T::from_f64(0.5);
    let two_lambda = T::from_f64(2.0) * lambda;
    let outputs = grad.iter_mut().zip(bce.iter_mut()).zip(quant.iter_mut());
    for (((g, b), q), (&x, &c)) in outputs.zip(u.iter().zip(h)) {
        let v = x.tanh_lanes();
        let (value, dp) = scalar::bce_and_grad(v * half + half, c * half + half);
        let a = v.abs() - T::one();
        *b = value;
        *q = a * a;
        let dv = dp * half + two_lambda * a * scalar::unary(Unary::Sign, v);
        *g = dv * (T::one() - v * v) * inv;
    }
}

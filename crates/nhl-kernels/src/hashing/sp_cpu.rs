//! [`HashingOps::sp_distill`](super::HashingOps::sp_distill) on the CPU: the similarity-preserving
//! distillation of a student prefix of the codes towards a longer teacher prefix (docs/METHOD.md
//! section 3), its value and its gradient with respect to the student.
//!
//! The two prefix Gram matrices and the gradient's product run in
//! [`crate::cpu::fma_products`]'s register tiles where the CPU has FMA (the matrix library's bits,
//! without its packing of the small operands) and in the library elsewhere. Each row's per-element
//! terms (two divisions and the gradient's factors) are formed in loops of their own, built for
//! AVX-512F or AVX2 where the CPU has them, and only the running sums (the squared norms, the
//! value and the row's inner product) are added one element after the other, in the order one
//! loop over the row would add them: the same bits as that loop, without its one-lane divisions.

use crate::cpu::fma_products::{self, Fused, Product};
use crate::real::Real;

/// The student's prefix codes `u[:, :student_bits]` and the teacher's `u[:, :teacher_bits]` of
/// `n x width` codes `u`.
pub(super) struct SpInputs<'a, T> {
    pub u: &'a [T],
    pub n: usize,
    pub width: usize,
    pub student_bits: usize,
    pub teacher_bits: usize,
    /// The floor of the row norms.
    pub eps: T,
}

/// `SP(S, T) = sum_{p,q} (T^_pq - S^_pq)^2 / n^2` with `G^ = G / max(||G_p||, eps)` row by row,
/// `G = S S^T` and `T T^T`, and its gradient `n x student_bits` with respect to `S`:
/// `dS = (dA + dA^T) S` where `dA_p = (dY_p - Y_p <Y_p, dY_p>) / ||A_p||` (or `dY_p / eps` where the
/// norm is below the floor), `Y = A^`, `dY = -2 (T^ - Y) / n^2`.
pub(super) fn sp_distill<T: Real>(inp: &SpInputs<'_, T>) -> (T, Vec<T>) {
    let n = inp.n;
    let fused = Fused::detect();
    let (a, gt) = (
        prefix_gram(inp, inp.student_bits, fused),
        prefix_gram(inp, inp.teacher_bits, fused),
    );
    let mut sym = vec![T::zero(); n * n];
    let total = row_terms(&a, &gt, n, inp.eps, &mut sym);
    let b = inp.student_bits;
    let mut grad = vec![T::zero(); n * b];
    match fused {
        Some(isa) => {
            let op = Product {
                a: &sym,
                a_stride: n,
                b: inp.u,
                b_stride: inp.width,
                rows: n,
                len: n,
                cols: b,
                out_stride: b,
            };
            fma_products::product_blocks(isa, &op, &mut grad);
        }
        // SAFETY: sym is n x n, S the n x b prefix of u (row stride `width`), the output n x b.
        None => unsafe {
            T::gemm(
                n,
                n,
                b,
                sym.as_ptr(),
                n as isize,
                1,
                inp.u.as_ptr(),
                inp.width as isize,
                1,
                grad.as_mut_ptr(),
                b as isize,
                1,
            )
        },
    }
    (total, grad)
}

/// The value, and `dA + dA^T` into `sym` (`n x n`), from the student's and the teacher's Gram
/// matrices `a` and `gt`, in the widest build the CPU has: the same IEEE operations in the same
/// order in each, so the same bits (`sp_distill_gives_the_same_bits_on_every_build`).
fn row_terms<T: Real>(a: &[T], gt: &[T], n: usize, eps: T, sym: &mut [T]) -> T {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") {
            // SAFETY: the CPU has AVX-512F, all this build needs.
            return unsafe { row_terms_avx512(a, gt, n, eps, sym) };
        }
        if has!("avx2") {
            // SAFETY: the CPU has AVX2, all this build needs.
            return unsafe { row_terms_avx2(a, gt, n, eps, sym) };
        }
    }
    row_terms_body(a, gt, n, eps, sym)
}

/// [`row_terms_body`] built with AVX-512F.
///
/// # Safety
/// The CPU supports AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn row_terms_avx512<T: Real>(a: &[T], gt: &[T], n: usize, eps: T, sym: &mut [T]) -> T {
    row_terms_body(a, gt, n, eps, sym)
}

/// [`row_terms_body`] built with AVX2.
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_terms_avx2<T: Real>(a: &[T], gt: &[T], n: usize, eps: T, sym: &mut [T]) -> T {
    row_terms_body(a, gt, n, eps, sym)
}

#[inline(always)]
fn row_terms_body<T: Real>(a: &[T], gt: &[T], n: usize, eps: T, sym: &mut [T]) -> T {
    let scale = T::one() / T::from_f64((n * n) as f64);
    let minus_two = -T::from_f64(2.0);
    let mut total = T::zero();
    let mut da = vec![T::zero(); n * n];
    let (mut y, mut diff, mut dy) = (vec![T::zero(); n], vec![T::zero(); n], vec![T::zero(); n]);
    for ((a_row, t_row), da_row) in a.chunks(n).zip(gt.chunks(n)).zip(da.chunks_mut(n)) {
        let (ns, nt) = norms(a_row, t_row);
        let (ds, dt) = (ns.max(eps), nt.max(eps));
        let (y, diff, dy) = (&mut y[..n], &mut diff[..n], &mut dy[..n]);
        let (a_row, t_row, da_row) = (&a_row[..n], &t_row[..n], &mut da_row[..n]);
        for q in 0..n {
            y[q] = a_row[q] / ds;
            diff[q] = t_row[q] / dt - y[q];
            dy[q] = minus_two * diff[q] * scale;
        }
        let mut dot = T::zero();
        for q in 0..n {
            total += diff[q] * diff[q];
            dot += y[q] * dy[q];
        }
        if ns > eps {
            for q in 0..n {
                da_row[q] = (dy[q] - y[q] * dot) / ns;
            }
        } else {
            for q in 0..n {
                da_row[q] = dy[q] / eps;
            }
        }
    }
    // The sum is the same either way round, so each pair is added once and written twice.
    for p in 0..n {
        for q in p..n {
            let v = da[p * n + q] + da[q * n + p];
            sym[p * n + q] = v;
            sym[q * n + p] = v;
        }
    }
    total * scale
}

/// The Gram matrix `U[:, :b] U[:, :b]^T` (`n x n`) of the codes' first `b` columns.
fn prefix_gram<T: Real>(inp: &SpInputs<'_, T>, b: usize, fused: Option<Fused>) -> Vec<T> {
    let (n, width) = (inp.n, inp.width);
    let mut g = vec![T::zero(); n * n];
    match fused {
        Some(isa) => {
            // The tiles read the right operand by rows: the prefix transposed, `b x n`.
            let mut t = vec![T::zero(); b * n];
            for (i, row) in inp.u.chunks(width).take(n).enumerate() {
                for (d, &v) in row[..b].iter().enumerate() {
                    t[d * n + i] = v;
                }
            }
            let op = Product {
                a: inp.u,
                a_stride: width,
                b: &t,
                b_stride: n,
                rows: n,
                len: b,
                cols: n,
                out_stride: n,
            };
            fma_products::product_blocks(isa, &op, &mut g);
        }
        // SAFETY: A is the n x b prefix of u (row stride `width`, b <= width), B its transpose
        // (row stride 1, column stride `width`), C an n x n buffer.
        None => unsafe {
            T::gemm(
                n,
                b,
                n,
                inp.u.as_ptr(),
                width as isize,
                1,
                inp.u.as_ptr(),
                1,
                width as isize,
                g.as_mut_ptr(),
                n as isize,
                1,
            )
        },
    }
    g
}

/// The Euclidean norms of two rows, each summed in element order (the two running sums side by
/// side, so that neither waits on the other's additions).
fn norms<T: Real>(a: &[T], t: &[T]) -> (T, T) {
    let (mut sa, mut st) = (T::zero(), T::zero());
    for (&x, &z) in a.iter().zip(t) {
        sa += x * x;
        st += z * z;
    }
    (sa.sqrt(), st.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::fma_products::tests::uniform;

    /// Every build of the row terms gives the baseline's bits, on rows of odd length with a row
    /// below the norm floor.
    #[test]
    fn sp_distill_gives_the_same_bits_on_every_build() {
        for n in [1usize, 7, 33] {
            let (mut a, gt) = (
                uniform::<f32>(40 + n as u64, n * n),
                uniform::<f32>(41, n * n),
            );
            a[..n].fill(0.0);
            let mut want = vec![0.0; n * n];
            let value = row_terms_body(&a, &gt, n, 1e-12, &mut want);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            #[cfg(target_arch = "x86_64")]
            {
                use std::arch::is_x86_feature_detected as has;
                type Build = unsafe fn(&[f32], &[f32], usize, f32, &mut [f32]) -> f32;
                let builds: [(&str, bool, Build); 2] = [
                    ("avx2", has!("avx2"), row_terms_avx2),
                    ("avx512f", has!("avx512f"), row_terms_avx512),
                ];
                for (name, available, build) in builds {
                    if !available {
                        eprintln!("skipping the {name} build: not available on this CPU");
                        continue;
                    }
                    let mut got = vec![0.0; n * n];
                    // SAFETY: the CPU has the build's features.
                    let v = unsafe { build(&a, &gt, n, 1e-12, &mut got) };
                    assert_eq!(v.to_bits(), value.to_bits(), "{name} n {n}: value");
                    assert_eq!(bits(&got), bits(&want), "{name} n {n}: dA + dA^T");
                }
            }
            let mut got = vec![0.0; n * n];
            let v = row_terms(&a, &gt, n, 1e-12, &mut got);
            assert_eq!((v.to_bits(), bits(&got)), (value.to_bits(), bits(&want)));
        }
    }
}

//! [`Backend::matmul`](crate::Backend::matmul) of `C = op(A) B^T` for a batch-sized `op(A)`
//! (`m <= 256` rows) on a CPU with FMA, by the register tiles of [`super::fma_products`]: the
//! same bits as the matrix library (whose kernels form the same chains there), without its
//! packing of both operands on every call. Those are the layers' forward products `X W^T`, where
//! the library copied the whole weight (784 x 1024 for the backbone) into panels to multiply it by
//! a batch of 64 rows.
//!
//! The tiles run along the rows of their right operand, so the product is formed transposed,
//! `C^T = B op(A)^T`: `B` (`n x k`) is read in place, `op(A)^T` (`k x m`, at most 800 KB for the
//! backbone) is the stored `A` when the product reads it transposed and a transposed copy
//! otherwise, and `C^T` is transposed into `C`. Each element of `C` is the chain of its own
//! reduction in ascending order, so neither the route nor the number of threads changes a bit.
//! Measured side by side (`cargo bench --bench kernels -- matmul/`, one thread), the forward
//! product of the backbone takes three quarters to four fifths of the library's time; the
//! backward products,
//! whose right operand is a weight read with a stride of a power of two (a cache-set conflict per
//! row) or whose reduction is 64 long, were slower than the library this way and stay with it.

use rayon::prelude::*;

use super::fma_products::{product_blocks, transpose, Fused, Product};
use crate::backend::Shape;
use crate::real::Real;

/// Rows of `op(A)` up to which [`matmul`] applies: its transposed copy, re-read by every block
/// of output rows, stays in the core's cache.
pub(super) const MAX_ROWS: usize = 256;

/// Whether [`matmul`] computes `op(A) op(B)` (`m` rows): `op(B) = B^T` and a batch-sized `op(A)`.
pub(super) fn applies(m: usize, trans_b: bool) -> bool {
    trans_b && m <= MAX_ROWS
}

/// A stored matrix and whether the product reads it transposed.
#[derive(Clone, Copy)]
pub(super) struct Operand<'a, T> {
    data: &'a [T],
    shape: Shape,
    trans: bool,
}

impl<'a, T: Real> Operand<'a, T> {
    pub(super) fn new(buf: &'a super::CpuBuf<T>, trans: bool) -> Self {
        Operand {
            data: &buf.data,
            shape: buf.shape,
            trans,
        }
    }

    /// `op(X)^T` in rows: the stored data when the product reads it transposed, else a
    /// transposed copy.
    fn rows_of_op_transposed(&self, isa: Fused) -> std::borrow::Cow<'_, [T]> {
        if self.trans {
            std::borrow::Cow::Borrowed(self.data)
        } else {
            std::borrow::Cow::Owned(transposed(isa, self.data, self.shape))
        }
    }
}

/// The transpose of a row-major `shape.rows x shape.cols` matrix.
fn transposed<T: Real>(isa: Fused, data: &[T], shape: Shape) -> Vec<T> {
    let mut out = vec![T::zero(); shape.rows * shape.cols];
    transpose(
        Some(isa),
        data,
        shape.cols,
        shape.rows,
        shape.cols,
        &mut out,
    );
    out
}

/// Rows of the output per parallel task: a multiple of every register tile's height.
const ROWS: usize = 32;

/// `out = L R` for `L` (`rows x len`, row-major) and `R` (`len x cols`, row-major), `out` row-major
/// `rows x cols`, in row blocks on rayon's pool when `parallel`.
fn rows_times<T: Real>(
    isa: Fused,
    (l, r): (&[T], &[T]),
    (rows, len, cols): (usize, usize, usize),
    out: &mut [T],
    parallel: bool,
) {
    let block = |(i, chunk): (usize, &mut [T])| {
        let block_rows = chunk.len() / cols;
        let op = Product {
            a: &l[i * ROWS * len..],
            a_stride: len,
            b: r,
            b_stride: cols,
            rows: block_rows,
            len,
            cols,
            out_stride: cols,
        };
        product_blocks(isa, &op, chunk);
    };
    if parallel && rows > ROWS {
        out.par_chunks_mut(ROWS * cols).enumerate().for_each(block);
    } else {
        out.chunks_mut(ROWS * cols).enumerate().for_each(block);
    }
}

/// `out = op(A) B^T`, `m x k` by `k x n` with `k > 0`, every element of `out` (`m x n`)
/// written; in parallel when `parallel`. The caller checks [`applies`].
pub(super) fn matmul<T: Real>(
    isa: Fused,
    a: Operand<'_, T>,
    b: Operand<'_, T>,
    (m, k, n): (usize, usize, usize),
    out: &mut [T],
    parallel: bool,
) {
    debug_assert!(k > 0 && out.len() == m * n && applies(m, b.trans));
    // C^T = B op(A)^T: B is stored n x k, op(A)^T is k x m.
    let right = a.rows_of_op_transposed(isa);
    let mut ct = vec![T::zero(); n * m];
    rows_times(isa, (b.data, &right), (n, k, m), &mut ct, parallel);
    transpose(Some(isa), &ct, m, n, m, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::fma_products::tests::{fused_or_skip, uniform};

    /// Both transpositions of `A`, against `matrixmultiply` on the same operands, bit for bit,
    /// serial and parallel: odd sizes, reductions of one to four blocks of `KC` (the backbone's
    /// 784 included), the training step's shapes and the largest `op(A)` it takes.
    fn library_bits<T: Real>() {
        let Some(isa) = fused_or_skip() else {
            return;
        };
        let shapes = [
            (1, 1, 1),
            (3, 5, 7),
            (37, 300, 45),
            (64, 784, 1024),
            (64, 1024, 128),
            (128, 64, 1024),
            (9, 513, 70),
            (70, 257, 9),
            (MAX_ROWS, 40, 33),
        ];
        for (s, &(m, k, n)) in shapes.iter().enumerate() {
            // The product always reads B transposed (`applies`); A either way.
            for trans_a in [false, true] {
                let seed = 500 + 10 * s as u64;
                let a_shape = if trans_a {
                    Shape::new(k, m)
                } else {
                    Shape::new(m, k)
                };
                let b_shape = Shape::new(n, k);
                let a = uniform::<T>(seed, m * k);
                let b = uniform::<T>(seed + 1, k * n);
                let (rsa, csa) = if trans_a { (1, m) } else { (k, 1) };
                let (rsb, csb) = (1, k);
                let mut library = vec![T::zero(); m * n];
                // SAFETY: op(A) is m x k and op(B) k x n for these strides; library is m x n.
                unsafe {
                    T::gemm(
                        m,
                        k,
                        n,
                        a.as_ptr(),
                        rsa as isize,
                        csa as isize,
                        b.as_ptr(),
                        rsb as isize,
                        csb as isize,
                        library.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                };
                let bits = |v: &[T]| bytemuck::cast_slice::<T, u8>(v).to_vec();
                for parallel in [false, true] {
                    let mut out = vec![T::zero(); m * n];
                    let operand = |data, shape, trans| Operand { data, shape, trans };
                    matmul(
                        isa,
                        operand(&a, a_shape, trans_a),
                        operand(&b, b_shape, true),
                        (m, k, n),
                        &mut out,
                        parallel,
                    );
                    assert!(
                        bits(&out) == bits(&library),
                        "{m}x{k}x{n}, trans_a {trans_a}, parallel {parallel}"
                    );
                }
            }
        }
    }

    #[test]
    fn fused_matmul_gives_the_library_bits() {
        library_bits::<f32>();
        library_bits::<f64>();
    }
}

//! Matrix products written out as register tiles of fused multiply-adds, reading both operands
//! in place, where the matrix library packs them into panels first: the backend's
//! [`matmul`](crate::Backend::matmul) (a batch of 64 against the backbone's 784 x 1024 weight,
//! where packing the weight every call cost as much as the multiplication) and the per-chunk
//! products of the bank pass ([`crate::hashing::bank_cpu`]: a batch of `n` codes against `c <= 256`
//! bank rows, over column blocks as narrow as 8).
//!
//! Every output element is one chain of fused multiply-adds over the reduction index in
//! ascending order, starting from zero: `acc = fma(a_0, b_0, 0)`, `acc = fma(a_1, b_1, acc)`, ...
//! That is the chain `matrixmultiply`'s kernels compute where the CPU has FMA (AVX2 with FMA, or
//! AVX-512), for a reduction of at most its depth [`KC`]; a longer reduction it cuts into blocks of
//! `KC`, each a chain of its own added to the output in order, which [`product_blocks`] does too.
//! So these products give the library's bits there (`products_give_the_library_bits`, below). The
//! loops are built for AVX2 with FMA and for AVX-512F, and each element's chain is the same in
//! both (`bank_products_give_the_same_bits_on_every_isa` in `cpu::isa_bits`). A CPU without FMA
//! keeps the library ([`Fused::detect`] is `None` there), whose own kernels are unfused on such a
//! CPU.

use crate::real::Real;

/// A build of the fused loops that the running CPU can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fused {
    /// AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512F (and FMA).
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Fused {
    /// The widest fused build the running CPU has, or `None` without FMA (detection is cached
    /// by `std`).
    pub(crate) fn detect() -> Option<Fused> {
        Self::available().last().copied()
    }

    /// Every fused build the running CPU has, narrowest first.
    pub(crate) fn available() -> Vec<Fused> {
        #[allow(unused_mut)]
        let mut out = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("fma") && has!("avx2") {
                out.push(Fused::Avx2);
                if has!("avx512f") {
                    out.push(Fused::Avx512);
                }
            }
        }
        out
    }
}

/// `matrixmultiply`'s reduction depth (`S_KC` and `D_KC` of its version 0.3): each kernel call
/// chains at most this many terms before adding them to the output.
pub(crate) const KC: usize = 256;

/// A product `A B` of a `rows x len` matrix `A` (row `i` is `a[i a_stride ..][..len]`) and a
/// `len x cols` matrix `B` (row `t` is `b[t b_stride ..][..cols]`), written to or added to a
/// `rows x cols` output (row `i` is `out[i out_stride ..][..cols]`).
///
/// The bank pass uses two: the inner products of one column block `lo..hi`, `A` the batch codes
/// from column `lo` (`a_stride` the batch width, `len = hi - lo`) and `B` the transposed chunk
/// from its row `lo` (`b_stride = cols = c`), added to the running sums; and a chunk's share of a
/// gradient, `A = G_k` (`n x c`) and `B` the chunk's bank rows (`b_stride` the bank width, `cols`
/// the length).
#[derive(Clone, Copy)]
pub(crate) struct Product<'a, T> {
    pub(crate) a: &'a [T],
    pub(crate) a_stride: usize,
    pub(crate) b: &'a [T],
    pub(crate) b_stride: usize,
    pub(crate) rows: usize,
    pub(crate) len: usize,
    pub(crate) cols: usize,
    pub(crate) out_stride: usize,
}

/// `out = A B`, or `out += A B` when `accumulate` (each element's chain formed first, then
/// added), in `isa`'s build.
pub(crate) fn product<T: Real>(isa: Fused, op: &Product<'_, T>, out: &mut [T], accumulate: bool) {
    assert!(
        op.cols <= op.out_stride
            && (op.rows == 0 || out.len() >= (op.rows - 1) * op.out_stride + op.cols),
        "product output too short"
    );
    match isa {
        // SAFETY: a `Fused` value names only a build the running CPU supports.
        #[cfg(target_arch = "x86_64")]
        Fused::Avx2 => unsafe { product_avx2(op, out, accumulate) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Fused::Avx512 => unsafe { product_avx512(op, out, accumulate) },
    }
}

/// `out = A B` for a reduction of any length, as `matrixmultiply` forms it where the CPU has FMA:
/// one chain per block of [`KC`] terms, the first block's written, each later block's added in
/// order.
pub(crate) fn product_blocks<T: Real>(isa: Fused, op: &Product<'_, T>, out: &mut [T]) {
    let mut lo = 0;
    loop {
        let len = KC.min(op.len - lo);
        let block = Product {
            a: &op.a[lo..],
            b: &op.b[lo * op.b_stride..],
            len,
            ..*op
        };
        product(isa, &block, out, lo > 0);
        lo += len;
        if lo >= op.len {
            break;
        }
    }
}

/// [`product_body`] built for AVX2 with FMA: tiles of 4 rows by two vectors (16 registers of
/// accumulators at most, of 16).
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn product_avx2<T: Real>(op: &Product<'_, T>, out: &mut [T], accumulate: bool) {
    if std::mem::size_of::<T>() == 4 {
        product_body::<T, 4, 16>(op, out, accumulate)
    } else {
        product_body::<T, 4, 8>(op, out, accumulate)
    }
}

/// [`product_body`] built for AVX-512F: tiles of 8 rows by two vectors.
///
/// # Safety
/// The CPU supports AVX-512F and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn product_avx512<T: Real>(op: &Product<'_, T>, out: &mut [T], accumulate: bool) {
    if std::mem::size_of::<T>() == 4 {
        product_body::<T, 8, 32>(op, out, accumulate)
    } else {
        product_body::<T, 8, 16>(op, out, accumulate)
    }
}

/// The product in register tiles of `R x D`, then of 1 row or 16, 8 or 1 columns at the edges.
#[inline(always)]
fn product_body<T: Real, const R: usize, const D: usize>(
    op: &Product<'_, T>,
    out: &mut [T],
    accumulate: bool,
) {
    let mut i0 = 0;
    while i0 < op.rows {
        if op.rows - i0 >= R {
            tile_row::<T, R, D>(op, i0, out, accumulate);
            i0 += R;
        } else {
            tile_row::<T, 1, D>(op, i0, out, accumulate);
            i0 += 1;
        }
    }
}

/// Every column of rows `i0 .. i0 + R`.
#[inline(always)]
fn tile_row<T: Real, const R: usize, const D: usize>(
    op: &Product<'_, T>,
    i0: usize,
    out: &mut [T],
    accumulate: bool,
) {
    let mut x0 = 0;
    while x0 < op.cols {
        let left = op.cols - x0;
        if left >= D {
            tile::<T, R, D>(op, i0, x0, out, accumulate);
            x0 += D;
        } else if D > 16 && left >= 16 {
            // A 16-bit length's gradient in one pass instead of two of 8 columns, each of which
            // broadcasts every element of `A` again.
            tile::<T, R, 16>(op, i0, x0, out, accumulate);
            x0 += 16;
        } else if left >= 8 {
            tile::<T, R, 8>(op, i0, x0, out, accumulate);
            x0 += 8;
        } else {
            tile::<T, R, 1>(op, i0, x0, out, accumulate);
            x0 += 1;
        }
    }
}

/// Rows `i0 .. i0 + R`, columns `x0 .. x0 + D` of the product, the accumulators in registers.
#[inline(always)]
fn tile<T: Real, const R: usize, const D: usize>(
    op: &Product<'_, T>,
    i0: usize,
    x0: usize,
    out: &mut [T],
    accumulate: bool,
) {
    let len = op.len;
    let rows: [&[T]; R] = std::array::from_fn(|r| &op.a[(i0 + r) * op.a_stride..][..len]);
    let mut acc = [[T::zero(); D]; R];
    for t in 0..len {
        let b: &[T; D] = op.b[t * op.b_stride + x0..][..D]
            .try_into()
            .expect("a tile of D columns");
        for (acc_row, row) in acc.iter_mut().zip(&rows) {
            fma_row(acc_row, row[t], b);
        }
    }
    for (r, acc_row) in acc.iter().enumerate() {
        let dst = &mut out[(i0 + r) * op.out_stride + x0..][..D];
        if accumulate {
            for (o, &v) in dst.iter_mut().zip(acc_row) {
                *o += v;
            }
        } else {
            dst.copy_from_slice(acc_row);
        }
    }
}

/// `acc[x] = fma(a, b[x], acc[x])`: one step of a tile row's chains (a helper of its own, which
/// lets the compiler keep the tile in vector registers).
#[inline(always)]
fn fma_row<T: Real, const D: usize>(acc: &mut [T; D], a: T, b: &[T; D]) {
    for x in 0..D {
        acc[x] = a.mul_add(b[x], acc[x]);
    }
}

/// `ut[d c + j] = bank[j w + d]` for `d < cols`, `j < c`: the first `cols` columns of `c` bank
/// rows of width `w`, transposed (`cols x c`), so that the inner products run along the bank rows.
/// With a fused build and 4-byte elements, 8 x 8 blocks by AVX shuffles (which move bits, so the
/// element type does not matter); otherwise, or at the edges, element by element in blocks of 16
/// x 16, so that the writes, a bank row apart in `ut`, fill whole cache lines while the block's
/// bank rows stay in cache.
pub(crate) fn transpose<T: Real>(
    isa: Option<Fused>,
    bank: &[T],
    w: usize,
    c: usize,
    cols: usize,
    ut: &mut [T],
) {
    assert!(ut.len() >= cols * c && bank.len() >= c * w && cols <= w);
    let mut done = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if isa.is_some() && std::mem::size_of::<T>() == 4 {
        let bank: &[u32] = bytemuck::cast_slice(bank);
        let ut: &mut [u32] = bytemuck::cast_slice_mut(ut);
        // SAFETY: every fused build needs AVX2, which includes AVX.
        unsafe { transpose_avx(bank, w, c, cols, ut) };
        done = (c / 8 * 8, cols / 8 * 8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    // What the blocks left: the last columns of every row, and the last rows' first columns.
    transpose_scalar(bank, w, (0, c), (done.1, cols), c, ut);
    transpose_scalar(bank, w, (done.0, c), (0, done.1), c, ut);
}

/// [`transpose`] of rows `js` and columns `ds`, element by element in blocks of 16 x 16.
fn transpose_scalar<T: Copy>(
    bank: &[T],
    w: usize,
    js: (usize, usize),
    ds: (usize, usize),
    c: usize,
    ut: &mut [T],
) {
    const BLOCK: usize = 16;
    for j0 in (js.0..js.1).step_by(BLOCK) {
        let j1 = (j0 + BLOCK).min(js.1);
        for d0 in (ds.0..ds.1).step_by(BLOCK) {
            for d in d0..(d0 + BLOCK).min(ds.1) {
                let dst = &mut ut[d * c + j0..d * c + j1];
                for (j, v) in (j0..j1).zip(dst) {
                    *v = bank[j * w + d];
                }
            }
        }
    }
}

/// [`transpose`] of the whole 8 x 8 blocks: 8 rows loaded, 24 shuffles, 8 columns stored.
///
/// # Safety
/// The CPU supports AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_avx(bank: &[u32], w: usize, c: usize, cols: usize, ut: &mut [u32]) {
    use std::arch::x86_64::{
        __m256, _mm256_loadu_ps, _mm256_permute2f128_ps, _mm256_setzero_ps, _mm256_shuffle_ps,
        _mm256_storeu_ps, _mm256_unpackhi_ps, _mm256_unpacklo_ps,
    };
    // Four blocks of rows at a time, so that the 128 bytes each writes to a row of `ut` are two
    // whole cache lines, filled while they are in L1. One block at a time wrote half lines, and
    // at the stride of a `ut` row (1 KB for a 256-row chunk) only a few of L1's sets hold them,
    // so they were evicted before the next block filled their other half (docs/RESULTS.md
    // section 7 has the profiles).
    let whole = c / 8 * 8;
    for j0 in (0..whole).step_by(32) {
        for d0 in (0..cols / 8 * 8).step_by(8) {
            for j0 in (j0..(j0 + 32).min(whole)).step_by(8) {
                let mut r = [_mm256_setzero_ps(); 8];
                for (k, v) in r.iter_mut().enumerate() {
                    let row = &bank[(j0 + k) * w + d0..][..8];
                    // SAFETY: `row` holds the 8 values read.
                    *v = unsafe { _mm256_loadu_ps(row.as_ptr().cast()) };
                }
                let t: [__m256; 8] = [
                    _mm256_unpacklo_ps(r[0], r[1]),
                    _mm256_unpackhi_ps(r[0], r[1]),
                    _mm256_unpacklo_ps(r[2], r[3]),
                    _mm256_unpackhi_ps(r[2], r[3]),
                    _mm256_unpacklo_ps(r[4], r[5]),
                    _mm256_unpackhi_ps(r[4], r[5]),
                    _mm256_unpacklo_ps(r[6], r[7]),
                    _mm256_unpackhi_ps(r[6], r[7]),
                ];
                let q: [__m256; 8] = [
                    _mm256_shuffle_ps::<0x44>(t[0], t[2]),
                    _mm256_shuffle_ps::<0xee>(t[0], t[2]),
                    _mm256_shuffle_ps::<0x44>(t[1], t[3]),
                    _mm256_shuffle_ps::<0xee>(t[1], t[3]),
                    _mm256_shuffle_ps::<0x44>(t[4], t[6]),
                    _mm256_shuffle_ps::<0xee>(t[4], t[6]),
                    _mm256_shuffle_ps::<0x44>(t[5], t[7]),
                    _mm256_shuffle_ps::<0xee>(t[5], t[7]),
                ];
                let out: [__m256; 8] = [
                    _mm256_permute2f128_ps::<0x20>(q[0], q[4]),
                    _mm256_permute2f128_ps::<0x20>(q[1], q[5]),
                    _mm256_permute2f128_ps::<0x20>(q[2], q[6]),
                    _mm256_permute2f128_ps::<0x20>(q[3], q[7]),
                    _mm256_permute2f128_ps::<0x31>(q[0], q[4]),
                    _mm256_permute2f128_ps::<0x31>(q[1], q[5]),
                    _mm256_permute2f128_ps::<0x31>(q[2], q[6]),
                    _mm256_permute2f128_ps::<0x31>(q[3], q[7]),
                ];
                for (k, v) in out.iter().enumerate() {
                    let col = &mut ut[(d0 + k) * c + j0..][..8];
                    // SAFETY: `col` holds the 8 values written.
                    unsafe { _mm256_storeu_ps(col.as_mut_ptr().cast(), *v) };
                }
            }
        }
    }
}

/// Adds each bank row's squared norm over columns `lo..hi` to `sq` (one per row of the chunk),
/// from the transposed chunk `ut` (`cols x c`): `sq[j] += ((ut[lo][j]^2 + ut[lo+1][j]^2) + ...)`,
/// products rounded before they are added, in column order.
pub(crate) fn square_block<T: Real>(ut: &[T], c: usize, lo: usize, hi: usize, sq: &mut [T]) {
    const J: usize = 32;
    for (t, sq) in sq[..c].chunks_mut(J).enumerate() {
        let j0 = t * J;
        let mut acc = [T::zero(); J];
        for d in lo..hi {
            let col = &ut[d * c + j0..d * c + j0 + sq.len()];
            for (a, &v) in acc.iter_mut().zip(col) {
                *a += v * v;
            }
        }
        for (s, &a) in sq.iter_mut().zip(&acc) {
            *s += a;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hashing::bank_cpu::gemm;
    use crate::rng::SplitMix64;

    /// Tile-sized and edge shapes of the products: `(rows, len, cols)` (also the ISA-bits test's).
    pub(crate) const SHAPES: [(usize, usize, usize); 9] = [
        (1, 1, 1),
        (3, 5, 7),
        (4, 8, 8),
        (9, 13, 37),
        (8, 33, 64),
        (13, 256, 40),
        (64, 8, 256),
        (11, 256, 16),
        (9, 21, 57),
    ];

    /// `n` seeded values uniform in `[-2, 2)`.
    pub(crate) fn uniform<T: Real>(seed: u64, n: usize) -> Vec<T> {
        let mut rng = SplitMix64::new(seed);
        (0..n)
            .map(|_| T::from_f64(rng.uniform(-2.0, 2.0)))
            .collect()
    }

    /// The widest fused build, or `None` with a printed notice on a CPU without FMA, where the
    /// library runs instead and there is nothing to compare.
    pub(crate) fn fused_or_skip() -> Option<Fused> {
        let isa = Fused::detect();
        if isa.is_none() {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "no FMA on this CPU: the library runs instead"
            );
        }
        isa
    }

    /// Each fused build's products, written and accumulated, against `matrixmultiply`'s on the
    /// same strided operands, bit for bit.
    fn library_bits<T: Real>() {
        if fused_or_skip().is_none() {
            return;
        }
        for (k, &(rows, len, cols)) in SHAPES.iter().enumerate() {
            let seed = 300 + 10 * k as u64;
            let (a_stride, b_stride) = (len + 2, cols + 3);
            let a = uniform::<T>(seed, rows * a_stride);
            let b = uniform::<T>(seed + 1, len * b_stride);
            let init = uniform::<T>(seed + 2, rows * cols);
            let mut library = vec![T::zero(); rows * cols];
            // SAFETY: a is rows x len (row stride a_stride), b is len x cols (row stride
            // b_stride), library is rows x cols.
            unsafe {
                gemm(
                    (rows, len, cols),
                    a.as_ptr(),
                    (a_stride, 1),
                    b.as_ptr(),
                    (b_stride, 1),
                    &mut library,
                    cols,
                )
            };
            let op = Product {
                a: &a,
                a_stride,
                b: &b,
                b_stride,
                rows,
                len,
                cols,
                out_stride: cols,
            };
            for isa in Fused::available() {
                let mut out = vec![T::zero(); rows * cols];
                product(isa, &op, &mut out, false);
                let bits = |v: &[T]| bytemuck::cast_slice::<T, u8>(v).to_vec();
                assert_eq!(bits(&out), bits(&library), "{isa:?} {rows}x{len}x{cols}");
                let mut sum = init.clone();
                product(isa, &op, &mut sum, true);
                let want: Vec<T> = init.iter().zip(&library).map(|(&x, &p)| x + p).collect();
                assert_eq!(bits(&sum), bits(&want), "{isa:?} {rows}x{len}x{cols} added");
            }
        }
    }

    #[test]
    fn products_give_the_library_bits() {
        library_bits::<f32>();
        library_bits::<f64>();
    }

    #[test]
    fn transpose_and_squares_read_the_chunk_columns() {
        // Whole 8 x 8 blocks and both edges, with and without the fused build; 136 rows (a
        // 5,000-row bank's last chunk) end on a lone block of 8 after the pairs.
        for (w, c, cols) in [
            (21, 37, 19),
            (128, 256, 128),
            (130, 136, 128),
            (16, 8, 16),
            (9, 5, 3),
        ] {
            let bank = uniform::<f32>(7, c * w);
            for isa in [None, Fused::detect()] {
                let mut ut = vec![0.0; cols * c];
                transpose(isa, &bank, w, c, cols, &mut ut);
                for j in 0..c {
                    for d in 0..cols {
                        assert_eq!(ut[d * c + j], bank[j * w + d], "{isa:?} {c}x{cols}");
                    }
                }
            }
        }
        let (w, c, cols) = (21, 37, 19);
        let bank = uniform::<f64>(7, c * w);
        let mut ut = vec![0.0; cols * c];
        transpose(Fused::detect(), &bank, w, c, cols, &mut ut);
        let mut sq = vec![0.5; c];
        square_block(&ut, c, 3, 11, &mut sq);
        for (j, &got) in sq.iter().enumerate() {
            let block: f64 = bank[j * w + 3..j * w + 11].iter().map(|&v| v * v).sum();
            assert_eq!(got, 0.5 + block, "row {j}");
        }
    }
}

//! [`HashingOps::bank_objectives`](super::HashingOps::bank_objectives) on the CPU: one pass over
//! the bank in fixed chunks of [`CHUNK`] rows. For each chunk, the similarities (from bit masks of
//! the labels where they are zeros and ones, [`super::label_masks`]) and the inner
//! products of every length (running sums over the lengths' column blocks), the per-pair terms
//! of every length in one vectorised loop ([`super::bank_pairs`]), and the chunk's share of each gradient `G_k U[:, :b_k]`,
//! the products by [`crate::cpu::fma_products`] where the CPU has FMA (the same bits as the matrix
//! library, without its packing) and by the matrix library elsewhere. Chunks run on rayon's pool,
//! each thread reusing its working buffers, and are summed in chunk order, so the result does not
//! depend on the number of threads.

use rayon::prelude::*;

use super::bank::{BankLoss, BankPair, Quantisation, COSINE_EPS};
use super::bank_pairs::{pair_rows, PairChunk, PairSums};
use super::label_masks::{label_masks, similarity_from_masks};
use crate::backend::{Shape, Unary};
use crate::cpu::fma_products::{self, Fused, Product};
use crate::cpu::{scalar, CpuBuf};
use crate::real::Real;

/// Bank rows per chunk: the unit of parallel work and of the fixed summation order.
const CHUNK: usize = 256;
/// Below this many multiply-adds (`n N B`) the chunks run on the calling thread.
const PAR_MIN: usize = 1 << 18;

/// The operands, read in place.
pub(super) struct BankInputs<'a, T> {
    /// The batch codes, clamped when the loss says so: `n x width`.
    pub codes: &'a [T],
    pub n: usize,
    pub width: usize,
    pub bits: &'a [usize],
    /// `n x classes`.
    pub labels: &'a [T],
    pub classes: usize,
    /// `N x bank_cols`.
    pub bank: &'a [T],
    pub bank_cols: usize,
    /// `N x classes`.
    pub bank_labels: &'a [T],
    pub loss: BankLoss,
}

/// What one chunk of bank rows contributes.
struct ChunkSums<T> {
    /// Per length, the sum of the pair values over the chunk's rows and the batch.
    values: Vec<T>,
    /// Length-major, `K x n`: each batch row's sum of the coefficients of its own code.
    own: Vec<T>,
    /// The number of similar pairs.
    similar: T,
    /// `G_k U_chunk[:, :b_k]` of every length, `n x b_k` each, one after the other.
    products: Vec<T>,
}

/// `C = A B` for row-major slices with explicit strides (`m x k` by `k x n`).
///
/// # Safety
/// The pointers and strides must describe matrices of the stated sizes inside their buffers.
pub(crate) unsafe fn gemm<T: Real>(
    (m, k, n): (usize, usize, usize),
    a: *const T,
    (rsa, csa): (usize, usize),
    b: *const T,
    (rsb, csb): (usize, usize),
    c: &mut [T],
    rsc: usize,
) {
    debug_assert!(c.len() >= (m - 1) * rsc + n || m == 0);
    // SAFETY: forwarded from the caller; `c` is a writable slice of the stated extent.
    unsafe {
        T::gemm(
            m,
            k,
            n,
            a,
            rsa as isize,
            csa as isize,
            b,
            rsb as isize,
            csb as isize,
            c.as_mut_ptr(),
            rsc as isize,
            1,
        )
    }
}

/// The operands of a within-batch objective (DTSH, HashNet): the first `bits` of the `width`
/// columns of `u` (`n` rows) and `n x classes` labels.
pub(super) struct BatchCodes<'a, T> {
    pub u: &'a [T],
    pub n: usize,
    pub width: usize,
    pub bits: usize,
    pub labels: &'a [T],
    pub classes: usize,
}

/// The batch similarity `s_pq = 1[y_p . y_q > 0]` (`n x n`) of `n x classes` multi-hot labels.
pub(super) fn batch_similarity<T: Real>(labels: &[T], n: usize, classes: usize) -> Vec<T> {
    let mut s = vec![T::zero(); n * n];
    // SAFETY: labels are n x classes and their transpose classes x n; the output is n x n.
    unsafe {
        gemm(
            (n, classes, n),
            labels.as_ptr(),
            (classes, 1),
            labels.as_ptr(),
            (1, classes),
            &mut s,
            n,
        );
    }
    for v in &mut s {
        *v = if *v > T::zero() { T::one() } else { T::zero() };
    }
    s
}

/// `scale (D + D^T) V` (`n x b`) for an `n x n` block `D` and the `n x b` codes `V` (row stride
/// `v_stride`): the gradient of a within-batch objective from the one of its inner products.
pub(super) fn symmetric_times<T: Real>(
    d: &[T],
    n: usize,
    scale: T,
    (v, v_stride, b): (&[T], usize, usize),
) -> Vec<T> {
    let mut sym = vec![T::zero(); n * n];
    for p in 0..n {
        for q in 0..n {
            sym[p * n + q] = scale * (d[p * n + q] + d[q * n + p]);
        }
    }
    let mut out = vec![T::zero(); n * b];
    // SAFETY: sym is n x n, V is n x b (row stride v_stride >= b), the output n x b.
    unsafe {
        gemm(
            (n, n, b),
            sym.as_ptr(),
            (n, 1),
            v.as_ptr(),
            (v_stride, 1),
            &mut out,
            b,
        )
    };
    out
}

/// The sum of `xs` with eight running partial sums (a loop the compiler vectorises), combined
/// in a fixed order.
#[inline(always)]
pub(super) fn sum_lanes<T: Real>(xs: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    let mut total =
        ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for &x in chunks.remainder() {
        total += x;
    }
    total
}

/// `max(x, 0) + ln(1 + e^-|x|)` and `sigmoid(x)` from one exponential.
#[inline(always)]
pub(super) fn softplus_sigmoid<T: Real>(x: T) -> (T, T) {
    let e = (-x.abs()).exp_neg_lanes();
    let one = T::one();
    let softplus = x.max(T::zero()) + (one + e).ln_lanes();
    let sigmoid = if x >= T::zero() { one } else { e } / (one + e);
    (softplus, sigmoid)
}

/// Per length, per batch row: the squared norm of the row's prefix (contrastive) or the inverse
/// of its norm floored at [`COSINE_EPS`] (cosine); length-major, `K x n`.
fn own_norms<T: Real>(inp: &BankInputs<'_, T>, cosine: bool) -> Vec<T> {
    let mut out = Vec::with_capacity(inp.bits.len() * inp.n);
    for &b in inp.bits {
        for i in 0..inp.n {
            let row = &inp.codes[i * inp.width..i * inp.width + b];
            let sq: T = row.iter().map(|&v| v * v).sum();
            out.push(if cosine {
                T::one() / sq.sqrt().max(T::from_f64(COSINE_EPS))
            } else {
                sq
            });
        }
    }
    out
}

/// The working buffers of [`chunk`], kept from one chunk to the next on each thread.
#[derive(Default)]
struct Scratch<T> {
    s: Vec<T>,
    ut: Vec<T>,
    theta: Vec<T>,
    part: Vec<T>,
    bank_sq: Vec<T>,
    bank_aux: Vec<T>,
    g: Vec<T>,
    rows: Vec<T>,
    masks: Vec<u32>,
}

/// `buf` as `len` zeros, reusing its allocation.
fn zeroed<T: Real>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    buf.clear();
    buf.resize(len, T::zero());
    buf
}

/// `buf` as `len` elements of whatever it held, for a caller that writes every one.
fn sized<T: Real>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    buf.resize(len, T::zero());
    &mut buf[..len]
}

/// The contribution of bank rows `j0 .. j0 + c`, with the products of `fused`'s build where the
/// CPU has FMA, else by the matrix library, and the similarities from the labels' masks where the
/// batch has them (`batch_masks`) and the chunk too.
fn chunk<T: Real>(
    inp: &BankInputs<'_, T>,
    norms: &[T],
    batch_masks: Option<&[u32]>,
    fused: Option<Fused>,
    scratch: &mut Scratch<T>,
    (j0, c): (usize, usize),
) -> ChunkSums<T> {
    let (n, k, w) = (inp.n, inp.bits.len(), inp.bank_cols);
    let bank = &inp.bank[j0 * w..(j0 + c) * w];
    let s = sized(&mut scratch.s, n * c);
    let chunk_labels = &inp.bank_labels[j0 * inp.classes..(j0 + c) * inp.classes];
    let similar = match batch_masks {
        Some(batch) if label_masks(chunk_labels, inp.classes, &mut scratch.masks) => {
            T::from_f64(similarity_from_masks(batch, &scratch.masks, s) as f64)
        }
        _ => {
            // SAFETY: labels are n x classes (row stride classes); the chunk's bank labels, read
            // transposed, are classes x c (row stride 1, column stride classes); s is n x c.
            unsafe {
                gemm(
                    (n, inp.classes, c),
                    inp.labels.as_ptr(),
                    (inp.classes, 1),
                    chunk_labels.as_ptr(),
                    (1, inp.classes),
                    s,
                    c,
                )
            };
            for v in s.iter_mut() {
                *v = if *v > T::zero() { T::one() } else { T::zero() };
            }
            // Whole numbers below 2^24: exact, as the count above.
            sum_lanes(s)
        }
    };
    let s = &*s;
    let cosine = inp.loss.pair == BankPair::CosinePositive;
    let norms_needed = inp.loss.pair != BankPair::Likelihood;
    // The chunk's codes transposed, for the fused inner products and the bank rows' norms.
    let longest = inp.bits[k - 1];
    let ut: &[T] = if fused.is_some() || norms_needed {
        let ut = sized(&mut scratch.ut, longest * c);
        fma_products::transpose(fused, bank, w, c, longest, ut);
        ut
    } else {
        &[]
    };
    // The first column block writes the inner products and every later one adds to them (a
    // chain that starts from +0 never ends at -0, so `0 + chain` would be the chain's own bits).
    let theta = sized(&mut scratch.theta, n * c);
    let bank_sq = zeroed(&mut scratch.bank_sq, c);
    let bank_aux = sized(&mut scratch.bank_aux, c);
    let g = sized(&mut scratch.g, n * c);
    let rows = sized(&mut scratch.rows, 4 * c);
    let mut values = vec![T::zero(); k];
    let mut own = vec![T::zero(); k * n];
    let total: usize = inp.bits.iter().sum();
    let mut products = vec![T::zero(); n * total];
    let (mut lo, mut offset) = (0, 0);
    for (kk, &b) in inp.bits.iter().enumerate() {
        if let Some(isa) = fused {
            let block = Product {
                a: &inp.codes[lo..],
                a_stride: inp.width,
                b: &ut[lo * c..],
                b_stride: c,
                rows: n,
                len: b - lo,
                cols: c,
                out_stride: c,
            };
            fma_products::product(isa, &block, theta, kk > 0);
        } else {
            let part = sized(&mut scratch.part, n * c);
            // SAFETY: the batch block is n x (b - lo) from column lo (row stride width >= b);
            // the bank block, read transposed, is (b - lo) x c from column lo (row stride 1,
            // column stride w >= b); part is n x c.
            unsafe {
                gemm(
                    (n, b - lo, c),
                    inp.codes[lo..].as_ptr(),
                    (inp.width, 1),
                    bank[lo..].as_ptr(),
                    (1, w),
                    part,
                    c,
                )
            };
            if kk == 0 {
                theta.copy_from_slice(part);
            } else {
                for (t, &p) in theta.iter_mut().zip(part.iter()) {
                    *t += p;
                }
            }
        }
        if norms_needed {
            fma_products::square_block(ut, c, lo, b, bank_sq);
        }
        lo = b;
        for (aux, &sq) in bank_aux.iter_mut().zip(bank_sq.iter()) {
            *aux = if cosine {
                T::one() / sq.sqrt().max(T::from_f64(COSINE_EPS))
            } else {
                sq
            };
        }
        let margin = match inp.loss.pair {
            BankPair::Contrastive { margin } => T::from_f64(margin * b as f64),
            _ => T::zero(),
        };
        let terms = PairChunk {
            pair: inp.loss.pair,
            theta,
            s,
            own_norms: &norms[kk * n..(kk + 1) * n],
            bank_aux,
            margin,
        };
        let sums = PairSums {
            g,
            scratch: rows,
            own: &mut own[kk * n..(kk + 1) * n],
        };
        values[kk] = pair_rows(&terms, sums);
        // This length's share of the gradient, `G_k U_chunk[:, :b]`, while G_k is in cache.
        let out = &mut products[offset..offset + n * b];
        if let Some(isa) = fused {
            let op = Product {
                a: g,
                a_stride: c,
                b: bank,
                b_stride: w,
                rows: n,
                len: c,
                cols: b,
                out_stride: b,
            };
            fma_products::product(isa, &op, out, false);
        } else {
            // SAFETY: G_k is n x c (row stride c); the chunk's bank prefix is c x b (row stride
            // w, b <= w); the output block is n x b (row stride b).
            unsafe { gemm((n, c, b), g.as_ptr(), (c, 1), bank.as_ptr(), (w, 1), out, b) };
        }
        offset += n * b;
    }
    ChunkSums {
        values,
        own,
        similar,
        products,
    }
}

/// The per-code term's value and its gradient (`n x b`) for codes `u` (row stride `width`).
pub(super) fn quantisation<T: Real>(
    quant: Quantisation,
    u: &[T],
    n: usize,
    width: usize,
    b: usize,
) -> (T, Vec<T>) {
    let (value, grad) = quantisations(quant, u, n, width, &[b])
        .pop()
        .expect("one length");
    (value, grad)
}

/// `log cosh(|x| - 1)` of every element of `row`, as `a + ln(1 + e^(-2a)) - ln 2` with
/// `a = ||x| - 1|`, in the vectorised exponential and logarithm: only the reported value reads
/// it (the slope, `tanh`, is the library's), and where a library call per element kept the loop
/// scalar it was most of DHN's quantisation term.
fn log_cosh_gaps<T: Real>(row: &[T], out: &mut [T]) {
    let (one, two) = (T::one(), T::from_f64(2.0));
    let ln2 = T::from_f64(std::f64::consts::LN_2);
    let out = &mut out[..row.len()];
    for (v, &x) in out.iter_mut().zip(row) {
        let a = (x.abs() - one).abs();
        *v = a + (one + (-two * a).exp_neg_lanes()).ln_lanes() - ln2;
    }
}

/// [`quantisation`] of every length in `bits` (increasing). An element-wise term is evaluated
/// once per element of the longest prefix; each length then sums its prefix's values in the
/// order [`quantisation`] alone would and scales its slopes, so the results are the same.
fn quantisations<T: Real>(
    quant: Quantisation,
    u: &[T],
    n: usize,
    width: usize,
    bits: &[usize],
) -> Vec<(T, Vec<T>)> {
    let sign = |x: T| scalar::unary(Unary::Sign, x);
    let longest = bits.last().copied().unwrap_or(0);
    let elementwise = matches!(
        quant,
        Quantisation::AbsGap | Quantisation::LogCosh | Quantisation::SignGap
    );
    // Per element of the longest prefix, row-major: the term's value and its slope.
    let (mut values, mut slopes) = (Vec::new(), Vec::new());
    if elementwise {
        values.resize(n * longest, T::zero());
        slopes.resize(n * longest, T::zero());
        let rows = values
            .chunks_exact_mut(longest)
            .zip(slopes.chunks_exact_mut(longest));
        for (i, (vals, slps)) in rows.enumerate() {
            let row = &u[i * width..i * width + longest];
            match quant {
                Quantisation::AbsGap => {
                    for ((v, s), &x) in vals.iter_mut().zip(slps.iter_mut()).zip(row) {
                        let gap = T::one() - x.abs();
                        (*v, *s) = (gap.abs(), -sign(gap) * sign(x));
                    }
                }
                Quantisation::LogCosh => {
                    log_cosh_gaps(row, vals);
                    for (s, &x) in slps.iter_mut().zip(row) {
                        *s = (x.abs() - T::one()).tanh() * sign(x);
                    }
                }
                _ => {
                    for ((v, s), &x) in vals.iter_mut().zip(slps.iter_mut()).zip(row) {
                        let z = x - sign(x);
                        (*v, *s) = (z * z, T::from_f64(2.0) * z);
                    }
                }
            }
        }
    }
    let one_length = |b: usize| {
        let inv = T::one() / T::from_f64((n * b) as f64);
        let mut grad = vec![T::zero(); n * b];
        let mut total = T::zero();
        for i in 0..n {
            let row = &u[i * width..i * width + b];
            let out = &mut grad[i * b..(i + 1) * b];
            match quant {
                Quantisation::None => {}
                Quantisation::RowMeanSquare | Quantisation::RowMeanAbs => {
                    let mean = row.iter().copied().sum::<T>() / T::from_f64(b as f64);
                    let (value, slope) = if quant == Quantisation::RowMeanSquare {
                        (mean * mean, T::from_f64(2.0) * mean)
                    } else {
                        (mean.abs(), sign(mean))
                    };
                    total += value;
                    out.fill(slope * inv);
                }
                Quantisation::AbsGap | Quantisation::LogCosh | Quantisation::SignGap => {
                    let at = i * longest..i * longest + b;
                    for ((g, &value), &slope) in
                        out.iter_mut().zip(&values[at.clone()]).zip(&slopes[at])
                    {
                        total += value;
                        *g = slope * inv;
                    }
                }
            }
        }
        let value = match quant {
            Quantisation::RowMeanSquare | Quantisation::RowMeanAbs => total / T::from_f64(n as f64),
            _ => total * inv,
        };
        (value, grad)
    };
    bits.iter().map(|&b| one_length(b)).collect()
}

/// The chunks' gradient products summed element by element in chunk order, in blocks of
/// elements spread over the pool when `parallel` (each element's sum is the same either way).
fn chunk_order_sum<T: Real>(sums: &[ChunkSums<T>], parallel: bool) -> Vec<T> {
    const BLOCK: usize = 4096;
    let mut products = vec![T::zero(); sums.first().map_or(0, |s| s.products.len())];
    let block = |(b, dst): (usize, &mut [T])| {
        for s in sums {
            for (a, &x) in dst.iter_mut().zip(&s.products[b * BLOCK..]) {
                *a += x;
            }
        }
    };
    if parallel {
        products.par_chunks_mut(BLOCK).enumerate().for_each(block);
    } else {
        products.chunks_mut(BLOCK).enumerate().for_each(block);
    }
    products
}

/// Every length's `(J_k, D_k)`; see [`super::HashingOps::bank_objectives`]. `raw` is the batch
/// before any clamp (`n x width`), for the clamp's gradient mask.
pub(super) fn bank_objectives<T: Real>(
    inp: &BankInputs<'_, T>,
    raw: &[T],
    bank_rows: usize,
) -> Vec<(CpuBuf<T>, CpuBuf<T>)> {
    let (n, k) = (inp.n, inp.bits.len());
    let cosine = inp.loss.pair == BankPair::CosinePositive;
    let norms = own_norms(inp, cosine);
    let chunks: Vec<(usize, usize)> = (0..bank_rows)
        .step_by(CHUNK)
        .map(|j0| (j0, CHUNK.min(bank_rows - j0)))
        .collect();
    let fused = Fused::detect();
    let mut masks = Vec::new();
    let batch_masks = label_masks(inp.labels, inp.classes, &mut masks).then_some(&masks[..]);
    let one = |scratch: &mut Scratch<T>, &range: &(usize, usize)| {
        chunk(inp, &norms, batch_masks, fused, scratch, range)
    };
    let longest = inp.bits[k - 1];
    let quantise = || quantisations(inp.loss.quant, inp.codes, n, inp.width, inp.bits);
    let parallel = n * bank_rows * longest >= PAR_MIN;
    // The per-code term needs nothing from the bank, so it runs beside the chunks: on its own it
    // was a tenth of DHN's `full` bank pass (a library `tanh` per element), all on one thread.
    let (sums, quants): (Vec<ChunkSums<T>>, _) = if parallel {
        rayon::join(
            || chunks.par_iter().map_init(Scratch::default, one).collect(),
            quantise,
        )
    } else {
        let mut scratch = Scratch::default();
        let sums = chunks.iter().map(|r| one(&mut scratch, r)).collect();
        (sums, quantise())
    };
    // The chunks' sums, in chunk order.
    let mut values = vec![T::zero(); k];
    let mut own = vec![T::zero(); k * n];
    let mut similar = T::zero();
    for s in &sums {
        for (a, &b) in values.iter_mut().zip(&s.values) {
            *a += b;
        }
        for (a, &b) in own.iter_mut().zip(&s.own) {
            *a += b;
        }
        similar += s.similar;
    }
    let products = chunk_order_sum(&sums, parallel);
    let scale = if cosine {
        T::one() / similar.max(T::one())
    } else {
        T::one() / T::from_f64((n * bank_rows) as f64)
    } * T::from_f64(inp.loss.pair_weight);
    let alpha = T::from_f64(inp.loss.alpha);
    let mut out = Vec::with_capacity(k);
    let mut offset = 0;
    for ((kk, &b), (quant, quant_grad)) in inp.bits.iter().enumerate().zip(quants) {
        let loss = scale * values[kk] + alpha * quant;
        let mut grad = products[offset..offset + n * b].to_vec();
        for i in 0..n {
            let norm = norms[kk * n + i];
            // The coefficient of the row's own code: 2 sum c (contrastive); for the cosine the
            // normalisation's backward, only above the norm's floor.
            let coef = match inp.loss.pair {
                BankPair::Contrastive { .. } => own[kk * n + i],
                BankPair::Likelihood => T::zero(),
                BankPair::CosinePositive => {
                    if T::one() / norm > T::from_f64(COSINE_EPS) {
                        own[kk * n + i] * norm * norm
                    } else {
                        T::zero()
                    }
                }
            };
            let row = &inp.codes[i * inp.width..i * inp.width + b];
            let raw_row = &raw[i * inp.width..i * inp.width + b];
            let g = &mut grad[i * b..(i + 1) * b];
            let q = &quant_grad[i * b..(i + 1) * b];
            for (((gv, &x), &r), &qv) in g.iter_mut().zip(row).zip(raw_row).zip(q) {
                *gv = scale * (*gv + coef * x) + alpha * qv;
                if inp.loss.clamp_unit && !(r >= -T::one() && r <= T::one()) {
                    *gv = T::zero();
                }
            }
        }
        offset += n * b;
        out.push((
            CpuBuf::new(Shape::scalar(), vec![loss]),
            CpuBuf::new(Shape::new(n, b), grad),
        ));
    }
    out
}

//! The per-pair terms of the memory-bank pass ([`super::bank_cpu`]): for one length and one
//! chunk of bank rows, every batch row's coefficients of the bank codes and of its own code, and
//! the chunk's share of the objective's value, from the inner products and similarities the pass
//! formed. One loop per pair kind (contrastive, likelihood, cosine), built for the baseline, AVX2
//! and AVX-512F with the same IEEE operations in the same order.

use super::bank::BankPair;
use super::bank_cpu::{softplus_sigmoid, sum_lanes};
use crate::cpu::isa::Isa;
use crate::real::Real;

/// Batch rows between two renormalisations of the likelihood's running products: every factor
/// `1 + e^-|t|` is at most 2, so a product below `2^64` stays below `2^96` over this many rows.
const PRODUCT_ROWS: usize = 32;

/// The per-pair terms of one batch row against the chunk's rows for one length: the
/// coefficients of the bank codes (`g`) and of the row's own code (`own`), and the pair values
/// added into the chunk's per-column accumulators (`acc`). `theta` holds the inner products,
/// `s` the similarities, `own_norm` the row's squared norm (or, for the cosine, its inverse
/// norm), `bank_aux` the bank rows' squared norms (contrastive) or inverse norms (cosine).
struct RowTerms<'a, T> {
    theta: &'a [T],
    s: &'a [T],
    own_norm: T,
    bank_aux: &'a [T],
    margin: T,
}

/// Per column of a chunk, what the batch rows so far added to the objective's value: a sum of
/// the pair values, and for the likelihood the running product of the factors `1 + e^-|t|`
/// whose logarithms complete its softplus, with the number of times `2^64` was taken out of it.
/// Summing down the columns and reducing once per chunk, where each batch row was reduced on its
/// own before, cut the time of DHN's pair terms by about 40% (perf, criterion's bank pass).
struct Columns<'a, T> {
    sum: &'a mut [T],
    product: &'a mut [T],
    shifts: &'a mut [T],
}

impl<'a, T: Real> Columns<'a, T> {
    /// Splits `c` columns of each off `buf` (at least `3 c` long), set to a sum of zero and a
    /// product of one.
    fn new(buf: &'a mut [T], c: usize) -> Self {
        let (sum, rest) = buf.split_at_mut(c);
        let (product, rest) = rest.split_at_mut(c);
        let shifts = &mut rest[..c];
        sum.fill(T::zero());
        product.fill(T::one());
        shifts.fill(T::zero());
        Columns {
            sum,
            product,
            shifts,
        }
    }

    /// Takes `2^64` (exactly: a power of two) out of every product that reached it.
    #[inline(always)]
    fn renormalise(&mut self) {
        let (big, shrink) = (T::from_f64(2f64.powi(64)), T::from_f64(2f64.powi(-64)));
        let c = self.product.len();
        let (product, shifts) = (&mut self.product[..c], &mut self.shifts[..c]);
        for j in 0..c {
            let over = product[j] >= big;
            product[j] = if over {
                product[j] * shrink
            } else {
                product[j]
            };
            shifts[j] += if over { T::one() } else { T::zero() };
        }
    }

    /// The chunk's value: the columns' sums, plus with `products` the logarithms of the
    /// products, `ln p_j + 64 ln 2 shifts_j`, formed in `scratch` (`c` long). In `f32` each of a
    /// product's `n` multiplications rounds by less than `2^-24` relatively, so its logarithm is
    /// within `n 2^-24` of the sum of its factors' logarithms
    /// (`the_likelihood_value_of_a_chunk_is_within_rounding_of_f64`).
    #[inline(always)]
    fn value(&self, products: bool, scratch: &mut [T]) -> T {
        let mut value = sum_lanes(self.sum);
        if products {
            let c = self.product.len();
            let (product, shifts, logs) =
                (&self.product[..c], &self.shifts[..c], &mut scratch[..c]);
            let step = T::from_f64(64.0 * std::f64::consts::LN_2);
            for j in 0..c {
                logs[j] = product[j].ln_lanes() + shifts[j] * step;
            }
            value += sum_lanes(logs);
        }
        value
    }
}

#[inline(always)]
fn pair_row<T: Real>(
    pair: BankPair,
    r: &RowTerms<'_, T>,
    g: &mut [T],
    own: &mut [T],
    acc: &mut Columns<'_, T>,
) {
    let half = T::from_f64(0.5);
    let one = T::one();
    let two = T::from_f64(2.0);
    // Equal lengths up front, so that the loops below index without bounds checks and vectorise.
    let c = r.theta.len();
    let (theta, s, aux) = (&r.theta[..c], &r.s[..c], &r.bank_aux[..c]);
    let (g, own) = (&mut g[..c], &mut own[..c]);
    let (sum, product) = (&mut acc.sum[..c], &mut acc.product[..c]);
    match pair {
        BankPair::Contrastive { .. } => {
            for j in 0..c {
                let d = r.own_norm + aux[j] - two * theta[j];
                let hinge = r.margin - d;
                let push = if hinge > T::zero() { one } else { T::zero() };
                sum[j] += half * (s[j] * d + (one - s[j]) * hinge.max(T::zero()));
                let coef = half * (s[j] - (one - s[j]) * push);
                g[j] = -two * coef;
                own[j] = two * coef;
            }
        }
        BankPair::Likelihood => {
            // softplus(t) = max(t, 0) + ln(1 + e): the sum takes the first part and the product
            // the factor `1 + e`. The sigmoid is the one of `softplus_sigmoid`.
            for j in 0..c {
                let t = half * theta[j];
                let e = (-t.abs()).exp_neg_lanes();
                let sig = if t >= T::zero() { one } else { e } / (one + e);
                sum[j] += t.max(T::zero()) - s[j] * t;
                product[j] = product[j] * (one + e);
                g[j] = half * (sig - s[j]);
            }
        }
        BankPair::CosinePositive => {
            for j in 0..c {
                let cos = theta[j] * r.own_norm * aux[j];
                let (sp, sig) = softplus_sigmoid(half * (one - cos));
                sum[j] += s[j] * sp;
                // d value / d cos.
                let q = -half * s[j] * sig;
                g[j] = q * r.own_norm * aux[j];
                own[j] = -q * cos;
            }
        }
    }
}

/// One length's inputs against one chunk of the bank, for [`pair_rows`].
#[derive(Clone, Copy)]
pub(crate) struct PairChunk<'a, T> {
    pub(crate) pair: BankPair,
    /// `n x c` inner products of the batch rows with the chunk's codes.
    pub(crate) theta: &'a [T],
    /// `n x c` similarities.
    pub(crate) s: &'a [T],
    /// Per batch row, its squared norm (contrastive) or inverse norm (cosine).
    pub(crate) own_norms: &'a [T],
    /// Per chunk row, its squared norm (contrastive) or inverse norm (cosine).
    pub(crate) bank_aux: &'a [T],
    /// The contrastive margin, `m b`; zero for the other pairs.
    pub(crate) margin: T,
}

/// Where [`pair_rows`] writes: the `n x c` coefficients `g`, a `4 c` scratch row, and per batch
/// row the sum of its own-code coefficients.
pub(crate) struct PairSums<'a, T> {
    pub(crate) g: &'a mut [T],
    pub(crate) scratch: &'a mut [T],
    pub(crate) own: &'a mut [T],
}

/// Every batch row's terms of one length against one chunk (see [`pair_row`]): the
/// coefficients and each row's own-code sum go to `out`, and the chunk's total pair value is
/// returned. Compiled for the baseline and for AVX2, the same IEEE operations in the same order
/// in both, so the result does not depend on which one runs.
///
/// Where the CPU has AVX-512F this loop runs in an AVX-512 build, which measured about 10% less
/// time for a DHN `full` epoch than the AVX2 one (`cargo xtask bench train --method csq,dhn`);
/// `bank_pair_rows_give_the_same_bits_on_every_isa` (in `cpu::isa_bits`) checks that it gives
/// the baseline's bits.
pub(super) fn pair_rows<T: Real>(chunk: &PairChunk<'_, T>, out: PairSums<'_, T>) -> T {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is available, which is all `pair_rows_avx512` is compiled for.
        return unsafe { pair_rows_avx512(chunk, out) };
    }
    pair_rows_on(Isa::best(), chunk, out)
}

/// [`pair_rows_body`] compiled with AVX-512F enabled.
///
/// # Safety
/// The CPU supports AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn pair_rows_avx512<T: Real>(
    chunk: &PairChunk<'_, T>,
    out: PairSums<'_, T>,
) -> T {
    pair_rows_body(chunk, out)
}

/// [`pair_rows`] with its loop built for `isa`.
pub(crate) fn pair_rows_on<T: Real>(isa: Isa, chunk: &PairChunk<'_, T>, out: PairSums<'_, T>) -> T {
    #[cfg(target_arch = "x86_64")]
    if isa.is_avx2() {
        // SAFETY: an `Isa` says AVX2 only when the CPU has it, which is all `pair_rows_avx2`
        // is compiled for.
        return unsafe { pair_rows_avx2(chunk, out) };
    }
    // Elsewhere the baseline build is the only one.
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    pair_rows_body(chunk, out)
}

/// [`pair_rows_body`] compiled with AVX2 enabled.
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pair_rows_avx2<T: Real>(chunk: &PairChunk<'_, T>, out: PairSums<'_, T>) -> T {
    pair_rows_body(chunk, out)
}

#[inline(always)]
fn pair_rows_body<T: Real>(chunk: &PairChunk<'_, T>, out: PairSums<'_, T>) -> T {
    let PairChunk {
        pair,
        theta,
        s,
        own_norms,
        bank_aux,
        margin,
    } = *chunk;
    let PairSums { g, scratch, own } = out;
    let c = bank_aux.len();
    let (own_row, rest) = scratch.split_at_mut(c);
    let mut acc = Columns::new(rest, c);
    // The likelihood has no own-code term; its columns keep running products instead.
    let likelihood = pair == BankPair::Likelihood;
    for i in 0..own_norms.len() {
        let row = RowTerms {
            theta: &theta[i * c..(i + 1) * c],
            s: &s[i * c..(i + 1) * c],
            own_norm: own_norms[i],
            bank_aux,
            margin,
        };
        pair_row(pair, &row, &mut g[i * c..(i + 1) * c], own_row, &mut acc);
        if likelihood {
            own[i] = T::zero();
            if (i + 1) % PRODUCT_ROWS == 0 {
                acc.renormalise();
            }
        } else {
            own[i] = sum_lanes(own_row);
        }
    }
    acc.value(likelihood, own_row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// The likelihood's chunk value `sum_pq softplus(t_pq) - s_pq t_pq`, `t = theta / 2`, in
    /// `f64` from the same (`f32`-representable) inputs.
    fn exact_likelihood(theta: &[f32], s: &[f32]) -> (f64, f64) {
        let (mut value, mut size) = (0.0, 0.0);
        for (&th, &sv) in theta.iter().zip(s) {
            let t = 0.5 * f64::from(th);
            let term = t.max(0.0) + (-t.abs()).exp().ln_1p() - f64::from(sv) * t;
            value += term;
            size += term.abs();
        }
        (value, size)
    }

    fn likelihood_value<T: Real>(theta: &[T], s: &[T], n: usize, c: usize) -> T {
        let chunk = PairChunk {
            pair: BankPair::Likelihood,
            theta,
            s,
            own_norms: &vec![T::one(); n],
            bank_aux: &vec![T::zero(); c],
            margin: T::zero(),
        };
        let (mut g, mut scratch, mut own) = (
            vec![T::zero(); n * c],
            vec![T::zero(); 4 * c],
            vec![T::zero(); n],
        );
        pair_rows(
            &chunk,
            PairSums {
                g: &mut g,
                scratch: &mut scratch,
                own: &mut own,
            },
        )
    }

    /// The column sums and running products give the likelihood's value to `f32` rounding, with
    /// more batch rows than one renormalisation covers, and exactly `n c ln 2` where every factor
    /// is 2 (the products pass `2^64` again and again).
    #[test]
    fn the_likelihood_value_of_a_chunk_is_within_rounding_of_f64() {
        let mut worst = 0.0f64;
        for (k, (n, c)) in [(1, 1), (5, 37), (64, 256), (100, 256), (131, 19)]
            .into_iter()
            .enumerate()
        {
            let mut rng = SplitMix64::new(40 + k as u64);
            for spread in [40.0, 0.01] {
                let theta: Vec<f32> = (0..n * c)
                    .map(|_| rng.uniform(-spread, spread) as f32)
                    .collect();
                let s: Vec<f32> = (0..n * c)
                    .map(|_| if rng.next_f64() < 0.3 { 1.0 } else { 0.0 })
                    .collect();
                let (exact, size) = exact_likelihood(&theta, &s);
                let got = f64::from(likelihood_value(&theta, &s, n, c));
                let err = (got - exact).abs() / (size + 1.0);
                worst = worst.max(err);
                let wide = |v: &[f32]| -> Vec<f64> { v.iter().map(|&x| f64::from(x)).collect() };
                let got64 = likelihood_value(&wide(&theta), &wide(&s), n, c);
                assert!(
                    (got64 - exact).abs() <= 1e-12 * (size + 1.0),
                    "{n} x {c}: f64 {got64} against {exact}"
                );
            }
            let zeros = vec![0.0f32; n * c];
            let got = f64::from(likelihood_value(&zeros, &zeros, n, c));
            let want = (n * c) as f64 * std::f64::consts::LN_2;
            assert!(
                (got - want).abs() <= 1e-6 * want,
                "{n} x {c}: {got} against {want}"
            );
        }
        assert!(worst <= 5e-7, "relative error {worst}");
    }
}

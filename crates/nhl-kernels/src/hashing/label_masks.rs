//! The batch-to-bank similarity `s_ij = 1[y_i . Y_j > 0]` of the CPU bank pass from bit masks of
//! the labels. With labels of zeros and ones (one-hot or multi-hot, at most 32 classes) the dot
//! product is positive exactly when the two rows share a class, `mask_i & mask_j != 0`: one AND
//! per pair where the matrix library packed two small operands for a product of depth `C` (its
//! packing and kernel were about 3% of a DHN `full` bank pass). Any other label values (soft
//! labels, more classes, NaN) take the product, so `s` is the same either way: with zeros and ones
//! every partial sum of the product is a small integer, exact in floating point.

use crate::real::Real;

/// The most classes a mask holds (32-bit masks, as wide as the `f32` similarities they make, so
/// that the loop over pairs runs in the same vector lanes).
const MASK_CLASSES: usize = 32;

/// Writes one bit per class of every row of `labels` (`rows x classes`) to `out`; false, with
/// `out` incomplete, when a row holds a value other than 0 and 1 or there are more than
/// [`MASK_CLASSES`] classes.
pub(crate) fn label_masks<T: Real>(labels: &[T], classes: usize, out: &mut Vec<u32>) -> bool {
    out.clear();
    if classes > MASK_CLASSES || classes == 0 {
        return false;
    }
    let mut other = false;
    out.extend(labels.chunks_exact(classes).map(|row| {
        let mut mask = 0u32;
        for (k, &v) in row.iter().enumerate() {
            mask |= u32::from(v == T::one()) << k;
            other |= v != T::one() && v != T::zero();
        }
        mask
    }));
    !other
}

/// `s[i c + j] = 1` where `batch[i] & bank[j] != 0`, else 0 (`n x c` for `n` batch masks and `c`
/// bank masks); returns the number of ones.
pub(crate) fn similarity_from_masks<T: Real>(batch: &[u32], bank: &[u32], s: &mut [T]) -> usize {
    let c = bank.len();
    let mut ones = 0;
    for (row, &m) in s.chunks_exact_mut(c).zip(batch) {
        // Counted per row in 32-bit lanes, like the masks (a row has at most `c` ones).
        let mut row_ones = 0u32;
        for (v, &b) in row.iter_mut().zip(bank) {
            let shared = m & b != 0;
            row_ones += u32::from(shared);
            *v = if shared { T::one() } else { T::zero() };
        }
        ones += row_ones as usize;
    }
    ones
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// `rows x classes` labels of zeros and ones, about a third of them ones (multi-hot, some
    /// rows empty like unvisited bank rows).
    fn multi_hot(seed: u64, rows: usize, classes: usize) -> Vec<f32> {
        let mut rng = SplitMix64::new(seed);
        (0..rows * classes)
            .map(|_| if rng.next_f64() < 0.3 { 1.0 } else { 0.0 })
            .collect()
    }

    #[test]
    fn masks_give_the_products_similarity() {
        for classes in [1, 10, 21, 32] {
            let (n, c) = (13, 29);
            let (y, bank) = (multi_hot(1, n, classes), multi_hot(2, c, classes));
            let (mut my, mut mb) = (Vec::new(), Vec::new());
            assert!(label_masks(&y, classes, &mut my) && label_masks(&bank, classes, &mut mb));
            let mut s = vec![0.5f32; n * c];
            let ones = similarity_from_masks(&my, &mb, &mut s);
            assert_eq!(ones, s.iter().filter(|&&v| v == 1.0).count());
            for i in 0..n {
                for j in 0..c {
                    let dot: f32 = (0..classes)
                        .map(|k| y[i * classes + k] * bank[j * classes + k])
                        .sum();
                    let want = if dot > 0.0 { 1.0 } else { 0.0 };
                    assert_eq!(s[i * c + j], want, "{classes} classes, pair ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn other_labels_have_no_masks() {
        let mut out = Vec::new();
        let ok = |labels: &[f32], classes, out: &mut Vec<u32>| label_masks(labels, classes, out);
        assert!(ok(&[0.0, 1.0, 1.0, 0.0], 2, &mut out));
        assert_eq!(out, [0b10, 0b01]);
        assert!(!ok(&[0.0, 0.5], 2, &mut out), "soft label");
        assert!(!ok(&[0.0, f32::NAN], 2, &mut out), "NaN");
        assert!(!ok(&[-1.0, 1.0], 2, &mut out), "negative");
        assert!(!ok(&[0.0; 33], 33, &mut out), "33 classes");
    }
}

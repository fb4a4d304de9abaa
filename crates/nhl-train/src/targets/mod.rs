//! Per-class target codes of the centre-based losses: CSQ hash centres (docs/METHOD.md 5.1) and DPN
//! target vectors (docs/METHOD.md 5.2), and the per-item targets of multi-label data.
//!
//! Every matrix is row-major `f32` with entries in {-1, +1}. Random parts come from
//! [`SplitMix64`] streams keyed by the run seed, the method and the code length, so a run is
//! reproducible and the lengths get independent draws, as the reference's independent calls do.

use nhl_index::eval::Labels;
use nhl_kernels::rng::SplitMix64;

use crate::error::TrainError;

mod class_order;
mod prefix;

pub use class_order::{class_means, dissimilar_class_order, reorder_classes};
pub use prefix::{csq_diverse_centres, csq_diverse_plain_centres, csq_prefix_centres};

/// Distinguishes the random streams of the different uses of one seed.
#[derive(Clone, Copy)]
enum Stream {
    CsqFill = 1,
    Dpn = 2,
    Tie = 3,
}

/// A generator for `(seed, stream, bits, item)`: the key is folded through SplitMix64's mixer one
/// word at a time, so nearby keys give unrelated streams (plain addition would make neighbouring
/// items' streams overlapping shifts of each other).
fn rng(seed: u64, stream: Stream, bits: usize, item: u64) -> SplitMix64 {
    let mut key = seed;
    for word in [stream as u64, bits as u64, item] {
        key = SplitMix64::new(key ^ word).next_u64();
    }
    SplitMix64::new(key)
}

/// The `n x n` Sylvester Hadamard matrix, `H[r][c] = (-1)^popcount(r & c)` (what
/// `scipy.linalg.hadamard` builds); `n` must be a power of two for its rows to be orthogonal:
/// `H H^T = n I`.
pub fn hadamard(n: usize) -> Vec<f32> {
    (0..n * n)
        .map(|i| {
            if ((i / n) & (i % n)).count_ones().is_multiple_of(2) {
                1.0
            } else {
                -1.0
            }
        })
        .collect()
}

/// A ±1 vector of length `bits` with exactly `minus` entries -1 at uniformly random positions.
fn balanced(rng: &mut SplitMix64, bits: usize, minus: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..bits)
        .map(|j| if j < minus { -1.0 } else { 1.0 })
        .collect();
    rng.shuffle(&mut v);
    v
}

/// Classes up to which the CSQ acceptance test of [`csq_centres`] runs. It compares every pair of
/// centres, so its cost grows with the square of the class count; beyond this count the random
/// centres are one draw, which keeps building them linear in the class count (at such counts
/// random rows rarely pass the test anyway, unless the codes are long).
pub const MAX_TESTED_CLASSES: usize = 4096;

/// CSQ hash centres, `n_classes x bits` (docs/METHOD.md 5.1), independent per length: the
/// reference's centres (`--centres independent`).
///
/// For a power-of-two `bits`, the rows of `[H_b; -H_b]` in order: class `c` gets row `c`, so
/// any two of the first `2b` centres are at Hamming distance `b/2` (or `b` for `c` and `c + b`).
/// When `2b < n_classes` the remaining classes get random balanced rows (exactly `b/2` entries
/// -1), redrawn up to 20 times until the minimum pairwise Hamming distance over all classes
/// exceeds `b/4` and the mean reaches `b/2`, else the last draw is kept; above
/// [`MAX_TESTED_CLASSES`] classes the first draw is kept untested. For any other `bits`
/// the centres are i.i.d. random signs (the NHL reference does this for lengths outside
/// 8..128; Hadamard rows exist for every power of two, so those use them).
pub fn csq_centres(bits: usize, n_classes: usize, seed: u64) -> Vec<f32> {
    let mut rng = rng(seed, Stream::CsqFill, bits, 0);
    if !bits.is_power_of_two() {
        return (0..n_classes * bits)
            .map(|_| if rng.next_u64() >> 63 == 0 { 1.0 } else { -1.0 })
            .collect();
    }
    let h = hadamard(bits);
    let stacked = h.iter().copied().chain(h.iter().map(|x| -x));
    let centres: Vec<f32> = stacked.take(n_classes.min(2 * bits) * bits).collect();
    fill_balanced(centres, bits, n_classes, &mut rng)
}

/// Completes `centres` (`2 bits` rows so far) to `n_classes` rows of random balanced vectors
/// (exactly `bits/2` entries -1), redrawn up to 20 times until the minimum pairwise Hamming
/// distance over all classes exceeds `bits/4` and the mean reaches `bits/2`, else keeping the
/// last draw, as the reference does; above [`MAX_TESTED_CLASSES`] classes the first draw is kept
/// untested. Returns `centres` unchanged when it already has every class.
fn fill_balanced(
    mut centres: Vec<f32>,
    bits: usize,
    n_classes: usize,
    rng: &mut SplitMix64,
) -> Vec<f32> {
    let fixed = centres.len() / bits;
    if n_classes <= fixed {
        return centres;
    }
    let tested = n_classes <= MAX_TESTED_CLASSES;
    for _attempt in 0..if tested { 20 } else { 1 } {
        centres.truncate(fixed * bits);
        for _ in fixed..n_classes {
            centres.extend(balanced(rng, bits, bits / 2));
        }
        if !tested || well_separated(&centres, bits) {
            break;
        }
    }
    centres
}

/// The first `bits` columns of a `rows x width` matrix.
pub fn prefix_columns(matrix: &[f32], width: usize, bits: usize) -> Vec<f32> {
    matrix
        .chunks_exact(width)
        .flat_map(|row| row[..bits].iter().copied())
        .collect()
}

/// The CSQ acceptance test: min pairwise Hamming distance > b/4 and mean >= b/2.
///
/// The mean needs no pair: bit `j` separates `ones_j (C - ones_j)` pairs, so the distances sum to
/// `sum_j ones_j (C - ones_j)`. The minimum compares the pairs on packed sign bits and stops at the
/// first pair that is too close.
fn well_separated(centres: &[f32], bits: usize) -> bool {
    let rows = centres.len() / bits;
    if rows < 2 {
        return true;
    }
    let mut ones = vec![0usize; bits];
    for row in centres.chunks_exact(bits) {
        for (count, &x) in ones.iter_mut().zip(row) {
            *count += usize::from(x > 0.0);
        }
    }
    let sum: usize = ones.iter().map(|&o| o * (rows - o)).sum();
    let pairs = rows * (rows - 1) / 2;
    if 2 * sum < bits * pairs {
        return false;
    }
    let words = bits.div_ceil(64);
    let mut packed = vec![0u64; rows * words];
    for (code, row) in packed
        .chunks_exact_mut(words)
        .zip(centres.chunks_exact(bits))
    {
        for (j, &x) in row.iter().enumerate() {
            code[j / 64] |= u64::from(x > 0.0) << (j % 64);
        }
    }
    let codes: Vec<&[u64]> = packed.chunks_exact(words).collect();
    codes.iter().enumerate().all(|(i, a)| {
        codes[i + 1..].iter().all(|b| {
            let d: u32 = a.iter().zip(*b).map(|(x, y)| (x ^ y).count_ones()).sum();
            4 * d as usize > bits
        })
    })
}

/// DPN target vectors, `n_classes x bits` (docs/METHOD.md 5.2): each class independently gets a random
/// ±1 vector with exactly `floor(bits * p)` entries -1 (`p = 0.5` in the reference). The reference
/// draws 20 times and keeps the last draw without any test, which is one draw in distribution, so
/// one seeded draw is made.
pub fn dpn_targets(bits: usize, n_classes: usize, p: f64, seed: u64) -> Vec<f32> {
    let minus = ((bits as f64 * p.clamp(0.0, 1.0)).floor() as usize).min(bits);
    let mut rng = rng(seed, Stream::Dpn, bits, 0);
    (0..n_classes)
        .flat_map(|_| balanced(&mut rng, bits, minus))
        .collect()
}

/// The number of classes of a `C x bits` centre matrix, or why it is not one.
fn classes_of(centres: &[f32], bits: usize) -> Result<usize, TrainError> {
    if bits == 0 || !centres.len().is_multiple_of(bits) {
        return Err(TrainError::TargetShape {
            len: centres.len(),
            bits,
        });
    }
    Ok(centres.len() / bits)
}

/// The per-item targets `h(y)` (`n x bits`) for class `centres` (`C x bits`, from
/// [`csq_centres`] or [`dpn_targets`]).
///
/// Single-label: `h = centre[y]`. Multi-label: `t = sum of the centres of the item's classes`;
/// `h_j = +1 where t_j > 0`, `-1 where t_j < 0`, and where `t_j = 0` (the classes cancel, or the
/// item has none) a fixed random ±1 drawn once per item from `seed`, so the tie pattern of an
/// item never changes during training. Item `i` is the `i`-th entry of `labels`.
pub fn label_targets(
    centres: &[f32],
    bits: usize,
    labels: &Labels,
    seed: u64,
) -> Result<Vec<f32>, TrainError> {
    let n_classes = classes_of(centres, bits)?;
    let centre = |item: usize, class: u32| {
        centres
            .get(class as usize * bits..(class as usize + 1) * bits)
            .ok_or(TrainError::TargetClass {
                item,
                class,
                n_classes,
            })
    };
    let mut out = Vec::new();
    match labels {
        Labels::Single(classes) => {
            out.reserve(classes.len() * bits);
            for (item, &class) in classes.iter().enumerate() {
                out.extend_from_slice(centre(item, class)?);
            }
        }
        Labels::Multi { rows, .. } => {
            out.reserve(rows.len() * bits);
            for (item, classes) in rows.iter().enumerate() {
                let mut t = vec![0.0f32; bits];
                for &class in classes {
                    for (tj, cj) in t.iter_mut().zip(centre(item, class)?) {
                        *tj += cj;
                    }
                }
                let mut tie = rng(seed, Stream::Tie, bits, item as u64);
                out.extend(t.into_iter().map(|tj| {
                    // Drawn for every bit, tie or not, so an item's tie pattern is one fixed
                    // vector regardless of where its ties fall.
                    let coin = if tie.next_u64() >> 63 == 0 { 1.0 } else { -1.0 };
                    match tj {
                        t if t > 0.0 => 1.0,
                        t if t < 0.0 => -1.0,
                        _ => coin,
                    }
                }));
            }
        }
    }
    Ok(out)
}

/// Which row of a length's target table ([`target_table`]) holds each training item's target:
/// the item's class for single-label data, the item itself for multi-label data.
pub fn target_rows(labels: &Labels) -> Vec<u32> {
    match labels {
        Labels::Single(classes) => classes.clone(),
        Labels::Multi { rows, .. } => (0..rows.len() as u32).collect(),
    }
}

/// The target table of one length, indexed by [`target_rows`]. Single-label data uses the class
/// `centres` themselves (`C x bits`), after checking that every item's class has one: a few rows
/// that stay in the first-level cache, where a row per item would be fetched from memory at
/// random for every batch item. Multi-label data gets one row per item from [`label_targets`].
pub fn target_table(
    centres: &[f32],
    bits: usize,
    labels: &Labels,
    seed: u64,
) -> Result<Vec<f32>, TrainError> {
    match labels {
        Labels::Single(classes) => {
            let n_classes = classes_of(centres, bits)?;
            match classes
                .iter()
                .enumerate()
                .find(|&(_, &class)| class as usize >= n_classes)
            {
                Some((item, &class)) => Err(TrainError::TargetClass {
                    item,
                    class,
                    n_classes,
                }),
                None => Ok(centres.to_vec()),
            }
        }
        Labels::Multi { .. } => label_targets(centres, bits, labels, seed),
    }
}

/// Hamming distance between two ±1 vectors.
#[cfg(test)]
fn hamming(a: &[f32], b: &[f32]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(m: &[f32], bits: usize, r: usize) -> &[f32] {
        &m[r * bits..(r + 1) * bits]
    }

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// The acceptance test as stated: every pair compared on the ±1 entries.
    fn well_separated_by_pairs(centres: &[f32], bits: usize) -> bool {
        let rows: Vec<&[f32]> = centres.chunks_exact(bits).collect();
        let (mut min, mut sum, mut pairs) = (usize::MAX, 0usize, 0usize);
        for i in 0..rows.len() {
            for j in i + 1..rows.len() {
                let d = hamming(rows[i], rows[j]);
                min = min.min(d);
                sum += d;
                pairs += 1;
            }
        }
        pairs == 0 || (4 * min > bits && 2 * sum >= bits * pairs)
    }

    #[test]
    fn the_packed_acceptance_test_agrees_with_the_pairwise_one() {
        let mut rng = SplitMix64::new(3);
        for bits in [4, 8, 16, 64, 100, 128] {
            for classes in [1, 2, 3, 10, 40] {
                for minus in [0, bits / 4, bits / 2] {
                    let c: Vec<f32> = (0..classes)
                        .flat_map(|_| balanced(&mut rng, bits, minus))
                        .collect();
                    assert_eq!(
                        well_separated(&c, bits),
                        well_separated_by_pairs(&c, bits),
                        "{bits} bits, {classes} classes, {minus} minus"
                    );
                }
            }
        }
    }

    /// Far more classes than the acceptance test compares: one balanced draw per class, built in
    /// time linear in the class count (the pairwise test would compare 1.25e9 pairs 20 times).
    #[test]
    fn many_classes_get_one_untested_draw() {
        let classes = 50_000;
        let c = csq_centres(64, classes, 9);
        assert_eq!(c.len(), classes * 64);
        assert_eq!(&c[..128 * 64], &csq_centres(64, 128, 9)[..]);
        for row in c.chunks_exact(64).skip(128) {
            assert_eq!(row.iter().filter(|&&x| x == -1.0).count(), 32);
        }
        assert_eq!(csq_centres(64, classes, 9), c);
    }

    #[test]
    fn hadamard_rows_are_orthogonal_and_follow_the_popcount_rule() {
        for n in [1, 2, 8, 32, 128] {
            let h = hadamard(n);
            for r in 0..n {
                for s in 0..n {
                    let expected = if r == s { n as f32 } else { 0.0 };
                    assert_eq!(
                        dot(row(&h, n, r), row(&h, n, s)),
                        expected,
                        "n {n} rows {r} {s}"
                    );
                }
            }
        }
        let h = hadamard(8);
        // (3, 5): 3 & 5 = 1, one set bit.
        assert_eq!(h[3 * 8 + 5], -1.0);
        // (3, 7): 3 & 7 = 3, two set bits.
        assert_eq!(h[3 * 8 + 7], 1.0);
    }

    #[test]
    fn csq_centres_stack_h_and_minus_h() {
        let c8 = csq_centres(8, 10, 0);
        let h8 = hadamard(8);
        assert_eq!(&c8[..64], &h8[..]);
        // Classes 8 and 9 are rows 0 and 1 of -H8.
        let minus: Vec<f32> = h8[..16].iter().map(|x| -x).collect();
        assert_eq!(&c8[64..], &minus[..]);
        let c16 = csq_centres(16, 10, 0);
        assert_eq!(c16, hadamard(16)[..160].to_vec());
        // No randomness when 2b >= C: the seed does not matter.
        assert_eq!(csq_centres(8, 10, 99), c8);
    }

    #[test]
    fn csq_fill_is_balanced_separated_and_seeded() {
        let bits = 8;
        let c = csq_centres(bits, 24, 5);
        assert_eq!(c.len(), 24 * bits);
        assert_eq!(&c[..16 * bits], &csq_centres(bits, 16, 0)[..]);
        for r in 16..24 {
            let minus = row(&c, bits, r).iter().filter(|&&x| x == -1.0).count();
            assert_eq!(minus, bits / 2, "row {r} is balanced");
        }
        assert_eq!(csq_centres(bits, 24, 5), c);
        assert_ne!(csq_centres(bits, 24, 6), c);
        // With 64 bits and 200 classes the test is easy to pass on the first draws.
        assert!(well_separated(&csq_centres(64, 200, 1), 64));
    }

    #[test]
    fn csq_non_power_of_two_is_random_signs() {
        let c = csq_centres(12, 10, 3);
        assert_eq!(c.len(), 120);
        assert!(c.iter().all(|&x| x == 1.0 || x == -1.0));
        let minus = c.iter().filter(|&&x| x == -1.0).count();
        assert!((30..90).contains(&minus), "{minus} of 120 are -1");
        assert_eq!(csq_centres(12, 10, 3), c);
        assert_ne!(csq_centres(12, 10, 4), c);
    }

    #[test]
    fn dpn_targets_have_exactly_floor_bp_minus_ones() {
        for bits in [7, 8, 64] {
            let t = dpn_targets(bits, 10, 0.5, 11);
            for r in 0..10 {
                let minus = row(&t, bits, r).iter().filter(|&&x| x == -1.0).count();
                assert_eq!(minus, bits / 2, "bits {bits} row {r}");
            }
            assert_eq!(dpn_targets(bits, 10, 0.5, 11), t);
        }
        assert_ne!(dpn_targets(64, 10, 0.5, 11), dpn_targets(64, 10, 0.5, 12));
        assert_ne!(
            dpn_targets(64, 1, 0.5, 11),
            dpn_targets(32, 2, 0.5, 11)[..64].to_vec()
        );
    }

    #[test]
    fn target_tables_hold_what_label_targets_gives_at_the_item_rows() {
        let bits = 16;
        let c = csq_centres(bits, 10, 0);
        let multi = Labels::Multi {
            rows: vec![vec![0, 3], vec![], vec![8, 9], vec![2]],
            n_classes: 10,
        };
        for labels in [Labels::Single(vec![3, 9, 0, 3, 7]), multi] {
            let table = target_table(&c, bits, &labels, 5).unwrap();
            let per_item = label_targets(&c, bits, &labels, 5).unwrap();
            for (item, &r) in target_rows(&labels).iter().enumerate() {
                assert_eq!(row(&table, bits, r as usize), row(&per_item, bits, item));
            }
        }
        // Single-label tables are the centres: ten rows, not one per item.
        let single = Labels::Single(vec![1; 1000]);
        assert_eq!(target_table(&c, bits, &single, 0).unwrap(), c);
        let bad = target_table(&c, bits, &Labels::Single(vec![2, 10]), 0).unwrap_err();
        assert!(bad.to_string().contains("item 1 has class 10"), "{bad}");
        assert!(target_table(&c, 7, &Labels::Single(vec![0]), 0).is_err());
    }

    #[test]
    fn label_targets_sum_centres_and_break_ties_per_item() {
        let bits = 8;
        let c = csq_centres(bits, 10, 0);
        let single = label_targets(&c, bits, &Labels::Single(vec![3, 9]), 0).unwrap();
        assert_eq!(&single[..8], row(&c, bits, 3));
        assert_eq!(&single[8..], row(&c, bits, 9));

        // Classes 0 and 8 cancel everywhere, so item 0 is its tie vector; classes 1 and 2 agree
        // on half of the bits and tie on the rest.
        let rows = vec![vec![0, 8], vec![1, 2], vec![0], vec![0, 8]];
        let multi = Labels::Multi {
            n_classes: 10,
            rows,
        };
        let t = label_targets(&c, bits, &multi, 7).unwrap();
        assert_eq!(t, label_targets(&c, bits, &multi, 7).unwrap());
        assert!(t.iter().all(|&x| x == 1.0 || x == -1.0));
        assert_ne!(
            row(&t, bits, 0),
            row(&t, bits, 3),
            "items draw their own ties"
        );
        for j in 0..bits {
            let (a, b) = (c[bits + j], c[2 * bits + j]);
            if a == b {
                assert_eq!(t[bits + j], a);
            }
        }
        assert_eq!(row(&t, bits, 2), row(&c, bits, 0));
        assert_ne!(label_targets(&c, bits, &multi, 8).unwrap(), t);

        let bad = label_targets(&c, bits, &Labels::Single(vec![10]), 0).unwrap_err();
        assert!(bad.to_string().contains("class 10"), "{bad}");
        assert!(label_targets(&c, 7, &Labels::Single(vec![0]), 0).is_err());
    }
}

//! Prefix-consistent CSQ centres (docs/METHOD.md 5.1): one signed Hadamard row per class for the
//! longest length, whose prefixes are every shorter length's centres, on the protocol's rows or on
//! the diverse rows that give each long bit a class partition of its own.

use super::{csq_centres, fill_balanced, hadamard, rng, Stream};

/// The protocol's prefix-consistent CSQ centres (docs/PROTOCOL.md, "CSQ hash centres";
/// `--centres prefix`): one centre per class for the longest length `B = lengths.last()`, whose
/// first `b` entries are the centre of every shorter length `b`, so the lengths never pull a class
/// towards different targets on shared bits.
///
/// Class `c` gets `(-1)^popcount(floor(c / s)) H_B[c mod B]` with block `s = min(8, b0)`, `b0`
/// the shortest length (the protocol's `s = 8` whenever `b0 >= 8`; a shorter `b0` takes `s = b0`,
/// without which classes `c` and `c + b0` would share a `b0`-bit centre). Since `H_B[r][j]`
/// depends only on the bits of `r` shared with `j`, the `b0`-bit prefixes of the first `2 b0`
/// classes are a signed reordering of `[H_b0; -H_b0]` (exactly the standard centres for
/// `b0 = 8`), and at every length `b` each prefix is a signed row of `H_b`, so classes stay as far
/// apart as the standard centres keep them. Classes `c` and `c + B` are antipodal; past `2 B`
/// classes the random balanced fill of [`csq_centres`] completes the longest centres. Lengths
/// that are not powers of two fall back to the prefixes of [`csq_centres`] of the longest length.
/// Returns `n_classes x B`.
pub fn csq_prefix_centres(lengths: &[usize], n_classes: usize, seed: u64) -> Vec<f32> {
    signed_hadamard_centres(lengths, n_classes, seed, |x, _| x)
}

/// Prefix-consistent CSQ centres whose long codes carry a different class partition in every
/// bit (docs/METHOD.md 5.1, "Diverse rows"; `--centres diverse`, the default): the signs, the
/// fill and the fallback of [`csq_prefix_centres`], with class `c` on row `rho(c mod B)` of
/// `H_B` instead of row `c mod B`.
///
/// Bit `j` of the `b`-bit centres splits the classes by the parity of `rho(c) & j` (times the
/// class's sign). With `rho(x) = x`, as in [`csq_prefix_centres`], the rows of `C` classes have
/// only their low `q = ceil(log2 min(C, B))` bits set, so the columns repeat with period `2^q`:
/// ten classes give 16 distinct partitions (one of them constant), and a 128-bit code is those
/// 16 partitions eight times over. Here `rho(x) = x + 2^q M(x)`: the bits above `q` hold the
/// products of `x`'s bits (the AND of the bits in each monomial mask of popcount 2 or more, masks
/// below `2^q` in order of popcount, then value), as many as `log2 B - q` bits allow. The rows'
/// low `q` bits are still `x`, so the centres of every length up to `2^q` equal
/// [`csq_prefix_centres`]'s, and every length keeps distinct signed Hadamard rows (classes stay
/// `b/2` apart). The products are not linear in `x`, so the rows span more dimensions and each
/// extra dimension doubles the distinct partitions: ten classes get 32, 64 and 128 distinct
/// partitions at 32, 64 and 128 bits (one of them constant), as random centres would, without
/// giving up the Hadamard distances.
pub fn csq_diverse_centres(lengths: &[usize], n_classes: usize, seed: u64) -> Vec<f32> {
    signed_hadamard_centres(lengths, n_classes, seed, diverse_row)
}

/// The row of `H_B` (`B = 2^log_b`) that [`csq_diverse_centres`] gives class index `x < 2^q`:
/// `x` in the low `q` bits, then one bit per monomial mask of `x`'s bits (popcount 2 or more, in
/// order of popcount, then value) while bits remain.
fn diverse_row(x: usize, (q, log_b): (u32, u32)) -> usize {
    if log_b <= q {
        return x;
    }
    let mut masks: Vec<usize> = (0..1usize << q).filter(|m| m.count_ones() >= 2).collect();
    masks.sort_by_key(|&m| (m.count_ones(), m));
    let products = masks
        .iter()
        .take((log_b - q) as usize)
        .enumerate()
        .fold(0, |acc, (i, &m)| acc | (usize::from(x & m == m) << i));
    x | products << q
}

/// The shared body of [`csq_prefix_centres`] and [`csq_diverse_centres`]: class `c` gets
/// `(-1)^popcount(floor(c / s)) H_B[row(c mod B, (q, log2 B))]`, `q` the bits that index the
/// first `min(C, B)` classes; past `2 B` classes the balanced fill.
fn signed_hadamard_centres(
    lengths: &[usize],
    n_classes: usize,
    seed: u64,
    row: impl Fn(usize, (u32, u32)) -> usize,
) -> Vec<f32> {
    let (Some(&b0), Some(&longest)) = (lengths.first(), lengths.last()) else {
        return Vec::new();
    };
    if !lengths.iter().all(|b| b.is_power_of_two()) {
        return csq_centres(longest, n_classes, seed);
    }
    let block = b0.min(8);
    let h = hadamard(longest);
    let shape = (
        n_classes
            .min(longest)
            .max(1)
            .next_power_of_two()
            .trailing_zeros(),
        longest.trailing_zeros(),
    );
    let signed: Vec<f32> = (0..n_classes.min(2 * longest))
        .flat_map(|c| {
            let sign = if (c / block).count_ones() % 2 == 0 {
                1.0
            } else {
                -1.0
            };
            let r = row(c % longest, shape);
            h[r * longest..(r + 1) * longest]
                .iter()
                .map(move |v| sign * v)
                .collect::<Vec<f32>>()
        })
        .collect();
    let mut rng = rng(seed, Stream::CsqFill, longest, 0);
    fill_balanced(signed, longest, n_classes, &mut rng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::{hamming, prefix_columns};

    #[test]
    fn prefix_centres_nest_and_match_the_shortest_standard_centres() {
        let lengths = [8, 16, 32, 64, 128];
        let long = csq_prefix_centres(&lengths, 10, 0);
        assert_eq!(long.len(), 10 * 128);
        // The 8-bit prefixes are exactly the standard 8-bit centres (classes 8, 9 = -H8 rows).
        assert_eq!(prefix_columns(&long, 128, 8), csq_centres(8, 10, 0));
        // At 8 bits classes c and c + 8 are opposite; from 16 bits on every pair is orthogonal,
        // as with the standard centres, so the longer bits add class structure of their own.
        for &b in &lengths {
            let p = prefix_columns(&long, 128, b);
            let rows: Vec<&[f32]> = p.chunks_exact(b).collect();
            for i in 0..10 {
                for j in i + 1..10 {
                    let d = hamming(rows[i], rows[j]);
                    let opposite = b == 8 && j == i + 8;
                    let expected = if opposite { b } else { b / 2 };
                    assert_eq!(d, expected, "{b} bits, classes {i} {j}");
                }
            }
        }
    }

    /// The protocol's rule `(-1)^popcount(floor(c/8)) H_B[c mod B]`, entry by entry, for more
    /// classes than the longest length holds, and the balanced fill past `2 B` classes.
    #[test]
    fn prefix_centres_follow_the_protocol_rule_for_any_class_count() {
        let (lengths, b) = ([8usize, 16, 32], 32usize);
        let classes = 2 * b + 5;
        let centres = csq_prefix_centres(&lengths, classes, 4);
        assert_eq!(centres.len(), classes * b);
        let h = hadamard(b);
        for c in 0..2 * b {
            let sign = if (c / 8).count_ones() % 2 == 0 {
                1.0
            } else {
                -1.0
            };
            let row: Vec<f32> = h[(c % b) * b..(c % b + 1) * b]
                .iter()
                .map(|v| sign * v)
                .collect();
            assert_eq!(&centres[c * b..(c + 1) * b], &row[..], "class {c}");
        }
        // Every signed Hadamard row is used once: the first 2B classes are all distinct.
        let rows: Vec<&[f32]> = centres.chunks_exact(b).collect();
        for i in 0..2 * b {
            for j in i + 1..2 * b {
                assert_ne!(rows[i], rows[j], "classes {i} and {j}");
            }
        }
        // Past 2B classes: balanced rows (b/2 entries -1).
        for row in &rows[2 * b..] {
            assert_eq!(row.iter().filter(|&&v| v < 0.0).count(), b / 2);
        }
    }

    /// A shortest length below 8 takes its own length as the sign block, so classes `c` and
    /// `c + b0` still get opposite `b0`-bit centres instead of equal ones.
    #[test]
    fn prefix_centres_keep_short_lengths_apart() {
        let centres = csq_prefix_centres(&[4, 16], 8, 1);
        let short = prefix_columns(&centres, 16, 4);
        assert_eq!(short, csq_centres(4, 8, 1));
    }

    /// The class partitions that the columns of a `classes x bits` centre matrix carry, a
    /// partition and its complement counted once, constant columns left out.
    fn partitions(centres: &[f32], classes: usize, bits: usize) -> usize {
        let mut seen = std::collections::BTreeSet::new();
        for j in 0..bits {
            let column: Vec<bool> = (0..classes)
                .map(|c| (centres[c * bits + j] > 0.0) == (centres[j] > 0.0))
                .collect();
            if column.iter().any(|&same| !same) {
                seen.insert(column);
            }
        }
        seen.len()
    }

    /// Ten classes: the rows are `x` plus the products of its bits 0-1, 0-2 and 1-2 above bit 4.
    #[test]
    fn diverse_rows_add_products_of_the_class_bits() {
        let rows: Vec<usize> = (0..10).map(|x| diverse_row(x, (4, 7))).collect();
        assert_eq!(
            rows,
            [0, 1, 2, 3 + 16, 4, 5 + 32, 6 + 64, 7 + 16 + 32 + 64, 8, 9]
        );
        // No room above q: the protocol's rows.
        assert!((0..16).all(|x| diverse_row(x, (4, 4)) == x));
        assert_eq!(diverse_row(3, (4, 5)), 3 + 16);
        assert_eq!(diverse_row(5, (4, 5)), 5);
    }

    #[test]
    fn diverse_centres_keep_the_short_centres_and_the_hadamard_distances() {
        let lengths = [8, 16, 32, 64, 128];
        let diverse = csq_diverse_centres(&lengths, 10, 0);
        let prefix = csq_prefix_centres(&lengths, 10, 0);
        assert_eq!(diverse.len(), 10 * 128);
        // Up to 2^q = 16 bits the centres are the protocol's, so the 8-bit ones are the standard.
        for b in [8, 16] {
            assert_eq!(
                prefix_columns(&diverse, 128, b),
                prefix_columns(&prefix, 128, b)
            );
        }
        assert_ne!(
            prefix_columns(&diverse, 128, 32),
            prefix_columns(&prefix, 128, 32)
        );
        for &b in &lengths {
            let p = prefix_columns(&diverse, 128, b);
            let rows: Vec<&[f32]> = p.chunks_exact(b).collect();
            for i in 0..10 {
                for j in i + 1..10 {
                    let opposite = b == 8 && j == i + 8;
                    let expected = if opposite { b } else { b / 2 };
                    assert_eq!(hamming(rows[i], rows[j]), expected, "{b} bits, {i} {j}");
                }
            }
        }
    }

    /// What the diverse rows are for: with the protocol's rows the long codes repeat 15 class
    /// partitions; with the diverse rows every bit but one (bit 8, which the class signs cancel)
    /// carries a partition of its own.
    #[test]
    fn diverse_centres_give_the_long_bits_partitions_of_their_own() {
        let lengths = [8, 16, 32, 64, 128];
        let diverse = csq_diverse_centres(&lengths, 10, 0);
        let prefix = csq_prefix_centres(&lengths, 10, 0);
        for &b in &lengths {
            let d = partitions(&prefix_columns(&diverse, 128, b), 10, b);
            let p = partitions(&prefix_columns(&prefix, 128, b), 10, b);
            assert_eq!(d, if b == 8 { 8 } else { b - 1 }, "diverse, {b} bits");
            assert_eq!(p, if b == 8 { 8 } else { 15 }, "prefix, {b} bits");
        }
        // A single 32-bit model (its own longest length) gets its own diverse rows.
        let single = csq_diverse_centres(&[32], 10, 0);
        assert_eq!(partitions(&single, 10, 32), 31);
    }

    /// Where the class count fills the row index, or past `2 B` classes, or for lengths that are
    /// not powers of two, the diverse centres are the protocol's.
    #[test]
    fn diverse_centres_fall_back_to_the_protocol_rule_where_no_bits_are_free() {
        let (lengths, b) = ([8usize, 16, 32], 32usize);
        for classes in [b, 2 * b + 5] {
            assert_eq!(
                csq_diverse_centres(&lengths, classes, 4),
                csq_prefix_centres(&lengths, classes, 4)
            );
        }
        assert_eq!(
            csq_diverse_centres(&[8, 24], 10, 3),
            csq_prefix_centres(&[8, 24], 10, 3)
        );
        assert!(csq_diverse_centres(&[], 10, 0).is_empty());
    }
}

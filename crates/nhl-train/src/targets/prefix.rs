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

/// Prefix-consistent CSQ centres whose codes carry a different class partition in every bit
/// (docs/METHOD.md 5.1, "Diverse rows"; `--centres diverse`, the default): the signs, the fill and
/// the fallback of [`csq_prefix_centres`], with class `c` on row `rho(c mod B)` of `H_B` instead of
/// row `c mod B`.
///
/// Bit `j` of the `b`-bit centres splits the classes by the parity of `rho(c) & j` times the
/// class's sign `sigma(c) = (-1)^popcount(floor(c / s))`. With `rho(x) = x`, as in
/// [`csq_prefix_centres`], two things waste bits. The rows of `C` classes have only their low
/// `q = ceil(log2 min(C, B))` bits set, so the columns repeat with period `2^q`: ten classes give
/// 16 distinct partitions, and a 128-bit code is those 16 eight times over. And the sign is itself
/// a column: `sigma` is the parity of the row bits from `log2 s` up, so the column `j` with exactly
/// those bits set puts every class on one side, in every code of `2 s` bits or more (bit 8 for ten
/// classes, one bit of a 16-bit code carrying nothing).
///
/// Here `rho` mends both with products of the class index's bits, which no parity can reproduce:
/// - the sign bit: where `s >= 4` and some class index holds bits 0 and 1 and bit `log2 s`, row
///   bit `log2 s` is `x`'s XORed with `x_0 AND x_1`, so `sigma` is no longer a column (taken only
///   while the product it spends leaves enough products for the bits above `q`);
/// - the bits above `q`: each holds the AND of the bits of one monomial mask of popcount 2 or more
///   (masks below `min(C, B)`, so that some class holds each; in order of popcount, then value; the
///   sign bit's product left out), as many as `log2 B - q` bits allow.
///
/// Both keep the low `log2 s` bits as `x`'s, so the shortest centres (`b_0 <= 8`) are
/// [`csq_prefix_centres`]'s, the standard centres for `b_0 = 8`; and both are bijections of the
/// class places, so every length keeps distinct signed Hadamard rows (classes stay `b/2` apart).
/// Ten classes get 16, 32, 64 and 128 distinct partitions at 16 to 128 bits, none of them
/// constant, as many as the bits.
pub fn csq_diverse_centres(lengths: &[usize], n_classes: usize, seed: u64) -> Vec<f32> {
    signed_hadamard_centres(lengths, n_classes, seed, |x, shape| {
        diverse_row(x, shape, true)
    })
}

/// The diverse rows before the sign bit was mended (`--centres diverse-plain`, kept to compare
/// with and to rerun the figures measured with it): [`csq_diverse_centres`] with row bit `log2 s`
/// left as `x`'s, so `sigma` stays a constant column, and the masks of the bits above `q` taken
/// from every number below `2^q`, a mask that no class holds giving a row bit of 0 for all.
pub fn csq_diverse_plain_centres(lengths: &[usize], n_classes: usize, seed: u64) -> Vec<f32> {
    signed_hadamard_centres(lengths, n_classes, seed, |x, shape| {
        diverse_row(x, shape, false)
    })
}

/// The sizes a row rule of [`signed_hadamard_centres`] reads.
#[derive(Clone, Copy, Debug)]
struct RowShape {
    /// The class places that get a row: `min(C, B)`.
    places: usize,
    /// Bits that number the places: `ceil(log2 places)`.
    q: u32,
    /// `log2 B`.
    log_b: u32,
    /// `log2 s`, the lowest bit of the class index that its sign reads.
    sign_bit: u32,
}

/// The row of `H_B` that [`csq_diverse_centres`] (`mend`) or [`csq_diverse_plain_centres`] gives
/// class place `x < 2^q`.
fn diverse_row(x: usize, shape: RowShape, mend: bool) -> usize {
    const LOW_PAIR: usize = 0b11;
    let RowShape {
        places,
        q,
        log_b,
        sign_bit,
    } = shape;
    let candidates = if mend { places } else { 1 << q };
    let mut masks: Vec<usize> = (0..candidates).filter(|m| m.count_ones() >= 2).collect();
    masks.sort_by_key(|&m| (m.count_ones(), m));
    let above = log_b.saturating_sub(q) as usize;
    let flip_sign_bit =
        mend && sign_bit >= 2 && q > sign_bit && LOW_PAIR < places && masks.len() > above;
    if flip_sign_bit {
        masks.retain(|&m| m != LOW_PAIR);
    }
    let low = if flip_sign_bit && x & LOW_PAIR == LOW_PAIR {
        x ^ (1 << sign_bit)
    } else {
        x
    };
    let products = masks
        .iter()
        .take(above)
        .enumerate()
        .fold(0, |acc, (i, &m)| acc | (usize::from(x & m == m) << i));
    low | products << q
}

/// The shared body of [`csq_prefix_centres`] and [`csq_diverse_centres`]: class `c` gets
/// `(-1)^popcount(floor(c / s)) H_B[row(c mod B)]`; past `2 B` classes the balanced fill.
fn signed_hadamard_centres(
    lengths: &[usize],
    n_classes: usize,
    seed: u64,
    row: impl Fn(usize, RowShape) -> usize,
) -> Vec<f32> {
    let (Some(&b0), Some(&longest)) = (lengths.first(), lengths.last()) else {
        return Vec::new();
    };
    if !lengths.iter().all(|b| b.is_power_of_two()) {
        return csq_centres(longest, n_classes, seed);
    }
    let block = b0.min(8);
    let h = hadamard(longest);
    let places = n_classes.min(longest).max(1);
    let shape = RowShape {
        places,
        q: places.next_power_of_two().trailing_zeros(),
        log_b: longest.trailing_zeros(),
        sign_bit: block.trailing_zeros(),
    };
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

    fn shape(places: usize, q: u32, log_b: u32) -> RowShape {
        RowShape {
            places,
            q,
            log_b,
            sign_bit: 3,
        }
    }

    /// Ten classes: classes 3 and 7 (bits 0 and 1 set) move to the rows with bit 3 set, and the
    /// products of bits 0-2, 1-2 and 0-3 fill bits 4-6. The plain rows keep bit 3 as the class's
    /// and fill bits 4-6 with the products of bits 0-1, 0-2 and 1-2.
    #[test]
    fn diverse_rows_mend_the_sign_bit_and_add_products_of_the_class_bits() {
        let rows = |mend| -> Vec<usize> {
            (0..10)
                .map(|x| diverse_row(x, shape(10, 4, 7), mend))
                .collect()
        };
        assert_eq!(
            rows(true),
            [
                0,
                1,
                2,
                3 + 8,
                4,
                5 + 16,
                6 + 32,
                7 + 8 + 16 + 32,
                8,
                9 + 64
            ]
        );
        assert_eq!(
            rows(false),
            [0, 1, 2, 3 + 16, 4, 5 + 32, 6 + 64, 7 + 16 + 32 + 64, 8, 9]
        );
        // No room above q: the mended rows only move classes 3 and 7 across bit 3.
        let no_room: Vec<usize> = (0..16)
            .map(|x| diverse_row(x, shape(16, 4, 4), true))
            .collect();
        let swapped = |x: usize| if x & 3 == 3 { x ^ 8 } else { x };
        assert_eq!(no_room, (0..16).map(swapped).collect::<Vec<_>>());
        assert!((0..16).all(|x| diverse_row(x, shape(16, 4, 4), false) == x));
        // Products only of masks some class holds: with nine classes mask 9 (bits 0 and 3) is
        // passed over for mask 7.
        assert_eq!(diverse_row(7, shape(9, 4, 7), true), 7 ^ 8 | 0b111 << 4);
    }

    #[test]
    fn diverse_centres_keep_the_short_centres_and_the_hadamard_distances() {
        let lengths = [8, 16, 32, 64, 128];
        let prefix = csq_prefix_centres(&lengths, 10, 0);
        for diverse in [
            csq_diverse_centres(&lengths, 10, 0),
            csq_diverse_plain_centres(&lengths, 10, 0),
        ] {
            assert_eq!(diverse.len(), 10 * 128);
            // The 8-bit centres are the protocol's, the standard ones.
            assert_eq!(
                prefix_columns(&diverse, 128, 8),
                prefix_columns(&prefix, 128, 8)
            );
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
    }

    /// The columns that put every class on one side.
    fn constant_columns(centres: &[f32], classes: usize, bits: usize) -> usize {
        (0..bits)
            .filter(|&j| (0..classes).all(|c| centres[c * bits + j] == centres[j]))
            .count()
    }

    /// What the diverse rows are for: with the protocol's rows the long codes repeat 15 class
    /// partitions and every 16th bit from bit 8 on is constant; the plain diverse rows give every
    /// bit but bit 8 a partition of its own, the mended ones every bit.
    #[test]
    fn diverse_centres_give_every_bit_a_partition_of_its_own() {
        let lengths = [8, 16, 32, 64, 128];
        let diverse = csq_diverse_centres(&lengths, 10, 0);
        let plain = csq_diverse_plain_centres(&lengths, 10, 0);
        let prefix = csq_prefix_centres(&lengths, 10, 0);
        for &b in &lengths {
            let count = |centres: &[f32]| {
                let p = prefix_columns(centres, 128, b);
                (partitions(&p, 10, b), constant_columns(&p, 10, b))
            };
            let short = b == 8;
            assert_eq!(count(&diverse), (b, 0), "diverse, {b} bits");
            assert_eq!(
                count(&plain),
                if short { (8, 0) } else { (b - 1, 1) },
                "plain, {b} bits"
            );
            assert_eq!(
                count(&prefix),
                if short { (8, 0) } else { (15, b / 16) },
                "prefix, {b} bits"
            );
        }
        // A single 16- or 32-bit model (its own longest length) gets its own diverse rows.
        for b in [16, 32] {
            let single = csq_diverse_centres(&[b], 10, 0);
            assert_eq!(partitions(&single, 10, b), b);
        }
    }

    /// The minimum distance between two classes' centres.
    fn min_distance(centres: &[f32], classes: usize, bits: usize) -> usize {
        let rows: Vec<&[f32]> = centres.chunks_exact(bits).take(classes).collect();
        (0..classes)
            .flat_map(|i| (i + 1..classes).map(move |j| (i, j)))
            .map(|(i, j)| hamming(rows[i], rows[j]))
            .min()
            .unwrap_or(0)
    }

    /// For any class count and lengths, the mended rows are never worse than the plain ones at any
    /// length (minimum distance, constant columns, distinct partitions), keep the shortest
    /// centres for a shortest length up to 8, and give the classes distinct rows.
    #[test]
    fn mended_rows_are_never_worse_than_the_plain_ones() {
        let sets: [&[usize]; 6] = [
            &[8, 16, 32, 64],
            &[8, 16],
            &[4, 8, 16, 32],
            &[16, 32, 64],
            &[4, 16, 64],
            &[2, 8, 32],
        ];
        let mut better = 0;
        for lengths in sets {
            let longest = *lengths.last().unwrap();
            for classes in 2..=(2 * longest).min(24) {
                let mended = csq_diverse_centres(lengths, classes, 1);
                let plain = csq_diverse_plain_centres(lengths, classes, 1);
                for &b in lengths {
                    let (m, p) = (
                        prefix_columns(&mended, longest, b),
                        prefix_columns(&plain, longest, b),
                    );
                    let what = format!("{lengths:?}, {classes} classes, {b} bits");
                    assert!(
                        min_distance(&m, classes, b) >= min_distance(&p, classes, b),
                        "{what}"
                    );
                    let (cm, cp) = (
                        constant_columns(&m, classes, b),
                        constant_columns(&p, classes, b),
                    );
                    let (pm, pp) = (partitions(&m, classes, b), partitions(&p, classes, b));
                    assert!(cm <= cp && pm >= pp, "{what}: {cm} {pm} against {cp} {pp}");
                    better += usize::from(cm < cp || pm > pp);
                }
                if lengths[0] <= 8 {
                    let b0 = lengths[0];
                    assert_eq!(
                        prefix_columns(&mended, longest, b0),
                        prefix_columns(&plain, longest, b0),
                        "{lengths:?}, {classes} classes"
                    );
                }
                let rows: std::collections::BTreeSet<Vec<i8>> = mended
                    .chunks_exact(longest)
                    .take(classes.min(longest))
                    .map(|r| r.iter().map(|&v| v as i8).collect())
                    .collect();
                assert_eq!(
                    rows.len(),
                    classes.min(longest),
                    "{lengths:?}, {classes} classes"
                );
            }
        }
        assert!(better > 50, "the mend changed only {better} codes");
    }

    /// Where the class count fills the row index, or past `2 B` classes, the diverse centres are
    /// the protocol's with classes moved across the sign bit; lengths that are not powers of two
    /// fall back to the protocol's rule.
    #[test]
    fn diverse_centres_fall_back_to_the_protocol_rule_where_no_bits_are_free() {
        let (lengths, b) = ([8usize, 16, 32], 32usize);
        for classes in [b, 2 * b + 5] {
            let diverse = csq_diverse_centres(&lengths, classes, 4);
            let prefix = csq_prefix_centres(&lengths, classes, 4);
            assert_eq!(
                csq_diverse_plain_centres(&lengths, classes, 4),
                prefix,
                "{classes} classes"
            );
            let moved = |c: usize| if c % 4 == 3 { c ^ 8 } else { c };
            for c in 0..classes.min(2 * b) {
                let sign = if (c / 8).count_ones() % 2 == (moved(c) / 8).count_ones() % 2 {
                    1.0
                } else {
                    -1.0
                };
                let want: Vec<f32> = prefix[moved(c) * b..(moved(c) + 1) * b]
                    .iter()
                    .map(|v| sign * v)
                    .collect();
                assert_eq!(
                    &diverse[c * b..(c + 1) * b],
                    &want[..],
                    "{classes} classes, class {c}"
                );
            }
            if classes > 2 * b {
                assert_eq!(diverse[2 * b * b..], prefix[2 * b * b..], "the fill");
            }
        }
        assert_eq!(
            csq_diverse_centres(&[8, 24], 10, 3),
            csq_prefix_centres(&[8, 24], 10, 3)
        );
        assert!(csq_diverse_centres(&[], 10, 0).is_empty());
    }
}

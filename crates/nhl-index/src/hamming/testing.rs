//! What the emulated-lane tests of [`super::lanescan`] and [`super::fastscan`] share: the
//! code-by-code reference of a threshold scan, biased random words, the threshold rules and the
//! allowed-row patterns.

use super::portable::distance;
use super::raw::{RawCodes, RowBits, Rows};
use crate::synth::SplitMix64;

/// Per query, the codes in ascending order whose distance is below the query's limit at their
/// turn and whose position `base + j` is in `allow` (if given), the limit becoming
/// `next(query, d)` after each hit.
pub(super) fn reference(
    qs: &[&[u64]],
    codes: RawCodes<'_>,
    limit0: &[u32],
    next: impl Fn(usize, u32) -> u32,
    base: usize,
    allow: Option<RowBits<'_>>,
) -> Vec<Vec<(usize, u32)>> {
    let (db, stride, words, mask) = (codes.data(), codes.stride(), codes.words(), codes.mask());
    qs.iter()
        .enumerate()
        .map(|(i, q)| {
            let mut limit = limit0[i];
            let mut hits = Vec::new();
            for j in 0..codes.len() {
                if allow.is_some_and(|bits| !bits.contains(base + j)) {
                    continue;
                }
                let d = distance(&q[..words], &db[j * stride..j * stride + words], mask);
                if d < limit {
                    hits.push((j, d));
                    limit = next(i, d);
                }
            }
            hits
        })
        .collect()
}

/// A threshold rule: the limit after a hit, from (query, distance).
pub(super) type Next = Box<dyn Fn(usize, u32) -> u32>;

/// Random words with a bias, so that distances spread from 0 to the width, both included.
pub(super) fn words_for(rng: &mut SplitMix64, count: usize, near: &[u64]) -> Vec<u64> {
    (0..count)
        .map(|w| {
            let flips = rng.next_u64() & rng.next_u64() & rng.next_u64();
            match rng.below(5) {
                0 => rng.next_u64(),
                1 => near[w % near.len()],
                2 => !near[w % near.len()],
                _ => near[w % near.len()] ^ flips,
            }
        })
        .collect()
}

/// The threshold rules the fused filters are tested with, for codes of `width` bits and `nq`
/// queries: (name, the limit after a hit, the first limits).
pub(super) fn limit_rules(width: u32, nq: usize) -> [(&'static str, Next, Vec<u32>); 7] {
    [
        ("all", Box::new(move |_, _| width + 1), vec![width + 1; nq]),
        ("u32::MAX", Box::new(|_, _| u32::MAX), vec![u32::MAX; nq]),
        ("256", Box::new(|_, _| 256), vec![255; nq]),
        ("half", Box::new(move |_, _| width / 2), vec![width / 2; nq]),
        ("none", Box::new(|_, _| 0), vec![0; nq]),
        ("shrink", Box::new(|_, d| d), vec![width / 2 + 3; nq]),
        (
            // A different limit per query, then ties allowed (d + 1), and a limit that grows
            // again after a hit of an odd query.
            "per-query",
            Box::new(move |i, d| if i % 2 == 1 { width + 1 } else { d + 1 }),
            (0..nq as u32).map(|i| i % (width + 2)).collect(),
        ),
    ]
}

/// The allowed-row patterns the filtered scans are tested with, as bitmaps over positions
/// `0..rows` (name, words; `None`: no filter): about half the rows, about one in sixteen, runs
/// of allowed and disallowed rows (whole blocks of each, and blocks cut by a run's end), and no
/// row at all.
pub(super) fn allow_patterns(
    rng: &mut SplitMix64,
    rows: usize,
) -> Vec<(&'static str, Option<Vec<u64>>)> {
    let words = rows.div_ceil(64) + 1;
    let mut random = |sparse: bool| -> Vec<u64> {
        (0..words)
            .map(|_| {
                let x = rng.next_u64() & rng.next_u64();
                if sparse {
                    x & rng.next_u64() & rng.next_u64()
                } else {
                    x | rng.next_u64()
                }
            })
            .collect()
    };
    let half = random(false);
    let sparse = random(true);
    let mut runs = vec![0u64; words];
    for p in (0..64 * words).filter(|p| p % 90 < 37) {
        runs[p / 64] |= 1 << (p % 64);
    }
    vec![
        ("every", None),
        ("half", Some(half)),
        ("sparse", Some(sparse)),
        ("runs", Some(runs)),
        ("none", Some(vec![0; words])),
    ]
}

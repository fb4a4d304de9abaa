//! Seeded synthetic codes for tests and benchmarks (the same seed gives the same codes everywhere);
//! behind the `testing` feature, as nothing here is for users of the crate.

use crate::allow::AllowedRows;
use crate::codes::{words_for, Codes, CodesView};
use crate::error::IndexError;

/// SplitMix64 (Steele, Lea and Flood 2014): tiny, fast, and good enough for test data.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..bound` (`bound >= 1`; the modulo bias is negligible for test data).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }
}

/// `n` uniformly random codes of `bits` bits.
pub fn random_codes(n: usize, bits: usize, seed: u64) -> Result<Codes, IndexError> {
    let mut rng = SplitMix64::new(seed);
    let words = words_for(bits);
    let data = (0..n * words).map(|_| rng.next_u64()).collect();
    Codes::from_words(n, bits, data)
}

/// Codes that look like trained nested codes: `n` items drawn around `clusters` random centres
/// (centre chosen uniformly, seeded by `centre_seed` so queries and database can share centres),
/// each bit `j` flipped with probability growing linearly from `flip_first` at bit 0 to
/// `flip_last` at the last bit. Early bits are then reliable and a short prefix predicts the full
/// distance, which is what makes the cascade work on real nested codes (and not on random ones).
pub fn nested_cluster_codes(
    n: usize,
    bits: usize,
    clusters: usize,
    flip_first: f64,
    flip_last: f64,
    centre_seed: u64,
    seed: u64,
) -> Result<Codes, IndexError> {
    if clusters == 0 {
        return Err(IndexError::arg("clusters", "need at least one cluster"));
    }
    let words = words_for(bits);
    let centres = random_codes(clusters, bits, centre_seed)?;
    // Per-bit flip thresholds on a 64-bit uniform: flip iff draw < threshold.
    let thresholds: Vec<u64> = (0..bits)
        .map(|j| {
            let t = if bits > 1 {
                j as f64 / (bits - 1) as f64
            } else {
                0.0
            };
            let p = (flip_first + (flip_last - flip_first) * t).clamp(0.0, 1.0);
            (p * u64::MAX as f64) as u64
        })
        .collect();
    let mut rng = SplitMix64::new(seed);
    let mut data = Vec::with_capacity(n * words);
    for _ in 0..n {
        let c = rng.below(clusters as u64) as usize;
        let centre = &centres.words()[c * words..(c + 1) * words];
        let mut code = centre.to_vec();
        for (j, &t) in thresholds.iter().enumerate() {
            if rng.next_u64() < t {
                code[j / 64] ^= 1 << (j % 64);
            }
        }
        data.extend_from_slice(&code);
    }
    Codes::from_words(n, bits, data)
}

/// `n` codes grown from `base` (a deterministic stand-in for a larger database of the same kind):
/// code `i` is a copy of a base code chosen uniformly at random, with each bit flipped
/// independently with probability `flip`. With `flip` set to the noise measured between trained
/// query codes and their nearest database codes, a million codes grown from a trained database
/// keep its cluster structure, ties and nested-prefix statistics.
///
/// Errors: `flip` outside `0..=1`, or an empty `base` with `n > 0`.
pub fn replicate_with_noise(
    base: CodesView<'_>,
    n: usize,
    flip: f64,
    seed: u64,
) -> Result<Codes, IndexError> {
    if !(0.0..=1.0).contains(&flip) {
        return Err(IndexError::arg(
            "flip",
            format!("{flip} is not a probability"),
        ));
    }
    if base.is_empty() && n > 0 {
        return Err(IndexError::arg("base", "no codes to replicate"));
    }
    let bits = base.bits();
    let words = base.words();
    let threshold = (flip * u64::MAX as f64) as u64;
    let mut rng = SplitMix64::new(seed);
    let mut data = Vec::with_capacity(n * words);
    for _ in 0..n {
        let source = rng.below(base.len() as u64) as usize;
        let mut code = base.code(source).map(<[u64]>::to_vec).unwrap_or_default();
        for j in 0..bits {
            if rng.next_u64() < threshold {
                code[j / 64] ^= 1 << (j % 64);
            }
        }
        data.extend_from_slice(&code);
    }
    Codes::from_words(n, bits, data)
}

/// `round(fraction * n)` of `n` rows, chosen uniformly at random (a partial Fisher-Yates
/// shuffle), as allowed rows.
///
/// Errors: `fraction` outside `0..=1`.
pub fn random_allowed(n: usize, fraction: f64, seed: u64) -> Result<AllowedRows, IndexError> {
    if !(0.0..=1.0).contains(&fraction) {
        return Err(IndexError::arg(
            "fraction",
            format!("{fraction} is not a fraction of the rows"),
        ));
    }
    let count = ((fraction * n as f64).round() as usize).min(n);
    let mut rows: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed);
    for i in 0..count {
        let j = i + rng.below((n - i) as u64) as usize;
        rows.swap(i, j);
    }
    AllowedRows::from_rows(n, rows[..count].iter().copied())
}

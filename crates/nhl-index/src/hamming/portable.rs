//! The portable path, `u64::count_ones` on the baseline target: the reference every other path
//! is tested against. Its loops are `#[inline(always)]`, so that the `#[target_feature]` wrappers
//! of the other paths (scalar `popcnt`, and the tails of the vector scans) compile the same code
//! with the instruction they enable.

#[cfg(target_arch = "x86_64")]
use super::raw::{Filter, Rows};
use super::raw::{KernelFns, RawCodes};

/// The entry points of the portable path: every one is safe, and needs no CPU feature.
pub(super) const FNS: KernelFns = KernelFns {
    scan,
    pair: distance,
    scan32,
    filter: None,
};

/// The distance between two codes of `a.len().min(b.len())` words, the last word masked by `mask`
/// (the portable reference).
#[inline(always)]
pub fn distance(a: &[u64], b: &[u64], mask: u64) -> u32 {
    let n = a.len().min(b.len());
    let mut d = 0;
    for w in 0..n {
        let x = a[w] ^ b[w];
        d += if w + 1 == n { x & mask } else { x }.count_ones();
    }
    d
}

/// Narrow scan: `out[i] = popcount(q ^ db[i])`.
#[inline(always)]
pub(super) fn scan32(q: u32, db: &[u32], out: &mut [u32]) {
    for (o, &c) in out.iter_mut().zip(db) {
        *o = (q ^ c).count_ones();
    }
}

/// Fixed-width scan, `W` words per code.
#[inline(always)]
fn scan_fixed<const W: usize>(q: &[u64], db: &[u64], stride: usize, mask: u64, out: &mut [u32]) {
    let q = &q[..W];
    for (i, o) in out.iter_mut().enumerate() {
        let c = &db[i * stride..i * stride + W];
        let mut d = 0;
        for w in 0..W - 1 {
            d += (q[w] ^ c[w]).count_ones();
        }
        d += ((q[W - 1] ^ c[W - 1]) & mask).count_ones();
        *o = d;
    }
}

#[inline(always)]
fn scan_generic(q: &[u64], db: &[u64], stride: usize, words: usize, mask: u64, out: &mut [u32]) {
    let q = &q[..words];
    for (i, o) in out.iter_mut().enumerate() {
        let c = &db[i * stride..i * stride + words];
        let mut d = 0;
        for w in 0..words - 1 {
            d += (q[w] ^ c[w]).count_ones();
        }
        d += ((q[words - 1] ^ c[words - 1]) & mask).count_ones();
        *o = d;
    }
}

/// `out[i] = d(q, code i)` (the `ScanFn` contract, bounds-checked). The width branch is hoisted:
/// one `match` per call, then a loop specialised for 1, 2 or 4 words, or the generic loop.
#[inline(always)]
pub(super) fn scan(q: &[u64], codes: RawCodes<'_>, out: &mut [u32]) {
    let (db, stride, mask) = (codes.data(), codes.stride(), codes.mask());
    match codes.words() {
        1 => scan_fixed::<1>(q, db, stride, mask, out),
        2 => scan_fixed::<2>(q, db, stride, mask, out),
        4 => scan_fixed::<4>(q, db, stride, mask, out),
        words => scan_generic(q, db, stride, words, mask, out),
    }
}

/// The threshold scan code by code, every query per code (the `FilterFn` contract,
/// bounds-checked): the tail of the few-query AVX2 scans.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn filter(f: Filter<'_>) {
    let Filter {
        queries,
        codes,
        base,
        limits,
        sink,
        allow,
    } = f;
    let (db, stride, words, mask) = (codes.data(), codes.stride(), codes.words(), codes.mask());
    for j in 0..codes.len() {
        if allow.is_some_and(|bits| !bits.contains(base + j)) {
            continue;
        }
        let c = &db[j * stride..j * stride + words];
        for (i, (q, limit)) in queries.iter().zip(limits.iter_mut()).enumerate() {
            let d = distance(q, c, mask);
            if d < *limit {
                *limit = sink(i, base + j, d);
            }
        }
    }
}

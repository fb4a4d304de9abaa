//! The eight-lane threshold scan: the kNN filter of the AVX-512 path, written once against
//! [`Lanes8`], eight u64 lanes and the few operations the scan needs.
//!
//! [`avx512::Avx512`] implements the lanes with AVX-512F and VPOPCNTDQ intrinsics, and a plain
//! `[u64; 8]` emulation in the unit tests implements them with `count_ones`, so the blocking,
//! de-interleaving, tail and threshold logic is tested on every machine and only the one-line
//! intrinsic bodies need a CPU that has them.

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512;
#[cfg(test)]
mod tests;

use super::raw::{EveryRow, Filter, Rows, Sink};

/// Eight u64 lanes and the few operations of the eight-lane threshold scan ([`filter`]).
///
/// # Safety
/// Every method may require the implementation's CPU features: callers must have checked them.
trait Lanes8 {
    /// A vector of eight u64 lanes.
    type V: Copy;
    /// All lanes `x`.
    unsafe fn splat(x: u64) -> Self::V;
    /// The eight words at `p .. p + 8`.
    ///
    /// # Safety
    /// Those eight words are readable.
    unsafe fn load(p: *const u64) -> Self::V;
    /// Lanes `l < count` from `p + l`, the others zero; only the words of those lanes are read.
    ///
    /// # Safety
    /// `1 <= count < 8`; the words `p .. p + count` are readable.
    unsafe fn load_first(p: *const u64, count: usize) -> Self::V;
    /// `[a0, a2, a4, a6, b0, b2, b4, b6]`.
    unsafe fn even(a: Self::V, b: Self::V) -> Self::V;
    /// `[a1, a3, a5, a7, b1, b3, b5, b7]`.
    unsafe fn odd(a: Self::V, b: Self::V) -> Self::V;
    /// Lane-wise `a & b`.
    unsafe fn and(a: Self::V, b: Self::V) -> Self::V;
    /// Lane-wise `popcount(a ^ b)`.
    unsafe fn xor_popcnt(a: Self::V, b: Self::V) -> Self::V;
    /// Lane-wise `a + b`.
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// Lane-wise unsigned minimum.
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V;
    /// Bit `l` set exactly when `a_l < b_l` (unsigned).
    unsafe fn lt_mask(a: Self::V, b: Self::V) -> u8;
    /// The eight lanes.
    unsafe fn store(a: Self::V) -> [u64; 8];
}

/// Queries per chunk of [`filter`]: their query words and limits are kept on the stack.
const QCHUNK: usize = 32;
/// Groups of eight codes per block of [`filter`]: each query meets the block's `8 * U` codes with
/// one broadcast of each query word and one threshold compare (on the lane-wise minimum).
const BLOCK_GROUPS: usize = 4;
// A block's codes have one bit each in a u32 (`block_filter`'s `keep`).
const _: () = assert!(8 * BLOCK_GROUPS <= 32);

/// A chunk of at most [`QCHUNK`] queries as [`block_filter`] meets them.
struct Chunk<'c, const W: usize> {
    /// `words[w][i]`: word `w` of query `i` of the chunk, the last word masked.
    words: [[u64; QCHUNK]; W],
    /// `lim[i]`: the limit of query `i`, as a lane.
    lim: [u64; QCHUNK],
    /// The limits of the chunk's queries (one per query).
    limits: &'c mut [u32],
    /// The index of the chunk's first query.
    q0: usize,
}

/// Word `w < W` of the eight codes `8 g .. 8 g + 8`, lane `l` holding code `8 g + l`, the last
/// word masked by `mv`; codes start at `p` and are `S` words apart (`W <= S <= 2`). `avail` is the
/// number of readable words from the group's first word `8 S g`: lanes whose words lie past it
/// are not read (their codes must then not be used).
///
/// # Safety
/// The CPU has `L`'s features; the words `p + 8 S g .. p + 8 S g + avail` are readable;
/// `avail >= 1`.
#[inline(always)]
unsafe fn load_group<L: Lanes8, const W: usize, const S: usize>(
    p: *const u64,
    g: usize,
    avail: usize,
    mv: L::V,
) -> [L::V; W] {
    let first = 8 * S * g;
    // Plain loops here and in every function of the scan, not `array::from_fn`: a closure does
    // not inherit the caller's target features, so its intrinsics could become calls.
    // The S vectors of the group's 8 S words: a full load where all eight words are readable, a
    // masked load of the readable ones, zero past the end (then no word is touched).
    let mut v = [mv; S];
    for (k, vk) in v.iter_mut().enumerate() {
        *vk = if avail >= 8 * (k + 1) {
            // SAFETY: words first + 8k .. first + 8k + 8 are readable (avail >= 8k + 8).
            unsafe { L::load(p.add(first + 8 * k)) }
        } else if avail > 8 * k {
            // SAFETY: words first + 8k .. first + avail are readable, 1 <= avail - 8k < 8.
            unsafe { L::load_first(p.add(first + 8 * k), avail - 8 * k) }
        } else {
            // SAFETY: only the CPU features are needed, which the caller checked.
            unsafe { L::splat(0) }
        };
    }
    let mut x = [mv; W];
    for (w, xw) in x.iter_mut().enumerate() {
        *xw = if S == 1 {
            v[0]
        } else if w == 0 {
            // SAFETY: as above. S = 2: vector k holds codes 4k .. 4k + 4, two words each.
            unsafe { L::even(v[0], v[S - 1]) }
        } else {
            // SAFETY: as above.
            unsafe { L::odd(v[0], v[S - 1]) }
        };
    }
    // SAFETY: as above.
    x[W - 1] = unsafe { L::and(x[W - 1], mv) };
    x
}

/// The distances of one query (its words broadcast in `q`) to the `8 U` codes of `x`, group by
/// group.
///
/// # Safety
/// The CPU has `L`'s features.
#[inline(always)]
unsafe fn group_distances<L: Lanes8, const W: usize, const U: usize>(
    x: &[[L::V; W]; U],
    q: [L::V; W],
) -> [L::V; U] {
    let mut out = [q[0]; U];
    for (o, xu) in out.iter_mut().zip(x) {
        // SAFETY: the caller checked the CPU features.
        unsafe {
            *o = L::xor_popcnt(xu[0], q[0]);
            for w in 1..W {
                *o = L::add(*o, L::xor_popcnt(xu[w], q[w]));
            }
        }
    }
    out
}

/// One block of `U` groups of eight codes (`x`, code `8 u + l` of the block in lane `l` of
/// `x[u]`), whose first code is reported as `code0`, against every query of `chunk`; only the
/// codes whose bit `8 u + l` is set in `keep` may be reported (those that exist and are
/// allowed). Per query: the `8 U` distances, their lane-wise minimum compared with the query's
/// limit (lanes where no group may report are cleared, the rest only select the blocks worth a
/// closer look), and on a hit the block's codes in ascending order against the limit as it
/// changes, each group's lanes below the limit ANDed with its bits of `keep`.
///
/// # Safety
/// The CPU has `L`'s features.
#[inline(always)]
unsafe fn block_filter<L: Lanes8, const W: usize, const U: usize>(
    x: &[[L::V; W]; U],
    keep: u32,
    chunk: &mut Chunk<'_, W>,
    code0: usize,
    sink: Sink<'_>,
) {
    let mut group_keep = [0u8; U];
    for (u, k) in group_keep.iter_mut().enumerate() {
        *k = (keep >> (8 * u)) as u8;
    }
    let any_lane = group_keep.iter().fold(0u8, |m, &k| m | k);
    let Chunk {
        words: qw,
        lim,
        limits,
        q0,
    } = chunk;
    for (i, limit_i) in limits.iter_mut().enumerate() {
        // SAFETY: the caller checked the CPU features.
        let (d, hit) = unsafe {
            let mut q = [L::splat(0); W];
            for (qv, qw_w) in q.iter_mut().zip(qw.iter()) {
                *qv = L::splat(qw_w[i]);
            }
            let d = group_distances::<L, W, U>(x, q);
            let mut m = d[0];
            for &du in &d[1..] {
                m = L::min(m, du);
            }
            (d, L::lt_mask(m, L::splat(lim[i])) & any_lane)
        };
        if hit != 0 {
            // The block's codes in ascending order, each against the limit at its turn: per
            // group, the lanes below the current limit as a mask; after each hit only the later
            // lanes, against the limit the sink returned (whatever it is).
            let mut limit = *limit_i;
            for (u, (&du, &in_group)) in d.iter().zip(&group_keep).enumerate() {
                // SAFETY: the caller checked the CPU features.
                let below = |limit: u32| unsafe { L::lt_mask(du, L::splat(u64::from(limit))) };
                let mut m = below(limit) & in_group;
                if m == 0 {
                    continue;
                }
                // SAFETY: as above.
                let dist = unsafe { L::store(du) };
                while m != 0 {
                    let l = m.trailing_zeros() as usize;
                    // Distances are at most 128, so the u64 lane is the u32 distance.
                    limit = sink(*q0 + i, code0 + 8 * u + l, dist[l] as u32);
                    m = below(limit) & in_group & (0xffu16 << (l + 1)) as u8;
                }
            }
            *limit_i = limit;
            lim[i] = u64::from(limit);
        }
    }
}

/// The fused multi-query threshold scan (`FilterFn` semantics) over eight u64 lanes, for codes of
/// `W` words `S` apart (`(W, S)` = `(1, 1)`, `(1, 2)` or `(2, 2)`): 64-bit codes, the 64-bit (or
/// shorter) prefix of 128-bit codes, and 128-bit codes. Per chunk of 32 queries, the database is
/// walked in blocks of `8 U` codes: each block is loaded and de-interleaved once (word 0 and word 1
/// of eight codes in separate vectors, lane `l` = code `l`, so a 128-bit distance is two popcounts
/// added vertically with no horizontal sum), then every query of the chunk meets it in registers.
/// The last partial group of eight is read with masked loads, so there is no scalar tail. With
/// a filter, a block or group whose codes are all disallowed is neither loaded nor tested.
///
/// # Safety
/// The CPU has `L`'s features; the codes are `W` words, `S` apart (`f.codes.words() == W`,
/// `f.codes.stride() == S`).
#[inline(always)]
unsafe fn filter<L: Lanes8, const W: usize, const S: usize>(f: Filter<'_>) {
    match f.allow {
        // SAFETY: the caller's contract.
        None => unsafe { scan::<L, W, S, EveryRow>(f, EveryRow) },
        // SAFETY: the caller's contract.
        Some(bits) => unsafe { scan::<L, W, S, _>(f, bits) },
    }
}

/// [`filter`] reporting only the positions of `rows`.
///
/// # Safety
/// As [`filter`].
#[inline(always)]
unsafe fn scan<L: Lanes8, const W: usize, const S: usize, R: Rows>(f: Filter<'_>, rows: R) {
    const U: usize = BLOCK_GROUPS;
    let Filter {
        queries: qs,
        codes,
        base,
        limits,
        sink,
        ..
    } = f;
    let (db, mask, n) = (codes.data(), codes.mask(), codes.len());
    if n == 0 {
        return;
    }
    let p = db.as_ptr();
    let len = db.len();
    // Groups whose 8 S words are all in `db` (with W < S the last code's second word may not be),
    // then the remaining groups, the last one partial.
    let groups = n.div_ceil(8);
    let full = (n / 8).min(len / (8 * S));
    let blocks = full / U;
    // SAFETY: the caller checked the CPU features.
    let mv = unsafe { L::splat(mask) };
    for (c, (chunk_queries, limits)) in qs.chunks(QCHUNK).zip(limits.chunks_mut(QCHUNK)).enumerate()
    {
        let mut chunk = Chunk {
            words: [[0u64; QCHUNK]; W],
            lim: [0u64; QCHUNK],
            limits,
            q0: c * QCHUNK,
        };
        for (i, q) in chunk_queries.iter().enumerate() {
            for (w, qw_w) in chunk.words.iter_mut().enumerate() {
                qw_w[i] = if w == W - 1 { q[w] & mask } else { q[w] };
            }
            chunk.lim[i] = u64::from(chunk.limits[i]);
        }
        for b in 0..blocks {
            let keep = (rows.window(base + 8 * U * b) & (u64::MAX >> (64 - 8 * U))) as u32;
            if keep == 0 {
                continue;
            }
            // Groups U b .. U b + U are below `full`, so each has its 8 S words in `db` (`avail` =
            // 8 S is what the load reads), and the CPU features were checked.
            let mut x = [[mv; W]; U];
            for (u, xu) in x.iter_mut().enumerate() {
                // SAFETY: see above.
                *xu = unsafe { load_group::<L, W, S>(p, U * b + u, 8 * S, mv) };
            }
            // SAFETY: the CPU features were checked.
            unsafe { block_filter::<L, W, U>(&x, keep, &mut chunk, base + 8 * U * b, &mut *sink) };
        }
        for g in U * blocks..groups {
            let valid = (n - 8 * g).min(8);
            let keep = (rows.window(base + 8 * g) & (0xff >> (8 - valid))) as u32;
            if keep == 0 {
                continue;
            }
            // Code 8 g exists, so its first word 8 S g < len.
            let avail = len - 8 * S * g;
            // SAFETY: the words 8 S g .. len are in `db` and avail >= 1; lanes past `avail` are
            // not read, and the lanes of the `valid` codes all lie before it (the caller's length
            // contract), so only those codes are tested.
            let x = [unsafe { load_group::<L, W, S>(p, g, avail, mv) }];
            // SAFETY: the CPU features were checked.
            unsafe { block_filter::<L, W, 1>(&x, keep, &mut chunk, base + 8 * g, &mut *sink) };
        }
    }
}

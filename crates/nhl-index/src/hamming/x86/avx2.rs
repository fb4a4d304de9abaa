//! The AVX2 path: per-code distances by nibble-table popcount (`vpshufb`, summed per 64-bit lane
//! with `vpsadbw`), and the kNN threshold scan: for a few queries over 64- or 128-bit codes the
//! per-code kernels here, otherwise the nibble-table fast scan of [`crate::hamming::fastscan`].

use std::arch::x86_64::*;

use super::super::fastscan;
use super::super::portable;
use super::super::raw::{EveryRow, Filter, KernelFns, RawCodes, Rows};

/// The AVX2 path.
pub(in crate::hamming) const FNS: KernelFns = KernelFns {
    scan,
    pair: super::pair,
    scan32,
    filter: Some(filter),
};

/// Narrow codes, eight per vector: nibble-table popcounts summed per 32-bit lane.
#[target_feature(enable = "avx2,popcnt")]
unsafe fn scan32(q: u32, db: &[u32], out: &mut [u32]) {
    let n = out.len();
    let blocks = n / 8;
    let qv = _mm256_set1_epi32(q as i32);
    let ones8 = _mm256_set1_epi8(1);
    let ones16 = _mm256_set1_epi16(1);
    let table = _mm256_setr_epi8(
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3,
        3, 4,
    );
    let low = _mm256_set1_epi8(0x0f);
    for b in 0..blocks {
        // SAFETY: codes 8b .. 8b + 8 exist (b < n / 8 and db.len() >= n); out likewise.
        unsafe {
            let x = _mm256_xor_si256(_mm256_loadu_si256(db.as_ptr().add(8 * b).cast()), qv);
            let lo = _mm256_and_si256(x, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(x), low);
            let bytes = _mm256_add_epi8(
                _mm256_shuffle_epi8(table, lo),
                _mm256_shuffle_epi8(table, hi),
            );
            // Bytes -> 16-bit pair sums -> 32-bit sums: one count per 32-bit lane.
            let counts = _mm256_madd_epi16(_mm256_maddubs_epi16(bytes, ones8), ones16);
            _mm256_storeu_si256(out.as_mut_ptr().add(8 * b).cast(), counts);
        }
    }
    let done = blocks * 8;
    portable::scan32(q, &db[done..], &mut out[done..]);
}

/// Per-64-bit-lane popcount: nibble lookup with `vpshufb`, then `vpsadbw` sums the eight byte
/// counts of each lane (Mula, Kurz and Lemire's method, lane-wise instead of accumulated).
#[inline]
#[target_feature(enable = "avx2")]
fn popcnt_lanes(v: __m256i) -> __m256i {
    let table = _mm256_setr_epi8(
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3,
        3, 4,
    );
    let low = _mm256_set1_epi8(0x0f);
    let lo = _mm256_and_si256(v, low);
    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), low);
    let bytes = _mm256_add_epi8(
        _mm256_shuffle_epi8(table, lo),
        _mm256_shuffle_epi8(table, hi),
    );
    _mm256_sad_epu8(bytes, _mm256_setzero_si256())
}

/// Loads the `i`-th 256-bit vector of `p`.
///
/// # Safety
/// `p.add(4 * i) .. p.add(4 * i + 4)` is readable.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load(p: *const u64, i: usize) -> __m256i {
    // SAFETY: the caller guarantees 4 readable words at `p + 4 i`; loadu has no alignment need.
    unsafe { _mm256_loadu_si256(p.add(4 * i).cast()) }
}

/// Eight codes' distances from two vectors of counts: `lo` holds codes in 64-bit lanes
/// `[a0, a1, a2, a3]` and `hi` `[b0, b1, b2, b3]` (all < 2^32); the result stores
/// `[a0, a1, a2, a3, b0, b1, b2, b3]` as u32 when `order` undoes the lane order of the inputs.
#[inline]
#[target_feature(enable = "avx2")]
fn pack8(lo: __m256i, hi: __m256i, order: __m256i) -> __m256i {
    _mm256_permutevar8x32_epi32(_mm256_or_si256(lo, _mm256_slli_epi64::<32>(hi)), order)
}

/// Two-word codes: `a = [x0, x1, y0, y1]`, `b = [z0, z1, w0, w1]` (per-word counts) give the
/// code sums `[x, z, y, w]`.
#[inline]
#[target_feature(enable = "avx2")]
fn sum2(a: __m256i, b: __m256i) -> __m256i {
    _mm256_add_epi64(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b))
}

/// Four-word codes, one per vector of per-word counts: the four code sums in lane order.
#[inline]
#[target_feature(enable = "avx2")]
fn sum4(a: __m256i, b: __m256i, c: __m256i, d: __m256i) -> __m256i {
    // sum2 leaves [a01, b01, a23, b23] and [c01, d01, c23, d23]; adding the 128-bit halves
    // crosswise gives [a, b, c, d].
    let ab = sum2(a, b);
    let cd = sum2(c, d);
    _mm256_add_epi64(
        _mm256_permute2x128_si256::<0x20>(ab, cd),
        _mm256_permute2x128_si256::<0x31>(ab, cd),
    )
}

/// Per-code distances (`ScanFn`): codes of 1, 2 or 4 words packed back to back, eight codes per
/// step; every other shape, and the last codes, with the portable loop compiled for `popcnt`.
#[target_feature(enable = "avx2,popcnt")]
unsafe fn scan(q: &[u64], codes: RawCodes<'_>, out: &mut [u32]) {
    let (db, stride, words, mask) = (codes.data(), codes.stride(), codes.words(), codes.mask());
    // The vector loops need codes packed back to back; other strides (prefix views of
    // longer codes) take the scalar popcnt loop.
    if words != stride || !matches!(words, 1 | 2 | 4) {
        return portable::scan(q, codes, out);
    }
    let n = out.len();
    let blocks = n / 8;
    let p = db.as_ptr();
    let o = out.as_mut_ptr();
    match words {
        1 => {
            let qv = _mm256_set1_epi64x(q[0] as i64);
            let mv = _mm256_set1_epi64x(mask as i64);
            let order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
            for b in 0..blocks {
                // SAFETY: codes 8b .. 8b + 8 exist (b < n / 8) and are one word each, so
                // vectors 2b and 2b + 1 are in bounds; out has n >= 8b + 8 slots.
                unsafe {
                    let c0 =
                        popcnt_lanes(_mm256_and_si256(_mm256_xor_si256(load(p, 2 * b), qv), mv));
                    let c1 = popcnt_lanes(_mm256_and_si256(
                        _mm256_xor_si256(load(p, 2 * b + 1), qv),
                        mv,
                    ));
                    _mm256_storeu_si256(o.add(8 * b).cast(), pack8(c0, c1, order));
                }
            }
        }
        2 => {
            let qv = _mm256_setr_epi64x(q[0] as i64, q[1] as i64, q[0] as i64, q[1] as i64);
            let mv = _mm256_setr_epi64x(-1, mask as i64, -1, mask as i64);
            // Lane sums come out as [c0, c2, c1, c3] and [c4, c6, c5, c7]; after the
            // interleave of pack8 the u32 order is c0 c4 c2 c6 c1 c5 c3 c7.
            let order = _mm256_setr_epi32(0, 4, 2, 6, 1, 5, 3, 7);
            for b in 0..blocks {
                // SAFETY: codes 8b .. 8b + 8 are two words each: vectors 4b .. 4b + 4 exist.
                unsafe {
                    let c0 =
                        popcnt_lanes(_mm256_and_si256(_mm256_xor_si256(load(p, 4 * b), qv), mv));
                    let c1 = popcnt_lanes(_mm256_and_si256(
                        _mm256_xor_si256(load(p, 4 * b + 1), qv),
                        mv,
                    ));
                    let c2 = popcnt_lanes(_mm256_and_si256(
                        _mm256_xor_si256(load(p, 4 * b + 2), qv),
                        mv,
                    ));
                    let c3 = popcnt_lanes(_mm256_and_si256(
                        _mm256_xor_si256(load(p, 4 * b + 3), qv),
                        mv,
                    ));
                    _mm256_storeu_si256(
                        o.add(8 * b).cast(),
                        pack8(sum2(c0, c1), sum2(c2, c3), order),
                    );
                }
            }
        }
        _ => {
            // SAFETY: `q` has at least four words (the `ScanFn` contract).
            let qv = unsafe { load(q.as_ptr(), 0) };
            let mv = _mm256_setr_epi64x(-1, -1, -1, mask as i64);
            let order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
            for b in 0..blocks {
                // SAFETY: codes 8b .. 8b + 8 are four words each: vectors 8b .. 8b + 8 exist.
                unsafe {
                    let mut c = [_mm256_setzero_si256(); 8];
                    for (j, cj) in c.iter_mut().enumerate() {
                        *cj = popcnt_lanes(_mm256_and_si256(
                            _mm256_xor_si256(load(p, 8 * b + j), qv),
                            mv,
                        ));
                    }
                    let lo = sum4(c[0], c[1], c[2], c[3]);
                    let hi = sum4(c[4], c[5], c[6], c[7]);
                    _mm256_storeu_si256(o.add(8 * b).cast(), pack8(lo, hi, order));
                }
            }
        }
    }
    let done = blocks * 8;
    portable::scan(q, codes.skip(done), &mut out[done..]);
}

/// The low and high nibbles of every byte of `v`, each in the low half of its byte.
#[inline]
#[target_feature(enable = "avx2")]
fn nibbles(v: __m256i) -> (__m256i, __m256i) {
    let low = _mm256_set1_epi8(0x0f);
    (
        _mm256_and_si256(v, low),
        _mm256_and_si256(_mm256_srli_epi16::<4>(v), low),
    )
}

/// Per-byte popcount of `(x ^ q)` from the nibbles of `x` and `q` split beforehand:
/// `(x ^ q) & 0x0f = (x & 0x0f) ^ (q & 0x0f)`, likewise for the high nibbles, so the split
/// of a database vector is done once for all queries.
#[inline]
#[target_feature(enable = "avx2")]
fn byte_counts(xlo: __m256i, xhi: __m256i, qlo: __m256i, qhi: __m256i) -> __m256i {
    let table = _mm256_setr_epi8(
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3,
        3, 4,
    );
    _mm256_add_epi8(
        _mm256_shuffle_epi8(table, _mm256_xor_si256(xlo, qlo)),
        _mm256_shuffle_epi8(table, _mm256_xor_si256(xhi, qhi)),
    )
}

/// The few-query body of [`filter`] for 128-bit codes (two words) packed back to back: handles
/// the first `8 * (n / 8)` codes and returns how many that is. Per group of eight codes the
/// nibbles are split once for all queries; per query, the byte counts of both words are added
/// vertically before a single `vpsadbw`, and the eight distances are tested against the query's
/// limit with one compare. Only the positions of `rows` are reported: a group with none is
/// skipped, and on a hit each code's bit is tested with its distance.
///
/// # Safety
/// AVX2 is available; the codes are two words each, packed back to back (`words == stride ==
/// 2`). Fewer than [`FASTSCAN_MIN_QUERIES_128`] queries (more would panic).
#[inline]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn fused128<R: Rows>(f: Filter<'_>, rows: R) -> usize {
    let Filter {
        queries: qs,
        codes,
        base,
        limits,
        sink,
        ..
    } = f;
    let (db, mask, n) = (codes.data(), codes.mask(), codes.len());
    let zero = _mm256_setzero_si256();
    let mv = _mm256_set1_epi64x(mask as i64);
    // Lane l of a distance vector holds code `LANE_CODE[l]` of its group of eight.
    const LANE_CODE: [usize; 8] = [0, 4, 2, 6, 1, 5, 3, 7];
    let mut code_lane = [0usize; 8];
    for (l, &c) in LANE_CODE.iter().enumerate() {
        code_lane[c] = l;
    }
    // Distances are at most 128, so any larger limit acts as 129, which the signed 32-bit
    // compare takes exactly.
    let lane_limit = |limit: u32| limit.min(129) as i32;
    let groups = n / 8;
    let p = db.as_ptr();
    // Word w of each query, broadcast and split into nibbles (fewer than
    // FASTSCAN_MIN_QUERIES_128 queries, so one chunk on the stack).
    let mut qlo = [[zero; FASTSCAN_MIN_QUERIES_128]; 2];
    let mut qhi = [[zero; FASTSCAN_MIN_QUERIES_128]; 2];
    let mut lim = [zero; FASTSCAN_MIN_QUERIES_128];
    for (i, q) in qs.iter().enumerate() {
        for w in 0..2 {
            let word = if w == 1 { q[w] & mask } else { q[w] };
            (qlo[w][i], qhi[w][i]) = nibbles(_mm256_set1_epi64x(word as i64));
        }
        lim[i] = _mm256_set1_epi32(lane_limit(limits[i]));
    }
    for g in 0..groups {
        // A few queries leave the scan bound by memory, and the hardware prefetcher alone
        // falls short of the read bandwidth: ask for the group PREFETCH_GROUPS ahead (two
        // lines). A prefetch never faults, so addresses past the end are harmless.
        let ahead = p.wrapping_add(16 * (g + PREFETCH_GROUPS)).cast::<i8>();
        _mm_prefetch::<_MM_HINT_T0>(ahead);
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
        let allowed = rows.window(base + 8 * g) as u8;
        if allowed == 0 {
            continue;
        }
        // SAFETY: the eight codes of group g < n / 8 are the 4 vectors from word 16 g, inside
        // `db`.
        let v = unsafe {
            [
                load(p, 4 * g),
                load(p, 4 * g + 1),
                load(p, 4 * g + 2),
                load(p, 4 * g + 3),
            ]
        };
        // Vector j holds codes 2j and 2j + 1: the unpacks put the first words of codes
        // [c0, c2, c1, c3] in one vector and their (masked) second words in the next, then
        // likewise for [c4, c6, c5, c7], once per group rather than once per query.
        let x = [
            _mm256_unpacklo_epi64(v[0], v[1]),
            _mm256_and_si256(_mm256_unpackhi_epi64(v[0], v[1]), mv),
            _mm256_unpacklo_epi64(v[2], v[3]),
            _mm256_and_si256(_mm256_unpackhi_epi64(v[2], v[3]), mv),
        ];
        let mut xlo = [zero; 4];
        let mut xhi = [zero; 4];
        for j in 0..4 {
            (xlo[j], xhi[j]) = nibbles(x[j]);
        }
        for (i, limit) in limits.iter_mut().enumerate() {
            // Both words' byte counts added vertically (at most 16 per byte), then one
            // vpsadbw: [c0, c2, c1, c3] and [c4, c6, c5, c7].
            let (w0, w1) = ((qlo[0][i], qhi[0][i]), (qlo[1][i], qhi[1][i]));
            let a = _mm256_add_epi8(
                byte_counts(xlo[0], xhi[0], w0.0, w0.1),
                byte_counts(xlo[1], xhi[1], w1.0, w1.1),
            );
            let b = _mm256_add_epi8(
                byte_counts(xlo[2], xhi[2], w0.0, w0.1),
                byte_counts(xlo[3], xhi[3], w1.0, w1.1),
            );
            let d = _mm256_or_si256(
                _mm256_sad_epu8(a, zero),
                _mm256_slli_epi64::<32>(_mm256_sad_epu8(b, zero)),
            );
            let hit = _mm256_cmpgt_epi32(lim[i], d);
            if _mm256_testz_si256(hit, hit) == 0 {
                let mut dist = [0u32; 8];
                // SAFETY: `dist` has room for eight u32.
                unsafe { _mm256_storeu_si256(dist.as_mut_ptr().cast(), d) };
                for (j, &lane) in code_lane.iter().enumerate() {
                    let dj = dist[lane];
                    if dj < *limit && allowed >> j & 1 != 0 {
                        *limit = sink(i, base + 8 * g + j, dj);
                    }
                }
                lim[i] = _mm256_set1_epi32(lane_limit(*limit));
            }
        }
    }
    groups * 8
}

/// The few-query body of [`filter`] for one-word codes packed back to back: handles the
/// first `8 * (n / 8)` codes and returns how many that is. Per group of eight codes (one
/// cache line, two vectors, lane `l` of vector `v` holding code `4 v + l`) the masked nibbles
/// are split once; per query, two shuffles give the byte counts of `x ^ q`, one `vpsadbw`
/// sums each code's eight bytes in its own lane, and one compare per vector tests the
/// distances against the query's limit. One or two queries stream the codes at memory speed
/// this way, where the fast scan would spend more on slicing each block than on scanning it.
///
/// `MASKED`: whether `mask` may clear bits (a prefix shorter than 64 bits); full 64-bit
/// codes skip the two ANDs per group, a tenth of a scan that runs near the memory's speed.
/// Only the positions of `rows` are reported, as in [`fused128`].
///
/// # Safety
/// AVX2 is available; the codes are one word each, packed back to back (`words == stride ==
/// 1`). Fewer than [`FASTSCAN_MIN_QUERIES_64`] queries (more would panic).
#[inline]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn fused64<const MASKED: bool, R: Rows>(f: Filter<'_>, rows: R) -> usize {
    let Filter {
        queries: qs,
        codes,
        base,
        limits,
        sink,
        ..
    } = f;
    let (db, mask, n) = (codes.data(), codes.mask(), codes.len());
    let zero = _mm256_setzero_si256();
    let mv = _mm256_set1_epi64x(mask as i64);
    // Distances are at most 64, so any larger limit acts as 65, which the signed 64-bit
    // compare takes exactly.
    let lane_limit = |limit: u32| i64::from(limit.min(65));
    let groups = n / 8;
    let p = db.as_ptr();
    let mut qlo = [zero; FASTSCAN_MIN_QUERIES_64];
    let mut qhi = [zero; FASTSCAN_MIN_QUERIES_64];
    let mut lim = [zero; FASTSCAN_MIN_QUERIES_64];
    for (i, q) in qs.iter().enumerate() {
        (qlo[i], qhi[i]) = nibbles(_mm256_set1_epi64x((q[0] & mask) as i64));
        lim[i] = _mm256_set1_epi64x(lane_limit(limits[i]));
    }
    for g in 0..groups {
        // As in fused128: the hardware prefetcher alone falls short of the read bandwidth
        // for a scan this light, so ask for the line PREFETCH_LINES_64 ahead.
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(8 * (g + PREFETCH_LINES_64)).cast::<i8>());
        let allowed = rows.window(base + 8 * g) as u8;
        if allowed == 0 {
            continue;
        }
        // SAFETY: the eight codes of group g < n / 8 are the 2 vectors from word 8 g, inside
        // `db`.
        let mut v = unsafe { [load(p, 2 * g), load(p, 2 * g + 1)] };
        if MASKED {
            v = [_mm256_and_si256(v[0], mv), _mm256_and_si256(v[1], mv)];
        }
        let (lo0, hi0) = nibbles(v[0]);
        let (lo1, hi1) = nibbles(v[1]);
        let (xlo, xhi) = ([lo0, lo1], [hi0, hi1]);
        for (i, limit) in limits.iter_mut().enumerate() {
            let d = [
                _mm256_sad_epu8(byte_counts(xlo[0], xhi[0], qlo[i], qhi[i]), zero),
                _mm256_sad_epu8(byte_counts(xlo[1], xhi[1], qlo[i], qhi[i]), zero),
            ];
            let hit = _mm256_or_si256(
                _mm256_cmpgt_epi64(lim[i], d[0]),
                _mm256_cmpgt_epi64(lim[i], d[1]),
            );
            if _mm256_testz_si256(hit, hit) == 0 {
                let mut dist = [0u64; 8];
                // SAFETY: `dist` has room for two vectors of four u64.
                unsafe {
                    _mm256_storeu_si256(dist.as_mut_ptr().cast(), d[0]);
                    _mm256_storeu_si256(dist.as_mut_ptr().add(4).cast(), d[1]);
                }
                for (j, &dj) in dist.iter().enumerate() {
                    // A distance is at most 64.
                    let dj = dj as u32;
                    if dj < *limit && allowed >> j & 1 != 0 {
                        *limit = sink(i, base + 8 * g + j, dj);
                    }
                }
                lim[i] = _mm256_set1_epi64x(lane_limit(*limit));
            }
        }
    }
    groups * 8
}

/// Cache lines of 64-bit codes that [`fused64`] prefetches ahead (4 KiB, as [`fused128`]).
const PREFETCH_LINES_64: usize = 64;

/// Fewer queries than this take [`fused64`] for 64-bit codes packed back to back (measured at
/// 1M and 10M codes: from this many on, the fast scan's slicing, shared by the queries of a
/// call, costs less than the per-code popcounts).
const FASTSCAN_MIN_QUERIES_64: usize = 2;

/// Groups of eight 128-bit codes (128 bytes each) that [`fused128`] prefetches ahead.
const PREFETCH_GROUPS: usize = 32;

/// Fewer queries than this take the per-code nibble popcount ([`fused128`]) for 128-bit codes
/// packed back to back: the fast scan's byte slicing of each block is shared by the queries of
/// a call, and below about eight of them (measured at 1M codes) it costs more than it saves.
/// One-word codes slice cheaply and take the fast scan from one query on.
const FASTSCAN_MIN_QUERIES_128: usize = 8;

/// The fused multi-query threshold scan (`FilterFn`) for codes of one or two words (64-bit
/// codes, 128-bit codes and every prefix of up to 128 bits of longer codes; other shapes
/// return `false`, for the per-query vector scan): the nibble-table fast scan
/// ([`fastscan::avx2::filter`]). A few queries over 64- or 128-bit codes packed back to back
/// take [`fused64`] or [`fused128`] instead (see [`FASTSCAN_MIN_QUERIES_64`] and
/// [`FASTSCAN_MIN_QUERIES_128`]), and the scalar scan their last codes.
#[target_feature(enable = "avx2,popcnt")]
unsafe fn filter(mut f: Filter<'_>) -> bool {
    let shape = (f.codes.words(), f.codes.stride());
    let few = f.queries.len();
    let done = match shape {
        // SAFETY: the caller's `FilterFn` contract (AVX2), with the code shape and the number of
        // queries checked here.
        (2, 2) if few < FASTSCAN_MIN_QUERIES_128 => unsafe {
            match f.allow {
                None => fused128(f.reborrow(), EveryRow),
                Some(bits) => fused128(f.reborrow(), bits),
            }
        },
        // SAFETY: as above.
        (1, 1) if few < FASTSCAN_MIN_QUERIES_64 => unsafe {
            match (f.codes.mask() == u64::MAX, f.allow) {
                (true, None) => fused64::<false, _>(f.reborrow(), EveryRow),
                (false, None) => fused64::<true, _>(f.reborrow(), EveryRow),
                (true, Some(bits)) => fused64::<false, _>(f.reborrow(), bits),
                (false, Some(bits)) => fused64::<true, _>(f.reborrow(), bits),
            }
        },
        // SAFETY: the caller's `FilterFn` contract (AVX2).
        _ => return unsafe { fastscan::avx2::filter(f) },
    };
    portable::filter(f.skip(done));
    true
}

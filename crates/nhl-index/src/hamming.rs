//! Hamming distance kernels with run-time dispatch.
//!
//! The distance between codes `a` and `b` is `d(a, b) = sum_w popcount(a_w XOR b_w)` over their
//! u64 words, with the last word masked to the valid bits of the view. One kernel computes the
//! distances of one query to a run of database codes; every instruction-set path computes exactly
//! the same integers as the portable `count_ones` path, which is the reference.
//!
//! Each path specialises the common widths of 1, 2 and 4 words (64, 128, 256 bits, and any
//! prefix that fits in them) with the width branch taken once per call, outside the scan loop;
//! every other width goes through a generic loop that the property tests also reach.

use crate::codes::CodesView;
use crate::error::IndexError;
use std::sync::atomic::{AtomicU8, Ordering};

#[cfg(any(target_arch = "x86_64", test))]
mod fastscan;

/// An instruction-set path of the Hamming kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// `u64::count_ones` compiled for the baseline target: the reference every path must equal.
    Portable,
    /// x86-64 scalar `popcnt`.
    Popcnt,
    /// x86-64 AVX2: nibble-table popcount (`vpshufb`) summed per 64-bit lane with `vpsadbw`;
    /// the kNN threshold scan sums per-query nibble tables over byte-sliced codes (fast scan).
    Avx2,
    /// x86-64 AVX-512F + VPOPCNTDQ: eight 64-bit popcounts per instruction.
    Avx512Vpopcntdq,
    /// aarch64 NEON: `cnt` per byte and pairwise widening adds.
    Neon,
}

const UNSET: u8 = u8::MAX;
static BEST: AtomicU8 = AtomicU8::new(UNSET);

impl Isa {
    /// Every path, in order of preference (best first), including those this CPU lacks.
    pub const ALL: [Isa; 5] = [
        Isa::Avx512Vpopcntdq,
        Isa::Avx2,
        Isa::Neon,
        Isa::Popcnt,
        Isa::Portable,
    ];

    /// The short name used in bench ids and reports.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Popcnt => "popcnt",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vpopcntdq => "avx512vpopcntdq",
            Isa::Neon => "neon",
        }
    }

    /// Parse a name produced by [`Isa::name`].
    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|isa| isa.name() == name)
    }

    /// Whether this CPU can run the path.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Popcnt => std::arch::is_x86_feature_detected!("popcnt"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("popcnt")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vpopcntdq => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
                    && std::arch::is_x86_feature_detected!("popcnt")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every path this CPU can run, best first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
    }

    /// The best available path. Detected on the first call and cached in an atomic, so the
    /// feature probes run once per process.
    pub fn best() -> Isa {
        let cached = BEST.load(Ordering::Relaxed);
        if let Some(&isa) = Isa::ALL.get(usize::from(cached)) {
            return isa;
        }
        let index = Isa::ALL
            .iter()
            .position(|i| i.is_available())
            .unwrap_or(Isa::ALL.len() - 1);
        // A race only stores the same value twice.
        BEST.store(index as u8, Ordering::Relaxed);
        Isa::ALL[index]
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Raw scan: `out[i] = d(q, code i)` where code `i` is `db[i * stride .. i * stride + words]`
/// with the last word masked by `mask`.
///
/// # Safety
/// The CPU supports the path's target features; `1 <= words <= stride`; `q.len() >= words`;
/// when `out` is non-empty, `db.len() >= (out.len() - 1) * stride + words`.
type ScanFn = unsafe fn(&[u64], &[u64], usize, usize, u64, &mut [u32]);

/// Raw distance of two codes of `a.len().min(b.len())` words, last word masked.
///
/// # Safety
/// The CPU supports the path's target features.
type PairFn = unsafe fn(&[u64], &[u64], u64) -> u32;

/// Raw scan of narrow codes (at most 32 bits, one u32 each): `out[i] = popcount(q ^ db[i])` for
/// `i < out.len()`.
///
/// # Safety
/// The CPU supports the path's target features; `db.len() >= out.len()`.
type Scan32Fn = unsafe fn(u32, &[u32], &mut [u32]);

/// What [`Kernel::filter`] calls for each code that passes a query's threshold: `(query index,
/// code position, distance)`, returning the query's new threshold.
pub type Sink<'s> = &'s mut dyn FnMut(usize, usize, u32) -> u32;

/// Raw fused scan of several queries: for each code `j < n` (ascending) and query `i`, `sink(i,
/// base + j, d)` exactly when `d = d(qs[i], code j) < limits[i]`, then `limits[i]` takes the
/// returned value. Codes are `words` words, `stride` apart, the last word masked by `mask`.
/// Returns `false`, having done nothing, for a code shape the path does not fuse.
///
/// # Safety
/// The CPU supports the path's target features; `qs.len() == limits.len()`; every query has at
/// least `words` words; `1 <= words <= stride`; when `n > 0`, `db.len() >= (n - 1) * stride +
/// words`.
type FilterFn =
    unsafe fn(&[&[u64]], &[u64], usize, usize, u64, usize, usize, &mut [u32], Sink) -> bool;

/// A resolved kernel: an instruction-set path whose availability has been checked.
#[derive(Clone, Copy)]
pub struct Kernel {
    isa: Isa,
    scan: ScanFn,
    pair: PairFn,
    scan32: Scan32Fn,
    /// A fused multi-query scan where the path has one; else [`Kernel::filter`] scans each query
    /// into a buffer and filters it.
    filter: Option<FilterFn>,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel").field("isa", &self.isa).finish()
    }
}

impl Kernel {
    /// The kernel of `isa`, or an error when this CPU lacks it.
    pub fn new(isa: Isa) -> Result<Kernel, IndexError> {
        if !isa.is_available() {
            return Err(IndexError::IsaUnavailable(isa.name()));
        }
        let (scan, pair, scan32): (ScanFn, PairFn, Scan32Fn) = match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Popcnt => (x86::scan_popcnt, x86::pair_popcnt, x86::scan32_popcnt),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => (x86::scan_avx2, x86::pair_popcnt, x86::scan32_avx2),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vpopcntdq => (x86::scan_avx512, x86::pair_popcnt, x86::scan32_avx512),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => (neon::scan_neon, pair_portable, neon::scan32_neon),
            _ => (scan_portable, pair_portable, scan32_portable),
        };
        let filter: Option<FilterFn> = match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Some(x86::filter_avx2),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vpopcntdq => Some(x86::filter_avx512),
            _ => None,
        };
        Ok(Kernel {
            isa,
            scan,
            pair,
            scan32,
            filter,
        })
    }

    /// The kernel of [`Isa::best`].
    pub fn best() -> Kernel {
        let isa = Isa::best();
        // `best` only returns available paths; Portable is the fallback that always exists.
        Kernel::new(isa).unwrap_or(Kernel {
            isa: Isa::Portable,
            scan: scan_portable,
            pair: pair_portable,
            scan32: scan32_portable,
            filter: None,
        })
    }

    /// The path this kernel runs.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Distances of `query` (at least `db.words()` words) to codes `start .. start + out.len()` of
    /// `db`, written to `out`.
    ///
    /// # Panics
    /// When the query is too short or the range runs past the end of `db` (a caller bug, not input).
    pub fn distances(&self, query: &[u64], db: &CodesView<'_>, start: usize, out: &mut [u32]) {
        let words = db.words();
        assert!(query.len() >= words, "query has fewer words than the codes");
        assert!(
            start + out.len() <= db.len(),
            "scan range past the end of the codes"
        );
        if out.is_empty() {
            return;
        }
        let raw = db.raw_from(start);
        assert!(raw.len() >= (out.len() - 1) * db.stride() + words);
        // SAFETY: `Kernel::new` checked the CPU features of `isa`; the asserts above establish
        // the length contract of `ScanFn`, and a view always has `1 <= words <= stride`.
        unsafe { (self.scan)(query, raw, db.stride(), words, db.last_word_mask(), out) }
    }

    /// Threshold scan of several queries over codes `start .. start + len` of `db`: for each code
    /// in ascending order and each query `i`, calls `sink(i, position, d)` exactly when its
    /// distance `d < limits[i]`, and sets `limits[i]` to what `sink` returns, so that the next
    /// codes are tested against the new threshold. This is the kNN scan: almost every code fails
    /// the threshold, and the AVX2 and AVX-512 paths test many codes against it at once (AVX2:
    /// 256, as byte distances from nibble tables; AVX-512: thirty-two), each database vector
    /// loaded (AVX2: byte-sliced) once for all queries, without writing the distances out.
    ///
    /// # Panics
    /// When `limits` and `queries` differ in length, a query is too short, or the range runs past
    /// the end of `db` (caller bugs, not input).
    pub fn filter(
        &self,
        queries: &[&[u64]],
        db: &CodesView<'_>,
        start: usize,
        len: usize,
        limits: &mut [u32],
        sink: Sink<'_>,
    ) {
        let words = db.words();
        assert_eq!(queries.len(), limits.len(), "one limit per query");
        assert!(
            queries.iter().all(|q| q.len() >= words),
            "a query has fewer words than the codes"
        );
        assert!(
            start + len <= db.len(),
            "scan range past the end of the codes"
        );
        if len == 0 {
            return;
        }
        let raw = db.raw_from(start);
        assert!(raw.len() >= (len - 1) * db.stride() + words);
        if let Some(fused) = self.filter {
            // SAFETY: `Kernel::new` only installs a fused scan whose CPU features it checked; the
            // asserts above establish the length contract of `FilterFn`.
            let done = unsafe {
                fused(
                    queries,
                    raw,
                    db.stride(),
                    words,
                    db.last_word_mask(),
                    len,
                    start,
                    limits,
                    &mut *sink,
                )
            };
            if done {
                return;
            }
        }
        self.filter_by_scan(queries, db, start, len, limits, sink)
    }

    /// [`Kernel::filter`] through [`Kernel::distances`]: each query's distances to a chunk of
    /// codes, then the threshold test sixteen at a time (a vectorised `any`, then the rare hits).
    fn filter_by_scan(
        &self,
        queries: &[&[u64]],
        db: &CodesView<'_>,
        start: usize,
        len: usize,
        limits: &mut [u32],
        sink: Sink<'_>,
    ) {
        const CHUNK: usize = 256;
        let mut buf = [0u32; CHUNK];
        let mut c0 = start;
        while c0 < start + len {
            let m = CHUNK.min(start + len - c0);
            for (i, (q, limit)) in queries.iter().zip(limits.iter_mut()).enumerate() {
                let dist = &mut buf[..m];
                self.distances(q, db, c0, dist);
                for (b, chunk) in dist.chunks(16).enumerate() {
                    let lim = *limit;
                    if chunk.iter().fold(false, |any, &d| any | (d < lim)) {
                        for (j, &d) in chunk.iter().enumerate() {
                            if d < *limit {
                                *limit = sink(i, c0 + 16 * b + j, d);
                            }
                        }
                    }
                }
            }
            c0 += m;
        }
    }

    /// The distance of two single codes (`a.len().min(b.len())` words, the last masked by `mask`)
    /// with this path's scalar popcount; for scattered pairs such as re-ranking candidates.
    #[inline]
    pub fn distance(&self, a: &[u64], b: &[u64], mask: u64) -> u32 {
        // SAFETY: `Kernel::new` checked the CPU features of `isa`; PairFn bounds-checks slices.
        unsafe { (self.pair)(a, b, mask) }
    }

    /// Distances of a narrow query (a code of at most 32 bits in a u32) to the narrow codes
    /// `db[..out.len()]`: the cascade's first stage, which packs short prefixes this way so a
    /// vector holds twice as many codes as with one u64 per code.
    ///
    /// # Panics
    /// When `db` is shorter than `out` (a caller bug).
    pub fn distances32(&self, query: u32, db: &[u32], out: &mut [u32]) {
        assert!(db.len() >= out.len(), "fewer codes than outputs");
        // SAFETY: `Kernel::new` checked the CPU features; the assert is the length contract.
        unsafe { (self.scan32)(query, db, out) }
    }
}

#[inline(always)]
fn scan32_plain(q: u32, db: &[u32], out: &mut [u32]) {
    for (o, &c) in out.iter_mut().zip(db) {
        *o = (q ^ c).count_ones();
    }
}

/// Portable narrow scan (safe: no CPU feature needed).
unsafe fn scan32_portable(q: u32, db: &[u32], out: &mut [u32]) {
    scan32_plain(q, db, out)
}

/// Portable pair distance (safe: no CPU feature needed).
unsafe fn pair_portable(a: &[u64], b: &[u64], mask: u64) -> u32 {
    distance(a, b, mask)
}

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

/// Scalar multi-query threshold scan (code by code, every query per code): the tail of the
/// few-query AVX2 scan ([`x86::filter_avx2`]).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn filter_scalar(
    qs: &[&[u64]],
    db: &[u64],
    stride: usize,
    words: usize,
    mask: u64,
    n: usize,
    base: usize,
    limits: &mut [u32],
    sink: Sink<'_>,
) {
    for j in 0..n {
        let c = &db[j * stride..j * stride + words];
        for (i, (q, limit)) in qs.iter().zip(limits.iter_mut()).enumerate() {
            let d = distance(q, c, mask);
            if d < *limit {
                *limit = sink(i, base + j, d);
            }
        }
    }
}

/// Fixed-width scan, `W` words per code. Inlined into each `#[target_feature]` wrapper so that
/// `count_ones` becomes the instruction that wrapper enables.
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

/// The width branch, hoisted: one `match` per call, then a loop specialised for the width.
#[inline(always)]
fn scan_dispatch(q: &[u64], db: &[u64], stride: usize, words: usize, mask: u64, out: &mut [u32]) {
    match words {
        1 => scan_fixed::<1>(q, db, stride, mask, out),
        2 => scan_fixed::<2>(q, db, stride, mask, out),
        4 => scan_fixed::<4>(q, db, stride, mask, out),
        _ => scan_generic(q, db, stride, words, mask, out),
    }
}

/// The portable reference path (safe: it needs no CPU feature; the slices are bounds-checked).
unsafe fn scan_portable(
    q: &[u64],
    db: &[u64],
    stride: usize,
    words: usize,
    mask: u64,
    out: &mut [u32],
) {
    scan_dispatch(q, db, stride, words, mask, out)
}

/// Eight u64 lanes and the few operations of the fused AVX-512 threshold scan ([`fused8`]).
///
/// The scan is written once against this trait: [`x86::Avx512`] implements it with AVX-512F and
/// VPOPCNTDQ intrinsics, and a plain `[u64; 8]` emulation (in the unit tests) implements it with
/// `count_ones`, so the blocking, de-interleaving, tail and threshold logic is tested on every
/// machine and only the one-line intrinsic bodies need a CPU that has them.
///
/// # Safety
/// Every method may require the implementation's CPU features: callers must have checked them.
#[cfg(any(target_arch = "x86_64", test))]
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

/// Queries per chunk of [`fused8`]: their query words and limits are kept on the stack.
#[cfg(any(target_arch = "x86_64", test))]
const FUSED8_QCHUNK: usize = 32;
/// Groups of eight codes per block of [`fused8`]: each query meets the block's `8 * U` codes with
/// one broadcast of each query word and one threshold compare (on the lane-wise minimum).
#[cfg(any(target_arch = "x86_64", test))]
const FUSED8_U: usize = 4;

/// Word `w < W` of the eight codes `8 g .. 8 g + 8`, lane `l` holding code `8 g + l`, the last
/// word masked by `mv`; codes start at `p` and are `S` words apart (`W <= S <= 2`). `avail` is the
/// number of readable words from the group's first word `8 S g`: lanes whose words lie past it
/// are not read (their codes must then not be used).
///
/// # Safety
/// The CPU has `L`'s features; the words `p + 8 S g .. p + 8 S g + avail` are readable;
/// `avail >= 1`.
#[cfg(any(target_arch = "x86_64", test))]
#[inline(always)]
unsafe fn load_group<L: Lanes8, const W: usize, const S: usize>(
    p: *const u64,
    g: usize,
    avail: usize,
    mv: L::V,
) -> [L::V; W] {
    let first = 8 * S * g;
    // The S vectors of the group's 8 S words: a full load where all eight words are readable, a
    // masked load of the readable ones, zero past the end (then no word is touched).
    let v: [L::V; S] = std::array::from_fn(|k| {
        if avail >= 8 * (k + 1) {
            // SAFETY: words first + 8k .. first + 8k + 8 are readable (avail >= 8k + 8).
            unsafe { L::load(p.add(first + 8 * k)) }
        } else if avail > 8 * k {
            // SAFETY: words first + 8k .. first + avail are readable, 1 <= avail - 8k < 8.
            unsafe { L::load_first(p.add(first + 8 * k), avail - 8 * k) }
        } else {
            // SAFETY: only the CPU features are needed, which the caller checked.
            unsafe { L::splat(0) }
        }
    });
    let mut x: [L::V; W] = std::array::from_fn(|w| {
        if S == 1 {
            v[0]
        } else if w == 0 {
            // SAFETY: as above. S = 2: vector k holds codes 4k .. 4k + 4, two words each.
            unsafe { L::even(v[0], v[S - 1]) }
        } else {
            // SAFETY: as above.
            unsafe { L::odd(v[0], v[S - 1]) }
        }
    });
    // SAFETY: as above.
    x[W - 1] = unsafe { L::and(x[W - 1], mv) };
    x
}

/// The distances of one query (its words broadcast in `q`) to the `8 U` codes of `x`, group by
/// group.
///
/// # Safety
/// The CPU has `L`'s features.
#[cfg(any(target_arch = "x86_64", test))]
#[inline(always)]
unsafe fn group_distances<L: Lanes8, const W: usize, const U: usize>(
    x: &[[L::V; W]; U],
    q: [L::V; W],
) -> [L::V; U] {
    std::array::from_fn(|u| {
        // SAFETY: the caller checked the CPU features.
        unsafe {
            let mut d = L::xor_popcnt(x[u][0], q[0]);
            for w in 1..W {
                d = L::add(d, L::xor_popcnt(x[u][w], q[w]));
            }
            d
        }
    })
}

/// One block of `U` groups of eight codes (`x`, code `8 u + l` of the block in lane `l` of
/// `x[u]`) against every query of a chunk; only the first `valid` codes of the block exist
/// (`valid == 8 U`, or `U == 1`). Per query: the `8 U` distances, their lane-wise minimum
/// compared with the query's limit, and on a hit the block's codes in ascending order against
/// the limit as it changes.
///
/// # Safety
/// The CPU has `L`'s features; `qw[w].len()`, `lim.len()` and `limits.len()` are at least `qn`.
#[cfg(any(target_arch = "x86_64", test))]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn block_filter<L: Lanes8, const W: usize, const U: usize>(
    x: &[[L::V; W]; U],
    valid: usize,
    qw: &[[u64; FUSED8_QCHUNK]; W],
    lim: &mut [u64; FUSED8_QCHUNK],
    qn: usize,
    limits: &mut [u32],
    q0: usize,
    code0: usize,
    sink: Sink<'_>,
) {
    let keep: u8 = if valid >= 8 { 0xff } else { (1u8 << valid) - 1 };
    for i in 0..qn {
        // SAFETY (this block): the caller checked the CPU features.
        let (d, hit) = unsafe {
            let q: [L::V; W] = std::array::from_fn(|w| L::splat(qw[w][i]));
            let d = group_distances::<L, W, U>(x, q);
            let mut m = d[0];
            for &du in &d[1..] {
                m = L::min(m, du);
            }
            (d, L::lt_mask(m, L::splat(lim[i])) & keep)
        };
        if hit != 0 {
            // The block's codes in ascending order, each against the limit at its turn: per
            // group, the lanes below the current limit as a mask; after each hit only the later
            // lanes, against the limit the sink returned (whatever it is).
            let mut limit = limits[i];
            for (u, &du) in d.iter().enumerate() {
                let lanes = valid.saturating_sub(8 * u).min(8);
                let in_group = (0xffu16 >> (8 - lanes)) as u8;
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
                    limit = sink(q0 + i, code0 + 8 * u + l, dist[l] as u32);
                    m = below(limit) & in_group & (0xffu16 << (l + 1)) as u8;
                }
            }
            limits[i] = limit;
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
/// The last partial group of eight is read with masked loads, so there is no scalar tail.
///
/// # Safety
/// The CPU has `L`'s features; `qs.len() == limits.len()`; every query has at least `W` words;
/// when `n > 0`, `db.len() >= (n - 1) * S + W`.
#[cfg(any(target_arch = "x86_64", test))]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn fused8<L: Lanes8, const W: usize, const S: usize>(
    qs: &[&[u64]],
    db: &[u64],
    mask: u64,
    n: usize,
    base: usize,
    limits: &mut [u32],
    sink: Sink<'_>,
) {
    const U: usize = FUSED8_U;
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
    for (c, (chunk, chunk_limits)) in qs
        .chunks(FUSED8_QCHUNK)
        .zip(limits.chunks_mut(FUSED8_QCHUNK))
        .enumerate()
    {
        let q0 = c * FUSED8_QCHUNK;
        let qn = chunk.len();
        let mut qw = [[0u64; FUSED8_QCHUNK]; W];
        let mut lim = [0u64; FUSED8_QCHUNK];
        for (i, q) in chunk.iter().enumerate() {
            for (w, qw_w) in qw.iter_mut().enumerate() {
                qw_w[i] = if w == W - 1 { q[w] & mask } else { q[w] };
            }
            lim[i] = u64::from(chunk_limits[i]);
        }
        for b in 0..blocks {
            // Groups U b .. U b + U are below `full`, so each has its 8 S words in `db` (`avail` =
            // 8 S is what the load reads), and the CPU features were checked.
            let x: [[L::V; W]; U] = std::array::from_fn(|u| {
                // SAFETY: see above.
                unsafe { load_group::<L, W, S>(p, U * b + u, 8 * S, mv) }
            });
            // SAFETY: the CPU features were checked; qw, lim and chunk_limits have qn entries.
            unsafe {
                block_filter::<L, W, U>(
                    &x,
                    8 * U,
                    &qw,
                    &mut lim,
                    qn,
                    chunk_limits,
                    q0,
                    base + 8 * U * b,
                    &mut *sink,
                )
            };
        }
        for g in U * blocks..groups {
            let valid = (n - 8 * g).min(8);
            // Code 8 g exists, so its first word 8 S g < len.
            let avail = len - 8 * S * g;
            // SAFETY: the words 8 S g .. len are in `db` and avail >= 1; lanes past `avail` are
            // not read, and the lanes of the `valid` codes all lie before it (the caller's length
            // contract), so only those codes are tested.
            let x = [unsafe { load_group::<L, W, S>(p, g, avail, mv) }];
            // SAFETY: as for the blocks above.
            unsafe {
                block_filter::<L, W, 1>(
                    &x,
                    valid,
                    &qw,
                    &mut lim,
                    qn,
                    chunk_limits,
                    q0,
                    base + 8 * g,
                    &mut *sink,
                )
            };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::scan_dispatch;
    use std::arch::x86_64::*;

    #[target_feature(enable = "popcnt")]
    pub(super) unsafe fn pair_popcnt(a: &[u64], b: &[u64], mask: u64) -> u32 {
        super::distance(a, b, mask)
    }

    #[target_feature(enable = "popcnt")]
    pub(super) unsafe fn scan32_popcnt(q: u32, db: &[u32], out: &mut [u32]) {
        super::scan32_plain(q, db, out)
    }

    #[target_feature(enable = "avx2,popcnt")]
    pub(super) unsafe fn scan32_avx2(q: u32, db: &[u32], out: &mut [u32]) {
        let n = out.len();
        let blocks = n / 8;
        let qv = _mm256_set1_epi32(q as i32);
        let ones8 = _mm256_set1_epi8(1);
        let ones16 = _mm256_set1_epi16(1);
        let table = _mm256_setr_epi8(
            0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2,
            3, 3, 4,
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
        super::scan32_plain(q, &db[done..], &mut out[done..]);
    }

    #[target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")]
    pub(super) unsafe fn scan32_avx512(q: u32, db: &[u32], out: &mut [u32]) {
        let n = out.len();
        let blocks = n / 16;
        let qv = _mm512_set1_epi32(q as i32);
        for b in 0..blocks {
            // SAFETY: codes 16b .. 16b + 16 exist (b < n / 16 and db.len() >= n); out likewise.
            unsafe {
                let x = _mm512_xor_si512(_mm512_loadu_si512(db.as_ptr().add(16 * b).cast()), qv);
                _mm512_storeu_si512(out.as_mut_ptr().add(16 * b).cast(), _mm512_popcnt_epi32(x));
            }
        }
        let done = blocks * 16;
        super::scan32_plain(q, &db[done..], &mut out[done..]);
    }

    #[target_feature(enable = "popcnt")]
    pub(super) unsafe fn scan_popcnt(
        q: &[u64],
        db: &[u64],
        stride: usize,
        words: usize,
        mask: u64,
        out: &mut [u32],
    ) {
        scan_dispatch(q, db, stride, words, mask, out)
    }

    /// Per-64-bit-lane popcount: nibble lookup with `vpshufb`, then `vpsadbw` sums the eight byte
    /// counts of each lane (Mula, Kurz and Lemire's method, lane-wise instead of accumulated).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn popcnt_lanes(v: __m256i) -> __m256i {
        let table = _mm256_setr_epi8(
            0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2,
            3, 3, 4,
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

    #[target_feature(enable = "avx2,popcnt")]
    pub(super) unsafe fn scan_avx2(
        q: &[u64],
        db: &[u64],
        stride: usize,
        words: usize,
        mask: u64,
        out: &mut [u32],
    ) {
        // The vector loops need codes packed back to back; other strides (prefix views of
        // longer codes) take the scalar popcnt loop.
        if words != stride || !matches!(words, 1 | 2 | 4) {
            return scan_dispatch(q, db, stride, words, mask, out);
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
                        let c0 = popcnt_lanes(_mm256_and_si256(
                            _mm256_xor_si256(load(p, 2 * b), qv),
                            mv,
                        ));
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
                        let c0 = popcnt_lanes(_mm256_and_si256(
                            _mm256_xor_si256(load(p, 4 * b), qv),
                            mv,
                        ));
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
                let qv = load(q.as_ptr(), 0);
                let mv = _mm256_setr_epi64x(-1, -1, -1, mask as i64);
                let order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
                for b in 0..blocks {
                    // SAFETY: codes 8b .. 8b + 8 are four words each: vectors 8b .. 8b + 8 exist;
                    // `q` has at least 4 words (the ScanFn contract).
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
        scan_dispatch(
            q,
            &db[done * stride..],
            stride,
            words,
            mask,
            &mut out[done..],
        );
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
            0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2,
            3, 3, 4,
        );
        _mm256_add_epi8(
            _mm256_shuffle_epi8(table, _mm256_xor_si256(xlo, qlo)),
            _mm256_shuffle_epi8(table, _mm256_xor_si256(xhi, qhi)),
        )
    }

    /// The few-query body of [`filter_avx2`] for 128-bit codes (two words) packed back to back:
    /// handles the first `8 * (n / 8)` codes and returns how many that is. Per group of eight
    /// codes the nibbles are split once for all queries; per query, the byte counts of both words
    /// are added vertically before a single `vpsadbw`, and the eight distances are tested
    /// against the query's limit with one compare.
    ///
    /// # Safety
    /// AVX2 is available; `db` holds at least `n` codes of two words; every query has two words;
    /// one limit per query. Fewer than [`FASTSCAN_MIN_QUERIES_128`] queries (more would panic).
    #[inline]
    #[target_feature(enable = "avx2,popcnt")]
    unsafe fn fused128(
        qs: &[&[u64]],
        db: &[u64],
        mask: u64,
        n: usize,
        base: usize,
        limits: &mut [u32],
        sink: super::Sink<'_>,
    ) -> usize {
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
                        if dj < *limit {
                            *limit = sink(i, base + 8 * g + j, dj);
                        }
                    }
                    lim[i] = _mm256_set1_epi32(lane_limit(*limit));
                }
            }
        }
        groups * 8
    }

    /// The few-query body of [`filter_avx2`] for one-word codes packed back to back: handles the
    /// first `8 * (n / 8)` codes and returns how many that is. Per group of eight codes (one
    /// cache line, two vectors, lane `l` of vector `v` holding code `4 v + l`) the masked nibbles
    /// are split once; per query, two shuffles give the byte counts of `x ^ q`, one `vpsadbw`
    /// sums each code's eight bytes in its own lane, and one compare per vector tests the
    /// distances against the query's limit. One or two queries stream the codes at memory speed
    /// this way, where the fast scan would spend more on slicing each block than on scanning it.
    ///
    /// # Safety
    /// AVX2 is available; `db` holds at least `n` one-word codes; every query has a word; one
    /// limit per query. Fewer than [`FASTSCAN_MIN_QUERIES_64`] queries (more would panic).
    /// `MASKED`: whether `mask` may clear bits (a prefix shorter than 64 bits); full 64-bit
    /// codes skip the two ANDs per group, a tenth of a scan that runs near the memory's speed.
    #[inline]
    #[target_feature(enable = "avx2,popcnt")]
    unsafe fn fused64<const MASKED: bool>(
        qs: &[&[u64]],
        db: &[u64],
        mask: u64,
        n: usize,
        base: usize,
        limits: &mut [u32],
        sink: super::Sink<'_>,
    ) -> usize {
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
                        if dj < *limit {
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
    /// return `false`, for the per-query vector scan): the nibble-table fast scan of
    /// [`super::fastscan`] with [`Avx2`]. Per block of 32 codes, byte-sliced once per chunk of
    /// queries, a query costs one `vpshufb` and one `vpaddb` per nibble position of the code,
    /// and one saturating subtract against its limit. A few queries over 64- or 128-bit codes
    /// packed back to back take [`fused64`] or [`fused128`] instead (see
    /// [`FASTSCAN_MIN_QUERIES_64`] and [`FASTSCAN_MIN_QUERIES_128`]).
    #[target_feature(enable = "avx2,popcnt")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn filter_avx2(
        qs: &[&[u64]],
        db: &[u64],
        stride: usize,
        words: usize,
        mask: u64,
        n: usize,
        base: usize,
        limits: &mut [u32],
        sink: super::Sink<'_>,
    ) -> bool {
        use super::fastscan::filter;
        // A few queries over codes packed back to back: the per-code kernels take the groups of
        // eight, the scalar scan the rest.
        // SAFETY (both): the caller's `FilterFn` contract, with the width checked here.
        let few = match (words, stride) {
            (2, 2) if qs.len() < FASTSCAN_MIN_QUERIES_128 => {
                Some(unsafe { fused128(qs, db, mask, n, base, limits, sink) })
            }
            (1, 1) if qs.len() < FASTSCAN_MIN_QUERIES_64 => Some(unsafe {
                if mask == u64::MAX {
                    fused64::<false>(qs, db, mask, n, base, limits, sink)
                } else {
                    fused64::<true>(qs, db, mask, n, base, limits, sink)
                }
            }),
            _ => None,
        };
        if let Some(done) = few {
            super::filter_scalar(
                qs,
                &db[done * stride..],
                stride,
                words,
                mask,
                n - done,
                base + done,
                limits,
                sink,
            );
            return true;
        }
        match (words, stride) {
            // SAFETY: the caller's `FilterFn` contract, with the shape checked here (PACKED
            // exactly for one-word codes back to back, else a stride of at least two words).
            (1, 1) => unsafe {
                filter::<Avx2, 1, true>(qs, db, stride, mask, n, base, limits, sink)
            },
            // SAFETY: as above.
            (1, 2..) => unsafe {
                filter::<Avx2, 1, false>(qs, db, stride, mask, n, base, limits, sink)
            },
            // SAFETY: as above.
            (2, 2..) => unsafe {
                filter::<Avx2, 2, false>(qs, db, stride, mask, n, base, limits, sink)
            },
            _ => return false,
        }
        true
    }

    /// The byte-lane operations of the fast-scan filter ([`super::fastscan`]) with AVX2: each
    /// method is an `#[inline(always)]` wrapper of one or two intrinsics, inlined into
    /// [`filter_avx2`], whose `#[target_feature]` makes them single instructions.
    #[derive(Clone, Copy)]
    pub(super) struct Avx2;

    // SAFETY (every unsafe block of this impl): the trait's contract is that the caller checked
    // AVX2, which is all these intrinsics need; loads and stores touch only what the method's
    // own contract says is readable or writable, and have no alignment requirement.
    impl super::fastscan::Lanes32 for Avx2 {
        type V = __m256i;

        #[inline(always)]
        unsafe fn splat(x: u8) -> __m256i {
            // SAFETY: see the impl.
            unsafe { _mm256_set1_epi8(x as i8) }
        }

        #[inline(always)]
        unsafe fn load(p: *const u8) -> __m256i {
            // SAFETY: see the impl.
            unsafe { _mm256_loadu_si256(p.cast()) }
        }

        #[inline(always)]
        unsafe fn broadcast_half(p: *const u8) -> __m256i {
            // SAFETY: see the impl.
            unsafe { _mm256_broadcastsi128_si256(_mm_loadu_si128(p.cast())) }
        }

        #[inline(always)]
        unsafe fn load_halves(lo: *const u8, hi: *const u8) -> __m256i {
            // SAFETY: see the impl.
            unsafe { _mm256_loadu2_m128i(hi.cast(), lo.cast()) }
        }

        #[inline(always)]
        unsafe fn prefetch(p: *const u8) {
            // SAFETY: see the impl; a prefetch never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(p.cast()) }
        }

        #[inline(always)]
        unsafe fn store(p: *mut u8, v: __m256i) {
            // SAFETY: see the impl.
            unsafe { _mm256_storeu_si256(p.cast(), v) }
        }

        #[inline(always)]
        unsafe fn shuffle(table: __m256i, idx: __m256i) -> __m256i {
            // SAFETY: see the impl.
            unsafe { _mm256_shuffle_epi8(table, idx) }
        }

        #[inline(always)]
        unsafe fn unpack_lo16(a: __m256i, b: __m256i) -> __m256i {
            // SAFETY: see the impl.
            unsafe { _mm256_unpacklo_epi16(a, b) }
        }

        #[inline(always)]
        unsafe fn unpack_hi16(a: __m256i, b: __m256i) -> __m256i {
            // SAFETY: see the impl.
            unsafe { _mm256_unpackhi_epi16(a, b) }
        }

        #[inline(always)]
        unsafe fn unpack_lo32(a: __m256i, b: __m256i) -> __m256i {
            // SAFETY: see the impl.
            unsafe { _mm256_unpacklo_epi32(a, b) }
        }

        #[inline(always)]
        unsafe fn unpack_hi32(a: __m256i, b: __m256i) -> __m256i {
            // SAFETY: see the impl.
            unsafe { _mm256_unpackhi_epi32(a, b) }
        }

        #[inline(always)]
        unsafe fn unpack_lo64(a: __m256i, b: __m256i) -> __m256i {
            // SAFETY: see the impl.
            unsafe { _mm256_unpacklo_epi64(a, b) }
        }

        #[inline(always)]
        unsafe fn unpack_hi64(a: __m256i, b: __m256i) -> __m256i {
            // SAFETY: see the impl.
            unsafe { _mm256_unpackhi_epi64(a, b) }
        }

        #[inline(always)]
        unsafe fn join_halves(lo: __m256i, hi: __m256i) -> __m256i {
            // SAFETY: see the impl. Dwords 4..8 (the high half) from `hi`.
            unsafe { _mm256_blend_epi32::<0xf0>(lo, hi) }
        }

        #[inline(always)]
        unsafe fn low_nibbles(v: __m256i) -> __m256i {
            // SAFETY: see the impl.
            unsafe { _mm256_and_si256(v, _mm256_set1_epi8(0x0f)) }
        }

        #[inline(always)]
        unsafe fn high_nibbles(v: __m256i) -> __m256i {
            // SAFETY: see the impl. The 16-bit shift moves the next byte's low bits into each
            // byte's top nibble, which the mask clears.
            unsafe { _mm256_and_si256(_mm256_srli_epi16::<4>(v), _mm256_set1_epi8(0x0f)) }
        }

        #[inline(always)]
        unsafe fn xor(a: __m256i, b: __m256i) -> __m256i {
            // SAFETY: see the impl.
            unsafe { _mm256_xor_si256(a, b) }
        }

        #[inline(always)]
        unsafe fn or(a: __m256i, b: __m256i) -> __m256i {
            // SAFETY: see the impl.
            unsafe { _mm256_or_si256(a, b) }
        }

        #[inline(always)]
        unsafe fn add(a: __m256i, b: __m256i) -> __m256i {
            // SAFETY: see the impl.
            unsafe { _mm256_add_epi8(a, b) }
        }

        #[inline(always)]
        unsafe fn sub_sat(a: __m256i, b: __m256i) -> __m256i {
            // SAFETY: see the impl.
            unsafe { _mm256_subs_epu8(a, b) }
        }

        #[inline(always)]
        unsafe fn is_zero(v: __m256i) -> bool {
            // SAFETY: see the impl.
            unsafe { _mm256_testz_si256(v, v) != 0 }
        }

        #[inline(always)]
        unsafe fn lt_mask(a: __m256i, b: __m256i) -> u32 {
            // SAFETY: see the impl. a < b exactly when b -sat a is non-zero.
            unsafe {
                let ge = _mm256_cmpeq_epi8(_mm256_subs_epu8(b, a), _mm256_setzero_si256());
                !(_mm256_movemask_epi8(ge) as u32)
            }
        }
    }

    /// The eight-lane operations of [`super::fused8`] with AVX-512F and VPOPCNTDQ (no byte
    /// operations, so no AVX-512BW). Each method is an `#[inline(always)]` wrapper of one or two
    /// intrinsics, inlined with [`super::fused8`] into [`filter_avx512`], whose
    /// `#[target_feature]` lets them compile to single instructions.
    #[derive(Clone, Copy)]
    pub(super) struct Avx512;

    // SAFETY (every unsafe block of this impl): the trait's contract is that the caller checked
    // AVX-512F and VPOPCNTDQ, which is all these intrinsics need; loads read only what the
    // method's own contract says is readable.
    impl super::Lanes8 for Avx512 {
        type V = __m512i;

        #[inline(always)]
        unsafe fn splat(x: u64) -> __m512i {
            // SAFETY: see the impl.
            unsafe { _mm512_set1_epi64(x as i64) }
        }

        #[inline(always)]
        unsafe fn load(p: *const u64) -> __m512i {
            // SAFETY: see the impl; the caller guarantees eight readable words, and loadu has no
            // alignment requirement.
            unsafe { _mm512_loadu_si512(p.cast()) }
        }

        #[inline(always)]
        unsafe fn load_first(p: *const u64, count: usize) -> __m512i {
            let k: __mmask8 = (1u8 << count) - 1;
            // SAFETY: see the impl; lanes not in `k` are neither read nor able to fault, and the
            // caller guarantees the `count` words of the others.
            unsafe { _mm512_maskz_loadu_epi64(k, p.cast()) }
        }

        #[inline(always)]
        unsafe fn even(a: __m512i, b: __m512i) -> __m512i {
            // SAFETY: see the impl. Index bit 3 picks `b`: 0, 2, 4, 6 of a then of b.
            unsafe { _mm512_permutex2var_epi64(a, _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), b) }
        }

        #[inline(always)]
        unsafe fn odd(a: __m512i, b: __m512i) -> __m512i {
            // SAFETY: see the impl.
            unsafe { _mm512_permutex2var_epi64(a, _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15), b) }
        }

        #[inline(always)]
        unsafe fn and(a: __m512i, b: __m512i) -> __m512i {
            // SAFETY: see the impl.
            unsafe { _mm512_and_si512(a, b) }
        }

        #[inline(always)]
        unsafe fn xor_popcnt(a: __m512i, b: __m512i) -> __m512i {
            // SAFETY: see the impl.
            unsafe { _mm512_popcnt_epi64(_mm512_xor_si512(a, b)) }
        }

        #[inline(always)]
        unsafe fn add(a: __m512i, b: __m512i) -> __m512i {
            // SAFETY: see the impl.
            unsafe { _mm512_add_epi64(a, b) }
        }

        #[inline(always)]
        unsafe fn min(a: __m512i, b: __m512i) -> __m512i {
            // SAFETY: see the impl.
            unsafe { _mm512_min_epu64(a, b) }
        }

        #[inline(always)]
        unsafe fn lt_mask(a: __m512i, b: __m512i) -> u8 {
            // SAFETY: see the impl.
            unsafe { _mm512_cmplt_epu64_mask(a, b) }
        }

        #[inline(always)]
        unsafe fn store(a: __m512i) -> [u64; 8] {
            let mut out = [0u64; 8];
            // SAFETY: see the impl; `out` has room for eight u64.
            unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), a) };
            out
        }
    }

    /// The fused multi-query threshold scan (`FilterFn`) with AVX-512F + VPOPCNTDQ for 64-bit
    /// codes, 128-bit codes and the 64-bit (or shorter) prefixes of 128-bit codes (other shapes
    /// return `false`, for the per-query vector scan): [`super::fused8`] with [`Avx512`]. Per
    /// block of 32 codes, loaded (and for two-word strides de-interleaved) once per chunk of 32
    /// queries, each query costs one `vpxorq` + `vpopcntq` per vector of eight codes and word,
    /// a `vpaddq` per eight 128-bit codes, three `vpminuq` and a single `vpcmpuq` against its
    /// k-th-best limit; only the rare passing blocks leave the registers.
    #[target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn filter_avx512(
        qs: &[&[u64]],
        db: &[u64],
        stride: usize,
        words: usize,
        mask: u64,
        n: usize,
        base: usize,
        limits: &mut [u32],
        sink: super::Sink<'_>,
    ) -> bool {
        match (words, stride) {
            // SAFETY: the caller's `FilterFn` contract (CPU features, lengths), with the code
            // shape checked here.
            (1, 1) => unsafe { super::fused8::<Avx512, 1, 1>(qs, db, mask, n, base, limits, sink) },
            // SAFETY: as above.
            (1, 2) => unsafe { super::fused8::<Avx512, 1, 2>(qs, db, mask, n, base, limits, sink) },
            // SAFETY: as above.
            (2, 2) => unsafe { super::fused8::<Avx512, 2, 2>(qs, db, mask, n, base, limits, sink) },
            _ => return false,
        }
        true
    }

    /// Sums of adjacent 64-bit lanes of `a` then `b`: `[a0+a1, a2+a3, a4+a5, a6+a7, b0+b1, ...]`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn pairs(a: __m512i, b: __m512i) -> __m512i {
        let even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
        let odd = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
        _mm512_add_epi64(
            _mm512_permutex2var_epi64(a, even, b),
            _mm512_permutex2var_epi64(a, odd, b),
        )
    }

    #[target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")]
    pub(super) unsafe fn scan_avx512(
        q: &[u64],
        db: &[u64],
        stride: usize,
        words: usize,
        mask: u64,
        out: &mut [u32],
    ) {
        let n = out.len();
        let p = db.as_ptr();
        let o = out.as_mut_ptr();
        let blocks = n / 8;
        // SAFETY (all loads below): `p + 8 j` for the vectors named in each arm lies inside the
        // codes 8b .. 8b + 8, which exist because b < n / 8 and codes are `stride` words apart.
        if words == stride && matches!(words, 1 | 2 | 4) {
            let m = mask as i64;
            match words {
                1 => {
                    let qv = _mm512_set1_epi64(q[0] as i64);
                    let mv = _mm512_set1_epi64(m);
                    for b in 0..blocks {
                        // SAFETY: see above; out has slots 8b .. 8b + 8.
                        unsafe {
                            let x = _mm512_and_si512(
                                _mm512_xor_si512(_mm512_loadu_si512(p.add(8 * b).cast()), qv),
                                mv,
                            );
                            _mm256_storeu_si256(
                                o.add(8 * b).cast(),
                                _mm512_cvtepi64_epi32(_mm512_popcnt_epi64(x)),
                            );
                        }
                    }
                }
                2 => {
                    let (q0, q1) = (q[0] as i64, q[1] as i64);
                    let qv = _mm512_setr_epi64(q0, q1, q0, q1, q0, q1, q0, q1);
                    let mv = _mm512_setr_epi64(-1, m, -1, m, -1, m, -1, m);
                    for b in 0..blocks {
                        // SAFETY: see above (vectors 2b, 2b + 1 of eight words).
                        unsafe {
                            let c0 = _mm512_popcnt_epi64(_mm512_and_si512(
                                _mm512_xor_si512(_mm512_loadu_si512(p.add(16 * b).cast()), qv),
                                mv,
                            ));
                            let c1 = _mm512_popcnt_epi64(_mm512_and_si512(
                                _mm512_xor_si512(_mm512_loadu_si512(p.add(16 * b + 8).cast()), qv),
                                mv,
                            ));
                            _mm256_storeu_si256(
                                o.add(8 * b).cast(),
                                _mm512_cvtepi64_epi32(pairs(c0, c1)),
                            );
                        }
                    }
                }
                _ => {
                    let (q0, q1, q2, q3) = (q[0] as i64, q[1] as i64, q[2] as i64, q[3] as i64);
                    let qv = _mm512_setr_epi64(q0, q1, q2, q3, q0, q1, q2, q3);
                    let mv = _mm512_setr_epi64(-1, -1, -1, m, -1, -1, -1, m);
                    for b in 0..blocks {
                        // SAFETY: see above (vectors 4b .. 4b + 4 of eight words).
                        unsafe {
                            let mut c = [_mm512_setzero_si512(); 4];
                            for (j, cj) in c.iter_mut().enumerate() {
                                *cj = _mm512_popcnt_epi64(_mm512_and_si512(
                                    _mm512_xor_si512(
                                        _mm512_loadu_si512(p.add(32 * b + 8 * j).cast()),
                                        qv,
                                    ),
                                    mv,
                                ));
                            }
                            let s = pairs(pairs(c[0], c[1]), pairs(c[2], c[3]));
                            _mm256_storeu_si256(o.add(8 * b).cast(), _mm512_cvtepi64_epi32(s));
                        }
                    }
                }
            }
            let done = blocks * 8;
            return super::scan_dispatch(
                q,
                &db[done * stride..],
                stride,
                words,
                mask,
                &mut out[done..],
            );
        }
        if words <= 2 {
            // Prefix views of one or two words of longer codes: the scalar loop is as fast.
            return super::scan_dispatch(q, db, stride, words, mask, out);
        }
        // Generic width: per code, eight words per vector, the tail with a masked load (masked-out
        // lanes are not read, so nothing past the code is touched).
        let mut qpad = [0u64; 16];
        let mut mpad = [0u64; 16];
        qpad[..words].copy_from_slice(&q[..words]);
        mpad[..words].fill(u64::MAX);
        mpad[words - 1] = mask;
        let chunks = words.div_ceil(8);
        for (i, slot) in out.iter_mut().enumerate() {
            let mut acc = _mm512_setzero_si512();
            for c in 0..chunks {
                let left = words - 8 * c;
                let k: __mmask8 = if left >= 8 { 0xff } else { (1u8 << left) - 1 };
                // SAFETY: lanes enabled by `k` are words 8c .. min(8c + 8, words) of code i, which
                // exist; qpad/mpad have 16 words and 8c + 8 <= 16 because words <= 16.
                unsafe {
                    let x = _mm512_maskz_loadu_epi64(k, p.add(i * stride + 8 * c).cast());
                    let qv = _mm512_loadu_si512(qpad.as_ptr().add(8 * c).cast());
                    let mv = _mm512_loadu_si512(mpad.as_ptr().add(8 * c).cast());
                    acc = _mm512_add_epi64(
                        acc,
                        _mm512_popcnt_epi64(_mm512_and_si512(_mm512_xor_si512(x, qv), mv)),
                    );
                }
            }
            *slot = _mm512_reduce_add_epi64(acc) as u32;
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::scan_dispatch;
    use std::arch::aarch64::*;

    #[target_feature(enable = "neon")]
    pub(super) unsafe fn scan32_neon(q: u32, db: &[u32], out: &mut [u32]) {
        let n = out.len();
        let blocks = n / 4;
        let qv = vdupq_n_u32(q);
        for b in 0..blocks {
            // SAFETY: codes 4b .. 4b + 4 exist (b < n / 4 and db.len() >= n); out likewise.
            unsafe {
                let x = veorq_u32(vld1q_u32(db.as_ptr().add(4 * b)), qv);
                let counts = vpaddlq_u16(vpaddlq_u8(vcntq_u8(vreinterpretq_u8_u32(x))));
                vst1q_u32(out.as_mut_ptr().add(4 * b), counts);
            }
        }
        let done = blocks * 4;
        super::scan32_plain(q, &db[done..], &mut out[done..]);
    }

    #[target_feature(enable = "neon")]
    pub(super) unsafe fn scan_neon(
        q: &[u64],
        db: &[u64],
        stride: usize,
        words: usize,
        mask: u64,
        out: &mut [u32],
    ) {
        let n = out.len();
        let p = db.as_ptr();
        match words {
            1 if stride == 1 => {
                let qv = vdupq_n_u64(q[0]);
                let mv = vdupq_n_u64(mask);
                let pairs = n / 2;
                for b in 0..pairs {
                    // SAFETY: codes 2b, 2b + 1 exist (b < n / 2) and are one word each.
                    let x = unsafe { vld1q_u64(p.add(2 * b)) };
                    let c = vcntq_u8(vreinterpretq_u8_u64(vandq_u64(veorq_u64(x, qv), mv)));
                    let lanes = vpaddlq_u32(vpaddlq_u16(vpaddlq_u8(c)));
                    out[2 * b] = vgetq_lane_u64::<0>(lanes) as u32;
                    out[2 * b + 1] = vgetq_lane_u64::<1>(lanes) as u32;
                }
                let done = pairs * 2;
                scan_dispatch(q, &db[done..], stride, words, mask, &mut out[done..]);
            }
            2 => {
                // SAFETY: `q` has at least two words (the ScanFn contract).
                let qv = unsafe { vld1q_u64(q.as_ptr()) };
                let mv = vcombine_u64(vcreate_u64(u64::MAX), vcreate_u64(mask));
                for (i, slot) in out.iter_mut().enumerate() {
                    // SAFETY: code i has two words at `p + i stride`.
                    let x = unsafe { vld1q_u64(p.add(i * stride)) };
                    *slot = u32::from(vaddvq_u8(vcntq_u8(vreinterpretq_u8_u64(vandq_u64(
                        veorq_u64(x, qv),
                        mv,
                    )))));
                }
            }
            _ => scan_dispatch(q, db, stride, words, mask, out),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The fused eight-lane scan's logic (blocks, de-interleaving, masked tails, limits) on an
    //! emulation of the lanes, so that it is tested on every machine; and, where the CPU has
    //! AVX-512F + VPOPCNTDQ, every lane operation of [`x86::Avx512`] against the emulation.
    use super::*;
    use crate::synth::SplitMix64;
    use std::cell::Cell;
    use std::io::Write;

    thread_local! {
        /// The readable word range `[start, end)` (addresses) of the current emulated scan.
        static READABLE: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    }

    /// Checks that `count` words from `p` lie inside the readable range, then reads them.
    fn read(p: *const u64, count: usize) -> [u64; 8] {
        let (lo, hi) = READABLE.with(Cell::get);
        let a = p as usize;
        assert!(
            a >= lo && a + 8 * count <= hi,
            "read of {count} words at word {} of a {}-word slice",
            (a.wrapping_sub(lo)) / 8,
            (hi - lo) / 8
        );
        let mut v = [0u64; 8];
        for (l, slot) in v.iter_mut().enumerate().take(count) {
            // SAFETY: the assert above: word l < count lies inside the slice being scanned.
            *slot = unsafe { p.add(l).read() };
        }
        v
    }

    /// The lanes as a plain array, with the semantics of the AVX-512 instructions.
    struct Emu;

    impl Lanes8 for Emu {
        type V = [u64; 8];
        unsafe fn splat(x: u64) -> [u64; 8] {
            [x; 8]
        }
        unsafe fn load(p: *const u64) -> [u64; 8] {
            read(p, 8)
        }
        unsafe fn load_first(p: *const u64, count: usize) -> [u64; 8] {
            assert!((1..8).contains(&count), "masked load of {count} lanes");
            read(p, count)
        }
        unsafe fn even(a: [u64; 8], b: [u64; 8]) -> [u64; 8] {
            std::array::from_fn(|l| if l < 4 { a[2 * l] } else { b[2 * l - 8] })
        }
        unsafe fn odd(a: [u64; 8], b: [u64; 8]) -> [u64; 8] {
            std::array::from_fn(|l| if l < 4 { a[2 * l + 1] } else { b[2 * l - 7] })
        }
        unsafe fn and(a: [u64; 8], b: [u64; 8]) -> [u64; 8] {
            std::array::from_fn(|l| a[l] & b[l])
        }
        unsafe fn xor_popcnt(a: [u64; 8], b: [u64; 8]) -> [u64; 8] {
            std::array::from_fn(|l| u64::from((a[l] ^ b[l]).count_ones()))
        }
        unsafe fn add(a: [u64; 8], b: [u64; 8]) -> [u64; 8] {
            std::array::from_fn(|l| a[l].wrapping_add(b[l]))
        }
        unsafe fn min(a: [u64; 8], b: [u64; 8]) -> [u64; 8] {
            std::array::from_fn(|l| a[l].min(b[l]))
        }
        unsafe fn lt_mask(a: [u64; 8], b: [u64; 8]) -> u8 {
            (0..8).fold(0, |m, l| m | (u8::from(a[l] < b[l]) << l))
        }
        unsafe fn store(a: [u64; 8]) -> [u64; 8] {
            a
        }
    }

    /// `fused8::<Emu>` on the shape `(words, stride)`, with reads checked against `db`.
    #[allow(clippy::too_many_arguments)]
    fn fused8_emulated(
        qs: &[&[u64]],
        db: &[u64],
        stride: usize,
        words: usize,
        mask: u64,
        n: usize,
        base: usize,
        limits: &mut [u32],
        sink: Sink<'_>,
    ) {
        let range = db.as_ptr_range();
        READABLE.with(|r| r.set((range.start as usize, range.end as usize)));
        // SAFETY: the emulation needs no CPU feature and checks every read; the callers below
        // pass one limit per query, queries of `words` words and `db` of (n - 1) stride + words.
        unsafe {
            match (words, stride) {
                (1, 1) => fused8::<Emu, 1, 1>(qs, db, mask, n, base, limits, sink),
                (1, 2) => fused8::<Emu, 1, 2>(qs, db, mask, n, base, limits, sink),
                (2, 2) => fused8::<Emu, 2, 2>(qs, db, mask, n, base, limits, sink),
                _ => unreachable!("not a fused shape"),
            }
        }
    }

    /// Per query, the codes `0..n` in ascending order whose distance is below the query's limit at
    /// their turn, the limit becoming `next(d)` after each hit.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reference(
        qs: &[&[u64]],
        db: &[u64],
        stride: usize,
        words: usize,
        mask: u64,
        n: usize,
        limit0: &[u32],
        next: impl Fn(usize, u32) -> u32,
    ) -> Vec<Vec<(usize, u32)>> {
        qs.iter()
            .enumerate()
            .map(|(i, q)| {
                let mut limit = limit0[i];
                let mut hits = Vec::new();
                for j in 0..n {
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

    #[test]
    fn avx512_fused_logic_on_emulated_lanes() {
        let mut rng = SplitMix64::new(512);
        // (words, stride, valid bits of the last word): 64-bit codes and shorter, the 64-bit and
        // shorter prefixes of 128-bit codes, 128-bit codes and prefixes of 65 to 127 bits.
        let shapes = [
            (1, 1, 64),
            (1, 1, 13),
            (1, 1, 1),
            (1, 2, 64),
            (1, 2, 37),
            (2, 2, 64),
            (2, 2, 36),
            (2, 2, 1),
        ];
        for (words, stride, last_bits) in shapes {
            let mask = if last_bits == 64 {
                u64::MAX
            } else {
                (1u64 << last_bits) - 1
            };
            let width = 64 * (words as u32 - 1) + last_bits as u32;
            let centre = [rng.next_u64(), rng.next_u64()];
            // Every length 0 ..= 2 blocks + 9 codes: full blocks, leftover full groups and every
            // partial group; the slice ends at the last code's last word (with words < stride
            // the unused word of the last code is absent).
            for n in 0..=(2 * 8 * FUSED8_U + 9) {
                let db_full = words_for(&mut rng, n * stride, &centre);
                let db = &db_full[..if n == 0 { 0 } else { (n - 1) * stride + words }];
                for nq in [1, 5, 33, 67] {
                    let q_words: Vec<Vec<u64>> = (0..nq)
                        .map(|_| words_for(&mut rng, words, &centre))
                        .collect();
                    let qs: Vec<&[u64]> = q_words.iter().map(Vec::as_slice).collect();
                    for (name, next, limit0) in &limit_rules(width, nq) {
                        let want = reference(&qs, db, stride, words, mask, n, limit0, next);
                        for base in [0, 1000] {
                            let mut got = vec![Vec::new(); nq];
                            let mut limits = limit0.clone();
                            fused8_emulated(
                                &qs,
                                db,
                                stride,
                                words,
                                mask,
                                n,
                                base,
                                &mut limits,
                                &mut |i, j, d| {
                                    got[i].push((j - base, d));
                                    next(i, d)
                                },
                            );
                            assert_eq!(
                                got, want,
                                "words {words}, stride {stride}, mask {mask:x}, n {n}, {nq} \
                                 queries, rule {name}, base {base}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Every lane operation of `L` on `a`, `b`: their results, then `lt_mask(a, b)`.
    ///
    /// # Safety
    /// The CPU has `L`'s features.
    #[inline(always)]
    unsafe fn lane_ops<L: Lanes8>(a: &[u64; 8], b: &[u64; 8], count: usize) -> ([[u64; 8]; 8], u8) {
        // SAFETY: the caller checked the CPU features; `a` has eight readable words and
        // `count <= 7` of them are read by the masked load.
        unsafe {
            let (va, vb) = (L::load(a.as_ptr()), L::load(b.as_ptr()));
            let ops = [
                L::store(L::splat(a[3])),
                L::store(L::load_first(a.as_ptr(), count)),
                L::store(L::even(va, vb)),
                L::store(L::odd(va, vb)),
                L::store(L::and(va, vb)),
                L::store(L::xor_popcnt(va, vb)),
                L::store(L::add(va, vb)),
                L::store(L::min(va, vb)),
            ];
            (ops, L::lt_mask(va, vb))
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    unsafe fn lane_ops_avx512(a: &[u64; 8], b: &[u64; 8], count: usize) -> ([[u64; 8]; 8], u8) {
        // SAFETY: this function's features are those of `x86::Avx512`, checked by the caller.
        unsafe { lane_ops::<x86::Avx512>(a, b, count) }
    }

    #[test]
    fn avx512_lane_ops_equal_emulation() {
        if !Isa::Avx512Vpopcntdq.is_available() {
            // Straight to stderr, so that libtest's capture does not hide the notice.
            let _ = writeln!(
                std::io::stderr(),
                "skipping avx512_lane_ops_equal_emulation: no AVX-512F + VPOPCNTDQ on this CPU"
            );
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let mut rng = SplitMix64::new(8);
            for t in 0..10_000 {
                let a: [u64; 8] = std::array::from_fn(|_| rng.next_u64() >> rng.below(64));
                let b: [u64; 8] = std::array::from_fn(|l| match (t + l) % 4 {
                    0 => a[l],
                    1 => rng.next_u64() >> rng.below(64),
                    2 => a[l] ^ (1 << rng.below(64)),
                    _ => u64::MAX - rng.below(3),
                });
                let count = 1 + t % 7;
                // The emulation's loads are checked against one readable range: a then b.
                let ab: [u64; 16] = std::array::from_fn(|l| if l < 8 { a[l] } else { b[l - 8] });
                let (a, b): (&[u64; 8], &[u64; 8]) = (
                    ab[..8].try_into().expect("eight words"),
                    ab[8..].try_into().expect("eight words"),
                );
                let range = ab.as_ptr_range();
                READABLE.with(|r| r.set((range.start as usize, range.end as usize)));
                // SAFETY: the emulation needs no CPU feature.
                let want = unsafe { lane_ops::<Emu>(a, b, count) };
                // SAFETY: AVX-512F + VPOPCNTDQ were checked above.
                let got = unsafe { lane_ops_avx512(a, b, count) };
                assert_eq!(got, want, "a {a:x?}, b {b:x?}, count {count}");
            }
        }
    }
}

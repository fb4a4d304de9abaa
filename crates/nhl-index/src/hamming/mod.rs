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
//!
//! The code is laid out by job and by instruction set: `portable` (the reference), the two
//! multi-query threshold scans written once against a trait of vector lanes (`lanescan`, eight
//! u64 lanes, with its AVX-512 lanes beside it; `fastscan`, nibble tables over 32 byte lanes,
//! with its AVX2 lanes beside it), the per-code x86-64 kernels (`x86`: scalar `popcnt`, AVX2,
//! AVX-512) and NEON (`aarch64`).

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(any(target_arch = "x86_64", test))]
mod fastscan;
mod isa;
#[cfg(any(target_arch = "x86_64", test))]
mod lanescan;
mod portable;
mod raw;
#[cfg(test)]
mod testing;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use isa::Isa;
pub use portable::distance;
pub use raw::Sink;
pub(crate) use raw::{EveryRow, RowBits, Rows};

use crate::allow::AllowedRows;
use crate::codes::CodesView;
use crate::error::IndexError;
use raw::{Filter, KernelFns, RawCodes};

/// A filter that allows fewer than one row in this many of a scan's range is served by copying
/// the allowed codes together and scanning them without a filter ([`Kernel::filter_allowed`]).
const SPARSE_FILTER: usize = 16;

/// A resolved kernel: an instruction-set path whose availability has been checked.
#[derive(Clone, Copy)]
pub struct Kernel {
    isa: Isa,
    fns: KernelFns,
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
        let fns = match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Popcnt => x86::FNS,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::avx2::FNS,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vpopcntdq => x86::avx512::FNS,
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => aarch64::FNS,
            _ => portable::FNS,
        };
        Ok(Kernel { isa, fns })
    }

    /// The kernel of [`Isa::best`].
    pub fn best() -> Kernel {
        let isa = Isa::best();
        // `best` only returns available paths; Portable is the fallback that always exists.
        Kernel::new(isa).unwrap_or(Kernel {
            isa: Isa::Portable,
            fns: portable::FNS,
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
        assert!(
            query.len() >= db.words(),
            "query has fewer words than the codes"
        );
        let codes = RawCodes::of(db, start, out.len());
        if out.is_empty() {
            return;
        }
        // SAFETY: `Kernel::new` checked the CPU features of `isa`; the assert above and
        // `RawCodes::of` (one code per output) establish the rest of the `ScanFn` contract.
        unsafe { (self.fns.scan)(query, codes, out) }
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
        self.run_filter(db, start..start + len, None, queries, limits, sink)
    }

    /// [`Kernel::filter`] over codes `rows` of `db` that reports only the codes `allowed` has:
    /// each code's bit is ANDed with its query's threshold test where that test is made (a block
    /// of codes at a time in the fused scans), and a block whose codes are all disallowed is not
    /// scanned. A sparse filter (under one row in 16 of `rows` allowed) instead copies the
    /// allowed codes into one run, once for all the queries, and scans that without a filter.
    /// Positions, and `allowed`'s rows, are those of `db`.
    ///
    /// # Panics
    /// As [`Kernel::filter`], and when `allowed` is not over the `db.len()` rows of `db`.
    pub fn filter_allowed(
        &self,
        queries: &[&[u64]],
        db: &CodesView<'_>,
        rows: std::ops::Range<usize>,
        allowed: &AllowedRows,
        limits: &mut [u32],
        sink: Sink<'_>,
    ) {
        assert_eq!(allowed.rows(), db.len(), "one allowed bit per code of db");
        self.run_filter(db, rows, Some(allowed.bits()), queries, limits, sink)
    }

    fn run_filter(
        &self,
        db: &CodesView<'_>,
        rows: std::ops::Range<usize>,
        allow: Option<RowBits<'_>>,
        queries: &[&[u64]],
        limits: &mut [u32],
        sink: Sink<'_>,
    ) {
        assert_eq!(queries.len(), limits.len(), "one limit per query");
        assert!(
            queries.iter().all(|q| q.len() >= db.words()),
            "a query has fewer words than the codes"
        );
        let codes = RawCodes::of(db, rows.start, rows.len());
        if rows.is_empty() {
            return;
        }
        if let Some(bits) = allow {
            let allowed: Vec<usize> = bits.positions(rows.clone()).collect();
            if allowed.len() * SPARSE_FILTER < rows.len() {
                return self.filter_gathered(&allowed, codes, rows.start, queries, limits, sink);
            }
        }
        let mut scan = Filter {
            queries,
            codes,
            base: rows.start,
            limits,
            sink,
            allow,
        };
        if let Some(fused) = self.fns.filter {
            // SAFETY: `Kernel::new` only installs a fused scan whose CPU features it checked.
            if unsafe { fused(scan.reborrow()) } {
                return;
            }
        }
        match allow {
            None => self.filter_by_scan(scan, EveryRow),
            Some(bits) => self.filter_by_scan(scan, bits),
        }
    }

    /// A sparse filter's scan: the allowed codes (at `positions`, ascending, counted from `base`
    /// as the codes' first one) are copied into one contiguous run, once for all the queries, and
    /// scanned without a filter, the sink told their own positions. Copying a few codes costs
    /// far less than testing every code of the range only to drop most of them.
    fn filter_gathered(
        &self,
        positions: &[usize],
        codes: RawCodes<'_>,
        base: usize,
        queries: &[&[u64]],
        limits: &mut [u32],
        sink: Sink<'_>,
    ) {
        let (words, stride) = (codes.words(), codes.stride());
        let mut gathered = Vec::with_capacity(positions.len() * words);
        for &p in positions {
            let at = (p - base) * stride;
            gathered.extend_from_slice(&codes.data()[at..at + words]);
        }
        let mut own_position = |query: usize, at: usize, d: u32| sink(query, positions[at], d);
        let mut scan = Filter {
            queries,
            codes: RawCodes::new(&gathered, positions.len(), words, words, codes.mask()),
            base: 0,
            limits,
            sink: &mut own_position,
            allow: None,
        };
        if let Some(fused) = self.fns.filter {
            // SAFETY: `Kernel::new` only installs a fused scan whose CPU features it checked.
            if unsafe { fused(scan.reborrow()) } {
                return;
            }
        }
        self.filter_by_scan(scan, EveryRow)
    }

    /// [`Kernel::filter`] through the per-code scan: each query's distances to a chunk of codes,
    /// then the threshold test sixteen at a time (sixteen codes none of which `rows` has are
    /// skipped; then a vectorised `any`, then the rare hits, each tested against `rows`).
    fn filter_by_scan<R: Rows>(&self, f: Filter<'_>, rows: R) {
        const CHUNK: usize = 256;
        let Filter {
            queries,
            codes,
            base,
            limits,
            sink,
            ..
        } = f;
        let mut buf = [0u32; CHUNK];
        let mut done = 0;
        while done < codes.len() {
            let m = CHUNK.min(codes.len() - done);
            let chunk_codes = codes.skip(done).take(m);
            let c0 = base + done;
            for (i, (q, limit)) in queries.iter().zip(limits.iter_mut()).enumerate() {
                let dist = &mut buf[..m];
                // SAFETY: `Kernel::new` checked the CPU features of `isa`; every query has at
                // least `codes.words()` words (checked by the caller) and `dist` one slot per code.
                unsafe { (self.fns.scan)(q, chunk_codes, dist) };
                for (b, chunk) in dist.chunks(16).enumerate() {
                    let (lim, allowed) = (*limit, rows.window(c0 + 16 * b));
                    if allowed & 0xffff != 0 && chunk.iter().fold(false, |any, &d| any | (d < lim))
                    {
                        for (j, &d) in chunk.iter().enumerate() {
                            if d < *limit && allowed >> j & 1 != 0 {
                                *limit = sink(i, c0 + 16 * b + j, d);
                            }
                        }
                    }
                }
            }
            done += m;
        }
    }

    /// The distance of two single codes (`a.len().min(b.len())` words, the last masked by `mask`)
    /// with this path's scalar popcount; for scattered pairs such as re-ranking candidates.
    #[inline]
    pub fn distance(&self, a: &[u64], b: &[u64], mask: u64) -> u32 {
        // SAFETY: `Kernel::new` checked the CPU features of `isa`; PairFn bounds-checks slices.
        unsafe { (self.fns.pair)(a, b, mask) }
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
        unsafe { (self.fns.scan32)(query, db, out) }
    }
}

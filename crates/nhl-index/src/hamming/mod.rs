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

use crate::codes::CodesView;
use crate::error::IndexError;
use raw::{Filter, KernelFns, RawCodes};

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
        assert_eq!(queries.len(), limits.len(), "one limit per query");
        assert!(
            queries.iter().all(|q| q.len() >= db.words()),
            "a query has fewer words than the codes"
        );
        let codes = RawCodes::of(db, start, len);
        if len == 0 {
            return;
        }
        if let Some(fused) = self.fns.filter {
            let scan = Filter {
                queries,
                codes,
                base: start,
                limits: &mut *limits,
                sink: &mut *sink,
            };
            // SAFETY: `Kernel::new` only installs a fused scan whose CPU features it checked.
            if unsafe { fused(scan) } {
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

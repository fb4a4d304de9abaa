//! What the raw kernels of every instruction-set path take: a run of codes ([`RawCodes`]) and,
//! for the threshold scan, its queries, limits, sink and the rows it may report ([`Filter`],
//! [`Rows`]); and the signatures of the entry points one path provides ([`KernelFns`]).

use crate::codes::CodesView;

/// What [`crate::Kernel::filter`] calls for each code that passes a query's threshold: `(query
/// index, code position, distance)`, returning the query's new threshold.
pub type Sink<'s> = &'s mut dyn FnMut(usize, usize, u32) -> u32;

/// A run of `len` codes of `words` u64 words, code `i` at `data[i * stride ..]`, the bits of its
/// last word outside `mask` to be ignored.
///
/// The constructors check the invariants the raw kernels' pointer arithmetic relies on, and the
/// fields are private, so a `RawCodes` always satisfies them: `1 <= words <= stride`, and when
/// `len > 0`, `data.len() >= (len - 1) * stride + words` (the last code's unused words past
/// `words` may be absent).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawCodes<'a> {
    data: &'a [u64],
    len: usize,
    words: usize,
    stride: usize,
    mask: u64,
}

impl<'a> RawCodes<'a> {
    /// The run of `len` codes described by the arguments.
    ///
    /// # Panics
    /// When the invariants of the type do not hold (a caller bug, not input).
    pub(crate) fn new(data: &'a [u64], len: usize, words: usize, stride: usize, mask: u64) -> Self {
        assert!(
            (1..=stride).contains(&words),
            "codes of {words} words, {stride} apart"
        );
        assert!(
            len == 0 || data.len() >= (len - 1) * stride + words,
            "{len} codes of {words} words, {stride} apart, in {} words",
            data.len()
        );
        RawCodes {
            data,
            len,
            words,
            stride,
            mask,
        }
    }

    /// Codes `start .. start + len` of `view`.
    ///
    /// # Panics
    /// When the range runs past the end of the view (a caller bug).
    pub(crate) fn of(view: &CodesView<'a>, start: usize, len: usize) -> Self {
        assert!(
            start + len <= view.len(),
            "scan range past the end of the codes"
        );
        let data = if len == 0 { &[] } else { view.raw_from(start) };
        RawCodes::new(
            data,
            len,
            view.words(),
            view.stride(),
            view.last_word_mask(),
        )
    }

    /// The words from the first code on.
    #[inline(always)]
    pub(crate) fn data(&self) -> &'a [u64] {
        self.data
    }

    /// Number of codes.
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Words per code.
    #[inline(always)]
    pub(crate) fn words(&self) -> usize {
        self.words
    }

    /// Words from one code to the next.
    #[inline(always)]
    pub(crate) fn stride(&self) -> usize {
        self.stride
    }

    /// The valid bits of each code's last word.
    #[inline(always)]
    pub(crate) fn mask(&self) -> u64 {
        self.mask
    }

    /// The codes from `count <= len` on.
    #[inline(always)]
    pub(crate) fn skip(self, count: usize) -> Self {
        assert!(count <= self.len, "skip of {count} of {} codes", self.len);
        RawCodes {
            data: self.data.get(count * self.stride..).unwrap_or(&[]),
            len: self.len - count,
            ..self
        }
    }

    /// The first `count <= len` codes.
    #[inline(always)]
    pub(crate) fn take(self, count: usize) -> Self {
        assert!(count <= self.len, "take of {count} of {} codes", self.len);
        RawCodes { len: count, ..self }
    }
}

/// The positions a threshold scan may report: every one ([`EveryRow`]) or those whose bit is set
/// ([`RowBits`]). The scans are generic over it, so that a scan without a filter compiles with no
/// test of a bit at all, and a filtered one tests a block's bits with one AND.
pub(crate) trait Rows: Copy {
    /// Whether every position may be reported: scans then skip the per-code tests at compile time.
    const EVERY: bool = false;

    /// Bit `i` set when position `pos + i` may be reported (`i < 64`).
    fn window(self, pos: usize) -> u64;

    /// Whether position `pos` may be reported.
    #[inline(always)]
    fn contains(self, pos: usize) -> bool {
        self.window(pos) & 1 != 0
    }
}

/// Every position may be reported: the scan without a filter.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EveryRow;

impl Rows for EveryRow {
    const EVERY: bool = true;

    #[inline(always)]
    fn window(self, _pos: usize) -> u64 {
        u64::MAX
    }
}

/// A bitmap of positions: bit `p % 64` of word `p / 64` is set when position `p` may be reported;
/// positions past the words are not.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowBits<'a> {
    words: &'a [u64],
}

impl<'a> RowBits<'a> {
    /// The bitmap in `words`.
    pub(crate) fn new(words: &'a [u64]) -> Self {
        RowBits { words }
    }

    /// The positions of `range` that are set, in ascending order.
    pub(crate) fn positions(
        self,
        range: std::ops::Range<usize>,
    ) -> impl Iterator<Item = usize> + 'a {
        range.clone().step_by(64).flat_map(move |start| {
            let left = range.end - start;
            let mut bits = self.window(start) & if left < 64 { (1 << left) - 1 } else { u64::MAX };
            std::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let at = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    start + at
                })
            })
        })
    }
}

impl Rows for RowBits<'_> {
    #[inline(always)]
    fn window(self, pos: usize) -> u64 {
        let (w, shift) = (pos / 64, pos % 64);
        let word = |i: usize| self.words.get(i).copied().unwrap_or(0);
        let low = word(w) >> shift;
        if shift == 0 {
            low
        } else {
            low | word(w + 1) << (64 - shift)
        }
    }

    #[inline(always)]
    fn contains(self, pos: usize) -> bool {
        self.words
            .get(pos / 64)
            .is_some_and(|&w| w >> (pos % 64) & 1 != 0)
    }
}

/// One multi-query threshold scan: for each code `j` of `codes` in ascending order and each query
/// `i`, `sink(i, base + j, d)` exactly when `d = d(queries[i], code j) < limits[i]` and `allow`
/// (if any) has position `base + j`, after which `limits[i]` takes the value the sink returned.
///
/// Every query has at least `codes.words()` words, and there is one limit per query: the raw
/// filters may rely on it ([`crate::Kernel::filter`] checks it).
///
/// Only the x86-64 paths have fused filters that read it.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct Filter<'a> {
    /// The queries' words.
    pub(crate) queries: &'a [&'a [u64]],
    /// The codes scanned.
    pub(crate) codes: RawCodes<'a>,
    /// The position reported for the first code.
    pub(crate) base: usize,
    /// Each query's threshold.
    pub(crate) limits: &'a mut [u32],
    /// Told of every code below its query's threshold.
    pub(crate) sink: Sink<'a>,
    /// The positions that may be reported (`None`: every one).
    pub(crate) allow: Option<RowBits<'a>>,
}

impl<'a> Filter<'a> {
    /// The same scan, borrowed for a call that does part of it.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    #[inline(always)]
    pub(crate) fn reborrow(&mut self) -> Filter<'_> {
        Filter {
            queries: self.queries,
            codes: self.codes,
            base: self.base,
            limits: &mut *self.limits,
            sink: &mut *self.sink,
            allow: self.allow,
        }
    }

    /// The rest of the scan once its first `count` codes are done.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    #[inline(always)]
    pub(crate) fn skip(self, count: usize) -> Filter<'a> {
        Filter {
            codes: self.codes.skip(count),
            base: self.base + count,
            ..self
        }
    }
}

/// Raw scan: `out[i] = d(query, code i)`.
///
/// # Safety
/// The CPU has the path's target features; `query.len() >= codes.words()`; `out.len() ==
/// codes.len()`.
pub(crate) type ScanFn = unsafe fn(&[u64], RawCodes<'_>, &mut [u32]);

/// Raw distance of two codes of `a.len().min(b.len())` words, the last word masked by `mask`.
///
/// # Safety
/// The CPU has the path's target features.
pub(crate) type PairFn = unsafe fn(&[u64], &[u64], u64) -> u32;

/// Raw scan of narrow codes (at most 32 bits, one u32 each): `out[i] = popcount(q ^ db[i])` for
/// `i < out.len()`.
///
/// # Safety
/// The CPU has the path's target features; `db.len() >= out.len()`.
pub(crate) type Scan32Fn = unsafe fn(u32, &[u32], &mut [u32]);

/// Raw fused threshold scan of several queries ([`Filter`]). Returns `false`, having done
/// nothing, for a code shape the path does not fuse.
///
/// # Safety
/// The CPU has the path's target features.
pub(crate) type FilterFn = unsafe fn(Filter<'_>) -> bool;

/// The entry points of one instruction-set path.
#[derive(Clone, Copy)]
pub(crate) struct KernelFns {
    /// Distances of one query to a run of codes.
    pub(crate) scan: ScanFn,
    /// The distance of two codes.
    pub(crate) pair: PairFn,
    /// Distances of one narrow query to a run of narrow codes.
    pub(crate) scan32: Scan32Fn,
    /// A fused multi-query threshold scan where the path has one; else
    /// [`crate::Kernel::filter`] scans each query into a buffer and filters it.
    pub(crate) filter: Option<FilterFn>,
}

//! One interface for every index: [`HammingIndex`], k-nearest-neighbour and range search over
//! a database of codes, whether by an exact scan ([`crate::search::FlatIndex`]), multi-index
//! hashing ([`crate::mih::MultiIndex`]) or the nested-prefix cascade
//! ([`crate::cascade::CascadeIndex`]).
//!
//! What a search may be asked beyond its queries and its `k` or radius travels in
//! [`SearchOptions`], so that a new option is a new field rather than a new signature for every
//! index: the kernel, and the database rows the search may return.

use crate::allow::AllowedRows;
use crate::codes::CodesView;
use crate::error::IndexError;
use crate::hamming::Kernel;
use crate::mih::RangeStats;
use crate::search::{Neighbors, RangeResult};

/// Options of one search, shared by every index.
///
/// ```
/// use nhl_index::{AllowedRows, Isa, Kernel, SearchOptions};
/// let portable = SearchOptions::with_kernel(Kernel::new(Isa::Portable)?);
/// assert_eq!(portable.kernel().isa(), Isa::Portable);
/// assert_eq!(SearchOptions::default().kernel().isa(), Isa::best());
/// let even = AllowedRows::from_rows(10, (0..10).step_by(2))?;
/// assert_eq!(portable.allowing(&even).allowed.map(AllowedRows::count), Some(5));
/// # Ok::<(), nhl_index::IndexError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct SearchOptions<'a> {
    /// The Hamming kernel of every distance the search computes; `None`: [`Kernel::best`].
    /// Every kernel gives the same results (they compute the same integers).
    pub kernel: Option<Kernel>,
    /// The only database rows the search may return (a set over the index's rows); `None`:
    /// every row. The search answers as over a database of the allowed rows alone, each at its
    /// own position (see [`HammingIndex`]).
    pub allowed: Option<&'a AllowedRows>,
}

impl<'a> SearchOptions<'a> {
    /// The default options with the kernel `kernel`.
    pub fn with_kernel(kernel: Kernel) -> SearchOptions<'a> {
        SearchOptions {
            kernel: Some(kernel),
            allowed: None,
        }
    }

    /// These options, restricted to the rows of `allowed`.
    pub fn allowing(self, allowed: &'a AllowedRows) -> SearchOptions<'a> {
        SearchOptions {
            allowed: Some(allowed),
            ..self
        }
    }

    /// The kernel the search runs: the chosen one, else [`Kernel::best`].
    pub fn kernel(&self) -> Kernel {
        self.kernel.unwrap_or_else(Kernel::best)
    }
}

/// A searchable database of binary codes.
///
/// Results are in the order of `docs/PROTOCOL.md` (Order): distance ascending, ties by database
/// position ascending. An
/// exact index returns exactly what the flat scan returns; an approximate one (the cascade) says
/// so in its documentation, and a search an index cannot answer as specified is an
/// [`IndexError::Unsupported`], never a silently different result.
///
/// With [`SearchOptions::allowed`], a search returns only allowed rows, exactly as the same
/// search over a database of the allowed rows alone would (positions unchanged): the kNN of a
/// query are its `min(k, allowed rows)` nearest allowed rows, so when fewer than `k` rows are
/// allowed every query gets all of them and [`Neighbors::k`] is their number (0 when none is).
pub trait HammingIndex: Send + Sync {
    /// The `k` nearest database codes of every query.
    ///
    /// Errors: queries of another code length than the database, `k == 0`, `k` above the
    /// database size, allowed rows over another number of rows than the database, or what the
    /// index itself cannot do.
    fn knn(
        &self,
        queries: CodesView<'_>,
        k: usize,
        options: &SearchOptions<'_>,
    ) -> Result<Neighbors, IndexError>;

    /// Every database code within Hamming distance `radius` of each query.
    ///
    /// Errors: queries of another code length than the database, allowed rows over another
    /// number of rows than the database, or what the index itself cannot do.
    fn range(
        &self,
        queries: CodesView<'_>,
        radius: u32,
        options: &SearchOptions<'_>,
    ) -> Result<RangeResult, IndexError>;

    /// [`HammingIndex::range`] plus how the index answered it, for an index that chooses between
    /// methods (multi-index hashing probes its tables or scans); `None` from the others.
    fn range_with_stats(
        &self,
        queries: CodesView<'_>,
        radius: u32,
        options: &SearchOptions<'_>,
    ) -> Result<(RangeResult, Option<RangeStats>), IndexError> {
        Ok((self.range(queries, radius, options)?, None))
    }
}

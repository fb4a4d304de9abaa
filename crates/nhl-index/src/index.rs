//! One interface for every index: [`HammingIndex`], k-nearest-neighbour and range search over
//! a database of codes, whether by an exact scan ([`crate::search::FlatIndex`]), multi-index
//! hashing ([`crate::mih::MultiIndex`]) or the nested-prefix cascade
//! ([`crate::cascade::CascadeIndex`]).
//!
//! What a search may be asked beyond its queries and its `k` or radius travels in
//! [`SearchOptions`], so that a new option is a new field rather than a new signature for every
//! index.

use crate::codes::CodesView;
use crate::error::IndexError;
use crate::hamming::Kernel;
use crate::mih::RangeStats;
use crate::search::{Neighbors, RangeResult};

/// Options of one search, shared by every index.
///
/// ```
/// use nhl_index::{Isa, Kernel, SearchOptions};
/// let portable = SearchOptions::with_kernel(Kernel::new(Isa::Portable)?);
/// assert_eq!(portable.kernel().isa(), Isa::Portable);
/// assert_eq!(SearchOptions::default().kernel().isa(), Isa::best());
/// # Ok::<(), nhl_index::IndexError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct SearchOptions {
    /// The Hamming kernel of every distance the search computes; `None`: [`Kernel::best`].
    /// Every kernel gives the same results (they compute the same integers).
    pub kernel: Option<Kernel>,
}

impl SearchOptions {
    /// The default options with the kernel `kernel`.
    pub fn with_kernel(kernel: Kernel) -> SearchOptions {
        SearchOptions {
            kernel: Some(kernel),
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
pub trait HammingIndex: Send + Sync {
    /// The `k` nearest database codes of every query.
    ///
    /// Errors: queries of another code length than the database, `k == 0`, `k` above the
    /// database size, or what the index itself cannot do.
    fn knn(
        &self,
        queries: CodesView<'_>,
        k: usize,
        options: &SearchOptions,
    ) -> Result<Neighbors, IndexError>;

    /// Every database code within Hamming distance `radius` of each query.
    ///
    /// Errors: queries of another code length than the database, or what the index itself
    /// cannot do.
    fn range(
        &self,
        queries: CodesView<'_>,
        radius: u32,
        options: &SearchOptions,
    ) -> Result<RangeResult, IndexError>;

    /// [`HammingIndex::range`] plus how the index answered it, for an index that chooses between
    /// methods (multi-index hashing probes its tables or scans); `None` from the others.
    fn range_with_stats(
        &self,
        queries: CodesView<'_>,
        radius: u32,
        options: &SearchOptions,
    ) -> Result<(RangeResult, Option<RangeStats>), IndexError> {
        Ok((self.range(queries, radius, options)?, None))
    }
}

//! Nested-prefix cascade search.
//!
//! Nested codes make the first `p` bits of every code a valid `p`-bit code of its own. The
//! cascade ranks the database by the `p`-bit prefix distance, keeps the best `candidates` items
//! (ties by database position), and re-ranks only those by the full distance. The prefix stage is
//! exact for the prefix (a scan of a compact copy of the prefixes, or multi-index hashing over
//! them); the cascade as a whole is approximate for the full code, and `candidates` trades speed
//! for recall: with `candidates = n` it is exact.
//!
//! recall@k = (1 / n_queries) * sum_q |cascade ids(q) ∩ exact ids(q)| / k, against
//! [`crate::search::knn`] on the full codes.

use crate::codes::{Codes, CodesView};
use crate::error::IndexError;
use crate::hamming::Kernel;
use crate::mih::MultiIndex;
use crate::search::{check_pair, knn_with, Neighbors};
use rayon::prelude::*;
use std::time::Instant;

/// How the prefix stage finds its candidates; both give exactly the same candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefixStage {
    /// Scan a compact, contiguous copy of the prefixes with the SIMD kernels.
    Scan,
    /// Multi-index hashing over the prefixes: sublinear when prefixes cluster (trained codes).
    MultiIndex,
}

/// A cascade over a database: the full codes (borrowed) and their prefixes (copied compactly).
#[derive(Debug)]
pub struct CascadeIndex<'a> {
    database: CodesView<'a>,
    prefix_bits: usize,
    prefixes: Codes,
    mih: Option<MultiIndex>,
}

/// What [`CascadeIndex::report`] measured.
#[derive(Clone, Debug, PartialEq)]
pub struct CascadeReport {
    /// recall@k of the cascade against the exact full-code search.
    pub recall: f64,
    /// Seconds of the cascade search for the whole query batch.
    pub cascade_seconds: f64,
    /// Seconds of the exact full-code search for the same batch.
    pub exact_seconds: f64,
}

impl CascadeReport {
    /// `exact_seconds / cascade_seconds`.
    pub fn speedup(&self) -> f64 {
        self.exact_seconds / self.cascade_seconds.max(f64::MIN_POSITIVE)
    }
}

impl<'a> CascadeIndex<'a> {
    /// Build the prefix copy (and, for [`PrefixStage::MultiIndex`], its hash tables).
    ///
    /// Errors: `prefix_bits` of 0 or beyond the code length.
    pub fn new(
        database: CodesView<'a>,
        prefix_bits: usize,
        stage: PrefixStage,
    ) -> Result<CascadeIndex<'a>, IndexError> {
        let prefixes = database.prefix(prefix_bits)?.to_codes();
        let mih = match stage {
            PrefixStage::Scan => None,
            PrefixStage::MultiIndex => Some(MultiIndex::new(prefixes.view(), None)?),
        };
        Ok(CascadeIndex {
            database,
            prefix_bits,
            prefixes,
            mih,
        })
    }

    /// The prefix length of the first stage.
    pub fn prefix_bits(&self) -> usize {
        self.prefix_bits
    }

    /// The k nearest by the full code among the `candidates` nearest by the prefix.
    ///
    /// Errors: different code lengths, `k == 0`, `k > candidates`; `candidates` above the database
    /// size means the whole database (an exact search).
    pub fn search(
        &self,
        queries: CodesView<'_>,
        k: usize,
        candidates: usize,
    ) -> Result<Neighbors, IndexError> {
        check_pair(&queries, &self.database)?;
        let n = self.database.len();
        let candidates = candidates.min(n);
        if k == 0 || k > candidates {
            return Err(IndexError::arg(
                "k",
                format!("k = {k} with {candidates} candidates from {n} codes (need 1 <= k <= candidates)"),
            ));
        }
        let kernel = Kernel::best();
        let q_prefix = queries.prefix(self.prefix_bits)?;
        let first = match &self.mih {
            Some(mih) => mih.knn(q_prefix, candidates)?,
            None => knn_with(kernel, q_prefix, self.prefixes.view(), candidates)?,
        };
        let mask = self.database.last_word_mask();
        let rows: Vec<Vec<(u32, u32)>> = (0..queries.len())
            .into_par_iter()
            .map(|qi| {
                let mut row: Vec<(u32, u32)> = match queries.code(qi) {
                    Some(q) => first
                        .ids_of(qi)
                        .iter()
                        .filter_map(|&id| {
                            self.database
                                .code(id as usize)
                                .map(|c| (kernel.distance(q, c, mask), id))
                        })
                        .collect(),
                    None => Vec::new(),
                };
                // A few hundred candidates: an in-place sort costs less than the distances.
                row.sort_unstable();
                row.truncate(k);
                row
            })
            .collect();
        Ok(Neighbors {
            n_queries: queries.len(),
            k,
            ids: rows.iter().flatten().map(|&(_, id)| id).collect(),
            distances: rows.iter().flatten().map(|&(d, _)| d).collect(),
        })
    }

    /// Run the cascade and the exact search on the same queries; time both and measure recall@k.
    pub fn report(
        &self,
        queries: CodesView<'_>,
        k: usize,
        candidates: usize,
    ) -> Result<CascadeReport, IndexError> {
        let start = Instant::now();
        let exact = knn_with(Kernel::best(), queries, self.database, k)?;
        let exact_seconds = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let approx = self.search(queries, k, candidates)?;
        let cascade_seconds = start.elapsed().as_secs_f64();
        Ok(CascadeReport {
            recall: recall_at_k(&approx, &exact)?,
            cascade_seconds,
            exact_seconds,
        })
    }
}

/// recall@k of `found` against `exact`: the mean over queries of the fraction of the exact ids
/// that `found` also returns. (An item tied with the exact k-th neighbour but of a larger database
/// position counts as a miss, as in FAISS's recall.)
pub fn recall_at_k(found: &Neighbors, exact: &Neighbors) -> Result<f64, IndexError> {
    if found.n_queries != exact.n_queries || found.k != exact.k {
        return Err(IndexError::Shape {
            what: format!(
                "results of {} x {} and {} x {} cannot be compared",
                found.n_queries, found.k, exact.n_queries, exact.k
            ),
        });
    }
    if found.n_queries == 0 {
        return Ok(1.0);
    }
    let mut hits = 0usize;
    let mut mine = Vec::with_capacity(found.k);
    for q in 0..found.n_queries {
        mine.clear();
        mine.extend_from_slice(found.ids_of(q));
        mine.sort_unstable();
        hits += exact
            .ids_of(q)
            .iter()
            .filter(|id| mine.binary_search(id).is_ok())
            .count();
    }
    Ok(hits as f64 / (found.n_queries * found.k) as f64)
}

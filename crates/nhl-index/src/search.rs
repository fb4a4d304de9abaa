//! Exact k-nearest-neighbour and range search by Hamming distance.
//!
//! Work is split into tasks of (a block of queries) x (a segment of the database) run on rayon.
//! Inside a task the database is walked in blocks small enough to stay in cache, and each block is
//! compared with every query of the query block before moving on, so one database block is read
//! from memory once per query block rather than once per query.
//!
//! A search restricted to some rows ([`crate::AllowedRows`], through [`FlatIndex`] and
//! [`SearchOptions`]) runs the same scans with the rows' bits tested inside the kernels'
//! threshold test ([`Kernel::filter_allowed`]), range search included.

use crate::allow::AllowedRows;
use crate::codes::CodesView;
use crate::error::IndexError;
use crate::hamming::Kernel;
use crate::index::{HammingIndex, SearchOptions};
use crate::select::{merge_runs, StreamTopK};
use rayon::prelude::*;

/// Queries per task: enough to reuse each cached database block many times.
const QUERY_BLOCK: usize = 32;
/// Bytes of database codes per cache block: with its distance buffer (half as many bytes at one
/// word per code) it stays in a 32 KiB L1 while every query of the block scans it.
const DB_BLOCK_BYTES: usize = 16 * 1024;
/// Codes per call of [`Kernel::filter`] in kNN search: the fused filters block the database for
/// the cache themselves, so a call can be long, which spares per-call setup (the fast scan's
/// query tables) and lets its prefetch run on across blocks.
const KNN_BLOCK: usize = 1 << 16;
/// Queries per kNN task: one filter call serves them all, and the fast scan slices each block
/// of codes once per call rather than once per 32 queries.
const KNN_QUERY_BLOCK: usize = 256;
/// Segments are never split below this many codes: merging costs more than it saves.
const MIN_SEGMENT: usize = 16 * 1024;

/// The result of a k-nearest-neighbour search: row-major `n_queries x k` ids and distances, each
/// row in the order of `docs/PROTOCOL.md` (Order: distance ascending, ties by database position
/// ascending).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbors {
    /// Number of queries.
    pub n_queries: usize,
    /// Neighbours per query: the `k` asked for, or the number of allowed rows when a search
    /// restricted to fewer rows than that returns them all.
    pub k: usize,
    /// Database positions, `n_queries * k`.
    pub ids: Vec<u32>,
    /// Hamming distances, `n_queries * k`.
    pub distances: Vec<u32>,
}

impl Neighbors {
    /// The neighbours of query `q`.
    pub fn ids_of(&self, q: usize) -> &[u32] {
        &self.ids[q * self.k..(q + 1) * self.k]
    }

    /// The distances of the neighbours of query `q`.
    pub fn distances_of(&self, q: usize) -> &[u32] {
        &self.distances[q * self.k..(q + 1) * self.k]
    }
}

/// The result of a range search, in compressed-row form: the items of query `q` are
/// `offsets[q] .. offsets[q + 1]` of `ids` and `distances`, in the order of `docs/PROTOCOL.md`
/// (Order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeResult {
    /// `n_queries + 1` offsets.
    pub offsets: Vec<usize>,
    /// Database positions.
    pub ids: Vec<u32>,
    /// Hamming distances.
    pub distances: Vec<u32>,
}

impl RangeResult {
    /// Number of queries.
    pub fn n_queries(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The items of query `q`.
    pub fn ids_of(&self, q: usize) -> &[u32] {
        &self.ids[self.offsets[q]..self.offsets[q + 1]]
    }

    /// The distances of the items of query `q`.
    pub fn distances_of(&self, q: usize) -> &[u32] {
        &self.distances[self.offsets[q]..self.offsets[q + 1]]
    }
}

pub(crate) fn check_pair(
    queries: &CodesView<'_>,
    database: &CodesView<'_>,
) -> Result<(), IndexError> {
    if queries.bits() != database.bits() {
        return Err(IndexError::Shape {
            what: format!(
                "queries have {}-bit codes, the database {}-bit codes",
                queries.bits(),
                database.bits()
            ),
        });
    }
    if u32::try_from(database.len()).is_err() {
        return Err(IndexError::arg(
            "database",
            format!("{} codes; at most 2^32 - 1 are supported", database.len()),
        ));
    }
    Ok(())
}

/// How to split the database so that there are enough tasks for the threads.
fn segments(n_query_blocks: usize, n: usize) -> Vec<std::ops::Range<usize>> {
    if n == 0 {
        // One empty segment, so that every query still gets its (empty) result row.
        let empty = 0..0;
        return vec![empty];
    }
    let threads = rayon::current_num_threads();
    let wanted = (4 * threads).div_ceil(n_query_blocks.max(1));
    let count = wanted.min(n / MIN_SEGMENT).max(1);
    let size = n.div_ceil(count);
    (0..count)
        .map(|s| s * size..((s + 1) * size).min(n))
        .filter(|r| !r.is_empty())
        .collect()
}

/// Codes per cache block for codes of `stride` words.
fn db_block(stride: usize) -> usize {
    (DB_BLOCK_BYTES / (8 * stride)).clamp(256, 2048)
}

/// Exact k nearest neighbours of every query with the best kernel of this CPU.
pub fn knn(
    queries: CodesView<'_>,
    database: CodesView<'_>,
    k: usize,
) -> Result<Neighbors, IndexError> {
    knn_with(Kernel::best(), queries, database, k)
}

/// Exact k nearest neighbours of every query with a chosen kernel.
///
/// Errors: different code lengths, `k == 0`, `k > database.len()`.
pub fn knn_with(
    kernel: Kernel,
    queries: CodesView<'_>,
    database: CodesView<'_>,
    k: usize,
) -> Result<Neighbors, IndexError> {
    knn_allowed(kernel, queries, database, k, None)
}

/// The `min(k, allowed rows)` nearest allowed rows of every query ([`knn_with`] when `allowed`
/// is `None`).
///
/// Errors: as [`knn_with`], and `allowed` over another number of rows than the database.
pub(crate) fn knn_allowed(
    kernel: Kernel,
    queries: CodesView<'_>,
    database: CodesView<'_>,
    k: usize,
    allowed: Option<&AllowedRows>,
) -> Result<Neighbors, IndexError> {
    check_pair(&queries, &database)?;
    if k == 0 || k > database.len() {
        return Err(IndexError::arg(
            "k",
            format!(
                "k = {k}, the database has {} codes (need 1 <= k <= n)",
                database.len()
            ),
        ));
    }
    if let Some(allowed) = allowed {
        allowed.check_rows(database.len())?;
    }
    let k = allowed.map_or(k, |a| k.min(a.count()));
    let nq = queries.len();
    if k == 0 {
        return Ok(Neighbors {
            n_queries: nq,
            k,
            ids: Vec::new(),
            distances: Vec::new(),
        });
    }
    let max_d = database.bits();
    let n_qblocks = nq.div_ceil(KNN_QUERY_BLOCK);
    let segs = segments(n_qblocks, database.len());
    let block = KNN_BLOCK;
    let tasks: Vec<(usize, usize)> = (0..n_qblocks)
        .flat_map(|qb| (0..segs.len()).map(move |s| (qb, s)))
        .collect();
    // Each task returns, per query of its block, its top k as (distance, id) in rank order.
    let partial: Vec<Vec<Vec<(u32, u32)>>> = tasks
        .par_iter()
        .map(|&(qb, s)| {
            let q_range = qb * KNN_QUERY_BLOCK..((qb + 1) * KNN_QUERY_BLOCK).min(nq);
            let seg = segs[s].clone();
            let mut selectors: Vec<StreamTopK> =
                q_range.clone().map(|_| StreamTopK::new(k, max_d)).collect();
            // `queries.code` is Some for every qi < nq.
            let qs: Vec<&[u64]> = q_range.clone().filter_map(|qi| queries.code(qi)).collect();
            let mut limits: Vec<u32> = selectors.iter().map(StreamTopK::limit).collect();
            let mut sink = |i: usize, id: usize, d: u32| {
                let sel = &mut selectors[i];
                sel.push(d, id as u32);
                sel.limit()
            };
            let mut start = seg.start;
            while start < seg.end {
                let len = block.min(seg.end - start);
                match allowed {
                    None => kernel.filter(&qs, &database, start, len, &mut limits, &mut sink),
                    Some(a) => {
                        let rows = start..start + len;
                        kernel.filter_allowed(&qs, &database, rows, a, &mut limits, &mut sink)
                    }
                }
                start += len;
            }
            selectors
                .iter()
                .map(|sel| {
                    let mut v = Vec::with_capacity(k);
                    sel.write(&mut v);
                    v
                })
                .collect()
        })
        .collect();
    let mut ids = Vec::with_capacity(nq * k);
    let mut distances = Vec::with_capacity(nq * k);
    let mut merged = Vec::with_capacity(k);
    for qb in 0..n_qblocks {
        let block_results = &partial[qb * segs.len()..(qb + 1) * segs.len()];
        for j in 0..block_results[0].len() {
            let runs: Vec<&[(u32, u32)]> = block_results.iter().map(|r| r[j].as_slice()).collect();
            merged.clear();
            merge_runs(&runs, max_d, k, &mut merged);
            ids.extend(merged.iter().map(|&(_, id)| id));
            distances.extend(merged.iter().map(|&(d, _)| d));
        }
    }
    Ok(Neighbors {
        n_queries: nq,
        k,
        ids,
        distances,
    })
}

/// Every database item within Hamming distance `radius` of each query (best kernel).
pub fn range_search(
    queries: CodesView<'_>,
    database: CodesView<'_>,
    radius: u32,
) -> Result<RangeResult, IndexError> {
    range_search_with(Kernel::best(), queries, database, radius)
}

/// Every database item within Hamming distance `radius` of each query, in the order of
/// `docs/PROTOCOL.md` (Order).
pub fn range_search_with(
    kernel: Kernel,
    queries: CodesView<'_>,
    database: CodesView<'_>,
    radius: u32,
) -> Result<RangeResult, IndexError> {
    range_allowed(kernel, queries, database, radius, None)
}

/// Every allowed row within Hamming distance `radius` of each query ([`range_search_with`] when
/// `allowed` is `None`). With a filter, each task runs one threshold scan of its segment for its
/// queries at the fixed limit `radius + 1`, the rows' bits tested in the kernel.
///
/// Errors: as [`range_search_with`], and `allowed` over another number of rows than the
/// database.
pub(crate) fn range_allowed(
    kernel: Kernel,
    queries: CodesView<'_>,
    database: CodesView<'_>,
    radius: u32,
    allowed: Option<&AllowedRows>,
) -> Result<RangeResult, IndexError> {
    check_pair(&queries, &database)?;
    if let Some(allowed) = allowed {
        allowed.check_rows(database.len())?;
    }
    let nq = queries.len();
    let max_d = database.bits();
    let r = (radius as usize).min(max_d);
    let n_qblocks = nq.div_ceil(QUERY_BLOCK);
    let segs = segments(n_qblocks, database.len());
    let block = db_block(database.stride());
    let tasks: Vec<(usize, usize)> = (0..n_qblocks)
        .flat_map(|qb| (0..segs.len()).map(move |s| (qb, s)))
        .collect();
    let partial: Vec<Vec<Vec<(u32, u32)>>> = tasks
        .par_iter()
        .map(|&(qb, s)| {
            let q_range = qb * QUERY_BLOCK..((qb + 1) * QUERY_BLOCK).min(nq);
            let seg = segs[s].clone();
            // Per query, one bucket of ids per distance 0..=r: a counting sort as we scan.
            let mut buckets: Vec<Vec<Vec<u32>>> =
                q_range.clone().map(|_| vec![Vec::new(); r + 1]).collect();
            if let Some(a) = allowed {
                let qs: Vec<&[u64]> = q_range.clone().filter_map(|qi| queries.code(qi)).collect();
                // `r <= max_d <= 1024`, so the limit fits.
                let limit = r as u32 + 1;
                let mut limits = vec![limit; qs.len()];
                kernel.filter_allowed(&qs, &database, seg, a, &mut limits, &mut |i, id, d| {
                    buckets[i][d as usize].push(id as u32);
                    limit
                });
                return by_distance(buckets);
            }
            let mut buf = vec![0u32; block];
            let mut start = seg.start;
            while start < seg.end {
                let len = block.min(seg.end - start);
                for (qi, qb_buckets) in q_range.clone().zip(buckets.iter_mut()) {
                    if let Some(q) = queries.code(qi) {
                        kernel.distances(q, &database, start, &mut buf[..len]);
                        for (j, &d) in buf[..len].iter().enumerate() {
                            if d as usize <= r {
                                qb_buckets[d as usize].push((start + j) as u32);
                            }
                        }
                    }
                }
                start += len;
            }
            by_distance(buckets)
        })
        .collect();
    let mut offsets = Vec::with_capacity(nq + 1);
    offsets.push(0);
    let mut ids = Vec::new();
    let mut distances = Vec::new();
    let mut merged = Vec::new();
    for qb in 0..n_qblocks {
        let block_results = &partial[qb * segs.len()..(qb + 1) * segs.len()];
        for j in 0..block_results[0].len() {
            let runs: Vec<&[(u32, u32)]> = block_results.iter().map(|r| r[j].as_slice()).collect();
            merged.clear();
            merge_runs(&runs, max_d, usize::MAX, &mut merged);
            ids.extend(merged.iter().map(|&(_, id)| id));
            distances.extend(merged.iter().map(|&(d, _)| d));
            offsets.push(ids.len());
        }
    }
    Ok(RangeResult {
        offsets,
        ids,
        distances,
    })
}

/// Per query, its buckets of ids by distance as one `(distance, id)` list in that order.
fn by_distance(buckets: Vec<Vec<Vec<u32>>>) -> Vec<Vec<(u32, u32)>> {
    buckets
        .into_iter()
        .map(|b| {
            b.into_iter()
                .enumerate()
                .flat_map(|(d, ids)| ids.into_iter().map(move |id| (d as u32, id)))
                .collect()
        })
        .collect()
}

/// The exact scan as a [`HammingIndex`]: [`knn_with`] and [`range_search_with`] over a borrowed
/// database (any view, such as the prefixes of longer codes), with the kernel and the allowed
/// rows of the options.
#[derive(Clone, Copy, Debug)]
pub struct FlatIndex<'a> {
    database: CodesView<'a>,
}

impl<'a> FlatIndex<'a> {
    /// An index over `database`; nothing is built or copied.
    pub fn new(database: CodesView<'a>) -> FlatIndex<'a> {
        FlatIndex { database }
    }

    /// The indexed codes.
    pub fn database(&self) -> CodesView<'a> {
        self.database
    }
}

impl HammingIndex for FlatIndex<'_> {
    fn knn(
        &self,
        queries: CodesView<'_>,
        k: usize,
        options: &SearchOptions<'_>,
    ) -> Result<Neighbors, IndexError> {
        knn_allowed(options.kernel(), queries, self.database, k, options.allowed)
    }

    fn range(
        &self,
        queries: CodesView<'_>,
        radius: u32,
        options: &SearchOptions<'_>,
    ) -> Result<RangeResult, IndexError> {
        range_allowed(
            options.kernel(),
            queries,
            self.database,
            radius,
            options.allowed,
        )
    }
}

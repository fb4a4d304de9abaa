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
//!
//! A search restricted to some rows ([`SearchOptions::allowed`]) filters in the prefix stage:
//! every stage picks its candidates among the allowed rows only (the scans test the rows' bits
//! in their selection, multi-index hashing verifies only allowed candidates, and the bucket
//! stage counts and takes only the allowed positions of each group), so the `k` results come
//! from allowed rows, and with `candidates = n` the restricted cascade equals the restricted
//! exact search.

use crate::allow::AllowedRows;
use crate::codes::{Codes, CodesView};
use crate::error::IndexError;
use crate::hamming::{EveryRow, Kernel};
use crate::index::{HammingIndex, SearchOptions};
use crate::mih::MultiIndex;
use crate::search::{check_pair, knn_allowed, Neighbors, RangeResult};
use crate::select::StreamTopK;
use rayon::prelude::*;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// How the prefix stage finds its candidates; both give exactly the same candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefixStage {
    /// Scan a compact, contiguous copy of the prefixes with the SIMD kernels. Prefixes of at most
    /// 32 bits are packed one per u32, so a vector compares twice as many codes as at 64 bits.
    Scan,
    /// Multi-index hashing over the prefixes: sublinear when prefixes cluster (trained codes).
    MultiIndex,
    /// The database grouped by prefix value (`prefix_bits <= 32`): a query computes the prefix
    /// distance once per *distinct* prefix (the SIMD threshold scan of [`Kernel::filter`], for a
    /// block of queries at once, reporting only the groups that can still be among the nearest)
    /// and takes whole groups, nearest first, merging the groups of the last distance it needs by
    /// position. The index keeps a copy of the full codes in group order, so the re-ranking reads
    /// each group's codes as one contiguous run instead of one scattered code per candidate
    /// (memory: one more copy of the codes). Trained nested codes have few distinct
    /// short prefixes (tens of thousands or fewer for a million codes), so this costs a fraction
    /// of a scan. When more than one code in [`BUCKETS_MAX_SHARE`] has a prefix of its own
    /// (random codes, long prefixes), grouping cannot pay and the stage scans the narrow prefixes
    /// instead, as [`PrefixStage::Scan`] does.
    Buckets,
}

/// A cascade over a database: the full codes (borrowed) and their prefixes (copied compactly).
///
/// As a [`HammingIndex`], its kNN search re-ranks the `candidates` given at construction
/// ([`CascadeIndex::search`] takes any other number); it has no range search.
#[derive(Debug)]
pub struct CascadeIndex<'a> {
    database: CodesView<'a>,
    prefix_bits: usize,
    candidates: usize,
    prefixes: Codes,
    /// The prefixes one per u32, when they fit (Scan stage, `prefix_bits <= 32`).
    narrow: Option<Vec<u32>>,
    mih: Option<MultiIndex>,
    buckets: Option<Buckets>,
}

/// Database positions grouped by prefix value: `ids[offsets[g] .. offsets[g + 1]]` (ascending)
/// have the prefix `keys.code(g)` (keys ascending). A *slot* is an index into `ids`.
#[derive(Debug)]
struct Buckets {
    /// The distinct prefixes as codes of `prefix_bits`, so that the SIMD threshold scan
    /// ([`Kernel::filter`]) ranks them.
    keys: Codes,
    offsets: Vec<u32>,
    ids: Vec<u32>,
    /// The full code of each slot (code `s` is that of database item `ids[s]`).
    codes: Codes,
}

/// The groups as a search restricted to some rows sees them: a group holds only its allowed
/// positions. Built once per search (one pass over the grouped positions, not over the codes).
struct GroupFilter<'r> {
    /// The allowed database positions.
    rows: &'r AllowedRows,
    /// The groups with at least one allowed position: the only ones the key scan reports.
    groups: AllowedRows,
    /// The allowed positions of each group.
    sizes: Vec<u32>,
}

/// One query's walk over the prefix groups in [`Buckets::nearest`]: the groups found so far by
/// prefix distance, and the threshold below which they still matter.
struct Shells {
    /// `(d, g)` for every group `g` reported, at prefix distance `d`, in ascending `g`: one flat
    /// list rather than a list per distance, so a report is one append.
    reported: Vec<(u32, u32)>,
    /// `weight[d]`: the positions in the groups reported at distance `d`.
    weight: Vec<usize>,
    /// Positions in the groups below `limit`.
    covered: usize,
    /// Only groups at a distance below this can be among the nearest `count` positions.
    limit: usize,
}

impl Buckets {
    /// Groups the database by its narrow `prefixes` (one per code of `database`); `None` when
    /// more than one code in [`BUCKETS_MAX_SHARE`] has a prefix of its own.
    fn new(
        prefixes: &[u32],
        prefix_bits: usize,
        database: &CodesView<'_>,
    ) -> Result<Option<Buckets>, IndexError> {
        let mut pairs: Vec<(u32, u32)> = prefixes
            .iter()
            .enumerate()
            .map(|(i, &key)| (key, i as u32))
            .collect();
        pairs.sort_unstable();
        let mut keys = Vec::new();
        let mut offsets = Vec::new();
        for (i, &(key, _)) in pairs.iter().enumerate() {
            if keys.last() != Some(&u64::from(key)) {
                keys.push(u64::from(key));
                offsets.push(i as u32);
            }
        }
        offsets.push(pairs.len() as u32);
        if keys.len() > prefixes.len() / BUCKETS_MAX_SHARE {
            return Ok(None);
        }
        let ids: Vec<u32> = pairs.into_iter().map(|(_, id)| id).collect();
        let mut codes = Vec::with_capacity(ids.len() * database.words());
        for &id in &ids {
            // Every id is a position of `database`, which has one prefix per code.
            codes.extend_from_slice(database.code(id as usize).unwrap_or(&[]));
        }
        Ok(Some(Buckets {
            keys: Codes::from_words(keys.len(), prefix_bits, keys)?,
            offsets,
            codes: Codes::from_words(ids.len(), database.bits(), codes)?,
            ids,
        }))
    }

    /// The slots of group `g`.
    fn slots(&self, g: usize) -> std::ops::Range<u32> {
        self.offsets[g]..self.offsets[g + 1]
    }

    fn group(&self, g: usize) -> &[u32] {
        &self.ids[self.offsets[g] as usize..self.offsets[g + 1] as usize]
    }

    /// The groups restricted to the positions of `rows`.
    fn restrict<'r>(&self, rows: &'r AllowedRows) -> GroupFilter<'r> {
        let sizes: Vec<u32> = (0..self.offsets.len() - 1)
            .map(|g| {
                let group = self.group(g).iter();
                group.filter(|&&id| rows.contains(id as usize)).count() as u32
            })
            .collect();
        let groups = sizes.iter().map(|&size| size > 0).collect::<Vec<bool>>();
        GroupFilter {
            rows,
            groups: AllowedRows::from_mask(&groups),
            sizes,
        }
    }

    /// The positions of group `g` the search may return.
    fn size(&self, g: usize, filter: Option<&GroupFilter<'_>>) -> usize {
        filter.map_or(self.group(g).len(), |f| f.sizes[g] as usize)
    }

    /// The slots of group `g` whose positions the search may return, ascending.
    fn allowed_slots<'s>(
        &'s self,
        g: usize,
        filter: Option<&'s GroupFilter<'_>>,
    ) -> impl Iterator<Item = u32> + 's {
        self.slots(g)
            .filter(move |&s| filter.is_none_or(|f| f.rows.contains(self.ids[s as usize] as usize)))
    }

    /// The `k` best `(distance, id)` of query `q` among the candidate `slots`, in rank order
    /// (ties by id). Slots come in runs of consecutive ones (whole groups), whose codes are
    /// contiguous in the grouped copy: each run is one SIMD distance scan, not a scattered read
    /// and a distance call per candidate.
    fn rerank(&self, kernel: Kernel, q: &[u64], k: usize, slots: &[u32]) -> Vec<(u32, u32)> {
        let view = self.codes.view();
        let mut dist = [0u32; RUN_CHUNK];
        let mut best = TopK::new(k);
        let mut j = 0;
        while j < slots.len() {
            let start = slots[j];
            let mut len = 1;
            while len < RUN_CHUNK && slots.get(j + len) == Some(&(start + len as u32)) {
                len += 1;
            }
            // The next run starts elsewhere: fetch its first codes while this one is scanned.
            if let Some(c) = slots.get(j + len).and_then(|&s| view.code(s as usize)) {
                prefetch(c);
            }
            kernel.distances(q, &view, start as usize, &mut dist[..len]);
            for (s, &d) in (start..).zip(&dist[..len]) {
                best.offer(d, self.ids[s as usize]);
            }
            j += len;
        }
        best.into_sorted()
    }

    /// Per query (its prefix code), the slots of the first `count` positions (of `filter`'s
    /// allowed ones, if given) in (prefix distance, position) order, as a set (any order).
    ///
    /// The groups are ranked by one threshold scan of the keys for all the queries: a group is
    /// reported while its distance is below the query's limit, which drops to `D + 1` as soon as
    /// the groups found at distances `<= D` hold `count` positions (groups are weighted by their
    /// size, a kNN whose items are whole groups). So only the few groups near each query leave
    /// the scan, instead of one distance per group and query. With a filter, groups count their
    /// allowed positions only, and groups with none are not reported (the scan tests the groups'
    /// bits).
    fn nearest(
        &self,
        kernel: Kernel,
        queries: &[&[u64]],
        max_distance: usize,
        count: usize,
        filter: Option<&GroupFilter<'_>>,
    ) -> Vec<Vec<u32>> {
        let mut shells: Vec<Shells> = queries
            .iter()
            .map(|_| Shells {
                reported: Vec::new(),
                weight: vec![0; max_distance + 1],
                covered: 0,
                limit: max_distance + 1,
            })
            .collect();
        let mut limits = vec![max_distance as u32 + 1; queries.len()];
        let keys = self.keys.view();
        let mut sink = |i: usize, g: usize, d: u32| {
            let s = &mut shells[i];
            let (d, size) = (d as usize, self.size(g, filter));
            // Reported only below the limit, so the group counts towards `covered`.
            s.reported.push((d as u32, g as u32));
            s.weight[d] += size;
            s.covered += size;
            while s.limit > 1 && s.covered - s.weight[s.limit - 1] >= count {
                s.covered -= s.weight[s.limit - 1];
                s.limit -= 1;
            }
            s.limit as u32
        };
        match filter {
            None => kernel.filter(queries, &keys, 0, keys.len(), &mut limits, &mut sink),
            Some(f) => {
                let all = 0..keys.len();
                kernel.filter_allowed(queries, &keys, all, &f.groups, &mut limits, &mut sink)
            }
        }
        shells.iter().map(|s| self.take(s, count, filter)).collect()
    }

    /// The slots of the first `count` positions (allowed ones, with a filter) of the groups in
    /// `shells`, nearest shell first; the last shell needed gives its smallest positions (a heap
    /// merge of its groups). Every group below the final limit was reported, which covers
    /// `count` positions (or every position the search may return).
    fn take(&self, shells: &Shells, count: usize, filter: Option<&GroupFilter<'_>>) -> Vec<u32> {
        // The groups below the final limit by distance, ascending within each (a counting sort
        // of the reports, which come in ascending group order).
        let limit = shells.limit.min(shells.weight.len());
        let mut bounds = vec![0usize; limit + 1];
        for &(d, _) in &shells.reported {
            if (d as usize) < limit {
                bounds[d as usize + 1] += 1;
            }
        }
        for d in 0..limit {
            bounds[d + 1] += bounds[d];
        }
        let mut order = vec![0u32; bounds[limit]];
        let mut next = bounds.clone();
        for &(d, g) in &shells.reported {
            if (d as usize) < limit {
                order[next[d as usize]] = g;
                next[d as usize] += 1;
            }
        }
        let mut out = Vec::with_capacity(count);
        for shell in (0..limit).map(|d| &order[bounds[d]..bounds[d + 1]]) {
            let need = count - out.len();
            if need == 0 {
                break;
            }
            let size: usize = shell.iter().map(|&g| self.size(g as usize, filter)).sum();
            if size <= need {
                for &g in shell {
                    out.extend(self.allowed_slots(g as usize, filter));
                }
            } else if shell.len() == 1 {
                // The last shell is one group: its first positions (slots ascend with them).
                out.extend(self.allowed_slots(shell[0] as usize, filter).take(need));
            } else if size <= LAST_SHELL_SELECT * need {
                // The last shell, not much larger than needed: its `need` smallest positions by a
                // selection over all of them, cheaper than a heap pop per position.
                let start = out.len();
                for &g in shell {
                    out.extend(self.allowed_slots(g as usize, filter));
                }
                out[start..].select_nth_unstable_by_key(need - 1, |&s| self.ids[s as usize]);
                out.truncate(start + need);
            } else {
                // The last shell: its `need` smallest positions, by a heap merge of its groups,
                // each an iterator of its slots in ascending position order.
                let mut groups: Vec<_> = shell
                    .iter()
                    .map(|&g| self.allowed_slots(g as usize, filter))
                    .collect();
                let mut heap: BinaryHeap<Reverse<(u32, u32, usize)>> = BinaryHeap::new();
                for (at, slots) in groups.iter_mut().enumerate() {
                    if let Some(slot) = slots.next() {
                        heap.push(Reverse((self.ids[slot as usize], slot, at)));
                    }
                }
                while out.len() < count {
                    let Some(Reverse((_, slot, at))) = heap.pop() else {
                        break;
                    };
                    out.push(slot);
                    if let Some(next) = groups[at].next() {
                        heap.push(Reverse((self.ids[next as usize], next, at)));
                    }
                }
            }
        }
        out
    }
}

/// [`PrefixStage::Buckets`] groups the prefixes only when there are at most `n / BUCKETS_MAX_SHARE`
/// distinct ones.
pub const BUCKETS_MAX_SHARE: usize = 8;

/// The bucket stage picks the positions it needs from the last shell by a selection over all of
/// them when the shell holds at most this many times as many, else by a heap merge of its groups.
const LAST_SHELL_SELECT: usize = 8;

/// Queries per task of the bucket stage: one threshold scan of the keys serves them all.
const BUCKETS_QUERY_BLOCK: usize = 32;

/// Queries per task of the narrow scan, and narrow codes per cache block (16 KiB).
const NARROW_QUERY_BLOCK: usize = 32;
const NARROW_DB_BLOCK: usize = 4096;

/// Slots per distance scan of the grouped re-ranking (a run of consecutive slots is cut here).
const RUN_CHUNK: usize = 256;

/// How many candidates ahead the re-ranking prefetches.
const PREFETCH_AHEAD: usize = 8;

/// A hint to bring `code` into the cache (a no-op off x86-64).
#[inline(always)]
fn prefetch(code: &[u64]) {
    // SAFETY: SSE is part of the x86-64 baseline; a prefetch never faults, whatever the address.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(code.as_ptr().cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = code;
}

/// The low 32 bits of a code's first word: the whole code when it has at most 32 bits.
fn narrow_code(code: Option<&[u64]>) -> u32 {
    code.and_then(|c| c.first()).map_or(0, |&w| w as u32)
}

/// The `k` smallest `(distance, id)` pairs offered, in any order of offering.
struct TopK {
    k: usize,
    /// The best so far, largest on top: most offers fail the comparison with the top and cost
    /// nothing more.
    heap: BinaryHeap<(u32, u32)>,
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    #[inline]
    fn offer(&mut self, d: u32, id: u32) {
        let item = (d, id);
        if self.heap.len() < self.k {
            self.heap.push(item);
        } else if let Some(mut top) = self.heap.peek_mut() {
            if item < *top {
                *top = item;
            }
        }
    }

    /// In rank order: distance, then id.
    fn into_sorted(self) -> Vec<(u32, u32)> {
        self.heap.into_sorted_vec()
    }
}

/// The `k` best `(distance, id)` of query `q` among the candidate database `ids`, in rank order
/// (ties by id).
fn rerank_ids(
    kernel: Kernel,
    database: &CodesView<'_>,
    q: &[u64],
    k: usize,
    ids: &[u32],
) -> Vec<(u32, u32)> {
    let mask = database.last_word_mask();
    let mut best = TopK::new(k);
    for (j, &id) in ids.iter().enumerate() {
        // Candidates are scattered over the database: ask for the code a few candidates ahead
        // so that its cache miss overlaps this one.
        if let Some(c) = ids
            .get(j + PREFETCH_AHEAD)
            .and_then(|&a| database.code(a as usize))
        {
            prefetch(c);
        }
        if let Some(c) = database.code(id as usize) {
            best.offer(kernel.distance(q, c, mask), id);
        }
    }
    best.into_sorted()
}

/// Exact top `k` by distance among narrow codes (ties by position; of the positions of `allowed`
/// only, if given), ids only, per query.
fn narrow_knn(
    kernel: Kernel,
    queries: &[u32],
    db: &[u32],
    max_distance: usize,
    k: usize,
    allowed: Option<&AllowedRows>,
) -> Vec<Vec<u32>> {
    let width = StreamTopK::feed_width();
    queries
        .par_chunks(NARROW_QUERY_BLOCK)
        .flat_map_iter(|block| {
            let mut selectors: Vec<StreamTopK> = block
                .iter()
                .map(|_| StreamTopK::new(k, max_distance))
                .collect();
            let mut buf = vec![0u32; NARROW_DB_BLOCK];
            for (b, chunk) in db.chunks(NARROW_DB_BLOCK).enumerate() {
                let out = &mut buf[..chunk.len()];
                for (&q, sel) in block.iter().zip(selectors.iter_mut()) {
                    kernel.distances32(q, chunk, out);
                    let base = b * NARROW_DB_BLOCK;
                    match allowed {
                        None => sel.feed(out, base, width, EveryRow),
                        Some(a) => sel.feed(out, base, width, a.bits()),
                    }
                }
            }
            selectors.into_iter().map(|sel| {
                let mut row = Vec::with_capacity(k);
                sel.write(&mut row);
                row.into_iter().map(|(_, id)| id).collect::<Vec<u32>>()
            })
        })
        .collect()
}

impl<'a> CascadeIndex<'a> {
    /// Build the prefix copy (and, for [`PrefixStage::MultiIndex`], its hash tables), for kNN
    /// searches that re-rank `candidates` codes.
    ///
    /// Errors: `prefix_bits` of 0 or beyond the code length; [`PrefixStage::Buckets`] with more
    /// than 32 prefix bits.
    pub fn new(
        database: CodesView<'a>,
        prefix_bits: usize,
        stage: PrefixStage,
        candidates: usize,
    ) -> Result<CascadeIndex<'a>, IndexError> {
        let prefixes = database.prefix(prefix_bits)?.to_codes();
        let narrow_codes = || {
            let view = prefixes.view();
            (0..view.len())
                .map(|i| narrow_code(view.code(i)))
                .collect::<Vec<u32>>()
        };
        let (mut mih, mut narrow, mut buckets) = (None, None, None);
        match stage {
            PrefixStage::Scan if prefix_bits <= 32 => narrow = Some(narrow_codes()),
            PrefixStage::Scan => {}
            PrefixStage::MultiIndex => mih = Some(MultiIndex::new(prefixes.view(), None)?),
            PrefixStage::Buckets if prefix_bits <= 32 => {
                let codes = narrow_codes();
                buckets = Buckets::new(&codes, prefix_bits, &database)?;
                if buckets.is_none() {
                    narrow = Some(codes);
                }
            }
            PrefixStage::Buckets => {
                return Err(IndexError::arg(
                    "prefix_bits",
                    format!("{prefix_bits} bits; the bucket stage groups prefixes of at most 32"),
                ))
            }
        }
        Ok(CascadeIndex {
            database,
            prefix_bits,
            candidates,
            prefixes,
            narrow,
            mih,
            buckets,
        })
    }

    /// Whether the first stage walks prefix groups ([`PrefixStage::Buckets`] when the prefixes
    /// are few enough to group) rather than scanning or hashing.
    pub fn grouped(&self) -> bool {
        self.buckets.is_some()
    }

    /// The prefix length of the first stage.
    pub fn prefix_bits(&self) -> usize {
        self.prefix_bits
    }

    /// The candidates a kNN search through [`HammingIndex::knn`] re-ranks.
    pub fn candidates(&self) -> usize {
        self.candidates
    }

    /// The k nearest by the full code among the `candidates` nearest by the prefix (with the
    /// best kernel), whatever number of candidates the index was built for.
    ///
    /// Errors: different code lengths, `k == 0`, `k > candidates`; `candidates` above the database
    /// size means the whole database (an exact search).
    pub fn search(
        &self,
        queries: CodesView<'_>,
        k: usize,
        candidates: usize,
    ) -> Result<Neighbors, IndexError> {
        self.search_by(Kernel::best(), queries, k, candidates, None)
    }

    /// The cascade's kNN, among the rows of `allowed` (if given): `min(k, allowed rows)`
    /// results from `min(candidates, allowed rows)` candidates.
    fn search_by(
        &self,
        kernel: Kernel,
        queries: CodesView<'_>,
        k: usize,
        candidates: usize,
        allowed: Option<&AllowedRows>,
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
        if let Some(allowed) = allowed {
            allowed.check_rows(n)?;
        }
        let count = allowed.map_or(n, AllowedRows::count);
        let (k, candidates) = (k.min(count), candidates.min(count));
        if k == 0 {
            return Ok(Neighbors {
                n_queries: queries.len(),
                k,
                ids: Vec::new(),
                distances: Vec::new(),
            });
        }
        let q_prefix = queries.prefix(self.prefix_bits)?;
        // A view's last word is unmasked: clear the query bits past the prefix, so that narrow
        // distances are prefix distances (at most `prefix_bits`).
        let narrow_mask = u32::MAX >> (32 - self.prefix_bits.min(32));
        let narrow_queries = || -> Vec<u32> {
            (0..q_prefix.len())
                .map(|i| narrow_code(q_prefix.code(i)) & narrow_mask)
                .collect()
        };
        // Per query its candidates: database ids, or slots of the grouped copy.
        let first: Vec<Vec<u32>> = match (&self.mih, &self.narrow, &self.buckets) {
            (Some(mih), _, _) => {
                let mut options = SearchOptions::with_kernel(kernel);
                options.allowed = allowed;
                rows_of(&mih.knn(q_prefix, candidates, &options)?)
            }
            (_, Some(narrow), _) => narrow_knn(
                kernel,
                &narrow_queries(),
                narrow,
                self.prefix_bits,
                candidates,
                allowed,
            ),
            (_, _, Some(buckets)) => {
                let filter = allowed.map(|a| buckets.restrict(a));
                let ids: Vec<usize> = (0..q_prefix.len()).collect();
                ids.par_chunks(BUCKETS_QUERY_BLOCK)
                    .flat_map_iter(|block| {
                        // Every qi < len has a code.
                        let qs: Vec<&[u64]> =
                            block.iter().filter_map(|&qi| q_prefix.code(qi)).collect();
                        let max_distance = self.prefix_bits;
                        buckets.nearest(kernel, &qs, max_distance, candidates, filter.as_ref())
                    })
                    .collect()
            }
            (None, None, None) => rows_of(&knn_allowed(
                kernel,
                q_prefix,
                self.prefixes.view(),
                candidates,
                allowed,
            )?),
        };
        let rows: Vec<Vec<(u32, u32)>> = (0..queries.len())
            .into_par_iter()
            .map(|qi| match (queries.code(qi), &self.buckets) {
                (None, _) => Vec::new(),
                (Some(q), Some(b)) => b.rerank(kernel, q, k, &first[qi]),
                (Some(q), None) => rerank_ids(kernel, &self.database, q, k, &first[qi]),
            })
            .collect();
        Ok(Neighbors {
            n_queries: queries.len(),
            k,
            ids: rows.iter().flatten().map(|&(_, id)| id).collect(),
            distances: rows.iter().flatten().map(|&(d, _)| d).collect(),
        })
    }
}

impl HammingIndex for CascadeIndex<'_> {
    /// The k nearest by the full code among the [`CascadeIndex::candidates`] nearest by the
    /// prefix: approximate, exact when the candidates cover the database.
    fn knn(
        &self,
        queries: CodesView<'_>,
        k: usize,
        options: &SearchOptions<'_>,
    ) -> Result<Neighbors, IndexError> {
        self.search_by(
            options.kernel(),
            queries,
            k,
            self.candidates,
            options.allowed,
        )
    }

    /// Always [`IndexError::Unsupported`]: the cascade keeps a number of candidates, which bounds
    /// no radius.
    fn range(
        &self,
        _queries: CodesView<'_>,
        _radius: u32,
        _options: &SearchOptions<'_>,
    ) -> Result<RangeResult, IndexError> {
        Err(IndexError::Unsupported {
            index: "the cascade",
            search: "range search",
            why: "it re-ranks a number of candidates, which bounds no radius; search the full \
                  codes with the flat index or multi-index hashing",
        })
    }
}

fn rows_of(neighbors: &Neighbors) -> Vec<Vec<u32>> {
    (0..neighbors.n_queries)
        .map(|q| neighbors.ids_of(q).to_vec())
        .collect()
}

/// recall@k of `found` against `exact`: the mean over queries of the fraction of the exact ids
/// that `found` also returns (1 when there are no queries, or no neighbours to find: a search
/// restricted to no rows). An item tied with the exact k-th neighbour but of a larger database
/// position counts as a miss, as in FAISS's recall.
pub fn recall_at_k(found: &Neighbors, exact: &Neighbors) -> Result<f64, IndexError> {
    if found.n_queries != exact.n_queries || found.k != exact.k {
        return Err(IndexError::Shape {
            what: format!(
                "results of {} x {} and {} x {} cannot be compared",
                found.n_queries, found.k, exact.n_queries, exact.k
            ),
        });
    }
    if found.n_queries == 0 || found.k == 0 {
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

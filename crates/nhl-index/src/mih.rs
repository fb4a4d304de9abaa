//! Multi-index hashing (Norouzi, Punjani and Fleet, "Fast Exact Search in Hamming Space with
//! Multi-Index Hashing", TPAMI 2014): exact k-nearest-neighbour search that touches only part of
//! the database.
//!
//! Split every `b`-bit code into `m` disjoint substrings and index each in its own hash table
//! (here a dense table: substring value -> the ids with that value). By the pigeonhole principle,
//! if `d(q, x) = sum_j d_j(q, x)` then an item whose substrings all differ from the query's by
//! more than `s` has `d >= m (s + 1)`. So probe the tables with every key at substring distance
//! `s = 0, 1, 2, ...` from the query's substrings, verify each new candidate with the full
//! distance, and stop as soon as enough candidates are known to be closer than any unseen item.
//! Finer (Norouzi's refinement): once tables `0..=j` are probed at radius `s` and the rest at
//! `s - 1`, every unseen item has `d >= m s + j + 1`.
//!
//! Range search ([`MultiIndex::range`]) uses the same argument in reverse: write `r = m s + a`
//! with `0 <= a < m`. An item with `d <= r` has a substring within `s` of the query's among
//! tables `0..=a`, or within `s - 1` among the others (else `d >= (a + 1)(s + 1) + (m - a - 1) s
//! = r + 1`). So probing those balls and verifying every candidate with the full distance finds
//! exactly the items within `r`. The balls grow as `C(len, s)`; when the probes and candidates
//! would cost more than a scan, the search scans instead (see [`MultiIndex::range_plan`]).
//!
//! A search restricted to some rows ([`SearchOptions::allowed`]) verifies only the allowed
//! candidates the probes bring, and its stopping rule counts only them, so it returns exactly
//! the flat scan's restricted results.

use crate::allow::AllowedRows;
use crate::codes::{Codes, CodesView};
use crate::error::IndexError;
use crate::hamming::Kernel;
use crate::index::{HammingIndex, SearchOptions};
use crate::search::{check_pair, range_allowed, Neighbors, RangeResult};
use crate::select::TopKAnyOrder;
use rayon::prelude::*;

/// Longest substring. Tables are dense (`2^len + 1` offsets) while that is at most four slots per
/// code (or 2^16), else sorted keys with binary search.
pub const MAX_SUBSTRING_BITS: usize = 24;

#[derive(Debug)]
struct Table {
    first_bit: usize,
    len: usize,
    lookup: Lookup,
    /// Database positions grouped by key, ascending within a key.
    ids: Vec<u32>,
    /// The expected size of the bucket holding a random database item, `sum_key size^2 / n`:
    /// the candidates one probe near a query from the data's own distribution brings.
    occupancy: f64,
}

/// Where the ids of a key start and end in `Table::ids`.
#[derive(Debug)]
enum Lookup {
    /// `offsets[key] .. offsets[key + 1]`: one slot per possible key, when keys are dense enough.
    Dense(Vec<u32>),
    /// The distinct keys, sorted, and `offsets[i] .. offsets[i + 1]` for `keys[i]`: when `2^len`
    /// slots would dwarf the database.
    Sparse { keys: Vec<u32>, offsets: Vec<u32> },
}

impl Table {
    #[inline]
    fn bucket(&self, key: u32) -> &[u32] {
        let (start, end) = match &self.lookup {
            Lookup::Dense(offsets) => (offsets[key as usize], offsets[key as usize + 1]),
            Lookup::Sparse { keys, offsets } => match keys.binary_search(&key) {
                Ok(i) => (offsets[i], offsets[i + 1]),
                Err(_) => return &[],
            },
        };
        &self.ids[start as usize..end as usize]
    }

    fn build(view: &CodesView<'_>, first_bit: usize, len: usize) -> Table {
        let n = view.len();
        let keys: Vec<u32> = (0..n)
            .map(|i| view.code(i).map_or(0, |c| substring(c, first_bit, len)))
            .collect();
        if (1usize << len) <= (4 * n).max(1 << 16) {
            // Counting sort of the ids by key: stable, so ids ascend within a key.
            let mut offsets = vec![0u32; (1usize << len) + 1];
            for &key in &keys {
                offsets[key as usize + 1] += 1;
            }
            for i in 0..offsets.len() - 1 {
                offsets[i + 1] += offsets[i];
            }
            let mut next = offsets.clone();
            let mut ids = vec![0u32; n];
            for (i, &key) in keys.iter().enumerate() {
                ids[next[key as usize] as usize] = i as u32;
                next[key as usize] += 1;
            }
            let occupancy = occupancy(offsets.windows(2).map(|w| w[1] - w[0]), n);
            Table {
                first_bit,
                len,
                lookup: Lookup::Dense(offsets),
                ids,
                occupancy,
            }
        } else {
            let mut pairs: Vec<(u32, u32)> = keys
                .iter()
                .enumerate()
                .map(|(i, &k)| (k, i as u32))
                .collect();
            pairs.sort_unstable();
            let mut distinct = Vec::new();
            let mut offsets = Vec::new();
            for (i, &(key, _)) in pairs.iter().enumerate() {
                if distinct.last() != Some(&key) {
                    distinct.push(key);
                    offsets.push(i as u32);
                }
            }
            offsets.push(n as u32);
            let occupancy = occupancy(offsets.windows(2).map(|w| w[1] - w[0]), n);
            Table {
                first_bit,
                len,
                occupancy,
                lookup: Lookup::Sparse {
                    keys: distinct,
                    offsets,
                },
                ids: pairs.into_iter().map(|(_, id)| id).collect(),
            }
        }
    }
}

/// `sum size^2 / n` over the bucket sizes of a table of `n` ids.
fn occupancy(sizes: impl Iterator<Item = u32>, n: usize) -> f64 {
    let squares: f64 = sizes.map(|s| f64::from(s) * f64::from(s)).sum();
    squares / n.max(1) as f64
}

/// Bits `first .. first + len` of a code, as an integer (`len <= 32`).
#[inline]
fn substring(code: &[u64], first: usize, len: usize) -> u32 {
    let (w, o) = (first / 64, first % 64);
    let mut x = code[w] >> o;
    if o + len > 64 {
        x |= code[w + 1] << (64 - o);
    }
    (x & ((1u64 << len) - 1)) as u32
}

/// `C(n, k)`, saturating (only compared against database sizes).
fn binomial(n: usize, k: usize) -> u64 {
    if k > n {
        return 0;
    }
    let k = k.min(n - k);
    let mut c = 1u64;
    for i in 0..k {
        c = c.saturating_mul((n - i) as u64) / (i as u64 + 1);
    }
    c
}

/// Calls `f` with every `len`-bit mask of exactly `s` set bits (Gosper's hack).
#[inline]
fn for_each_mask(len: usize, s: usize, mut f: impl FnMut(u32)) {
    if s > len {
        return;
    }
    if s == 0 {
        f(0);
        return;
    }
    let limit = 1u64 << len;
    let mut v: u64 = (1u64 << s) - 1;
    while v < limit {
        f(v as u32);
        let c = v & v.wrapping_neg();
        let r = v + c;
        v = (((r ^ v) >> 2) / c) | r;
    }
}

/// Relative costs of the range-search plan, in units of one code of a sequential SIMD scan: a
/// probe is a random access into a table, a verification a random access into the codes plus a
/// distance. Rough (a factor of two either way only moves the crossover a little: ball sizes grow
/// by a factor of about `len / s` per step of the radius).
const PROBE_COST: f64 = 8.0;
const VERIFY_COST: f64 = 8.0;

/// How [`MultiIndex::range_with`] answers a range query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeMethod {
    /// Probe when [`MultiIndex::range_plan`] estimates it cheaper than a scan, else scan.
    Auto,
    /// Enumerate the substring balls of the pigeonhole bound and verify the candidates.
    Probe,
    /// Scan the whole database ([`crate::search::range_search_with`]).
    Scan,
}

/// What a range search did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeStats {
    /// The method that ran: [`RangeMethod::Probe`] or [`RangeMethod::Scan`], never `Auto`.
    pub method: RangeMethod,
    /// Full distances computed, summed over queries (`n` per query for a scan).
    pub verified: u64,
}

/// An exact multi-index hash over a copy of the database codes.
#[derive(Debug)]
pub struct MultiIndex {
    codes: Codes,
    tables: Vec<Table>,
}

impl MultiIndex {
    /// Index `database` with `m` substrings (`None`: substrings of about `log2(n)` bits, the
    /// choice Norouzi et al. recommend, within 4..=20 bits).
    ///
    /// Errors: `m == 0`, `m > bits`, or substrings longer than [`MAX_SUBSTRING_BITS`].
    pub fn new(database: CodesView<'_>, m: Option<usize>) -> Result<MultiIndex, IndexError> {
        let bits = database.bits();
        let n = database.len();
        if u32::try_from(n).is_err() {
            return Err(IndexError::arg(
                "database",
                format!("{n} codes; at most 2^32 - 1 are supported"),
            ));
        }
        let m = match m {
            Some(m) => m,
            None => {
                let target = (usize::BITS - n.max(2).leading_zeros()) as usize;
                bits.div_ceil(target.clamp(4, 20))
            }
        };
        if m == 0 || m > bits || bits.div_ceil(m) > MAX_SUBSTRING_BITS {
            return Err(IndexError::arg(
                "m",
                format!(
                    "{m} substrings of {bits}-bit codes (need 1..={bits}, and at most {MAX_SUBSTRING_BITS} bits each, so m >= {})",
                    bits.div_ceil(MAX_SUBSTRING_BITS)
                ),
            ));
        }
        let codes = database.to_codes();
        let view = codes.view();
        // Substring lengths differ by at most one: the first `bits % m` get one extra bit.
        let (base, extra) = (bits / m, bits % m);
        let layout: Vec<(usize, usize)> = (0..m)
            .scan(0, |first, j| {
                let len = base + usize::from(j < extra);
                let this = (*first, len);
                *first += len;
                Some(this)
            })
            .collect();
        let tables = layout
            .into_par_iter()
            .map(|(first_bit, len)| Table::build(&view, first_bit, len))
            .collect();
        Ok(MultiIndex { codes, tables })
    }

    /// Number of substrings (hash tables).
    pub fn substrings(&self) -> usize {
        self.tables.len()
    }

    /// The indexed codes.
    pub fn codes(&self) -> &Codes {
        &self.codes
    }

    /// The probe radius of every table for a range search of radius `r` (`None`: not probed),
    /// by the pigeonhole bound of the module docs, capped at the table's length.
    fn probe_radii(&self, r: u32) -> Vec<Option<usize>> {
        let m = self.tables.len();
        let r = r as usize;
        let (s, a) = (r / m, r % m);
        self.tables
            .iter()
            .enumerate()
            .map(|(j, t)| {
                let radius = if j <= a { Some(s) } else { s.checked_sub(1) };
                radius.map(|x| x.min(t.len))
            })
            .collect()
    }

    /// Keys each table probes for radius `r` (saturating).
    fn ball_sizes(&self, r: u32) -> Vec<u64> {
        self.tables
            .iter()
            .zip(self.probe_radii(r))
            .map(|(table, radius)| {
                radius.map_or(0, |radius| {
                    (0..=radius).fold(0u64, |acc, t| acc.saturating_add(binomial(table.len, t)))
                })
            })
            .collect()
    }

    /// Table keys a range search of radius `r` probes per query with [`RangeMethod::Probe`]
    /// (saturating): the size of its enumeration.
    pub fn probe_keys(&self, r: u32) -> u64 {
        self.ball_sizes(r)
            .into_iter()
            .fold(0u64, u64::saturating_add)
    }

    /// The method [`RangeMethod::Auto`] picks for radius `r`: [`RangeMethod::Probe`] when the
    /// estimated cost of the probes (`sum_j ball_j`, the keys within each table's probe radius)
    /// and of verifying their candidates (`ball_j` times the table's mean occupied-bucket size,
    /// at most `n`) is below that of scanning `n` codes, else [`RangeMethod::Scan`].
    pub fn range_plan(&self, r: u32) -> RangeMethod {
        let n = self.codes.len() as f64;
        let mut cost = 0.0;
        for (table, keys) in self.tables.iter().zip(self.ball_sizes(r)) {
            let keys = keys as f64;
            cost += keys * PROBE_COST + (keys * table.occupancy).min(n) * VERIFY_COST;
        }
        if cost < n {
            RangeMethod::Probe
        } else {
            RangeMethod::Scan
        }
    }

    /// [`HammingIndex::range`] with a chosen method (and the best kernel), plus what it did.
    ///
    /// Errors: queries of another code length than the index.
    pub fn range_with(
        &self,
        queries: CodesView<'_>,
        radius: u32,
        method: RangeMethod,
    ) -> Result<(RangeResult, RangeStats), IndexError> {
        self.range_by(Kernel::best(), queries, radius, method, None)
    }

    /// Every indexed item (of `allowed`, if given) within Hamming distance `radius` of each
    /// query, in the order of `docs/PROTOCOL.md` (Order): identical to
    /// [`crate::search::range_search`], by probing, by scanning, or as
    /// [`MultiIndex::range_plan`] picks.
    fn range_by(
        &self,
        kernel: Kernel,
        queries: CodesView<'_>,
        radius: u32,
        method: RangeMethod,
        allowed: Option<&AllowedRows>,
    ) -> Result<(RangeResult, RangeStats), IndexError> {
        let db = self.codes.view();
        check_pair(&queries, &db)?;
        if let Some(allowed) = allowed {
            allowed.check_rows(db.len())?;
        }
        let method = match method {
            RangeMethod::Auto => self.range_plan(radius),
            chosen => chosen,
        };
        if method == RangeMethod::Scan {
            let result = range_allowed(kernel, queries, db, radius, allowed)?;
            let verified = (queries.len() * db.len()) as u64;
            return Ok((result, RangeStats { method, verified }));
        }
        let admits = |id: u32| allowed.is_none_or(|a| a.contains(id as usize));
        let n = db.len();
        let mask = db.last_word_mask();
        let radii = self.probe_radii(radius);
        let rows: Vec<(Vec<(u32, u32)>, u64)> = (0..queries.len())
            .into_par_iter()
            .map_init(
                || (vec![0u32; n], 0u32),
                |(stamp, generation), qi| {
                    *generation = generation.wrapping_add(1);
                    if *generation == 0 {
                        stamp.fill(0);
                        *generation = 1;
                    }
                    let gen = *generation;
                    let Some(q) = queries.code(qi) else {
                        return (Vec::new(), 0);
                    };
                    let mut row = Vec::new();
                    let mut verified = 0u64;
                    for (table, &probe) in self.tables.iter().zip(&radii) {
                        let Some(probe) = probe else { continue };
                        let key = substring(q, table.first_bit, table.len);
                        for t in 0..=probe {
                            for_each_mask(table.len, t, |flip| {
                                for &id in table.bucket(key ^ flip) {
                                    let slot = &mut stamp[id as usize];
                                    if *slot != gen {
                                        *slot = gen;
                                        if !admits(id) {
                                            continue;
                                        }
                                        verified += 1;
                                        if let Some(c) = db.code(id as usize) {
                                            let d = kernel.distance(q, c, mask);
                                            if d <= radius {
                                                row.push((d, id));
                                            }
                                        }
                                    }
                                }
                            });
                        }
                    }
                    row.sort_unstable();
                    (row, verified)
                },
            )
            .collect();
        let mut offsets = Vec::with_capacity(queries.len() + 1);
        offsets.push(0);
        let mut ids = Vec::new();
        let mut distances = Vec::new();
        let mut verified = 0;
        for (row, v) in rows {
            ids.extend(row.iter().map(|&(_, id)| id));
            distances.extend(row.iter().map(|&(d, _)| d));
            offsets.push(ids.len());
            verified += v;
        }
        let result = RangeResult {
            offsets,
            ids,
            distances,
        };
        Ok((result, RangeStats { method, verified }))
    }

    /// [`HammingIndex::knn`] (with the best kernel) plus the number of candidates whose full
    /// distance was computed (summed over queries), the measure of how much of the database was
    /// touched.
    pub fn knn_with_stats(
        &self,
        queries: CodesView<'_>,
        k: usize,
    ) -> Result<(Neighbors, u64), IndexError> {
        self.knn_by(Kernel::best(), queries, k, None)
    }

    /// Exact k nearest neighbours (among `allowed`, if given: `min(k, allowed rows)` of them) in
    /// the order of `docs/PROTOCOL.md` (Order), identical to [`crate::search::knn`], and the full
    /// distances computed.
    fn knn_by(
        &self,
        kernel: Kernel,
        queries: CodesView<'_>,
        k: usize,
        allowed: Option<&AllowedRows>,
    ) -> Result<(Neighbors, u64), IndexError> {
        let db = self.codes.view();
        check_pair(&queries, &db)?;
        let n = db.len();
        if k == 0 || k > n {
            return Err(IndexError::arg(
                "k",
                format!("k = {k}, the database has {n} codes (need 1 <= k <= n)"),
            ));
        }
        if let Some(allowed) = allowed {
            allowed.check_rows(n)?;
        }
        let k = allowed.map_or(k, |a| k.min(a.count()));
        if k == 0 {
            let none = Neighbors {
                n_queries: queries.len(),
                k,
                ids: Vec::new(),
                distances: Vec::new(),
            };
            return Ok((none, 0));
        }
        let admits = |id: usize| allowed.is_none_or(|a| a.contains(id));
        let m = self.tables.len();
        let max_d = db.bits();
        let mask = db.last_word_mask();
        let rows: Vec<(Vec<(u32, u32)>, u64)> = (0..queries.len())
            .into_par_iter()
            .map_init(
                || (vec![0u32; n], 0u32, TopKAnyOrder::new(k, max_d)),
                |(stamp, generation, top), qi| {
                    // A fresh generation marks "seen in this query" without clearing the array.
                    *generation = generation.wrapping_add(1);
                    if *generation == 0 {
                        stamp.fill(0);
                        *generation = 1;
                    }
                    let gen = *generation;
                    top.reset();
                    let mut verified = 0u64;
                    let Some(q) = queries.code(qi) else {
                        return (Vec::new(), 0);
                    };
                    let keys: Vec<u32> = self
                        .tables
                        .iter()
                        .map(|t| substring(q, t.first_bit, t.len))
                        .collect();
                    let longest = self.tables.iter().map(|t| t.len).max().unwrap_or(0);
                    let mut probes = 0u64;
                    'search: for s in 0..=longest {
                        for (j, (table, &key)) in self.tables.iter().zip(&keys).enumerate() {
                            // Hamming balls grow as C(len, s): once probing would cost more keys
                            // than there are codes (random codes, large k), verifying every unseen
                            // code is cheaper and just as exact.
                            probes += binomial(table.len, s);
                            if probes > n as u64 {
                                for (id, slot) in stamp.iter_mut().enumerate() {
                                    if *slot != gen && admits(id) {
                                        *slot = gen;
                                        verified += 1;
                                        if let Some(c) = db.code(id) {
                                            top.offer(kernel.distance(q, c, mask), id as u32);
                                        }
                                    }
                                }
                                break 'search;
                            }
                            for_each_mask(table.len, s, |flip| {
                                for &id in table.bucket(key ^ flip) {
                                    let slot = &mut stamp[id as usize];
                                    if *slot != gen {
                                        *slot = gen;
                                        if !admits(id as usize) {
                                            continue;
                                        }
                                        verified += 1;
                                        if let Some(c) = db.code(id as usize) {
                                            top.offer(kernel.distance(q, c, mask), id);
                                        }
                                    }
                                }
                            });
                            // A table whose whole key space is probed has produced every item.
                            if s >= table.len {
                                break 'search;
                            }
                            // Unseen items have d >= m s + j + 1: everything up to m s + j is known.
                            if top.count_within(m * s + j) >= k {
                                break 'search;
                            }
                        }
                    }
                    let mut row = Vec::with_capacity(k);
                    top.write(&mut row);
                    (row, verified)
                },
            )
            .collect();
        let mut ids = Vec::with_capacity(queries.len() * k);
        let mut distances = Vec::with_capacity(queries.len() * k);
        let mut verified = 0;
        for (row, v) in rows {
            ids.extend(row.iter().map(|&(_, id)| id));
            distances.extend(row.iter().map(|&(d, _)| d));
            verified += v;
        }
        Ok((
            Neighbors {
                n_queries: queries.len(),
                k,
                ids,
                distances,
            },
            verified,
        ))
    }
}

impl HammingIndex for MultiIndex {
    fn knn(
        &self,
        queries: CodesView<'_>,
        k: usize,
        options: &SearchOptions<'_>,
    ) -> Result<Neighbors, IndexError> {
        Ok(self
            .knn_by(options.kernel(), queries, k, options.allowed)?
            .0)
    }

    /// By probing or scanning, as [`MultiIndex::range_plan`] picks.
    fn range(
        &self,
        queries: CodesView<'_>,
        radius: u32,
        options: &SearchOptions<'_>,
    ) -> Result<RangeResult, IndexError> {
        Ok(self.range_with_stats(queries, radius, options)?.0)
    }

    fn range_with_stats(
        &self,
        queries: CodesView<'_>,
        radius: u32,
        options: &SearchOptions<'_>,
    ) -> Result<(RangeResult, Option<RangeStats>), IndexError> {
        let (result, stats) = self.range_by(
            options.kernel(),
            queries,
            radius,
            RangeMethod::Auto,
            options.allowed,
        )?;
        Ok((result, Some(stats)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_enumerate_every_combination_once() {
        for len in 0..=12 {
            for s in 0..=len + 1 {
                let mut seen = Vec::new();
                for_each_mask(len, s, |m| seen.push(m));
                let mut want: Vec<u32> = (0..1u32 << len)
                    .filter(|m| m.count_ones() as usize == s)
                    .collect();
                want.sort_unstable();
                seen.sort_unstable();
                assert_eq!(seen, want, "len {len}, s {s}");
            }
        }
    }

    #[test]
    fn substrings_cross_word_boundaries() {
        let code = [0xF000_0000_0000_0000u64, 0x0000_0000_0000_000Bu64];
        assert_eq!(substring(&code, 60, 8), 0xBF);
        assert_eq!(substring(&code, 0, 4), 0);
        assert_eq!(substring(&code, 64, 4), 0xB);
    }
}

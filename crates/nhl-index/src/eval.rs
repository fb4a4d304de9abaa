//! Retrieval metrics: mAP@K as `docs/PROTOCOL.md` (mAP@K) defines it, its tie-aware twin, and
//! precision@k.
//!
//! For one query, rank the database by Hamming distance, ties by database position. With
//! `rel(r)` = 1 when the item at rank `r` is relevant and `R_K` = the relevant items in ranks
//! `1..=K`:
//!
//! ```text
//! AP@K = (1 / R_K) * sum_{r <= K, rel(r) = 1} (sum_{i <= r} rel(i)) / r,   AP@K = 0 when R_K = 0
//! ```
//!
//! No comparison sort is needed. Distances are integers in `0..=bits`, so a counting pass gives
//! for every distance `d` the group size `n_d`, its relevant count `r_d`, and the rank `p_d` before
//! it; a second pass in database order scatters each relevance flag to its rank
//! `p_d + (items of distance d seen so far)` (a stable counting sort of the flags alone), and a
//! third, sequential pass accumulates the AP sum and the precisions.
//!
//! **Tie-aware AP** (McSherry and Najork, ECIR 2008): the expectation of AP@K over all orders of
//! each tied group, uniformly at random. Take a group of `n` items at ranks `p+1 ..= p+n` holding
//! `r` relevant ones, with `R_b` relevant items ranked before it. By linearity of expectation over
//! the positions `j = 1..=n` of the group, since `P(rel_j) = r/n` and
//! `P(rel_i rel_j) = r(r-1) / (n(n-1))` for `i != j`:
//!
//! ```text
//! E[sum of the group's precision terms] = sum_{j=1..n} [ (r/n)(R_b + 1) + (j-1) r(r-1) / (n(n-1)) ] / (p + j)
//! ```
//!
//! For the groups entirely inside the cut `K`, `R_K` does not depend on the order, so these
//! expectations add up and divide by `R_K`. The group that straddles the cut (its first
//! `m = K - p < n` positions are inside) is different: how many relevant items fall inside, `h`,
//! is random and appears in the denominator, so `E[X / Y] != E[X] / E[Y]`. We condition on it:
//! `h` is hypergeometric, `P(h) = C(r, h) C(n - r, m - h) / C(n, m)`, and given `h` the first `m`
//! positions are a uniformly ordered set of `m` items with `h` relevant, so the formula above
//! applies with `(n, r)` replaced by `(m, h)`. The orders of the earlier groups are independent of
//! `h`, so
//!
//! ```text
//! E[AP@K] = sum_h P(h) * (E_before + E_cut(h)) / (R_b + h),   the terms with R_b + h = 0 being 0.
//! ```
//!
//! With `K = ALL` no group straddles the cut and this reduces to the plain sum.

use crate::codes::CodesView;
use crate::error::IndexError;
use crate::hamming::Kernel;
use crate::search::check_pair;
use rayon::prelude::*;

/// Relevance labels of a set of items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Labels {
    /// One class per item; two items are relevant when their classes are equal.
    Single(Vec<u32>),
    /// A set of classes per item (ids `< n_classes`); relevant when the sets intersect.
    Multi {
        /// Number of classes.
        n_classes: usize,
        /// Class ids of each item.
        rows: Vec<Vec<u32>>,
    },
}

impl Labels {
    /// Number of items.
    pub fn len(&self) -> usize {
        match self {
            Labels::Single(v) => v.len(),
            Labels::Multi { rows, .. } => rows.len(),
        }
    }

    /// True when there are no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Fills the relevance of every database item to query `qi`.
type Relevance = Box<dyn Fn(usize, &mut [bool]) + Sync>;

/// Labels in the form the inner loop wants: class ids, or class bitsets of `words` u64 each.
enum Packed {
    Single(Vec<u32>),
    Multi { words: usize, bits: Vec<u64> },
}

impl Packed {
    fn new(labels: &Labels, role: &'static str) -> Result<Packed, IndexError> {
        match labels {
            Labels::Single(v) => Ok(Packed::Single(v.clone())),
            Labels::Multi { n_classes, rows } => {
                let words = n_classes.div_ceil(64).max(1);
                let mut bits = vec![0u64; rows.len() * words];
                for (i, row) in rows.iter().enumerate() {
                    for &c in row {
                        let c = c as usize;
                        if c >= *n_classes {
                            return Err(IndexError::arg(
                                role,
                                format!("item {i} has class {c}, but n_classes = {n_classes}"),
                            ));
                        }
                        bits[i * words + c / 64] |= 1 << (c % 64);
                    }
                }
                Ok(Packed::Multi { words, bits })
            }
        }
    }
}

/// mAP@K (stable order), tie-aware mAP@K and precision@k, averaged over all queries.
#[derive(Clone, Debug, PartialEq)]
pub struct RetrievalMetrics {
    /// Mean over queries of AP@K with ties broken by database position (`docs/PROTOCOL.md`).
    pub map: f64,
    /// Mean over queries of the expected AP@K over all orders within tied groups.
    pub map_tie_aware: f64,
    /// `(k, mean precision@k)` for each requested k, stable order.
    pub precision_at: Vec<(usize, f64)>,
}

/// The metrics of one query.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct QueryMetrics {
    pub(crate) ap: f64,
    pub(crate) ap_tie_aware: f64,
    pub(crate) precision: Vec<f64>,
}

/// Tables shared by all queries: `inv[i] = 1 / i` and `ln_fact[i] = ln(i!)`.
pub(crate) struct Tables {
    inv: Vec<f64>,
    ln_fact: Vec<f64>,
}

impl Tables {
    pub(crate) fn new(n: usize) -> Tables {
        let inv = (0..=n)
            .map(|i| if i == 0 { 0.0 } else { 1.0 / i as f64 })
            .collect();
        let mut ln_fact = Vec::with_capacity(n + 1);
        let mut acc = 0.0f64;
        ln_fact.push(0.0);
        for i in 1..=n {
            acc += (i as f64).ln();
            ln_fact.push(acc);
        }
        Tables { inv, ln_fact }
    }

    fn ln_choose(&self, a: usize, b: usize) -> f64 {
        self.ln_fact[a] - self.ln_fact[b] - self.ln_fact[a - b]
    }

    /// Expected sum of the precision terms of the first `m` positions of a group starting after
    /// rank `p`, holding `h` relevant items among those `m` uniformly ordered positions, with `rb`
    /// relevant items ranked before the group.
    fn expected_group(&self, p: usize, m: usize, h: usize, rb: usize) -> f64 {
        if h == 0 {
            return 0.0;
        }
        // Four partial sums break the floating-point add latency chain.
        let (mut a, mut b) = ([0.0f64; 4], [0.0f64; 4]);
        let weights = &self.inv[p + 1..=p + m];
        let mut chunks = weights.chunks_exact(4);
        let mut j0 = 0.0f64;
        for c in &mut chunks {
            for l in 0..4 {
                a[l] += c[l];
                b[l] += (j0 + l as f64) * c[l];
            }
            j0 += 4.0;
        }
        for (l, &w) in chunks.remainder().iter().enumerate() {
            a[l] += w;
            b[l] += (j0 + l as f64) * w;
        }
        let a = (a[0] + a[1]) + (a[2] + a[3]);
        let b = (b[0] + b[1]) + (b[2] + b[3]);
        let (mf, hf) = (m as f64, h as f64);
        let pair = if m > 1 {
            hf * (hf - 1.0) / (mf * (mf - 1.0))
        } else {
            0.0
        };
        hf / mf * (rb as f64 + 1.0) * a + pair * b
    }
}

/// Reusable per-thread buffers.
pub(crate) struct Scratch {
    count: Vec<usize>,
    rel_count: Vec<usize>,
    next: Vec<usize>,
    hist: Vec<u64>,
    ranked: Vec<bool>,
}

impl Scratch {
    pub(crate) fn new(max_distance: usize, n: usize) -> Scratch {
        Scratch {
            count: vec![0; max_distance + 1],
            rel_count: vec![0; max_distance + 1],
            next: vec![0; 4 * (max_distance + 1)],
            hist: vec![0; 4 * (max_distance + 1)],
            ranked: vec![false; n],
        }
    }
}

/// The metrics of one query from its distances to every database item and their relevance.
/// `top_k` is in `1..=n`, each precision k in `1..=n`, distances `<= max_distance`.
pub(crate) fn query_metrics(
    dist: &[u32],
    rel: &[bool],
    top_k: usize,
    precision_ks: &[usize],
    tables: &Tables,
    s: &mut Scratch,
) -> QueryMetrics {
    let n = dist.len();
    s.count.fill(0);
    s.rel_count.fill(0);
    // The database is cut into four contiguous quarters walked side by side, each with its own
    // counters: runs of equal distances (common: distances are small integers) would otherwise
    // serialise every increment on one memory location. One histogram word per distance holds
    // both counts (relevant ones in the high half).
    let groups = s.count.len();
    let quarter = n / 4;
    s.hist.fill(0);
    for i in 0..quarter {
        for l in 0..4 {
            let j = l * quarter + i;
            s.hist[4 * dist[j] as usize + l] += 1 | (u64::from(rel[j]) << 32);
        }
    }
    for j in 4 * quarter..n {
        s.hist[4 * dist[j] as usize + 3] += 1 | (u64::from(rel[j]) << 32);
    }
    for d in 0..groups {
        let h: u64 = s.hist[4 * d..4 * d + 4].iter().sum();
        s.count[d] = (h & u64::from(u32::MAX)) as usize;
        s.rel_count[d] = (h >> 32) as usize;
    }
    // Turn counts into starts: `count[d]` becomes the rank before group d (likewise relevant).
    let (mut before, mut rel_before) = (0usize, 0usize);
    let mut sizes = vec![0usize; groups];
    let mut rel_sizes = vec![0usize; groups];
    for d in 0..groups {
        sizes[d] = s.count[d];
        rel_sizes[d] = s.rel_count[d];
        s.count[d] = before;
        s.rel_count[d] = rel_before;
        before += sizes[d];
        rel_before += rel_sizes[d];
    }
    let group_of_rank = |rank: usize| {
        (0..groups)
            .find(|&d| s.count[d] + sizes[d] >= rank)
            .unwrap_or(groups - 1)
    };

    // Stable order: scatter the flags to their ranks (0-based), then walk the first K ranks.
    // Quarter l of group d starts after the group's items in quarters 0..l, so the four
    // cursors fill disjoint, correctly ordered slots.
    for d in 0..groups {
        let mut at = s.count[d];
        for l in 0..4 {
            s.next[4 * d + l] = at;
            at += (s.hist[4 * d + l] & u64::from(u32::MAX)) as usize;
        }
    }
    let ranked = &mut s.ranked[..n];
    for i in 0..quarter {
        for l in 0..4 {
            let j = l * quarter + i;
            let slot = &mut s.next[4 * dist[j] as usize + l];
            ranked[*slot] = rel[j];
            *slot += 1;
        }
    }
    for j in 4 * quarter..n {
        let slot = &mut s.next[4 * dist[j] as usize + 3];
        ranked[*slot] = rel[j];
        *slot += 1;
    }
    // Branch-free (relevance is a coin flip the predictor cannot learn), four partial sums.
    let (mut partial, mut hits) = ([0.0f64; 4], 0usize);
    for (i, &r) in ranked[..top_k].iter().enumerate() {
        hits += usize::from(r);
        partial[i % 4] += f64::from(u8::from(r)) * hits as f64 * tables.inv[i + 1];
    }
    let sum_prec = (partial[0] + partial[1]) + (partial[2] + partial[3]);
    let ap = if hits > 0 {
        sum_prec / hits as f64
    } else {
        0.0
    };
    let precision = precision_ks
        .iter()
        .map(|&pk| ranked[..pk].iter().filter(|&&r| r).count() as f64 / pk as f64)
        .collect();

    // Tie-aware: expected precision sums of the groups wholly inside the cut, then the cut group.
    let g = group_of_rank(top_k);
    let mut expected_before = 0.0;
    for d in 0..g {
        expected_before +=
            tables.expected_group(s.count[d], sizes[d], rel_sizes[d], s.rel_count[d]);
    }
    let (p, n_g, r_g, rb) = (s.count[g], sizes[g], rel_sizes[g], s.rel_count[g]);
    let m = top_k - p;
    let ap_tie_aware = if m == n_g {
        let total = expected_before + tables.expected_group(p, n_g, r_g, rb);
        if rb + r_g > 0 {
            total / (rb + r_g) as f64
        } else {
            0.0
        }
    } else {
        let ln_all = tables.ln_choose(n_g, m);
        let lo = m.saturating_sub(n_g - r_g);
        let hi = r_g.min(m);
        (lo..=hi)
            .filter(|&h| rb + h > 0)
            .map(|h| {
                let prob =
                    (tables.ln_choose(r_g, h) + tables.ln_choose(n_g - r_g, m - h) - ln_all).exp();
                prob * (expected_before + tables.expected_group(p, m, h, rb)) / (rb + h) as f64
            })
            .sum()
    };
    QueryMetrics {
        ap,
        ap_tie_aware,
        precision,
    }
}

/// mAP@K exactly as `docs/PROTOCOL.md` defines it (stable order: ties by database position), the
/// tie-aware mAP (exact expected AP over all orders within each tied distance group, McSherry and
/// Najork 2008), and precision@k for each k in `precision_ks` (stable order). `top_k` `None` means
/// all (mAP@ALL); a `top_k` above the database size is the same as `None`. Parallel over queries.
///
/// Errors: code lengths or label counts that do not match, an empty database, `top_k = Some(0)`,
/// a precision k of 0 or above the database size, label kinds that differ, class ids out of range.
pub fn evaluate(
    queries: CodesView<'_>,
    database: CodesView<'_>,
    query_labels: &Labels,
    database_labels: &Labels,
    top_k: Option<usize>,
    precision_ks: &[usize],
) -> Result<RetrievalMetrics, IndexError> {
    check_pair(&queries, &database)?;
    let n = database.len();
    if n == 0 {
        return Err(IndexError::arg("database", "the database is empty"));
    }
    if query_labels.len() != queries.len() || database_labels.len() != n {
        return Err(IndexError::Shape {
            what: format!(
                "{} query labels for {} queries, {} database labels for {n} database codes",
                query_labels.len(),
                queries.len(),
                database_labels.len()
            ),
        });
    }
    let k = match top_k {
        Some(0) => return Err(IndexError::arg("top_k", "top_k = 0; use None for mAP@ALL")),
        Some(k) => k.min(n),
        None => n,
    };
    if let Some(&bad) = precision_ks.iter().find(|&&pk| pk == 0 || pk > n) {
        return Err(IndexError::arg(
            "precision_ks",
            format!("precision@{bad} asked for a database of {n} items (need 1..={n})"),
        ));
    }
    let ql = Packed::new(query_labels, "query_labels")?;
    let dl = Packed::new(database_labels, "database_labels")?;
    let relevance: Relevance = match (ql, dl) {
        (Packed::Single(q), Packed::Single(db)) => Box::new(move |qi, out: &mut [bool]| {
            let c = q[qi];
            for (o, &l) in out.iter_mut().zip(&db) {
                *o = l == c;
            }
        }),
        (
            Packed::Multi { words: wq, bits: q },
            Packed::Multi {
                words: wd,
                bits: db,
            },
        ) if wq == wd => Box::new(move |qi, out: &mut [bool]| {
            let mine = &q[qi * wq..(qi + 1) * wq];
            for (o, row) in out.iter_mut().zip(db.chunks_exact(wd)) {
                *o = row.iter().zip(mine).any(|(a, b)| a & b != 0);
            }
        }),
        _ => return Err(IndexError::arg(
            "labels",
            "query and database labels must both be Single or both Multi with the same n_classes",
        )),
    };
    let kernel = Kernel::best();
    let tables = Tables::new(n);
    let max_d = database.bits();
    let per_query: Vec<QueryMetrics> = (0..queries.len())
        .into_par_iter()
        .map_init(
            || (vec![0u32; n], vec![false; n], Scratch::new(max_d, n)),
            |(dist, rel, scratch), qi| {
                if let Some(q) = queries.code(qi) {
                    kernel.distances(q, &database, 0, dist);
                }
                relevance(qi, rel);
                query_metrics(dist, rel, k, precision_ks, &tables, scratch)
            },
        )
        .collect();
    let nq = per_query.len().max(1) as f64;
    Ok(RetrievalMetrics {
        map: per_query.iter().map(|m| m.ap).sum::<f64>() / nq,
        map_tie_aware: per_query.iter().map(|m| m.ap_tie_aware).sum::<f64>() / nq,
        precision_at: precision_ks
            .iter()
            .enumerate()
            .map(|(i, &pk)| {
                (
                    pk,
                    per_query.iter().map(|m| m.precision[i]).sum::<f64>() / nq,
                )
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::SplitMix64;

    /// AP@K of one explicit ranking (relevance flags in rank order), the formula of
    /// `docs/PROTOCOL.md`.
    fn ap_of_order(rel_in_order: &[bool], k: usize) -> f64 {
        let (mut hits, mut sum) = (0usize, 0.0);
        for (r, &rel) in rel_in_order.iter().take(k).enumerate() {
            if rel {
                hits += 1;
                sum += hits as f64 / (r + 1) as f64;
            }
        }
        if hits == 0 {
            0.0
        } else {
            sum / hits as f64
        }
    }

    /// Every permutation of `items` (Heap's algorithm).
    fn permutations(items: &[bool]) -> Vec<Vec<bool>> {
        fn heap(k: usize, a: &mut Vec<bool>, out: &mut Vec<Vec<bool>>) {
            if k <= 1 {
                out.push(a.clone());
                return;
            }
            for i in 0..k - 1 {
                heap(k - 1, a, out);
                if k.is_multiple_of(2) {
                    a.swap(i, k - 1);
                } else {
                    a.swap(0, k - 1);
                }
            }
            heap(k - 1, a, out);
        }
        let mut out = Vec::new();
        heap(items.len(), &mut items.to_vec(), &mut out);
        out
    }

    /// The mean AP@K over every order within every tied group, by enumeration.
    fn tie_aware_brute(dist: &[u32], rel: &[bool], k: usize) -> f64 {
        let max_d = *dist.iter().max().unwrap() as usize;
        let groups: Vec<Vec<bool>> = (0..=max_d)
            .map(|d| {
                dist.iter()
                    .zip(rel)
                    .filter(|(&x, _)| x as usize == d)
                    .map(|(_, &r)| r)
                    .collect()
            })
            .filter(|g: &Vec<bool>| !g.is_empty())
            .collect();
        let orders: Vec<Vec<Vec<bool>>> = groups.iter().map(|g| permutations(g)).collect();
        // Walk the cartesian product of the groups' orders.
        let mut index = vec![0usize; orders.len()];
        let (mut total, mut count) = (0.0, 0usize);
        loop {
            let ranking: Vec<bool> = index
                .iter()
                .zip(&orders)
                .flat_map(|(&i, o)| o[i].iter().copied())
                .collect();
            total += ap_of_order(&ranking, k);
            count += 1;
            let mut g = 0;
            loop {
                if g == index.len() {
                    return total / count as f64;
                }
                index[g] += 1;
                if index[g] < orders[g].len() {
                    break;
                }
                index[g] = 0;
                g += 1;
            }
        }
    }

    /// The stable-order AP@K and precision@k by an explicit stable sort.
    fn stable_brute(dist: &[u32], rel: &[bool], k: usize, pk: usize) -> (f64, f64) {
        let mut order: Vec<usize> = (0..dist.len()).collect();
        order.sort_by_key(|&i| dist[i]);
        let ranked: Vec<bool> = order.iter().map(|&i| rel[i]).collect();
        let p = ranked.iter().take(pk).filter(|&&r| r).count() as f64 / pk as f64;
        (ap_of_order(&ranked, k), p)
    }

    #[test]
    fn closed_forms_equal_enumeration_over_every_tie_order_and_cut() {
        let mut rng = SplitMix64::new(42);
        for case in 0..400 {
            let n = 1 + rng.below(8) as usize;
            let max_d = 1 + rng.below(4) as u32;
            let dist: Vec<u32> = (0..n)
                .map(|_| rng.below(u64::from(max_d) + 1) as u32)
                .collect();
            // Include queries with no relevant item, and with all items relevant.
            let density = rng.below(5);
            let rel: Vec<bool> = (0..n).map(|_| rng.below(4) < density).collect();
            let tables = Tables::new(n);
            let mut scratch = Scratch::new(max_d as usize, n);
            for k in 1..=n {
                let pk = 1 + rng.below(n as u64) as usize;
                let got = query_metrics(&dist, &rel, k, &[pk], &tables, &mut scratch);
                let want_tie = tie_aware_brute(&dist, &rel, k);
                let (want_ap, want_p) = stable_brute(&dist, &rel, k, pk);
                assert!(
                    (got.ap_tie_aware - want_tie).abs() < 1e-12,
                    "case {case} k {k}: {dist:?} {rel:?}: {} vs {want_tie}",
                    got.ap_tie_aware
                );
                assert!(
                    (got.ap - want_ap).abs() < 1e-12,
                    "case {case} k {k}: stable {} vs {want_ap}",
                    got.ap
                );
                assert!(
                    (got.precision[0] - want_p).abs() < 1e-12,
                    "case {case}: precision"
                );
            }
        }
    }

    #[test]
    fn no_relevant_item_gives_zero() {
        let tables = Tables::new(4);
        let mut scratch = Scratch::new(3, 4);
        let m = query_metrics(&[0, 1, 1, 3], &[false; 4], 4, &[2], &tables, &mut scratch);
        assert_eq!((m.ap, m.ap_tie_aware, m.precision[0]), (0.0, 0.0, 0.0));
    }
}

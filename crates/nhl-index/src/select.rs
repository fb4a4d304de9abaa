//! Top-k selection for small integer distances.
//!
//! Hamming distances take at most `bits + 1` values, so instead of a heap the selectors keep one
//! bucket of ids per distance and a threshold `t`, the k-th smallest distance seen so far. Once `k`
//! items are held, a candidate is rejected by one comparison against `t`, which is what the scan
//! loop does for almost every code.

use crate::hamming::Rows;

/// Vector width of the threshold test in [`StreamTopK::feed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FeedWidth {
    /// The baseline target (SSE2 on x86-64).
    Baseline,
    /// 256-bit compares.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx2,
    /// 512-bit compares.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx512,
}

/// The k nearest of a stream of `(distance, id)` whose ids arrive in ascending order.
///
/// Order: distance ascending, ties by id ascending (`docs/PROTOCOL.md`, Order). Because ids arrive
/// in ascending order, an item at distance exactly `t` arriving once `k` items at distance `<= t`
/// are held can never enter the result, so the scan accepts only `d < limit()`.
#[derive(Debug)]
pub(crate) struct StreamTopK {
    k: usize,
    /// Items held in buckets `0..=top`.
    count: usize,
    /// Highest bucket that may be non-empty.
    top: usize,
    full: bool,
    buckets: Vec<Vec<u32>>,
}

impl StreamTopK {
    /// A selector for `k >= 1` items over distances `0..=max_distance`.
    pub(crate) fn new(k: usize, max_distance: usize) -> Self {
        StreamTopK {
            k,
            count: 0,
            top: max_distance,
            full: false,
            buckets: vec![Vec::new(); max_distance + 1],
        }
    }

    /// Candidates must have a distance below this to enter.
    #[inline]
    pub(crate) fn limit(&self) -> u32 {
        (if self.full { self.top } else { self.top + 1 }) as u32
    }

    /// Insert an item with `d < limit()` whose id is larger than every id pushed before.
    #[inline]
    pub(crate) fn push(&mut self, d: u32, id: u32) {
        self.buckets[d as usize].push(id);
        self.count += 1;
        if self.count >= self.k {
            // Lower the threshold while the buckets below it alone hold k items: the items at
            // the old threshold then rank after k others and can be dropped.
            let mut t = self.top;
            while t > 0 && self.count - self.buckets[t].len() >= self.k {
                self.count -= self.buckets[t].len();
                self.buckets[t].clear();
                t -= 1;
            }
            self.top = t;
            self.full = true;
        }
    }

    /// Feed the distances of codes `base .. base + dist.len()` (ids ascending), of which only
    /// the positions of `rows` may enter, with the threshold test compiled for the widest vectors
    /// this CPU has (chosen once per search).
    #[inline]
    pub(crate) fn feed<R: Rows>(&mut self, dist: &[u32], base: usize, width: FeedWidth, rows: R) {
        match width {
            // SAFETY: `FeedWidth::detect` only returns these when the CPU has the features.
            #[cfg(target_arch = "x86_64")]
            FeedWidth::Avx512 => unsafe { self.feed_avx512(dist, base, rows) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            FeedWidth::Avx2 => unsafe { self.feed_avx2(dist, base, rows) },
            _ => self.feed_baseline(dist, base, rows),
        }
    }

    /// The widest vectors [`StreamTopK::feed`] may use on this CPU.
    pub(crate) fn feed_width() -> FeedWidth {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return FeedWidth::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return FeedWidth::Avx2;
            }
        }
        FeedWidth::Baseline
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn feed_avx2<R: Rows>(&mut self, dist: &[u32], base: usize, rows: R) {
        self.feed_baseline(dist, base, rows)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn feed_avx512<R: Rows>(&mut self, dist: &[u32], base: usize, rows: R) {
        self.feed_baseline(dist, base, rows)
    }

    /// Sixteen codes at a time: those with no allowed position are skipped, the others tested
    /// with a vectorised `any(d < limit)`, and only then code by code against the limit and
    /// their bit.
    #[inline(always)]
    fn feed_baseline<R: Rows>(&mut self, dist: &[u32], base: usize, rows: R) {
        let mut limit = self.limit();
        let mut chunks = dist.chunks_exact(16);
        let mut offset = base;
        for chunk in &mut chunks {
            let allowed = rows.window(offset) & 0xffff;
            if allowed == 0 {
                offset += 16;
                continue;
            }
            // A vectorised any(d < limit) lets the common case (nothing enters) skip 16 codes at
            // once. Signed compares because baseline x86-64 (SSE2) has no unsigned one; distances
            // and limits are at most 1025, so the cast is exact.
            let lim = limit as i32;
            let any = chunk
                .iter()
                .fold(0u32, |acc, &d| acc | u32::from((d as i32) < lim));
            if any != 0 {
                for (j, &d) in chunk.iter().enumerate() {
                    if d < limit && allowed >> j & 1 != 0 {
                        self.push(d, (offset + j) as u32);
                        limit = self.limit();
                    }
                }
            }
            offset += 16;
        }
        for (j, &d) in chunks.remainder().iter().enumerate() {
            if d < limit && rows.contains(offset + j) {
                self.push(d, (offset + j) as u32);
                limit = self.limit();
            }
        }
    }

    /// The selected items in rank order, at most `k`.
    pub(crate) fn write(&self, out: &mut Vec<(u32, u32)>) {
        let start = out.len();
        'outer: for (d, bucket) in self.buckets[..=self.top].iter().enumerate() {
            for &id in bucket {
                if out.len() - start == self.k {
                    break 'outer;
                }
                out.push((d as u32, id));
            }
        }
    }
}

/// The k nearest of `(distance, id)` items arriving in any id order (hash-table probes).
///
/// Ties at the threshold cannot be decided on arrival, so every item at distance `<= t` is kept
/// and the ids of each bucket are sorted at the end.
#[derive(Debug)]
pub(crate) struct TopKAnyOrder {
    k: usize,
    count: usize,
    top: usize,
    full: bool,
    buckets: Vec<Vec<u32>>,
}

impl TopKAnyOrder {
    pub(crate) fn new(k: usize, max_distance: usize) -> Self {
        TopKAnyOrder {
            k,
            count: 0,
            top: max_distance,
            full: false,
            buckets: vec![Vec::new(); max_distance + 1],
        }
    }

    pub(crate) fn reset(&mut self) {
        for b in &mut self.buckets[..=self.top] {
            b.clear();
        }
        self.count = 0;
        self.top = self.buckets.len() - 1;
        self.full = false;
    }

    /// Offer an item; it is kept when its distance is at most the current k-th distance.
    #[inline]
    pub(crate) fn offer(&mut self, d: u32, id: u32) {
        let d = d as usize;
        if d > self.top {
            return;
        }
        self.buckets[d].push(id);
        self.count += 1;
        if self.count >= self.k {
            let mut t = self.top;
            while t > 0 && self.count - self.buckets[t].len() >= self.k {
                self.count -= self.buckets[t].len();
                self.buckets[t].clear();
                t -= 1;
            }
            self.top = t;
            self.full = true;
        }
    }

    /// Number of held items at distance `<= d`.
    pub(crate) fn count_within(&self, d: usize) -> usize {
        self.buckets[..=d.min(self.top)].iter().map(Vec::len).sum()
    }

    /// The selected items in rank order (ties by id), at most `k`; sorts the buckets in place.
    pub(crate) fn write(&mut self, out: &mut Vec<(u32, u32)>) {
        let start = out.len();
        for (d, bucket) in self.buckets[..=self.top].iter_mut().enumerate() {
            let need = self.k - (out.len() - start);
            if need == 0 {
                break;
            }
            bucket.sort_unstable();
            out.extend(bucket.iter().take(need).map(|&id| (d as u32, id)));
        }
    }
}

/// Merge per-segment results, each sorted by `(distance, id)` and covering ascending id ranges, in
/// segment order, into one `(distance, id)` order truncated to `limit`: a stable counting sort by
/// distance, since ids already ascend within each distance across the concatenation.
pub(crate) fn merge_runs(
    runs: &[&[(u32, u32)]],
    max_distance: usize,
    limit: usize,
    out: &mut Vec<(u32, u32)>,
) {
    if let [single] = runs {
        out.extend(single.iter().take(limit));
        return;
    }
    let mut start = vec![0usize; max_distance + 2];
    for run in runs {
        for &(d, _) in run.iter() {
            start[d as usize + 1] += 1;
        }
    }
    for d in 0..=max_distance {
        start[d + 1] += start[d];
    }
    let total = start[max_distance + 1];
    let mut sorted = vec![(0u32, 0u32); total];
    for run in runs {
        for &(d, id) in run.iter() {
            let slot = &mut start[d as usize];
            sorted[*slot] = (d, id);
            *slot += 1;
        }
    }
    out.extend(sorted.into_iter().take(limit));
}

//! Searches restricted to some rows ([`AllowedRows`] in [`SearchOptions`]) against brute force
//! over the allowed rows only: the flat scan, multi-index hashing (probing and scanning) and the
//! cascade (every prefix stage), kNN and range, through every kernel this CPU has, with 0%, 1%,
//! 50% and 100% of the rows allowed, and runs of rows; ties by database position.

use nhl_index::cascade::{CascadeIndex, PrefixStage};
use nhl_index::hamming::{distance, Isa, Kernel};
use nhl_index::mih::{MultiIndex, RangeMethod};
use nhl_index::search::{Neighbors, RangeResult};
use nhl_index::synth::{nested_cluster_codes, random_allowed, random_codes, replicate_with_noise};
use nhl_index::SearchOptions;
use nhl_index::{AllowedRows, Codes, CodesView, FlatIndex, HammingIndex, IndexError};

/// Per query, every allowed row as (distance, row), sorted: the restricted ranking.
fn ranking(
    queries: CodesView<'_>,
    db: CodesView<'_>,
    allowed: &AllowedRows,
) -> Vec<Vec<(u32, u32)>> {
    let mask = db.last_word_mask();
    (0..queries.len())
        .map(|qi| {
            let q = queries.code(qi).unwrap();
            let mut all: Vec<(u32, u32)> = allowed
                .iter()
                .map(|row| (distance(q, db.code(row).unwrap(), mask), row as u32))
                .collect();
            all.sort_unstable();
            all
        })
        .collect()
}

/// The restricted kNN from the rankings: `min(k, allowed rows)` per query.
fn brute_knn(rankings: &[Vec<(u32, u32)>], k: usize, allowed: &AllowedRows) -> Neighbors {
    let k = k.min(allowed.count());
    let rows = rankings.iter().map(|r| &r[..k]);
    Neighbors {
        n_queries: rankings.len(),
        k,
        ids: rows.clone().flatten().map(|&(_, id)| id).collect(),
        distances: rows.flatten().map(|&(d, _)| d).collect(),
    }
}

/// The restricted range search from the rankings.
fn brute_range(rankings: &[Vec<(u32, u32)>], radius: u32) -> RangeResult {
    let mut result = RangeResult {
        offsets: vec![0],
        ids: Vec::new(),
        distances: Vec::new(),
    };
    for ranking in rankings {
        for &(d, id) in ranking.iter().take_while(|&&(d, _)| d <= radius) {
            result.ids.push(id);
            result.distances.push(d);
        }
        result.offsets.push(result.ids.len());
    }
    result
}

/// What the restricted cascade must return: per query, the `min(candidates, allowed rows)`
/// allowed rows nearest by the `prefix`-bit distance (ties by row), re-ranked by the full
/// distance (ties by row), the first `min(k, allowed rows)` of them.
fn brute_cascade(
    queries: CodesView<'_>,
    db: CodesView<'_>,
    prefix: usize,
    allowed: &AllowedRows,
    k: usize,
    candidates: usize,
) -> Neighbors {
    let short = ranking(
        queries.prefix(prefix).unwrap(),
        db.prefix(prefix).unwrap(),
        allowed,
    );
    let k = k.min(allowed.count());
    let mask = db.last_word_mask();
    let mut result = Neighbors {
        n_queries: queries.len(),
        k,
        ids: Vec::new(),
        distances: Vec::new(),
    };
    for (qi, by_prefix) in short.iter().enumerate() {
        let q = queries.code(qi).unwrap();
        let mut picked: Vec<(u32, u32)> = by_prefix
            .iter()
            .take(candidates)
            .map(|&(_, row)| (distance(q, db.code(row as usize).unwrap(), mask), row))
            .collect();
        picked.sort_unstable();
        for &(d, id) in &picked[..k] {
            result.ids.push(id);
            result.distances.push(d);
        }
    }
    result
}

/// 0%, 1%, 50% and 100% of `n` rows (seeded), and runs of 40 allowed, 70 disallowed rows.
fn allowed_sets(n: usize, seed: u64) -> Vec<(&'static str, AllowedRows)> {
    vec![
        ("0%", random_allowed(n, 0.0, seed).unwrap()),
        ("1%", random_allowed(n, 0.01, seed).unwrap()),
        ("50%", random_allowed(n, 0.5, seed).unwrap()),
        ("100%", random_allowed(n, 1.0, seed).unwrap()),
        (
            "runs",
            AllowedRows::from_rows(n, (0..n).filter(|r| r % 110 < 40)).unwrap(),
        ),
    ]
}

/// Databases with queries: random 64- and 128-bit codes with queries near database codes, and
/// clustered 128-bit codes (many ties, few distinct short prefixes).
fn cases() -> Vec<(String, Codes, Codes)> {
    let mut v = Vec::new();
    for bits in [64, 128] {
        let db = random_codes(4000 + 37, bits, bits as u64).unwrap();
        let q = replicate_with_noise(db.view(), 40, 0.1, 3).unwrap();
        v.push((format!("random {bits}"), q, db));
    }
    let db = nested_cluster_codes(4000 + 11, 128, 6, 0.0, 0.2, 5, 7).unwrap();
    let q = nested_cluster_codes(40, 128, 6, 0.0, 0.2, 5, 8).unwrap();
    v.push(("clustered 128".into(), q, db));
    v
}

#[test]
fn flat_and_multi_index_equal_brute_force_over_the_allowed_rows_on_every_kernel() {
    let mut methods = Vec::new();
    for (name, q, db) in cases() {
        let bits = db.bits() as u32;
        let mih = MultiIndex::new(db.view(), None).unwrap();
        let flat = FlatIndex::new(db.view());
        let indexes: [(&str, &dyn HammingIndex); 2] = [("flat", &flat), ("mih", &mih)];
        for (set, allowed) in allowed_sets(db.len(), 9) {
            let rankings = ranking(q.view(), db.view(), &allowed);
            for isa in Isa::available() {
                let options = SearchOptions::with_kernel(Kernel::new(isa).unwrap());
                let options = options.allowing(&allowed);
                for (index_name, index) in indexes {
                    let what = format!("{name}, {set} allowed, {index_name}, {isa}");
                    for k in [1, 10, 100] {
                        let got = index.knn(q.view(), k, &options).unwrap();
                        assert_eq!(got, brute_knn(&rankings, k, &allowed), "{what}, k {k}");
                    }
                    for radius in [0, bits / 8, bits / 3, bits] {
                        let (got, stats) =
                            index.range_with_stats(q.view(), radius, &options).unwrap();
                        assert_eq!(
                            got,
                            brute_range(&rankings, radius),
                            "{what}, radius {radius}"
                        );
                        methods.extend(stats.map(|s| s.method));
                    }
                }
            }
        }
    }
    // Both ways of a multi-index range search ran.
    assert!(methods.contains(&RangeMethod::Probe), "{methods:?}");
    assert!(methods.contains(&RangeMethod::Scan), "{methods:?}");
}

#[test]
fn cascade_filters_in_its_prefix_stage_on_every_kernel() {
    for (name, q, db) in cases().into_iter().filter(|(_, _, db)| db.bits() == 128) {
        let n = db.len();
        for (prefix, stage) in [
            (16, PrefixStage::Scan),
            (64, PrefixStage::Scan),
            (24, PrefixStage::MultiIndex),
            (16, PrefixStage::Buckets),
            (32, PrefixStage::Buckets),
        ] {
            let index = CascadeIndex::new(db.view(), prefix, stage, 200).unwrap();
            // Every row a candidate: the restricted exact search.
            let exact = CascadeIndex::new(db.view(), prefix, stage, n).unwrap();
            for (set, allowed) in allowed_sets(n, 5) {
                let want = brute_cascade(q.view(), db.view(), prefix, &allowed, 10, 200);
                let rankings = ranking(q.view(), db.view(), &allowed);
                for isa in Isa::available() {
                    let options = SearchOptions::with_kernel(Kernel::new(isa).unwrap());
                    let what = format!(
                        "{name}, prefix {prefix} {stage:?} (grouped: {}), {set} allowed, {isa}",
                        index.grouped()
                    );
                    let got = index
                        .knn(q.view(), 10, &options.allowing(&allowed))
                        .unwrap();
                    assert_eq!(got, want, "{what}");
                    let got = exact
                        .knn(q.view(), 10, &options.allowing(&allowed))
                        .unwrap();
                    assert_eq!(got, brute_knn(&rankings, 10, &allowed), "{what}, exact");
                }
            }
        }
    }
}

/// The clustered codes group into few prefix values: the bucket stage runs grouped, so its
/// filtered walk over the groups is the one tested above.
#[test]
fn clustered_codes_take_the_grouped_bucket_stage() {
    let (_, _, db) = cases().pop().unwrap();
    let index = CascadeIndex::new(db.view(), 16, PrefixStage::Buckets, 200).unwrap();
    assert!(index.grouped());
}

#[test]
fn searches_over_many_segments_and_filter_calls_equal_brute_force() {
    // More codes than one kNN filter call takes (65,536) and several segments per query block.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap();
    let db = random_codes(2 * 65_536 + 101, 64, 31).unwrap();
    let q = replicate_with_noise(db.view(), 6, 0.15, 32).unwrap();
    for (set, allowed) in allowed_sets(db.len(), 33) {
        let rankings = ranking(q.view(), db.view(), &allowed);
        for isa in Isa::available() {
            let options = SearchOptions::with_kernel(Kernel::new(isa).unwrap());
            let options = options.allowing(&allowed);
            let flat = FlatIndex::new(db.view());
            let got = pool.install(|| flat.knn(q.view(), 10, &options)).unwrap();
            assert_eq!(got, brute_knn(&rankings, 10, &allowed), "{set}, {isa}");
            let got = pool.install(|| flat.range(q.view(), 20, &options)).unwrap();
            assert_eq!(got, brute_range(&rankings, 20), "{set}, {isa}, range");
        }
    }
}

#[test]
fn every_row_allowed_gives_the_unrestricted_results() {
    let (_, q, db) = cases().remove(1);
    let all = AllowedRows::all(db.len());
    let flat = FlatIndex::new(db.view());
    let plain = SearchOptions::default();
    assert_eq!(
        flat.knn(q.view(), 10, &plain.allowing(&all)).unwrap(),
        flat.knn(q.view(), 10, &plain).unwrap()
    );
    assert_eq!(
        flat.range(q.view(), 40, &plain.allowing(&all)).unwrap(),
        flat.range(q.view(), 40, &plain).unwrap()
    );
}

#[test]
fn allowed_rows_over_another_database_size_are_refused() {
    let db = random_codes(50, 64, 1).unwrap();
    let q = random_codes(3, 64, 2).unwrap();
    let wrong = AllowedRows::all(49);
    let options = SearchOptions::default().allowing(&wrong);
    let mih = MultiIndex::new(db.view(), None).unwrap();
    let cascade = CascadeIndex::new(db.view(), 16, PrefixStage::Scan, 10).unwrap();
    let flat = FlatIndex::new(db.view());
    let indexes: [&dyn HammingIndex; 3] = [&flat, &mih, &cascade];
    for index in indexes {
        let err = index.knn(q.view(), 5, &options).unwrap_err();
        assert!(matches!(err, IndexError::Shape { .. }), "{err}");
        assert!(err.to_string().contains("49 rows"), "{err}");
    }
    for index in [&flat as &dyn HammingIndex, &mih] {
        let err = index.range(q.view(), 5, &options).unwrap_err();
        assert!(matches!(err, IndexError::Shape { .. }), "{err}");
    }
    // k is still checked against the database, whatever the filter allows.
    let none = AllowedRows::none(50);
    let err = flat
        .knn(q.view(), 51, &SearchOptions::default().allowing(&none))
        .unwrap_err();
    assert!(
        matches!(err, IndexError::Argument { name: "k", .. }),
        "{err}"
    );
}

#[test]
fn allowed_rows_are_built_from_masks_and_lists() {
    for n in [0, 1, 63, 64, 65, 200] {
        let all = AllowedRows::all(n);
        assert_eq!((all.rows(), all.count()), (n, n));
        assert_eq!(all.iter().collect::<Vec<_>>(), (0..n).collect::<Vec<_>>());
        assert!(!all.contains(n), "past the last row");
        assert_eq!(AllowedRows::none(n).iter().count(), 0);
        let mask: Vec<bool> = (0..n).map(|r| r % 3 == 1).collect();
        let from_mask = AllowedRows::from_mask(&mask);
        let listed = AllowedRows::from_rows(n, (0..n).filter(|r| r % 3 == 1).rev()).unwrap();
        assert_eq!(from_mask, listed);
        assert_eq!(from_mask.count(), mask.iter().filter(|&&m| m).count());
    }
    let err = AllowedRows::from_rows(10, [3, 10]).unwrap_err();
    assert!(err.to_string().contains("row 10"), "{err}");
    let ten = random_allowed(1000, 0.01, 1).unwrap();
    assert_eq!(ten.count(), 10);
    assert!(random_allowed(10, 1.5, 1).is_err());
}

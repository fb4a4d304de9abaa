//! kNN, range, multi-index hashing and cascade search against a brute-force reference: exact ids
//! and distances, ties included (ties broken by database position).

use nhl_index::cascade::{recall_at_k, CascadeIndex, PrefixStage};
use nhl_index::hamming::{Isa, Kernel};
use nhl_index::mih::{MultiIndex, RangeMethod};
use nhl_index::search::{knn, knn_with, range_search, range_search_with, Neighbors};
use nhl_index::synth::{nested_cluster_codes, random_codes, replicate_with_noise};
use nhl_index::{Codes, CodesView, FlatIndex, HammingIndex, IndexError, SearchOptions};

/// Distance from the bytes of `docs/PROTOCOL.md` (Layout), bit by bit: independent of every
/// kernel.
fn bitwise_distance(a: &[u8], b: &[u8], bits: usize) -> u32 {
    (0..bits)
        .filter(|&j| (a[j / 8] >> (j % 8)) & 1 != (b[j / 8] >> (j % 8)) & 1)
        .count() as u32
}

/// Every (distance, id) of each query, sorted by (distance, id): the ranking of `docs/PROTOCOL.md`
/// (Order).
fn brute_rankings(queries: CodesView<'_>, db: CodesView<'_>) -> Vec<Vec<(u32, u32)>> {
    let bits = db.bits();
    let qb = queries.to_codes().to_bytes();
    let dbb = db.to_codes().to_bytes();
    let per = bits.div_ceil(8);
    (0..queries.len())
        .map(|qi| {
            let q = &qb[qi * per..(qi + 1) * per];
            let mut all: Vec<(u32, u32)> = (0..db.len())
                .map(|i| {
                    (
                        bitwise_distance(q, &dbb[i * per..(i + 1) * per], bits),
                        i as u32,
                    )
                })
                .collect();
            all.sort();
            all
        })
        .collect()
}

fn assert_knn_exact(got: &Neighbors, brute: &[Vec<(u32, u32)>], k: usize, what: &str) {
    assert_eq!(got.n_queries, brute.len());
    for (qi, ranking) in brute.iter().enumerate() {
        let want: Vec<(u32, u32)> = ranking[..k].to_vec();
        let have: Vec<(u32, u32)> = got
            .distances_of(qi)
            .iter()
            .copied()
            .zip(got.ids_of(qi).iter().copied())
            .collect();
        assert_eq!(have, want, "{what}: query {qi}");
    }
}

/// Data with many ties: few bits, or clustered codes.
fn cases() -> Vec<(String, Codes, Codes)> {
    let mut v = Vec::new();
    for bits in [1, 5, 8, 13, 64, 100, 128, 256, 512, 1024] {
        v.push((
            format!("random {bits}"),
            random_codes(7, bits, 1).unwrap(),
            random_codes(777, bits, 2).unwrap(),
        ));
    }
    for bits in [16, 64, 128] {
        let q = nested_cluster_codes(9, bits, 4, 0.0, 0.2, 5, 6).unwrap();
        let db = nested_cluster_codes(1500, bits, 4, 0.0, 0.2, 5, 7).unwrap();
        v.push((format!("clustered {bits}"), q, db));
    }
    v
}

#[test]
fn knn_equals_brute_force_on_every_isa_with_ties() {
    for (name, q, db) in cases() {
        let brute = brute_rankings(q.view(), db.view());
        for k in [1, 2, 10, 100, db.len()] {
            for isa in Isa::available() {
                let got = knn_with(Kernel::new(isa).unwrap(), q.view(), db.view(), k).unwrap();
                assert_knn_exact(&got, &brute, k, &format!("{name} k={k} {isa}"));
            }
        }
    }
}

#[test]
fn knn_on_prefix_views_equals_brute_force() {
    let q = random_codes(5, 128, 11).unwrap();
    let db = random_codes(1000, 128, 12).unwrap();
    for bits in [1, 8, 16, 32, 63, 64, 65, 100, 128] {
        let (qv, dv) = (q.prefix(bits).unwrap(), db.prefix(bits).unwrap());
        let brute = brute_rankings(qv, dv);
        assert_knn_exact(
            &knn(qv, dv, 10).unwrap(),
            &brute,
            10,
            &format!("prefix {bits}"),
        );
    }
}

#[test]
fn knn_merges_database_segments_in_order() {
    // Few queries and a large 8-bit database (massive ties): the search splits the database into
    // several segments per query block, and the merge must keep the position order within ties.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap();
    let q = random_codes(3, 8, 21).unwrap();
    let db = random_codes(100_000, 8, 22).unwrap();
    let brute = brute_rankings(q.view(), db.view());
    for k in [1, 50, 1000, 40_000] {
        let got = pool.install(|| knn(q.view(), db.view(), k)).unwrap();
        assert_knn_exact(&got, &brute, k, &format!("segments k={k}"));
    }
    let got = pool
        .install(|| range_search(q.view(), db.view(), 2))
        .unwrap();
    for (qi, ranking) in brute.iter().enumerate() {
        let want: Vec<(u32, u32)> = ranking.iter().copied().filter(|&(d, _)| d <= 2).collect();
        let have: Vec<(u32, u32)> = got
            .distances_of(qi)
            .iter()
            .copied()
            .zip(got.ids_of(qi).iter().copied())
            .collect();
        assert_eq!(have, want, "segmented range, query {qi}");
    }
}

#[test]
fn range_equals_brute_force_on_every_isa() {
    for (name, q, db) in cases() {
        let brute = brute_rankings(q.view(), db.view());
        let bits = db.bits() as u32;
        for radius in [0, 1, bits / 4, bits / 2, bits, bits + 5] {
            for isa in Isa::available() {
                let got = range_search_with(Kernel::new(isa).unwrap(), q.view(), db.view(), radius)
                    .unwrap();
                assert_eq!(got.n_queries(), q.len());
                for (qi, ranking) in brute.iter().enumerate() {
                    let want: Vec<(u32, u32)> = ranking
                        .iter()
                        .copied()
                        .filter(|&(d, _)| d <= radius)
                        .collect();
                    let have: Vec<(u32, u32)> = got
                        .distances_of(qi)
                        .iter()
                        .copied()
                        .zip(got.ids_of(qi).iter().copied())
                        .collect();
                    assert_eq!(have, want, "{name} r={radius} {isa} query {qi}");
                }
            }
        }
    }
}

/// Substring counts to try for `bits`-bit codes: the automatic choice, few long substrings and,
/// where the code is long enough, many short ones.
fn substring_counts(bits: usize) -> Vec<Option<usize>> {
    let mut ms = vec![None, Some(bits.div_ceil(24).max(1))];
    if bits >= 4 {
        ms.push(Some(bits.div_ceil(8)));
    }
    ms
}

#[test]
fn multi_index_hashing_returns_exactly_the_brute_force_neighbours() {
    for (name, q, db) in cases() {
        let brute = brute_rankings(q.view(), db.view());
        let bits = db.bits();
        let ms = substring_counts(bits);
        for m in ms {
            let index = MultiIndex::new(db.view(), m).unwrap();
            for k in [1, 10, 100, db.len()] {
                let got = index.knn(q.view(), k, &SearchOptions::default()).unwrap();
                assert_knn_exact(&got, &brute, k, &format!("{name} m={m:?} k={k}"));
            }
        }
    }
}

/// The brute-force range result of each query: its ranking cut at `radius`.
fn within(brute: &[Vec<(u32, u32)>], radius: u32) -> Vec<Vec<(u32, u32)>> {
    brute
        .iter()
        .map(|r| r.iter().copied().filter(|&(d, _)| d <= radius).collect())
        .collect()
}

fn rows_of_range(got: &nhl_index::search::RangeResult) -> Vec<Vec<(u32, u32)>> {
    (0..got.n_queries())
        .map(|qi| {
            got.distances_of(qi)
                .iter()
                .copied()
                .zip(got.ids_of(qi).iter().copied())
                .collect()
        })
        .collect()
}

#[test]
fn multi_index_range_equals_brute_force_by_probing_and_by_scanning() {
    for (name, q, db) in cases() {
        let brute = brute_rankings(q.view(), db.view());
        let bits = db.bits();
        let ms = substring_counts(bits);
        let b = bits as u32;
        for m in ms {
            let index = MultiIndex::new(db.view(), m).unwrap();
            // 0, radii below and above the number of tables (s = 0 leaves tables unprobed), and
            // radii whose balls cover whole substrings.
            let mut radii = vec![0, 1, 2, 3, b / 8, b / 4, b / 2, b, b + 5];
            let tables = index.substrings() as u32;
            radii.extend([tables.saturating_sub(1), tables, tables + 1, 2 * tables + 1]);
            for radius in radii {
                let want = within(&brute, radius);
                for method in [RangeMethod::Probe, RangeMethod::Scan, RangeMethod::Auto] {
                    // Forced probing of balls of millions of keys (24-bit substrings at large
                    // radii) would only make the test slow; Auto scans those.
                    if method == RangeMethod::Probe
                        && index.range_plan(radius) == RangeMethod::Scan
                        && index.probe_keys(radius) > 100_000
                    {
                        continue;
                    }
                    let (got, stats) = index.range_with(q.view(), radius, method).unwrap();
                    assert_ne!(stats.method, RangeMethod::Auto);
                    if method != RangeMethod::Auto {
                        assert_eq!(stats.method, method);
                    }
                    assert_eq!(
                        rows_of_range(&got),
                        want,
                        "{name} m={m:?} r={radius} {method:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn multi_index_range_probes_small_radii_and_scans_large_ones() {
    for (name, q, db) in [
        (
            "random",
            random_codes(20, 64, 11).unwrap(),
            random_codes(20_000, 64, 12).unwrap(),
        ),
        (
            "clustered",
            nested_cluster_codes(20, 64, 200, 0.0, 0.05, 3, 4).unwrap(),
            nested_cluster_codes(20_000, 64, 200, 0.0, 0.05, 3, 5).unwrap(),
        ),
    ] {
        let index = MultiIndex::new(db.view(), Some(4)).unwrap();
        let brute = brute_rankings(q.view(), db.view());
        for (radius, expected) in [
            (0, RangeMethod::Probe),
            (3, RangeMethod::Probe),
            (40, RangeMethod::Scan),
        ] {
            assert_eq!(index.range_plan(radius), expected, "{name} r={radius}");
            let (got, stats) = index
                .range_with(q.view(), radius, RangeMethod::Auto)
                .unwrap();
            assert_eq!(stats.method, expected, "{name} r={radius}");
            assert_eq!(
                rows_of_range(&got),
                within(&brute, radius),
                "{name} r={radius}"
            );
            let options = SearchOptions::default();
            assert_eq!(got, index.range(q.view(), radius, &options).unwrap());
            if expected == RangeMethod::Probe {
                // Sublinear: far fewer full distances than a scan's 20 x 20,000.
                assert!(
                    stats.verified < 20 * 20_000 / 5,
                    "{name} r={radius}: {stats:?}"
                );
            }
        }
    }
}

#[test]
fn multi_index_hashing_touches_few_codes_on_clustered_data() {
    let q = nested_cluster_codes(20, 64, 50, 0.0, 0.1, 1, 2).unwrap();
    let db = nested_cluster_codes(50_000, 64, 50, 0.0, 0.1, 1, 3).unwrap();
    let index = MultiIndex::new(db.view(), Some(4)).unwrap();
    let (got, verified) = index.knn_with_stats(q.view(), 10).unwrap();
    assert_eq!(got, knn(q.view(), db.view(), 10).unwrap());
    // Sublinear: far fewer full distances than a scan's 20 x 50,000.
    assert!(verified < 20 * 50_000 / 5, "verified {verified}");
}

#[test]
fn cascade_with_every_candidate_is_exact_and_recall_is_computed_correctly() {
    let q = nested_cluster_codes(30, 128, 20, 0.02, 0.35, 8, 9).unwrap();
    let db = nested_cluster_codes(5000, 128, 20, 0.02, 0.35, 8, 10).unwrap();
    let exact = knn(q.view(), db.view(), 10).unwrap();
    for (stage, prefixes) in [
        (PrefixStage::Scan, &[16, 32, 64][..]),
        (PrefixStage::MultiIndex, &[16, 32, 64]),
        (PrefixStage::Buckets, &[8, 16, 32]),
    ] {
        for &prefix in prefixes {
            let index = CascadeIndex::new(db.view(), prefix, stage, db.len()).unwrap();
            // All candidates: the cascade is the exact search, directly and as an index.
            assert_eq!(
                index.search(q.view(), 10, db.len()).unwrap(),
                exact,
                "{stage:?} {prefix}"
            );
            assert_eq!(
                index.knn(q.view(), 10, &SearchOptions::default()).unwrap(),
                exact,
                "{stage:?} {prefix} as an index"
            );
            for candidates in [10, 50, 200, 1000] {
                let got = index.search(q.view(), 10, candidates).unwrap();
                // Recompute recall@10 by hand from the definition.
                let brute_prefix =
                    brute_rankings(q.prefix(prefix).unwrap(), db.prefix(prefix).unwrap());
                let mut hits = 0;
                for (qi, prefix_ranking) in brute_prefix.iter().enumerate() {
                    let kept: Vec<u32> = prefix_ranking[..candidates]
                        .iter()
                        .map(|&(_, id)| id)
                        .collect();
                    // The cascade's answer is the full-distance top 10 of exactly those candidates.
                    let full = brute_rankings(q.view().slice(qi..qi + 1).unwrap(), db.view());
                    let mut want: Vec<(u32, u32)> = full[0]
                        .iter()
                        .copied()
                        .filter(|(_, id)| kept.contains(id))
                        .collect();
                    want.truncate(10);
                    let have: Vec<(u32, u32)> = got
                        .distances_of(qi)
                        .iter()
                        .copied()
                        .zip(got.ids_of(qi).iter().copied())
                        .collect();
                    assert_eq!(
                        have, want,
                        "{stage:?} prefix {prefix} candidates {candidates} query {qi}"
                    );
                    hits += exact
                        .ids_of(qi)
                        .iter()
                        .filter(|id| got.ids_of(qi).contains(id))
                        .count();
                }
                let recall = recall_at_k(&got, &exact).unwrap();
                assert!((recall - hits as f64 / (q.len() * 10) as f64).abs() < 1e-12);
            }
        }
    }
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let q = random_codes(2, 64, 1).unwrap();
    let db = random_codes(10, 64, 2).unwrap();
    let other = random_codes(10, 128, 2).unwrap();
    assert!(matches!(
        knn(q.view(), db.view(), 11),
        Err(IndexError::Argument { name: "k", .. })
    ));
    assert!(matches!(
        knn(q.view(), db.view(), 0),
        Err(IndexError::Argument { name: "k", .. })
    ));
    assert!(matches!(
        knn(q.view(), other.view(), 1),
        Err(IndexError::Shape { .. })
    ));
    assert!(matches!(
        range_search(q.view(), other.view(), 1),
        Err(IndexError::Shape { .. })
    ));
    assert!(matches!(db.prefix(65), Err(IndexError::Bits { .. })));
    assert!(matches!(db.prefix(0), Err(IndexError::Bits { .. })));
    assert!(
        MultiIndex::new(db.view(), Some(1)).is_err(),
        "64-bit substrings are too long"
    );
    assert!(MultiIndex::new(db.view(), Some(65)).is_err());
    assert!(MultiIndex::new(db.view(), Some(4))
        .unwrap()
        .knn(q.view(), 11, &SearchOptions::default())
        .is_err());
    assert!(MultiIndex::new(db.view(), Some(4))
        .unwrap()
        .range(other.view(), 3, &SearchOptions::default())
        .is_err());
    assert!(CascadeIndex::new(db.view(), 80, PrefixStage::Scan, 10).is_err());
    assert!(CascadeIndex::new(db.view(), 33, PrefixStage::Buckets, 10).is_err());
    assert!(replicate_with_noise(db.view(), 5, 1.5, 0).is_err());
    assert!(replicate_with_noise(db.view().slice(0..0).unwrap(), 5, 0.1, 0).is_err());
    let c = CascadeIndex::new(db.view(), 16, PrefixStage::Scan, 3).unwrap();
    assert!(c.search(q.view(), 5, 3).is_err(), "k > candidates");
    assert!(c.search(other.view(), 1, 3).is_err());
    let options = SearchOptions::default();
    assert!(c.knn(q.view(), 5, &options).is_err(), "k > candidates");
    assert!(matches!(
        c.range(q.view(), 3, &options),
        Err(IndexError::Unsupported { .. })
    ));
    let msg = knn(q.view(), db.view(), 11).unwrap_err().to_string();
    assert!(msg.contains("k = 11") && msg.contains("10 codes"), "{msg}");
}

#[test]
fn every_index_answers_the_interface_exactly_with_every_kernel() {
    for (name, q, db) in cases() {
        let brute = brute_rankings(q.view(), db.view());
        let bits = db.bits();
        let prefix = bits.min(16);
        let indexes: Vec<(&str, Box<dyn HammingIndex + '_>)> = vec![
            ("flat", Box::new(FlatIndex::new(db.view()))),
            ("mih", Box::new(MultiIndex::new(db.view(), None).unwrap())),
            (
                // Every code a candidate: the cascade is exact.
                "cascade",
                Box::new(
                    CascadeIndex::new(db.view(), prefix, PrefixStage::Scan, db.len()).unwrap(),
                ),
            ),
        ];
        for isa in Isa::available() {
            let options = SearchOptions::with_kernel(Kernel::new(isa).unwrap());
            for (index_name, index) in &indexes {
                let what = format!("{name} {index_name} {isa}");
                for k in [1, 10] {
                    let got = index.knn(q.view(), k, &options).unwrap();
                    assert_knn_exact(&got, &brute, k, &format!("{what} k={k}"));
                }
                for radius in [0, bits as u32 / 4] {
                    match index.range_with_stats(q.view(), radius, &options) {
                        Ok((got, stats)) => {
                            assert_eq!(rows_of_range(&got), within(&brute, radius), "{what}");
                            assert_eq!(stats.is_some(), *index_name == "mih", "{what}");
                            assert_eq!(got, index.range(q.view(), radius, &options).unwrap());
                        }
                        Err(e) => {
                            assert_eq!(*index_name, "cascade", "{what}: {e}");
                            assert!(matches!(e, IndexError::Unsupported { .. }), "{what}: {e}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn empty_inputs_give_empty_results() {
    let q = random_codes(0, 64, 1).unwrap();
    let db = random_codes(10, 64, 2).unwrap();
    let got = knn(q.view(), db.view(), 3).unwrap();
    assert!(got.ids.is_empty());
    let none = random_codes(0, 64, 2).unwrap();
    let q1 = random_codes(2, 64, 1).unwrap();
    let r = range_search(q1.view(), none.view(), 10).unwrap();
    assert_eq!(r.offsets, vec![0, 0, 0]);
    let index = MultiIndex::new(none.view(), Some(4)).unwrap();
    for method in [RangeMethod::Probe, RangeMethod::Scan] {
        let (r, _) = index.range_with(q1.view(), 10, method).unwrap();
        assert_eq!(r.offsets, vec![0, 0, 0]);
    }
}

#[test]
fn cascade_stages_agree_on_heavily_tied_prefixes() {
    // A few base codes replicated with little noise: thousands of equal prefixes, so the prefix
    // stage must break ties by position exactly as the scan does (the bucket stage merges whole
    // groups at the last distance it needs).
    let base = random_codes(12, 128, 3).unwrap();
    let db = replicate_with_noise(base.view(), 6000, 0.01, 4).unwrap();
    // 70 queries: two full blocks of the bucket stage's batched scan and a partial one.
    let q = replicate_with_noise(base.view(), 70, 0.03, 5).unwrap();
    for prefix in [4, 8, 16, 24, 32] {
        let scan = CascadeIndex::new(db.view(), prefix, PrefixStage::Scan, 10).unwrap();
        for stage in [PrefixStage::Buckets, PrefixStage::MultiIndex] {
            let other = CascadeIndex::new(db.view(), prefix, stage, 10).unwrap();
            // 12 base codes with 1% noise: few distinct short prefixes.
            if stage == PrefixStage::Buckets && prefix <= 16 {
                assert!(other.grouped(), "prefix {prefix}");
            }
            for candidates in [10, 37, 500, 1999, 6000] {
                assert_eq!(
                    other.search(q.view(), 10, candidates).unwrap(),
                    scan.search(q.view(), 10, candidates).unwrap(),
                    "{stage:?} prefix {prefix} candidates {candidates}"
                );
            }
        }
    }
}

#[test]
fn bucket_stage_scans_when_prefixes_are_mostly_distinct() {
    let db = random_codes(5000, 128, 6).unwrap();
    let q = random_codes(20, 128, 7).unwrap();
    let buckets = CascadeIndex::new(db.view(), 32, PrefixStage::Buckets, 300).unwrap();
    assert!(!buckets.grouped());
    let scan = CascadeIndex::new(db.view(), 32, PrefixStage::Scan, 300).unwrap();
    assert_eq!(
        buckets.search(q.view(), 10, 300).unwrap(),
        scan.search(q.view(), 10, 300).unwrap()
    );
}

#[test]
fn replicated_codes_flip_bits_at_the_requested_rate() {
    let base = random_codes(50, 128, 8).unwrap();
    for flip in [0.0, 0.02, 0.2] {
        let grown = replicate_with_noise(base.view(), 4000, flip, 9).unwrap();
        assert_eq!((grown.len(), grown.bits()), (4000, 128));
        assert_eq!(
            grown,
            replicate_with_noise(base.view(), 4000, flip, 9).unwrap()
        );
        // Each grown code's nearest base code is its source (random base codes are ~64 apart),
        // so the mean nearest distance / 128 estimates the flip rate.
        let nearest = knn(grown.view(), base.view(), 1).unwrap();
        let rate = nearest.distances.iter().map(|&d| f64::from(d)).sum::<f64>() / (4000.0 * 128.0);
        assert!((rate - flip).abs() < 0.005, "flip {flip}: measured {rate}");
    }
}

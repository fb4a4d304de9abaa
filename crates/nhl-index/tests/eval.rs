//! `evaluate` against a brute-force implementation of the mAP@K definition of
//! `docs/PROTOCOL.md`: ties, multi-label relevance, top-K cuts, and queries with no relevant item
//! (AP = 0 in the mean).

use nhl_index::eval::{evaluate, Labels};
use nhl_index::synth::{nested_cluster_codes, random_codes, SplitMix64};
use nhl_index::{Codes, CodesView};

fn relevant(a: &Labels, i: usize, b: &Labels, j: usize) -> bool {
    match (a, b) {
        (Labels::Single(x), Labels::Single(y)) => x[i] == y[j],
        (Labels::Multi { rows: x, .. }, Labels::Multi { rows: y, .. }) => {
            x[i].iter().any(|c| y[j].contains(c))
        }
        _ => unreachable!("tests pair like with like"),
    }
}

/// `docs/PROTOCOL.md` (mAP@K), literally: stable sort by distance, AP over the first K, mean over
/// all queries.
fn brute_map(
    q: CodesView<'_>,
    db: CodesView<'_>,
    ql: &Labels,
    dl: &Labels,
    k: usize,
    pks: &[usize],
) -> (f64, Vec<f64>) {
    let qb = q.to_codes();
    let dbb = db.to_codes();
    let mut total = 0.0;
    let mut prec = vec![0.0; pks.len()];
    for i in 0..q.len() {
        let qc = qb.view().code(i).unwrap();
        let mut order: Vec<(u32, usize)> = (0..db.len())
            .map(|j| {
                let c = dbb.view().code(j).unwrap();
                (qc.iter().zip(c).map(|(a, b)| (a ^ b).count_ones()).sum(), j)
            })
            .collect();
        order.sort_by_key(|&(d, _)| d); // stable: ties keep database order
        let (mut hits, mut sum) = (0usize, 0.0);
        for (r, &(_, j)) in order.iter().take(k).enumerate() {
            if relevant(ql, i, dl, j) {
                hits += 1;
                sum += hits as f64 / (r + 1) as f64;
            }
        }
        total += if hits == 0 { 0.0 } else { sum / hits as f64 };
        for (p, &pk) in prec.iter_mut().zip(pks) {
            *p += order
                .iter()
                .take(pk)
                .filter(|&&(_, j)| relevant(ql, i, dl, j))
                .count() as f64
                / pk as f64;
        }
    }
    let nq = q.len() as f64;
    (total / nq, prec.into_iter().map(|p| p / nq).collect())
}

fn single_labels(n: usize, classes: u64, seed: u64) -> Labels {
    let mut rng = SplitMix64::new(seed);
    Labels::Single((0..n).map(|_| rng.below(classes) as u32).collect())
}

fn multi_labels(n: usize, classes: usize, seed: u64) -> Labels {
    let mut rng = SplitMix64::new(seed);
    Labels::Multi {
        n_classes: classes,
        // Some rows are empty: such a query has no relevant item at all.
        rows: (0..n)
            .map(|_| (0..classes as u32).filter(|_| rng.below(5) == 0).collect())
            .collect(),
    }
}

fn check(q: &Codes, db: &Codes, ql: &Labels, dl: &Labels, what: &str) {
    let n = db.len();
    for bits in [4, 8, 16, db.bits()] {
        let (qv, dv) = (q.prefix(bits).unwrap(), db.prefix(bits).unwrap());
        for k in [1, 7, 50, n] {
            let pks = [1, 10, n];
            let got = evaluate(qv, dv, ql, dl, Some(k), &pks).unwrap();
            let (want, want_p) = brute_map(qv, dv, ql, dl, k, &pks);
            assert!(
                (got.map - want).abs() < 1e-12,
                "{what} bits {bits} k {k}: {} vs {want}",
                got.map
            );
            for ((pk, p), w) in got.precision_at.iter().zip(&want_p) {
                assert!((p - w).abs() < 1e-12, "{what} precision@{pk}");
            }
            assert!(got.map_tie_aware >= 0.0 && got.map_tie_aware <= 1.0 + 1e-12);
        }
        // None = mAP@ALL = K of the database size.
        let all = evaluate(qv, dv, ql, dl, None, &[]).unwrap();
        assert_eq!(all.map, evaluate(qv, dv, ql, dl, Some(n), &[]).unwrap().map);
        assert_eq!(
            all.map,
            evaluate(qv, dv, ql, dl, Some(n + 10), &[]).unwrap().map
        );
    }
}

#[test]
fn map_equals_the_protocol_definition_single_label_with_ties() {
    let q = nested_cluster_codes(40, 32, 5, 0.0, 0.3, 1, 2).unwrap();
    let db = nested_cluster_codes(300, 32, 5, 0.0, 0.3, 1, 3).unwrap();
    // 12 classes over 40 queries and 300 items: some queries have no relevant item.
    check(
        &q,
        &db,
        &single_labels(40, 40, 4),
        &single_labels(300, 12, 5),
        "single",
    );
}

#[test]
fn map_equals_the_protocol_definition_multi_label() {
    let q = random_codes(30, 64, 6).unwrap();
    let db = random_codes(250, 64, 7).unwrap();
    check(
        &q,
        &db,
        &multi_labels(30, 70, 8),
        &multi_labels(250, 70, 9),
        "multi",
    );
}

#[test]
fn tie_aware_map_equals_stable_map_without_ties_and_differs_with_them() {
    // 1024-bit random codes essentially never tie at the top; 2-bit codes tie everywhere.
    let q = random_codes(20, 1024, 1).unwrap();
    let db = random_codes(40, 1024, 2).unwrap();
    let (ql, dl) = (single_labels(20, 3, 3), single_labels(40, 3, 4));
    let m = evaluate(q.view(), db.view(), &ql, &dl, Some(5), &[]).unwrap();
    let ties = evaluate(
        q.prefix(2).unwrap(),
        db.prefix(2).unwrap(),
        &ql,
        &dl,
        Some(5),
        &[],
    )
    .unwrap();
    let distinct = {
        // Only meaningful when the top 5 have distinct distances for every query; check it.
        let r = nhl_index::search::knn(q.view(), db.view(), 6).unwrap();
        (0..20).all(|i| r.distances_of(i).windows(2).all(|w| w[0] < w[1]))
    };
    if distinct {
        assert!((m.map - m.map_tie_aware).abs() < 1e-12);
    }
    assert!((ties.map - ties.map_tie_aware).abs() > 1e-6);
}

#[test]
fn bad_evaluation_arguments_are_errors() {
    let q = random_codes(2, 16, 1).unwrap();
    let db = random_codes(5, 16, 2).unwrap();
    let (ql, dl) = (single_labels(2, 2, 1), single_labels(5, 2, 2));
    assert!(evaluate(q.view(), db.view(), &ql, &single_labels(4, 2, 2), None, &[]).is_err());
    assert!(evaluate(q.view(), db.view(), &ql, &dl, Some(0), &[]).is_err());
    assert!(evaluate(q.view(), db.view(), &ql, &dl, None, &[6]).is_err());
    assert!(evaluate(q.view(), db.view(), &ql, &dl, None, &[0]).is_err());
    assert!(evaluate(q.prefix(8).unwrap(), db.view(), &ql, &dl, None, &[]).is_err());
    assert!(evaluate(q.view(), db.view(), &ql, &multi_labels(5, 3, 1), None, &[]).is_err());
    let bad = Labels::Multi {
        n_classes: 2,
        rows: vec![vec![5], vec![]],
    };
    assert!(evaluate(q.view(), db.view(), &bad, &multi_labels(5, 2, 1), None, &[]).is_err());
}

#[test]
fn fmnist_sized_evaluation_equals_the_definition() {
    // 1,000 queries x 69,000 items x 5 code lengths (the `fmnist` protocol size); how long it
    // takes is a benchmark's business, not a test's.
    let q = nested_cluster_codes(1000, 128, 10, 0.05, 0.3, 1, 2).unwrap();
    let db = nested_cluster_codes(69_000, 128, 10, 0.05, 0.3, 1, 3).unwrap();
    let (ql, dl) = (single_labels(1000, 10, 3), single_labels(69_000, 10, 4));
    let Labels::Single(ql_rows) = &ql else {
        unreachable!("single labels")
    };
    let labels_of = |r: std::ops::Range<usize>| Labels::Single(ql_rows[r].to_vec());
    for bits in [8, 16, 32, 64, 128] {
        let (qv, dv) = (q.prefix(bits).unwrap(), db.prefix(bits).unwrap());
        let all = evaluate(qv, dv, &ql, &dl, None, &[100]).unwrap();
        // A few queries against the whole database, by the literal definition.
        let few = qv.slice(0..3).unwrap();
        let got = evaluate(few, dv, &labels_of(0..3), &dl, None, &[100]).unwrap();
        let (want, want_p) = brute_map(few, dv, &labels_of(0..3), &dl, dv.len(), &[100]);
        assert!((got.map - want).abs() < 1e-12, "bits {bits}");
        assert!(
            (got.precision_at[0].1 - want_p[0]).abs() < 1e-12,
            "bits {bits}"
        );
        // The mean over every query is the mean of its two halves' means.
        let halves = [0..500, 500..1000].map(|r| {
            evaluate(
                qv.slice(r.clone()).unwrap(),
                dv,
                &labels_of(r),
                &dl,
                None,
                &[100],
            )
            .unwrap()
        });
        let mean = |f: &dyn Fn(&nhl_index::eval::RetrievalMetrics) -> f64| {
            (f(&halves[0]) + f(&halves[1])) / 2.0
        };
        assert!((all.map - mean(&|m| m.map)).abs() < 1e-12, "bits {bits}");
        assert!(
            (all.map_tie_aware - mean(&|m| m.map_tie_aware)).abs() < 1e-12,
            "bits {bits}"
        );
        assert!(
            (all.precision_at[0].1 - mean(&|m| m.precision_at[0].1)).abs() < 1e-12,
            "bits {bits}"
        );
    }
}

//! Every instruction-set path equals the portable `count_ones` path, for every width 1..=1024,
//! for full views and prefix views (codes farther apart than their width), and for every tail;
//! the threshold scans restricted to some rows report exactly the allowed codes the unrestricted
//! reference reports under the same limits.

use nhl_index::hamming::{distance, Isa, Kernel};
use nhl_index::synth::{random_allowed, random_codes, SplitMix64};
use nhl_index::{AllowedRows, Codes};

/// Distances of each query to codes `start..start + len` by the reference path and by `isa`.
fn compare(isa: Isa, queries: &Codes, db: &Codes, bits: usize, start: usize, len: usize) {
    let reference = Kernel::new(Isa::Portable).expect("portable always exists");
    let kernel = Kernel::new(isa).expect("only available paths are tested");
    let qv = queries.prefix(bits).expect("bits <= code length");
    let dv = db.prefix(bits).expect("bits <= code length");
    let mut want = vec![0u32; len];
    let mut got = vec![0u32; len];
    for qi in 0..qv.len() {
        let q = qv.code(qi).expect("qi < len");
        reference.distances(q, &dv, start, &mut want);
        kernel.distances(q, &dv, start, &mut got);
        for i in 0..len {
            // The pair path and the plain function are references too.
            let c = dv.code(start + i).expect("in range");
            let plain = distance(q, c, dv.last_word_mask());
            assert_eq!(
                (got[i], want[i]),
                (plain, plain),
                "isa {isa}, bits {bits}, query {qi}, code {}",
                start + i
            );
            assert_eq!(kernel.distance(q, c, dv.last_word_mask()), plain);
        }
    }
}

#[test]
fn every_isa_equals_portable_for_every_width() {
    let available = Isa::available();
    eprintln!("testing paths: {available:?}");
    for isa in Isa::ALL {
        if !available.contains(&isa) {
            skip_notice("every_isa_equals_portable_for_every_width", isa);
        }
    }
    for bits in 1..=1024 {
        let queries = random_codes(3, bits, bits as u64).unwrap();
        let db = random_codes(37, bits, 1000 + bits as u64).unwrap();
        for &isa in &available {
            // All 37 codes (several 8-code blocks and a tail of 5), and an odd offset.
            compare(isa, &queries, &db, bits, 0, 37);
            compare(isa, &queries, &db, bits, 3, 29);
        }
    }
}

#[test]
fn every_isa_equals_portable_for_prefix_views() {
    let available = Isa::available();
    let mut rng = SplitMix64::new(7);
    for full in [64, 128, 200, 256, 512, 1000, 1024] {
        let queries = random_codes(2, full, full as u64).unwrap();
        let db = random_codes(41, full, 77 + full as u64).unwrap();
        let mut prefixes: Vec<usize> = vec![1, 8, 16, 32, 63, 64, 65, 127, 128, 256, full];
        prefixes.extend((0..10).map(|_| 1 + rng.below(full as u64) as usize));
        for bits in prefixes.into_iter().filter(|&b| b <= full) {
            for &isa in &available {
                compare(isa, &queries, &db, bits, 0, 41);
                compare(isa, &queries, &db, bits, 9, 17);
            }
        }
    }
}

#[test]
fn extreme_codes_give_zero_and_full_distances() {
    for bits in [1, 7, 64, 100, 128, 256, 333, 1024] {
        let zeros = Codes::from_words(1, bits, vec![0; bits.div_ceil(64)]).unwrap();
        let ones = Codes::from_words(9, bits, vec![u64::MAX; 9 * bits.div_ceil(64)]).unwrap();
        for isa in Isa::available() {
            let k = Kernel::new(isa).unwrap();
            let mut out = vec![0u32; 9];
            k.distances(zeros.view().code(0).unwrap(), &ones.view(), 0, &mut out);
            assert!(
                out.iter().all(|&d| d as usize == bits),
                "{isa} {bits}: {out:?}"
            );
            k.distances(ones.view().code(0).unwrap(), &ones.view(), 0, &mut out);
            assert!(out.iter().all(|&d| d == 0), "{isa} {bits}: {out:?}");
        }
    }
}

#[test]
fn best_isa_is_the_most_preferred_available_path() {
    let available = Isa::available();
    // The portable path always exists and is the last resort.
    assert_eq!(available.last(), Some(&Isa::Portable));
    assert_eq!(available.first(), Some(&Isa::best()));
    // Twice: the second answer comes from the cache.
    assert_eq!(Isa::best(), available[0]);
    assert_eq!(Kernel::best().isa(), Isa::best());
    for isa in Isa::ALL {
        assert_eq!(Isa::from_name(isa.name()), Some(isa));
        assert_eq!(isa.to_string(), isa.name());
    }
    assert_eq!(Isa::from_name("sse9"), None);
}

#[test]
fn unavailable_isa_is_an_error_not_a_crash() {
    for isa in Isa::ALL {
        assert_eq!(Kernel::new(isa).is_ok(), isa.is_available());
    }
}

#[test]
fn every_isa_equals_portable_for_narrow_codes() {
    let mut rng = SplitMix64::new(99);
    let reference = Kernel::new(Isa::Portable).unwrap();
    for bits in 1..=32u32 {
        let mask = if bits == 32 {
            u32::MAX
        } else {
            (1u32 << bits) - 1
        };
        let db: Vec<u32> = (0..53).map(|_| rng.next_u64() as u32 & mask).collect();
        let q = rng.next_u64() as u32 & mask;
        for isa in Isa::available() {
            let kernel = Kernel::new(isa).unwrap();
            for len in [0, 1, 7, 8, 15, 16, 17, 53] {
                let mut want = vec![0u32; len];
                let mut got = vec![0u32; len];
                reference.distances32(q, &db, &mut want);
                kernel.distances32(q, &db, &mut got);
                let plain: Vec<u32> = db[..len].iter().map(|&c| (q ^ c).count_ones()).collect();
                assert_eq!(want, plain, "portable, {bits} bits");
                assert_eq!(got, plain, "{isa}, {bits} bits, {len} codes");
            }
        }
    }
}

/// What `Kernel::filter` must report: per query, the codes of `start..start + len` in ascending
/// order whose distance is below the query's threshold at their turn, the threshold becoming
/// `next(d)` after each hit.
fn filter_reference(
    queries: &[&[u64]],
    db: &nhl_index::CodesView<'_>,
    start: usize,
    len: usize,
    limit0: u32,
    next: impl Fn(u32) -> u32,
) -> Vec<Vec<(usize, u32)>> {
    queries
        .iter()
        .map(|q| {
            let mut limit = limit0;
            let mut hits = Vec::new();
            for j in start..start + len {
                let d = distance(q, db.code(j).expect("in range"), db.last_word_mask());
                if d < limit {
                    hits.push((j, d));
                    limit = next(d);
                }
            }
            hits
        })
        .collect()
}

#[test]
fn every_isa_filters_exactly_like_the_reference() {
    for (full, bits) in [
        (64, 64),
        (128, 128),
        (128, 64),
        (128, 100),
        (64, 13),
        (256, 256),
        (100, 100),
        (1024, 1024),
        (1024, 70),
    ] {
        // 37 queries: a chunk of 32 and a tail of 5; 203 codes: 25 groups of 8 and a tail.
        let queries = random_codes(37, full, 5 + full as u64).unwrap();
        let db = random_codes(203, full, 9 + bits as u64).unwrap();
        let qv = queries.prefix(bits).unwrap();
        let dv = db.prefix(bits).unwrap();
        let qs: Vec<&[u64]> = (0..qv.len()).map(|i| qv.code(i).unwrap()).collect();
        let half = bits as u32 / 2;
        // A fixed threshold (everything, about half, nothing) and one that shrinks to each hit's
        // distance, as in kNN.
        let rules = [
            (bits as u32 + 1, false),
            (u32::MAX, false),
            (half, false),
            (0, false),
            (half + 3, true),
        ];
        for &isa in &Isa::available() {
            let kernel = Kernel::new(isa).unwrap();
            for &(limit0, shrink) in &rules {
                let rule = |d: u32| if shrink { d } else { limit0 };
                for (start, len) in [(0, 203), (5, 190), (16, 7), (200, 3)] {
                    let want = filter_reference(&qs, &dv, start, len, limit0, rule);
                    let mut got = vec![Vec::new(); qs.len()];
                    let mut limits = vec![limit0; qs.len()];
                    kernel.filter(&qs, &dv, start, len, &mut limits, &mut |i, j, d| {
                        got[i].push((j, d));
                        rule(d)
                    });
                    assert_eq!(
                        got, want,
                        "{isa}, {bits} of {full} bits, limit {limit0}, codes {start}..+{len}"
                    );
                }
            }
        }
    }
}

/// Prints a skip notice straight to stderr (libtest's capture would hide `eprintln!`).
fn skip_notice(what: &str, isa: Isa) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipping {what} for {isa}: not available on this CPU"
    );
}

/// The threshold rules of the exhaustive filter tests: the first limit of each query, and the
/// limit after each hit, as a function of (query, distance) and of state kept per query.
#[derive(Clone, Copy, Debug)]
enum Rule {
    /// A fixed limit for every query and every code.
    Fixed(u32),
    /// Starts at `start` and becomes each hit's distance (k = 1 with strict improvement).
    Shrink(u32),
    /// A different first limit per query (`query % (width + 2)`), then each hit's distance + 1.
    PerQueryTies,
    /// The k-th best distance so far, as the kNN scan keeps it (no limit until k hits).
    TopK(usize),
}

/// Runs `rule` for one scan: the first limits, and the `next` function with its own state.
struct RuleState {
    rule: Rule,
    width: u32,
    heaps: Vec<std::collections::BinaryHeap<u32>>,
}

impl RuleState {
    fn new(rule: Rule, width: u32, nq: usize) -> (RuleState, Vec<u32>) {
        let first = (0..nq as u32)
            .map(|i| match rule {
                Rule::Fixed(l) | Rule::Shrink(l) => l,
                Rule::PerQueryTies => i % (width + 2),
                Rule::TopK(_) => width + 1,
            })
            .collect();
        let heaps = vec![std::collections::BinaryHeap::new(); nq];
        (RuleState { rule, width, heaps }, first)
    }

    fn next(&mut self, i: usize, d: u32) -> u32 {
        match self.rule {
            Rule::Fixed(l) => l,
            Rule::Shrink(_) => d,
            Rule::PerQueryTies => d + 1,
            Rule::TopK(k) => {
                let heap = &mut self.heaps[i];
                heap.push(d);
                if heap.len() > k {
                    heap.pop();
                }
                match heap.peek() {
                    Some(&top) if heap.len() == k => top,
                    _ => self.width + 1,
                }
            }
        }
    }
}

/// Per query, the (position, distance) hits in the order the sink saw them.
type Hits = Vec<Vec<(usize, u32)>>;

/// The hits of `Kernel::filter` over codes `rows` (of `Kernel::filter_allowed` when `allowed` is
/// given) beside those of a brute-force scan of the (allowed) codes under the same limit rule.
fn filter_and_brute_force(
    kernel: &Kernel,
    qs: &[&[u64]],
    dv: &nhl_index::CodesView<'_>,
    rows: std::ops::Range<usize>,
    allowed: Option<&AllowedRows>,
    rule: Rule,
    width: u32,
) -> (Hits, Hits) {
    let nq = qs.len();
    let (mut state, limit0) = RuleState::new(rule, width, nq);
    let mut want = vec![Vec::new(); nq];
    for (i, q) in qs.iter().enumerate() {
        let mut limit = limit0[i];
        for j in rows
            .clone()
            .filter(|&j| allowed.is_none_or(|a| a.contains(j)))
        {
            let d = distance(q, dv.code(j).unwrap(), dv.last_word_mask());
            if d < limit {
                want[i].push((j, d));
                limit = state.next(i, d);
            }
        }
    }
    let (mut state, mut limits) = RuleState::new(rule, width, nq);
    let mut got = vec![Vec::new(); nq];
    let mut sink = |i: usize, j: usize, d: u32| {
        got[i].push((j, d));
        state.next(i, d)
    };
    match allowed {
        None => kernel.filter(qs, dv, rows.start, rows.len(), &mut limits, &mut sink),
        Some(a) => kernel.filter_allowed(qs, dv, rows, a, &mut limits, &mut sink),
    }
    (got, want)
}

/// `Kernel::filter` of `isa` against the code-by-code reference, for every scan length
/// `0..=73` (two 32-code blocks of the fused AVX-512 scan and every tail, from an even and an
/// odd start), query counts that are and are not multiples of the 32-query chunk, and every
/// threshold rule, on the shapes the fused scans take (64-bit codes and their prefixes, 128-bit
/// codes and their prefixes of 65..128 and 1..64 bits) and on two they leave to the per-query
/// scan.
fn filter_exhaustive(isa: Isa) {
    let kernel = Kernel::new(isa).expect("only available paths are tested");
    for (full, bits) in [
        (64, 64),
        (64, 13),
        (64, 1),
        (128, 128),
        (128, 100),
        (128, 65),
        (128, 64),
        (128, 37),
        (128, 1),
        (256, 64),
        (192, 192),
    ] {
        let db = random_codes(3 + 73, full, 31 + bits as u64).unwrap();
        let queries = random_codes(70, full, 71 + bits as u64).unwrap();
        // Half the queries are copies of database codes with a few bits flipped, so that short
        // distances, ties and hits in every lane occur.
        let mut q_words: Vec<Vec<u64>> = (0..queries.len())
            .map(|i| queries.view().code(i).unwrap().to_vec())
            .collect();
        let mut rng = SplitMix64::new(bits as u64);
        for (i, q) in q_words.iter_mut().enumerate().filter(|(i, _)| i % 2 == 0) {
            let src = db.view().code(i % db.len()).unwrap();
            for (w, word) in q.iter_mut().enumerate() {
                *word = src[w] ^ (rng.next_u64() & rng.next_u64() & rng.next_u64());
            }
        }
        let flat: Vec<u64> = q_words.concat();
        let queries = Codes::from_words(q_words.len(), full, flat).unwrap();
        let qv = queries.prefix(bits).unwrap();
        let dv = db.prefix(bits).unwrap();
        let width = bits as u32;
        let rules = [
            Rule::Fixed(width + 1),
            Rule::Fixed(u32::MAX),
            Rule::Fixed(width / 2),
            Rule::Fixed(0),
            Rule::Shrink(width / 2 + 3),
            Rule::PerQueryTies,
            Rule::TopK(5),
        ];
        for nq in [1, 31, 33, 70] {
            let qs: Vec<&[u64]> = (0..nq).map(|i| qv.code(i).unwrap()).collect();
            for rule in rules {
                for start in [0, 3] {
                    for len in 0..=73 {
                        let rows = start..start + len;
                        let (got, want) =
                            filter_and_brute_force(&kernel, &qs, &dv, rows, None, rule, width);
                        assert_eq!(
                            got, want,
                            "{isa}, {bits} of {full} bits, {nq} queries, {rule:?}, codes \
                             {start}..+{len}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn avx512_fused_filter_every_shape_tail_and_rule() {
    let isa = Isa::Avx512Vpopcntdq;
    if !isa.is_available() {
        skip_notice("avx512_fused_filter_every_shape_tail_and_rule", isa);
        return;
    }
    filter_exhaustive(isa);
}

#[test]
fn every_isa_filter_every_shape_tail_and_rule() {
    for isa in Isa::ALL {
        if isa.is_available() {
            filter_exhaustive(isa);
        } else {
            skip_notice("every_isa_filter_every_shape_tail_and_rule", isa);
        }
    }
}

/// Exact kNN through `isa`'s kernel equals the portable kernel's, ids and distances, on random
/// databases of `(full bits, prefix bits, n)` with the queries `queries(db, seed)` makes.
fn knn_equals_portable(
    name: &str,
    isa: Isa,
    cases: &[(usize, usize, usize)],
    queries: impl Fn(&Codes, u64) -> Codes,
) {
    use nhl_index::search::knn_with;
    if !isa.is_available() {
        skip_notice(name, isa);
        return;
    }
    let portable = Kernel::new(Isa::Portable).unwrap();
    let fast = Kernel::new(isa).unwrap();
    for &(full, bits, n) in cases {
        let db = random_codes(n, full, 3 + bits as u64).unwrap();
        let q = queries(&db, 4 + bits as u64);
        let (qv, dv) = (q.prefix(bits).unwrap(), db.prefix(bits).unwrap());
        for k in [1, 10, 100] {
            let want = knn_with(portable, qv, dv, k).unwrap();
            let got = knn_with(fast, qv, dv, k).unwrap();
            assert_eq!(got, want, "{isa}: {bits} of {full} bits, n {n}, k {k}");
        }
    }
}

/// Exact kNN through the AVX-512 kernel (its fused scan for 64- and 128-bit codes and their
/// prefixes) equals the portable kernel's, ids and distances, with ties and several segments.
#[test]
fn avx512_knn_equals_portable() {
    let n = 40_000 + 13;
    let cases = [
        (64, 64, n),
        (64, 20, n),
        (128, 128, n),
        (128, 64, n),
        (128, 90, n),
        (128, 8, n),
    ];
    knn_equals_portable(
        "avx512_knn_equals_portable",
        Isa::Avx512Vpopcntdq,
        &cases,
        |db, seed| random_codes(37, db.bits(), seed).unwrap(),
    );
}

/// Queries near the database: copies of database codes with a few bits flipped (half of them),
/// so that small distances, ties and hits in every lane occur, and complements of database codes
/// (a quarter), so that the largest distance (the full width) occurs too.
fn near_queries(db: &Codes, nq: usize, seed: u64) -> Codes {
    let full = db.bits();
    let queries = random_codes(nq, full, seed).unwrap();
    let mut rng = SplitMix64::new(seed ^ 0x9e37);
    let words: Vec<u64> = (0..nq)
        .flat_map(|i| {
            let own = queries.view().code(i).unwrap().to_vec();
            if i % 4 == 1 || db.is_empty() {
                return own;
            }
            let src = db.view().code(i % db.len()).unwrap();
            src.iter()
                .enumerate()
                .map(|(w, &x)| {
                    if i % 4 == 3 {
                        // Only the code's own bits of the last word.
                        let valid = (full - 64 * w).min(64);
                        !x & (u64::MAX >> (64 - valid))
                    } else {
                        x ^ (rng.next_u64() & rng.next_u64() & rng.next_u64())
                    }
                })
                .collect()
        })
        .collect();
    Codes::from_words(nq, full, words).unwrap()
}

/// The AVX2 fast-scan filter (nibble tables over byte-sliced blocks of 32 codes, superblocks of
/// 256, zero-padded last blocks) against the code-by-code reference, for every code width
/// 1..=128: codes of exactly that width (one word per code up to 64 bits, two above) and the
/// same width as a prefix of 128- and 256-bit codes (codes two and four words apart); lengths
/// around the block and superblock sizes, from an aligned and an unaligned start; 1 to 70 queries;
/// fixed, shrinking, per-query and kNN-style limits.
#[test]
fn avx2_fastscan_filter_every_width() {
    let isa = Isa::Avx2;
    if !isa.is_available() {
        skip_notice("avx2_fastscan_filter_every_width", isa);
        return;
    }
    let kernel = Kernel::new(isa).unwrap();
    let lengths = [0, 1, 31, 32, 33, 64, 100, 255, 256, 257, 300, 520];
    let query_counts = [1, 7, 32, 33, 70];
    let mut case = 0usize;
    for bits in 1..=128usize {
        for full in [bits, 128, 256] {
            let db = random_codes(530, full, 7 * bits as u64 + full as u64).unwrap();
            let width = bits as u32;
            for rule in [
                Rule::Fixed(width + 1),
                Rule::Fixed(width / 2),
                Rule::Shrink(width / 2 + 3),
                Rule::PerQueryTies,
                Rule::TopK(3),
                Rule::TopK(20),
            ] {
                case += 1;
                let len = lengths[case % lengths.len()];
                let nq = query_counts[case % query_counts.len()];
                let start = if case.is_multiple_of(3) { 7 } else { 0 };
                let queries = near_queries(&db, nq, case as u64);
                let (qv, dv) = (queries.prefix(bits).unwrap(), db.prefix(bits).unwrap());
                let qs: Vec<&[u64]> = (0..nq).map(|i| qv.code(i).unwrap()).collect();
                let rows = start..start + len;
                let (got, want) =
                    filter_and_brute_force(&kernel, &qs, &dv, rows, None, rule, width);
                assert_eq!(
                    got, want,
                    "{bits} of {full} bits, {nq} queries, {rule:?}, codes {start}..+{len}"
                );
            }
        }
    }
}

/// Exact kNN through the AVX2 kernel (its fast-scan filter) equals the portable kernel's, ids and
/// distances, for 64- and 128-bit codes and their prefixes, with ties, several filter calls per
/// query block and database sizes that leave partial superblocks and blocks.
#[test]
fn avx2_knn_equals_portable() {
    let cases = [
        (64, 64, 20_000 + 13),
        // More codes than one filter call of kNN takes (65,536): limits carried across calls.
        (64, 64, 2 * 65_536 + 13),
        (64, 20, 5_000 + 301),
        (128, 128, 20_000 + 77),
        (128, 64, 5_000 + 1),
        (128, 90, 5_000 + 290),
        (128, 32, 5_000 + 33),
        (128, 8, 3_000 + 5),
        (256, 128, 3_000 + 31),
    ];
    knn_equals_portable("avx2_knn_equals_portable", Isa::Avx2, &cases, |db, seed| {
        near_queries(db, 45, seed)
    });
}

/// The sets of allowed rows the filtered scans are tested with, over `n` rows: none, 1%, 50%
/// and every row (seeded, uniformly at random), and runs of 40 allowed and 70 disallowed rows
/// (whole blocks of each, and blocks cut by a run's end).
fn allowed_sets(n: usize, seed: u64) -> Vec<(&'static str, AllowedRows)> {
    let runs = AllowedRows::from_rows(n, (0..n).filter(|r| r % 110 < 40)).unwrap();
    vec![
        ("0%", random_allowed(n, 0.0, seed).unwrap()),
        ("1%", random_allowed(n, 0.01, seed).unwrap()),
        ("50%", random_allowed(n, 0.5, seed).unwrap()),
        ("100%", random_allowed(n, 1.0, seed).unwrap()),
        ("runs", runs),
    ]
}

/// `Kernel::filter_allowed` of every path this CPU has against the code-by-code reference over
/// the allowed codes: the shapes of the fused scans (64-bit codes and their prefixes, 128-bit
/// codes and their prefixes) and two they leave to the per-query scan; query counts that take
/// the AVX2 few-query scans (1, 5) and the fast scan or AVX-512 chunks (33); lengths across
/// blocks of 8 and 32 codes and superblocks of 256, from an aligned and an unaligned start; 0%,
/// 1%, 50% and 100% of the rows allowed, and runs; kNN-style, fixed and shrinking limits.
#[test]
fn every_isa_filter_allowed_reports_exactly_the_allowed_hits() {
    for isa in Isa::ALL {
        if !isa.is_available() {
            skip_notice(
                "every_isa_filter_allowed_reports_exactly_the_allowed_hits",
                isa,
            );
            continue;
        }
        let kernel = Kernel::new(isa).unwrap();
        for (full, bits) in [
            (64, 64),
            (64, 13),
            (128, 128),
            (128, 100),
            (128, 64),
            (128, 37),
            (256, 64),
            (192, 192),
        ] {
            let n = 3 + 600;
            let db = random_codes(n, full, 41 + bits as u64).unwrap();
            let dv = db.prefix(bits).unwrap();
            let width = bits as u32;
            for (name, allowed) in allowed_sets(n, bits as u64) {
                for nq in [1, 5, 33] {
                    let queries = near_queries(&db, nq, 17 + nq as u64);
                    let qv = queries.prefix(bits).unwrap();
                    let qs: Vec<&[u64]> = (0..nq).map(|i| qv.code(i).unwrap()).collect();
                    for rule in [Rule::TopK(5), Rule::Fixed(width / 2), Rule::Shrink(width)] {
                        for rows in [0..n, 3..n, 7..300, 40..41, 9..9] {
                            let (got, want) = filter_and_brute_force(
                                &kernel,
                                &qs,
                                &dv,
                                rows.clone(),
                                Some(&allowed),
                                rule,
                                width,
                            );
                            assert_eq!(
                                got, want,
                                "{isa}, {bits} of {full} bits, {name} allowed, {nq} queries, \
                                 {rule:?}, codes {rows:?}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
#[should_panic(expected = "one allowed bit per code of db")]
fn filter_allowed_over_another_number_of_rows_is_a_caller_bug() {
    let db = random_codes(10, 64, 1).unwrap();
    let q = db.view().code(0).unwrap();
    let allowed = AllowedRows::all(11);
    let mut limits = [65];
    Kernel::best().filter_allowed(
        &[q],
        &db.view(),
        0..10,
        &allowed,
        &mut limits,
        &mut |_, _, _| 65,
    );
}

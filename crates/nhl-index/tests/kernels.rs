//! Every instruction-set path equals the portable `count_ones` path, for every width 1..=1024,
//! for full views and prefix views (codes farther apart than their width), and for every tail.

use nhl_index::hamming::{distance, Isa, Kernel};
use nhl_index::synth::{random_codes, SplitMix64};
use nhl_index::Codes;

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
            eprintln!("skipping {isa}: not available on this CPU");
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
fn best_isa_is_cached_and_available() {
    let first = Isa::best();
    assert!(first.is_available());
    assert_eq!(Isa::best(), first);
    assert_eq!(Isa::from_name(first.name()), Some(first));
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

//! Criterion benches of exact Hamming kNN: 1,000 queries against random databases of 1M and 10M
//! codes, 64 and 128 bits, k = 10 and 100, on 1 and 2 threads, every kernel path this CPU has.
//! Throughput is reported in code comparisons (query-code pairs) per second.
//!
//! Bench ids: `knn/<isa>/t<threads>/<bits>b/k<k>/n<n>`. Codes are generated outside the timed
//! closure. `NHL_BENCH_SEARCH_N=100000` (comma-separated) picks other sizes for a quick run, and
//! `NHL_BENCH_SEARCH_ISA=best` keeps only the dispatched path.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nhl_index::search::knn_with;
use nhl_index::synth::random_codes;
use nhl_index::{Isa, Kernel};
use std::time::Duration;

const QUERIES: usize = 1000;

fn sizes() -> Vec<usize> {
    std::env::var("NHL_BENCH_SEARCH_N")
        .ok()
        .and_then(|v| v.split(',').map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000_000, 10_000_000])
}

fn paths() -> Vec<Isa> {
    match std::env::var("NHL_BENCH_SEARCH_ISA").as_deref() {
        Ok("best") => vec![Isa::best()],
        _ => Isa::available(),
    }
}

fn knn(c: &mut Criterion) {
    let mut group = c.benchmark_group("knn");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(5));
    for bits in [64, 128] {
        let queries = random_codes(QUERIES, bits, 1).expect("valid sizes");
        for n in sizes() {
            let database = random_codes(n, bits, 2).expect("valid sizes");
            group.throughput(Throughput::Elements((QUERIES * n) as u64));
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("thread pool");
                for isa in paths() {
                    let kernel = Kernel::new(isa).expect("only available paths");
                    for k in [10, 100] {
                        let id = BenchmarkId::from_parameter(format!(
                            "{isa}/t{threads}/{bits}b/k{k}/n{n}"
                        ));
                        group.bench_function(id, |b| {
                            b.iter(|| {
                                pool.install(|| {
                                    knn_with(kernel, queries.view(), database.view(), k)
                                })
                                .expect("valid search")
                            })
                        });
                    }
                }
            }
        }
    }
    group.finish();
}

criterion_group!(benches, knn);
criterion_main!(benches);

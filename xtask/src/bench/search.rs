//! `cargo xtask bench search`: Hamming kNN queries per second on random codes, the scan's share of
//! the memory bandwidth, and the cascade's recall and speed-up on trained nested codes grown to a
//! million (see [`cascade`]) and on clustered nested-like codes.
//!
//! Every figure is measured in this one process, side by side, on codes generated from `--seed`.
//! `--write-codes DIR` also saves the random codes as `.npy` so that `benches/faiss_compare.py`
//! can time FAISS `IndexBinaryFlat` on exactly the same data. `--allow-fraction` adds the cost of
//! restricting the kNN search to a random subset of the rows (see [`filter_cost`]).

use std::path::PathBuf;

use anyhow::Context;
use nhl_index::cascade::{recall_at_k, CascadeIndex, PrefixStage};
use nhl_index::search::{knn_with, Neighbors};
use nhl_index::synth::{nested_cluster_codes, random_allowed, random_codes, replicate_with_noise};
use nhl_index::{Codes, FlatIndex, HammingIndex, Isa, Kernel, SearchOptions};
use rayon::prelude::*;
use serde_json::json;

use crate::cpu_clock::timed as timed_once;

/// Search benchmark sizes and settings.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Database sizes (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1_000_000usize, 10_000_000])]
    pub n: Vec<usize>,
    /// Number of queries.
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    /// Code lengths in bits.
    #[arg(long, value_delimiter = ',', default_values_t = [64usize, 128])]
    pub bits: Vec<usize>,
    /// Neighbours per query.
    #[arg(long, value_delimiter = ',', default_values_t = [10usize, 100])]
    pub k: Vec<usize>,
    /// Thread counts.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2])]
    pub threads: Vec<usize>,
    /// Kernel paths: `best`, `all` (every path this CPU has), or names such as `avx2,popcnt`.
    #[arg(long, default_value = "best")]
    pub isa: String,
    /// Also write the codes as `database_<n>_<bits>.npy` and `queries_<bits>.npy` in this folder.
    #[arg(long, value_name = "DIR")]
    pub write_codes: Option<PathBuf>,
    /// Database size of the cascade benchmark (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    pub cascade_n: usize,
    /// Cluster centres of the cascade benchmark's synthetic codes (about n / clusters per cluster).
    #[arg(long, default_value_t = 10_000)]
    pub cascade_clusters: usize,
    /// Run folder whose trained 128-bit codes (`database_codes.npy`, `query_codes.npy`) the
    /// cascade benchmark grows to `--cascade-n` codes (skipped when absent).
    #[arg(long, value_name = "DIR", default_value = "runs/fmnist-full")]
    pub trained: PathBuf,
    /// Repetitions per measurement; the fastest is reported.
    #[arg(long, default_value_t = 2)]
    pub repeat: usize,
    /// Fractions of the rows a filtered kNN search may return (e.g. `0.01,0.5`): each is timed
    /// against the same search without a filter, for every size, length, thread count, path and
    /// k above (none: no filter benchmark).
    #[arg(long, value_delimiter = ',', value_name = "F")]
    pub allow_fraction: Vec<f64>,
    /// Rounds of the filter benchmark: each round runs every setting once, in a rotating order,
    /// and each setting reports its median.
    #[arg(long, default_value_t = 7)]
    pub rounds: usize,
    /// Seed of the random codes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write every result as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

fn isas(spec: &str) -> anyhow::Result<Vec<Isa>> {
    match spec {
        "best" => Ok(vec![Isa::best()]),
        "all" => Ok(Isa::available()),
        list => list
            .split(',')
            .map(|name| {
                let isa = Isa::from_name(name.trim()).with_context(|| {
                    format!(
                        "--isa: unknown path {name:?} (known: {:?})",
                        Isa::ALL.map(Isa::name)
                    )
                })?;
                anyhow::ensure!(
                    isa.is_available(),
                    "--isa: {isa} is not available on this CPU"
                );
                Ok(isa)
            })
            .collect(),
    }
}

/// Fastest of `repeat` runs of `f`: (wall seconds, CPU seconds of that run if known, output).
fn timed<T>(
    repeat: usize,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(f64, Option<f64>, T)> {
    let mut best = (f64::INFINITY, None);
    let mut last = None;
    for _ in 0..repeat.max(1) {
        let (out, wall, cpu) = timed_once(&mut f);
        let out = out?;
        if wall < best.0 {
            best = (wall, cpu);
        }
        last = Some(out);
    }
    Ok((best.0, best.1, last.context("at least one run")?))
}

/// Fastest of `repeat` runs of `f`, in wall-clock seconds.
fn best_of<T>(repeat: usize, f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<(f64, T)> {
    let (wall, _, out) = timed(repeat, f)?;
    Ok((wall, out))
}

/// Read bandwidth in bytes per second of one pass of a parallel XOR-reduction over `words` (the
/// same codes the scan reads), the ceiling a one-pass scan can reach.
fn read_bandwidth(words: &[u64]) -> anyhow::Result<f64> {
    let (seconds, _) = best_of(1, || {
        Ok(words
            .par_chunks(1 << 16)
            .map(|c| c.iter().fold(0u64, |a, &x| a ^ x))
            .reduce(|| 0, |a, b| a ^ b))
    })?;
    Ok(std::mem::size_of_val(words) as f64 / seconds)
}

fn pool(threads: usize) -> anyhow::Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("thread pool")
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let isas = isas(&args.isa)?;
    println!(
        "paths available: {:?}; best: {}; queries: {}",
        Isa::available()
            .iter()
            .map(|i| i.name())
            .collect::<Vec<_>>(),
        Isa::best(),
        args.queries
    );
    let mut results = Vec::new();
    if let Some(dir) = &args.write_codes {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    println!(
        "{:>10} {:>5} {:>4} {:>3} {:>16} {:>10} {:>12} {:>9} {:>14} {:>12}",
        "n", "bits", "k", "thr", "isa", "seconds", "qps", "ns/pair", "pairs/s", "cpu ns/pair"
    );
    for &bits in &args.bits {
        let queries = random_codes(args.queries, bits, args.seed ^ 0x5eed_0001)?;
        if let Some(dir) = &args.write_codes {
            queries.write_npy(&dir.join(format!("queries_{bits}.npy")))?;
        }
        for &n in &args.n {
            let database = random_codes(n, bits, args.seed ^ (n as u64) ^ ((bits as u64) << 40))?;
            if let Some(dir) = &args.write_codes {
                database.write_npy(&dir.join(format!("database_{n}_{bits}.npy")))?;
            }
            for &threads in &args.threads {
                let pool = pool(threads)?;
                for &isa in &isas {
                    let kernel = Kernel::new(isa)?;
                    for &k in &args.k {
                        let (seconds, cpu, _) = timed(args.repeat, || {
                            Ok(pool
                                .install(|| knn_with(kernel, queries.view(), database.view(), k))?)
                        })?;
                        let pairs = (args.queries * n) as f64;
                        let cpu_ns = cpu.map(|c| c * 1e9 / pairs);
                        println!(
                            "{n:>10} {bits:>5} {k:>4} {threads:>3} {:>16} {seconds:>10.4} {:>12.1} {:>9.4} {:>14.3e} {:>12}",
                            isa.name(),
                            args.queries as f64 / seconds,
                            seconds * 1e9 / pairs,
                            pairs / seconds,
                            cpu_ns.map_or("-".to_string(), |c| format!("{c:.4}"))
                        );
                        results.push(json!({
                            "kind": "knn", "n": n, "bits": bits, "k": k, "threads": threads, "isa": isa.name(),
                            "queries": args.queries, "seconds": seconds, "qps": args.queries as f64 / seconds,
                            "ns_per_pair": seconds * 1e9 / pairs, "pairs_per_second": pairs / seconds,
                            "cpu_seconds": cpu, "cpu_ns_per_pair": cpu_ns,
                        }));
                    }
                }
                if !args.allow_fraction.is_empty() {
                    for &isa in &isas {
                        for &k in &args.k {
                            let kernel = Kernel::new(isa)?;
                            let cost = filter_cost(&args, &pool, kernel, k, &database, &queries)?;
                            results.extend(cost);
                        }
                    }
                }
                // One query streams the whole database once: its speed against the read bandwidth.
                let one = queries.view().slice(0..1)?;
                let kernel = Kernel::best();
                // The scan and the bandwidth probe alternate, one pass each per turn, so that
                // both see the same moments of a shared machine; each keeps its fastest pass.
                let (mut scan_seconds, mut bandwidth) = (f64::INFINITY, 0.0f64);
                for _ in 0..4 * (args.repeat + 1) {
                    let (seconds, _) = best_of(1, || {
                        Ok(pool.install(|| knn_with(kernel, one, database.view(), 10))?)
                    })?;
                    scan_seconds = scan_seconds.min(seconds);
                    bandwidth = bandwidth.max(pool.install(|| read_bandwidth(database.words()))?);
                }
                let bytes = std::mem::size_of_val(database.words()) as f64;
                let scan_bw = bytes / scan_seconds;
                println!(
                    "  one-query scan of {n} x {bits} bits, {threads} thread(s): {:.2} GB/s; read bandwidth {:.2} GB/s; {:.0}%",
                    scan_bw / 1e9,
                    bandwidth / 1e9,
                    100.0 * scan_bw / bandwidth
                );
                results.push(json!({
                    "kind": "scan_bandwidth", "n": n, "bits": bits, "threads": threads, "isa": Isa::best().name(),
                    "scan_bytes_per_second": scan_bw, "read_bytes_per_second": bandwidth,
                    "fraction": scan_bw / bandwidth,
                }));
            }
        }
    }
    if args.cascade_n > 0 {
        results.extend(cascade(&args)?);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// The cost of a filter: the exact kNN restricted to `round(f n)` random rows for every
/// `--allow-fraction` `f`, beside the same search without a filter, on `pool` with `kernel`.
/// `--rounds` rounds each run every setting once, starting one setting later each round, so
/// that every setting meets the machine's slow and fast moments alike; each setting reports
/// the median of its wall and CPU seconds, and the ratio of each to the unfiltered search's.
fn filter_cost(
    args: &Args,
    pool: &rayon::ThreadPool,
    kernel: Kernel,
    k: usize,
    database: &Codes,
    queries: &Codes,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let n = database.len();
    let sets = args
        .allow_fraction
        .iter()
        .map(|&f| Ok((f, random_allowed(n, f, args.seed ^ 0xa110)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let flat = FlatIndex::new(database.view());
    let plain = SearchOptions::with_kernel(kernel);
    // Setting 0: no filter; setting i: the fraction i - 1.
    let options: Vec<SearchOptions<'_>> = std::iter::once(plain)
        .chain(sets.iter().map(|(_, allowed)| plain.allowing(allowed)))
        .collect();
    let mut wall = vec![Vec::new(); options.len()];
    let mut cpu = vec![Vec::new(); options.len()];
    for round in 0..args.rounds.max(1) {
        for turn in 0..options.len() {
            let s = (round + turn) % options.len();
            let (found, seconds, cpu_seconds) =
                timed_once(|| pool.install(|| flat.knn(queries.view(), k, &options[s])));
            found?;
            wall[s].push(seconds);
            cpu[s].extend(cpu_seconds);
        }
    }
    let wall: Vec<f64> = wall.iter_mut().map(|w| median(w)).collect();
    let cpu: Vec<Option<f64>> = cpu
        .iter_mut()
        .map(|c| (!c.is_empty()).then(|| median(c)))
        .collect();
    let bits = database.bits();
    let threads = pool.current_num_threads();
    println!(
        "  filter cost, {n} x {bits} bits, k = {k}, {threads} thread(s), {}, median of {} rounds:",
        kernel.isa(),
        args.rounds.max(1)
    );
    println!(
        "  {:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "allowed", "seconds", "ratio", "cpu s", "cpu ratio", "qps"
    );
    let mut out = Vec::new();
    for (s, fraction) in std::iter::once(None)
        .chain(sets.iter().map(|&(f, _)| Some(f)))
        .enumerate()
    {
        let ratio = wall[s] / wall[0];
        let cpu_ratio = cpu[s].zip(cpu[0]).map(|(c, base)| c / base);
        let show =
            |x: Option<f64>, digits: usize| x.map_or("-".into(), |x| format!("{x:.digits$}"));
        println!(
            "  {:>8} {:>10.4} {ratio:>10.3} {:>10} {:>10} {:>10.1}",
            fraction.map_or("none".into(), |f| format!("{:.0}%", 100.0 * f)),
            wall[s],
            show(cpu[s], 4),
            show(cpu_ratio, 3),
            queries.len() as f64 / wall[s]
        );
        out.push(json!({
            "kind": "filter", "n": n, "bits": bits, "k": k, "threads": threads,
            "isa": kernel.isa().name(), "queries": queries.len(), "rounds": args.rounds.max(1),
            "allow_fraction": fraction, "allowed_rows": fraction.map(|_| sets[s - 1].1.count()),
            "median_seconds": wall[s], "median_cpu_seconds": cpu[s],
            "ratio": ratio, "cpu_ratio": cpu_ratio,
        }));
    }
    Ok(out)
}

/// The cascade's speed-up over the exact 128-bit scan and its recall@10, single-threaded by
/// default, on two 1M-code databases (`--cascade-n`):
///
/// * `trained`: the trained nested codes of `--trained DIR` grown to n codes by
///   [`replicate_with_noise`], each grown code a uniformly chosen trained database code with every
///   bit flipped with probability `flip`, where `flip` is measured on the trained codes themselves:
///   the mean Hamming distance from a trained query code to its nearest trained database code,
///   divided by 128. The queries are the trained query codes. Skipped (with a notice) when the
///   files are absent.
/// * `clustered`: synthetic clusters whose early bits are reliable (bit j flips from its centre
///   with probability 0.02 -> 0.35 along the code), the structure nested codes have and random
///   codes lack.
///
/// The exact scan is timed before each prefix length's rows and once more at the end; the
/// fastest of those runs is the baseline of every row, so both sides see the same load.
fn cascade(args: &Args) -> anyhow::Result<Vec<serde_json::Value>> {
    let (n, bits) = (args.cascade_n, 128);
    let mut out = Vec::new();
    let db_path = args.trained.join("database_codes.npy");
    let q_path = args.trained.join("query_codes.npy");
    if db_path.exists() && q_path.exists() {
        let base = Codes::read_npy(&db_path, Some(bits))
            .with_context(|| format!("loading {}", db_path.display()))?;
        let queries = Codes::read_npy(&q_path, Some(bits))
            .with_context(|| format!("loading {}", q_path.display()))?;
        let nearest = knn_with(Kernel::best(), queries.view(), base.view(), 1)?;
        let flip = nearest.distances.iter().map(|&d| f64::from(d)).sum::<f64>()
            / (nearest.distances.len().max(1) * bits) as f64;
        let database = replicate_with_noise(base.view(), n, flip, args.seed ^ 3)?;
        let what = format!(
            "trained codes of {} ({} database, {} queries) grown to n = {n} with bit-flip rate {flip:.4} (query-to-nearest noise)",
            args.trained.display(),
            base.len(),
            queries.len()
        );
        out.extend(cascade_rows(args, "trained", &what, &database, &queries)?);
    } else {
        println!(
            "cascade on trained codes skipped: {} or {} is absent",
            db_path.display(),
            q_path.display()
        );
    }
    let make = |count: usize, seed: u64| -> anyhow::Result<Codes> {
        Ok(nested_cluster_codes(
            count,
            bits,
            args.cascade_clusters,
            0.02,
            0.35,
            args.seed ^ 77,
            seed,
        )?)
    };
    let database = make(n, args.seed ^ 1)?;
    let queries = make(args.queries, args.seed ^ 2)?;
    let what = format!(
        "clustered 128-bit codes ({} centres, flip 0.02 -> 0.35), n = {n}",
        args.cascade_clusters
    );
    out.extend(cascade_rows(args, "clustered", &what, &database, &queries)?);
    Ok(out)
}

/// One data set's cascade table: every (prefix, stage, candidates) against the exact scan.
fn cascade_rows(
    args: &Args,
    data: &str,
    what: &str,
    database: &Codes,
    queries: &Codes,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let k = 10;
    let threads = args.threads.first().copied().unwrap_or(1);
    let pool = pool(threads)?;
    let kernel = Kernel::best();
    let exact_run = || -> anyhow::Result<(f64, Option<f64>, Neighbors)> {
        timed(args.repeat, || {
            Ok(pool.install(|| knn_with(kernel, queries.view(), database.view(), k))?)
        })
    };
    let (mut exact_wall, mut exact_cpu, exact) = exact_run()?;
    println!(
        "cascade on {what}, {} queries, k = {k}, {threads} thread(s), {} path",
        queries.len(),
        kernel.isa()
    );
    println!(
        "{:>6} {:>11} {:>8} {:>10} {:>10} {:>10} {:>9} {:>13}",
        "prefix",
        "candidates",
        "stage",
        "seconds",
        "exact s",
        "recall@10",
        "speed-up",
        "cpu speed-up"
    );
    let mut rows = Vec::new();
    for prefix in [16, 32] {
        let (wall, cpu, _) = exact_run()?;
        exact_wall = exact_wall.min(wall);
        exact_cpu = exact_cpu.zip(cpu).map(|(a, b)| a.min(b));
        for (stage, name) in [
            (PrefixStage::Buckets, "buckets"),
            (PrefixStage::Scan, "scan"),
            (PrefixStage::MultiIndex, "mih"),
        ] {
            const CANDIDATES: [usize; 5] = [100, 500, 1000, 2000, 5000];
            let index = CascadeIndex::new(database.view(), prefix, stage, CANDIDATES[0])?;
            for candidates in CANDIDATES {
                // MIH's candidate selection verifies whole buckets of tied prefixes: beyond a
                // thousand candidates it only gets slower.
                if stage == PrefixStage::MultiIndex && candidates > 1000 {
                    continue;
                }
                let (seconds, cpu, found) = timed(args.repeat, || {
                    Ok(pool.install(|| index.search(queries.view(), k, candidates))?)
                })?;
                rows.push((
                    prefix,
                    name,
                    candidates,
                    seconds,
                    cpu,
                    recall_at_k(&found, &exact)?,
                ));
            }
        }
    }
    let (wall, cpu, _) = exact_run()?;
    exact_wall = exact_wall.min(wall);
    exact_cpu = exact_cpu.zip(cpu).map(|(a, b)| a.min(b));
    let mut out = Vec::new();
    for (prefix, stage, candidates, seconds, cpu, recall) in rows {
        let cpu_speedup = exact_cpu
            .zip(cpu)
            .map(|(e, c)| e / c.max(f64::MIN_POSITIVE));
        println!(
            "{prefix:>6} {candidates:>11} {stage:>8} {seconds:>10.4} {exact_wall:>10.4} {recall:>10.4} {:>9.2} {:>13}",
            exact_wall / seconds,
            cpu_speedup.map_or("-".to_string(), |s| format!("{s:.2}"))
        );
        out.push(json!({
            "kind": "cascade", "data": data, "n": database.len(), "bits": database.bits(), "k": k,
            "threads": threads, "isa": kernel.isa().name(), "prefix_bits": prefix,
            "candidates": candidates, "stage": stage, "seconds": seconds, "cpu_seconds": cpu,
            "exact_seconds": exact_wall, "exact_cpu_seconds": exact_cpu, "recall_at_10": recall,
            "speedup": exact_wall / seconds, "cpu_speedup": cpu_speedup,
        }));
    }
    Ok(out)
}

//! `cargo xtask search`: Hamming k-nearest-neighbour, range or cascade search over packed codes
//! stored as uint8 `[n, bytes]` `.npy` files (the layout of `docs/PROTOCOL.md`, FAISS's), or a
//! database stored as a FAISS binary index file.
//!
//! Inputs besides the codes:
//! * `--database` takes a FAISS `IndexBinaryFlat` or `IndexBinaryIDMap` file (one named `.index`,
//!   or any file that starts with a FAISS index fourcc) as well as `.npy`; an ID map's IDs are
//!   the rows' user IDs, as if given with `--ids`.
//! * `--ids IDS.npy` (int64 `[n]`, one per database row, all different): results name rows by
//!   these user IDs instead of row numbers. Given with an ID-map database, both must hold the
//!   same IDs in the same row order (else an error). -1 pads results (below), so no row may
//!   carry the ID -1.
//! * `--allow ALLOW.npy` restricts the search to some rows, tested inside the kernels' candidate
//!   test: a list of IDs (int64 or int32, `[m]`; user IDs when the rows have them, else row
//!   numbers; each must be a database row's) or a mask over the rows (bool or uint8 `[n]`, 1 =
//!   allowed). Results are those of the same search over the allowed rows alone.
//!
//! Outputs in `--out`:
//! * kNN and cascade: `ids.npy` (int64 `[nq, k]`) and `distances.npy` (int32 `[nq, k]`), each row
//!   in the order of `docs/PROTOCOL.md` (distance ascending, ties by database position). When
//!   `--allow` leaves fewer than k rows, every row holds them all followed by `-1` padding.
//! * `--radius R`: every item within distance R. `counts.npy` (int64 `[nq]`) holds each query's
//!   number of results; `ids.npy` / `distances.npy` are `[nq, max count]`, row q holding its
//!   results in that order followed by `-1` padding.
//! * `ids.npy` holds row numbers, or user IDs with `--ids` or an ID-map database.
//! * `search.json`: `n_database`, `n_queries`, `bits`, `k` (null for a range search), `threads`,
//!   `isa`, `search_seconds` (the search alone, codes already in memory), `search_cpu_seconds`
//!   (the CPU time of all threads during it, null where unknown), `qps`, `database_format`
//!   (`npy` or `faiss`), `user_ids` (whether `ids.npy` holds user IDs), `allowed_rows` (the
//!   rows `--allow` leaves, null without it); plus `mode`, and `radius` / `max_count` or
//!   `cascade` (with its recall@k against the exact search under the same `--allow`) when used;
//!   with `--mih`, `mih` (`substrings`, `index_seconds`, and for a range search `range_method`,
//!   `probe` or `scan`, and `verified`, the full distances computed).
//!
//! The outputs appear as a set or not at all: they are written into a sibling directory that
//! replaces `--out` when every file is written (`nhl_train::run_dir`), so an earlier search's
//! files of another layout (a range search's `counts.npy`) go with it, and a failed search leaves
//! `--out` as it was. `--out` is checked before the codes are read.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nhl_index::cascade::{recall_at_k, CascadeIndex, PrefixStage};
use nhl_index::faiss::{has_index_fourcc, read_binary_index};
use nhl_index::ids::{check_not_padding, read_ids_npy, PADDING};
use nhl_index::mih::{MultiIndex, RangeMethod};
use nhl_index::npy::{write_npy, NpyArray, NpyData};
use nhl_index::{AllowedRows, Codes, FlatIndex, HammingIndex, Isa, SearchOptions};
use nhl_train::run_dir::RunDir;
use serde_json::json;

use crate::cpu_clock::timed;
use crate::names::at_least_one;
use crate::out_path::restore_set_aside;

/// Search packed binary codes.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Database codes: uint8 `[n, bytes]` `.npy`, or a FAISS IndexBinaryFlat / IndexBinaryIDMap
    /// file (`.index`, or detected by its fourcc); an ID map's IDs act as `--ids`.
    #[arg(long, value_name = "DB.npy|DB.index")]
    pub database: PathBuf,
    /// Query codes: uint8 `[nq, bytes]` `.npy`.
    #[arg(long, value_name = "Q.npy")]
    pub queries: PathBuf,
    /// User IDs of the database rows: int64 `[n]`, all different, none -1; `ids.npy` then holds
    /// them instead of row numbers.
    #[arg(long, value_name = "IDS.npy")]
    pub ids: Option<PathBuf>,
    /// Search only these rows: a list of IDs (int64 or int32; user IDs when the rows have them,
    /// else row numbers) or a mask over the rows (bool or uint8 `[n]`, 1 = allowed).
    #[arg(long, value_name = "ALLOW.npy")]
    pub allow: Option<PathBuf>,
    /// Neighbours per query (kNN and cascade).
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Use the first B bits of every code (default: all bits of the files).
    #[arg(long, value_name = "B")]
    pub bits: Option<usize>,
    /// Range search: every item within this Hamming distance (instead of kNN).
    #[arg(long, value_name = "R", conflicts_with = "cascade")]
    pub radius: Option<u32>,
    /// Search with multi-index hashing (exact, same results; the index is built before the timer
    /// starts). kNN probes substring balls of growing radius; a range search probes the balls of
    /// the pigeonhole bound (radius floor(R / m) in each of the m substrings) when their estimated
    /// cost is below a scan's, and scans otherwise (`range_method` in search.json says which).
    #[arg(long, conflicts_with = "cascade")]
    pub mih: bool,
    /// Substrings of the multi-index (default: substrings of about log2(n) bits).
    #[arg(long, value_name = "M", requires = "mih")]
    pub mih_substrings: Option<usize>,
    /// Cascade search: rank by the first PREFIX_BITS, re-rank CANDIDATES by the full code.
    #[arg(long, value_name = "PREFIX_BITS:CANDIDATES")]
    pub cascade: Option<String>,
    /// Worker threads, at least 1 (default: all cores).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub threads: Option<usize>,
    /// Output directory (created if missing; an earlier search's outputs in it are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Every file a search may write into `--out`: the directory may hold these and nothing else.
pub const LAYOUT: &[&str] = &["ids.npy", "distances.npy", "counts.npy", "search.json"];

fn parse_cascade(text: &str) -> anyhow::Result<(usize, usize)> {
    let (p, c) = text.split_once(':').with_context(|| {
        format!("--cascade {text:?}: expected PREFIX_BITS:CANDIDATES, e.g. 32:1000")
    })?;
    let p = p
        .trim()
        .parse()
        .with_context(|| format!("--cascade {text:?}: {p:?} is not a bit count"))?;
    let c = c
        .trim()
        .parse()
        .with_context(|| format!("--cascade {text:?}: {c:?} is not a candidate count"))?;
    Ok((p, c))
}

/// Rows of `width` values per query, padded with [`PADDING`] (-1).
fn padded(rows: impl Iterator<Item = Vec<i64>>, n_rows: usize, width: usize) -> Vec<i64> {
    let mut out = Vec::with_capacity(n_rows * width);
    for row in rows {
        let len = row.len();
        out.extend(row);
        out.extend(std::iter::repeat_n(PADDING, width - len));
    }
    out
}

/// Every query's result rows, named by `name`, and their distances, each padded to `width`.
fn padded_results<'r>(
    nq: usize,
    width: usize,
    result: impl Fn(usize) -> (&'r [u32], &'r [u32]),
    name: &dyn Fn(u32) -> i64,
) -> (Vec<i64>, Vec<i64>) {
    let ids = (0..nq).map(|q| result(q).0.iter().map(|&row| name(row)).collect());
    let distances = (0..nq).map(|q| result(q).1.iter().map(|&d| i64::from(d)).collect());
    (padded(ids, nq, width), padded(distances, nq, width))
}

/// The database codes, how they were stored, and the user IDs of the rows, if any.
struct Database {
    codes: Codes,
    format: &'static str,
    ids: Option<Vec<i64>>,
}

/// Whether `path` is a FAISS index file: named `.index`, or starting with a FAISS fourcc. A file
/// that cannot be opened is not, and the `.npy` reader reports why.
fn is_faiss_file(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e == "index") {
        return true;
    }
    let mut head = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| has_index_fourcc(&head))
}

/// The database of `--database` (first `--bits` bits) and its rows' user IDs from `--ids` or the
/// file's ID map (which must agree when both are given; neither may hold [`PADDING`]).
fn load_database(args: &Args) -> anyhow::Result<Database> {
    let db_path = &args.database;
    let loading = || format!("loading the database {}", db_path.display());
    let (codes, map, format) = if is_faiss_file(db_path) {
        let file = read_binary_index(db_path, args.bits).with_context(loading)?;
        (file.codes, file.ids, "faiss")
    } else {
        (
            Codes::read_npy(db_path, args.bits).with_context(loading)?,
            None,
            "npy",
        )
    };
    let given = match &args.ids {
        Some(path) => Some(
            read_ids_npy(path, codes.len())
                .with_context(|| format!("--ids: loading {}", path.display()))?,
        ),
        None => None,
    };
    if let (Some(given), Some(map)) = (&given, &map) {
        if let Some(row) = given.iter().zip(map).position(|(a, b)| a != b) {
            bail!(
                "--ids {} and the ID map of {} disagree at row {row}: ID {} against {} (give \
                 --ids only to confirm the file's IDs, or search a file without an ID map)",
                args.ids.as_deref().unwrap_or(Path::new("")).display(),
                db_path.display(),
                given[row],
                map[row]
            );
        }
    }
    match (&args.ids, &given, &map) {
        (Some(path), Some(ids), _) => check_not_padding(path, "ids", ids)?,
        (_, _, Some(ids)) => check_not_padding(db_path, "id_map", ids)?,
        _ => {}
    }
    Ok(Database {
        codes,
        format,
        ids: given.or(map),
    })
}

fn write_json(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cascade = args.cascade.as_deref().map(parse_cascade).transpose()?;
    // Claimed before any work; dropped (and removed) on error, leaving --out as it was.
    restore_set_aside("--out", &args.out)?;
    let out = RunDir::replacing(&args.out, LAYOUT).context("--out")?;
    let Database {
        codes: database,
        format,
        ids: user_ids,
    } = load_database(&args)?;
    let queries = Codes::read_npy(&args.queries, args.bits)
        .with_context(|| format!("loading the queries {}", args.queries.display()))?;
    if queries.bits() != database.bits() {
        bail!(
            "the queries have {}-bit codes ({}) and the database {}-bit codes ({}); pass --bits to compare a common prefix",
            queries.bits(),
            args.queries.display(),
            database.bits(),
            args.database.display()
        );
    }
    if args.radius.is_none() && (args.k == 0 || args.k > database.len()) {
        bail!(
            "--k {} is out of range: the database has {} codes",
            args.k,
            database.len()
        );
    }
    let allowed = match &args.allow {
        Some(path) => Some(
            AllowedRows::read_npy(path, database.len(), user_ids.as_deref())
                .with_context(|| format!("--allow: loading {}", path.display()))?,
        ),
        None => None,
    };
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(t) = args.threads {
        builder = builder.num_threads(t);
    }
    let pool = builder.build().context("starting the thread pool")?;
    let threads = pool.current_num_threads();

    let (nq, n) = (queries.len(), database.len());
    let mut summary = json!({
        "n_database": n,
        "n_queries": nq,
        "bits": database.bits(),
        "threads": threads,
        "isa": Isa::best().name(),
        "database_format": format,
        "user_ids": user_ids.is_some(),
        "allowed_rows": allowed.as_ref().map(AllowedRows::count),
    });
    // One index from the flags; every search below goes through its interface.
    let index: Box<dyn HammingIndex + '_> = if args.mih {
        let (index, seconds, _) =
            timed(|| pool.install(|| MultiIndex::new(database.view(), args.mih_substrings)));
        let index = index.context("--mih: building the multi-index")?;
        summary["mih"] = json!({"substrings": index.substrings(), "index_seconds": seconds});
        Box::new(index)
    } else if let Some((prefix_bits, candidates)) = cascade {
        let index = CascadeIndex::new(database.view(), prefix_bits, PrefixStage::Scan, candidates)
            .with_context(|| format!("--cascade {prefix_bits}:{candidates}"))?;
        summary["cascade"] = json!({"prefix_bits": prefix_bits, "candidates": candidates});
        Box::new(index)
    } else {
        Box::new(FlatIndex::new(database.view()))
    };
    let mut options = SearchOptions::default();
    if let Some(allowed) = &allowed {
        options = options.allowing(allowed);
    }
    // Results name rows by user ID when the rows have them.
    let name = |row: u32| {
        user_ids
            .as_ref()
            .map_or(i64::from(row), |ids| ids[row as usize])
    };
    let (search_seconds, search_cpu);
    let (ids, distances, width);
    let mut range_counts = None;
    if let Some(radius) = args.radius {
        let (result, seconds, cpu) =
            timed(|| pool.install(|| index.range_with_stats(queries.view(), radius, &options)));
        let (result, stats) = result?;
        (search_seconds, search_cpu) = (seconds, cpu);
        if let Some(stats) = stats {
            summary["mih"]["range_method"] = json!(match stats.method {
                RangeMethod::Probe => "probe",
                _ => "scan",
            });
            summary["mih"]["verified"] = json!(stats.verified);
        }
        let counts: Vec<i64> = (0..nq).map(|q| result.ids_of(q).len() as i64).collect();
        width = counts.iter().copied().max().unwrap_or(0) as usize;
        (ids, distances) = padded_results(
            nq,
            width,
            |q| (result.ids_of(q), result.distances_of(q)),
            &name,
        );
        range_counts = Some(counts);
        summary["mode"] = json!("range");
        summary["k"] = serde_json::Value::Null;
        summary["radius"] = json!(radius);
        summary["max_count"] = json!(width);
    } else {
        let (found, seconds, cpu) =
            timed(|| pool.install(|| index.knn(queries.view(), args.k, &options)));
        let found = found?;
        (search_seconds, search_cpu) = (seconds, cpu);
        if cascade.is_some() {
            // Not timed: the exact search only measures the cascade's recall.
            let flat = FlatIndex::new(database.view());
            let exact = pool.install(|| flat.knn(queries.view(), args.k, &options))?;
            summary["mode"] = json!("cascade");
            summary["cascade"]["recall_at_k"] = json!(recall_at_k(&found, &exact)?);
        } else {
            summary["mode"] = json!("knn");
        }
        // `found.k` is below k only when --allow leaves fewer rows than k.
        width = args.k;
        (ids, distances) = padded_results(
            nq,
            width,
            |q| (found.ids_of(q), found.distances_of(q)),
            &name,
        );
        summary["k"] = json!(args.k);
    }
    if let Some(counts) = range_counts {
        write_npy(
            &out.file("counts.npy"),
            &NpyArray {
                shape: vec![nq],
                data: NpyData::I64(counts),
            },
        )?;
    }
    write_npy(
        &out.file("ids.npy"),
        &NpyArray {
            shape: vec![nq, width],
            data: NpyData::I64(ids),
        },
    )?;
    let distances: Vec<i32> = distances.into_iter().map(|d| d as i32).collect();
    write_npy(
        &out.file("distances.npy"),
        &NpyArray {
            shape: vec![nq, width],
            data: NpyData::I32(distances),
        },
    )?;
    summary["search_seconds"] = json!(search_seconds);
    summary["search_cpu_seconds"] = json!(search_cpu);
    summary["qps"] = json!(nq as f64 / search_seconds.max(f64::MIN_POSITIVE));
    write_json(&out.file("search.json"), &summary)?;
    out.commit()?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

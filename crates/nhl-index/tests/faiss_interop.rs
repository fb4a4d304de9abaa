//! Our FAISS files against the real FAISS. `NHL_FAISS_PYTHON` names a Python with `faiss-cpu`
//! and `numpy` (`.ci/run` makes one); without it the test prints a notice and passes, unless
//! `NHL_REQUIRE_FAISS=1`, which makes the missing Python a failure.
//!
//! Both ways: FAISS loads the files we write and its search gives our distances (and valid IDs);
//! we read the files FAISS writes (flat and ID map, at odd sizes) with its codes and IDs, and our
//! search gives its distances; other FAISS index types are refused by name. The Python half is
//! `faiss_interop.py`, beside this file.

use nhl_index::faiss::{read_binary_index, write_binary_index};
use nhl_index::npy::{write_npy, NpyArray, NpyData};
use nhl_index::search::knn;
use nhl_index::synth::{random_codes, SplitMix64};
use nhl_index::{Codes, CodesView};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Neighbours per query, as in `faiss_interop.py`.
const K: usize = 10;

fn faiss_python() -> Option<PathBuf> {
    match std::env::var_os("NHL_FAISS_PYTHON") {
        Some(python) => Some(PathBuf::from(python)),
        None if std::env::var("NHL_REQUIRE_FAISS").is_ok_and(|v| v == "1") => {
            panic!("NHL_REQUIRE_FAISS=1 but NHL_FAISS_PYTHON is not set")
        }
        None => {
            eprintln!(
                "faiss_interop: skipped, NHL_FAISS_PYTHON is not set (a Python with faiss-cpu \
                 and numpy; NHL_REQUIRE_FAISS=1 makes this a failure)"
            );
            None
        }
    }
}

fn save(path: &Path, shape: Vec<usize>, data: NpyData) -> anyhow::Result<()> {
    Ok(write_npy(path, &NpyArray { shape, data })?)
}

fn load_i64(path: &Path) -> anyhow::Result<Vec<i64>> {
    match nhl_index::npy::read_npy(path)?.data {
        NpyData::I64(v) => Ok(v),
        other => anyhow::bail!(
            "{}: int64 expected, found {}",
            path.display(),
            other.dtype_name()
        ),
    }
}

fn load_i32(path: &Path) -> anyhow::Result<Vec<i32>> {
    match nhl_index::npy::read_npy(path)?.data {
        NpyData::I32(v) => Ok(v),
        other => anyhow::bail!(
            "{}: int32 expected, found {}",
            path.display(),
            other.dtype_name()
        ),
    }
}

/// The Hamming distance of two codes, word by word, without the library's kernels.
fn distance(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// Both answers are correct k-nearest-neighbour results with distances `distances`: every label
/// is at its stated distance, no label repeats, and below each query's k-th distance (where the
/// two sides may pick differently among ties) the labels agree.
fn check_labels(
    name: &str,
    theirs: &[i64],
    ours: &[i64],
    distances: &[i32],
    queries: &Codes,
    database: &Codes,
    ids: Option<&[i64]>,
) {
    let row_of: HashMap<i64, usize> = match ids {
        Some(ids) => ids.iter().enumerate().map(|(row, &id)| (id, row)).collect(),
        None => (0..database.len()).map(|row| (row as i64, row)).collect(),
    };
    for q in 0..queries.len() {
        let d = &distances[q * K..(q + 1) * K];
        let kth = d[K - 1];
        let below = |labels: &[i64]| -> Vec<i64> {
            let mut v: Vec<i64> = labels
                .iter()
                .zip(d)
                .filter(|(_, &dist)| dist < kth)
                .map(|(&l, _)| l)
                .collect();
            v.sort_unstable();
            v
        };
        for (side, labels) in [("faiss", theirs), ("ours", ours)] {
            let labels = &labels[q * K..(q + 1) * K];
            let mut unique = labels.to_vec();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), K, "{name}: query {q}: {side} repeats a label");
            for (&label, &dist) in labels.iter().zip(d) {
                let row = row_of[&label];
                let truth = distance(
                    queries.view().code(q).unwrap(),
                    database.view().code(row).unwrap(),
                );
                assert_eq!(
                    truth as i32, dist,
                    "{name}: query {q}: {side} label {label}"
                );
            }
        }
        assert_eq!(
            below(&theirs[q * K..(q + 1) * K]),
            below(&ours[q * K..(q + 1) * K]),
            "{name}: query {q}: labels below the k-th distance"
        );
    }
}

/// Our kNN of `queries` in `database`: distances, and labels (the IDs when given, else rows).
fn our_knn(
    queries: CodesView<'_>,
    database: CodesView<'_>,
    ids: Option<&[i64]>,
) -> anyhow::Result<(Vec<i32>, Vec<i64>)> {
    let hits = knn(queries, database, K)?;
    let distances = hits.distances.iter().map(|&d| d as i32).collect();
    let labels = hits
        .ids
        .iter()
        .map(|&row| ids.map_or(row as i64, |ids| ids[row as usize]))
        .collect();
    Ok((distances, labels))
}

/// One case for FAISS to check: our file of `database` (with `ids`), the codes, the queries and
/// our search result.
fn write_our_case(
    dir: &Path,
    name: &str,
    database: CodesView<'_>,
    queries: CodesView<'_>,
    ids: Option<&[i64]>,
) -> anyhow::Result<()> {
    write_binary_index(&dir.join(format!("{name}.index")), database, ids)?;
    database
        .to_codes()
        .write_npy(&dir.join(format!("{name}.codes.npy")))?;
    queries
        .to_codes()
        .write_npy(&dir.join(format!("{name}.queries.npy")))?;
    if let Some(ids) = ids {
        save(
            &dir.join(format!("{name}.ids.npy")),
            vec![ids.len()],
            NpyData::I64(ids.to_vec()),
        )?;
    }
    if database.len() >= K {
        let (distances, labels) = our_knn(queries, database, ids)?;
        let shape = vec![queries.len(), K];
        save(
            &dir.join(format!("{name}.distances.npy")),
            shape.clone(),
            NpyData::I32(distances),
        )?;
        save(
            &dir.join(format!("{name}.labels.npy")),
            shape,
            NpyData::I64(labels),
        )?;
    }
    Ok(())
}

fn write_our_cases(dir: &Path) -> anyhow::Result<()> {
    let mut rng = SplitMix64::new(41);
    for (bits, n) in [
        (8, 300),
        (24, 300),
        (136, 257),
        (1024, 120),
        (64, 1),
        (16, 0),
    ] {
        let database = random_codes(n, bits, rng.next_u64())?;
        let queries = random_codes(17, bits, rng.next_u64())?;
        let ids: Vec<i64> = (0..n as i64).map(|i| i * 7919 - 1_000_000).collect();
        write_our_case(
            dir,
            &format!("ours_flat_{bits}"),
            database.view(),
            queries.view(),
            None,
        )?;
        let mapped = format!("ours_idmap_{bits}");
        write_our_case(dir, &mapped, database.view(), queries.view(), Some(&ids))?;
    }
    // A prefix: FAISS sees 64-bit codes, the first 8 bytes of each 136-bit code.
    let database = random_codes(300, 136, rng.next_u64())?;
    let queries = random_codes(17, 136, rng.next_u64())?;
    write_our_case(
        dir,
        "ours_flat_prefix64",
        database.prefix(64)?,
        queries.prefix(64)?,
        None,
    )?;

    // Signs with no exact zeros, for FAISS's real_to_binary to pack.
    let (rows, bits) = (40, 136);
    let values: Vec<f32> = (0..rows * bits)
        .map(|_| ((rng.next_u64() >> 40) as f32 + 0.5) / (1u64 << 24) as f32 - 0.5)
        .collect();
    Codes::from_signs(rows, bits, &values)?.write_npy(&dir.join("signs.codes.npy"))?;
    save(
        &dir.join("signs.values.npy"),
        vec![rows, bits],
        NpyData::F32(values),
    )
}

/// Read the FAISS-written case `name` and compare with what FAISS saved beside it.
fn check_faiss_case(dir: &Path, name: &str) -> anyhow::Result<()> {
    let path = |part: &str| dir.join(format!("{name}.{part}"));
    let file = read_binary_index(&path("index"), None)?;
    let codes = Codes::read_npy(&path("codes.npy"), None)?;
    assert_eq!(file.codes, codes, "{name}: codes");
    let ids = if path("ids.npy").exists() {
        Some(load_i64(&path("ids.npy"))?)
    } else {
        None
    };
    assert_eq!(file.ids, ids, "{name}: IDs");
    if path("distances.npy").exists() {
        let queries = Codes::read_npy(&path("queries.npy"), None)?;
        let (distances, labels) = our_knn(queries.view(), file.codes.view(), file.ids.as_deref())?;
        let theirs = load_i32(&path("distances.npy"))?;
        assert_eq!(distances, theirs, "{name}: distances");
        let their_labels = load_i64(&path("labels.npy"))?;
        check_labels(
            name,
            &their_labels,
            &labels,
            &theirs,
            &queries,
            &codes,
            ids.as_deref(),
        );
    }
    Ok(())
}

#[test]
fn faiss_reads_our_files_and_we_read_faiss_files() -> anyhow::Result<()> {
    let Some(python) = faiss_python() else {
        return Ok(());
    };
    let dir = std::env::temp_dir().join(format!("nhl-faiss-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    write_our_cases(&dir)?;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faiss_interop.py");
    let run = Command::new(&python).arg(&script).arg(&dir).output()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run.status.success(),
        "{} {}: {said}",
        python.display(),
        script.display()
    );
    eprintln!("{}", said.trim_end());

    let mut names: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| Some(f.strip_suffix(".index")?.to_string()))
        .filter(|f| f.starts_with("faiss_"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 12, "the FAISS cases: {names:?}");
    for name in &names {
        check_faiss_case(&dir, name)?;
    }

    for (file, found) in [
        ("refuse_hnsw.index", "\"IBHf\" (IndexBinaryHNSW)"),
        ("refuse_ivf.index", "\"IBwF\" (IndexBinaryIVF)"),
        ("refuse_idmap_hnsw.index", "\"IBHf\" (IndexBinaryHNSW)"),
        ("refuse_float.index", "\"IxF2\" (IndexFlatL2, a float index"),
    ] {
        let err = read_binary_index(&dir.join(file), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains(file) && err.contains(found), "{file}: {err}");
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

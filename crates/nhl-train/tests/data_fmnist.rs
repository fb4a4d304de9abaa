//! The Fashion-MNIST protocols pick exactly the items docs/PROTOCOL.md names, and bad IDX files give
//! errors that name the file.

use std::path::{Path, PathBuf};

use nhl_index::eval::Labels;
use nhl_train::data::idx::{read_pair, IdxPair};
use nhl_train::data::{load_protocol, Dataset, Protocol};
use nhl_train::TrainError;

fn repo_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data")
        .join(name)
}

fn raw_t10k() -> IdxPair {
    read_pair(
        &repo_data("t10k-images-idx3-ubyte.gz"),
        &repo_data("t10k-labels-idx1-ubyte.gz"),
    )
    .unwrap()
}

fn single(d: &Dataset) -> &[u32] {
    match &d.labels {
        Labels::Single(v) => v,
        Labels::Multi { .. } => panic!("Fashion-MNIST labels are single"),
    }
}

/// Checks that row `k` of `set` is item `items[k]` of `raw`: pixels / 255 and label.
fn assert_rows(set: &Dataset, raw: &IdxPair, items: &[usize], what: &str) {
    assert_eq!(set.len(), items.len(), "{what} size");
    for (k, &i) in items.iter().enumerate() {
        let expected: Vec<f32> = raw.pixels[i * 784..(i + 1) * 784]
            .iter()
            .map(|&p| p as f32 / 255.0)
            .collect();
        assert_eq!(set.row(k), &expected[..], "{what} row {k} is file item {i}");
        assert_eq!(single(set)[k], u32::from(raw.labels[i]), "{what} label {k}");
    }
}

/// The protocol's index lists, computed by counting rather than by grouping.
fn protocol_items(labels: &[u8], q: usize, t: usize) -> (Vec<usize>, Vec<usize>) {
    let mut query = Vec::new();
    let mut train = Vec::new();
    for class in 0..10u8 {
        let mut seen = 0;
        for (i, &l) in labels.iter().enumerate() {
            if l == class {
                if seen < q {
                    query.push(i);
                } else if seen < q + t {
                    train.push(i);
                }
                seen += 1;
            }
        }
    }
    (query, train)
}

#[test]
fn t10k_split_matches_the_protocol() {
    let split = load_protocol(Protocol::FmnistT10k, None).unwrap();
    let raw = raw_t10k();
    assert_eq!(split.name, "fmnist-t10k");
    assert_eq!(
        (split.query.len(), split.train.len(), split.database.len()),
        (1000, 5000, 9000)
    );
    assert_eq!(split.query.dim, 784);
    let (query, train) = protocol_items(&raw.labels, 100, 500);
    let database: Vec<usize> = (0..10_000).filter(|i| !query.contains(i)).collect();
    assert_rows(&split.query, &raw, &query, "query");
    assert_rows(&split.train, &raw, &train, "train");
    assert_rows(&split.database, &raw, &database, "database");
    // Class blocks: class c fills query rows 100c..100c+100 and train rows 500c..500c+500, and
    // the first query of class c is the first image of class c in the file.
    for c in 0..10u32 {
        assert!(single(&split.query)[c as usize * 100..][..100]
            .iter()
            .all(|&l| l == c));
        assert!(single(&split.train)[c as usize * 500..][..500]
            .iter()
            .all(|&l| l == c));
        let first = raw.labels.iter().position(|&l| u32::from(l) == c).unwrap();
        assert_eq!(query[c as usize * 100], first);
        let in_db = single(&split.database).iter().filter(|&&l| l == c).count();
        assert_eq!(in_db, 900, "class {c} in the database");
    }
    // The database holds every training item and no query.
    assert!(train.iter().all(|i| database.binary_search(i).is_ok()));
    assert!(query.iter().all(|i| database.binary_search(i).is_err()));
    assert_eq!(split.train.n_classes(), 10);
}

#[test]
fn full_fmnist_split_matches_the_protocol_when_installed() {
    let dir = Path::new(nhl_train::data::fmnist::DEFAULT_FMNIST_DIR);
    if !dir.join("train-images-idx3-ubyte.gz").is_file() {
        eprintln!("skipped: {} is not installed", dir.display());
        return;
    }
    let split = load_protocol(Protocol::Fmnist, None).unwrap();
    assert_eq!(
        (split.query.len(), split.train.len(), split.database.len()),
        (1000, 5000, 69_000)
    );
    let t10k = raw_t10k();
    let train_raw = read_pair(
        &dir.join("train-images-idx3-ubyte.gz"),
        &dir.join("train-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    let (query, _) = protocol_items(&t10k.labels, 100, 0);
    let (train, _) = protocol_items(&train_raw.labels, 500, 0);
    assert_rows(&split.query, &t10k, &query, "query");
    assert_rows(&split.train, &train_raw, &train, "train");
    // The database starts with the whole train file, then the t10k non-queries in file order.
    let db_head = split.database.subset(&(0..60_000).collect::<Vec<_>>());
    assert_rows(
        &db_head,
        &train_raw,
        &(0..60_000).collect::<Vec<_>>(),
        "database head",
    );
    let db_tail = split.database.subset(&(60_000..69_000).collect::<Vec<_>>());
    let rest: Vec<usize> = (0..10_000).filter(|i| !query.contains(i)).collect();
    assert_rows(&db_tail, &t10k, &rest, "database tail");
}

/// A fresh empty directory under the system temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nhl-data-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn idx_bytes(rank: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, rank];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(data);
    out
}

#[test]
fn data_dir_reads_plain_idx_files_like_the_embedded_copy() {
    let dir = temp_dir("plain");
    let raw = raw_t10k();
    std::fs::write(
        dir.join("t10k-images-idx3-ubyte"),
        idx_bytes(3, &[10_000, 28, 28], &raw.pixels),
    )
    .unwrap();
    std::fs::write(
        dir.join("t10k-labels-idx1-ubyte"),
        idx_bytes(1, &[10_000], &raw.labels),
    )
    .unwrap();
    let from_dir = load_protocol(Protocol::FmnistT10k, Some(&dir)).unwrap();
    assert_eq!(from_dir, load_protocol(Protocol::FmnistT10k, None).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_idx_files_name_the_file() {
    let msg = |e: TrainError| e.to_string();
    // Missing files.
    let dir = temp_dir("missing");
    let e = msg(load_protocol(Protocol::Fmnist, Some(&dir)).unwrap_err());
    assert!(
        e.contains("t10k-images-idx3-ubyte.gz") && e.contains("not found"),
        "{e}"
    );

    // Wrong magic: a label file where the images should be.
    let labels = idx_bytes(1, &[6000], &[0; 6000]);
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), &labels).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), &labels).unwrap();
    let e = msg(load_protocol(Protocol::FmnistT10k, Some(&dir)).unwrap_err());
    assert!(
        e.contains("t10k-images-idx3-ubyte") && e.contains("magic"),
        "{e}"
    );

    // Truncated images.
    std::fs::write(
        dir.join("t10k-images-idx3-ubyte"),
        idx_bytes(3, &[6000, 2, 2], &[0; 100]),
    )
    .unwrap();
    let e = msg(load_protocol(Protocol::FmnistT10k, Some(&dir)).unwrap_err());
    assert!(
        e.contains("t10k-images-idx3-ubyte") && e.contains("truncated"),
        "{e}"
    );

    // Count mismatch between images and labels.
    std::fs::write(
        dir.join("t10k-images-idx3-ubyte"),
        idx_bytes(3, &[5999, 1, 1], &[0; 5999]),
    )
    .unwrap();
    let e = msg(load_protocol(Protocol::FmnistT10k, Some(&dir)).unwrap_err());
    assert!(e.contains("5999") && e.contains("6000"), "{e}");

    // Too few items of a class (all 6000 labels are class 0).
    std::fs::write(
        dir.join("t10k-images-idx3-ubyte"),
        idx_bytes(3, &[6000, 1, 1], &[0; 6000]),
    )
    .unwrap();
    let e = msg(load_protocol(Protocol::FmnistT10k, Some(&dir)).unwrap_err());
    assert!(e.contains("class 1 has 0 items"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();

    assert_eq!("fmnist".parse::<Protocol>().unwrap(), Protocol::Fmnist);
    assert_eq!(Protocol::FmnistT10k.to_string(), "fmnist-t10k");
    assert!(msg("mnist".parse::<Protocol>().unwrap_err()).contains("mnist"));
}

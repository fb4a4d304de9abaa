//! User data from .npy and safetensors files: the sets are cut as documented, and every bad input
//! gives an error that names the file and what was wrong.

use std::path::{Path, PathBuf};

use nhl_index::eval::Labels;
use nhl_index::npy::{write_npy, NpyArray, NpyData};
use nhl_train::data::{load_user, UserSource, UserSplit};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

/// A fresh empty directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("nhl-user-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn npy(&self, name: &str, shape: &[usize], data: NpyData) -> PathBuf {
        let path = self.0.join(name);
        write_npy(
            &path,
            &NpyArray {
                shape: shape.to_vec(),
                data,
            },
        )
        .unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn npy_source(features: &Path, labels: &Path) -> UserSource {
    format!("{},{}", features.display(), labels.display())
        .parse()
        .unwrap()
}

fn err(split: &UserSplit, n_classes: Option<usize>) -> String {
    load_user(split, n_classes).unwrap_err().to_string()
}

#[test]
fn sizes_split_cuts_queries_train_and_database() {
    let dir = TempDir::new("sizes");
    let n = 10;
    let f = dir.npy(
        "f.npy",
        &[n, 2],
        NpyData::U8((0..2 * n as u8).map(|x| x * 10).collect()),
    );
    let l = dir.npy(
        "l.npy",
        &[n],
        NpyData::I64((0..n as i64).map(|i| i % 3).collect()),
    );
    let split = load_user(
        &UserSplit::Sizes {
            source: npy_source(&f, &l),
            query: 3,
            train: 4,
        },
        None,
    )
    .unwrap();
    assert_eq!(
        (split.query.len(), split.train.len(), split.database.len()),
        (3, 4, 7)
    );
    assert_eq!(split.query.n_classes(), 3);
    // u8 features are scaled by 1/255; the database starts right after the queries.
    assert_eq!(split.query.row(1), &[20.0 / 255.0, 30.0 / 255.0]);
    assert_eq!(split.train.row(0), split.database.row(0));
    assert_eq!(split.train.labels, Labels::Single(vec![0, 1, 2, 0]));
    assert_eq!(
        split.database.labels,
        Labels::Single(vec![0, 1, 2, 0, 1, 2, 0])
    );

    let too_big = UserSplit::Sizes {
        source: npy_source(&f, &l),
        query: 5,
        train: 6,
    };
    assert!(err(&too_big, None).contains("f.npy"));
    let e = err(
        &UserSplit::Sizes {
            source: npy_source(&f, &l),
            query: 3,
            train: 4,
        },
        Some(2),
    );
    assert!(
        e.contains("l.npy") && e.contains("item 2 has class 2"),
        "{e}"
    );
}

fn safetensors_file(
    dir: &TempDir,
    name: &str,
    features: &[f32],
    dim: usize,
    multi_hot: &[u8],
    c: usize,
) -> PathBuf {
    let fb: Vec<u8> = features.iter().flat_map(|x| x.to_le_bytes()).collect();
    let n = features.len() / dim;
    let tensors = vec![
        (
            "features",
            TensorView::new(Dtype::F32, vec![n, dim], &fb).unwrap(),
        ),
        (
            "labels",
            TensorView::new(Dtype::U8, vec![n, c], multi_hot).unwrap(),
        ),
    ];
    let path = dir.0.join(name);
    std::fs::write(&path, safetensors::serialize(tensors, None).unwrap()).unwrap();
    path
}

#[test]
fn files_split_reads_safetensors_and_multi_hot_labels() {
    let dir = TempDir::new("files");
    let q = safetensors_file(
        &dir,
        "q.safetensors",
        &[0.5, 1.5, 2.5, 3.5],
        2,
        &[1, 0, 1, 0, 0, 0],
        3,
    );
    let t = safetensors_file(&dir, "t.safetensors", &[1.0, 2.0], 2, &[0, 1, 0], 3);
    let f16 = dir.npy(
        "d.npy",
        &[2, 2],
        // 1.0, -2.0, 0.5 and the smallest subnormal 2^-24 in IEEE half precision.
        NpyData::U16F16(vec![0x3c00, 0xc000, 0x3800, 0x0001]),
    );
    let dl = dir.npy(
        "dl.npy",
        &[2, 3],
        NpyData::F32(vec![0.0, 0.0, 1.0, 1.0, 1.0, 0.0]),
    );
    let split = load_user(
        &UserSplit::Files {
            query: q.to_str().unwrap().parse().unwrap(),
            train: t.to_str().unwrap().parse().unwrap(),
            database: npy_source(&f16, &dl),
        },
        None,
    )
    .unwrap();
    assert_eq!(split.query.features, vec![0.5, 1.5, 2.5, 3.5]);
    assert_eq!(
        split.database.features,
        vec![1.0, -2.0, 0.5, 2f32.powi(-24)]
    );
    assert_eq!(
        split.query.labels,
        Labels::Multi {
            n_classes: 3,
            rows: vec![vec![0, 2], vec![]]
        }
    );
    assert_eq!(
        split.database.label_matrix(),
        vec![0.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    );

    // A database with another feature width names both files.
    let wide = dir.npy("wide.npy", &[2, 3], NpyData::F32(vec![0.0; 6]));
    let e = err(
        &UserSplit::Files {
            query: q.to_str().unwrap().parse().unwrap(),
            train: t.to_str().unwrap().parse().unwrap(),
            database: npy_source(&wide, &dl),
        },
        None,
    );
    assert!(e.contains("wide.npy") && e.contains("q.safetensors"), "{e}");

    // Multi-hot sets must agree on the classes, and cannot be mixed with class indices.
    let two_cols = dir.npy("dl2.npy", &[2, 2], NpyData::U8(vec![0, 1, 1, 0]));
    let mixed = |labels: &Path| UserSplit::Files {
        query: q.to_str().unwrap().parse().unwrap(),
        train: t.to_str().unwrap().parse().unwrap(),
        database: npy_source(&f16, labels),
    };
    let e = err(&mixed(&two_cols), None);
    assert!(
        e.contains("dl2.npy") && e.contains("3 class columns"),
        "{e}"
    );
    let indices = dir.npy("di.npy", &[2], NpyData::U8(vec![0, 1]));
    let e = err(&mixed(&indices), None);
    assert!(
        e.contains("di.npy") && e.contains("same kind of labels"),
        "{e}"
    );
    let e = err(&mixed(&dl), Some(4));
    assert!(e.contains("4 class columns"), "{e}");
}

#[test]
fn bad_user_files_name_the_file_and_the_problem() {
    let dir = TempDir::new("bad");
    let good_l = dir.npy("l.npy", &[3], NpyData::U8(vec![0, 1, 0]));
    let sizes = |f: &Path, l: &Path| UserSplit::Sizes {
        source: npy_source(f, l),
        query: 1,
        train: 1,
    };

    let nan = dir.npy(
        "nan.npy",
        &[3, 2],
        NpyData::F32(vec![0.0, 1.0, 2.0, f32::NAN, 0.0, 0.0]),
    );
    let e = err(&sizes(&nan, &good_l), None);
    assert!(
        e.contains("nan.npy") && e.contains("item 1, feature 1") && e.contains("NaN"),
        "{e}"
    );

    let inf = dir.npy("inf.npy", &[3, 1], NpyData::U16F16(vec![0, 0x7c00, 0]));
    let e = err(&sizes(&inf, &good_l), None);
    assert!(
        e.contains("inf.npy") && e.contains("item 1, feature 0") && e.contains("inf"),
        "{e}"
    );

    let f = dir.npy("f.npy", &[3, 2], NpyData::F32(vec![0.0; 6]));
    let short_l = dir.npy("short.npy", &[2], NpyData::I32(vec![0, 1]));
    let e = err(&sizes(&f, &short_l), None);
    assert!(
        e.contains("f.npy holds 3") && e.contains("short.npy holds 2"),
        "{e}"
    );

    let rank3 = dir.npy("r3.npy", &[3, 1, 2], NpyData::F32(vec![0.0; 6]));
    let e = err(&sizes(&rank3, &good_l), None);
    assert!(e.contains("r3.npy") && e.contains("rank-2"), "{e}");

    let int_f = dir.npy("int.npy", &[3, 2], NpyData::I32(vec![0; 6]));
    let e = err(&sizes(&int_f, &good_l), None);
    assert!(e.contains("int.npy") && e.contains("int32"), "{e}");

    let float_l = dir.npy("fl.npy", &[3], NpyData::F32(vec![0.0; 3]));
    let e = err(&sizes(&f, &float_l), None);
    assert!(
        e.contains("fl.npy") && e.contains("integer class indices"),
        "{e}"
    );

    let neg = dir.npy("neg.npy", &[3], NpyData::I64(vec![0, -1, 0]));
    let e = err(&sizes(&f, &neg), None);
    assert!(e.contains("neg.npy") && e.contains("class -1"), "{e}");

    let two = dir.npy("two.npy", &[3, 2], NpyData::U8(vec![1, 0, 0, 2, 0, 1]));
    let e = err(&sizes(&f, &two), None);
    assert!(
        e.contains("two.npy") && e.contains("item 1, class 1"),
        "{e}"
    );

    let empty = dir.npy("empty.npy", &[0, 2], NpyData::F32(vec![]));
    let e = err(&sizes(&empty, &good_l), None);
    assert!(
        e.contains("empty.npy") && e.contains("at least one item"),
        "{e}"
    );

    let e = err(&sizes(&dir.0.join("absent.npy"), &good_l), None);
    assert!(e.contains("absent.npy") && e.contains("not found"), "{e}");

    let junk = dir.0.join("junk.safetensors");
    std::fs::write(&junk, b"not a safetensors file").unwrap();
    let e = load_user(
        &UserSplit::Sizes {
            source: UserSource::SafeTensors(junk),
            query: 1,
            train: 1,
        },
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("junk.safetensors"), "{e}");

    assert!("x.bin".parse::<UserSource>().is_err());
}

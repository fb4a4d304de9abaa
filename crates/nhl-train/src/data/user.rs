//! The user's own data: features and labels in `.npy` or safetensors files.
//!
//! A *source* is one file or a pair of files holding `n` items:
//! - `DATA.safetensors` with two tensors, `features` and `labels`;
//! - `FEATURES.npy,LABELS.npy` (two paths joined by a comma).
//!
//! Features: rank 2 `[n, dim]`, float32, float16, float64 or uint8, read by [`INPUT_SCALING`]
//! (uint8 is scaled by 1/255, as the image protocols do); every value finite. Labels: class
//! indices `[n]` (uint8, int32, int64), or a multi-hot matrix `[n, C]` of 0/1 (uint8, int32,
//! int64, float32); two items are relevant when they share a class.
//!
//! A split is either one source cut by sizes ([`UserSplit::Sizes`]: the first `query` items are
//! the queries, the next `train` items the training set, and the database is every item that is
//! not a query, so it contains the training set as in the protocols), or three sources, one per
//! set ([`UserSplit::Files`]).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use nhl_index::eval::Labels;
use nhl_index::npy::{read_npy, NpyArray, NpyData};
use safetensors::{Dtype, SafeTensors};

use super::features::INPUT_SCALING;
use super::{Dataset, Split};
use crate::error::TrainError;

/// Where one set of items comes from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum UserSource {
    /// One safetensors file with tensors `features` and `labels`.
    SafeTensors(PathBuf),
    /// Two `.npy` files.
    Npy {
        /// `[n, dim]` features.
        features: PathBuf,
        /// `[n]` class indices or `[n, C]` multi-hot labels.
        labels: PathBuf,
    },
}

impl UserSource {
    /// The files of the source.
    pub fn files(&self) -> Vec<&Path> {
        match self {
            UserSource::SafeTensors(path) => vec![path],
            UserSource::Npy { features, labels } => vec![features, labels],
        }
    }
}

impl FromStr for UserSource {
    type Err = TrainError;

    /// `DATA.safetensors` or `FEATURES.npy,LABELS.npy`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(',') {
            Some((f, l)) if !f.is_empty() && !l.is_empty() && !l.contains(',') => {
                Ok(UserSource::Npy {
                    features: f.into(),
                    labels: l.into(),
                })
            }
            None if s.ends_with(".safetensors") => Ok(UserSource::SafeTensors(s.into())),
            _ => Err(TrainError::Split {
                what: format!(
                    "data source {s:?}: expected DATA.safetensors or FEATURES.npy,LABELS.npy"
                ),
            }),
        }
    }
}

/// How the user's data becomes query, train and database sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserSplit {
    /// One source: items `0..query` are queries, `query..query+train` the training set, and
    /// `query..n` the database.
    Sizes {
        /// The items.
        source: UserSource,
        /// Number of queries (at least 1).
        query: usize,
        /// Number of training items (at least 1).
        train: usize,
    },
    /// One source per set.
    Files {
        /// The queries.
        query: UserSource,
        /// The training items.
        train: UserSource,
        /// The items searched.
        database: UserSource,
    },
}

/// Loads and checks the user's data. `n_classes` fixes the number of classes of class-index
/// labels (every label must be below it); without it the largest label + 1 is used. For multi-hot
/// labels it must equal the number of columns when given.
pub fn load_user(split: &UserSplit, n_classes: Option<usize>) -> Result<Split, TrainError> {
    if n_classes == Some(0) {
        return Err(TrainError::Config {
            flag: "--classes",
            reason: "must be at least 1".into(),
        });
    }
    match split {
        UserSplit::Sizes {
            source,
            query,
            train,
        } => {
            let all = load_source(source)?;
            let n = all.len();
            if *query == 0 || *train == 0 || query.checked_add(*train).is_none_or(|qt| qt > n) {
                return Err(TrainError::Split {
                    what: format!(
                        "split sizes {query},{train}: need at least one query and one training \
                         item, and query + train <= {n} (the items of {})",
                        all.features_path.display()
                    ),
                });
            }
            let c = settle_classes(&[&all], n_classes)?;
            let set = into_dataset(all, c);
            let query_idx: Vec<usize> = (0..*query).collect();
            let train_idx: Vec<usize> = (*query..query + train).collect();
            let database_idx: Vec<usize> = (*query..n).collect();
            Ok(Split {
                name: "user".into(),
                query: set.subset(&query_idx),
                train: set.subset(&train_idx),
                database: set.subset(&database_idx),
            })
        }
        UserSplit::Files {
            query,
            train,
            database,
        } => {
            let q = load_source(query)?;
            let t = load_source(train)?;
            let d = load_source(database)?;
            for other in [&t, &d] {
                if other.dim != q.dim {
                    return Err(TrainError::Content {
                        path: other.features_path.clone(),
                        field: "features".into(),
                        expected: format!(
                            "{} features per item, as in {}",
                            q.dim,
                            q.features_path.display()
                        ),
                        found: format!("{}", other.dim),
                    });
                }
            }
            let c = settle_classes(&[&q, &t, &d], n_classes)?;
            Ok(Split {
                name: "user".into(),
                query: into_dataset(q, c),
                train: into_dataset(t, c),
                database: into_dataset(d, c),
            })
        }
    }
}

/// Labels as read, before the number of classes is settled across files.
#[derive(Debug)]
enum RawLabels {
    /// One class index per item, as read (so a negative one can be reported).
    Indices(Vec<i64>),
    /// The classes of every item, from a 0/1 matrix with `n_classes` columns.
    MultiHot {
        n_classes: usize,
        rows: Vec<Vec<u32>>,
    },
}

/// One source, read and checked on its own.
#[derive(Debug)]
struct Loaded {
    features: Vec<f32>,
    dim: usize,
    labels: RawLabels,
    features_path: PathBuf,
    labels_path: PathBuf,
}

impl Loaded {
    fn len(&self) -> usize {
        self.features.len() / self.dim
    }
}

/// One `DATA.safetensors` source from the bytes of the file, checked as [`load_user`] checks its
/// sources, as a data set whose class count is that of its labels; `path` only names the file in
/// errors.
pub fn parse_safetensors_source(path: &Path, bytes: &[u8]) -> Result<Dataset, TrainError> {
    let (features, labels) = safetensors_arrays(path, bytes)?;
    let loaded = checked_source(features, labels, path.to_path_buf(), path.to_path_buf())?;
    let c = settle_classes(&[&loaded], None)?;
    Ok(into_dataset(loaded, c))
}

fn load_source(source: &UserSource) -> Result<Loaded, TrainError> {
    match source {
        UserSource::SafeTensors(path) => {
            let (f, l) = read_safetensors(path)?;
            checked_source(f, l, path.clone(), path.clone())
        }
        UserSource::Npy { features, labels } => checked_source(
            read_npy_checked(features)?,
            read_npy_checked(labels)?,
            features.clone(),
            labels.clone(),
        ),
    }
}

/// The features and labels of one source, checked on their own and against each other.
fn checked_source(
    features: NpyArray,
    labels: NpyArray,
    features_path: PathBuf,
    labels_path: PathBuf,
) -> Result<Loaded, TrainError> {
    let (features, n, dim) = to_features(features, &features_path)?;
    let labels = to_raw_labels(labels, &labels_path)?;
    let n_labels = match &labels {
        RawLabels::Indices(v) => v.len(),
        RawLabels::MultiHot { rows, .. } => rows.len(),
    };
    if n_labels != n {
        return Err(TrainError::CountMismatch {
            first: features_path,
            n_first: n,
            second: labels_path,
            n_second: n_labels,
        });
    }
    Ok(Loaded {
        features,
        dim,
        labels,
        features_path,
        labels_path,
    })
}

fn read_npy_checked(path: &Path) -> Result<NpyArray, TrainError> {
    check_is_file(path, "a .npy file")?;
    Ok(read_npy(path)?)
}

/// Fails unless `path` is a file (or a link to one): absent, and a directory, each get their own
/// message. `what` says what the file should hold.
fn check_is_file(path: &Path, what: &str) -> Result<(), TrainError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(TrainError::IsDirectory {
            path: path.to_path_buf(),
            expected: what.into(),
        }),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(TrainError::NotFound {
            path: path.to_path_buf(),
            hint: what.into(),
        }),
        Err(source) => Err(TrainError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The `features` and `labels` tensors of a safetensors file, as arrays.
fn read_safetensors(path: &Path) -> Result<(NpyArray, NpyArray), TrainError> {
    check_is_file(
        path,
        "a .safetensors file with tensors `features` and `labels`",
    )?;
    let bytes = std::fs::read(path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    safetensors_arrays(path, &bytes)
}

/// The `features` and `labels` tensors of the bytes of a safetensors file, as arrays.
fn safetensors_arrays(path: &Path, bytes: &[u8]) -> Result<(NpyArray, NpyArray), TrainError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| TrainError::Content {
        path: path.to_path_buf(),
        field: "header".into(),
        expected: "a safetensors file".into(),
        found: e.to_string(),
    })?;
    let tensor = |name: &str| -> Result<NpyArray, TrainError> {
        let view = st.tensor(name).map_err(|_| TrainError::Content {
            path: path.to_path_buf(),
            field: name.into(),
            expected: format!("a tensor named `{name}`"),
            found: format!("tensors {:?}", st.names()),
        })?;
        let raw = view.data();
        let data = match view.dtype() {
            Dtype::U8 => NpyData::U8(raw.to_vec()),
            Dtype::I32 => NpyData::I32(le_chunks(raw, i32::from_le_bytes)),
            Dtype::I64 => NpyData::I64(le_chunks(raw, i64::from_le_bytes)),
            Dtype::F16 => NpyData::U16F16(le_chunks(raw, u16::from_le_bytes)),
            Dtype::F32 => NpyData::F32(le_chunks(raw, f32::from_le_bytes)),
            Dtype::F64 => NpyData::F64(le_chunks(raw, f64::from_le_bytes)),
            other => {
                return Err(TrainError::Content {
                    path: path.to_path_buf(),
                    field: name.into(),
                    expected: "dtype U8, I32, I64, F16, F32 or F64".into(),
                    found: format!("{other:?}"),
                })
            }
        };
        Ok(NpyArray {
            shape: view.shape().to_vec(),
            data,
        })
    };
    Ok((tensor("features")?, tensor("labels")?))
}

/// Little-endian values of `N` bytes each (the safetensors byte order).
fn le_chunks<T, const N: usize>(raw: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N)
        .map(|c| {
            let mut b = [0u8; N];
            b.copy_from_slice(c);
            from(b)
        })
        .collect()
}

/// Features as f32 `[n, dim]`, checked for rank, size and finiteness.
fn to_features(array: NpyArray, path: &Path) -> Result<(Vec<f32>, usize, usize), TrainError> {
    let content = |expected: &str, found: String| TrainError::Content {
        path: path.to_path_buf(),
        field: "features".into(),
        expected: expected.into(),
        found,
    };
    let &[n, dim] = array.shape.as_slice() else {
        return Err(content(
            "a rank-2 array [n, dim]",
            format!("shape {:?}", array.shape),
        ));
    };
    if n == 0 || dim == 0 {
        return Err(content(
            "at least one item and one feature",
            format!("shape {:?}", array.shape),
        ));
    }
    let dtype = array.data.dtype_name();
    let s = INPUT_SCALING;
    let values: Vec<f32> = match array.data {
        NpyData::F32(v) => v.into_iter().map(|x| s.f32(x)).collect(),
        NpyData::F64(v) => {
            // Checked before the conversion, which would turn 1e300 into an infinity.
            if let Some(bad) = v
                .iter()
                .position(|x| x.is_finite() && x.abs() > f64::from(f32::MAX))
            {
                return Err(TrainError::FeatureRange {
                    path: path.to_path_buf(),
                    item: bad / dim,
                    feature: bad % dim,
                    value: v[bad],
                });
            }
            v.into_iter().map(|x| s.f64(x)).collect()
        }
        NpyData::U16F16(v) => v.into_iter().map(|x| s.f16(x)).collect(),
        NpyData::U8(v) => v.into_iter().map(|x| s.u8(x)).collect(),
        NpyData::I32(_) | NpyData::I64(_) => {
            return Err(content(
                "dtype float32, float16, float64 or uint8",
                dtype.into(),
            ))
        }
    };
    if let Some(bad) = values.iter().position(|x| !x.is_finite()) {
        return Err(TrainError::NonFinite {
            path: path.to_path_buf(),
            item: bad / dim,
            feature: bad % dim,
            value: values[bad],
        });
    }
    Ok((values, n, dim))
}

/// Labels of one file: class indices (rank 1) or a 0/1 multi-hot matrix (rank 2).
fn to_raw_labels(array: NpyArray, path: &Path) -> Result<RawLabels, TrainError> {
    let content = |expected: String, found: String| TrainError::Content {
        path: path.to_path_buf(),
        field: "labels".into(),
        expected,
        found,
    };
    let dtype = array.data.dtype_name();
    match array.shape.as_slice() {
        [_] => match array.data {
            NpyData::U8(v) => Ok(RawLabels::Indices(v.into_iter().map(i64::from).collect())),
            NpyData::I32(v) => Ok(RawLabels::Indices(v.into_iter().map(i64::from).collect())),
            NpyData::I64(v) => Ok(RawLabels::Indices(v)),
            _ => Err(content(
                "integer class indices (uint8, int32 or int64) for rank-1 labels".into(),
                dtype.into(),
            )),
        },
        &[_, c] => {
            let values: Vec<f64> = match array.data {
                NpyData::U8(v) => v.into_iter().map(f64::from).collect(),
                NpyData::I32(v) => v.into_iter().map(f64::from).collect(),
                NpyData::I64(v) => v.into_iter().map(|x| x as f64).collect(),
                NpyData::F32(v) => v.into_iter().map(f64::from).collect(),
                _ => {
                    return Err(content(
                        "a multi-hot matrix of uint8, int32, int64 or float32".into(),
                        dtype.into(),
                    ))
                }
            };
            if c == 0 {
                return Err(content(
                    "at least one class column".into(),
                    format!("shape {:?}", array.shape),
                ));
            }
            let mut rows = Vec::with_capacity(values.len() / c);
            for (item, row) in values.chunks_exact(c).enumerate() {
                let mut classes = Vec::new();
                for (class, &v) in row.iter().enumerate() {
                    if v == 1.0 {
                        classes.push(class as u32);
                    } else if v != 0.0 {
                        return Err(content(
                            format!("0 or 1 in the multi-hot matrix (item {item}, class {class})"),
                            format!("{v}"),
                        ));
                    }
                }
                rows.push(classes);
            }
            Ok(RawLabels::MultiHot { n_classes: c, rows })
        }
        shape => Err(content(
            "class indices [n] or a multi-hot matrix [n, C]".into(),
            format!("shape {shape:?}"),
        )),
    }
}

/// Settles the number of classes across the sets and checks every label against it.
///
/// Class indices may not number more classes than there are items (all sets together): a class
/// count is paid for in memory and time by every item and every centre, so one stray large label
/// (a wrong column, an ID) must not silently make millions of empty classes.
fn settle_classes(sets: &[&Loaded], n_classes: Option<usize>) -> Result<usize, TrainError> {
    let Some(first) = sets.first() else {
        return Ok(n_classes.unwrap_or(0));
    };
    match &first.labels {
        RawLabels::Indices(_) => {
            let items: usize = sets.iter().map(|s| s.len()).sum();
            // The largest label, where it is: (set, item, label).
            let largest = sets
                .iter()
                .enumerate()
                .filter_map(|(k, s)| match &s.labels {
                    RawLabels::Indices(v) => v
                        .iter()
                        .enumerate()
                        .max_by_key(|&(i, &label)| (label, std::cmp::Reverse(i)))
                        .map(|(i, &label)| (k, i, label)),
                    RawLabels::MultiHot { .. } => None,
                })
                .max_by_key(|&(k, i, label)| (label, std::cmp::Reverse((k, i))));
            let c = match (n_classes, largest) {
                (Some(c), _) if c > items => {
                    return Err(TrainError::Config {
                        flag: "--classes",
                        reason: format!(
                            "{c} classes for {items} items: more classes than items; \
                             give at most {items}"
                        ),
                    })
                }
                (Some(c), _) => c,
                (None, Some((k, item, label))) if label >= 0 && label as u64 >= items as u64 => {
                    return Err(TrainError::ClassCount {
                        path: sets[k].labels_path.clone(),
                        item,
                        label,
                        items,
                    })
                }
                (None, largest) => {
                    largest.map_or(1, |(_, _, max)| usize::try_from(max).map_or(1, |m| m + 1))
                }
            };
            for s in sets {
                let RawLabels::Indices(v) = &s.labels else {
                    return Err(kind_mismatch(s, first));
                };
                let bad = v
                    .iter()
                    .position(|&label| usize::try_from(label).map_or(true, |k| k >= c));
                if let Some(item) = bad {
                    return Err(TrainError::LabelRange {
                        path: s.labels_path.clone(),
                        item,
                        label: v[item],
                        n_classes: c,
                    });
                }
            }
            Ok(c)
        }
        RawLabels::MultiHot { n_classes: c, .. } => {
            let expected = n_classes.unwrap_or(*c);
            for s in sets {
                match &s.labels {
                    RawLabels::MultiHot { n_classes: cs, .. } if *cs == expected => {}
                    RawLabels::MultiHot { n_classes: cs, .. } => {
                        return Err(TrainError::Content {
                            path: s.labels_path.clone(),
                            field: "labels".into(),
                            expected: format!("{expected} class columns"),
                            found: format!("{cs}"),
                        })
                    }
                    RawLabels::Indices(_) => return Err(kind_mismatch(s, first)),
                }
            }
            Ok(expected)
        }
    }
}

fn kind_mismatch(s: &Loaded, first: &Loaded) -> TrainError {
    TrainError::Content {
        path: s.labels_path.clone(),
        field: "labels".into(),
        expected: format!(
            "the same kind of labels as {} (class indices or multi-hot)",
            first.labels_path.display()
        ),
        found: "the other kind".into(),
    }
}

/// A checked source as a data set with `n_classes` classes (labels already checked by
/// [`settle_classes`], so every class index fits).
fn into_dataset(loaded: Loaded, n_classes: usize) -> Dataset {
    let labels = match loaded.labels {
        RawLabels::Indices(v) => Labels::Single(v.into_iter().map(|k| k as u32).collect()),
        RawLabels::MultiHot { rows, .. } => Labels::Multi { n_classes, rows },
    };
    Dataset {
        features: loaded.features,
        dim: loaded.dim,
        labels,
        n_classes,
    }
}

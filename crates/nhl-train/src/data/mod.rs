//! Data sets and their query / train / database splits.
//!
//! Two kinds of sources feed a [`Split`]:
//! - the Fashion-MNIST protocols of PROTOCOL.md ([`Protocol`], [`load_protocol`]), read from IDX
//!   files ([`idx`]); `fmnist-t10k` is compiled into the binary, so it needs no file at all;
//! - the user's own arrays in `.npy` or safetensors files ([`user`]).
//!
//! Every split is deterministic: no random numbers decide which item lands in which set.

pub mod fmnist;
pub mod idx;
pub mod user;

use std::path::PathBuf;

use nhl_index::eval::Labels;
use nhl_index::IndexError;

pub use fmnist::{load_protocol, Protocol};
pub use user::{load_user, UserSource, UserSplit};

/// Everything that can go wrong while reading or splitting a data set. Errors about a file name
/// the file, the field and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file that the data set needs does not exist.
    #[error("{path}: file not found ({hint})")]
    NotFound {
        /// The file looked for.
        path: PathBuf,
        /// Where else was looked and how to get the file.
        hint: String,
    },
    /// Reading a file failed at the operating-system level.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A gzip stream could not be inflated (a cut-off download, a corrupt file).
    #[error("{path}: gzip stream is corrupt or truncated: {source}")]
    Gzip {
        /// The file.
        path: PathBuf,
        /// What the decoder reported.
        source: std::io::Error,
    },
    /// An IDX file does not start with the magic number of the array it should hold.
    #[error("{path}: IDX magic: expected {expected:#010x} ({what}), found {found:#010x}")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The magic number of an unsigned-byte array of the expected rank.
        expected: u32,
        /// The first four bytes of the file, big-endian.
        found: u32,
        /// The array the file should hold.
        what: &'static str,
    },
    /// A file ends before the data its header announces.
    #[error("{path}: truncated: {field} needs {expected} bytes, the file has {found}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The part of the file that is cut off.
        field: &'static str,
        /// Bytes the header announces.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// A field of a file holds something other than what is needed.
    #[error("{path}: {field}: expected {expected}, found {found}")]
    Content {
        /// The file.
        path: PathBuf,
        /// The array, tensor or header field.
        field: String,
        /// What was expected.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// Two files that describe the same items disagree on how many there are.
    #[error("{first} holds {n_first} items but {second} holds {n_second}")]
    CountMismatch {
        /// The first file (the features or images).
        first: PathBuf,
        /// Its number of items.
        n_first: usize,
        /// The second file (the labels).
        second: PathBuf,
        /// Its number of items.
        n_second: usize,
    },
    /// A feature is NaN or infinite.
    #[error(
        "{path}: features: item {item}, feature {feature} is {value} (features must be finite)"
    )]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// Row of the first bad value.
        item: usize,
        /// Column of the first bad value.
        feature: usize,
        /// The value.
        value: f32,
    },
    /// A class label is negative or not below the number of classes.
    #[error("{path}: labels: item {item} has class {label}, expected 0..{n_classes}")]
    LabelRange {
        /// The file.
        path: PathBuf,
        /// The item.
        item: usize,
        /// Its label (as read, before any conversion).
        label: i64,
        /// The number of classes.
        n_classes: usize,
    },
    /// A class has too few items for the protocol's query and train blocks.
    #[error("{path}: class {class} has {found} items, the protocol needs at least {needed}")]
    TooFewOfClass {
        /// The label file.
        path: PathBuf,
        /// The class.
        class: usize,
        /// Items the protocol takes from the class.
        needed: usize,
        /// Items of that class in the file.
        found: usize,
    },
    /// The sets of a split cannot be formed as asked.
    #[error("split: {what}")]
    Split {
        /// Which rule was broken, with the numbers.
        what: String,
    },
    /// A protocol name that is not one of the known ones.
    #[error("unknown protocol {found:?}: expected `fmnist-t10k` or `fmnist`")]
    UnknownProtocol {
        /// The name given.
        found: String,
    },
    /// A `.npy` file could not be read (the message names the file).
    #[error(transparent)]
    Npy(#[from] IndexError),
}

/// One set of items: features, labels and the number of classes they index.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// `len() x dim` features, row-major.
    pub features: Vec<f32>,
    /// Features per item.
    pub dim: usize,
    /// One class index per item, or a set of classes per item.
    pub labels: Labels,
    /// Number of classes of the whole split (the query set may lack some of them).
    pub n_classes: usize,
}

impl Dataset {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the set has no item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of classes `C` of the split.
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// Features of item `i` (`dim` values). Panics when `i >= len()`, like slice indexing.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.dim..(i + 1) * self.dim]
    }

    /// The multi-hot label matrix `Y` (`len() x n_classes`, row-major): `Y[i][c] = 1` when item
    /// `i` has class `c`, else 0. For single-label data each row is one-hot, so `Y Y^T` is the
    /// similarity `s_ij = 1[y_i . y_j > 0]` that the pairwise losses use.
    pub fn label_matrix(&self) -> Vec<f32> {
        let c = self.n_classes;
        let mut y = vec![0.0; self.len() * c];
        match &self.labels {
            Labels::Single(classes) => {
                for (row, &k) in y.chunks_exact_mut(c).zip(classes) {
                    row[k as usize] = 1.0;
                }
            }
            Labels::Multi { rows, .. } => {
                for (row, classes) in y.chunks_exact_mut(c).zip(rows) {
                    for &k in classes {
                        row[k as usize] = 1.0;
                    }
                }
            }
        }
        y
    }

    /// The items at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut features = Vec::with_capacity(indices.len() * self.dim);
        for &i in indices {
            features.extend_from_slice(self.row(i));
        }
        let labels = match &self.labels {
            Labels::Single(classes) => {
                Labels::Single(indices.iter().map(|&i| classes[i]).collect())
            }
            Labels::Multi { n_classes, rows } => Labels::Multi {
                n_classes: *n_classes,
                rows: indices.iter().map(|&i| rows[i].clone()).collect(),
            },
        };
        Dataset {
            features,
            dim: self.dim,
            labels,
            n_classes: self.n_classes,
        }
    }
}

/// The three sets of a retrieval experiment.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// Name of the protocol or source (`fmnist-t10k`, `fmnist`, `user`).
    pub name: String,
    /// Items whose codes are searched for.
    pub query: Dataset,
    /// Items the model is fitted to.
    pub train: Dataset,
    /// Items searched (for the protocols it contains the train set and no query).
    pub database: Dataset,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_matrix_is_multi_hot_and_subset_keeps_order() {
        let multi = Dataset {
            features: vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            dim: 2,
            labels: Labels::Multi {
                n_classes: 3,
                rows: vec![vec![0, 2], vec![], vec![1]],
            },
            n_classes: 3,
        };
        assert_eq!(
            multi.label_matrix(),
            vec![1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        );
        let sub = multi.subset(&[2, 0]);
        assert_eq!(sub.features, vec![4.0, 5.0, 0.0, 1.0]);
        assert_eq!(sub.label_matrix(), vec![0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);

        let single = Dataset {
            features: vec![0.0; 3],
            dim: 1,
            labels: Labels::Single(vec![2, 0, 1]),
            n_classes: 4,
        };
        assert_eq!(single.len(), 3);
        assert_eq!(
            single.label_matrix(),
            vec![0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
        );
    }
}

//! Data sets and their query / train / database splits.
//!
//! Two kinds of sources feed a [`Split`]:
//! - the Fashion-MNIST protocols of docs/PROTOCOL.md ([`Protocol`], [`load_protocol`]), read from IDX
//!   files ([`idx`]); `fmnist-t10k` is compiled into the binary, so it needs no file at all;
//! - the user's own arrays in `.npy` or safetensors files ([`user`]).
//!
//! Every split is deterministic: no random numbers decide which item lands in which set.

pub mod features;
pub mod fingerprint;
pub mod fmnist;
pub mod idx;
pub mod user;

use nhl_index::eval::Labels;

pub use features::{InputScaling, INPUT_SCALING};
pub use fmnist::{load_protocol, protocol_files, Protocol};
pub use user::{load_user, UserSource, UserSplit};

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

//! The Fashion-MNIST protocols of docs/PROTOCOL.md.
//!
//! The t10k pair is compiled into the binary with `include_bytes!` (4.4 MB): the default protocol
//! then runs from any working directory and from an installed binary, with no file to find and no
//! read that can fail; cargo rebuilds when the files change. The full protocol reads the four
//! files from a directory (the Debian package's by default).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nhl_index::eval::Labels;

use super::features::INPUT_SCALING;
use super::idx::{parse_pair, read_pair, IdxPair};
use super::{Dataset, Split};
use crate::error::TrainError;

/// Where `apt-get install dataset-fashion-mnist` puts the four files.
pub const DEFAULT_FMNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Fashion-MNIST has ten classes.
const N_CLASSES: usize = 10;
/// Queries taken from the head of every class (docs/PROTOCOL.md).
const QUERY_PER_CLASS: usize = 100;
/// Training items taken per class (docs/PROTOCOL.md).
const TRAIN_PER_CLASS: usize = 500;

const T10K_IMAGES: &str = "t10k-images-idx3-ubyte";
const T10K_LABELS: &str = "t10k-labels-idx1-ubyte";
const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";

static EMBEDDED_T10K_IMAGES: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../data/t10k-images-idx3-ubyte.gz"
));
static EMBEDDED_T10K_LABELS: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../data/t10k-labels-idx1-ubyte.gz"
));

/// A named benchmark split (docs/PROTOCOL.md, "Data").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Protocol {
    /// The t10k file only: 1,000 queries, 5,000 train, 9,000 database. Embedded.
    FmnistT10k,
    /// Both files: 1,000 queries (t10k), 5,000 train (train file), 69,000 database.
    Fmnist,
}

impl Protocol {
    /// The name used on the command line and in `metrics.json`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::FmnistT10k => "fmnist-t10k",
            Protocol::Fmnist => "fmnist",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Protocol {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fmnist-t10k" => Ok(Protocol::FmnistT10k),
            "fmnist" => Ok(Protocol::Fmnist),
            _ => Err(TrainError::UnknownProtocol { found: s.into() }),
        }
    }
}

/// Loads the split of `protocol`. `data_dir` holds the IDX files (gzip `NAME.gz` or plain `NAME`);
/// without it `fmnist-t10k` uses the embedded copy and `fmnist` reads [`DEFAULT_FMNIST_DIR`].
pub fn load_protocol(protocol: Protocol, data_dir: Option<&Path>) -> Result<Split, TrainError> {
    let t10k = match data_dir {
        None if protocol == Protocol::FmnistT10k => parse_pair(
            EMBEDDED_T10K_IMAGES,
            Path::new("data/t10k-images-idx3-ubyte.gz (embedded)"),
            EMBEDDED_T10K_LABELS,
            Path::new("data/t10k-labels-idx1-ubyte.gz (embedded)"),
        )?,
        _ => {
            let dir = data_dir.unwrap_or(Path::new(DEFAULT_FMNIST_DIR));
            read_pair(&locate(dir, T10K_IMAGES)?, &locate(dir, T10K_LABELS)?)?
        }
    };
    match protocol {
        Protocol::FmnistT10k => t10k_split(&t10k),
        Protocol::Fmnist => {
            let dir = data_dir.unwrap_or(Path::new(DEFAULT_FMNIST_DIR));
            let train = read_pair(&locate(dir, TRAIN_IMAGES)?, &locate(dir, TRAIN_LABELS)?)?;
            full_split(&train, &t10k)
        }
    }
}

/// The files [`load_protocol`] reads for `protocol` with `data_dir`: none for the embedded
/// `fmnist-t10k`. Errors as [`load_protocol`]'s when one is missing.
pub fn protocol_files(
    protocol: Protocol,
    data_dir: Option<&Path>,
) -> Result<Vec<PathBuf>, TrainError> {
    let stems: &[&str] = match (protocol, data_dir) {
        (Protocol::FmnistT10k, None) => &[],
        (Protocol::FmnistT10k, Some(_)) => &[T10K_IMAGES, T10K_LABELS],
        (Protocol::Fmnist, _) => &[T10K_IMAGES, T10K_LABELS, TRAIN_IMAGES, TRAIN_LABELS],
    };
    let dir = data_dir.unwrap_or(Path::new(DEFAULT_FMNIST_DIR));
    stems.iter().map(|stem| locate(dir, stem)).collect()
}

/// `dir/NAME.gz`, else `dir/NAME`.
fn locate(dir: &Path, stem: &str) -> Result<PathBuf, TrainError> {
    if dir.is_file() {
        return Err(TrainError::NotADirectory {
            path: dir.to_path_buf(),
            hint: "; --data-dir names the directory that holds the IDX files".into(),
        });
    }
    let gz = dir.join(format!("{stem}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    let plain = dir.join(stem);
    if plain.is_file() {
        return Ok(plain);
    }
    Err(TrainError::NotFound {
        path: gz,
        hint: format!(
            "nor {}; `apt-get install dataset-fashion-mnist` puts the files in {DEFAULT_FMNIST_DIR}, \
             or pass --data-dir",
            plain.display()
        ),
    })
}

/// Item indices of every class in file order, after checking that every label is a class and
/// that every class has at least `needed` items.
fn class_indices(pair: &IdxPair, needed: usize) -> Result<Vec<Vec<usize>>, TrainError> {
    let mut classes = vec![Vec::new(); N_CLASSES];
    for (item, &label) in pair.labels.iter().enumerate() {
        let class = classes
            .get_mut(usize::from(label))
            .ok_or_else(|| TrainError::LabelRange {
                path: pair.labels_path.clone(),
                item,
                label: i64::from(label),
                n_classes: N_CLASSES,
            })?;
        class.push(item);
    }
    for (class, items) in classes.iter().enumerate() {
        if items.len() < needed {
            return Err(TrainError::TooFewOfClass {
                path: pair.labels_path.clone(),
                class,
                needed,
                found: items.len(),
            });
        }
    }
    Ok(classes)
}

/// Concatenates `classes[c][from..to]` for c = 0, 1, ...: the class-block order of the query and
/// train sets.
fn blocks(classes: &[Vec<usize>], from: usize, to: usize) -> Vec<usize> {
    classes
        .iter()
        .flat_map(|items| items[from..to].iter().copied())
        .collect()
}

/// Pixel bytes / 255 ([`INPUT_SCALING`]) and labels of the items `indices` of each
/// `(pair, indices)` part, in order.
fn gather(parts: &[(&IdxPair, &[usize])]) -> Dataset {
    let dim = parts.first().map_or(0, |(pair, _)| pair.dim);
    let n: usize = parts.iter().map(|(_, idx)| idx.len()).sum();
    let mut features = Vec::with_capacity(n * dim);
    let mut labels = Vec::with_capacity(n);
    for (pair, indices) in parts {
        for &i in *indices {
            features.extend(
                pair.pixels[i * dim..(i + 1) * dim]
                    .iter()
                    .map(|&p| INPUT_SCALING.u8(p)),
            );
            labels.push(u32::from(pair.labels[i]));
        }
    }
    Dataset {
        features,
        dim,
        labels: Labels::Single(labels),
        n_classes: N_CLASSES,
    }
}

/// Indices of `0..n` that are not in `taken`, ascending.
fn complement(n: usize, taken: &[usize]) -> Vec<usize> {
    let mut mask = vec![false; n];
    for &i in taken {
        mask[i] = true;
    }
    (0..n).filter(|&i| !mask[i]).collect()
}

fn t10k_split(t10k: &IdxPair) -> Result<Split, TrainError> {
    let classes = class_indices(t10k, QUERY_PER_CLASS + TRAIN_PER_CLASS)?;
    let query = blocks(&classes, 0, QUERY_PER_CLASS);
    let train = blocks(&classes, QUERY_PER_CLASS, QUERY_PER_CLASS + TRAIN_PER_CLASS);
    let database = complement(t10k.len(), &query);
    Ok(Split {
        name: Protocol::FmnistT10k.name().into(),
        query: gather(&[(t10k, &query)]),
        train: gather(&[(t10k, &train)]),
        database: gather(&[(t10k, &database)]),
    })
}

fn full_split(train_file: &IdxPair, t10k: &IdxPair) -> Result<Split, TrainError> {
    if train_file.dim != t10k.dim {
        return Err(TrainError::Split {
            what: format!(
                "the train images have {} pixels each but the t10k images have {}",
                train_file.dim, t10k.dim
            ),
        });
    }
    let query = blocks(&class_indices(t10k, QUERY_PER_CLASS)?, 0, QUERY_PER_CLASS);
    let train = blocks(
        &class_indices(train_file, TRAIN_PER_CLASS)?,
        0,
        TRAIN_PER_CLASS,
    );
    let all_train: Vec<usize> = (0..train_file.len()).collect();
    let rest = complement(t10k.len(), &query);
    Ok(Split {
        name: Protocol::Fmnist.name().into(),
        query: gather(&[(t10k, &query)]),
        train: gather(&[(train_file, &train)]),
        database: gather(&[(train_file, &all_train), (t10k, &rest)]),
    })
}

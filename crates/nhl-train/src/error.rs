//! The one error type of the crate: every fallible public function returns [`TrainError`].
//!
//! Errors about a file name the file, the field and what was expected; errors about a setting
//! name the command-line flag that sets it.

use std::path::PathBuf;

use nhl_autograd::AutogradError;
use nhl_index::IndexError;
use nhl_kernels::KernelError;

/// Everything that can stop reading data, training, or writing and reading a run's files.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A setting that cannot work, named as the command-line flag that sets it.
    #[error("invalid {flag}: {reason}")]
    Config {
        /// The setting.
        flag: &'static str,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// A run too large for the machine, named by the setting that sizes its largest part.
    #[error("{setting}: {reason}")]
    Memory {
        /// The flag (or the data property) that sizes the largest buffers.
        setting: &'static str,
        /// How much would be needed and how much there is.
        reason: String,
    },
    /// The tape or a kernel failed.
    #[error(transparent)]
    Autograd(#[from] AutogradError),
    /// Packing or evaluating codes failed, or a `.npy` file could not be read (the message names
    /// the file).
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The loss became NaN or infinite.
    #[error("the loss became {value} at epoch {}, batch {}; {advice}", .epoch + 1, .batch + 1)]
    Diverged {
        /// Epoch, from 0.
        epoch: usize,
        /// Batch in the epoch, from 0.
        batch: usize,
        /// The value.
        value: f64,
        /// What to change.
        advice: String,
    },
    /// A batch loss rose by orders of magnitude over its running level.
    #[error(
        "the loss grew to {value} at epoch {}, batch {}, over {} times its running level of \
         {level}: training diverged; {advice}",
        .epoch + 1, .batch + 1, crate::divergence::GROWTH_LIMIT
    )]
    LossGrew {
        /// Epoch, from 0.
        epoch: usize,
        /// Batch in the epoch, from 0.
        batch: usize,
        /// The batch loss.
        value: f64,
        /// The running level it is compared with.
        level: f64,
        /// What to change.
        advice: String,
    },
    /// Every code of a length is one value.
    #[error(
        "every {bits}-bit code is the same for all {items} query and database items after \
         {after}: the codes collapsed; {advice}"
    )]
    Collapsed {
        /// The code length.
        bits: usize,
        /// Query and database items encoded.
        items: usize,
        /// The evaluation (`epoch 3`, `training`).
        after: String,
        /// What to change.
        advice: String,
    },
    /// Features so large that float32 arithmetic on them overflows.
    #[error(
        "the {set} features reach {value:e} at item {item}, feature {feature}: beyond {limit:.1e} \
         the dot products of feature vectors overflow float32; scale the features to order 1 \
         (e.g. standardise each feature)"
    )]
    FeatureScale {
        /// `training`, `query` or `database`.
        set: &'static str,
        /// The item.
        item: usize,
        /// The feature.
        feature: usize,
        /// Its value.
        value: f32,
        /// The largest magnitude whose squares, summed over the features, stay finite.
        limit: f64,
    },

    /// An item's class is not below the number of classes of the centre matrix.
    #[error(
        "targets: item {item} has class {class}, but there are centres for {n_classes} classes"
    )]
    TargetClass {
        /// The item.
        item: usize,
        /// Its class.
        class: u32,
        /// Rows of the centre matrix.
        n_classes: usize,
    },
    /// A centre matrix is not `n_classes x bits`.
    #[error("targets: centres hold {len} values, not a multiple of {bits} bits")]
    TargetShape {
        /// Values in the centre matrix.
        len: usize,
        /// The code length.
        bits: usize,
    },

    /// A file that a data set needs does not exist.
    #[error("{path}: file not found ({hint})")]
    NotFound {
        /// The file looked for.
        path: PathBuf,
        /// Where else was looked and how to get the file.
        hint: String,
    },
    /// A directory where a file is needed.
    #[error("{path}: is a directory, not {expected}")]
    IsDirectory {
        /// The path.
        path: PathBuf,
        /// What it should be.
        expected: String,
    },
    /// A file where a directory is needed.
    #[error("{path}: is a file, not a directory{hint}")]
    NotADirectory {
        /// The path.
        path: PathBuf,
        /// What the directory should hold, as `; ...`, or empty.
        hint: String,
    },
    /// A file-system call failed.
    #[error("{path}: {source}")]
    Io {
        /// The path the call was about.
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
    /// A field of a data file holds something other than what is needed.
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
    /// A float64 feature beyond the range of float32, the precision training runs in.
    #[error(
        "{path}: features: item {item}, feature {feature} is {value:e}, beyond float32's range \
         (|x| <= 3.4e38) that training computes in; scale the features to order 1"
    )]
    FeatureRange {
        /// The file.
        path: PathBuf,
        /// Row of the first such value.
        item: usize,
        /// Column of the first such value.
        feature: usize,
        /// The value.
        value: f64,
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
    /// A class index so large that the class count (the largest label + 1) would exceed the
    /// number of items.
    #[error(
        "{path}: labels: item {item} has class {label}, but the data holds only {items} items: \
         class indices must be below the number of items (number the classes 0..C; is this \
         the label column?)"
    )]
    ClassCount {
        /// The file.
        path: PathBuf,
        /// The item with the largest label.
        item: usize,
        /// Its label.
        label: i64,
        /// Items of all sets together.
        items: usize,
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

    /// An output path exists and holds something.
    #[error("{path}: already exists and is not an empty directory; choose another --out")]
    Exists {
        /// The output path.
        path: PathBuf,
    },
    /// An output directory holds files that the command does not write, so replacing it would
    /// lose them.
    #[error(
        "{path}: holds {names}, which this command does not write; choose another --out or \
         remove them"
    )]
    Foreign {
        /// The output path.
        path: PathBuf,
        /// The foreign entries, comma-separated.
        names: String,
    },
    /// The run stopped on request (SIGINT, SIGTERM) after saving its training state.
    #[error("training stopped after batch {batch} of epoch {} on request; its state is saved", epoch + 1)]
    Interrupted {
        /// Epoch, from 0.
        epoch: usize,
        /// Batches of it done.
        batch: usize,
    },
    /// A training state does not fit the run resuming from it.
    #[error("the training state does not fit this run: {what}")]
    StateMismatch {
        /// What does not fit.
        what: String,
    },
    /// A data file of a run being resumed is not what the run started with.
    #[error(
        "{path}: changed since the run started (then {was}; now {now}); resuming would continue \
         the training on other data: restore the file, or start a new run"
    )]
    DataChanged {
        /// The file.
        path: PathBuf,
        /// Its length and hash when the run started.
        was: String,
        /// What it is now.
        now: String,
    },
    /// An output path is a symbolic link to nothing.
    #[error("{path}: is a symbolic link to {to}, which does not exist; choose another --out")]
    DanglingLink {
        /// The output path.
        path: PathBuf,
        /// Where the link points.
        to: PathBuf,
    },
    /// `metrics.json` does not hold the expected fields (the message names the field and line),
    /// or the metrics could not be written as JSON.
    #[error("{path}: not a valid metrics.json: {source}")]
    MetricsJson {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        source: serde_json::Error,
    },

    /// A checkpoint is not a readable safetensors file.
    #[error("{path}: not a safetensors checkpoint: {what}")]
    CheckpointFormat {
        /// The file.
        path: PathBuf,
        /// What the parser reported.
        what: String,
    },
    /// A checkpoint metadata key is missing or holds something else than expected.
    #[error("{path}: metadata {key:?}: expected {expected}, found {found}")]
    CheckpointMeta {
        /// The file.
        path: PathBuf,
        /// The metadata key.
        key: &'static str,
        /// What was expected.
        expected: String,
        /// What the file holds (`none` when absent).
        found: String,
    },
    /// A tensor the model needs is absent from a checkpoint.
    #[error("{path}: tensor {tensor:?} is missing")]
    TensorMissing {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
    },
    /// A checkpoint tensor is not F32.
    #[error("{path}: tensor {tensor:?}: expected dtype F32, found {found}")]
    TensorDtype {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// Its dtype.
        found: String,
    },
    /// A checkpoint tensor has another shape than the model needs, or its data does not fill
    /// its shape.
    #[error("{path}: tensor {tensor:?}: expected shape {expected:?}, found {found:?}")]
    TensorShape {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// The shape needed (for a save: the declared shape).
        expected: Vec<usize>,
        /// The shape found (for a save: `[number of values]`).
        found: Vec<usize>,
    },

    // Encoding with a trained model.
    /// Features handed to an encoder are not whole rows of its model's input width.
    #[error("features: {len} values are not whole rows of {dim}, the input width of {model}")]
    FeatureLength {
        /// The model's checkpoint file.
        model: PathBuf,
        /// Values given.
        len: usize,
        /// The model's input width.
        dim: usize,
    },
}

impl From<KernelError> for TrainError {
    fn from(e: KernelError) -> Self {
        TrainError::Autograd(AutogradError::Kernel(e))
    }
}

//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong in `nhl-index`. File errors name the file and what was expected;
/// argument errors name the argument and both values, so a message alone is enough to fix the call.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// Reading or writing a file failed at the operating-system level.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A `.npy` file is malformed or holds something this reader does not accept.
    #[error("{path}: not a valid .npy file: {what}")]
    Npy {
        /// The file.
        path: PathBuf,
        /// What was expected and what was found.
        what: String,
    },
    /// A file holds a well-formed array, but of the wrong dtype or rank for its use.
    #[error("{path}: {field}: expected {expected}, found {found}")]
    FileContent {
        /// The file.
        path: PathBuf,
        /// Which field or array of the file.
        field: String,
        /// What was expected.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// A safetensors buffer could not be parsed or written.
    #[error("safetensors: {0}")]
    SafeTensors(String),
    /// A number of bits outside 1..=1024, or beyond the length of the codes it applies to.
    #[error("bits: {what}")]
    Bits {
        /// Which limit was crossed, with the values.
        what: String,
    },
    /// Two arrays that must agree in shape do not.
    #[error("shape mismatch: {what}")]
    Shape {
        /// The two shapes and their roles.
        what: String,
    },
    /// An argument is out of its valid range (k larger than the database, a zero count, ...).
    #[error("invalid argument {name}: {what}")]
    Argument {
        /// The argument.
        name: &'static str,
        /// Why it is invalid, with the values.
        what: String,
    },
    /// An instruction-set path was requested that this CPU does not have.
    #[error("instruction set {0} is not available on this CPU")]
    IsaUnavailable(&'static str),
    /// An index was asked for a kind of search it cannot answer as specified.
    #[error("{index} does not support {search}: {why}")]
    Unsupported {
        /// The index.
        index: &'static str,
        /// The kind of search.
        search: &'static str,
        /// Why, and what to use instead.
        why: &'static str,
    },
}

impl IndexError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        IndexError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn arg(name: &'static str, what: impl Into<String>) -> Self {
        IndexError::Argument {
            name,
            what: what.into(),
        }
    }
}

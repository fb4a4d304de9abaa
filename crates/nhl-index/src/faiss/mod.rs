//! FAISS binary index files, both ways: [`write_binary_index`] writes an `IndexBinaryFlat` (or an
//! `IndexBinaryIDMap` around one when IDs are given) that `faiss.read_index_binary` loads, and
//! [`read_binary_index`] reads those two types back, from us or from FAISS, as [`Codes`] plus
//! optional IDs.
//!
//! # The codes
//! A FAISS binary vector of `d` bits is `code_size = d / 8` bytes, bit `j` in byte `j / 8` at
//! position `j % 8` (least significant first: `faiss.real_to_binary` sets bit `j` of byte `i`
//! from value `8 i + j`). That is the layout of [`Codes::to_bytes`], so codes cross unchanged and
//! the first `b / 8` bytes of a code are its `b`-bit prefix, in FAISS as here. FAISS only takes
//! whole bytes, so `d` is a multiple of 8. The `faiss_interop` test checks this against FAISS
//! itself: `real_to_binary` packs signs into the bytes of [`Codes::from_signs`], and
//! `IndexBinaryFlat.search` returns the Hamming distances of our search on the same files.
//!
//! # The file layout
//! FAISS writes its fields in the machine's byte order with no padding; every platform it ships
//! wheels for is little-endian, and so are these files. Each index starts with a four-character
//! code (`fourcc`) naming its class, stored as those four bytes.
//!
//! ```text
//! IndexBinaryFlat   "IBxF"  header  xb
//! IndexBinaryIDMap  "IBMp"  header  <the wrapped index, fourcc first>  id_map
//!                   ("IBM2" for IndexBinaryIDMap2: the same bytes)
//!
//! header (21 bytes):  d           i32   bits per vector, > 0, a multiple of 8
//!                     code_size   i32   bytes per vector, d / 8
//!                     ntotal      i64   number of vectors, >= 0
//!                     is_trained  u8    0 or 1 (a flat index is always trained: 1)
//!                     metric_type i32   a FAISS MetricType; binary indexes write 1
//!                                       (METRIC_L2, the default) and search by Hamming
//!                                       distance whatever it says
//! xb:                 u64 byte count (ntotal * code_size), then the codes, row after row
//! id_map:             u64 count (ntotal), then that many i64 IDs, row order
//! ```
//!
//! The reader checks every field as it reads it (an error names the file, the field and its byte
//! offset), compares every length with the bytes left in the file before allocating, refuses any
//! other index type by its fourcc and FAISS class name, and refuses bytes after the index.

mod read;
mod write;

pub use read::{parse_binary_index, read_binary_index};
pub use write::{binary_index_bytes, write_binary_index};

use crate::codes::Codes;

/// The contents of a FAISS binary index file that this crate reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinaryIndexFile {
    /// The codes, row order, cut to the requested prefix.
    pub codes: Codes,
    /// The bits per vector in the file (`d`); `codes.bits()` is smaller when a prefix was asked.
    pub file_bits: usize,
    /// The user IDs of an `IndexBinaryIDMap` (one per row, all different); `None` for an
    /// `IndexBinaryFlat`, whose results are row numbers.
    pub ids: Option<Vec<i64>>,
}

/// A four-character code as FAISS stores it: the four bytes in order (`fourcc("IBxF")` is
/// `u32::from_le_bytes(*b"IBxF")`).
pub(crate) type Fourcc = [u8; 4];

/// `IndexBinaryFlat`.
pub(crate) const FLAT: Fourcc = *b"IBxF";
/// `IndexBinaryIDMap`.
pub(crate) const ID_MAP: Fourcc = *b"IBMp";
/// `IndexBinaryIDMap2` (an ID map with a reverse lookup, built on load; the same bytes).
pub(crate) const ID_MAP2: Fourcc = *b"IBM2";

/// FAISS class names of the fourccs a user is likely to hand us, for refusals that say what the
/// file is. Binary classes first; the float ones are written by `faiss.write_index`, not
/// `write_index_binary`, and are listed so that a mix-up gets a clear answer.
const KNOWN: &[(&[u8; 4], &str, Kind)] = &[
    (b"IBxF", "IndexBinaryFlat", Kind::Binary),
    (b"IBMp", "IndexBinaryIDMap", Kind::Binary),
    (b"IBM2", "IndexBinaryIDMap2", Kind::Binary),
    (b"IBwF", "IndexBinaryIVF", Kind::Binary),
    (b"IBFf", "IndexBinaryFromFloat", Kind::Binary),
    (b"IBHf", "IndexBinaryHNSW", Kind::Binary),
    (b"IBHc", "IndexBinaryHNSWCagra", Kind::Binary),
    (b"IBHh", "IndexBinaryHash", Kind::Binary),
    (b"IBHm", "IndexBinaryMultiHash", Kind::Binary),
    (b"IxFl", "IndexFlat", Kind::Float),
    (b"IxF2", "IndexFlatL2", Kind::Float),
    (b"IxFI", "IndexFlatIP", Kind::Float),
    (b"IxMp", "IndexIDMap", Kind::Float),
    (b"IxM2", "IndexIDMap2", Kind::Float),
    (b"IwFl", "IndexIVFFlat", Kind::Float),
    (b"IwPQ", "IndexIVFPQ", Kind::Float),
    (b"IwSQ", "IndexIVFScalarQuantizer", Kind::Float),
    (b"IxPq", "IndexPQ", Kind::Float),
    (b"IxSQ", "IndexScalarQuantizer", Kind::Float),
    (b"IxHe", "IndexLSH", Kind::Float),
    (b"IHNf", "IndexHNSWFlat", Kind::Float),
    (b"IxPT", "IndexPreTransform", Kind::Float),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Binary,
    Float,
}

/// Whether `head`, the first bytes of a file, starts with the fourcc of a FAISS index class (one
/// this module can name): how a caller tells a FAISS index file from another format.
///
/// ```
/// use nhl_index::faiss::has_index_fourcc;
/// assert!(has_index_fourcc(b"IBxF\x40\0\0\0"));
/// assert!(!has_index_fourcc(b"\x93NUMPY\x01\0"));
/// ```
pub fn has_index_fourcc(head: &[u8]) -> bool {
    KNOWN.iter().any(|(code, _, _)| head.starts_with(&code[..]))
}

/// The fourcc as text, with bytes outside printable ASCII as `\xNN`.
pub(crate) fn printable(code: Fourcc) -> String {
    code.iter()
        .map(|&c| match c {
            b' '..=b'~' => char::from(c).to_string(),
            _ => format!("\\x{c:02x}"),
        })
        .collect()
}

/// What a fourcc is, for an error message: `"IBHf" (IndexBinaryHNSW, ...)`.
pub(crate) fn describe(code: Fourcc) -> String {
    let text = printable(code);
    match KNOWN.iter().find(|(c, _, _)| **c == code) {
        Some((_, name, Kind::Binary)) => format!("\"{text}\" ({name})"),
        Some((_, name, Kind::Float)) => format!(
            "\"{text}\" ({name}, a float index: FAISS writes those with write_index, \
             not write_index_binary)"
        ),
        None => format!("\"{text}\" (not a FAISS index type this reader knows)"),
    }
}

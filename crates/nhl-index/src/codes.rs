//! Packed binary codes and zero-copy prefix views.
//!
//! Layout (`docs/PROTOCOL.md`, Layout; the FAISS binary layout): bit `j` of a code lives in byte
//! `j / 8` at bit position `j % 8`; as little-endian u64 words, bit `j` lives in word `j / 64` at
//! position `j % 64`. Each code occupies `ceil(bits / 64)` whole words, so every code starts on a
//! word boundary and a prefix of `b` bits is the first `ceil(b / 64)` words of each code with the
//! last one masked.

use crate::error::IndexError;
use crate::npy::{self, NpyArray, NpyData};
use std::collections::HashMap;
use std::path::Path;

/// The longest code this crate handles.
pub const MAX_BITS: usize = 1024;

/// Number of u64 words holding `bits` bits.
pub(crate) fn words_for(bits: usize) -> usize {
    bits.div_ceil(64)
}

/// Mask of the valid bits in the last word of a `bits`-bit code (all ones when `bits % 64 == 0`).
pub(crate) fn last_mask(bits: usize) -> u64 {
    match bits % 64 {
        0 => u64::MAX,
        r => (1u64 << r) - 1,
    }
}

fn check_bits(bits: usize) -> Result<(), IndexError> {
    if bits == 0 || bits > MAX_BITS {
        return Err(IndexError::Bits {
            what: format!("{bits} bits requested, codes must have 1..={MAX_BITS} bits"),
        });
    }
    Ok(())
}

/// Owned packed codes: `n` items of `bits` bits, each stored as `ceil(bits / 64)` u64 words.
///
/// Invariant: bits at positions `>= bits` in the last word of every code are zero, so distances
/// over the full code never need a mask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Codes {
    n: usize,
    bits: usize,
    words: usize,
    data: Vec<u64>,
}

impl Codes {
    /// Codes from the byte layout of `docs/PROTOCOL.md`: `n` items of `ceil(bits / 8)` bytes each.
    ///
    /// Bits of the last byte beyond `bits` are ignored (cleared), so `bits` may be any value in
    /// `1..=1024`, not only a multiple of 8.
    pub fn from_bytes(n: usize, bits: usize, bytes: &[u8]) -> Result<Codes, IndexError> {
        check_bits(bits)?;
        let per_item = bits.div_ceil(8);
        let expected = n.checked_mul(per_item).ok_or_else(|| {
            IndexError::arg("n", format!("{n} items of {per_item} bytes overflow usize"))
        })?;
        if bytes.len() != expected {
            return Err(IndexError::Shape {
                what: format!(
                    "{n} codes of {bits} bits need {expected} bytes ({per_item} per code), got {}",
                    bytes.len()
                ),
            });
        }
        let words = words_for(bits);
        let mask = last_mask(bits);
        let mut data = vec![0u64; n * words];
        if per_item > 0 {
            for (code, item) in data
                .chunks_exact_mut(words)
                .zip(bytes.chunks_exact(per_item))
            {
                for (w, chunk) in code.iter_mut().zip(item.chunks(8)) {
                    let mut le = [0u8; 8];
                    le[..chunk.len()].copy_from_slice(chunk);
                    *w = u64::from_le_bytes(le);
                }
                code[words - 1] &= mask;
            }
        }
        Ok(Codes {
            n,
            bits,
            words,
            data,
        })
    }

    /// Codes from real values, row-major `n x bits`: bit `j` is 1 iff value `j` is `> 0`
    /// (NaN gives 0, as `NaN > 0` is false).
    pub fn from_signs(n: usize, bits: usize, values: &[f32]) -> Result<Codes, IndexError> {
        check_bits(bits)?;
        if Some(values.len()) != n.checked_mul(bits) {
            return Err(IndexError::Shape {
                what: format!(
                    "{n} codes of {bits} bits need {n} x {bits} values, got {}",
                    values.len()
                ),
            });
        }
        let words = words_for(bits);
        let mut data = vec![0u64; n * words];
        for (code, row) in data.chunks_exact_mut(words).zip(values.chunks_exact(bits)) {
            for (j, &v) in row.iter().enumerate() {
                code[j / 64] |= u64::from(v > 0.0) << (j % 64);
            }
        }
        Ok(Codes {
            n,
            bits,
            words,
            data,
        })
    }

    /// Codes from u64 words, `ceil(bits / 64)` per code; bits beyond `bits` are cleared.
    pub fn from_words(n: usize, bits: usize, mut data: Vec<u64>) -> Result<Codes, IndexError> {
        check_bits(bits)?;
        let words = words_for(bits);
        if Some(data.len()) != n.checked_mul(words) {
            return Err(IndexError::Shape {
                what: format!(
                    "{n} codes of {bits} bits need {} words, got {}",
                    n.saturating_mul(words),
                    data.len()
                ),
            });
        }
        let mask = last_mask(bits);
        for code in data.chunks_exact_mut(words) {
            code[words - 1] &= mask;
        }
        Ok(Codes {
            n,
            bits,
            words,
            data,
        })
    }

    /// The byte layout of `docs/PROTOCOL.md`: `n * ceil(bits / 8)` bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let per_item = self.bits.div_ceil(8);
        let mut out = Vec::with_capacity(self.n * per_item);
        for code in self.data.chunks_exact(self.words) {
            let start = out.len();
            for w in code {
                out.extend_from_slice(&w.to_le_bytes());
            }
            out.truncate(start + per_item);
        }
        out
    }

    /// Number of codes.
    pub fn len(&self) -> usize {
        self.n
    }

    /// True when there are no codes.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Bits per code.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The packed words, `ceil(bits / 64)` per code, code after code.
    pub fn words(&self) -> &[u64] {
        &self.data
    }

    /// A view of every code.
    pub fn view(&self) -> CodesView<'_> {
        CodesView {
            data: &self.data,
            n: self.n,
            stride: self.words,
            bits: self.bits,
        }
    }

    /// The first `bits` bits of every code (the nested shorter code), without copying.
    pub fn prefix(&self, bits: usize) -> Result<CodesView<'_>, IndexError> {
        self.view().prefix(bits)
    }

    /// Read codes from a `.npy` file holding uint8 `[n, bytes]` in the layout of
    /// `docs/PROTOCOL.md`. `bits` defaults to `8 * bytes`; a smaller value keeps that prefix of
    /// every code.
    pub fn read_npy(path: &Path, bits: Option<usize>) -> Result<Codes, IndexError> {
        let bytes = std::fs::read(path).map_err(|e| IndexError::io(path, e))?;
        Codes::parse_npy(path, &bytes, bits)
    }

    /// [`Codes::read_npy`] of the bytes of a `.npy` file; `path` only names it in errors.
    pub fn parse_npy(path: &Path, bytes: &[u8], bits: Option<usize>) -> Result<Codes, IndexError> {
        let array = npy::parse_npy(path, bytes)?;
        let content = |field: &str, expected: String, found: String| IndexError::FileContent {
            path: path.to_path_buf(),
            field: field.to_string(),
            expected,
            found,
        };
        let NpyData::U8(bytes) = &array.data else {
            return Err(content(
                "dtype",
                "uint8 (packed codes)".into(),
                array.data.dtype_name().into(),
            ));
        };
        if array.shape.len() != 2 {
            return Err(content(
                "shape",
                "rank 2 [n, bytes per code]".into(),
                format!("{:?}", array.shape),
            ));
        }
        let (n, per_item) = (array.shape[0], array.shape[1]);
        // An empty file (n = 0) may claim any width: one whose bits overflow is refused.
        let stored_bits = per_item.checked_mul(8).ok_or_else(|| {
            content(
                "shape",
                "[n, bytes per code] with codes of at most usize::MAX bits".into(),
                format!("{:?}", array.shape),
            )
        })?;
        let bits = bits.unwrap_or(stored_bits);
        if bits == 0 || bits > stored_bits || bits > MAX_BITS {
            return Err(IndexError::Bits {
                what: format!(
                    "{}: {bits} bits requested, the file holds {stored_bits}-bit codes \
                     (and at most {MAX_BITS} are supported)",
                    path.display()
                ),
            });
        }
        // Keep only the bytes of the requested prefix, so files with codes longer than
        // MAX_BITS can still be read at a supported length.
        let keep = bits.div_ceil(8);
        let prefix_bytes: Vec<u8> = if keep == per_item {
            bytes.clone()
        } else {
            bytes
                .chunks_exact(per_item)
                .flat_map(|row| &row[..keep])
                .copied()
                .collect()
        };
        Codes::from_bytes(n, bits, &prefix_bytes)
    }

    /// Write the codes as a uint8 `[n, ceil(bits / 8)]` `.npy` file (temporary file, then rename).
    pub fn write_npy(&self, path: &Path) -> Result<(), IndexError> {
        npy::write_npy(
            path,
            &NpyArray {
                shape: vec![self.n, self.bits.div_ceil(8)],
                data: NpyData::U8(self.to_bytes()),
            },
        )
    }

    /// Serialise as a safetensors buffer: one uint8 tensor `name` of shape `[n, ceil(bits / 8)]`
    /// and the metadata entry `"bits"`, so codes whose length is not a multiple of 8 round-trip.
    pub fn to_safetensors(&self, name: &str) -> Result<Vec<u8>, IndexError> {
        let bytes = self.to_bytes();
        let view = safetensors::tensor::TensorView::new(
            safetensors::Dtype::U8,
            vec![self.n, self.bits.div_ceil(8)],
            &bytes,
        )
        .map_err(|e| IndexError::SafeTensors(e.to_string()))?;
        let meta = HashMap::from([("bits".to_string(), self.bits.to_string())]);
        safetensors::serialize([(name, view)], Some(meta))
            .map_err(|e| IndexError::SafeTensors(e.to_string()))
    }

    /// Parse codes from a safetensors buffer written by [`Codes::to_safetensors`] (or any buffer
    /// with a uint8 `[n, bytes]` tensor `name`; without a `"bits"` entry, bits = 8 * bytes).
    pub fn from_safetensors(buffer: &[u8], name: &str) -> Result<Codes, IndexError> {
        let st_err = |what: String| IndexError::SafeTensors(what);
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(buffer).map_err(|e| st_err(e.to_string()))?;
        let tensors =
            safetensors::SafeTensors::deserialize(buffer).map_err(|e| st_err(e.to_string()))?;
        let t = tensors
            .tensor(name)
            .map_err(|e| st_err(format!("tensor {name:?}: {e}")))?;
        if t.dtype() != safetensors::Dtype::U8 || t.shape().len() != 2 {
            return Err(st_err(format!(
                "tensor {name:?}: expected uint8 [n, bytes], found {:?} {:?}",
                t.dtype(),
                t.shape()
            )));
        }
        let (n, per_item) = (t.shape()[0], t.shape()[1]);
        let bits = match meta.metadata().as_ref().and_then(|m| m.get("bits")) {
            Some(b) => b
                .parse::<usize>()
                .map_err(|_| st_err(format!("metadata bits = {b:?} is not an integer")))?,
            // An empty tensor (n = 0) may claim any width: one whose bits overflow is refused.
            None => per_item.checked_mul(8).ok_or_else(|| {
                st_err(format!(
                    "tensor {name:?}: {per_item} bytes per code is more than usize::MAX bits"
                ))
            })?,
        };
        if bits.div_ceil(8) != per_item {
            return Err(st_err(format!(
                "metadata bits = {bits} does not fit {per_item} bytes per code"
            )));
        }
        Codes::from_bytes(n, bits, t.data())
    }

    /// Write [`Codes::to_safetensors`] to a file (temporary file, then rename).
    pub fn write_safetensors(&self, path: &Path, name: &str) -> Result<(), IndexError> {
        npy::write_atomic(path, &self.to_safetensors(name)?)
    }

    /// Read a file written by [`Codes::write_safetensors`].
    pub fn read_safetensors(path: &Path, name: &str) -> Result<Codes, IndexError> {
        let buffer = std::fs::read(path).map_err(|e| IndexError::io(path, e))?;
        Codes::from_safetensors(&buffer, name).map_err(|e| match e {
            IndexError::SafeTensors(what) => IndexError::FileContent {
                path: path.to_path_buf(),
                field: format!("tensor {name:?}"),
                expected: "uint8 [n, bytes] codes".into(),
                found: what,
            },
            other => other,
        })
    }
}

/// A borrowed view of `n` codes of `bits` bits, stored `stride` words apart. A prefix view shares
/// the storage of the full codes: its codes are the first `ceil(bits / 64)` words of each stride,
/// with the bits beyond `bits` in the last word to be masked by [`CodesView::last_word_mask`].
#[derive(Clone, Copy, Debug)]
pub struct CodesView<'a> {
    data: &'a [u64],
    n: usize,
    stride: usize,
    bits: usize,
}

impl<'a> CodesView<'a> {
    /// Number of codes.
    pub fn len(&self) -> usize {
        self.n
    }

    /// True when there are no codes.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Bits per code in this view.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Words that hold one code of this view: `ceil(bits / 64)`.
    pub fn words(&self) -> usize {
        words_for(self.bits)
    }

    /// Distance in words between consecutive codes in the underlying storage.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The mask of valid bits in the last word of each code.
    pub fn last_word_mask(&self) -> u64 {
        last_mask(self.bits)
    }

    /// The raw words of code `i` (`words()` of them; the last one unmasked), or `None` past the end.
    pub fn code(&self, i: usize) -> Option<&'a [u64]> {
        if i >= self.n {
            return None;
        }
        let start = i * self.stride;
        self.data.get(start..start + self.words())
    }

    /// The underlying storage from code `i` on (crate-internal; used by the scan kernels).
    pub(crate) fn raw_from(&self, i: usize) -> &'a [u64] {
        &self.data[i * self.stride..]
    }

    /// Codes `range` of this view.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Result<CodesView<'a>, IndexError> {
        if range.start > range.end || range.end > self.n {
            return Err(IndexError::arg(
                "range",
                format!("{range:?} is outside 0..{}", self.n),
            ));
        }
        let data = if range.start == range.end {
            &self.data[..0]
        } else {
            &self.data[range.start * self.stride..]
        };
        Ok(CodesView {
            data,
            n: range.end - range.start,
            stride: self.stride,
            bits: self.bits,
        })
    }

    /// The first `bits` bits of every code, without copying.
    pub fn prefix(&self, bits: usize) -> Result<CodesView<'a>, IndexError> {
        check_bits(bits)?;
        if bits > self.bits {
            return Err(IndexError::Bits {
                what: format!(
                    "prefix of {bits} bits requested from {}-bit codes",
                    self.bits
                ),
            });
        }
        Ok(CodesView { bits, ..*self })
    }

    /// A compact owned copy (masked, `ceil(bits / 64)` words per code).
    pub fn to_codes(&self) -> Codes {
        let words = self.words();
        let mask = self.last_word_mask();
        let mut data = Vec::with_capacity(self.n * words);
        for i in 0..self.n {
            let start = i * self.stride;
            data.extend_from_slice(&self.data[start..start + words]);
            data[(i + 1) * words - 1] &= mask;
        }
        Codes {
            n: self.n,
            bits: self.bits,
            words,
            data,
        }
    }
}

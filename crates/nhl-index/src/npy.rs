//! A small, strict `.npy` reader and writer (format versions 1.0, 2.0 and 3.0; little-endian;
//! C order) for the dtypes this project exchanges with NumPy: codes (uint8), labels and ids
//! (int32, int64), features (float16 as raw bits, float32, float64), and masks (bool, read by
//! [`read_mask_npy`] only, as uint8: NumPy stores a bool as the byte 0 or 1).

use crate::error::IndexError;
use std::io::Read;
use std::path::Path;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The element type of an array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NpyDtype {
    /// `uint8` (`|u1`).
    U8,
    /// `int32` (`<i4`).
    I32,
    /// `int64` (`<i8`).
    I64,
    /// `float16` (`<f2`).
    F16,
    /// `float32` (`<f4`).
    F32,
    /// `float64` (`<f8`).
    F64,
}

impl NpyDtype {
    /// The NumPy name of the dtype, for messages.
    pub fn name(self) -> &'static str {
        match self {
            NpyDtype::U8 => "uint8",
            NpyDtype::I32 => "int32",
            NpyDtype::I64 => "int64",
            NpyDtype::F16 => "float16",
            NpyDtype::F32 => "float32",
            NpyDtype::F64 => "float64",
        }
    }

    /// Bytes per element.
    pub fn item_size(self) -> usize {
        match self {
            NpyDtype::U8 => 1,
            NpyDtype::F16 => 2,
            NpyDtype::I32 | NpyDtype::F32 => 4,
            NpyDtype::I64 | NpyDtype::F64 => 8,
        }
    }

    /// The little-endian `descr` string of the header.
    fn descr(self) -> &'static str {
        match self {
            NpyDtype::U8 => "|u1",
            NpyDtype::I32 => "<i4",
            NpyDtype::I64 => "<i8",
            NpyDtype::F16 => "<f2",
            NpyDtype::F32 => "<f4",
            NpyDtype::F64 => "<f8",
        }
    }

    /// The dtype of a type code without its byte-order character (`u1`, `f4`, ...).
    fn from_code(code: &str) -> Option<NpyDtype> {
        Some(match code {
            "u1" => NpyDtype::U8,
            "i4" => NpyDtype::I32,
            "i8" => NpyDtype::I64,
            "f2" => NpyDtype::F16,
            "f4" => NpyDtype::F32,
            "f8" => NpyDtype::F64,
            _ => return None,
        })
    }
}

/// The elements of an array, by dtype.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    /// `uint8` (`|u1`).
    U8(Vec<u8>),
    /// `int32` (`<i4`).
    I32(Vec<i32>),
    /// `int64` (`<i8`).
    I64(Vec<i64>),
    /// `float16` (`<f2`), kept as raw IEEE 754 half-precision bits.
    U16F16(Vec<u16>),
    /// `float32` (`<f4`).
    F32(Vec<f32>),
    /// `float64` (`<f8`).
    F64(Vec<f64>),
}

impl NpyData {
    /// The element type.
    pub fn dtype(&self) -> NpyDtype {
        match self {
            NpyData::U8(_) => NpyDtype::U8,
            NpyData::I32(_) => NpyDtype::I32,
            NpyData::I64(_) => NpyDtype::I64,
            NpyData::U16F16(_) => NpyDtype::F16,
            NpyData::F32(_) => NpyDtype::F32,
            NpyData::F64(_) => NpyDtype::F64,
        }
    }

    /// The NumPy name of the dtype, for messages.
    pub fn dtype_name(&self) -> &'static str {
        self.dtype().name()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            NpyData::U8(v) => v.len(),
            NpyData::I32(v) => v.len(),
            NpyData::I64(v) => v.len(),
            NpyData::U16F16(v) => v.len(),
            NpyData::F32(v) => v.len(),
            NpyData::F64(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn to_le_bytes(&self) -> Vec<u8> {
        fn flat<const N: usize, T: Copy>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
            v.iter().flat_map(|&x| f(x)).collect()
        }
        match self {
            NpyData::U8(v) => v.clone(),
            NpyData::I32(v) => flat(v, i32::to_le_bytes),
            NpyData::I64(v) => flat(v, i64::to_le_bytes),
            NpyData::U16F16(v) => flat(v, u16::to_le_bytes),
            NpyData::F32(v) => flat(v, f32::to_le_bytes),
            NpyData::F64(v) => flat(v, f64::to_le_bytes),
        }
    }
}

/// An n-dimensional array in C (row-major) order.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// The dimensions; `[]` is a scalar (one element).
    pub shape: Vec<usize>,
    /// The elements, `shape.iter().product()` of them.
    pub data: NpyData,
}

fn bad(path: &Path, what: impl Into<String>) -> IndexError {
    IndexError::Npy {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// The value text that follows `'key':` in the header dictionary.
fn header_value<'h>(header: &'h str, key: &str) -> Option<&'h str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    let colon = rest.find(':')?;
    Some(rest[colon + 1..].trim_start())
}

struct Header {
    descr: String,
    shape: Vec<usize>,
}

fn parse_header(path: &Path, header: &str) -> Result<Header, IndexError> {
    let descr_text =
        header_value(header, "descr").ok_or_else(|| bad(path, "header has no 'descr'"))?;
    let quote = descr_text
        .chars()
        .next()
        .filter(|c| *c == '\'' || *c == '"')
        .ok_or_else(|| {
            bad(
                path,
                "'descr' is not a simple dtype string (structured dtypes are not supported)",
            )
        })?;
    let end = descr_text[1..]
        .find(quote)
        .ok_or_else(|| bad(path, "unterminated 'descr' string"))?;
    let descr = descr_text[1..1 + end].to_string();

    let fortran = header_value(header, "fortran_order")
        .ok_or_else(|| bad(path, "header has no 'fortran_order'"))?;
    if fortran.starts_with("True") {
        return Err(bad(
            path,
            "fortran_order is True; expected C order (np.ascontiguousarray)",
        ));
    }
    if !fortran.starts_with("False") {
        return Err(bad(path, "'fortran_order' is neither True nor False"));
    }

    let shape_text =
        header_value(header, "shape").ok_or_else(|| bad(path, "header has no 'shape'"))?;
    let inner = shape_text
        .strip_prefix('(')
        .and_then(|s| s.find(')').map(|e| &s[..e]))
        .ok_or_else(|| bad(path, "'shape' is not a tuple"))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L').parse::<usize>().map_err(|_| {
                bad(
                    path,
                    format!("shape entry {s:?} is not a non-negative integer"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Header { descr, shape })
}

/// What the header of a `.npy` file says: the array's shape and dtype, and where its data starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// The dimensions; `[]` is a scalar (one element).
    pub shape: Vec<usize>,
    /// The element type.
    pub dtype: NpyDtype,
    /// Byte offset of the first element in the file.
    pub data_offset: usize,
    /// Bytes of data the shape and dtype announce (checked not to overflow).
    pub data_bytes: usize,
}

impl NpyHeader {
    /// Checks that a file of `file_len` bytes holds exactly the data this header announces:
    /// a shorter file is cut off, a longer one holds something else after the array.
    pub fn check_file_len(&self, path: &Path, file_len: u64) -> Result<(), IndexError> {
        let payload = file_len.saturating_sub(self.data_offset as u64);
        if payload != self.data_bytes as u64 {
            let cut = if payload < self.data_bytes as u64 {
                " (truncated)"
            } else {
                ""
            };
            return Err(bad(
                path,
                format!(
                    "shape {:?} of {} needs {} data bytes, the file has {payload}{cut}",
                    self.shape,
                    self.dtype.descr(),
                    self.data_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// Read the header of a `.npy` file from `reader`, positioned at the start of the file, and
/// leave the reader at the first data byte. `path` only names the file in errors. Nothing is
/// allocated beyond the header's own bytes, so a huge file can be checked before it is read
/// (or memory-mapped).
pub fn read_npy_header(path: &Path, reader: &mut impl Read) -> Result<NpyHeader, IndexError> {
    read_header_with(path, reader, false)
}

/// [`read_npy_header`], with `b1` (bool) read as [`NpyDtype::U8`] when `bool_as_u8`.
fn read_header_with(
    path: &Path,
    reader: &mut impl Read,
    bool_as_u8: bool,
) -> Result<NpyHeader, IndexError> {
    let io = |e: std::io::Error| IndexError::io(path, e);
    let mut lead = [0u8; 10];
    let got = read_up_to(reader, &mut lead).map_err(io)?;
    if got < lead.len() || &lead[..6] != MAGIC {
        return Err(bad(
            path,
            "missing the \\x93NUMPY magic (is this a .npy file?)",
        ));
    }
    let (header_len, header_start) = match lead[6] {
        1 => (usize::from(u16::from_le_bytes([lead[8], lead[9]])), 10),
        2 | 3 => {
            let mut high = [0u8; 2];
            if read_up_to(reader, &mut high).map_err(io)? < high.len() {
                return Err(bad(path, "truncated header length"));
            }
            let len = u32::from_le_bytes([lead[8], lead[9], high[0], high[1]]);
            (len as usize, 12)
        }
        v => {
            return Err(bad(
                path,
                format!("format version {v}.{} (expected 1, 2 or 3)", lead[7]),
            ))
        }
    };
    let mut header_bytes = Vec::new();
    reader
        .take(header_len as u64)
        .read_to_end(&mut header_bytes)
        .map_err(io)?;
    if header_bytes.len() < header_len {
        return Err(bad(
            path,
            format!("header of {header_len} bytes runs past the end of the file"),
        ));
    }
    // Version 3.0 only differs from 2.0 by allowing UTF-8 in the header.
    let header =
        std::str::from_utf8(&header_bytes).map_err(|_| bad(path, "header is not UTF-8 text"))?;
    let Header { descr, shape } = parse_header(path, header)?;

    let (order, code) = match descr.as_bytes().first() {
        Some(b'<' | b'|' | b'=') => ('<', &descr[1..]),
        Some(b'>') => ('>', &descr[1..]),
        _ => ('<', descr.as_str()),
    };
    let dtype = match code {
        "b1" if bool_as_u8 => Some(NpyDtype::U8),
        _ => NpyDtype::from_code(code),
    };
    let dtype = dtype.ok_or_else(|| {
        bad(
            path,
            format!(
                "dtype {descr:?} is not supported (uint8, int32, int64, float16, float32, \
                 float64{})",
                if bool_as_u8 { ", bool" } else { "" }
            ),
        )
    })?;
    if order == '>' && dtype.item_size() > 1 {
        return Err(bad(
            path,
            format!("dtype {descr:?} is big-endian; expected little-endian"),
        ));
    }
    let data_bytes = shape
        .iter()
        .try_fold(dtype.item_size(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(path, format!("shape {shape:?} overflows")))?;
    Ok(NpyHeader {
        shape,
        dtype,
        data_offset: header_start + header_len,
        data_bytes,
    })
}

/// Fills `buf` from `reader` as far as the input goes; returns the number of bytes read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Read a `.npy` file. Accepted dtypes: `u1`, `i4`, `i8`, `f2`, `f4`, `f8`, little-endian, C order.
pub fn read_npy(path: &Path) -> Result<NpyArray, IndexError> {
    let bytes = std::fs::read(path).map_err(|e| IndexError::io(path, e))?;
    parse_npy(path, &bytes)
}

/// [`read_npy`] that also accepts `b1` (bool), as [`NpyData::U8`]: for a file that may hold a
/// mask. Elsewhere a bool array is refused, so that unpacked bits are never taken for packed
/// codes.
pub fn read_mask_npy(path: &Path) -> Result<NpyArray, IndexError> {
    let bytes = std::fs::read(path).map_err(|e| IndexError::io(path, e))?;
    parse_mask_npy(path, &bytes)
}

/// [`read_mask_npy`] of the bytes of a `.npy` file; `path` only names it in errors.
pub fn parse_mask_npy(path: &Path, bytes: &[u8]) -> Result<NpyArray, IndexError> {
    parse_with(path, bytes, true)
}

/// Parse the bytes of a `.npy` file; `path` only names it in errors.
pub fn parse_npy(path: &Path, bytes: &[u8]) -> Result<NpyArray, IndexError> {
    parse_with(path, bytes, false)
}

/// [`parse_npy`], with `b1` read as [`NpyData::U8`] when `bool_as_u8`.
fn parse_with(path: &Path, bytes: &[u8], bool_as_u8: bool) -> Result<NpyArray, IndexError> {
    let header = read_header_with(path, &mut &bytes[..], bool_as_u8)?;
    header.check_file_len(path, bytes.len() as u64)?;
    let payload = &bytes[header.data_offset..];
    fn parse<const N: usize, T>(p: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
        p.chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            })
            .collect()
    }
    let data = match header.dtype {
        NpyDtype::U8 => NpyData::U8(payload.to_vec()),
        NpyDtype::F16 => NpyData::U16F16(parse(payload, u16::from_le_bytes)),
        NpyDtype::I32 => NpyData::I32(parse(payload, i32::from_le_bytes)),
        NpyDtype::F32 => NpyData::F32(parse(payload, f32::from_le_bytes)),
        NpyDtype::I64 => NpyData::I64(parse(payload, i64::from_le_bytes)),
        NpyDtype::F64 => NpyData::F64(parse(payload, f64::from_le_bytes)),
    };
    Ok(NpyArray {
        shape: header.shape,
        data,
    })
}

/// The header of a `.npy` file (version 1.0, or 2.0 when the header needs it) for an array of
/// `dtype` and `shape`, padded as NumPy pads it so that the data starts 64-byte aligned. The
/// data, `shape.iter().product()` elements little-endian in C order, follows it.
pub fn npy_header_bytes(dtype: NpyDtype, shape: &[usize]) -> Result<Vec<u8>, IndexError> {
    let shape = match shape {
        [one] => format!("({one},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        dtype.descr()
    );
    let (version, prefix) = if header.len() + 11 <= usize::from(u16::MAX) {
        (1u8, 10)
    } else {
        (2u8, 12)
    };
    let total = (prefix + header.len() + 1).div_ceil(64) * 64;
    header.push_str(&" ".repeat(total - prefix - header.len() - 1));
    header.push('\n');
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        let len = u32::try_from(header.len())
            .map_err(|_| IndexError::arg("shape", "header longer than 4 GiB"))?;
        out.extend_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    Ok(out)
}

/// The bytes of a `.npy` file holding `array` (version 1.0, or 2.0 when the header needs it).
pub fn to_npy_bytes(array: &NpyArray) -> Result<Vec<u8>, IndexError> {
    let count: usize = array.shape.iter().product();
    if count != array.data.len() {
        return Err(IndexError::Shape {
            what: format!(
                "shape {:?} holds {count} elements, the data has {}",
                array.shape,
                array.data.len()
            ),
        });
    }
    let mut out = npy_header_bytes(array.data.dtype(), &array.shape)?;
    out.extend_from_slice(&array.data.to_le_bytes());
    Ok(out)
}

/// Write a `.npy` file: the whole file appears at once (temporary file, then rename) or not at all.
pub fn write_npy(path: &Path, array: &NpyArray) -> Result<(), IndexError> {
    write_atomic(path, &to_npy_bytes(array)?)
}

/// Write `bytes` to a temporary file beside `path`, then rename it over `path`, so a reader never
/// sees a half-written file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IndexError> {
    crate::atomic::write_atomic_with(path, |out| out.write_all(bytes))
}

//! A small, strict `.npy` reader and writer (format versions 1.0, 2.0 and 3.0; little-endian;
//! C order) for the dtypes this project exchanges with NumPy: codes (uint8), labels and ids
//! (int32, int64), features (float16 as raw bits, float32, float64), and masks (bool, read by
//! [`read_mask_npy`] only, as uint8 0 / 1: NumPy stores a bool as that byte).

use crate::error::IndexError;
use std::path::Path;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

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
    /// The NumPy name of the dtype, for messages.
    pub fn dtype_name(&self) -> &'static str {
        match self {
            NpyData::U8(_) => "uint8",
            NpyData::I32(_) => "int32",
            NpyData::I64(_) => "int64",
            NpyData::U16F16(_) => "float16",
            NpyData::F32(_) => "float32",
            NpyData::F64(_) => "float64",
        }
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

    fn descr(&self) -> &'static str {
        match self {
            NpyData::U8(_) => "|u1",
            NpyData::I32(_) => "<i4",
            NpyData::I64(_) => "<i8",
            NpyData::U16F16(_) => "<f2",
            NpyData::F32(_) => "<f4",
            NpyData::F64(_) => "<f8",
        }
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

/// Read a `.npy` file. Accepted dtypes: `u1`, `i4`, `i8`, `f2`, `f4`, `f8`; little-endian, C
/// order.
pub fn read_npy(path: &Path) -> Result<NpyArray, IndexError> {
    let bytes = std::fs::read(path).map_err(|e| IndexError::io(path, e))?;
    parse_npy(path, &bytes)
}

/// [`read_npy`] that also accepts `b1` (bool), as [`NpyData::U8`] 0 / 1 (another byte is an
/// error): for a file that may hold a mask. Elsewhere a bool array is refused, so that unpacked
/// bits are never read as packed codes.
pub fn read_mask_npy(path: &Path) -> Result<NpyArray, IndexError> {
    let bytes = std::fs::read(path).map_err(|e| IndexError::io(path, e))?;
    parse_with(path, &bytes, true)
}

/// Parse the bytes of a `.npy` file; `path` only names it in errors.
pub fn parse_npy(path: &Path, bytes: &[u8]) -> Result<NpyArray, IndexError> {
    parse_with(path, bytes, false)
}

/// [`parse_npy`], with `b1` accepted as [`NpyData::U8`] when `bool_as_u8`.
fn parse_with(path: &Path, bytes: &[u8], bool_as_u8: bool) -> Result<NpyArray, IndexError> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad(
            path,
            "missing the \\x93NUMPY magic (is this a .npy file?)",
        ));
    }
    let (header_len, header_start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad(path, "truncated header length"));
            }
            let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (len as usize, 12)
        }
        v => {
            return Err(bad(
                path,
                format!("format version {v}.{} (expected 1, 2 or 3)", bytes[7]),
            ))
        }
    };
    let data_start = header_start + header_len;
    let header_bytes = bytes.get(header_start..data_start).ok_or_else(|| {
        bad(
            path,
            format!("header of {header_len} bytes runs past the end of the file"),
        )
    })?;
    // Version 3.0 only differs from 2.0 by allowing UTF-8 in the header.
    let header =
        std::str::from_utf8(header_bytes).map_err(|_| bad(path, "header is not UTF-8 text"))?;
    let Header { descr, shape } = parse_header(path, header)?;

    let (order, code) = match descr.as_bytes().first() {
        Some(b'<' | b'|' | b'=') => ('<', &descr[1..]),
        Some(b'>') => ('>', &descr[1..]),
        _ => ('<', descr.as_str()),
    };
    let item_size = match code {
        "b1" if bool_as_u8 => 1,
        "u1" => 1,
        "f2" => 2,
        "i4" | "f4" => 4,
        "i8" | "f8" => 8,
        _ => {
            return Err(bad(
                path,
                format!(
                    "dtype {descr:?} is not supported (uint8, int32, int64, float16, float32, \
                     float64{})",
                    if bool_as_u8 { ", bool" } else { "" }
                ),
            ))
        }
    };
    if order == '>' && item_size > 1 {
        return Err(bad(
            path,
            format!("dtype {descr:?} is big-endian; expected little-endian"),
        ));
    }
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(path, format!("shape {shape:?} overflows")))?;
    let payload = &bytes[data_start..];
    if Some(payload.len()) != count.checked_mul(item_size) {
        return Err(bad(
            path,
            format!(
                "shape {shape:?} of {descr} needs {} data bytes, the file has {}",
                count.saturating_mul(item_size),
                payload.len()
            ),
        ));
    }
    fn parse<const N: usize, T>(p: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
        p.chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            })
            .collect()
    }
    let data = match code {
        "b1" => {
            if let Some(at) = payload.iter().position(|&b| b > 1) {
                return Err(bad(
                    path,
                    format!("bool element {at} is the byte {}, not 0 or 1", payload[at]),
                ));
            }
            NpyData::U8(payload.to_vec())
        }
        "u1" => NpyData::U8(payload.to_vec()),
        "f2" => NpyData::U16F16(parse(payload, u16::from_le_bytes)),
        "i4" => NpyData::I32(parse(payload, i32::from_le_bytes)),
        "f4" => NpyData::F32(parse(payload, f32::from_le_bytes)),
        "i8" => NpyData::I64(parse(payload, i64::from_le_bytes)),
        _ => NpyData::F64(parse(payload, f64::from_le_bytes)),
    };
    Ok(NpyArray { shape, data })
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
    let shape = match array.shape.as_slice() {
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
        array.data.descr()
    );
    // NumPy pads the header with spaces and a final newline so the data starts 64-byte aligned.
    let (version, prefix) = if header.len() + 11 <= usize::from(u16::MAX) {
        (1u8, 10)
    } else {
        (2u8, 12)
    };
    let total = (prefix + header.len() + 1).div_ceil(64) * 64;
    header.push_str(&" ".repeat(total - prefix - header.len() - 1));
    header.push('\n');
    let mut out = Vec::with_capacity(total + array.data.len() * 8);
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

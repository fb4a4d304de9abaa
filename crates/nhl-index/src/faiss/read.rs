//! Reading `IndexBinaryFlat` and `IndexBinaryIDMap` files (the layout is in the module above).

use super::{describe, BinaryIndexFile, Fourcc, FLAT, ID_MAP, ID_MAP2};
use crate::codes::{words_for, Codes, MAX_BITS};
use crate::error::IndexError;
use crate::ids::check_ids;
use std::io::{BufReader, ErrorKind, Read};
use std::path::Path;

/// Bytes read per call when copying the codes and IDs: a bounded buffer whatever the file size.
const CHUNK_BYTES: usize = 1 << 20;

/// The MetricType values FAISS accepts when it reads an index (0..=4 and 20..=26); anything else
/// means the header is corrupt.
fn known_metric(value: i32) -> bool {
    (0..=4).contains(&value) || (20..=26).contains(&value)
}

/// Read a FAISS binary index file: an `IndexBinaryFlat`, or an `IndexBinaryIDMap` /
/// `IndexBinaryIDMap2` around one (whose IDs must all differ). `bits` defaults to the file's `d`;
/// a smaller value keeps that prefix of every code, so files with codes longer than
/// [`MAX_BITS`] can still be read at a supported length.
///
/// The file is streamed: memory holds the codes as [`Codes`] (and the IDs), never the file.
pub fn read_binary_index(path: &Path, bits: Option<usize>) -> Result<BinaryIndexFile, IndexError> {
    let file = std::fs::File::open(path).map_err(|e| IndexError::io(path, e))?;
    let len = file.metadata().map_err(|e| IndexError::io(path, e))?.len();
    parse(Source::new(path, BufReader::new(file), len), bits)
}

/// Parse the bytes of a FAISS binary index file, as [`read_binary_index`] does; `path` only names
/// it in errors.
pub fn parse_binary_index(
    path: &Path,
    bytes: &[u8],
    bits: Option<usize>,
) -> Result<BinaryIndexFile, IndexError> {
    parse(Source::new(path, bytes, bytes.len() as u64), bits)
}

/// The file being read, with its position, so that every error says where, and every length can
/// be compared with what is left.
struct Source<'p, R> {
    path: &'p Path,
    inner: R,
    offset: u64,
    len: u64,
}

impl<'p, R: Read> Source<'p, R> {
    fn new(path: &'p Path, inner: R, len: u64) -> Self {
        Source {
            path,
            inner,
            offset: 0,
            len,
        }
    }

    fn error(&self, field: &str, expected: String, found: String) -> IndexError {
        IndexError::FileContent {
            path: self.path.to_path_buf(),
            field: field.to_string(),
            expected,
            found,
        }
    }

    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.offset)
    }

    /// Fail unless `count` more bytes are in the file.
    fn need(&self, field: &str, count: u64) -> Result<(), IndexError> {
        if count > self.remaining() {
            return Err(self.error(
                field,
                format!("{count} bytes at byte {}", self.offset),
                format!("{} bytes before the end of the file", self.remaining()),
            ));
        }
        Ok(())
    }

    fn fill(&mut self, field: &str, buf: &mut [u8]) -> Result<(), IndexError> {
        self.need(field, buf.len() as u64)?;
        self.inner.read_exact(buf).map_err(|e| match e.kind() {
            // The file shrank while being read.
            ErrorKind::UnexpectedEof => self.error(
                field,
                format!("{} bytes at byte {}", buf.len(), self.offset),
                "the end of the file".into(),
            ),
            _ => IndexError::io(self.path, e),
        })?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], IndexError> {
        let mut buf = [0u8; N];
        self.fill(field, &mut buf)?;
        Ok(buf)
    }

    /// Read a value with `read`; unless `valid` holds, an error naming the field, its offset,
    /// `expected` and the value found.
    fn checked<T: Copy + std::fmt::Display>(
        &mut self,
        field: &str,
        read: fn(&mut Self, &str) -> Result<T, IndexError>,
        expected: &str,
        valid: impl Fn(T) -> bool,
    ) -> Result<T, IndexError> {
        let at = self.offset;
        let value = read(self, field)?;
        if !valid(value) {
            return Err(self.error(
                &format!("{field} (at byte {at})"),
                expected.into(),
                value.to_string(),
            ));
        }
        Ok(value)
    }

    fn u8(&mut self, field: &str) -> Result<u8, IndexError> {
        self.array(field).map(u8::from_le_bytes)
    }

    fn i32(&mut self, field: &str) -> Result<i32, IndexError> {
        self.array(field).map(i32::from_le_bytes)
    }

    fn i64(&mut self, field: &str) -> Result<i64, IndexError> {
        self.array(field).map(i64::from_le_bytes)
    }

    fn u64(&mut self, field: &str) -> Result<u64, IndexError> {
        self.array(field).map(u64::from_le_bytes)
    }

    /// Read the length of a vector of `element`-byte items that must hold `expected` items, and
    /// check it against `expected` and against the bytes left, before anything is allocated.
    fn vector_len(&mut self, field: &str, element: u64, expected: u64) -> Result<(), IndexError> {
        let at = self.offset;
        let count = self.u64(&format!("{field} (length)"))?;
        if count != expected {
            return Err(self.error(
                &format!("{field} (length at byte {at})"),
                format!("{expected} (from the header)"),
                count.to_string(),
            ));
        }
        // A product past u64::MAX is more than any file holds, and `need` says so.
        self.need(field, count.saturating_mul(element))
    }
}

/// The fields shared by every binary index (in the order FAISS writes them).
struct Header {
    d: usize,
    code_size: usize,
    ntotal: usize,
}

fn read_header<R: Read>(src: &mut Source<'_, R>, class: &str) -> Result<Header, IndexError> {
    let field = |name: &str| format!("{class}.{name}");
    let d = src.checked(&field("d"), Source::i32, "a positive multiple of 8", |d| {
        d > 0 && d % 8 == 0
    })?;
    let code_size = src.checked(
        &field("code_size"),
        Source::i32,
        &format!("d / 8 = {}", d / 8),
        |c| c == d / 8,
    )?;
    let ntotal = src.checked(
        &field("ntotal"),
        Source::i64,
        "a count of vectors, >= 0",
        |n| usize::try_from(n).is_ok(),
    )?;
    src.checked(&field("is_trained"), Source::u8, "a bool, 0 or 1", |b| {
        b <= 1
    })?;
    src.checked(
        &field("metric_type"),
        Source::i32,
        "a FAISS MetricType (0..=4 or 20..=26)",
        known_metric,
    )?;
    // The checks above make these conversions exact.
    Ok(Header {
        d: d as usize,
        code_size: code_size as usize,
        ntotal: ntotal as usize,
    })
}

/// The fourcc at the current position; anything but `allowed` is refused with its name.
fn read_fourcc<R: Read>(
    src: &mut Source<'_, R>,
    field: &str,
    allowed: &str,
    check: impl Fn(Fourcc) -> bool,
) -> Result<Fourcc, IndexError> {
    let at = src.offset;
    let code = src.array::<4>(field)?;
    if !check(code) {
        return Err(src.error(
            &format!("{field} (at byte {at})"),
            allowed.into(),
            describe(code),
        ));
    }
    Ok(code)
}

/// The codes of an `IndexBinaryFlat` after its header, cut to `keep_bits`.
fn read_codes<R: Read>(
    src: &mut Source<'_, R>,
    class: &str,
    header: &Header,
    keep_bits: usize,
) -> Result<Codes, IndexError> {
    let field = format!("{class}.xb");
    let n = header.ntotal;
    let code_size = header.code_size;
    let expected = (n as u64).checked_mul(code_size as u64).ok_or_else(|| {
        src.error(
            &format!("{class}.ntotal"),
            "a count whose codes fit in 2^64 bytes".into(),
            format!("{n} vectors of {code_size} bytes"),
        )
    })?;
    src.vector_len(&field, 1, expected)?;
    // The codes are in the file (checked above), so n * words u64 are at most 8 times its size.
    let keep = keep_bits.div_ceil(8);
    let words = words_for(keep_bits);
    let mut data = Vec::with_capacity(n * words);
    let rows_per_chunk = (CHUNK_BYTES / code_size).max(1);
    let mut buf = vec![0u8; rows_per_chunk.min(n) * code_size];
    let mut done = 0;
    while done < n {
        let rows = rows_per_chunk.min(n - done);
        let chunk = &mut buf[..rows * code_size];
        src.fill(&field, chunk)?;
        for row in chunk.chunks_exact(code_size) {
            data.extend(row[..keep].chunks(8).map(|part| {
                let mut le = [0u8; 8];
                le[..part.len()].copy_from_slice(part);
                u64::from_le_bytes(le)
            }));
        }
        done += rows;
    }
    Codes::from_words(n, keep_bits, data)
}

/// The `id_map` of an ID map over `n` rows.
fn read_id_map<R: Read>(
    src: &mut Source<'_, R>,
    class: &str,
    n: usize,
) -> Result<Vec<i64>, IndexError> {
    let field = format!("{class}.id_map");
    src.vector_len(&field, 8, n as u64)?;
    let mut ids = Vec::with_capacity(n);
    let mut buf = vec![0u8; (CHUNK_BYTES / 8).min(n) * 8];
    while ids.len() < n {
        let chunk = &mut buf[..(n - ids.len()).min(CHUNK_BYTES / 8) * 8];
        src.fill(&field, chunk)?;
        ids.extend(chunk.chunks_exact(8).map(|b| {
            let mut le = [0u8; 8];
            le.copy_from_slice(b);
            i64::from_le_bytes(le)
        }));
    }
    Ok(ids)
}

/// The prefix length to keep of `d`-bit codes.
fn keep_bits(path: &Path, d: usize, bits: Option<usize>) -> Result<usize, IndexError> {
    let bits = bits.unwrap_or(d);
    if bits == 0 || bits > d || bits > MAX_BITS {
        return Err(IndexError::Bits {
            what: format!(
                "{}: {bits} bits requested, the file holds {d}-bit codes \
                 (and at most {MAX_BITS} are supported)",
                path.display()
            ),
        });
    }
    Ok(bits)
}

const TOP_LEVEL: &str = "IBxF (IndexBinaryFlat), or IBMp / IBM2 (IndexBinaryIDMap / \
                         IndexBinaryIDMap2) around an IndexBinaryFlat";

fn parse<R: Read>(
    mut src: Source<'_, R>,
    bits: Option<usize>,
) -> Result<BinaryIndexFile, IndexError> {
    let code = read_fourcc(&mut src, "index type", TOP_LEVEL, |c| {
        c == FLAT || c == ID_MAP || c == ID_MAP2
    })?;
    let file = if code == FLAT {
        let header = read_header(&mut src, "IndexBinaryFlat")?;
        let keep = keep_bits(src.path, header.d, bits)?;
        BinaryIndexFile {
            codes: read_codes(&mut src, "IndexBinaryFlat", &header, keep)?,
            file_bits: header.d,
            ids: None,
        }
    } else {
        let map = if code == ID_MAP {
            "IndexBinaryIDMap"
        } else {
            "IndexBinaryIDMap2"
        };
        let outer = read_header(&mut src, map)?;
        let inner_name = format!("{map}.index");
        read_fourcc(
            &mut src,
            &format!("{inner_name} type"),
            "IBxF (IndexBinaryFlat)",
            |c| c == FLAT,
        )?;
        let class = format!("{inner_name} (IndexBinaryFlat)");
        let at = src.offset;
        let inner = read_header(&mut src, &class)?;
        if (inner.d, inner.ntotal) != (outer.d, outer.ntotal) {
            return Err(src.error(
                &format!("{class} header (at byte {at})"),
                format!(
                    "d = {} and ntotal = {}, as in the {map} header",
                    outer.d, outer.ntotal
                ),
                format!("d = {} and ntotal = {}", inner.d, inner.ntotal),
            ));
        }
        let keep = keep_bits(src.path, inner.d, bits)?;
        let codes = read_codes(&mut src, &class, &inner, keep)?;
        let ids = read_id_map(&mut src, map, inner.ntotal)?;
        check_ids(src.path, &format!("{map}.id_map"), &ids, inner.ntotal)?;
        BinaryIndexFile {
            codes,
            file_bits: inner.d,
            ids: Some(ids),
        }
    };
    if src.remaining() > 0 {
        return Err(src.error(
            "end of file",
            format!("the end of the index at byte {}", src.offset),
            format!("{} more bytes", src.remaining()),
        ));
    }
    Ok(file)
}

//! The IDX format of the MNIST family: a big-endian magic `0x0000_08_RR` (unsigned bytes, rank
//! `RR`), `RR` big-endian `u32` dimensions, then the bytes row-major. Files may be gzip-compressed
//! or plain; the gzip header (`1f 8b`) decides, not the file name.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::error::TrainError;

/// An unsigned-byte array read from an IDX file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, outermost first (`[n, rows, cols]` for images, `[n]` for labels).
    pub dims: Vec<usize>,
    /// `product(dims)` bytes, row-major.
    pub data: Vec<u8>,
}

/// The IDX type code of unsigned bytes, the only element type Fashion-MNIST uses.
const UBYTE: u8 = 0x08;

/// Reads the IDX file at `path`, which must hold an unsigned-byte array of rank `rank`.
pub fn read_idx(path: &Path, rank: usize) -> Result<IdxArray, TrainError> {
    let bytes = std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => TrainError::NotFound {
            path: path.to_path_buf(),
            hint: "check --data-dir".into(),
        },
        _ => TrainError::Io {
            path: path.to_path_buf(),
            source,
        },
    })?;
    parse_idx(&bytes, path, rank)
}

/// The product of `dims`, or `None` when it overflows.
fn element_count(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// The dimensions of the header `raw[4..4 + 4 * rank]`, which must be present.
fn read_dims(raw: &[u8], rank: usize) -> Vec<usize> {
    raw[4..4 + 4 * rank]
        .chunks_exact(4)
        .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize)
        .collect()
}

/// Inflates gzip `bytes`, but no further than one byte past the data its IDX header announces
/// (a well-formed header of `rank` dimensions; otherwise only the header is inflated, for the
/// checks that follow to refuse): a small file that inflates to far more than its header says
/// is refused without holding all of it. Returns the bytes and whether the input goes on.
fn inflate(bytes: &[u8], path: &Path, rank: usize) -> Result<(Vec<u8>, bool), TrainError> {
    let gzip = |source| TrainError::Gzip {
        path: path.to_path_buf(),
        source,
    };
    let mut decoder = MultiGzDecoder::new(bytes);
    let header = 4 + 4 * rank;
    let mut out = Vec::new();
    (&mut decoder)
        .take(header as u64)
        .read_to_end(&mut out)
        .map_err(gzip)?;
    let announced = (out.len() == header)
        .then(|| element_count(&read_dims(&out, rank)))
        .flatten();
    let Some(n) = announced else {
        return Ok((out, false));
    };
    let limit = (n as u64).saturating_add(1);
    (&mut decoder)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(gzip)?;
    let more = (out.len() - header) as u64 == limit;
    Ok((out, more))
}

/// Parses IDX `bytes` (gzip or plain) that came from `path` (used in errors only).
pub fn parse_idx(bytes: &[u8], path: &Path, rank: usize) -> Result<IdxArray, TrainError> {
    let inflated;
    let (raw, cut) = if bytes.starts_with(&[0x1f, 0x8b]) {
        let (out, more) = inflate(bytes, path, rank)?;
        inflated = out;
        (&inflated[..], more)
    } else {
        (bytes, false)
    };
    let what = if rank == 1 {
        "a rank-1 unsigned-byte array (labels)"
    } else {
        "an unsigned-byte array of images"
    };
    let expected = u32::from(UBYTE) << 8 | rank as u32;
    if raw.len() < 4 {
        return Err(TrainError::Truncated {
            path: path.to_path_buf(),
            field: "magic number",
            expected: 4,
            found: raw.len(),
        });
    }
    let found = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
    if found != expected {
        return Err(TrainError::BadMagic {
            path: path.to_path_buf(),
            expected,
            found,
            what,
        });
    }
    let header = 4 + 4 * rank;
    if raw.len() < header {
        return Err(TrainError::Truncated {
            path: path.to_path_buf(),
            field: "dimensions",
            expected: header,
            found: raw.len(),
        });
    }
    let dims = read_dims(raw, rank);
    // Checked so that a corrupt header cannot overflow into a small, "valid" size.
    let n = element_count(&dims).ok_or_else(|| TrainError::Content {
        path: path.to_path_buf(),
        field: "dimensions".into(),
        expected: "a size that fits in memory".into(),
        found: format!("{dims:?}"),
    })?;
    let body = &raw[header..];
    if body.len() < n {
        return Err(TrainError::Truncated {
            path: path.to_path_buf(),
            field: "data",
            expected: header + n,
            found: raw.len(),
        });
    }
    if body.len() > n {
        let found = if cut {
            format!("more than {} bytes once inflated", header + n)
        } else {
            format!("{} bytes", raw.len())
        };
        return Err(TrainError::Content {
            path: path.to_path_buf(),
            field: "data".into(),
            expected: format!("{} bytes for dimensions {dims:?}", header + n),
            found,
        });
    }
    Ok(IdxArray {
        dims,
        data: body.to_vec(),
    })
}

/// An image file and its label file, checked against each other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxPair {
    /// `n x dim` pixel bytes.
    pub pixels: Vec<u8>,
    /// Pixels per image (`rows * cols`).
    pub dim: usize,
    /// One class byte per image.
    pub labels: Vec<u8>,
    /// Where the labels came from (for later errors about them).
    pub labels_path: PathBuf,
}

impl IdxPair {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the pair holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Parses an image array (rank 3) and a label array (rank 1) and checks that they count the same
/// items. The paths are only used in errors.
pub fn parse_pair(
    images: &[u8],
    images_path: &Path,
    labels: &[u8],
    labels_path: &Path,
) -> Result<IdxPair, TrainError> {
    let img = parse_idx(images, images_path, 3)?;
    let lab = parse_idx(labels, labels_path, 1)?;
    if img.dims[0] != lab.dims[0] {
        return Err(TrainError::CountMismatch {
            first: images_path.to_path_buf(),
            n_first: img.dims[0],
            second: labels_path.to_path_buf(),
            n_second: lab.dims[0],
        });
    }
    Ok(IdxPair {
        pixels: img.data,
        dim: img.dims[1] * img.dims[2],
        labels: lab.data,
        labels_path: labels_path.to_path_buf(),
    })
}

/// Reads an image file and a label file from disk; see [`parse_pair`].
pub fn read_pair(images_path: &Path, labels_path: &Path) -> Result<IdxPair, TrainError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => TrainError::NotFound {
                path: path.to_path_buf(),
                hint: "check --data-dir".into(),
            },
            _ => TrainError::Io {
                path: path.to_path_buf(),
                source,
            },
        })
    };
    parse_pair(
        &read(images_path)?,
        images_path,
        &read(labels_path)?,
        labels_path,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn idx(rank: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, UBYTE, rank];
        for d in dims {
            out.extend(d.to_be_bytes());
        }
        out.extend(data);
        out
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn plain_and_gzip_parse_the_same() {
        let raw = idx(3, &[2, 2, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let p = Path::new("x");
        let a = parse_idx(&raw, p, 3).unwrap();
        assert_eq!(a.dims, vec![2, 2, 3]);
        assert_eq!(a.data[11], 12);
        assert_eq!(parse_idx(&gzip(&raw), p, 3).unwrap(), a);
    }

    #[test]
    fn bad_inputs_name_the_file_and_the_problem() {
        let p = Path::new("some/file.gz");
        let msg = |e: TrainError| e.to_string();
        let wrong_rank = msg(parse_idx(&idx(1, &[3], &[0, 1, 2]), p, 3).unwrap_err());
        assert!(
            wrong_rank.contains("some/file.gz") && wrong_rank.contains("magic"),
            "{wrong_rank}"
        );
        let short = msg(parse_idx(&idx(1, &[5], &[0, 1, 2]), p, 1).unwrap_err());
        assert!(
            short.contains("truncated") && short.contains("13"),
            "{short}"
        );
        let long = msg(parse_idx(&idx(1, &[2], &[0, 1, 2]), p, 1).unwrap_err());
        assert!(long.contains("data"), "{long}");
        let header = msg(parse_idx(&[0, 0, UBYTE, 3, 0, 0], p, 3).unwrap_err());
        assert!(header.contains("dimensions"), "{header}");
        let gz = gzip(&idx(1, &[100], &[7; 100]));
        let cut = msg(parse_idx(&gz[..gz.len() / 2], p, 1).unwrap_err());
        assert!(
            cut.contains("gzip") && cut.contains("some/file.gz"),
            "{cut}"
        );
        let pair = parse_pair(
            &idx(3, &[2, 1, 1], &[0, 1]),
            Path::new("img"),
            &idx(1, &[3], &[0, 1, 2]),
            Path::new("lab"),
        );
        let m = msg(pair.unwrap_err());
        assert!(
            m.contains("img holds 2") && m.contains("lab holds 3"),
            "{m}"
        );
    }
}

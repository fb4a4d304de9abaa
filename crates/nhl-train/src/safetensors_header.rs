//! The header of a safetensors file, read and checked against the file's length before any
//! tensor byte is touched: a file cut short is named as such, and a memory map over a checked
//! file never reaches past its end.
//!
//! Layout: an 8-byte little-endian header length `N`, `N` bytes of JSON (tensor names, dtypes,
//! shapes, byte ranges, and the optional `__metadata__` strings), then the tensor data, whose
//! ranges are relative to the byte after the header.

use std::io::Read;
use std::path::Path;

use safetensors::tensor::Metadata;

use crate::error::TrainError;

/// The longest JSON header accepted (the `safetensors` crate's own limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// A parsed and length-checked header.
#[derive(Debug)]
pub(crate) struct Header {
    /// Tensors and metadata.
    pub metadata: Metadata,
    /// Byte offset of the tensor data in the file (`8 + N`).
    pub data_offset: usize,
}

/// Reads the header from `reader`, positioned at the start of a file of `file_len` bytes, and
/// checks that the tensor data it announces fills the rest of the file exactly.
pub(crate) fn read_header(
    path: &Path,
    reader: &mut impl Read,
    file_len: u64,
) -> Result<Header, TrainError> {
    let truncated = |field, expected: u64| TrainError::Truncated {
        path: path.to_path_buf(),
        field,
        expected: usize::try_from(expected).unwrap_or(usize::MAX),
        found: usize::try_from(file_len).unwrap_or(usize::MAX),
    };
    let content = |expected: String, found: String| TrainError::Content {
        path: path.to_path_buf(),
        field: "header".into(),
        expected,
        found,
    };
    let io = |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    };
    if file_len < 8 {
        return Err(truncated("header length", 8));
    }
    let mut len = [0u8; 8];
    reader.read_exact(&mut len).map_err(io)?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER_BYTES {
        return Err(content(
            format!("a header of at most {MAX_HEADER_BYTES} bytes (is this a safetensors file?)"),
            format!("a header length of {n}"),
        ));
    }
    if 8 + n > file_len {
        return Err(truncated("header", 8 + n));
    }
    let mut json = vec![0u8; n as usize];
    reader.read_exact(&mut json).map_err(io)?;
    let metadata: Metadata = serde_json::from_slice(&json).map_err(|e| {
        content(
            "the JSON header of a safetensors file".into(),
            e.to_string(),
        )
    })?;
    let data_offset = 8 + n as usize;
    let end = data_offset as u64 + metadata.data_len() as u64;
    if end > file_len {
        return Err(truncated("tensor data", end));
    }
    if end < file_len {
        return Err(TrainError::Content {
            path: path.to_path_buf(),
            field: "tensor data".into(),
            expected: format!("{end} bytes in all, as the header announces"),
            found: format!("{file_len} bytes"),
        });
    }
    Ok(Header {
        metadata,
        data_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;

    fn check(bytes: &[u8]) -> Result<Header, TrainError> {
        read_header(
            Path::new("x.safetensors"),
            &mut &bytes[..],
            bytes.len() as u64,
        )
    }

    #[test]
    fn whole_files_pass_and_cut_or_padded_ones_are_named() {
        let data = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let view = TensorView::new(Dtype::F32, vec![1, 2], &data).unwrap();
        let file = safetensors::serialize([("w", view)], None).unwrap();
        let header = check(&file).unwrap();
        assert_eq!(header.data_offset, file.len() - 8);
        assert_eq!(header.metadata.info("w").unwrap().data_offsets, (0, 8));

        let e = check(&file[..file.len() - 3]).unwrap_err().to_string();
        assert!(
            e.contains("x.safetensors") && e.contains("truncated") && e.contains("tensor data"),
            "{e}"
        );
        let e = check(&file[..20]).unwrap_err().to_string();
        assert!(e.contains("truncated: header needs"), "{e}");
        let e = check(&file[..5]).unwrap_err().to_string();
        assert!(e.contains("header length"), "{e}");
        let mut padded = file.clone();
        padded.push(0);
        let e = check(&padded).unwrap_err().to_string();
        assert!(
            e.contains("tensor data") && e.contains("as the header announces"),
            "{e}"
        );
        let e = check(&u64::MAX.to_le_bytes()).unwrap_err().to_string();
        assert!(e.contains("header length of"), "{e}");
        let mut junk = 4u64.to_le_bytes().to_vec();
        junk.extend_from_slice(b"nope");
        let e = check(&junk).unwrap_err().to_string();
        assert!(e.contains("JSON header"), "{e}");
    }
}

//! Features to encode, memory-mapped: a `.npy` array `[n, dim]`, or the `features` tensor of a
//! safetensors file. The header is read and the file length checked against it before the file
//! is mapped, so every byte the map is read at exists; rows are then converted a block at a time
//! and the pages already read are handed back, so resident memory stays bounded by the block,
//! not the file.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use nhl_index::npy::{read_npy_header, NpyDtype};
use safetensors::Dtype;

use crate::data::features::is_feature_dtype;
use crate::data::InputScaling;
use crate::error::TrainError;
use crate::safetensors_header::read_header;

/// Pages are handed back in whole blocks of this many bytes, counted from the start of the map
/// (which is page-aligned): a multiple of every page size in use (4 KiB, 16 KiB, 64 KiB).
#[cfg(unix)]
const RELEASE_BLOCK: usize = 1 << 20;

/// A features file, mapped read-only.
#[derive(Debug)]
pub struct FeatureFile {
    path: PathBuf,
    map: Mmap,
    /// Byte offset of the first feature in the file.
    data_offset: usize,
    dtype: NpyDtype,
    rows: usize,
    dim: usize,
    /// Bytes from the start of the map whose pages have been handed back.
    #[cfg(unix)]
    released: usize,
}

/// Shape, dtype and data offset of the features, from the file's header.
struct Layout {
    shape: Vec<usize>,
    dtype: NpyDtype,
    data_offset: usize,
}

fn content(path: &Path, expected: &str, found: String) -> TrainError {
    TrainError::Content {
        path: path.to_path_buf(),
        field: "features".into(),
        expected: expected.into(),
        found,
    }
}

/// The layout of a `.npy` file, its length checked.
fn npy_layout(path: &Path, file: &File, len: u64) -> Result<Layout, TrainError> {
    let header = read_npy_header(path, &mut BufReader::new(file))?;
    header.check_file_len(path, len)?;
    Ok(Layout {
        shape: header.shape,
        dtype: header.dtype,
        data_offset: header.data_offset,
    })
}

/// The layout of the `features` tensor of a safetensors file, its length checked.
fn safetensors_layout(path: &Path, file: &File, len: u64) -> Result<Layout, TrainError> {
    let header = read_header(path, &mut BufReader::new(file), len)?;
    let info = header.metadata.info("features").ok_or_else(|| {
        let mut names: Vec<String> = header.metadata.tensors().into_keys().collect();
        names.sort();
        content(
            path,
            "a tensor named `features`",
            format!("tensors {names:?}"),
        )
    })?;
    let dtype = match info.dtype {
        Dtype::U8 => NpyDtype::U8,
        Dtype::F16 => NpyDtype::F16,
        Dtype::F32 => NpyDtype::F32,
        Dtype::F64 => NpyDtype::F64,
        other => {
            return Err(content(
                path,
                "dtype U8, F16, F32 or F64",
                format!("{other:?}"),
            ))
        }
    };
    Ok(Layout {
        shape: info.shape.clone(),
        dtype,
        data_offset: header.data_offset + info.data_offsets.0,
    })
}

impl FeatureFile {
    /// Opens and maps `path`: a safetensors file (by its `.safetensors` extension) with a
    /// `features` tensor, or else a `.npy` file. Features are rank 2 `[n, dim]`, `dim >= 1`, of
    /// dtype uint8, float16, float32 or float64.
    ///
    /// The file must not change while it is open: it is read through a memory map, and a file
    /// truncated by another process after this check would fault on access.
    pub fn open(path: &Path) -> Result<FeatureFile, TrainError> {
        let file = File::open(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => TrainError::NotFound {
                path: path.to_path_buf(),
                hint: "a features .npy [n, dim], or a .safetensors file with a `features` tensor"
                    .into(),
            },
            _ => TrainError::Io {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let io = |source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        };
        let len = file.metadata().map_err(io)?.len();
        let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
        let layout = if is_safetensors {
            safetensors_layout(path, &file, len)?
        } else {
            npy_layout(path, &file, len)?
        };
        let &[rows, dim] = layout.shape.as_slice() else {
            return Err(content(
                path,
                "a rank-2 array [n, dim]",
                format!("shape {:?}", layout.shape),
            ));
        };
        if dim == 0 {
            return Err(content(
                path,
                "at least one feature per item",
                format!("shape {:?}", layout.shape),
            ));
        }
        if !is_feature_dtype(layout.dtype) {
            return Err(content(
                path,
                "dtype float32, float16, float64 or uint8",
                layout.dtype.name().into(),
            ));
        }
        // SAFETY: the map is read-only and private to this struct; the header and the file
        // length were checked above, so every offset read below `len` exists. Mapping is unsafe
        // because another process could change or truncate the file while it is mapped; `open`
        // documents that the file must stay as it is while it is encoded.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        if map.len() as u64 != len {
            return Err(io(std::io::Error::other(
                "the file changed size while it was opened",
            )));
        }
        #[cfg(unix)]
        {
            // Best effort: only a read-ahead hint.
            let _ = map.advise(memmap2::Advice::Sequential);
        }
        Ok(FeatureFile {
            path: path.to_path_buf(),
            map,
            data_offset: layout.data_offset,
            dtype: layout.dtype,
            rows,
            dim,
            #[cfg(unix)]
            released: 0,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of items.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Features per item.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The stored element type.
    pub fn dtype(&self) -> NpyDtype {
        self.dtype
    }

    /// Appends to `out` the model inputs of rows `start..end` under `scaling`, after checking
    /// that every one is finite (an error names the first bad item and feature). Rows are best
    /// read in increasing order: the pages before the last row read are handed back to the
    /// operating system.
    pub fn read_rows(
        &mut self,
        start: usize,
        end: usize,
        scaling: InputScaling,
        out: &mut Vec<f32>,
    ) -> Result<(), TrainError> {
        let end = end.min(self.rows);
        let start = start.min(end);
        let row_bytes = self.dim * self.dtype.item_size();
        let from = self.data_offset + start * row_bytes;
        let to = self.data_offset + end * row_bytes;
        let first = out.len();
        scaling.extend_from_le(self.dtype, &self.map[from..to], out);
        if let Some(bad) = out[first..].iter().position(|x| !x.is_finite()) {
            return Err(TrainError::NonFinite {
                path: self.path.clone(),
                item: start + bad / self.dim,
                feature: bad % self.dim,
                value: out[first + bad],
            });
        }
        #[cfg(unix)]
        self.release_before(to);
        Ok(())
    }

    /// Hands back the pages of the whole [`RELEASE_BLOCK`]s below byte `offset`, which have been
    /// read and converted: their bytes would otherwise count in the resident memory of the
    /// process for as long as the file is mapped.
    #[cfg(unix)]
    fn release_before(&mut self, offset: usize) {
        let upto = offset / RELEASE_BLOCK * RELEASE_BLOCK;
        if upto <= self.released {
            return;
        }
        // SAFETY: `released..upto` lies inside the map (`upto <= offset <= map.len()`) and starts
        // on a page boundary (a multiple of RELEASE_BLOCK from the page-aligned start). The map
        // is a read-only shared file mapping, so MADV_DONTNEED only drops this process's page
        // table entries: a later read faults the same bytes back in from the file, so no slice of
        // the map can see a change. No slice into the range is alive: `read_rows` copies what it
        // reads before it returns.
        let dropped = unsafe {
            self.map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                self.released,
                upto - self.released,
            )
        };
        // Best effort: on failure the pages stay resident, which costs memory, not correctness.
        if dropped.is_ok() {
            self.released = upto;
        }
    }
}

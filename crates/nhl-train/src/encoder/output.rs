//! The codes file, streamed: a uint8 `[n, bytes]` `.npy` written block by block into a
//! temporary file beside its final path, and renamed there only once every row is in.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use nhl_index::npy::{npy_header_bytes, NpyDtype};

use crate::error::TrainError;

/// Buffer between the encoder and the file: large enough that multi-gigabyte outputs go out in
/// few system calls.
const BUFFER_BYTES: usize = 1 << 20;

/// A codes file under construction. [`finish`](CodesWriter::finish) renames it to its final
/// path; dropped before that (an error on the way), it removes its temporary file, so a failed
/// encode leaves nothing behind and an existing file at the final path untouched.
#[derive(Debug)]
pub(crate) struct CodesWriter {
    target: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    /// Code bytes still to come.
    remaining: u64,
}

impl CodesWriter {
    /// Starts `target` for `n` codes of `code_bytes` bytes each, writing the `.npy` header.
    pub(crate) fn create(target: &Path, n: usize, code_bytes: usize) -> Result<Self, TrainError> {
        let io = |source| TrainError::Io {
            path: target.to_path_buf(),
            source,
        };
        let name = target.file_name().ok_or_else(|| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the output path needs a file name",
            ))
        })?;
        let mut tmp_name = name.to_os_string();
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = target.with_file_name(tmp_name);
        let header = npy_header_bytes(NpyDtype::U8, &[n, code_bytes])?;
        let file = File::create(&tmp).map_err(io)?;
        let mut writer = CodesWriter {
            target: target.to_path_buf(),
            tmp,
            out: Some(BufWriter::with_capacity(BUFFER_BYTES, file)),
            remaining: n as u64 * code_bytes as u64,
        };
        writer.put(&header)?;
        Ok(writer)
    }

    /// Appends whole codes (their bytes, row after row).
    pub(crate) fn write(&mut self, codes: &[u8]) -> Result<(), TrainError> {
        let len = codes.len() as u64;
        if len > self.remaining {
            return Err(TrainError::Content {
                path: self.target.clone(),
                field: "codes".into(),
                expected: format!("{} more bytes", self.remaining),
                found: format!("{len}"),
            });
        }
        self.remaining -= len;
        self.put(codes)
    }

    /// Checks that every code was written, flushes the file to disk and renames it to its
    /// final path.
    pub(crate) fn finish(mut self) -> Result<(), TrainError> {
        if self.remaining != 0 {
            return Err(TrainError::Content {
                path: self.target.clone(),
                field: "codes".into(),
                expected: "every code written".into(),
                found: format!("{} bytes missing", self.remaining),
            });
        }
        let out = self.out.take();
        let synced = match out {
            Some(out) => out
                .into_inner()
                .map_err(|e| e.into_error())
                .and_then(|file| file.sync_all()),
            None => Ok(()),
        };
        synced
            .and_then(|()| std::fs::rename(&self.tmp, &self.target))
            .map_err(|source| TrainError::Io {
                path: self.target.clone(),
                source,
            })
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), TrainError> {
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        out.write_all(bytes).map_err(|source| TrainError::Io {
            path: self.target.clone(),
            source,
        })
    }
}

impl Drop for CodesWriter {
    fn drop(&mut self) {
        // After a successful `finish` the temporary name no longer exists; otherwise the error
        // already being returned is the one to report, so this removal is best effort.
        drop(self.out.take());
        let _ = std::fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhl_index::npy::{read_npy, NpyData};

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nhl-codes-writer-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_finished_file_is_the_array_and_an_unfinished_one_leaves_nothing() {
        let d = dir("rt");
        let path = d.join("codes.npy");
        let mut w = CodesWriter::create(&path, 3, 2).unwrap();
        w.write(&[1, 2, 3, 4]).unwrap();
        w.write(&[5, 6]).unwrap();
        assert!(!path.exists(), "the final name appears only at the end");
        assert!(w
            .write(&[7])
            .unwrap_err()
            .to_string()
            .contains("0 more bytes"));
        w.finish().unwrap();
        let a = read_npy(&path).unwrap();
        assert_eq!(a.shape, [3, 2]);
        assert_eq!(a.data, NpyData::U8(vec![1, 2, 3, 4, 5, 6]));

        // An earlier file survives a failed rewrite, and no temporary file is left.
        let mut w = CodesWriter::create(&path, 3, 2).unwrap();
        w.write(&[9, 9]).unwrap();
        let e = w.finish().unwrap_err().to_string();
        assert!(
            e.contains("codes.npy") && e.contains("4 bytes missing"),
            "{e}"
        );
        let w = CodesWriter::create(&path, 1, 1).unwrap();
        drop(w);
        assert_eq!(
            read_npy(&path).unwrap().data,
            NpyData::U8(vec![1, 2, 3, 4, 5, 6])
        );
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);

        let e = CodesWriter::create(&d.join("no/such/dir/codes.npy"), 1, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no/such/dir/codes.npy"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}

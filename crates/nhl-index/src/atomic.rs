//! Whole-or-nothing file output: write a temporary file beside the target, then rename it over the
//! target, so a reader never sees a half-written file and a failed write leaves nothing behind.

use crate::error::IndexError;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Buffer between the writer and the file: large enough that multi-gigabyte outputs go out in
/// few system calls.
const BUFFER_BYTES: usize = 1 << 20;

/// The temporary name beside `path`: its file name with `.<pid>.tmp` appended, in the same
/// directory so the final rename never crosses file systems.
fn temporary_beside(path: &Path) -> Result<PathBuf, IndexError> {
    let name = path
        .file_name()
        .ok_or_else(|| IndexError::arg("path", format!("{} has no file name", path.display())))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    Ok(path.with_file_name(tmp_name))
}

/// Stream the contents that `fill` writes to a temporary file beside `path`, then rename it over
/// `path`. On any error (from `fill`, the flush or the rename) the temporary file is removed and
/// `path` is left as it was.
pub(crate) fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), IndexError> {
    let tmp = temporary_beside(path)?;
    let file = File::create(&tmp).map_err(|e| IndexError::io(&tmp, e))?;
    let mut out = BufWriter::with_capacity(BUFFER_BYTES, file);
    let written = fill(&mut out)
        .and_then(|()| out.flush())
        .map_err(|e| IndexError::io(&tmp, e));
    drop(out);
    let renamed =
        written.and_then(|()| std::fs::rename(&tmp, path).map_err(|e| IndexError::io(path, e)));
    if renamed.is_err() {
        // Best effort: the error to report is the write's or the rename's, not this one's.
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
}

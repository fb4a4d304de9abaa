//! Output paths checked before any work: a command that writes one file (`export --faiss`,
//! `encode --out`) fails at once on a path it could only fail to write at the end. Commands that
//! write a directory use `nhl_train::run_dir::RunDir`, which checks theirs, after
//! [`restore_set_aside`].

use std::path::Path;

use anyhow::bail;
use nhl_train::run_dir::recover;

/// Puts back the directory `path` (given as `flag`) if a process was killed while replacing it
/// and left it set aside as `PATH.old-<pid>` (see `nhl_train::run_dir::recover`), and says so.
pub fn restore_set_aside(flag: &str, path: &Path) -> anyhow::Result<()> {
    if let Some(back) = recover(path)? {
        eprintln!(
            "{flag} {}: was missing: process {} was stopped while replacing it and left it as {}; \
             put it back",
            path.display(),
            back.pid,
            back.from.display()
        );
    }
    Ok(())
}

/// Fails unless `path`, given as `flag`, can be replaced by a file: not a directory (nor a link to
/// one), and not a symbolic link to nothing.
pub fn check_output_file(flag: &str, path: &Path) -> anyhow::Result<()> {
    if path.is_dir() {
        bail!(
            "{flag} {}: is a directory; give the path of the file to write",
            path.display()
        );
    }
    if path.is_symlink() && !path.exists() {
        bail!(
            "{flag} {}: is a symbolic link to nothing; give the path of the file to write",
            path.display()
        );
    }
    Ok(())
}

//! Output directories and files that appear whole or not at all.
//!
//! A run writes into `OUT.partial-<pid>` next to `OUT` and renames it to `OUT` only when every
//! file is written ([`RunDir::commit`]). If anything fails first, dropping the [`RunDir`] removes
//! the partial directory, so a failed run leaves nothing behind. An existing `OUT` that is not an
//! empty directory is refused rather than overwritten: a finished run is never clobbered by
//! accident; pick another `--out`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::TrainError;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An output directory under construction.
#[derive(Debug)]
pub struct RunDir {
    target: PathBuf,
    partial: PathBuf,
    committed: bool,
}

/// Fails unless `path` is absent or an empty directory.
fn check_free(path: &Path) -> Result<(), TrainError> {
    match std::fs::read_dir(path) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(TrainError::Exists {
                path: path.to_path_buf(),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        // A file, or a directory we may not read: either way not ours to replace.
        Err(_) => Err(TrainError::Exists {
            path: path.to_path_buf(),
        }),
    }
}

impl RunDir {
    /// Starts the directory `out`: checks that it is free, creates its parents and the sibling
    /// `OUT.partial-<pid>`.
    pub fn create(out: &Path) -> Result<RunDir, TrainError> {
        check_free(out)?;
        let name = out.file_name().ok_or_else(|| TrainError::Io {
            path: out.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the output path needs a final directory name",
            ),
        })?;
        let mut partial_name = name.to_os_string();
        partial_name.push(format!(".partial-{}", std::process::id()));
        let partial = out.with_file_name(partial_name);
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        // A leftover of a killed run with the same pid is ours to replace.
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
        }
        std::fs::create_dir(&partial).map_err(io(&partial))?;
        Ok(RunDir {
            target: out.to_path_buf(),
            partial,
            committed: false,
        })
    }

    /// Where a file named `name` is written while the run is in progress.
    pub fn file(&self, name: &str) -> PathBuf {
        self.partial.join(name)
    }

    /// The final path the directory will have.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Renames the finished directory to its final path and returns it.
    pub fn commit(mut self) -> Result<PathBuf, TrainError> {
        // Checked again: another process may have taken the name during the run.
        check_free(&self.target)?;
        if self.target.is_dir() {
            std::fs::remove_dir(&self.target).map_err(io(&self.target))?;
        }
        std::fs::rename(&self.partial, &self.target).map_err(io(&self.target))?;
        self.committed = true;
        Ok(self.target.clone())
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: the run already failed and its error is what the user needs to see.
            let _ = std::fs::remove_dir_all(&self.partial);
        }
    }
}

/// Writes `bytes` to `path` through a temporary sibling and a rename, so that readers see the old
/// file or the whole new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(source) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(TrainError::Io {
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(())
}

/// `YYYYmmdd-HHMMSS` in UTC.
pub fn utc_timestamp(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The default output directory, `runs/<UTC timestamp>`.
pub fn default_out_dir(now: SystemTime) -> PathBuf {
    Path::new("runs").join(utc_timestamp(now))
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (the days-to-civil algorithm: shift
/// the epoch to 0000-03-01 so that leap days end each 400-year era's years).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_match_known_dates() {
        let at = |s| utc_timestamp(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "19700101-000000");
        // 2000-02-29 12:34:56, a leap day in a year divisible by 400.
        assert_eq!(at(951_827_696), "20000229-123456");
        // 2026-11-28 02:34:35.
        assert_eq!(at(1_795_833_275), "20261128-023435");
        assert_eq!(
            default_out_dir(UNIX_EPOCH + Duration::from_secs(86_399)),
            Path::new("runs/19700101-235959")
        );
    }

    #[test]
    fn run_dir_appears_whole_or_not_at_all() {
        let base = std::env::temp_dir().join(format!("nhl-rundir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let out = base.join("nested/run");

        // Dropped before commit: nothing is left, not even the partial directory.
        let dir = RunDir::create(&out).unwrap();
        write_atomic(&dir.file("a.txt"), b"one").unwrap();
        drop(dir);
        assert!(!out.exists());
        assert_eq!(std::fs::read_dir(base.join("nested")).unwrap().count(), 0);

        let dir = RunDir::create(&out).unwrap();
        write_atomic(&dir.file("a.txt"), b"two").unwrap();
        assert_eq!(dir.commit().unwrap(), out);
        assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(base.join("nested")).unwrap().count(), 1);

        // A finished run is never overwritten; an empty directory may be reused.
        let e = RunDir::create(&out).unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
        let empty = base.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        RunDir::create(&empty).unwrap().commit().unwrap();
        std::fs::remove_dir_all(&base).unwrap();
    }
}

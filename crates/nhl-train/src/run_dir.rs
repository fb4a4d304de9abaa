//! Output directories and files that appear whole or not at all.
//!
//! A command writes into `OUT.partial-<pid>` next to `OUT` and renames it to `OUT` only when every
//! file is written ([`RunDir::commit`]). If anything fails first, dropping the [`RunDir`] removes
//! the partial directory, so a failed command leaves nothing behind. The output path is checked
//! when the [`RunDir`] is made, before any work: a symbolic link is followed to the directory it
//! names (a dangling one is refused), and an existing `OUT` must be an empty directory
//! ([`RunDir::create`], for training runs: a finished run is never clobbered by accident) or hold
//! nothing but files of the command's own layout ([`RunDir::replacing`], for commands such as
//! `search` whose outputs replace the previous ones as a set, stale files of another layout
//! included).
//!
//! The finished directory replaces an existing `OUT` in one step where the system can swap two
//! directories (Linux `renameat2` with `RENAME_EXCHANGE`); elsewhere the old `OUT` is first
//! renamed aside to `OUT.old-<pid>`, and a process killed before the second rename leaves no
//! `OUT`: [`recover`] puts the set-aside directory back.

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
    /// The names an existing `target` may hold and be replaced (empty: it must be empty).
    layout: Vec<String>,
    committed: bool,
}

/// Fails unless `path` is absent, or a directory whose entries all have names in `layout`.
fn check_free(path: &Path, layout: &[String]) -> Result<(), TrainError> {
    match std::fs::read_dir(path) {
        Ok(entries) => {
            let mut foreign: Vec<String> = entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !layout.contains(name))
                .collect();
            if foreign.is_empty() {
                return Ok(());
            }
            if layout.is_empty() {
                return Err(TrainError::Exists {
                    path: path.to_path_buf(),
                });
            }
            foreign.sort();
            Err(TrainError::Foreign {
                path: path.to_path_buf(),
                names: foreign.join(", "),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        // A file, or a directory we may not read: either way not ours to replace.
        Err(_) => Err(TrainError::Exists {
            path: path.to_path_buf(),
        }),
    }
}

/// `out` with a symbolic link in its last component followed, so that the output replaces the
/// directory the link names and the link keeps naming it; a link to nothing is refused.
fn resolve(out: &Path) -> Result<PathBuf, TrainError> {
    match std::fs::symlink_metadata(out) {
        Ok(meta) if meta.file_type().is_symlink() => {
            std::fs::canonicalize(out).map_err(|_| TrainError::DanglingLink {
                path: out.to_path_buf(),
                to: std::fs::read_link(out).unwrap_or_default(),
            })
        }
        _ => Ok(out.to_path_buf()),
    }
}

/// `path`'s file name with `suffix` appended, beside it.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

impl RunDir {
    /// Checks, without creating anything, that [`RunDir::create`] may start the directory `out`;
    /// returns where it would be (a symbolic link followed).
    pub fn check(out: &Path) -> Result<PathBuf, TrainError> {
        let target = resolve(out)?;
        check_free(&target, &[])?;
        Ok(target)
    }

    /// Starts the directory `out`, which must be absent or an empty directory: checks it,
    /// creates its parents and the sibling `OUT.partial-<pid>`.
    pub fn create(out: &Path) -> Result<RunDir, TrainError> {
        RunDir::replacing(out, &[])
    }

    /// Starts the directory `out`, which may already hold the outputs of an earlier run of the
    /// same command: files named in `layout` and nothing else. [`RunDir::commit`] replaces the
    /// whole directory, so files of the layout that this run does not write disappear with it.
    pub fn replacing(out: &Path, layout: &[&str]) -> Result<RunDir, TrainError> {
        let layout: Vec<String> = layout.iter().map(|s| s.to_string()).collect();
        if out.file_name().is_none() {
            return Err(TrainError::Io {
                path: out.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the output path needs a final directory name",
                ),
            });
        }
        let target = resolve(out)?;
        check_free(&target, &layout)?;
        let partial = sibling(&target, &format!(".partial-{}", std::process::id()));
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        // A leftover of a killed run with the same pid is ours to replace.
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
        }
        std::fs::create_dir(&partial).map_err(io(&partial))?;
        Ok(RunDir {
            target,
            partial,
            layout,
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

    /// Renames the finished directory to its final path, replacing what was there, and
    /// returns it.
    ///
    /// An existing directory is swapped with the new one in one step where the system can
    /// (Linux `renameat2` with `RENAME_EXCHANGE`), then removed; elsewhere it is first renamed aside to `OUT.old-<pid>` and
    /// removed once the new one is in place. Either way `OUT` holds the old set or the new one,
    /// never a mixture; only the second way has a moment without `OUT` (see [`recover`]).
    pub fn commit(mut self) -> Result<PathBuf, TrainError> {
        // Checked again: another process may have put something there during the run.
        check_free(&self.target, &self.layout)?;
        let set_aside = self.target.is_dir();
        if set_aside && exchange(&self.partial, &self.target).map_err(io(&self.target))? {
            // `partial` now holds the previous outputs.
            self.committed = true;
            std::fs::remove_dir_all(&self.partial).map_err(io(&self.partial))?;
            return Ok(self.target.clone());
        }
        let old = sibling(&self.target, &format!(".old-{}", std::process::id()));
        if set_aside {
            std::fs::rename(&self.target, &old).map_err(io(&self.target))?;
        }
        if let Err(source) = std::fs::rename(&self.partial, &self.target) {
            if set_aside {
                // Best effort: put the previous outputs back where they were.
                let _ = std::fs::rename(&old, &self.target);
            }
            return Err(TrainError::Io {
                path: self.target.clone(),
                source,
            });
        }
        self.committed = true;
        if set_aside {
            std::fs::remove_dir_all(&old).map_err(io(&old))?;
        }
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

/// Swaps the directories `a` and `b` in one step: Linux `renameat2` with `RENAME_EXCHANGE`.
/// `Ok(false)`, with nothing changed, where the kernel (before 3.15) or the file system cannot.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c_path = |p: &Path| {
        CString::new(p.as_os_str().as_bytes()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL byte in the path")
        })
    };
    let (a, b) = (c_path(a)?, c_path(b)?);
    // SAFETY: `a` and `b` are NUL-terminated strings that live until the call returns, and the
    // system call only reads them; the other arguments are integers. Called through `syscall`
    // so that no particular C library version is needed.
    let done = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if done == 0 {
        return Ok(true);
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::ENOSYS | libc::EINVAL) => Ok(false),
        _ => Err(error),
    }
}

/// Swaps the directories `a` and `b` in one step: not available here, so `Ok(false)`.
#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, _b: &Path) -> std::io::Result<bool> {
    Ok(false)
}

/// Whether the process `pid` is running (read from `/proc`; where there is no `/proc`, every
/// process counts as gone).
pub fn process_runs(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// A directory that [`recover`] put back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// Where it was: `OUT.old-<pid>`.
    pub from: PathBuf,
    /// The process that set it aside and was stopped before it put the new directory in place.
    pub pid: u32,
}

/// Puts back the directory `out` if a process was killed inside [`RunDir::commit`] between its
/// two renames (where directories cannot be swapped in one step): `out` is missing and
/// `OUT.old-<pid>` of a process that no longer runs is beside it. That directory (the outputs
/// before the interrupted replacement; for a training run, its resumable directory) is renamed
/// back to `out`, and the process's `OUT.partial-<pid>` is removed. Returns what was put back,
/// or `None` when there was nothing to do.
pub fn recover(out: &Path) -> Result<Option<Recovered>, TrainError> {
    let Some(name) = out.file_name() else {
        return Ok(None);
    };
    if std::fs::symlink_metadata(out).is_ok() {
        return Ok(None);
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Ok(None);
    };
    let prefix = format!("{}.old-", name.to_string_lossy());
    // The newest, should several killed processes have left one.
    let mut newest: Option<(SystemTime, PathBuf, u32)> = None;
    for entry in entries.filter_map(Result::ok) {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file_name
            .strip_prefix(&prefix)
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || process_runs(pid) {
            continue;
        }
        let modified = entry
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(UNIX_EPOCH);
        if newest.as_ref().is_none_or(|(t, _, _)| modified > *t) {
            newest = Some((modified, entry.path(), pid));
        }
    }
    let Some((_, from, pid)) = newest else {
        return Ok(None);
    };
    std::fs::rename(&from, out).map_err(io(out))?;
    let partial = sibling(out, &format!(".partial-{pid}"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
    }
    Ok(Some(Recovered { from, pid }))
}

/// Writes `bytes` to `path` through a temporary sibling and a rename, so that readers see the old
/// file or the whole new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = sibling(path, &format!(".tmp-{}", std::process::id()));
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

    /// A directory of another run's outputs is replaced as a whole, so a file of another layout
    /// (a range search's `counts.npy` under a kNN search) goes with it; a file outside the layout
    /// is refused before any work.
    #[test]
    fn replacing_swaps_the_whole_set() {
        let base = std::env::temp_dir().join(format!("nhl-replace-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let out = base.join("search");
        let layout = ["ids.npy", "counts.npy", "search.json"];
        let dir = RunDir::replacing(&out, &layout).unwrap();
        write_atomic(&dir.file("ids.npy"), b"range").unwrap();
        write_atomic(&dir.file("counts.npy"), b"range").unwrap();
        dir.commit().unwrap();

        let dir = RunDir::replacing(&out, &layout).unwrap();
        write_atomic(&dir.file("ids.npy"), b"knn").unwrap();
        // Until the commit the old set stays whole.
        assert_eq!(std::fs::read(out.join("counts.npy")).unwrap(), b"range");
        dir.commit().unwrap();
        let mut names: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["ids.npy"]);
        assert_eq!(std::fs::read(out.join("ids.npy")).unwrap(), b"knn");
        assert_eq!(std::fs::read_dir(&base).unwrap().count(), 1);

        std::fs::write(out.join("notes.txt"), b"mine").unwrap();
        let e = RunDir::replacing(&out, &layout).unwrap_err().to_string();
        assert!(e.contains("holds notes.txt") && e.contains("--out"), "{e}");
        assert_eq!(std::fs::read_dir(&base).unwrap().count(), 1);
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// A process id that no process has (above the kernel's largest, 2^22).
    const GONE: u32 = 4_000_000_000;

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The moment between the two renames of a commit, made on disk: the old directory set
    /// aside, the new one not yet in place. `recover` puts the old one back, and only when the
    /// process that left it is gone.
    #[test]
    fn a_directory_left_set_aside_is_put_back() {
        let base = std::env::temp_dir().join(format!("nhl-recover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let out = base.join("run");
        let old = base.join(format!("run.old-{GONE}"));
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("resume.json"), b"old").unwrap();
        std::fs::create_dir_all(base.join(format!("run.partial-{GONE}"))).unwrap();
        std::fs::write(base.join("other.old-7"), b"not ours").unwrap();

        let back = recover(&out).unwrap().unwrap();
        assert_eq!((back.from, back.pid), (old, GONE));
        assert_eq!(std::fs::read(out.join("resume.json")).unwrap(), b"old");
        assert_eq!(files(&base), ["other.old-7", "run"]);
        // With `out` in place there is nothing to do.
        assert_eq!(recover(&out).unwrap(), None);

        // A set-aside directory of a running process (this one) is left alone.
        std::fs::remove_dir_all(&out).unwrap();
        let ours = base.join(format!("run.old-{}", std::process::id()));
        std::fs::create_dir_all(&ours).unwrap();
        assert_eq!(recover(&out).unwrap(), None);
        assert!(ours.exists() && !out.exists());
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// A commit over an existing directory leaves nothing beside it, whichever way it went.
    #[test]
    fn exchange_swaps_two_directories_or_changes_nothing() {
        let base = std::env::temp_dir().join(format!("nhl-exchange-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (a, b) = (base.join("a"), base.join("b"));
        for (dir, text) in [(&a, "a"), (&b, "b")] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join("f"), text).unwrap();
        }
        let swapped = exchange(&a, &b).unwrap();
        let (in_a, in_b) = if swapped { ("b", "a") } else { ("a", "b") };
        assert_eq!(std::fs::read_to_string(a.join("f")).unwrap(), in_a);
        assert_eq!(std::fs::read_to_string(b.join("f")).unwrap(), in_b);
        assert!(exchange(&a, &base.join("missing")).is_err() || !swapped);
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// A symbolic link is checked when the directory is made, before any work: one naming a
    /// directory is followed (the link keeps naming the finished run), one naming nothing is
    /// refused.
    #[cfg(unix)]
    #[test]
    fn symbolic_links_are_checked_first() {
        let base = std::env::temp_dir().join(format!("nhl-links-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let real = base.join("real");
        std::fs::create_dir_all(&real).unwrap();
        let link = base.join("latest");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let dir = RunDir::create(&link).unwrap();
        write_atomic(&dir.file("a.txt"), b"run").unwrap();
        dir.commit().unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(link.join("a.txt")).unwrap(), b"run");
        // Now it names a finished run: refused like the directory itself.
        let e = RunDir::create(&link).unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");

        let dangling = base.join("dangling");
        std::os::unix::fs::symlink(base.join("nowhere"), &dangling).unwrap();
        let e = RunDir::create(&dangling).unwrap_err().to_string();
        assert!(e.contains("symbolic link") && e.contains("nowhere"), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}

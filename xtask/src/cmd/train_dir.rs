//! The run directory of `cargo xtask train` while it trains: checkpoints, interrupts, resuming.
//!
//! A run checks `OUT` before any work and writes nothing until its first checkpoint (after the
//! first epoch, or at an interrupt), which writes `resume.json` (the flags and working directory
//! of the run, and the length and hash of each data file it read: `--resume` refuses to
//! continue on a file that changed) and `training_state.safetensors` into `OUT.partial-<pid>`
//! and renames it to `OUT`: from then on `OUT` is a resumable run directory, each later
//! checkpoint replacing its state file whole. The finished run's outputs replace that directory
//! as a set. So a SIGKILL at any moment leaves nothing at `OUT`, a resumable directory, or the
//! finished run; what a killed process leaves beside them (a temporary state file, a partial
//! output directory) is named as such and removed when the run resumes, and a resumable
//! directory it left set aside in the middle of that replacement (where the file system cannot
//! swap two directories at once) is put back by the next command that names `OUT`.
//!
//! SIGINT and SIGTERM ([`StopFlag`]) ask the run to stop after its current step; it writes a
//! checkpoint, says how to resume and exits non-zero. A second SIGINT ends the process at once
//! (the last checkpoint stays whole).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use nhl_train::data::fingerprint::FileFingerprint;
use nhl_train::error::TrainError;
use nhl_train::run_dir::{process_runs, write_atomic, RunDir};
use nhl_train::train_state::{TrainState, STATE_FILE};
use serde::{Deserialize, Serialize};

use super::train::Args;

/// The file of a resumable run directory that records how the run was started.
pub const RESUME_FILE: &str = "resume.json";

/// What `resume.json` holds: the flags of the run, the directory relative paths in them are
/// relative to, and what the data files were when the run started.
#[derive(Serialize, Deserialize)]
struct Record {
    cwd: PathBuf,
    args: Args,
    inputs: Vec<FileFingerprint>,
}

/// Set by SIGINT or SIGTERM: the run stops after its current step.
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Installs the handlers (with signal-hook: they only set an atomic flag, which is all a
    /// signal handler may safely do). A SIGINT that finds the flag already set exits at once.
    pub fn install() -> anyhow::Result<StopFlag> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let flag = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register_conditional_shutdown(SIGINT, 130, flag.clone())
            .context("installing the SIGINT handler")?;
        for signal in [SIGINT, SIGTERM] {
            signal_hook::flag::register(signal, flag.clone())
                .context("installing the SIGINT/SIGTERM handlers")?;
        }
        Ok(StopFlag(flag))
    }

    /// Whether a stop was asked for.
    pub fn raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Where the run's checkpoints go.
enum Place {
    /// Before the first checkpoint: the checked output path.
    Checked(PathBuf),
    /// The resumable run directory; `ours` when this process made it so.
    Resumable { path: PathBuf, ours: bool },
}

/// The run directory of a training run, from its claim to its outputs.
pub struct TrainDir {
    place: Option<Place>,
    record: Record,
    /// `record` as written to `resume.json`.
    record_text: String,
}

impl TrainDir {
    /// A fresh run into `out` (checked here, before any work), started with `args`.
    pub fn fresh(out: &Path, args: &Args) -> anyhow::Result<TrainDir> {
        let target = RunDir::check(out)?;
        let record = Record {
            cwd: std::env::current_dir().context("reading the working directory")?,
            args: args.clone(),
            inputs: Vec::new(),
        };
        Ok(TrainDir {
            place: Some(Place::Checked(target)),
            record_text: serde_json::to_string_pretty(&record)? + "\n",
            record,
        })
    }

    /// Records what the data files of a fresh run are, for [`TrainDir::resume`] to check.
    pub fn record_inputs(&mut self, inputs: Vec<FileFingerprint>) -> anyhow::Result<()> {
        self.record.inputs = inputs;
        self.record_text = serde_json::to_string_pretty(&self.record)? + "\n";
        Ok(())
    }

    /// Opens the resumable run directory `dir`: returns it, the flags of its run (the working
    /// directory is set to the one they were given in) and its training state. Fails, naming
    /// the file, when a data file of the run is not what it was when the run started.
    pub fn resume(dir: &Path) -> anyhow::Result<(TrainDir, Args, TrainState)> {
        let path = std::fs::canonicalize(dir)
            .with_context(|| format!("--resume {}: no such run directory", dir.display()))?;
        if path.join("metrics.json").is_file() {
            bail!(
                "--resume {}: this run is finished (it has metrics.json)",
                dir.display()
            );
        }
        let record_path = path.join(RESUME_FILE);
        let text = std::fs::read_to_string(&record_path).with_context(|| {
            format!(
                "--resume {}: not a resumable run directory (reading {RESUME_FILE})",
                dir.display()
            )
        })?;
        let record: Record = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a valid {RESUME_FILE}", record_path.display()))?;
        let state = TrainState::load(&path.join(STATE_FILE))?;
        remove_leftovers(&path)?;
        std::env::set_current_dir(&record.cwd).with_context(|| {
            format!(
                "{}: the run's working directory {}",
                record_path.display(),
                record.cwd.display()
            )
        })?;
        for input in &record.inputs {
            input.check()?;
        }
        let mut args = record.args.clone();
        args.out = Some(path.clone());
        let dir = TrainDir {
            place: Some(Place::Resumable { path, ours: false }),
            record,
            record_text: text,
        };
        Ok((dir, args, state))
    }

    /// The path the run will have.
    pub fn target(&self) -> PathBuf {
        match &self.place {
            Some(Place::Checked(path)) => path.clone(),
            Some(Place::Resumable { path, .. }) => path.clone(),
            None => PathBuf::new(),
        }
    }

    /// Writes a checkpoint: the first one renames the claimed directory into place.
    pub fn checkpoint(&mut self, state: &TrainState) -> Result<(), TrainError> {
        self.place = Some(match self.place.take() {
            Some(Place::Checked(path)) => {
                let dir = RunDir::create(&path)?;
                write_atomic(&dir.file(RESUME_FILE), self.record_text.as_bytes())?;
                state.save(&dir.file(STATE_FILE))?;
                Place::Resumable {
                    path: dir.commit()?,
                    ours: true,
                }
            }
            Some(Place::Resumable { path, ours }) => {
                state.save(&path.join(STATE_FILE))?;
                Place::Resumable { path, ours }
            }
            None => return Ok(()),
        });
        Ok(())
    }

    /// The directory the finished run's outputs are written into; its commit replaces the
    /// resumable directory.
    pub fn finish(mut self) -> anyhow::Result<RunDir> {
        Ok(match self.place.take() {
            Some(Place::Checked(path)) => RunDir::create(&path)?,
            Some(Place::Resumable { path, .. }) => {
                RunDir::replacing(&path, &[RESUME_FILE, STATE_FILE])?
            }
            None => bail!("the run directory was already finished"),
        })
    }

    /// After a failure that resuming would only repeat: removes the resumable directory if this
    /// process made it.
    pub fn abandon(mut self) {
        if let Some(Place::Resumable { path, ours: true }) = self.place.take() {
            // Best effort: the failure is what the user needs to see.
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// Removes what killed runs of the directory `path` left: temporary state files inside it, and
/// beside it the partial and set-aside directories (`NAME.partial-<pid>`, `NAME.old-<pid>`) of
/// processes that no longer run.
fn remove_leftovers(path: &Path) -> anyhow::Result<()> {
    let tmp_prefix = format!("{STATE_FILE}.tmp-");
    for entry in std::fs::read_dir(path)?.filter_map(Result::ok) {
        if entry.file_name().to_string_lossy().starts_with(&tmp_prefix) {
            std::fs::remove_file(entry.path())?;
        }
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(());
    };
    let name = name.to_string_lossy();
    for entry in std::fs::read_dir(parent)?.filter_map(Result::ok) {
        let sibling = entry.file_name().to_string_lossy().into_owned();
        let pid = [".partial-", ".old-"]
            .iter()
            .find_map(|mark| sibling.strip_prefix(&format!("{name}{mark}")))
            .and_then(|pid| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| pid != std::process::id() && !process_runs(pid)) {
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

//! SIGINT, SIGTERM and SIGKILL during `cargo xtask train`: an interrupt writes a checkpoint,
//! says how to resume and exits non-zero; a kill leaves nothing or a resumable directory; and
//! `--resume` ends with the codes and model bytes of a run that was never stopped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Temp(PathBuf);

impl Temp {
    fn new(test: &str) -> Temp {
        let dir =
            std::env::temp_dir().join(format!("nhl-xtask-signals-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Temp(dir)
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A short run on the embedded data: about a tenth of a second per epoch.
const FLAGS: [&str; 6] = ["--backend", "cpu", "--hidden", "8", "--epochs", "4"];
/// What a finished run compares by.
const RESULTS: [&str; 3] = ["model.safetensors", "query_codes.npy", "database_codes.npy"];

fn train(out: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("train")
        .args(FLAGS)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child`; its success and what it printed.
fn finish(child: Child) -> (bool, String) {
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn resume(dir: &Path) -> (bool, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["train", "--resume"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish(child)
}

/// Sends `signal` to `child` once its run directory exists (its first checkpoint is written),
/// after `delay` more.
fn signal_when_resumable(child: &Child, out: &Path, signal: &str, delay: Duration) {
    let start = Instant::now();
    while !out.exists() {
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint");
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(delay);
    let sent = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(sent.success());
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn same_results(a: &Path, b: &Path) {
    for name in RESULTS {
        assert!(
            std::fs::read(a.join(name)).unwrap() == std::fs::read(b.join(name)).unwrap(),
            "{name} differs"
        );
    }
}

/// SIGINT and SIGTERM stop the run after a step with a checkpoint; resuming it (SIGINT twice
/// over) ends exactly as the uninterrupted run.
#[test]
fn an_interrupted_run_resumes_to_the_same_result() {
    let tmp = Temp::new("interrupt");
    let whole = tmp.0.join("whole");
    let (ok, said) = finish(train(&whole));
    assert!(ok, "{said}");

    for signal in ["INT", "TERM"] {
        let out = tmp.0.join(signal);
        let child = train(&out);
        signal_when_resumable(&child, &out, signal, Duration::ZERO);
        let (ok, said) = finish(child);
        assert!(
            !ok && said.contains("on request; its state is saved")
                && said.contains(&format!(
                    "resume with: cargo xtask train --resume {}",
                    out.display()
                )),
            "{said}"
        );
        assert_eq!(entries(&out), ["resume.json", "training_state.safetensors"]);
        let (ok, said) = resume(&out);
        assert!(ok, "{said}");
        same_results(&whole, &out);
        assert!(!out.join("training_state.safetensors").exists());
    }
    let (ok, said) = resume(&tmp.0.join("INT"));
    assert!(!ok && said.contains("this run is finished"), "{said}");
}

/// A SIGKILL at any moment leaves nothing, or a directory that resumes to the same result: never
/// a half-written file that a later command reads as whole.
#[test]
fn a_killed_run_leaves_nothing_or_a_resumable_directory() {
    let tmp = Temp::new("kill");
    let whole = tmp.0.join("whole");
    let (ok, said) = finish(train(&whole));
    assert!(ok, "{said}");

    // Killed before any checkpoint: nothing at all.
    let early = tmp.0.join("early");
    let mut child = train(&early);
    std::thread::sleep(Duration::from_millis(20));
    child.kill().unwrap();
    child.wait().unwrap();
    let leftovers: Vec<String> = entries(&tmp.0)
        .into_iter()
        .filter(|n| n.starts_with("early"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    for (i, delay) in [0u64, 2, 30, 90].into_iter().enumerate() {
        let out = tmp.0.join(format!("killed-{i}"));
        let child = train(&out);
        signal_when_resumable(&child, &out, "KILL", Duration::from_millis(delay));
        let (ok, _) = finish(child);
        if ok {
            // Finished before the kill: a whole run.
            same_results(&whole, &out);
            continue;
        }
        let names = entries(&out);
        assert!(
            names.iter().all(|n| n == "resume.json"
                || n == "training_state.safetensors"
                || n.starts_with("training_state.safetensors.tmp-")),
            "{names:?}"
        );
        let (ok, said) = resume(&out);
        assert!(ok, "{said}");
        same_results(&whole, &out);
        let beside: Vec<String> = entries(&tmp.0)
            .into_iter()
            .filter(|n| n.starts_with(&format!("killed-{i}.")))
            .collect();
        assert!(beside.is_empty(), "{beside:?}");
    }
}

/// A process id that no process has (above the kernel's largest, 2^22).
const GONE: u32 = 4_000_000_000;

/// Killed between the two renames that replace a resumable directory with the finished run
/// (where the file system cannot swap two directories at once): no `OUT`, the resumable
/// directory set aside as `OUT.old-<pid>`, the outputs in `OUT.partial-<pid>`. Made on disk here:
/// `--resume` puts the directory back, says so, and ends as the run that never stopped.
#[test]
fn a_run_directory_left_set_aside_is_put_back_and_resumes() {
    let tmp = Temp::new("set-aside");
    let whole = tmp.0.join("whole");
    let (ok, said) = finish(train(&whole));
    assert!(ok, "{said}");
    let out = tmp.0.join("run");
    let child = train(&out);
    signal_when_resumable(&child, &out, "INT", Duration::ZERO);
    let (ok, said) = finish(child);
    assert!(!ok, "{said}");
    let old = tmp.0.join(format!("run.old-{GONE}"));
    std::fs::rename(&out, &old).unwrap();
    let partial = tmp.0.join(format!("run.partial-{GONE}"));
    std::fs::create_dir(&partial).unwrap();
    std::fs::write(partial.join("metrics.json"), b"{").unwrap();

    let (ok, said) = resume(&out);
    assert!(
        ok && said.contains(&format!(
            "--resume {}: was missing: process {GONE} was stopped while replacing it and left \
             it as {}; put it back",
            out.display(),
            old.display()
        )),
        "{said}"
    );
    same_results(&whole, &out);
    let beside: Vec<String> = entries(&tmp.0)
        .into_iter()
        .filter(|n| n.starts_with("run."))
        .collect();
    assert!(beside.is_empty(), "{beside:?}");
}

/// 400 items of 8 features in 4 classes, written in `dir` as `FEATURES.npy,LABELS.npy`; returns
/// the source and the labels file.
fn user_data(dir: &Path) -> (String, PathBuf) {
    use nhl_index::npy::{write_npy, NpyArray, NpyData};
    let n = 400;
    let (features, labels) = (dir.join("features.npy"), dir.join("labels.npy"));
    let values = (0..n * 8).map(|i| ((i * 7) % 13) as f32 / 13.0).collect();
    write_npy(
        &features,
        &NpyArray {
            shape: vec![n, 8],
            data: NpyData::F32(values),
        },
    )
    .unwrap();
    write_npy(
        &labels,
        &NpyArray {
            shape: vec![n],
            data: NpyData::I64((0..n as i64).map(|i| i % 4).collect()),
        },
    )
    .unwrap();
    (
        format!("{},{}", features.display(), labels.display()),
        labels,
    )
}

/// A run resumes only on the data it started with: a data file changed since is named and the
/// run is left resumable; put back, it resumes.
#[test]
fn resuming_on_changed_data_is_refused_naming_the_file() {
    let tmp = Temp::new("data");
    let (source, labels) = user_data(&tmp.0);
    let out = tmp.0.join("run");
    let child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "train",
            "--backend",
            "cpu",
            "--hidden",
            "8",
            "--epochs",
            "400",
        ])
        .args(["--data", &source, "--split-sizes", "50,300", "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    signal_when_resumable(&child, &out, "INT", Duration::ZERO);
    let (ok, said) = finish(child);
    assert!(!ok && said.contains("resume with"), "{said}");

    let original = std::fs::read(&labels).unwrap();
    // The class of the last item, 3, becomes 2: the same length, other contents.
    let mut changed = original.clone();
    let last = changed.len() - 8;
    changed[last] ^= 1;
    std::fs::write(&labels, &changed).unwrap();
    let (ok, said) = resume(&out);
    assert!(
        !ok && said.contains(&format!(
            "{}: changed since the run started",
            labels.display()
        )) && said.contains("restore the file, or start a new run"),
        "{said}"
    );
    assert_eq!(entries(&out), ["resume.json", "training_state.safetensors"]);

    std::fs::write(&labels, &original).unwrap();
    let (ok, said) = resume(&out);
    assert!(ok, "{said}");
    assert!(out.join("metrics.json").is_file());
}

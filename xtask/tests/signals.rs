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

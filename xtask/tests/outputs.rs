//! Every command's outputs appear as a set or not at all, the output path is checked before any
//! work, and `eval` fails when its figures disagree with the run's.

use nhl_index::npy::{write_npy, NpyArray, NpyData};
use nhl_index::synth::random_codes;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Temp(PathBuf);

impl Temp {
    fn new(test: &str) -> Temp {
        let dir =
            std::env::temp_dir().join(format!("nhl-xtask-outputs-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Temp(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the xtask binary (through `sh -c PRELUDE; exec ...` when a prelude is given); its
/// success and what it printed.
fn xtask_with(prelude: Option<&str>, args: &[&str]) -> (bool, String) {
    let bin = env!("CARGO_BIN_EXE_xtask");
    let out = match prelude {
        None => Command::new(bin).args(args).output().unwrap(),
        Some(prelude) => Command::new("sh")
            .arg("-c")
            .arg(format!("{prelude}; exec \"$0\" \"$@\""))
            .arg(bin)
            .args(args)
            .output()
            .unwrap(),
    };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn xtask(args: &[&str]) -> (bool, String) {
    xtask_with(None, args)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Writes database and query codes into `tmp`; returns the `--database ... --queries ...` flags.
fn codes(tmp: &Temp) -> Vec<String> {
    random_codes(300, 64, 1)
        .unwrap()
        .write_npy(&tmp.0.join("db.npy"))
        .unwrap();
    random_codes(40, 64, 2)
        .unwrap()
        .write_npy(&tmp.0.join("q.npy"))
        .unwrap();
    vec![
        "search".into(),
        "--database".into(),
        tmp.path("db.npy"),
        "--queries".into(),
        tmp.path("q.npy"),
    ]
}

fn search(tmp: &Temp, prelude: Option<&str>, flags: &[&str]) -> (bool, String) {
    let mut args = codes(tmp);
    args.extend(flags.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    xtask_with(prelude, &args)
}

/// A kNN search into the directory of a range search replaces the whole set: the range search's
/// `counts.npy` goes with it.
#[test]
fn a_search_replaces_the_previous_set() {
    let tmp = Temp::new("set");
    let out = tmp.path("out");
    let (ok, said) = search(&tmp, None, &["--radius", "28", "--out", &out]);
    assert!(ok, "{said}");
    assert_eq!(
        entries(Path::new(&out)),
        ["counts.npy", "distances.npy", "ids.npy", "search.json"]
    );
    let (ok, said) = search(&tmp, None, &["--k", "5", "--out", &out]);
    assert!(ok, "{said}");
    assert_eq!(
        entries(Path::new(&out)),
        ["distances.npy", "ids.npy", "search.json"]
    );
    assert_eq!(entries(&tmp.0), ["db.npy", "out", "q.npy"]);
}

/// A search that fails (bad flags, a full disk) leaves `--out` as it was: absent, or holding the
/// previous set whole.
#[test]
fn a_failed_search_leaves_the_output_as_it_was() {
    let tmp = Temp::new("failed");
    let out = tmp.path("out");
    for flags in [
        &["--cascade", "16:many"][..],
        &["--cascade", "100:10"],
        &["--mih", "--mih-substrings", "1000"],
    ] {
        let mut flags = flags.to_vec();
        flags.extend(["--out", &out]);
        let (ok, said) = search(&tmp, None, &flags);
        assert!(!ok, "{flags:?}: {said}");
        assert_eq!(entries(&tmp.0), ["db.npy", "q.npy"], "{flags:?}: {said}");
    }

    // A full disk (a file-size limit, with its signal ignored, fails the writes the same way).
    let full = "trap '' XFSZ; ulimit -f 8";
    let (ok, said) = search(&tmp, Some(full), &["--k", "300", "--out", &out]);
    assert!(!ok && said.contains("File too large"), "{said}");
    assert_eq!(entries(&tmp.0), ["db.npy", "q.npy"], "{said}");

    let (ok, said) = search(&tmp, None, &["--k", "3", "--out", &out]);
    assert!(ok, "{said}");
    let before = std::fs::read(Path::new(&out).join("ids.npy")).unwrap();
    let (ok, said) = search(&tmp, Some(full), &["--k", "300", "--out", &out]);
    assert!(!ok, "{said}");
    assert_eq!(entries(&tmp.0), ["db.npy", "out", "q.npy"], "{said}");
    assert_eq!(
        std::fs::read(Path::new(&out).join("ids.npy")).unwrap(),
        before
    );
}

/// The output path is checked before the inputs are even read.
#[test]
fn the_output_path_is_checked_first() {
    let tmp = Temp::new("first");
    std::fs::write(tmp.0.join("file"), b"x").unwrap();
    std::fs::create_dir(tmp.0.join("mine")).unwrap();
    std::fs::write(tmp.0.join("mine/notes.txt"), b"x").unwrap();
    let absent = tmp.path("absent.npy");
    let check = |out: &str, expected: &str| {
        let (ok, said) = xtask(&[
            "search",
            "--database",
            &absent,
            "--queries",
            &absent,
            "--out",
            out,
        ]);
        assert!(
            !ok && said.contains(expected) && !said.contains("absent.npy"),
            "{said}"
        );
    };
    check(&tmp.path("file"), "already exists");
    check(&tmp.path("mine"), "holds notes.txt");
    std::os::unix::fs::symlink(tmp.0.join("nowhere"), tmp.0.join("link")).unwrap();
    check(&tmp.path("link"), "symbolic link");

    // The same for a training run, before the data is loaded.
    let (ok, said) = xtask(&[
        "train",
        "--backend",
        "cpu",
        "--data",
        &format!("{absent},{absent}"),
        "--split-sizes",
        "5,10",
        "--out",
        &tmp.path("link"),
    ]);
    assert!(!ok && said.contains("symbolic link"), "{said}");
    let (ok, said) = xtask(&["export", "--codes", &absent, "--faiss", &tmp.path("mine")]);
    assert!(!ok && said.contains("is a directory"), "{said}");
    let (ok, said) = xtask(&[
        "encode",
        "--model",
        &absent,
        "--data",
        &absent,
        "--out",
        &tmp.path("mine"),
    ]);
    assert!(
        !ok && said.contains("--out") && said.contains("is a directory"),
        "{said}"
    );
    assert_eq!(entries(&tmp.0), ["file", "link", "mine"]);
}

/// `eval` succeeds on a run as written and fails, naming the figure, when `metrics.json` no longer
/// matches the codes.
#[test]
fn eval_fails_when_the_figures_disagree() {
    let tmp = Temp::new("eval");
    let n = 60;
    write_npy(
        &tmp.0.join("f.npy"),
        &NpyArray {
            shape: vec![n, 4],
            data: NpyData::F32((0..n * 4).map(|i| (i % 11) as f32 / 11.0).collect()),
        },
    )
    .unwrap();
    write_npy(
        &tmp.0.join("l.npy"),
        &NpyArray {
            shape: vec![n],
            data: NpyData::I64((0..n as i64).map(|i| i % 3).collect()),
        },
    )
    .unwrap();
    let run = tmp.path("run");
    let (ok, said) = xtask(&[
        "train",
        "--backend",
        "cpu",
        "--data",
        &format!("{},{}", tmp.path("f.npy"), tmp.path("l.npy")),
        "--split-sizes",
        "10,30",
        "--bits",
        "8,16",
        "--hidden",
        "8",
        "--epochs",
        "1",
        "--out",
        &run,
    ]);
    assert!(ok, "{said}");
    let (ok, said) = xtask(&["eval", "--run", &run]);
    assert!(ok && said.contains("match metrics.json"), "{said}");

    let metrics = Path::new(&run).join("metrics.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
    let map = json["map"]["8"].as_f64().unwrap();
    json["map"]["8"] = serde_json::json!(map + 0.25);
    std::fs::write(&metrics, serde_json::to_string(&json).unwrap()).unwrap();
    let (ok, said) = xtask(&["eval", "--run", &run]);
    assert!(
        !ok && said.contains("1 figure(s) disagree") && said.contains("8 bits: mAP@ALL"),
        "{said}"
    );
}

//! `cargo xtask export`: codes (cut to a prefix) and IDs land in a FAISS file that reads back the
//! same, and every bad input is an error naming the file and what is wrong, with no output left.

use nhl_index::faiss::read_binary_index;
use nhl_index::npy::{write_npy, NpyArray, NpyData};
use nhl_index::synth::random_codes;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nhl-xtask-export-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn save(path: &Path, shape: Vec<usize>, data: NpyData) {
    write_npy(path, &NpyArray { shape, data }).unwrap();
}

/// Run `xtask export` with `args`; its success and what it printed.
fn export(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("export")
        .args(args)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn codes_and_ids_are_exported_and_read_back() -> anyhow::Result<()> {
    let dir = tmp_dir("ok");
    let codes = random_codes(50, 136, 3)?;
    let codes_path = dir.join("codes.npy");
    codes.write_npy(&codes_path)?;
    let ids: Vec<i64> = (0..50).map(|i| 1000 - 37 * i).collect();
    let ids_path = dir.join("ids.npy");
    save(&ids_path, vec![50], NpyData::I64(ids.clone()));
    let out = dir.join("out.index");
    let path = |p: &Path| p.to_str().unwrap().to_string();

    let (ok, said) = export(&["--codes", &path(&codes_path), "--faiss", &path(&out)]);
    assert!(ok, "{said}");
    let file = read_binary_index(&out, None)?;
    assert_eq!((file.codes, file.ids), (codes.clone(), None));

    let (ok, said) = export(&[
        "--codes",
        &path(&codes_path),
        "--ids",
        &path(&ids_path),
        "--bits",
        "64",
        "--faiss",
        &path(&out),
    ]);
    assert!(ok, "{said}");
    assert!(
        said.contains("IndexBinaryIDMap around an IndexBinaryFlat, 50 codes of 64 bits"),
        "{said}"
    );
    let file = read_binary_index(&out, None)?;
    assert_eq!(file.codes, codes.prefix(64)?.to_codes());
    assert_eq!(file.ids, Some(ids));
    assert_eq!(entries(&dir), ["codes.npy", "ids.npy", "out.index"]);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn bad_input_is_an_error_naming_the_file_and_leaves_no_output() -> anyhow::Result<()> {
    let dir = tmp_dir("bad");
    let codes_path = dir.join("codes.npy");
    random_codes(6, 24, 4)?.write_npy(&codes_path)?;
    let floats = dir.join("floats.npy");
    save(&floats, vec![6, 3], NpyData::F32(vec![0.5; 18]));
    let bad_ids: [(&str, Vec<usize>, NpyData, &str); 4] = [
        (
            "ids_i32.npy",
            vec![6],
            NpyData::I32(vec![1, 2, 3, 4, 5, 6]),
            "ids_i32.npy: dtype: expected int64",
        ),
        (
            "ids_short.npy",
            vec![5],
            NpyData::I64(vec![1, 2, 3, 4, 5]),
            "ids_short.npy: ids: expected 6 IDs, one per database row, found 5 IDs",
        ),
        (
            "ids_dup.npy",
            vec![6],
            NpyData::I64(vec![1, 2, 3, 4, 2, 6]),
            "ids_dup.npy: ids: expected unique IDs, found ID 2 at rows 1 and 4",
        ),
        (
            "ids_2d.npy",
            vec![6, 1],
            NpyData::I64(vec![1, 2, 3, 4, 5, 6]),
            "ids_2d.npy: shape: expected rank 1 [6]",
        ),
    ];
    for (name, shape, data, _) in &bad_ids {
        save(&dir.join(name), shape.clone(), data.clone());
    }
    let before = entries(&dir);
    let out = dir.join("out.index");
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let out_arg = out.to_str().unwrap();

    let mut cases: Vec<(Vec<String>, String)> = bad_ids
        .iter()
        .map(|(name, _, _, expected)| {
            (
                vec!["--codes".into(), p("codes.npy"), "--ids".into(), p(name)],
                expected.to_string(),
            )
        })
        .collect();
    cases.push((
        vec![
            "--codes".into(),
            p("codes.npy"),
            "--bits".into(),
            "12".into(),
        ],
        "--bits 12: FAISS binary indexes hold whole bytes".into(),
    ));
    cases.push((
        vec![
            "--codes".into(),
            p("codes.npy"),
            "--bits".into(),
            "32".into(),
        ],
        "codes.npy: 32 bits requested, the file holds 24-bit codes".into(),
    ));
    cases.push((
        vec!["--codes".into(), p("floats.npy")],
        "floats.npy: dtype: expected uint8 (packed codes), found float32".into(),
    ));
    cases.push((
        vec!["--codes".into(), p("missing.npy")],
        "missing.npy".into(),
    ));
    for (args, expected) in cases {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend(["--faiss", out_arg]);
        let (ok, said) = export(&all);
        assert!(!ok, "{args:?} was accepted: {said}");
        assert!(
            said.contains(&expected),
            "{args:?}: expected {expected:?} in: {said}"
        );
        assert_eq!(entries(&dir), before, "{args:?} left output behind");
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

//! `cargo xtask encode` from a fresh run: the run's database features encode to its
//! `database_codes.npy` byte for byte, and bad inputs are errors that name the file and the
//! field, with no output left.

use nhl_index::npy::{write_npy, NpyArray, NpyData};
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nhl-xtask-encode-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `xtask` with `args`; its success and what it printed.
fn xtask(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
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

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// User data: `n` items of `dim` float32 features in 4 classes, the first 12 the queries.
fn user_data(dir: &Path, n: usize, dim: usize) -> (PathBuf, PathBuf, Vec<f32>) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let features: Vec<f32> = (0..n * dim)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 1000) as f32 / 1000.0 + (i / dim % 4) as f32 * 0.3
        })
        .collect();
    let f = dir.join("features.npy");
    let l = dir.join("labels.npy");
    write_npy(
        &f,
        &NpyArray {
            shape: vec![n, dim],
            data: NpyData::F32(features.clone()),
        },
    )
    .unwrap();
    write_npy(
        &l,
        &NpyArray {
            shape: vec![n],
            data: NpyData::I64((0..n as i64).map(|i| i % 4).collect()),
        },
    )
    .unwrap();
    (f, l, features)
}

#[test]
fn a_runs_database_encodes_to_its_saved_codes_and_bad_inputs_leave_nothing() {
    let dir = tmp_dir("run");
    let (n, dim, queries) = (90, 13, 12);
    let (f, l, features) = user_data(&dir, n, dim);
    let run = dir.join("run");
    let source = format!("{},{}", path(&f), path(&l));
    let (ok, said) = xtask(&[
        "train",
        "--data",
        &source,
        "--split-sizes",
        "12,60",
        "--bits",
        "8,16,24",
        "--hidden",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--backend",
        "cpu",
        "--out",
        path(&run),
    ]);
    assert!(ok, "{said}");
    // The database is every item after the queries.
    let db = dir.join("db.npy");
    write_npy(
        &db,
        &NpyArray {
            shape: vec![n - queries, dim],
            data: NpyData::F32(features[queries * dim..].to_vec()),
        },
    )
    .unwrap();
    let codes = dir.join("codes.npy");
    let encode = |extra: &[&str]| {
        let mut args = vec![
            "encode",
            "--model",
            path(&run),
            "--data",
            path(&db),
            "--out",
            path(&codes),
            "--backend",
            "cpu",
        ];
        args.extend_from_slice(extra);
        xtask(&args)
    };
    let saved = std::fs::read(run.join("database_codes.npy")).unwrap();
    for extra in [&[][..], &["--batch-size", "5"]] {
        let (ok, said) = encode(extra);
        assert!(ok, "{said}");
        assert!(said.contains("78 codes of 24 bits"), "{said}");
        assert_eq!(std::fs::read(&codes).unwrap(), saved);
    }
    // The 16-bit codes: the first two bytes of each.
    let (ok, said) = encode(&["--bits", "16"]);
    assert!(ok, "{said}");
    let short = std::fs::read(&codes).unwrap();
    let header = saved.len() - (n - queries) * 3;
    let want: Vec<u8> = saved[header..]
        .chunks_exact(3)
        .flat_map(|c| c[..2].to_vec())
        .collect();
    assert_eq!(&short[header..], want);

    // Bad inputs: each names what is wrong, and no output (nor temporary file) is left.
    std::fs::remove_file(&codes).unwrap();
    let (ok, said) = encode(&["--bits", "12"]);
    assert!(
        !ok && said.contains("--bits") && said.contains("8, 16, 24"),
        "{said}"
    );
    let (ok, said) = encode(&["--batch-size", "0"]);
    assert!(!ok && said.contains("--batch-size"), "{said}");
    let (ok, said) = xtask(&[
        "encode",
        "--model",
        path(&run),
        "--data",
        path(&l),
        "--out",
        path(&codes),
        "--backend",
        "cpu",
    ]);
    assert!(
        !ok && said.contains("labels.npy") && said.contains("rank-2"),
        "{said}"
    );
    let (ok, said) = xtask(&[
        "encode",
        "--model",
        path(&db),
        "--data",
        path(&db),
        "--out",
        path(&codes),
        "--backend",
        "cpu",
    ]);
    assert!(!ok && said.contains("db.npy"), "{said}");
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("codes"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

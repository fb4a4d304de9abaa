//! `cargo xtask search` with user IDs (`--ids`, or a FAISS ID map), allow lists (`--allow`) and
//! FAISS database files: results against brute force over the allowed rows, named by user ID;
//! every bad input an error naming the file and the field, with no output left.

use nhl_index::faiss::write_binary_index;
use nhl_index::hamming::distance;
use nhl_index::npy::{read_npy, write_npy, NpyArray, NpyData};
use nhl_index::synth::{random_codes, replicate_with_noise};
use nhl_index::Codes;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nhl-xtask-search-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn save(path: &Path, shape: Vec<usize>, data: NpyData) {
    write_npy(path, &NpyArray { shape, data }).unwrap();
}

fn text(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

/// Run `xtask search` with `args`; its success and what it printed.
fn search(args: &[String]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("search")
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

/// The rows of `ids.npy` and of `distances.npy`, as i64.
type Outputs = (Vec<Vec<i64>>, Vec<Vec<i64>>);

/// `ids.npy` and `distances.npy` of an output directory, as i64 rows of their width.
fn outputs(dir: &Path) -> Outputs {
    let rows = |name: &str| {
        let array = read_npy(&dir.join(name)).unwrap();
        let width = array.shape[1];
        let values: Vec<i64> = match array.data {
            NpyData::I64(v) => v,
            NpyData::I32(v) => v.into_iter().map(i64::from).collect(),
            other => panic!("{name}: {}", other.dtype_name()),
        };
        values
            .chunks(width.max(1))
            .map(<[i64]>::to_vec)
            .collect::<Vec<_>>()
    };
    (rows("ids.npy"), rows("distances.npy"))
}

/// Per query, the allowed rows as (distance, row), sorted: the restricted ranking.
fn ranking(q: &Codes, db: &Codes, allowed: &[bool]) -> Vec<Vec<(i64, usize)>> {
    let (qv, dv) = (q.view(), db.view());
    (0..q.len())
        .map(|qi| {
            let query = qv.code(qi).unwrap();
            let mut all: Vec<(i64, usize)> = (0..db.len())
                .filter(|&r| allowed[r])
                .map(|r| {
                    let d = distance(query, dv.code(r).unwrap(), dv.last_word_mask());
                    (i64::from(d), r)
                })
                .collect();
            all.sort_unstable();
            all
        })
        .collect()
}

/// The expected `ids.npy` and `distances.npy` rows of a kNN search: the first k of each ranking
/// named by `name`, -1 padded to k.
fn expected_knn(rankings: &[Vec<(i64, usize)>], k: usize, name: impl Fn(usize) -> i64) -> Outputs {
    let pad = |mut row: Vec<i64>| {
        row.resize(k, -1);
        row
    };
    let take = |r: &Vec<(i64, usize)>| r.iter().take(k).copied().collect::<Vec<_>>();
    (
        rankings
            .iter()
            .map(|r| pad(take(r).into_iter().map(|(_, row)| name(row)).collect()))
            .collect(),
        rankings
            .iter()
            .map(|r| pad(take(r).into_iter().map(|(d, _)| d).collect()))
            .collect(),
    )
}

/// A database of 300 random 64-bit codes, queries near some of them, user IDs, and the files.
struct Setup {
    dir: PathBuf,
    db: Codes,
    queries: Codes,
    ids: Vec<i64>,
}

impl Setup {
    fn new(test: &str) -> Setup {
        let dir = tmp_dir(test);
        let db = random_codes(300, 64, 7).unwrap();
        let queries = replicate_with_noise(db.view(), 9, 0.1, 8).unwrap();
        db.write_npy(&dir.join("db.npy")).unwrap();
        queries.write_npy(&dir.join("q.npy")).unwrap();
        let ids: Vec<i64> = (0..300).map(|r| 5_000_000_000 - 7 * r).collect();
        save(&dir.join("ids.npy"), vec![300], NpyData::I64(ids.clone()));
        Setup {
            dir,
            db,
            queries,
            ids,
        }
    }

    fn path(&self, name: &str) -> String {
        text(&self.dir.join(name))
    }

    /// `--database DB --queries q.npy --out OUT` and `more`, whose `.npy` names become paths in
    /// the test's directory.
    fn args(&self, database: &str, out: &str, more: &[&str]) -> Vec<String> {
        let mut args = vec![
            "--database".to_string(),
            self.path(database),
            "--queries".into(),
            self.path("q.npy"),
            "--out".into(),
            self.path(out),
            "--threads".into(),
            "2".into(),
        ];
        args.extend(more.iter().map(|a| {
            if a.ends_with(".npy") {
                self.path(a)
            } else {
                a.to_string()
            }
        }));
        args
    }
}

#[test]
fn user_ids_and_allow_lists_restrict_and_name_the_results() {
    let s = Setup::new("allow");
    let n = s.db.len();
    // Every third row allowed, as a mask, as user IDs and as row numbers.
    let allowed: Vec<bool> = (0..n).map(|r| r % 3 == 1).collect();
    let mask: Vec<u8> = allowed.iter().map(|&a| u8::from(a)).collect();
    save(&s.dir.join("mask.npy"), vec![n], NpyData::U8(mask));
    // The same mask as NumPy's bool dtype (one byte 0 / 1 per row, as uint8 has).
    let bytes = std::fs::read(s.dir.join("mask.npy")).unwrap();
    let at = bytes.windows(4).position(|w| w == b"|u1'").unwrap();
    let mut as_bool = bytes.clone();
    as_bool[at..at + 4].copy_from_slice(b"|b1'");
    std::fs::write(s.dir.join("mask_bool.npy"), as_bool).unwrap();
    // Lists in descending order, so that their order is not the rows'.
    let rows: Vec<usize> = (0..n).filter(|&r| allowed[r]).rev().collect();
    let count = rows.len();
    let by_id = rows.iter().map(|&r| s.ids[r]).collect();
    let by_row = rows.iter().map(|&r| r as i64).collect();
    save(
        &s.dir.join("allow_ids.npy"),
        vec![count],
        NpyData::I64(by_id),
    );
    save(
        &s.dir.join("allow_rows.npy"),
        vec![count],
        NpyData::I64(by_row),
    );
    let rankings = ranking(&s.queries, &s.db, &allowed);
    let every = ranking(&s.queries, &s.db, &vec![true; n]);
    let user = |row: usize| s.ids[row];
    let row = |row: usize| row as i64;

    let cases: Vec<(Vec<&str>, Outputs)> = vec![
        (vec![], expected_knn(&every, 10, row)),
        (vec!["--ids", "ids.npy"], expected_knn(&every, 10, user)),
        (
            vec!["--allow", "mask.npy"],
            expected_knn(&rankings, 10, row),
        ),
        (
            vec!["--allow", "mask_bool.npy"],
            expected_knn(&rankings, 10, row),
        ),
        (
            vec!["--allow", "allow_rows.npy"],
            expected_knn(&rankings, 10, row),
        ),
        (
            vec!["--ids", "ids.npy", "--allow", "allow_ids.npy"],
            expected_knn(&rankings, 10, user),
        ),
        (
            vec!["--ids", "ids.npy", "--allow", "mask.npy"],
            expected_knn(&rankings, 10, user),
        ),
        (
            vec!["--ids", "ids.npy", "--allow", "mask.npy", "--mih"],
            expected_knn(&rankings, 10, user),
        ),
        (
            // Every row a candidate: the cascade is exact.
            vec!["--allow", "mask.npy", "--cascade", "16:300"],
            expected_knn(&rankings, 10, row),
        ),
    ];
    for (more, want) in cases {
        let (ok, said) = search(&s.args("db.npy", "out", &more));
        assert!(ok, "{more:?}: {said}");
        assert_eq!(outputs(&s.dir.join("out")), want, "{more:?}");
        let summary = std::fs::read_to_string(s.dir.join("out/search.json")).unwrap();
        let with_allow = more.contains(&"--allow");
        assert!(
            summary.contains(&format!(
                "\"allowed_rows\": {}",
                if with_allow { "100" } else { "null" }
            )),
            "{more:?}: {summary}"
        );
    }

    // Fewer allowed rows than k: every row holds them all, then -1.
    save(
        &s.dir.join("three.npy"),
        vec![3],
        NpyData::I64(vec![s.ids[5], s.ids[200], s.ids[0]]),
    );
    let three: Vec<bool> = (0..n).map(|r| [0, 5, 200].contains(&r)).collect();
    let (ok, said) = search(&s.args(
        "db.npy",
        "few",
        &["--ids", "ids.npy", "--allow", "three.npy", "--k", "5"],
    ));
    assert!(ok, "{said}");
    let want = expected_knn(&ranking(&s.queries, &s.db, &three), 5, user);
    assert!(want.0.iter().all(|r| r[3..] == [-1, -1]), "{:?}", want.0);
    assert_eq!(outputs(&s.dir.join("few")), want);

    // No row allowed: only padding.
    save(&s.dir.join("nothing.npy"), vec![n], NpyData::U8(vec![0; n]));
    let (ok, said) = search(&s.args("db.npy", "none", &["--allow", "nothing.npy"]));
    assert!(ok, "{said}");
    let (ids, distances) = outputs(&s.dir.join("none"));
    assert!(ids.iter().chain(&distances).all(|r| r == &vec![-1; 10]));

    // Range search: the allowed rows within the radius, named by user ID.
    let (ok, said) = search(&s.args(
        "db.npy",
        "range",
        &["--ids", "ids.npy", "--allow", "mask.npy", "--radius", "26"],
    ));
    assert!(ok, "{said}");
    let (ids, distances) = outputs(&s.dir.join("range"));
    assert!(ids.iter().any(|r| r[0] != -1), "some query has results");
    for (qi, r) in rankings.iter().enumerate() {
        let within: Vec<&(i64, usize)> = r.iter().filter(|(d, _)| *d <= 26).collect();
        let got: Vec<(i64, i64)> = ids[qi]
            .iter()
            .zip(&distances[qi])
            .filter(|(&id, _)| id != -1)
            .map(|(&id, &d)| (d, id))
            .collect();
        let want: Vec<(i64, i64)> = within.iter().map(|&&(d, row)| (d, s.ids[row])).collect();
        assert_eq!(got, want, "range, query {qi}");
    }
    std::fs::remove_dir_all(&s.dir).unwrap();
}

#[test]
fn faiss_databases_are_searched_with_their_ids() {
    let s = Setup::new("faiss");
    write_binary_index(&s.dir.join("flat.index"), s.db.view(), None).unwrap();
    write_binary_index(&s.dir.join("map.index"), s.db.view(), Some(&s.ids)).unwrap();
    // Detected by its fourcc whatever its name.
    std::fs::copy(s.dir.join("map.index"), s.dir.join("map.bin")).unwrap();
    let n = s.db.len();
    let allowed: Vec<bool> = (0..n).map(|r| r % 2 == 0).collect();
    let listed: Vec<i64> = (0..n).filter(|&r| allowed[r]).map(|r| s.ids[r]).collect();
    save(
        &s.dir.join("allow_ids.npy"),
        vec![listed.len()],
        NpyData::I64(listed),
    );
    let rankings = ranking(&s.queries, &s.db, &allowed);
    let every = ranking(&s.queries, &s.db, &vec![true; n]);
    let user = |row: usize| s.ids[row];
    let (ids, allow) = ("ids.npy", "allow_ids.npy");
    let cases: Vec<(&str, Vec<&str>, Outputs, &str)> = vec![
        (
            "flat.index",
            vec![],
            expected_knn(&every, 10, |r| r as i64),
            "\"user_ids\": false",
        ),
        (
            "flat.index",
            vec!["--ids", ids],
            expected_knn(&every, 10, user),
            "\"user_ids\": true",
        ),
        (
            "map.index",
            vec![],
            expected_knn(&every, 10, user),
            "\"database_format\": \"faiss\"",
        ),
        (
            "map.bin",
            vec!["--allow", allow],
            expected_knn(&rankings, 10, user),
            "\"user_ids\": true",
        ),
        // The same IDs given twice agree.
        (
            "map.index",
            vec!["--ids", ids, "--allow", allow],
            expected_knn(&rankings, 10, user),
            "",
        ),
        (
            "map.index",
            vec!["--bits", "32"],
            {
                let short = s.db.prefix(32).unwrap().to_codes();
                let q = s.queries.prefix(32).unwrap().to_codes();
                expected_knn(&ranking(&q, &short, &vec![true; n]), 10, user)
            },
            "\"bits\": 32",
        ),
    ];
    for (database, more, want, said_too) in cases {
        let (ok, said) = search(&s.args(database, "out", &more));
        assert!(ok, "{database} {more:?}: {said}");
        assert!(said.contains(said_too), "{database} {more:?}: {said}");
        assert_eq!(outputs(&s.dir.join("out")), want, "{database} {more:?}");
    }
    std::fs::remove_dir_all(&s.dir).unwrap();
}

#[test]
fn bad_input_is_an_error_naming_the_file_and_leaves_no_output() {
    let s = Setup::new("bad");
    let n = s.db.len();
    let d = |name: &str| s.dir.join(name);
    save(
        &d("ids_i32.npy"),
        vec![n],
        NpyData::I32((0..n as i32).collect()),
    );
    save(
        &d("ids_short.npy"),
        vec![n - 1],
        NpyData::I64((0..n as i64 - 1).collect()),
    );
    let mut dup: Vec<i64> = (0..n as i64).collect();
    dup[250] = 17;
    save(&d("ids_dup.npy"), vec![n], NpyData::I64(dup));
    let mut pad: Vec<i64> = (0..n as i64).collect();
    pad[9] = -1;
    save(&d("ids_pad.npy"), vec![n], NpyData::I64(pad));
    let mut other: Vec<i64> = s.ids.clone();
    other[4] += 1;
    save(&d("ids_other.npy"), vec![n], NpyData::I64(other));
    save(
        &d("allow_absent.npy"),
        vec![2],
        NpyData::I64(vec![s.ids[3], 12345]),
    );
    save(&d("allow_row.npy"), vec![1], NpyData::I64(vec![n as i64]));
    save(
        &d("mask_short.npy"),
        vec![n - 1],
        NpyData::U8(vec![1; n - 1]),
    );
    save(&d("mask_two.npy"), vec![n], NpyData::U8(vec![2; n]));
    save(&d("allow_f32.npy"), vec![n], NpyData::F32(vec![1.0; n]));
    write_binary_index(&d("map.index"), s.db.view(), Some(&s.ids)).unwrap();
    let full = std::fs::read(d("map.index")).unwrap();
    std::fs::write(d("truncated.index"), &full[..full.len() - 5]).unwrap();
    let mut hnsw = b"IBHf".to_vec();
    hnsw.extend_from_slice(&full[4..]);
    std::fs::write(d("hnsw.index"), &hnsw).unwrap();
    let mut float = b"IxFl".to_vec();
    float.extend_from_slice(&full[4..]);
    std::fs::write(d("float.bin"), &float).unwrap();
    // (database, flags, what the error must say)
    let cases: [(&str, &[&str], &[&str]); 14] = [
        (
            "db.npy",
            &["--ids", "ids_i32.npy"],
            &["ids_i32.npy: dtype: expected int64", "found int32"],
        ),
        (
            "db.npy",
            &["--ids", "ids_short.npy"],
            &["ids_short.npy: ids: expected 300 IDs, one per database row, found 299 IDs"],
        ),
        (
            "db.npy",
            &["--ids", "ids_dup.npy"],
            &["ids_dup.npy: ids: expected unique IDs, found ID 17 at rows 17 and 250"],
        ),
        (
            "db.npy",
            &["--ids", "ids_pad.npy"],
            &[
                "ids_pad.npy: ids: expected IDs other than -1",
                "found ID -1 at row 9",
            ],
        ),
        (
            "map.index",
            &["--ids", "ids_other.npy"],
            &[
                "ids_other.npy and the ID map of",
                "map.index disagree at row 4",
            ],
        ),
        (
            "db.npy",
            &["--ids", "ids.npy", "--allow", "allow_absent.npy"],
            &[
                "allow_absent.npy: allowed IDs:",
                "found ID 12345 at entry 1, which no database row carries",
            ],
        ),
        (
            "map.index",
            &["--allow", "allow_absent.npy"],
            &["allow_absent.npy: allowed IDs:", "ID 12345"],
        ),
        (
            "db.npy",
            &["--allow", "allow_row.npy"],
            &[
                "allow_row.npy: allowed rows: expected row numbers in 0..300",
                "found 300 at entry 0",
            ],
        ),
        (
            "db.npy",
            &["--allow", "mask_short.npy"],
            &["mask_short.npy: mask: expected 300 entries, one per database row, found 299"],
        ),
        (
            "db.npy",
            &["--allow", "mask_two.npy"],
            &["mask_two.npy: mask: expected 0 or 1 per row, found 2 at row 0"],
        ),
        (
            "db.npy",
            &["--allow", "allow_f32.npy"],
            &["allow_f32.npy: dtype:", "found float32"],
        ),
        (
            "truncated.index",
            &[],
            &[
                "truncated.index: IndexBinaryIDMap.id_map:",
                "before the end of the file",
            ],
        ),
        (
            "hnsw.index",
            &[],
            &[
                "hnsw.index: index type (at byte 0):",
                "\"IBHf\" (IndexBinaryHNSW)",
            ],
        ),
        (
            "float.bin",
            &[],
            &[
                "float.bin: index type (at byte 0):",
                "IndexFlat, a float index",
            ],
        ),
    ];
    for (database, flags, expected) in cases {
        let (ok, said) = search(&s.args(database, "out", flags));
        assert!(!ok, "{database} {flags:?} was accepted: {said}");
        for needle in expected {
            assert!(
                said.contains(needle),
                "{database} {flags:?}: expected {needle:?} in: {said}"
            );
        }
        assert!(
            !d("out").exists(),
            "{database} {flags:?} left output behind"
        );
    }
    std::fs::remove_dir_all(&s.dir).unwrap();
}

//! User IDs from `.npy` files: int64, one per row, unique; anything else is an error naming the
//! file and what is wrong. Allow lists from `.npy` files: IDs, row numbers or a mask over rows.

use nhl_index::ids::{check_not_padding, find_duplicate, read_ids_npy, rows_of, DuplicateId};
use nhl_index::npy::{write_npy, NpyArray, NpyData};
use nhl_index::AllowedRows;
use std::path::{Path, PathBuf};

#[test]
fn the_first_repeated_id_is_found() {
    assert_eq!(find_duplicate(&[]), None);
    assert_eq!(find_duplicate(&[5, -1, 7, i64::MIN, i64::MAX]), None);
    assert_eq!(
        find_duplicate(&[9, 4, 9, 4, 4]),
        Some(DuplicateId {
            id: 4,
            first_row: 1,
            second_row: 3
        })
    );
}

#[test]
fn ids_files_are_checked() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("nhl-index-ids-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let save = |name: &str, shape: Vec<usize>, data: NpyData| {
        let path = dir.join(name);
        write_npy(&path, &NpyArray { shape, data }).map(|()| path)
    };
    let good = save("good.npy", vec![3], NpyData::I64(vec![-2, 0, 2]))?;
    assert_eq!(read_ids_npy(&good, 3)?, [-2, 0, 2]);
    let cases = [
        (
            good.clone(),
            4,
            "good.npy: ids: expected 4 IDs, one per database row, found 3 IDs",
        ),
        (
            save("i32.npy", vec![3], NpyData::I32(vec![1, 2, 3]))?,
            3,
            "i32.npy: dtype: expected int64 (one ID per database row), found int32",
        ),
        (
            save("rank2.npy", vec![3, 1], NpyData::I64(vec![1, 2, 3]))?,
            3,
            "rank2.npy: shape: expected rank 1 [3] (one ID per database row), found [3, 1]",
        ),
        (
            save("dup.npy", vec![3], NpyData::I64(vec![7, 8, 7]))?,
            3,
            "dup.npy: ids: expected unique IDs, found ID 7 at rows 0 and 2",
        ),
    ];
    for (path, rows, expected) in cases {
        let err = read_ids_npy(&path, rows).unwrap_err().to_string();
        assert!(err.ends_with(expected), "{err}");
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn ids_map_to_rows_and_padding_is_refused() {
    let ids = [40, -7, 12, 0];
    let path = Path::new("allow.npy");
    assert_eq!(
        rows_of(&ids, &[12, 40, 12], path, "allowed IDs").unwrap(),
        [2, 0, 2]
    );
    let err = rows_of(&ids, &[0, 13], path, "allowed IDs")
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with(
            "allow.npy: allowed IDs: expected IDs of database rows (4 rows), found ID 13 at \
             entry 1, which no database row carries"
        ),
        "{err}"
    );
    assert!(check_not_padding(path, "ids", &ids).is_ok());
    let err = check_not_padding(path, "ids", &[3, -1])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("allow.npy: ids:") && err.ends_with("found ID -1 at row 1"),
        "{err}"
    );
}

#[test]
fn allow_files_are_lists_of_ids_or_rows_or_masks() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("nhl-index-allow-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let save = |name: &str, shape: Vec<usize>, data: NpyData| -> anyhow::Result<PathBuf> {
        let path = dir.join(name);
        write_npy(&path, &NpyArray { shape, data })?;
        Ok(path)
    };
    let ids = [100, 200, 300, 400, 500];
    let want = AllowedRows::from_rows(5, [1, 3])?;
    let list = save("list.npy", vec![3], NpyData::I64(vec![400, 200, 400]))?;
    assert_eq!(AllowedRows::read_npy(&list, 5, Some(&ids))?, want);
    let rows = save("rows.npy", vec![2], NpyData::I32(vec![3, 1]))?;
    assert_eq!(AllowedRows::read_npy(&rows, 5, None)?, want);
    let mask = save("mask.npy", vec![5], NpyData::U8(vec![0, 1, 0, 1, 0]))?;
    assert_eq!(AllowedRows::read_npy(&mask, 5, Some(&ids))?, want);
    let empty = save("empty.npy", vec![0], NpyData::I64(Vec::new()))?;
    assert_eq!(
        AllowedRows::read_npy(&empty, 5, None)?,
        AllowedRows::none(5)
    );
    let cases = [
        (
            list.clone(),
            Some(&[100, 200, 300, 401, 500][..]),
            "list.npy: allowed IDs: expected IDs of database rows (5 rows), found ID 400 at \
             entry 0, which no database row carries",
        ),
        (
            list,
            None,
            "list.npy: allowed rows: expected row numbers in 0..5 (the database has no IDs, so \
             the list holds row numbers), found 400 at entry 0",
        ),
        (
            save("short.npy", vec![4], NpyData::U8(vec![0, 1, 0, 1]))?,
            None,
            "short.npy: mask: expected 5 entries, one per database row, found 4 entries",
        ),
        (
            save("two.npy", vec![5], NpyData::U8(vec![0, 1, 2, 1, 0]))?,
            None,
            "two.npy: mask: expected 0 or 1 per row, found 2 at row 2",
        ),
        (
            save("float.npy", vec![5], NpyData::F32(vec![0.0; 5]))?,
            None,
            "float.npy: dtype: expected int64 or int32 (a list of IDs), or bool or uint8 (a \
             mask over the rows), found float32",
        ),
        (
            save("rank2.npy", vec![5, 1], NpyData::U8(vec![0; 5]))?,
            None,
            "rank2.npy: shape: expected rank 1: a list of IDs or a mask over the rows, found \
             [5, 1]",
        ),
    ];
    for (path, ids, expected) in cases {
        let err = AllowedRows::read_npy(&path, 5, ids)
            .unwrap_err()
            .to_string();
        assert!(err.ends_with(expected), "{err}");
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

//! User IDs from `.npy` files: int64, one per row, unique; anything else is an error naming the
//! file and what is wrong.

use nhl_index::ids::{find_duplicate, read_ids_npy, DuplicateId};
use nhl_index::npy::{write_npy, NpyArray, NpyData};

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

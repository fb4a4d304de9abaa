//! User IDs of database items: int64, one per row, unique. They travel beside the codes (a `.npy`
//! file, or the `id_map` of a FAISS `IndexBinaryIDMap`) and replace row numbers in results.

use crate::error::IndexError;
use crate::npy::{parse_npy, NpyData};
use std::collections::HashMap;
use std::path::Path;

/// The ID of the padding of result rows shorter than the others (a range search, or a kNN
/// search restricted to fewer rows than `k`): -1, as in FAISS's search results. A row that
/// carries it could not be told from the padding ([`check_not_padding`]).
pub const PADDING: i64 = -1;

/// Two rows that carry the same ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DuplicateId {
    /// The repeated ID.
    pub id: i64,
    /// The first row that carries it.
    pub first_row: usize,
    /// A later row that carries it again.
    pub second_row: usize,
}

/// The first repeated ID (the pair of rows with the smallest ID among the repeated ones), or
/// `None` when all IDs differ. Sorts a copy of the rows by (ID, row): `O(n log n)` time, `16 n`
/// bytes of memory.
pub fn find_duplicate(ids: &[i64]) -> Option<DuplicateId> {
    let mut order: Vec<(i64, usize)> = ids.iter().copied().zip(0..).collect();
    order.sort_unstable();
    order
        .windows(2)
        .find(|pair| pair[0].0 == pair[1].0)
        .map(|pair| DuplicateId {
            id: pair[0].0,
            first_row: pair[0].1,
            second_row: pair[1].1,
        })
}

/// Check that `ids` has `rows` entries, all different; errors name `path` and `field`.
pub fn check_ids(path: &Path, field: &str, ids: &[i64], rows: usize) -> Result<(), IndexError> {
    let content = |expected: String, found: String| IndexError::FileContent {
        path: path.to_path_buf(),
        field: field.to_string(),
        expected,
        found,
    };
    if ids.len() != rows {
        return Err(content(
            format!("{rows} IDs, one per database row"),
            format!("{} IDs", ids.len()),
        ));
    }
    if let Some(dup) = find_duplicate(ids) {
        return Err(content(
            "unique IDs".into(),
            format!(
                "ID {} at rows {} and {}",
                dup.id, dup.first_row, dup.second_row
            ),
        ));
    }
    Ok(())
}

/// Read IDs from a `.npy` file: int64 of shape `[rows]`, all different.
pub fn read_ids_npy(path: &Path, rows: usize) -> Result<Vec<i64>, IndexError> {
    let bytes = std::fs::read(path).map_err(|e| IndexError::io(path, e))?;
    parse_ids_npy(path, &bytes, rows)
}

/// [`read_ids_npy`] of the bytes of a `.npy` file; `path` only names it in errors.
pub fn parse_ids_npy(path: &Path, bytes: &[u8], rows: usize) -> Result<Vec<i64>, IndexError> {
    let array = parse_npy(path, bytes)?;
    let content = |field: &str, expected: String, found: String| IndexError::FileContent {
        path: path.to_path_buf(),
        field: field.to_string(),
        expected,
        found,
    };
    let NpyData::I64(ids) = array.data else {
        return Err(content(
            "dtype",
            "int64 (one ID per database row)".into(),
            array.data.dtype_name().into(),
        ));
    };
    if array.shape.len() != 1 {
        return Err(content(
            "shape",
            format!("rank 1 [{rows}] (one ID per database row)"),
            format!("{:?}", array.shape),
        ));
    }
    check_ids(path, "ids", &ids, rows)?;
    Ok(ids)
}

/// Check that no row carries [`PADDING`], for results padded with it; errors name `path`,
/// `field` and the row.
pub fn check_not_padding(path: &Path, field: &str, ids: &[i64]) -> Result<(), IndexError> {
    match ids.iter().position(|&id| id == PADDING) {
        Some(row) => Err(IndexError::FileContent {
            path: path.to_path_buf(),
            field: field.to_string(),
            expected: format!(
                "IDs other than {PADDING}, which pads results shorter than the others"
            ),
            found: format!("ID {PADDING} at row {row}"),
        }),
        None => Ok(()),
    }
}

/// The rows that carry the IDs `wanted`, given the ID of every row (`ids`, all different), in
/// the order of `wanted`. Errors name `path` (the file `wanted` came from), `field`, and the
/// first wanted ID that no row carries, with its entry.
pub fn rows_of(
    ids: &[i64],
    wanted: &[i64],
    path: &Path,
    field: &str,
) -> Result<Vec<usize>, IndexError> {
    let row_of: HashMap<i64, usize> = ids.iter().copied().zip(0..).collect();
    wanted
        .iter()
        .enumerate()
        .map(|(entry, id)| {
            row_of
                .get(id)
                .copied()
                .ok_or_else(|| IndexError::FileContent {
                    path: path.to_path_buf(),
                    field: field.to_string(),
                    expected: format!("IDs of database rows ({} rows)", ids.len()),
                    found: format!("ID {id} at entry {entry}, which no database row carries"),
                })
        })
        .collect()
}

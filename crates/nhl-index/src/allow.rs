//! Which database rows a search may return: [`AllowedRows`], one bit per row.
//!
//! A search given a filter (through [`crate::SearchOptions::with_allowed`]) answers as if the
//! database held only the allowed rows, each keeping its position: the kNN of a query are the `k`
//! allowed rows nearest to it, ties by position, and a range search returns the allowed rows
//! within the radius. The kernels test a row's bit where they test its distance (the threshold
//! scans AND the bits of a block of codes with the block's candidate mask before they report a
//! code, and skip blocks whose bits are all clear), so a filter costs no second pass over the
//! database.

use crate::error::IndexError;
use crate::hamming::{RowBits, Rows};
use crate::ids::rows_of;
use crate::npy::{parse_mask_npy, NpyData};
use std::path::Path;

/// A set of allowed rows among `rows` database rows (positions `0..rows`): bit `p % 64` of word
/// `p / 64` is set when row `p` is allowed.
///
/// ```
/// use nhl_index::AllowedRows;
/// let allowed = AllowedRows::from_rows(5, [3, 0, 3])?;
/// assert_eq!((allowed.rows(), allowed.count()), (5, 2));
/// assert!(allowed.contains(0) && !allowed.contains(1));
/// assert_eq!(allowed.iter().collect::<Vec<_>>(), [0, 3]);
/// let mask = AllowedRows::from_mask(&[true, false, false, true, false]);
/// assert_eq!(mask, allowed);
/// # Ok::<(), nhl_index::IndexError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedRows {
    rows: usize,
    /// `ceil(rows / 64)` words; the bits past `rows` are clear.
    words: Vec<u64>,
    count: usize,
}

impl AllowedRows {
    /// Every one of `rows` rows allowed.
    pub fn all(rows: usize) -> AllowedRows {
        let mut words = vec![u64::MAX; rows.div_ceil(64)];
        if let Some(last) = words.last_mut() {
            *last >>= (64 - rows % 64) % 64;
        }
        AllowedRows {
            rows,
            words,
            count: rows,
        }
    }

    /// None of `rows` rows allowed.
    pub fn none(rows: usize) -> AllowedRows {
        AllowedRows {
            rows,
            words: vec![0; rows.div_ceil(64)],
            count: 0,
        }
    }

    /// The rows where `mask` is true, among `mask.len()` rows.
    pub fn from_mask(mask: &[bool]) -> AllowedRows {
        let mut allowed = AllowedRows::none(mask.len());
        for (row, _) in mask.iter().enumerate().filter(|(_, &on)| on) {
            allowed.insert(row);
        }
        allowed
    }

    /// The rows listed in `allowed` (any order; a row listed twice is allowed once), among `rows`
    /// rows.
    ///
    /// Errors: a listed row `>= rows`.
    pub fn from_rows(
        rows: usize,
        allowed: impl IntoIterator<Item = usize>,
    ) -> Result<AllowedRows, IndexError> {
        let mut set = AllowedRows::none(rows);
        for row in allowed {
            if row >= rows {
                return Err(IndexError::arg(
                    "allowed",
                    format!("row {row} of a database of {rows} rows"),
                ));
            }
            set.insert(row);
        }
        Ok(set)
    }

    /// Read the allowed rows of a database of `rows` rows from a `.npy` file of rank 1:
    ///
    /// * int64 or int32: a list of the allowed rows' user IDs when the rows have IDs (`ids`,
    ///   one per row, all different), else of their row numbers; any order, repeats allowed.
    /// * bool or uint8: a mask with one entry per row, 1 (true) where the row is allowed.
    ///
    /// Errors name the file and the field: another dtype or rank, a mask of another length or
    /// with a value other than 0 and 1, an ID no row carries, a row number out of range.
    pub fn read_npy(
        path: &Path,
        rows: usize,
        ids: Option<&[i64]>,
    ) -> Result<AllowedRows, IndexError> {
        let bytes = std::fs::read(path).map_err(|e| IndexError::io(path, e))?;
        AllowedRows::parse_npy(path, &bytes, rows, ids)
    }

    /// [`AllowedRows::read_npy`] of the bytes of a `.npy` file; `path` only names it in errors.
    pub fn parse_npy(
        path: &Path,
        bytes: &[u8],
        rows: usize,
        ids: Option<&[i64]>,
    ) -> Result<AllowedRows, IndexError> {
        let array = parse_mask_npy(path, bytes)?;
        let content = |field: &str, expected: String, found: String| IndexError::FileContent {
            path: path.to_path_buf(),
            field: field.to_string(),
            expected,
            found,
        };
        if array.shape.len() != 1 {
            return Err(content(
                "shape",
                "rank 1: a list of IDs or a mask over the rows".into(),
                format!("{:?}", array.shape),
            ));
        }
        let listed: Vec<i64> = match array.data {
            NpyData::U8(mask) => {
                if mask.len() != rows {
                    return Err(content(
                        "mask",
                        format!("{rows} entries, one per database row"),
                        format!("{} entries", mask.len()),
                    ));
                }
                if let Some(at) = mask.iter().position(|&m| m > 1) {
                    return Err(content(
                        "mask",
                        "0 or 1 per row".into(),
                        format!("{} at row {at}", mask[at]),
                    ));
                }
                let on: Vec<bool> = mask.into_iter().map(|m| m == 1).collect();
                return Ok(AllowedRows::from_mask(&on));
            }
            NpyData::I64(list) => list,
            NpyData::I32(list) => list.into_iter().map(i64::from).collect(),
            other => {
                return Err(content(
                    "dtype",
                    "int64 or int32 (a list of IDs), or bool or uint8 (a mask over the rows)"
                        .into(),
                    other.dtype_name().into(),
                ))
            }
        };
        if let Some(ids) = ids {
            return AllowedRows::from_rows(rows, rows_of(ids, &listed, path, "allowed IDs")?);
        }
        let mut numbers = Vec::with_capacity(listed.len());
        for (entry, &row) in listed.iter().enumerate() {
            match usize::try_from(row) {
                Ok(r) if r < rows => numbers.push(r),
                _ => {
                    return Err(content(
                        "allowed rows",
                        format!(
                            "row numbers in 0..{rows} (the database has no IDs, so the list \
                             holds row numbers)"
                        ),
                        format!("{row} at entry {entry}"),
                    ))
                }
            }
        }
        AllowedRows::from_rows(rows, numbers)
    }

    fn insert(&mut self, row: usize) {
        let (word, bit) = (&mut self.words[row / 64], 1u64 << (row % 64));
        if *word & bit == 0 {
            *word |= bit;
            self.count += 1;
        }
    }

    /// The number of database rows the set is over.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The number of allowed rows.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether row `row` is allowed (`false` past the last row).
    pub fn contains(&self, row: usize) -> bool {
        self.bits().contains(row)
    }

    /// The allowed rows, ascending.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let bit = rest.trailing_zeros() as usize;
                    rest &= rest - 1;
                    64 * w + bit
                })
            })
        })
    }

    /// The bits as the kernels read them.
    pub(crate) fn bits(&self) -> RowBits<'_> {
        RowBits::new(&self.words)
    }

    /// Fail unless the set is over exactly the `rows` rows of the database searched.
    pub(crate) fn check_rows(&self, rows: usize) -> Result<(), IndexError> {
        if self.rows != rows {
            return Err(IndexError::Shape {
                what: format!(
                    "the allowed rows are a set over {} rows, the database has {rows}",
                    self.rows
                ),
            });
        }
        Ok(())
    }
}

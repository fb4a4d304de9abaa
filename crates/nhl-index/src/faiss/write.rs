//! Writing `IndexBinaryFlat` and `IndexBinaryIDMap` files (the layout is in the module above).

use super::{Fourcc, FLAT, ID_MAP};
use crate::atomic::write_atomic_with;
use crate::codes::{CodesView, MAX_BITS};
use crate::error::IndexError;
use crate::ids::find_duplicate;
use std::io::Write;
use std::path::Path;

/// FAISS's `METRIC_L2`, the metric every binary index carries unless told otherwise; binary
/// search uses the Hamming distance whatever this says.
const METRIC_L2: i32 = 1;

/// Write `codes` as a FAISS binary index file that `faiss.read_index_binary` loads: an
/// `IndexBinaryFlat` of `d = codes.bits()`, or with `ids` an `IndexBinaryIDMap` around one (then
/// FAISS's search returns those IDs instead of row numbers). A prefix view writes only its bits.
///
/// The whole file appears at once or not at all (temporary file beside `path`, then rename); the
/// arguments are checked before anything is written. Errors: `bits` not a multiple of 8 (FAISS
/// stores whole bytes), `ids` not one per code, or two equal IDs.
pub fn write_binary_index(
    path: &Path,
    codes: CodesView<'_>,
    ids: Option<&[i64]>,
) -> Result<(), IndexError> {
    check(&codes, ids)?;
    write_atomic_with(path, |out| write_index(out, &codes, ids))
}

/// The bytes of [`write_binary_index`]'s file, in memory.
pub fn binary_index_bytes(
    codes: CodesView<'_>,
    ids: Option<&[i64]>,
) -> Result<Vec<u8>, IndexError> {
    check(&codes, ids)?;
    let mut out = Vec::new();
    write_index(&mut out, &codes, ids).expect("writing to a Vec<u8> cannot fail");
    Ok(out)
}

fn check(codes: &CodesView<'_>, ids: Option<&[i64]>) -> Result<(), IndexError> {
    if !codes.bits().is_multiple_of(8) {
        return Err(IndexError::Bits {
            what: format!(
                "FAISS binary indexes hold whole bytes; {}-bit codes cannot be written \
                 (take a prefix of a multiple of 8 bits)",
                codes.bits()
            ),
        });
    }
    if let Some(ids) = ids {
        if ids.len() != codes.len() {
            return Err(IndexError::arg(
                "ids",
                format!("{} IDs for {} codes; one per code", ids.len(), codes.len()),
            ));
        }
        if let Some(dup) = find_duplicate(ids) {
            return Err(IndexError::arg(
                "ids",
                format!(
                    "ID {} at rows {} and {}; IDs must be unique",
                    dup.id, dup.first_row, dup.second_row
                ),
            ));
        }
    }
    Ok(())
}

fn write_header(out: &mut dyn Write, code: Fourcc, codes: &CodesView<'_>) -> std::io::Result<()> {
    // Both casts are exact: d <= MAX_BITS, and memory holds fewer than 2^63 codes.
    let d = codes.bits();
    out.write_all(&code)?;
    out.write_all(&(d as i32).to_le_bytes())?;
    out.write_all(&((d / 8) as i32).to_le_bytes())?;
    out.write_all(&(codes.len() as i64).to_le_bytes())?;
    out.write_all(&[1])?; // is_trained: a flat index needs no training
    out.write_all(&METRIC_L2.to_le_bytes())
}

fn write_flat(out: &mut dyn Write, codes: &CodesView<'_>) -> std::io::Result<()> {
    write_header(out, FLAT, codes)?;
    let code_size = codes.bits() / 8;
    out.write_all(&((codes.len() * code_size) as u64).to_le_bytes())?;
    let mut row = [0u8; MAX_BITS / 8];
    for i in 0..codes.len() {
        let words = codes.code(i).expect("every row below len() has a code");
        for (bytes, word) in row.chunks_exact_mut(8).zip(words) {
            bytes.copy_from_slice(&word.to_le_bytes());
        }
        // Whole bytes: the cut drops exactly the bits beyond the prefix.
        out.write_all(&row[..code_size])?;
    }
    Ok(())
}

fn write_index(
    out: &mut dyn Write,
    codes: &CodesView<'_>,
    ids: Option<&[i64]>,
) -> std::io::Result<()> {
    let Some(ids) = ids else {
        return write_flat(out, codes);
    };
    write_header(out, ID_MAP, codes)?;
    write_flat(out, codes)?;
    out.write_all(&(ids.len() as u64).to_le_bytes())?;
    for id in ids {
        out.write_all(&id.to_le_bytes())?;
    }
    Ok(())
}

//! `cargo xtask export --codes CODES.npy [--ids IDS.npy] [--bits B] --faiss OUT.index`: packed
//! codes as a FAISS binary index file, for serving them with FAISS.
//!
//! Without `--ids` the file is an `IndexBinaryFlat` (FAISS's search returns row numbers of
//! CODES.npy); with `--ids` an `IndexBinaryIDMap` around one (its search returns those IDs). The
//! codes cross unchanged: FAISS packs bit `j` into byte `j / 8` at position `j % 8`, as we do, so
//! `--bits B` (the nested B-bit code) keeps the first B / 8 bytes of every code. The file appears
//! whole or not at all.

use std::path::PathBuf;

use anyhow::{bail, Context};
use nhl_index::faiss::write_binary_index;
use nhl_index::ids::read_ids_npy;
use nhl_index::Codes;

/// Write packed codes as a FAISS binary index (IndexBinaryFlat, or IndexBinaryIDMap with --ids).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Codes: uint8 `[n, bytes]` `.npy` in the docs/PROTOCOL.md layout.
    #[arg(long, value_name = "CODES.npy")]
    pub codes: PathBuf,
    /// User IDs: int64 `[n]` `.npy`, one per row of CODES.npy, all different.
    #[arg(long, value_name = "IDS.npy")]
    pub ids: Option<PathBuf>,
    /// Keep the first B bits of every code (a multiple of 8; default: all bits of the file).
    #[arg(long, value_name = "B")]
    pub bits: Option<usize>,
    /// The FAISS index file to write (replaced if it exists).
    #[arg(long, value_name = "OUT.index")]
    pub faiss: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(bits) = args.bits {
        if bits == 0 || !bits.is_multiple_of(8) {
            bail!(
                "--bits {bits}: FAISS binary indexes hold whole bytes; \
                 give a positive multiple of 8"
            );
        }
    }
    let codes = Codes::read_npy(&args.codes, args.bits)
        .with_context(|| format!("loading the codes {}", args.codes.display()))?;
    let ids = args
        .ids
        .as_deref()
        .map(|path| {
            read_ids_npy(path, codes.len()).with_context(|| {
                format!(
                    "loading the IDs {} for the {} rows of {}",
                    path.display(),
                    codes.len(),
                    args.codes.display()
                )
            })
        })
        .transpose()?;
    write_binary_index(&args.faiss, codes.view(), ids.as_deref())
        .with_context(|| format!("writing {}", args.faiss.display()))?;
    let kind = if ids.is_some() {
        "IndexBinaryIDMap around an IndexBinaryFlat"
    } else {
        "IndexBinaryFlat"
    };
    println!(
        "wrote {}: {kind}, {} codes of {} bits",
        args.faiss.display(),
        codes.len(),
        codes.bits()
    );
    Ok(())
}

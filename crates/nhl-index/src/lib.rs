//! `nhl-index`: packed binary codes and exact Hamming search on the CPU, with no GPU code.
//!
//! * [`Codes`] hold `n` codes of up to 1024 bits in the FAISS / PROTOCOL.md layout (bit `j` in
//!   byte `j / 8` at position `j % 8`), one run of aligned u64 words per code; [`Codes::prefix`]
//!   views the first `b` bits of every code (the nested shorter code) without copying.
//! * [`hamming`]: distance kernels for AVX-512 VPOPCNTDQ, AVX2, `popcnt`, NEON and portable
//!   `count_ones`, chosen once at run time ([`Isa::best`]).
//! * [`search`]: exact k-nearest-neighbour and range search, ties broken by database position.
//! * [`cascade`]: nested-prefix cascade search (rank by a short prefix, re-rank by the full code).
//! * [`mih`]: multi-index hashing (Norouzi, Punjani and Fleet) for exact sublinear search.
//! * [`eval`]: mAP@K (stable and tie-aware) and precision@k; [`npy`]: `.npy` files.
//! * [`faiss`]: FAISS `IndexBinaryFlat` / `IndexBinaryIDMap` files, read and written; [`ids`]:
//!   user IDs beside the codes (int64, one per row, unique).
//!
//! ```
//! use nhl_index::{search, Codes};
//! // Three 16-bit codes, two bytes each (bit j in byte j / 8 at position j % 8).
//! let db = Codes::from_bytes(3, 16, &[0b0000_0001, 0, 0b0000_0011, 0, 0xff, 0xff])?;
//! let q = Codes::from_bytes(1, 16, &[0b0000_0001, 0])?;
//! let hits = search::knn(q.view(), db.view(), 2)?;
//! assert_eq!(hits.ids_of(0), &[0, 1]);
//! assert_eq!(hits.distances_of(0), &[0, 1]);
//! // The 8-bit prefixes, without copying.
//! let short = search::knn(q.prefix(8)?, db.prefix(8)?, 3)?;
//! assert_eq!(short.distances_of(0), &[0, 1, 7]);
//! # Ok::<(), nhl_index::IndexError>(())
//! ```
#![deny(missing_docs)]

mod atomic;
pub mod cascade;
mod codes;
mod error;
pub mod eval;
pub mod faiss;
pub mod hamming;
pub mod ids;
pub mod mih;
pub mod npy;
pub mod search;
mod select;
pub mod synth;

pub use codes::{Codes, CodesView, MAX_BITS};
pub use error::IndexError;
pub use hamming::{Isa, Kernel};

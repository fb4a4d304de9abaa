//! `nhl-index`: packed binary codes and exact Hamming search on the CPU, with no GPU code.
//!
//! * [`Codes`] hold `n` codes of up to 1024 bits in the layout of `docs/PROTOCOL.md` (Layout: bit
//!   `j` in byte `j / 8` at position `j % 8`, the FAISS binary layout), one run of aligned u64
//!   words per code; [`Codes::prefix`] views the first `b` bits of every code (the nested shorter
//!   code) without copying.
//! * [`HammingIndex`]: k-nearest-neighbour and range search, ties broken by database position,
//!   with [`SearchOptions`]; implemented by [`FlatIndex`] (the exact scan of [`search`]),
//!   [`mih::MultiIndex`] (multi-index hashing, exact and sublinear) and
//!   [`cascade::CascadeIndex`] (rank by a short prefix, re-rank by the full code). A search can
//!   be restricted to some database rows ([`AllowedRows`], [`SearchOptions::allowing`]), tested
//!   inside the kernels' candidate test.
//! * [`hamming`]: distance kernels for AVX-512 VPOPCNTDQ, AVX2, `popcnt`, NEON and portable
//!   `count_ones`, chosen once at run time ([`Isa::best`]).
//! * [`eval`]: mAP@K (stable and tie-aware) and precision@k; [`npy`]: `.npy` files.
//! * [`faiss`]: FAISS `IndexBinaryFlat` / `IndexBinaryIDMap` files, read and written; [`ids`]:
//!   user IDs beside the codes (int64, one per row, unique).
//!
//! ```
//! use nhl_index::mih::MultiIndex;
//! use nhl_index::{AllowedRows, Codes, FlatIndex, HammingIndex, SearchOptions};
//! // Three 16-bit codes, two bytes each (bit j in byte j / 8 at position j % 8).
//! let db = Codes::from_bytes(3, 16, &[0b0000_0001, 0, 0b0000_0011, 0, 0xff, 0xff])?;
//! let q = Codes::from_bytes(1, 16, &[0b0000_0001, 0])?;
//! let options = SearchOptions::default();
//! let flat = FlatIndex::new(db.view());
//! let hits = flat.knn(q.view(), 2, &options)?;
//! assert_eq!(hits.ids_of(0), &[0, 1]);
//! assert_eq!(hits.distances_of(0), &[0, 1]);
//! let near = flat.range(q.view(), 1, &options)?;
//! assert_eq!(near.ids_of(0), &[0, 1]);
//! // Multi-index hashing answers through the same interface, with the same results.
//! let indexes: [Box<dyn HammingIndex>; 2] =
//!     [Box::new(flat), Box::new(MultiIndex::new(db.view(), None)?)];
//! for index in &indexes {
//!     assert_eq!(index.knn(q.view(), 2, &options)?, hits);
//! }
//! // The 8-bit prefixes, without copying.
//! let short = FlatIndex::new(db.prefix(8)?).knn(q.prefix(8)?, 3, &options)?;
//! assert_eq!(short.distances_of(0), &[0, 1, 7]);
//! // Only rows 1 and 2 may be returned, by every index.
//! let allowed = AllowedRows::from_rows(3, [1, 2])?;
//! let filtered = options.allowing(&allowed);
//! for index in &indexes {
//!     let hits = index.knn(q.view(), 1, &filtered)?;
//!     assert_eq!((hits.ids_of(0), hits.distances_of(0)), (&[1][..], &[1][..]));
//! }
//! # Ok::<(), nhl_index::IndexError>(())
//! ```
#![deny(missing_docs)]

mod allow;
mod atomic;
pub mod cascade;
mod codes;
mod error;
pub mod eval;
pub mod faiss;
#[cfg(any(test, feature = "testing"))]
pub mod fuzz;
pub mod hamming;
pub mod ids;
mod index;
pub mod mih;
pub mod npy;
pub mod search;
mod select;
#[cfg(any(test, feature = "testing"))]
pub mod synth;

pub use allow::AllowedRows;
pub use codes::{Codes, CodesView, MAX_BITS};
pub use error::IndexError;
pub use hamming::{Isa, Kernel};
pub use index::{HammingIndex, SearchOptions};
pub use search::FlatIndex;

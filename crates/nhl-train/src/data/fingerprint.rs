//! Fingerprints of input files (length and a 64-bit hash of the bytes), so that a run resumed
//! later can tell that its data is no longer what it started with.
//!
//! The hash is a streaming multiply-rotate hash over four independent 64-bit lanes (the round of
//! xxHash64: `lane = rotl(lane + word * P2, 31) * P1`, one little-endian word per lane per
//! 32-byte stripe), the lanes merged with the length and the tail bytes, then an avalanche. It
//! detects accidental changes, not deliberate ones, at memory speed.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::TrainError;

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;

fn round(lane: u64, word: u64) -> u64 {
    lane.wrapping_add(word.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn word(bytes: &[u8]) -> u64 {
    let mut le = [0u8; 8];
    le.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(le)
}

/// The hash of a byte stream fed in pieces of any size: the same bytes give the same hash
/// however they are cut.
#[derive(Clone, Debug)]
pub struct StreamHash {
    lanes: [u64; 4],
    /// Bytes of an unfinished stripe.
    pending: Vec<u8>,
    total: u64,
}

impl Default for StreamHash {
    fn default() -> Self {
        StreamHash {
            lanes: [P1.wrapping_add(P2), P2, 0, P1.wrapping_neg()],
            pending: Vec::with_capacity(32),
            total: 0,
        }
    }
}

impl StreamHash {
    fn stripe(&mut self, stripe: &[u8]) {
        for (lane, chunk) in self.lanes.iter_mut().zip(stripe.chunks_exact(8)) {
            *lane = round(*lane, word(chunk));
        }
    }

    /// Feeds `bytes`.
    pub fn update(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if !self.pending.is_empty() {
            let take = (32 - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() < 32 {
                return;
            }
            let stripe = std::mem::take(&mut self.pending);
            self.stripe(&stripe);
            self.pending = stripe;
            self.pending.clear();
        }
        let whole = bytes.len() / 32 * 32;
        for stripe in bytes[..whole].chunks_exact(32) {
            self.stripe(stripe);
        }
        self.pending.extend_from_slice(&bytes[whole..]);
    }

    /// The hash of every byte fed.
    pub fn finish(&self) -> u64 {
        let [a, b, c, d] = self.lanes;
        let mut h = a
            .rotate_left(1)
            .wrapping_add(b.rotate_left(7))
            .wrapping_add(c.rotate_left(12))
            .wrapping_add(d.rotate_left(18))
            ^ self.total;
        let mut tail = self.pending.chunks_exact(8);
        for chunk in &mut tail {
            h = round(h, word(chunk)).rotate_left(27).wrapping_mul(P3);
        }
        for &byte in tail.remainder() {
            h = (h ^ u64::from(byte).wrapping_mul(P3))
                .rotate_left(11)
                .wrapping_mul(P1);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(P2);
        h ^= h >> 29;
        h = h.wrapping_mul(P3);
        h ^ (h >> 32)
    }
}

/// What a data file was when a run read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFingerprint {
    /// The file, as the run named it.
    pub path: PathBuf,
    /// Its length in bytes.
    pub bytes: u64,
    /// The [`StreamHash`] of its bytes, 16 hex digits.
    pub hash: String,
}

/// Bytes read per call while hashing a file.
const CHUNK_BYTES: usize = 1 << 20;

impl FileFingerprint {
    /// Reads `path` and fingerprints it.
    pub fn of(path: &Path) -> Result<FileFingerprint, TrainError> {
        let io = |source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mut hash = StreamHash::default();
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(got) => hash.update(&buf[..got]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io(e)),
            }
        }
        Ok(FileFingerprint {
            path: path.to_path_buf(),
            bytes: hash.total,
            hash: format!("{:016x}", hash.finish()),
        })
    }

    /// Fails, naming the file, unless it still has this fingerprint.
    pub fn check(&self) -> Result<(), TrainError> {
        let was = format!("{} bytes, hash {}", self.bytes, self.hash);
        let now = match FileFingerprint::of(&self.path) {
            Ok(now) if now == *self => return Ok(()),
            Ok(now) => format!("{} bytes, hash {}", now.bytes, now.hash),
            Err(TrainError::Io { source, .. }) => format!("unreadable ({source})"),
            Err(other) => other.to_string(),
        };
        Err(TrainError::DataChanged {
            path: self.path.clone(),
            was,
            now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of(pieces: &[&[u8]]) -> u64 {
        let mut h = StreamHash::default();
        for p in pieces {
            h.update(p);
        }
        h.finish()
    }

    #[test]
    fn the_hash_ignores_how_the_bytes_are_cut_and_sees_every_byte() {
        let bytes: Vec<u8> = (0..203u32).map(|i| (i * 37 % 251) as u8).collect();
        let whole = hash_of(&[&bytes]);
        for cut in [0, 1, 7, 31, 32, 33, 64, 100, 202, 203] {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(hash_of(&[a, b]), whole, "cut at {cut}");
        }
        let ones: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(hash_of(&ones), whole);
        for at in [0, 5, 31, 32, 100, 202] {
            let mut changed = bytes.clone();
            changed[at] ^= 1;
            assert_ne!(hash_of(&[&changed]), whole, "byte {at}");
        }
        assert_ne!(hash_of(&[&bytes[..202]]), whole);
        assert_ne!(hash_of(&[b"", b"\0"]), hash_of(&[b""]));
    }

    #[test]
    fn a_changed_or_missing_file_is_named_with_what_it_was() {
        let path = std::env::temp_dir().join(format!("nhl-fingerprint-{}", std::process::id()));
        std::fs::write(&path, b"labels v1").unwrap();
        let print = FileFingerprint::of(&path).unwrap();
        assert_eq!(print.bytes, 9);
        print.check().unwrap();
        std::fs::write(&path, b"labels v2").unwrap();
        let e = print.check().unwrap_err().to_string();
        assert!(
            e.contains(&path.display().to_string())
                && e.contains("changed since the run started")
                && e.contains(&format!("9 bytes, hash {}", print.hash)),
            "{e}"
        );
        std::fs::remove_file(&path).unwrap();
        let e = print.check().unwrap_err().to_string();
        assert!(e.contains("unreadable"), "{e}");
    }
}

//! IDX files (plain or gzip) as labels and as images, and as either half of a pair.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nhl_train::data::idx::{parse_idx, parse_pair};

/// Two labels, and two images of 1 x 3 pixels.
const LABELS: &[u8] = &[0, 0, 8, 1, 0, 0, 0, 2, 4, 1];
const IMAGES: &[u8] = &[
    0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3, 9, 9, 9, 9, 9, 9,
];

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.idx");
    let _ = parse_idx(data, path, 1);
    let _ = parse_idx(data, path, 3);
    let _ = parse_pair(data, path, LABELS, Path::new("labels"));
    let _ = parse_pair(IMAGES, Path::new("images"), data, path);
});

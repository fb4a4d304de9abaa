//! FAISS `IndexBinaryFlat` / `IndexBinaryIDMap` files, whole and as a 16-bit prefix.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nhl_index::faiss::parse_binary_index;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.faiss");
    let _ = parse_binary_index(path, data, None);
    let _ = parse_binary_index(path, data, Some(16));
});

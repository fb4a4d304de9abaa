//! Packed codes in `.npy` and safetensors files, whole and as a 12-bit prefix.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nhl_index::Codes;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.npy");
    let _ = Codes::parse_npy(path, data, None);
    let _ = Codes::parse_npy(path, data, Some(12));
    let _ = Codes::from_safetensors(data, "codes");
});

//! The user's `DATA.safetensors` (tensors `features` and `labels`).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nhl_train::data::user::parse_safetensors_source;

fuzz_target!(|data: &[u8]| {
    let _ = parse_safetensors_source(Path::new("data.safetensors"), data);
});

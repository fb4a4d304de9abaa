//! `model.safetensors` checkpoints.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nhl_train::checkpoint;

fuzz_target!(|data: &[u8]| {
    let _ = checkpoint::parse(Path::new("model.safetensors"), data);
});

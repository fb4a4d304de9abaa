//! `training_state.safetensors` files.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nhl_train::train_state::TrainState;

fuzz_target!(|data: &[u8]| {
    let _ = TrainState::parse(Path::new("training_state.safetensors"), data);
});

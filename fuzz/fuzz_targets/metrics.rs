//! `metrics.json`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nhl_train::report::parse_metrics;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_metrics(Path::new("metrics.json"), text);
    }
});

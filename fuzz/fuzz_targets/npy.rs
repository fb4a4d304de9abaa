//! `.npy` arrays, masks, headers (with the file-length check), ID lists and allowed rows.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nhl_index::ids::parse_ids_npy;
use nhl_index::npy::{parse_mask_npy, parse_npy, read_npy_header};
use nhl_index::AllowedRows;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.npy");
    let _ = parse_npy(path, data);
    let _ = parse_mask_npy(path, data);
    if let Ok(header) = read_npy_header(path, &mut &data[..]) {
        let _ = header.check_file_len(path, data.len() as u64);
    }
    let _ = parse_ids_npy(path, data, 4);
    let ids = [10, 11, 12, 13, 14, 15];
    let _ = AllowedRows::parse_npy(path, data, 6, None);
    let _ = AllowedRows::parse_npy(path, data, 6, Some(&ids));
});

//! Codes and `.npy` / safetensors files: round trips, the bit layout of `docs/PROTOCOL.md`, and
//! clear errors for bad files.

use nhl_index::npy::{read_mask_npy, read_npy, write_npy, NpyArray, NpyData};
use nhl_index::synth::random_codes;
use nhl_index::{Codes, IndexError};
use std::path::PathBuf;

/// A path for file `name` of the test tagged `test`: each test its own folder, since the tests of this file
/// run in parallel threads of one process and some write files of the same name.
fn tmp(test: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nhl-index-io-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn byte_layout_is_the_protocol_layout() {
    // Bit j in byte j / 8 at position j % 8; as words, bit j in word j / 64 at position j % 64.
    let mut bytes = vec![0u8; 16];
    bytes[0] = 0b0000_0101; // bits 0 and 2
    bytes[8] = 0b1000_0000; // bit 71
    let c = Codes::from_bytes(1, 128, &bytes).unwrap();
    assert_eq!(c.words(), &[0b101, 1 << 7]);
    assert_eq!(c.to_bytes(), bytes);
    // from_signs: bit j = 1 iff value j > 0.
    let mut values = vec![-1.0f32; 128];
    values[0] = 0.5;
    values[2] = 3.0;
    values[71] = 1e-9;
    values[5] = 0.0; // not > 0
    values[6] = f32::NAN; // not > 0
    assert_eq!(Codes::from_signs(1, 128, &values).unwrap(), c);
}

#[test]
fn bits_beyond_the_length_are_ignored_and_prefixes_nest() {
    let c = Codes::from_bytes(2, 12, &[0xff, 0xff, 0x0f, 0xf0]).unwrap();
    assert_eq!(c.words(), &[0xfff, 0x00f]);
    assert_eq!(c.to_bytes(), vec![0xff, 0x0f, 0x0f, 0x00]);
    let p = c.prefix(4).unwrap().to_codes();
    assert_eq!(p.words(), &[0xf, 0xf]);
    assert!(c.prefix(13).is_err());
}

#[test]
fn codes_round_trip_through_npy_and_safetensors() {
    for bits in [1, 8, 12, 64, 100, 128, 1024] {
        let c = random_codes(33, bits, bits as u64).unwrap();
        let back = Codes::from_bytes(33, bits, &c.to_bytes()).unwrap();
        assert_eq!(back, c);
        let st = Codes::from_safetensors(&c.to_safetensors("codes").unwrap(), "codes").unwrap();
        assert_eq!(st, c, "safetensors {bits}");
        let path = tmp("round-trip", &format!("codes{bits}.safetensors"));
        c.write_safetensors(&path, "codes").unwrap();
        assert_eq!(Codes::read_safetensors(&path, "codes").unwrap(), c);
        assert!(Codes::read_safetensors(&path, "other").is_err());
        if bits % 8 == 0 {
            let path = tmp("round-trip", &format!("codes{bits}.npy"));
            c.write_npy(&path).unwrap();
            assert_eq!(Codes::read_npy(&path, None).unwrap(), c);
            // A prefix read straight from the file equals the prefix view.
            let short = Codes::read_npy(&path, Some(bits.div_ceil(2))).unwrap();
            assert_eq!(short, c.prefix(bits.div_ceil(2)).unwrap().to_codes());
        }
    }
}

#[test]
fn npy_round_trips_every_dtype_and_shape() {
    let arrays = [
        NpyArray {
            shape: vec![2, 3],
            data: NpyData::U8(vec![1, 2, 3, 4, 5, 255]),
        },
        NpyArray {
            shape: vec![4],
            data: NpyData::I32(vec![-1, 0, 7, i32::MAX]),
        },
        NpyArray {
            shape: vec![2, 1, 2],
            data: NpyData::I64(vec![-1, 0, 7, i64::MIN]),
        },
        NpyArray {
            shape: vec![3],
            data: NpyData::U16F16(vec![0x3c00, 0xc000, 0x7e00]),
        },
        NpyArray {
            shape: vec![1, 2],
            data: NpyData::F32(vec![1.5, -0.0]),
        },
        NpyArray {
            shape: vec![],
            data: NpyData::F64(vec![std::f64::consts::PI]),
        },
        NpyArray {
            shape: vec![0, 16],
            data: NpyData::U8(vec![]),
        },
    ];
    for (i, a) in arrays.iter().enumerate() {
        let path = tmp("dtypes", &format!("a{i}.npy"));
        write_npy(&path, a).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        // Data starts 64-byte aligned, as NumPy writes it.
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(&read_npy(&path).unwrap(), a);
    }
}

#[test]
fn npy_reads_version_2_and_3_headers() {
    let header = "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }";
    for version in [2u8, 3] {
        let mut bytes = b"\x93NUMPY".to_vec();
        bytes.extend_from_slice(&[version, 0]);
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&5i32.to_le_bytes());
        bytes.extend_from_slice(&(-6i32).to_le_bytes());
        let path = tmp("versions", &format!("v{version}.npy"));
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            read_npy(&path).unwrap(),
            NpyArray {
                shape: vec![2],
                data: NpyData::I32(vec![5, -6])
            }
        );
    }
}

fn npy_with(descr: &str, fortran: &str, shape: &str, payload: &[u8]) -> Vec<u8> {
    let header =
        format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}\n");
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

#[test]
fn bad_files_are_clear_errors() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("text.npy", b"hello, this is not numpy".to_vec(), "magic"),
        ("short.npy", b"\x93NUMPY\x01".to_vec(), "magic"),
        (
            "fortran.npy",
            npy_with("|u1", "True", "(2, 2)", &[0; 4]),
            "fortran_order",
        ),
        (
            "bigendian.npy",
            npy_with(">i4", "False", "(1,)", &[0; 4]),
            "big-endian",
        ),
        (
            "object.npy",
            npy_with("|O", "False", "(1,)", &[0; 8]),
            "not supported",
        ),
        (
            "truncated.npy",
            npy_with("|u1", "False", "(2, 8)", &[0; 15]),
            "needs 16 data bytes",
        ),
        (
            "version9.npy",
            b"\x93NUMPY\x09\x00\x00\x00".to_vec(),
            "version",
        ),
    ];
    for (name, bytes, needle) in cases {
        let path = tmp("bad-files", name);
        std::fs::write(&path, bytes).unwrap();
        let err = read_npy(&path).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(needle) && msg.contains(name), "{name}: {msg}");
    }
    let missing = tmp("bad-files", "missing.npy");
    assert!(matches!(read_npy(&missing), Err(IndexError::Io { .. })));

    // Well-formed arrays of the wrong dtype or rank for codes.
    let f32s = tmp("bad-files", "float.npy");
    write_npy(
        &f32s,
        &NpyArray {
            shape: vec![2, 2],
            data: NpyData::F32(vec![0.0; 4]),
        },
    )
    .unwrap();
    let msg = Codes::read_npy(&f32s, None).unwrap_err().to_string();
    assert!(
        msg.contains("dtype") && msg.contains("uint8") && msg.contains("float32"),
        "{msg}"
    );
    let rank1 = tmp("bad-files", "rank1.npy");
    write_npy(
        &rank1,
        &NpyArray {
            shape: vec![8],
            data: NpyData::U8(vec![0; 8]),
        },
    )
    .unwrap();
    let msg = Codes::read_npy(&rank1, None).unwrap_err().to_string();
    assert!(msg.contains("rank 2"), "{msg}");
    let codes = tmp("bad-files", "codes8.npy");
    random_codes(4, 64, 1).unwrap().write_npy(&codes).unwrap();
    let msg = Codes::read_npy(&codes, Some(65)).unwrap_err().to_string();
    assert!(msg.contains("65 bits") && msg.contains("64-bit"), "{msg}");
}

/// Bool arrays are masks: read as uint8 0 / 1 by `read_mask_npy` only, so that unpacked bits
/// are never taken for packed codes.
#[test]
fn bool_arrays_read_as_uint8_zero_or_one_where_a_mask_may_be() {
    let path = tmp("bool", "mask.npy");
    std::fs::write(&path, npy_with("|b1", "False", "(4,)", &[1, 0, 0, 1])).unwrap();
    let array = read_mask_npy(&path).unwrap();
    assert_eq!(array.shape, vec![4]);
    assert_eq!(array.data, NpyData::U8(vec![1, 0, 0, 1]));
    let msg = read_npy(&path).unwrap_err().to_string();
    assert!(
        msg.contains("mask.npy") && msg.contains("\"|b1\" is not supported"),
        "{msg}"
    );
    let bits = tmp("bool", "bits.npy");
    std::fs::write(&bits, npy_with("|b1", "False", "(2, 8)", &[1; 16])).unwrap();
    let msg = Codes::read_npy(&bits, None).unwrap_err().to_string();
    assert!(
        msg.contains("bits.npy") && msg.contains("not supported"),
        "{msg}"
    );
}

#[test]
fn constructors_reject_wrong_sizes() {
    assert!(Codes::from_bytes(2, 64, &[0; 15]).is_err());
    assert!(Codes::from_bytes(1, 0, &[]).is_err());
    assert!(Codes::from_bytes(1, 1025, &[0; 129]).is_err());
    assert!(Codes::from_signs(2, 8, &[0.0; 15]).is_err());
    assert!(Codes::from_words(2, 64, vec![0; 3]).is_err());
}

//! Mutation fuzzing of every parser of this crate (`.npy` arrays and headers, packed codes in
//! `.npy` and safetensors, allowed-row lists and masks, ID files, FAISS binary indexes): a fixed
//! number of cases per parser, mutated with a fixed seed from small valid files built here. No
//! case may panic, and none may allocate, in one piece, more than `nhl_index::fuzz::alloc_bound`
//! of its length (a parser must check a header's sizes against the bytes present before it
//! allocates for them). A failure names the case and its bytes; `Campaign::case` rebuilds it.

use std::path::Path;

use nhl_index::faiss::{binary_index_bytes, parse_binary_index};
use nhl_index::fuzz::{self, repair_npy, repair_safetensors, Campaign, CountingAlloc, Field, Seed};
use nhl_index::ids::parse_ids_npy;
use nhl_index::npy::{parse_mask_npy, parse_npy, read_npy_header, to_npy_bytes, NpyArray, NpyData};
use nhl_index::synth::random_codes;
use nhl_index::{AllowedRows, Codes};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const PATH: &str = "fuzz.input";

/// The words of an `.npy` header worth swapping for one another.
const NPY_TOKENS: &[&[u8]] = &[
    b"'descr'",
    b"'shape'",
    b"'fortran_order'",
    b"|u1",
    b"<i4",
    b"<i8",
    b"<f2",
    b"<f4",
    b"<f8",
    b">f8",
    b"|b1",
    b"<c8",
    b"True",
    b"False",
    b"(",
    b")",
    b",",
    b"'",
    b"\"",
];

/// The words of a safetensors header worth swapping for one another.
const SAFETENSORS_TOKENS: &[&[u8]] = &[
    b"\"dtype\"",
    b"\"shape\"",
    b"\"data_offsets\"",
    b"\"__metadata__\"",
    b"\"bits\"",
    b"\"codes\"",
    b"\"U8\"",
    b"\"BOOL\"",
    b"\"F32\"",
    b"\"I64\"",
    b"\"F16\"",
    b"[",
    b"]",
    b",",
    b"{",
    b"}",
    b":",
    b"\"",
];

/// The fourccs and the words of a FAISS index worth swapping for one another.
const FAISS_TOKENS: &[&[u8]] = &[b"IBxF", b"IBMp", b"IBM2", b"IBwF", b"IxFl"];

/// [`fuzz::check`] with the input's own length as the bytes that justify an allocation.
fn check(campaign: &Campaign<'_>, parse: impl Fn(&[u8]) -> bool) {
    fuzz::check(campaign, <[u8]>::len, parse);
}

/// An `.npy` file of version 1; with `version` 2 or 3, the same header under a 4-byte length.
fn npy(shape: &[usize], data: NpyData, version: u8) -> Seed {
    let v1 = to_npy_bytes(&NpyArray {
        shape: shape.to_vec(),
        data,
    })
    .unwrap();
    if version == 1 {
        return Seed {
            bytes: v1,
            fields: vec![Field::le(6, 1), Field::le(8, 2)],
        };
    }
    let header_len = u16::from_le_bytes([v1[8], v1[9]]);
    let mut bytes = v1[..6].to_vec();
    bytes.extend([version, 0]);
    bytes.extend(u32::from(header_len).to_le_bytes());
    bytes.extend(&v1[10..]);
    Seed {
        bytes,
        fields: vec![Field::le(6, 1), Field::le(8, 4)],
    }
}

/// A bool `.npy` array (NumPy's `|b1`) of `mask`.
fn bool_npy(mask: &[u8]) -> Seed {
    let mut seed = npy(&[mask.len()], NpyData::U8(mask.to_vec()), 1);
    let at = seed.bytes.windows(3).position(|w| w == b"|u1").unwrap();
    seed.bytes[at..at + 3].copy_from_slice(b"|b1");
    seed
}

/// Arrays of every dtype, rank 0 to 3, empty ones included, in the three format versions.
fn npy_seeds() -> Vec<Seed> {
    vec![
        npy(&[3, 4], NpyData::U8((0..12).collect()), 1),
        npy(&[0, 2], NpyData::U8(vec![]), 1),
        npy(&[5], NpyData::I32(vec![3, -1, 0, 7, i32::MAX]), 1),
        npy(&[2, 2], NpyData::I64(vec![1, -2, i64::MIN, 4]), 2),
        npy(&[2, 1, 2], NpyData::U16F16(vec![0x3c00, 0x7c00, 0, 1]), 1),
        npy(
            &[3, 2],
            NpyData::F32(vec![0.5, -1.0, 2.0, 1e30, 0.0, -0.0]),
            3,
        ),
        npy(&[2], NpyData::F64(vec![1e300, -2.5]), 1),
        npy(&[], NpyData::F32(vec![1.0]), 1),
    ]
}

#[test]
fn npy_arrays() {
    let mut seeds = npy_seeds();
    seeds.push(bool_npy(&[1, 0, 1]));
    // Every input is read as an array and as a mask (which takes bool too).
    check(
        &Campaign::for_suite("parse_npy", &seeds, NPY_TOKENS, Some(repair_npy)),
        |bytes| {
            let path = Path::new(PATH);
            parse_npy(path, bytes).is_ok() | parse_mask_npy(path, bytes).is_ok()
        },
    );
}

/// The header reader that comes before a memory map: it reads from a stream and checks the
/// announced size against the file's length, so it must not allocate for the size itself.
#[test]
fn npy_headers() {
    let seeds = npy_seeds();
    check(
        &Campaign::for_suite("read_npy_header", &seeds, NPY_TOKENS, Some(repair_npy)),
        |bytes| {
            let path = Path::new(PATH);
            read_npy_header(path, &mut &bytes[..])
                .and_then(|header| header.check_file_len(path, bytes.len() as u64))
                .is_ok()
        },
    );
}

#[test]
fn codes_in_npy_files() {
    let codes = |n, bits, seed| random_codes(n, bits, seed).unwrap();
    let npy_of = |c: &Codes| {
        npy(
            &[c.len(), c.bits().div_ceil(8)],
            NpyData::U8(c.to_bytes()),
            1,
        )
    };
    let seeds = vec![
        npy_of(&codes(4, 16, 1)),
        npy_of(&codes(3, 24, 2)),
        npy_of(&codes(2, 136, 3)),
        npy_of(&codes(0, 8, 4)),
    ];
    // Every input is read whole and cut to a 12-bit prefix (longer than some files' codes).
    check(
        &Campaign::for_suite("Codes::parse_npy", &seeds, NPY_TOKENS, Some(repair_npy)),
        |bytes| {
            let read = |bits| Codes::parse_npy(Path::new(PATH), bytes, bits).is_ok();
            read(None) | read(Some(12))
        },
    );
}

#[test]
fn codes_in_safetensors_files() {
    let st = |n, bits, seed| {
        let bytes = random_codes(n, bits, seed)
            .unwrap()
            .to_safetensors("codes")
            .unwrap();
        Seed {
            bytes,
            fields: vec![Field::le(0, 8)],
        }
    };
    let seeds = vec![st(3, 16, 1), st(2, 12, 2), st(1, 130, 3), st(0, 8, 4)];
    check(
        &Campaign::for_suite(
            "Codes::from_safetensors",
            &seeds,
            SAFETENSORS_TOKENS,
            Some(repair_safetensors),
        ),
        |bytes| Codes::from_safetensors(bytes, "codes").is_ok(),
    );
}

#[test]
fn allowed_rows_files() {
    const ROWS: usize = 6;
    let ids: Vec<i64> = (0..ROWS as i64).map(|r| 100 + 7 * r).collect();
    let seeds = vec![
        bool_npy(&[1, 0, 0, 1, 1, 0]),
        npy(&[ROWS], NpyData::U8(vec![0, 1, 1, 0, 0, 1]), 1),
        npy(&[3], NpyData::I64(vec![5, 0, 5]), 1),
        npy(&[2], NpyData::I32(vec![1, 2]), 2),
        npy(&[2], NpyData::I64(vec![107, 135]), 1),
    ];
    // Every input is read for a database with IDs and for one without (row numbers).
    check(
        &Campaign::for_suite(
            "AllowedRows::parse_npy",
            &seeds,
            NPY_TOKENS,
            Some(repair_npy),
        ),
        |bytes| {
            let read = |ids| AllowedRows::parse_npy(Path::new(PATH), bytes, ROWS, ids).is_ok();
            read(None) | read(Some(&ids[..]))
        },
    );
}

#[test]
fn id_files() {
    let seeds = vec![
        npy(&[4], NpyData::I64(vec![9, -3, 0, 1 << 40]), 1),
        npy(&[4], NpyData::I64(vec![0, 1, 2, 3]), 3),
    ];
    check(
        &Campaign::for_suite("parse_ids_npy", &seeds, NPY_TOKENS, Some(repair_npy)),
        |bytes| parse_ids_npy(Path::new(PATH), bytes, 4).is_ok(),
    );
}

/// An `IndexBinaryFlat` (without `ids`) or an `IndexBinaryIDMap`, with the offsets of its
/// header fields and lengths.
fn faiss(n: usize, bits: usize, ids: Option<&[i64]>) -> Seed {
    let codes = random_codes(n, bits, bits as u64).unwrap();
    let bytes = binary_index_bytes(codes.view(), ids).unwrap();
    // fourcc, then d (i32), code_size (i32), ntotal (i64), is_trained (u8), metric (i32).
    let header = |at: usize| {
        [
            Field::le(at, 4),
            Field::le(at + 4, 4),
            Field::le(at + 8, 8),
            Field::le(at + 16, 1),
            Field::le(at + 17, 4),
        ]
    };
    let mut fields = header(4).to_vec();
    let code_bytes = n * bits / 8;
    if ids.is_some() {
        fields.extend(header(29));
        fields.push(Field::le(50, 8));
        fields.push(Field::le(58 + code_bytes, 8));
    } else {
        fields.push(Field::le(25, 8));
    }
    Seed { bytes, fields }
}

#[test]
fn faiss_binary_indexes() {
    let mut id_map2 = faiss(2, 16, Some(&[-5, 11]));
    id_map2.bytes[..4].copy_from_slice(b"IBM2");
    let seeds = vec![
        faiss(3, 16, None),
        faiss(1, 1024, None),
        faiss(0, 8, None),
        faiss(3, 24, Some(&[4, 2, 9])),
        id_map2,
    ];
    // Every input is read whole and cut to a 16-bit prefix.
    check(
        &Campaign::for_suite("parse_binary_index", &seeds, FAISS_TOKENS, None),
        |bytes| {
            let read = |bits| parse_binary_index(Path::new(PATH), bytes, bits).is_ok();
            read(None) | read(Some(16))
        },
    );
}

/// An empty array may claim codes of any width: widths whose bit count overflows are refused by
/// both code readers (the fuzzer's first finds, kept as cases of their own).
#[test]
fn empty_codes_of_an_overflowing_width_are_refused() {
    let width = usize::MAX / 4;
    let npy = to_npy_bytes(&NpyArray {
        shape: vec![0, width],
        data: NpyData::U8(vec![]),
    })
    .unwrap();
    let e = Codes::parse_npy(Path::new("wide.npy"), &npy, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("wide.npy") && e.contains("shape"), "{e}");
    let header =
        format!("{{\"codes\":{{\"dtype\":\"U8\",\"shape\":[0,{width}],\"data_offsets\":[0,0]}}}}");
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend(header.as_bytes());
    let e = Codes::from_safetensors(&st, "codes")
        .unwrap_err()
        .to_string();
    assert!(e.contains("bytes per code"), "{e}");
}

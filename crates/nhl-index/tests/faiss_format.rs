//! FAISS binary index files through our own writer and reader: round trips at odd sizes, the
//! exact bytes FAISS writes, and a clear error (never a panic, never a huge allocation) for every
//! kind of bad file. The comparison with FAISS itself is in `faiss_interop.rs`.

use nhl_index::faiss::{
    binary_index_bytes, parse_binary_index, read_binary_index, write_binary_index,
};
use nhl_index::synth::{random_codes, SplitMix64};
use nhl_index::{Codes, IndexError};
use std::path::{Path, PathBuf};

const NAME: &str = "test.index";

fn parse(bytes: &[u8]) -> Result<nhl_index::faiss::BinaryIndexFile, IndexError> {
    parse_binary_index(Path::new(NAME), bytes, None)
}

/// `n` distinct IDs, negative ones included, in no particular order.
fn distinct_ids(n: usize, seed: u64) -> Vec<i64> {
    let mut rng = SplitMix64::new(seed);
    let base = rng.next_u64() as i64;
    (0..n as i64)
        .map(|i| base.wrapping_add(i.wrapping_mul(0x9E37_79B9)))
        .collect()
}

/// The error of a bad file, as text; fails the test if the file was accepted.
fn refusal(bytes: &[u8]) -> String {
    match parse(bytes) {
        Ok(file) => panic!(
            "a bad file of {} bytes was accepted: {} codes",
            bytes.len(),
            file.codes.len()
        ),
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.starts_with(NAME),
                "the error does not name the file: {text}"
            );
            text
        }
    }
}

fn patch(bytes: &[u8], at: usize, with: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[at..at + with.len()].copy_from_slice(with);
    out
}

#[test]
fn codes_and_ids_round_trip_at_odd_sizes() -> anyhow::Result<()> {
    for bits in [8, 24, 136, 1024] {
        for n in [0, 1, 37] {
            let codes = random_codes(n, bits, (bits * 1000 + n) as u64)?;
            let code_size = bits / 8;

            let flat = binary_index_bytes(codes.view(), None)?;
            assert_eq!(flat.len(), 25 + 8 + n * code_size, "{bits} bits, {n} codes");
            let back = parse(&flat)?;
            assert_eq!(back.codes, codes, "{bits} bits, {n} codes");
            assert_eq!((back.file_bits, back.ids), (bits, None));

            let ids = distinct_ids(n, bits as u64);
            let mapped = binary_index_bytes(codes.view(), Some(&ids))?;
            assert_eq!(mapped.len(), 25 + flat.len() + 8 + 8 * n);
            let back = parse(&mapped)?;
            assert_eq!(back.codes, codes);
            assert_eq!(back.ids.as_deref(), Some(ids.as_slice()));
        }
    }
    Ok(())
}

#[test]
fn bytes_are_those_faiss_writes() -> anyhow::Result<()> {
    // faiss 1.15.1: IndexBinaryFlat(24) holding rows a0 a1 a2 / a3 a4 a5, written by
    // faiss.write_index_binary; then the same in an IndexBinaryIDMap with IDs 7 and -3.
    let rows = [0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5];
    let codes = Codes::from_bytes(2, 24, &rows)?;
    let flat_header = |code: &[u8; 4]| {
        let mut h = code.to_vec();
        h.extend_from_slice(&[
            24, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0,
        ]);
        h
    };
    let mut flat = flat_header(b"IBxF");
    flat.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]);
    flat.extend_from_slice(&rows);
    assert_eq!(binary_index_bytes(codes.view(), None)?, flat);

    let mut mapped = flat_header(b"IBMp");
    mapped.extend_from_slice(&flat);
    mapped.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]);
    mapped.extend_from_slice(&7i64.to_le_bytes());
    mapped.extend_from_slice(&(-3i64).to_le_bytes());
    assert_eq!(binary_index_bytes(codes.view(), Some(&[7, -3]))?, mapped);
    Ok(())
}

#[test]
fn prefixes_are_written_and_read_as_shorter_codes() -> anyhow::Result<()> {
    let codes = random_codes(9, 136, 5)?;
    let bytes = binary_index_bytes(codes.prefix(64)?, None)?;
    let back = parse(&bytes)?;
    assert_eq!(
        (back.file_bits, back.codes),
        (64, codes.prefix(64)?.to_codes())
    );

    let full = binary_index_bytes(codes.view(), None)?;
    for bits in [1, 12, 64, 129, 136] {
        let cut = parse_binary_index(Path::new(NAME), &full, Some(bits))?;
        assert_eq!(cut.codes, codes.prefix(bits)?.to_codes(), "{bits} bits");
        assert_eq!(cut.file_bits, 136);
    }
    let err = parse_binary_index(Path::new(NAME), &full, Some(144)).unwrap_err();
    assert!(matches!(err, IndexError::Bits { .. }), "{err}");
    assert!(err.to_string().contains(NAME), "{err}");
    Ok(())
}

#[test]
fn codes_of_partial_bytes_or_bad_ids_are_not_written() -> anyhow::Result<()> {
    let codes = random_codes(4, 24, 6)?;
    let err = binary_index_bytes(codes.prefix(12)?, None).unwrap_err();
    assert!(err.to_string().contains("multiple of 8"), "{err}");
    let err = binary_index_bytes(codes.view(), Some(&[1, 2, 3])).unwrap_err();
    assert!(err.to_string().contains("3 IDs for 4 codes"), "{err}");
    let err = binary_index_bytes(codes.view(), Some(&[5, 9, -1, 9])).unwrap_err();
    assert!(err.to_string().contains("ID 9 at rows 1 and 3"), "{err}");
    Ok(())
}

/// The fields of a file in order, with their sizes: a cut anywhere inside one must be reported
/// as that field.
fn fields(prefix: &str, n: usize, code_size: usize) -> Vec<(String, usize)> {
    let header = [
        ("d", 4),
        ("code_size", 4),
        ("ntotal", 8),
        ("is_trained", 1),
        ("metric_type", 4),
    ];
    let mut out: Vec<(String, usize)> = header
        .iter()
        .map(|(name, size)| (format!("{prefix}.{name}"), *size))
        .collect();
    out.push((format!("{prefix}.xb (length)"), 8));
    out.push((format!("{prefix}.xb"), n * code_size));
    out
}

fn check_every_cut(bytes: &[u8], layout: &[(String, usize)]) {
    assert_eq!(
        layout.iter().map(|(_, size)| size).sum::<usize>(),
        bytes.len()
    );
    let mut start = 0;
    for (field, size) in layout {
        for cut in start..start + size {
            let text = refusal(&bytes[..cut]);
            assert!(
                text.contains(&format!("{field}:")) && text.contains("before the end of the file"),
                "cut at byte {cut} (inside {field}): {text}"
            );
        }
        start += size;
    }
}

#[test]
fn a_file_cut_anywhere_is_an_error_naming_the_field() -> anyhow::Result<()> {
    let codes = random_codes(3, 24, 7)?;
    let flat = binary_index_bytes(codes.view(), None)?;
    let mut layout = vec![("index type".to_string(), 4)];
    layout.extend(fields("IndexBinaryFlat", 3, 3));
    check_every_cut(&flat, &layout);

    let mapped = binary_index_bytes(codes.view(), Some(&[10, 20, 30]))?;
    let mut layout = vec![("index type".to_string(), 4)];
    layout.extend(fields("IndexBinaryIDMap", 0, 3).into_iter().take(5));
    layout.push(("IndexBinaryIDMap.index type".to_string(), 4));
    layout.extend(fields("IndexBinaryIDMap.index (IndexBinaryFlat)", 3, 3));
    layout.push(("IndexBinaryIDMap.id_map (length)".to_string(), 8));
    layout.push(("IndexBinaryIDMap.id_map".to_string(), 24));
    check_every_cut(&mapped, &layout);
    Ok(())
}

#[test]
fn other_index_types_are_refused_by_name() -> anyhow::Result<()> {
    let codes = random_codes(3, 24, 8)?;
    let flat = binary_index_bytes(codes.view(), None)?;
    let text = refusal(&patch(&flat, 0, b"IBHf"));
    assert!(
        text.contains("index type (at byte 0)") && text.contains("\"IBHf\" (IndexBinaryHNSW)"),
        "{text}"
    );
    let text = refusal(&patch(&flat, 0, b"IBwF"));
    assert!(text.contains("IndexBinaryIVF"), "{text}");
    let text = refusal(&patch(&flat, 0, b"IxF2"));
    assert!(text.contains("IndexFlatL2, a float index"), "{text}");
    let text = refusal(&patch(&flat, 0, b"\x00\x01ab"));
    assert!(
        text.contains("\"\\x00\\x01ab\" (not a FAISS index type"),
        "{text}"
    );

    // An ID map around anything but a flat index.
    let mapped = binary_index_bytes(codes.view(), Some(&[1, 2, 3]))?;
    let text = refusal(&patch(&mapped, 25, b"IBHh"));
    assert!(
        text.contains("IndexBinaryIDMap.index type (at byte 25)")
            && text.contains("expected IBxF (IndexBinaryFlat)")
            && text.contains("IndexBinaryHash"),
        "{text}"
    );
    // IndexBinaryIDMap2 has the same bytes and is read.
    let back = parse(&patch(&mapped, 0, b"IBM2"))?;
    assert_eq!(back.ids, Some(vec![1, 2, 3]));
    assert_eq!(back.codes, codes);
    Ok(())
}

#[test]
fn header_values_are_checked() -> anyhow::Result<()> {
    let codes = random_codes(3, 24, 9)?;
    let flat = binary_index_bytes(codes.view(), None)?;
    let cases: [(usize, Vec<u8>, &str); 8] = [
        (
            4,
            0i32.to_le_bytes().to_vec(),
            "IndexBinaryFlat.d (at byte 4): expected a positive multiple of 8, found 0",
        ),
        (4, 12i32.to_le_bytes().to_vec(), "found 12"),
        (4, (-24i32).to_le_bytes().to_vec(), "found -24"),
        (
            8,
            4i32.to_le_bytes().to_vec(),
            "IndexBinaryFlat.code_size (at byte 8): expected d / 8 = 3, found 4",
        ),
        (
            12,
            (-1i64).to_le_bytes().to_vec(),
            "IndexBinaryFlat.ntotal (at byte 12)",
        ),
        (
            20,
            vec![2],
            "IndexBinaryFlat.is_trained (at byte 20): expected a bool, 0 or 1, found 2",
        ),
        (
            21,
            7i32.to_le_bytes().to_vec(),
            "IndexBinaryFlat.metric_type (at byte 21)",
        ),
        (21, (-1i32).to_le_bytes().to_vec(), "found -1"),
    ];
    for (at, value, expected) in cases {
        let text = refusal(&patch(&flat, at, &value));
        assert!(text.contains(expected), "patch at {at}: {text}");
    }
    // A metric other than METRIC_L2 is still a valid FAISS file (binary search ignores it).
    assert_eq!(parse(&patch(&flat, 21, &0i32.to_le_bytes()))?.codes, codes);
    Ok(())
}

#[test]
fn lengths_that_disagree_or_overflow_are_errors_before_any_allocation() -> anyhow::Result<()> {
    let codes = random_codes(3, 24, 10)?;
    let flat = binary_index_bytes(codes.view(), None)?;
    // The code vector's length disagrees with ntotal * code_size.
    let text = refusal(&patch(&flat, 25, &8u64.to_le_bytes()));
    assert!(
        text.contains(
            "IndexBinaryFlat.xb (length at byte 25): expected 9 (from the header), found 8"
        ),
        "{text}"
    );
    let text = refusal(&patch(&flat, 25, &u64::MAX.to_le_bytes()));
    assert!(text.contains(&format!("found {}", u64::MAX)), "{text}");
    // ntotal whose codes overflow 2^64 bytes.
    let mut wide = patch(&flat, 4, &1024i32.to_le_bytes());
    wide = patch(&wide, 8, &128i32.to_le_bytes());
    let text = refusal(&patch(&wide, 12, &i64::MAX.to_le_bytes()));
    assert!(
        text.contains("IndexBinaryFlat.ntotal") && text.contains("2^64"),
        "{text}"
    );
    // A huge ntotal with a matching length: refused by the file size, not by running out of
    // memory (2^40 codes of 3 bytes would need 8 TiB as words).
    let huge = patch(&flat, 12, &(1i64 << 40).to_le_bytes());
    let text = refusal(&patch(&huge, 25, &(3u64 << 40).to_le_bytes()));
    assert!(
        text.contains(&format!(
            "IndexBinaryFlat.xb: expected {} bytes at byte 33, found 9 bytes before the end",
            3u64 << 40
        )),
        "{text}"
    );

    let mapped = binary_index_bytes(codes.view(), Some(&[1, 2, 3]))?;
    // The map and its index disagree on ntotal.
    let text = refusal(&patch(&mapped, 12, &2i64.to_le_bytes()));
    assert!(
        text.contains("d = 24 and ntotal = 2, as in the IndexBinaryIDMap header"),
        "{text}"
    );
    // id_map's length disagrees with ntotal.
    let text = refusal(&patch(&mapped, 67, &4u64.to_le_bytes()));
    assert!(
        text.contains("IndexBinaryIDMap.id_map (length at byte 67): expected 3"),
        "{text}"
    );
    // Equal IDs.
    let text = refusal(&patch(&mapped, 91, &1i64.to_le_bytes()));
    assert!(
        text.contains("IndexBinaryIDMap.id_map: expected unique IDs, found ID 1 at rows 0 and 2"),
        "{text}"
    );
    // Bytes after the index.
    let mut longer = flat.clone();
    longer.push(0);
    let text = refusal(&longer);
    assert!(
        text.contains("end of file: expected the end of the index at byte 42, found 1 more bytes"),
        "{text}"
    );
    Ok(())
}

fn tmp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nhl-faiss-format-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn files_are_written_whole_or_not_at_all() -> anyhow::Result<()> {
    let dir = tmp_dir("atomic");
    let codes = random_codes(50, 136, 11)?;
    let ids = distinct_ids(50, 12);
    let path = dir.join("db.index");
    write_binary_index(&path, codes.view(), Some(&ids))?;
    let back = read_binary_index(&path, None)?;
    assert_eq!((back.codes, back.ids), (codes.clone(), Some(ids.clone())));
    assert_eq!(
        std::fs::read(&path)?,
        binary_index_bytes(codes.view(), Some(&ids))?
    );

    // Bad arguments: nothing is created.
    assert!(write_binary_index(&dir.join("bad.index"), codes.view(), Some(&ids[1..])).is_err());
    // A target that cannot be replaced (a directory): the temporary file is removed.
    std::fs::create_dir_all(dir.join("taken.index"))?;
    let err = write_binary_index(&dir.join("taken.index"), codes.view(), None).unwrap_err();
    assert!(err.to_string().contains("taken.index"), "{err}");
    assert_eq!(entries(&dir), ["db.index", "taken.index"]);

    let err = read_binary_index(&dir.join("missing.index"), None).unwrap_err();
    assert!(
        matches!(err, IndexError::Io { .. }) && err.to_string().contains("missing.index"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

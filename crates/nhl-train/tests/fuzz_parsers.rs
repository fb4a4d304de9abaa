//! Mutation fuzzing of every parser of this crate (IDX files and pairs, plain and gzip; the
//! `model.safetensors` checkpoint; the training state; the user's `DATA.safetensors`;
//! `metrics.json`): a fixed number of cases per parser, mutated with a fixed seed from small
//! valid files built here (the `.npy` readers are `nhl-index`'s and fuzzed there). No case may
//! panic, and none may allocate, in one piece, more than `nhl_index::fuzz::alloc_bound` of the
//! bytes that justify it. A failure names the case and its bytes; `Campaign::case` rebuilds it.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use nhl_index::fuzz::{
    self, alloc_bound, largest_allocation, repair_safetensors, Campaign, CountingAlloc, Field, Seed,
};
use nhl_train::checkpoint::{self, CheckpointMeta};
use nhl_train::config::{Method, Mode, TrainConfig};
use nhl_train::data::idx::{parse_idx, parse_pair};
use nhl_train::data::user::parse_safetensors_source;
use nhl_train::data::InputScaling;
use nhl_train::divergence::LossMonitor;
use nhl_train::model::NamedParam;
use nhl_train::report::{parse_metrics, NumMap, RunMetrics, ValidationRecord};
use nhl_train::train_state::{Position, TrainState};
use nhl_train::trainer::{LiveUnits, Validation};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const PATH: &str = "fuzz.input";

/// The words of a safetensors header, and of this crate's metadata, worth swapping for one
/// another.
const SAFETENSORS_TOKENS: &[&[u8]] = &[
    b"\"dtype\"",
    b"\"shape\"",
    b"\"data_offsets\"",
    b"\"__metadata__\"",
    b"\"U8\"",
    b"\"I32\"",
    b"\"I64\"",
    b"\"F16\"",
    b"\"F32\"",
    b"\"F64\"",
    b"\"BOOL\"",
    b"\"features\"",
    b"\"labels\"",
    b"format_version",
    b"bits",
    b"method",
    b"mode",
    b"hidden",
    b"input_dim",
    b"input_scaling",
    b"loss_params",
    b"uint8/255",
    b"csq",
    b"single",
    b"\\\"",
    b"[",
    b"]",
    b",",
    b"{",
    b"}",
    b":",
    b"\"",
];

/// The words of `metrics.json` and of a training state's JSON worth swapping.
const JSON_TOKENS: &[&[u8]] = &[
    b"null", b"true", b"false", b"[]", b"{}", b"\"\"", b"[", b"]", b"{", b"}", b",", b":", b"\"",
    b"\"8\"", b"-", b"e9",
];

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// `bytes` as one gzip member of stored (uncompressed) deflate blocks: the gzip path of the
/// reader without a compressor, whose large state would be measured with the parser.
fn gzip_stored(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    if bytes.is_empty() {
        out.extend([1, 0, 0, 0xff, 0xff]);
    }
    let mut blocks = bytes.chunks(0xffff).peekable();
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        out.extend(len.to_le_bytes());
        out.extend((!len).to_le_bytes());
        out.extend(block);
    }
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    out.extend(crc.sum().to_le_bytes());
    out.extend((bytes.len() as u32).to_le_bytes());
    out
}

/// A plain IDX file of unsigned bytes, with its magic and dimensions as big-endian fields.
fn idx(dims: &[u32], data: &[u8]) -> Seed {
    let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        bytes.extend(d.to_be_bytes());
    }
    bytes.extend(data);
    let fields = (0..=dims.len()).map(|k| Field::be(4 * k, 4)).collect();
    Seed { bytes, fields }
}

/// The bytes that justify a parser's allocations for IDX `bytes`: their length, plus for a gzip
/// file what it really inflates to, up to one byte past the largest data its header (of rank 1
/// or 3) announces. A file that inflates to more than its header says justifies nothing more.
fn idx_justified(bytes: &[u8]) -> usize {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return bytes.len();
    }
    let mut decoder = MultiGzDecoder::new(bytes);
    let mut buf = vec![0u8; 8192];
    let mut head = Vec::new();
    let mut inflated = 0usize;
    let mut cap = usize::MAX;
    while inflated < cap {
        let want = buf.len().min(cap - inflated);
        let Ok(got) = decoder.read(&mut buf[..want]) else {
            break;
        };
        if got == 0 {
            break;
        }
        if head.len() < 16 {
            head.extend(&buf[..got.min(16 - head.len())]);
            if head.len() == 16 {
                cap = [1usize, 3]
                    .iter()
                    .map(|&rank| {
                        let dims = &head[4..4 + 4 * rank];
                        let n = dims.chunks_exact(4).fold(1usize, |acc, d| {
                            acc.saturating_mul(
                                u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize
                            )
                        });
                        n.saturating_add(5 + 4 * rank)
                    })
                    .max()
                    .unwrap_or(usize::MAX);
            }
        }
        inflated += got;
    }
    bytes.len() + inflated.min(cap)
}

fn idx_seeds() -> Vec<Seed> {
    let labels = idx(&[5], &[0, 3, 9, 1, 1]);
    let images = idx(&[2, 3, 2], &(0..12).collect::<Vec<u8>>());
    let empty = idx(&[0, 28, 28], &[]);
    let zipped = |seed: &Seed| Seed::plain(gzip(&seed.bytes));
    vec![
        zipped(&labels),
        zipped(&images),
        Seed::plain([gzip(&labels.bytes[..6]), gzip(&labels.bytes[6..])].concat()),
        labels,
        images,
        empty,
    ]
}

#[test]
fn idx_files() {
    let seeds = idx_seeds();
    // Every input is read as labels (rank 1) and as images (rank 3); a plain one also gzipped,
    // so that the edits of its header fields reach the gzip path too (it inflates to the plain
    // input, which justifies the same allocations).
    fuzz::check(
        &Campaign::for_suite("parse_idx", &seeds, &[], None),
        idx_justified,
        |bytes| {
            let read = |bytes: &[u8], rank| parse_idx(bytes, Path::new(PATH), rank).is_ok();
            let plain = read(bytes, 1) | read(bytes, 3);
            if bytes.starts_with(&[0x1f, 0x8b]) {
                return plain;
            }
            let zipped = gzip_stored(bytes);
            plain | read(&zipped, 1) | read(&zipped, 3)
        },
    );
}

#[test]
fn idx_pairs() {
    let labels = idx(&[2], &[4, 1]);
    let images = idx(&[2, 1, 3], &[9; 6]);
    let seeds = vec![
        labels.clone(),
        images.clone(),
        Seed::plain(gzip(&labels.bytes)),
        Seed::plain(gzip(&images.bytes)),
    ];
    // Every input is paired as images with the valid labels, and as labels with the images.
    let (img, lab) = (Path::new("images.idx"), Path::new("labels.idx"));
    fuzz::check(
        &Campaign::for_suite("parse_pair", &seeds, &[], None),
        |bytes| idx_justified(bytes) + images.bytes.len() + labels.bytes.len(),
        |bytes| {
            parse_pair(bytes, img, &labels.bytes, lab).is_ok()
                | parse_pair(&images.bytes, img, bytes, lab).is_ok()
        },
    );
}

/// A gzip IDX file that announces 4 labels and inflates to a mebibyte: refused without holding
/// the mebibyte.
#[test]
fn a_gzip_file_longer_than_its_header_says_is_refused_without_inflating_it_all() {
    let mut raw = idx(&[4], &[1, 2, 3, 4]).bytes;
    raw.resize(raw.len() + (1 << 20), 0);
    let bomb = gzip(&raw);
    assert!(bomb.len() < 4096, "{} bytes", bomb.len());
    let (result, largest) = largest_allocation(|| parse_idx(&bomb, Path::new("bomb.gz"), 1));
    let e = result.unwrap_err().to_string();
    assert!(
        e.contains("bomb.gz") && e.contains("more than 12 bytes once inflated"),
        "{e}"
    );
    let bound = alloc_bound(idx_justified(&bomb));
    assert!(largest <= bound, "{largest} bytes at once, bound {bound}");
    // A file of the announced length still reads, and so does one announcing the whole length.
    let whole = idx(&[4], &[1, 2, 3, 4]).bytes;
    assert_eq!(
        parse_idx(&gzip(&whole), Path::new("x"), 1).unwrap().data,
        [1, 2, 3, 4]
    );
    assert_eq!(
        parse_idx(&gzip_stored(&whole), Path::new("x"), 1)
            .unwrap()
            .data,
        [1, 2, 3, 4]
    );
    let mut big = idx(&[1 << 20], &[]).bytes;
    big.resize(big.len() + (1 << 20), 7);
    assert_eq!(
        parse_idx(&gzip(&big), Path::new("x"), 1)
            .unwrap()
            .data
            .len(),
        1 << 20
    );
}

/// The bytes `write` writes to a file (which is then removed).
fn written(name: &str, write: impl FnOnce(&Path)) -> Vec<u8> {
    let path: PathBuf =
        std::env::temp_dir().join(format!("nhl-fuzz-{}-{name}", std::process::id()));
    write(&path);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    bytes
}

/// Safetensors seeds have their header length as a field.
fn safetensors_seed(bytes: Vec<u8>) -> Seed {
    Seed {
        bytes,
        fields: vec![Field::le(0, 8)],
    }
}

fn param(name: &str, shape: [usize; 2]) -> NamedParam {
    NamedParam {
        name: name.into(),
        shape,
        data: (0..shape[0] * shape[1])
            .map(|i| i as f32 * 0.25 - 1.0)
            .collect(),
    }
}

fn checkpoint_seeds() -> Vec<Seed> {
    let save = |name: &str, meta: &CheckpointMeta, params: &[NamedParam]| {
        safetensors_seed(written(name, |path| {
            checkpoint::save(
                path,
                meta,
                params
                    .iter()
                    .map(|p| (p.name.as_str(), p.shape, p.data.as_slice())),
            )
            .unwrap()
        }))
    };
    let meta = CheckpointMeta {
        bits: vec![8, 16],
        method: Method::Csq,
        mode: Mode::Full,
        hidden: 3,
        seed: 5,
        loss_params: BTreeMap::from([("lambda".into(), 0.1)]),
        input_dim: 2,
        input_scaling: InputScaling::Uint8Unit,
    };
    let single = CheckpointMeta {
        bits: vec![8],
        mode: Mode::Single,
        method: Method::Dpn,
        loss_params: BTreeMap::new(),
        ..meta.clone()
    };
    // Format version 1: no input keys, the width read from `backbone.weight`.
    let w: Vec<u8> = (0..6u8).flat_map(|i| f32::from(i).to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, vec![2, 3], &w).unwrap();
    let v1: HashMap<String, String> = [
        ("format_version", "1"),
        ("bits", "8,16"),
        ("method", "csq"),
        ("mode", "full"),
        ("hidden", "2"),
        ("seed", "7"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    vec![
        save(
            "full.safetensors",
            &meta,
            &[
                param("backbone.weight", [3, 2]),
                param("hash.weight", [16, 3]),
            ],
        ),
        save(
            "single.safetensors",
            &single,
            &[param("b8.hash.bias", [1, 8])],
        ),
        safetensors_seed(safetensors::serialize([("backbone.weight", view)], Some(v1)).unwrap()),
    ]
}

#[test]
fn checkpoints() {
    let seeds = checkpoint_seeds();
    fuzz::check(
        &Campaign::for_suite(
            "checkpoint::parse",
            &seeds,
            SAFETENSORS_TOKENS,
            Some(repair_safetensors),
        ),
        <[u8]>::len,
        |bytes| checkpoint::parse(Path::new(PATH), bytes).is_ok(),
    );
}

fn state_seeds() -> Vec<Seed> {
    let position = Position {
        version: 2,
        config: TrainConfig {
            bits: vec![8, 16],
            epochs: 3,
            ..TrainConfig::default()
        },
        model: 0,
        epoch: 1,
        batch: 2,
        shuffle: 0xdead_beef,
        loss_sum: 1.5,
        weight_sum: vec![2.5, 1.5],
        monitor: LossMonitor::default(),
        adam_step: 9,
        train_seconds: 0.25,
        epoch_seconds: vec![0.125],
        loss_per_epoch: vec![0.75],
        validations: vec![Validation {
            epoch: 1,
            map: vec![(8, 0.5), (16, 0.625)],
        }],
        weights_per_epoch: vec![vec![1.25, 0.75]],
    };
    let save = |name: &str, position: &Position, tensors: Vec<NamedParam>| {
        let state = TrainState {
            position: position.clone(),
            tensors: tensors.into(),
        };
        safetensors_seed(written(name, |path| state.save(path).unwrap()))
    };
    vec![
        save(
            "state.safetensors",
            &position,
            vec![
                param("param.hash.weight", [2, 3]),
                param("adam.m.hash.weight", [2, 3]),
                param("bank.codes", [4, 2]),
            ],
        ),
        save("bare.safetensors", &position, vec![]),
    ]
}

#[test]
fn training_states() {
    let seeds = state_seeds();
    let tokens: Vec<&[u8]> = SAFETENSORS_TOKENS
        .iter()
        .chain(JSON_TOKENS)
        .copied()
        .collect();
    fuzz::check(
        &Campaign::for_suite(
            "TrainState::parse",
            &seeds,
            &tokens,
            Some(repair_safetensors),
        ),
        <[u8]>::len,
        |bytes| TrainState::parse(Path::new(PATH), bytes).is_ok(),
    );
}

/// A `DATA.safetensors` with `features` and `labels` of the given dtypes, shapes and bytes.
fn user_data(features: (Dtype, &[usize], &[u8]), labels: (Dtype, &[usize], &[u8])) -> Seed {
    fn view<'a>((dtype, shape, data): (Dtype, &[usize], &'a [u8])) -> TensorView<'a> {
        TensorView::new(dtype, shape.to_vec(), data).unwrap()
    }
    safetensors_seed(
        safetensors::serialize(
            [("features", view(features)), ("labels", view(labels))],
            None,
        )
        .unwrap(),
    )
}

#[test]
fn user_data_files() {
    let f32s: Vec<u8> = [0.5f32, -1.0, 2.0, 0.0, 3.5, 1e-3]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let f64s: Vec<u8> = [0.5f64, 1e30]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let f16s: Vec<u8> = [0x3c00u16, 0xc000, 0, 0x3800]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let i64s: Vec<u8> = [2i64, 0, 1].iter().flat_map(|x| x.to_le_bytes()).collect();
    let i32s: Vec<u8> = [1i32, 0].iter().flat_map(|x| x.to_le_bytes()).collect();
    let seeds = vec![
        user_data((Dtype::F32, &[3, 2], &f32s), (Dtype::I64, &[3], &i64s)),
        user_data(
            (Dtype::U8, &[2, 3], &[0, 9, 255, 1, 2, 3]),
            (Dtype::U8, &[2, 3], &[1, 0, 1, 0, 1, 0]),
        ),
        user_data((Dtype::F64, &[2, 1], &f64s), (Dtype::I32, &[2], &i32s)),
        user_data((Dtype::F16, &[2, 2], &f16s), (Dtype::U8, &[2], &[1, 1])),
    ];
    fuzz::check(
        &Campaign::for_suite(
            "parse_safetensors_source",
            &seeds,
            SAFETENSORS_TOKENS,
            Some(repair_safetensors),
        ),
        <[u8]>::len,
        |bytes| parse_safetensors_source(Path::new(PATH), bytes).is_ok(),
    );
}

#[test]
fn metrics_files() {
    let metrics = RunMetrics {
        protocol: "fmnist-t10k".into(),
        method: Method::Csq,
        mode: Mode::Full,
        backend: "cpu".into(),
        adapter: "cpu (f32)".into(),
        seed: 1,
        epochs: 2,
        bits: vec![8, 16],
        map: NumMap(vec![(8, 0.5), (16, 0.625)]),
        map_tie_aware: NumMap(vec![(8, 0.5), (16, 0.6)]),
        precision_at: NumMap(vec![(8, NumMap(vec![(1, 0.75), (10, 0.5)]))]),
        train_seconds: 1.25,
        epoch_seconds: vec![0.5, f64::NAN],
        loss_per_epoch: vec![1.0, 0.5],
        n_query: Some(10),
        n_train: Some(20),
        n_database: Some(30),
        config: Some(TrainConfig::default()),
        loss_params: BTreeMap::from([("lambda".into(), 0.1)]),
        validations: vec![ValidationRecord {
            epoch: 1,
            map: NumMap(vec![(8, 0.25)]),
        }],
        map_best_of_validations: Some(NumMap(vec![(8, 0.25)])),
        backbone_live_units: vec![LiveUnits {
            bits: 16,
            live: 7,
            hidden: 32,
        }],
        dominance_weights_per_epoch: vec![vec![1.25, 0.75]],
        collapsed_lengths: Vec::new(),
    };
    let seeds = vec![
        Seed::plain(serde_json::to_vec_pretty(&metrics).unwrap()),
        Seed::plain(
            serde_json::to_vec(&RunMetrics {
                config: None,
                validations: vec![],
                map_best_of_validations: None,
                ..metrics.clone()
            })
            .unwrap(),
        ),
    ];
    // `read_metrics` reads the file as UTF-8 text first.
    fuzz::check(
        &Campaign::for_suite("parse_metrics", &seeds, JSON_TOKENS, None),
        <[u8]>::len,
        |bytes| {
            std::str::from_utf8(bytes)
                .is_ok_and(|text| parse_metrics(Path::new(PATH), text).is_ok())
        },
    );
}

//! The encoder: a saved model encodes its run's database features into the run's own codes, bit
//! for bit, on the backend that trained it, from every kind of features file and at every batch
//! size; a `single` run encodes per length; and every bad input is an error that names the file
//! and the field, with no output left behind.

use std::path::{Path, PathBuf};

use nhl_index::npy::{write_npy, NpyArray, NpyData};
use nhl_kernels::cpu::CpuBackend;
use nhl_kernels::HashingOps;
use nhl_train::checkpoint::{self, CheckpointMeta};
use nhl_train::config::{Method, Mode, TrainConfig};
use nhl_train::data::{load_protocol, Dataset, Protocol, Split, INPUT_SCALING};
use nhl_train::encoder::Encoder;
use nhl_train::trainer::{train, TrainOutcome};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

/// A fresh directory, removed on drop.
struct Temp(PathBuf);

impl Temp {
    fn new(tag: &str) -> Temp {
        let p = std::env::temp_dir().join(format!("nhl-encoder-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Temp(p)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The names in the directory, sorted.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small slice of the embedded t10k protocol (uint8 pixels / 255): 30 queries, 120 training
/// items, 333 database items.
fn small_split() -> Split {
    let full = load_protocol(Protocol::FmnistT10k, None).expect("the embedded data loads");
    let pick = |per_class: usize, block: usize| -> Vec<usize> {
        (0..10)
            .flat_map(|c| (0..per_class).map(move |i| c * block + i))
            .collect()
    };
    Split {
        name: "t10k-small".into(),
        query: full.query.subset(&pick(3, 100)),
        train: full.train.subset(&pick(12, 500)),
        database: full.database.subset(&(0..333).collect::<Vec<_>>()),
    }
}

fn config(mode: Mode, bits: Vec<usize>) -> TrainConfig {
    TrainConfig {
        method: Method::Csq,
        mode,
        bits,
        hidden: 24,
        epochs: 1,
        batch_size: 32,
        ..TrainConfig::default()
    }
}

/// Trains and saves the model as `cargo xtask train` does; returns the outcome.
fn train_and_save<B: HashingOps<Elem = f32>>(
    backend: &B,
    split: &Split,
    config: &TrainConfig,
    model: &Path,
) -> TrainOutcome {
    let outcome = train(backend, split, config, &mut |_| {}).expect("training runs");
    let meta = CheckpointMeta {
        bits: config.bits.clone(),
        method: config.method,
        mode: config.mode,
        hidden: config.hidden,
        seed: config.seed,
        loss_params: Default::default(),
        input_dim: split.train.dim,
        input_scaling: INPUT_SCALING,
    };
    let params = outcome
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.shape, p.data.as_slice()));
    checkpoint::save(model, &meta, params).expect("the checkpoint saves");
    outcome
}

/// The stored pixel bytes of a protocol set (its features are `byte / 255`, exactly invertible).
fn pixel_bytes(set: &Dataset) -> Vec<u8> {
    set.features
        .iter()
        .map(|&f| (f * 255.0).round() as u8)
        .collect()
}

/// The features of `set` in the file forms the encoder reads: uint8 and float32 `.npy`, and a
/// safetensors file with a uint8 `features` tensor beside another tensor.
fn feature_files(dir: &Temp, set: &Dataset) -> Vec<PathBuf> {
    let bytes = pixel_bytes(set);
    let shape = vec![set.len(), set.dim];
    let u8_npy = dir.path("db_u8.npy");
    write_npy(
        &u8_npy,
        &NpyArray {
            shape: shape.clone(),
            data: NpyData::U8(bytes.clone()),
        },
    )
    .unwrap();
    let f32_npy = dir.path("db_f32.npy");
    write_npy(
        &f32_npy,
        &NpyArray {
            shape: shape.clone(),
            data: NpyData::F32(set.features.clone()),
        },
    )
    .unwrap();
    let st = dir.path("db.safetensors");
    let labels = vec![0u8; set.len()];
    let tensors = [
        (
            "features",
            TensorView::new(Dtype::U8, shape.clone(), &bytes).unwrap(),
        ),
        (
            "labels",
            TensorView::new(Dtype::U8, vec![set.len()], &labels).unwrap(),
        ),
    ];
    std::fs::write(&st, safetensors::serialize(tensors, None).unwrap()).unwrap();
    vec![u8_npy, f32_npy, st]
}

/// The `.npy` bytes of a run's saved codes, as `cargo xtask train` writes `database_codes.npy`.
fn saved_codes(dir: &Temp, codes: &nhl_index::Codes, name: &str) -> Vec<u8> {
    let path = dir.path(name);
    codes.write_npy(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    bytes
}

/// Encodes every features file at several batch sizes and checks each output file equals
/// `want` byte for byte.
fn assert_files_encode_to<B: HashingOps<Elem = f32>>(
    backend: &B,
    dir: &Temp,
    model: &Path,
    bits: Option<usize>,
    files: &[PathBuf],
    want: &[u8],
) {
    for batch in [1, 7, 100, 2048] {
        let mut encoder = Encoder::load(backend, model, bits).unwrap();
        encoder.set_batch(batch).unwrap();
        for file in files {
            let out = dir.path("out.npy");
            let done = encoder.encode_file(file, &out, &mut |_, _| {}).unwrap();
            assert_eq!(done.bits, encoder.bits());
            assert_eq!(
                std::fs::read(&out).unwrap(),
                want,
                "{} at batch {batch}, {bits:?} bits",
                file.display()
            );
        }
    }
}

#[test]
fn cpu_encoding_reproduces_the_runs_codes_bit_for_bit() {
    let dir = Temp::new("cpu");
    let split = small_split();
    let cpu = CpuBackend::<f32>::new();
    let model = dir.path("model.safetensors");
    let outcome = train_and_save(&cpu, &split, &config(Mode::Full, vec![8, 16, 32]), &model);
    let files = feature_files(&dir, &split.database);
    let longest = outcome.codes.last().unwrap();
    let want = saved_codes(&dir, &longest.database, "want.npy");
    // The run directory names the same model.
    assert_files_encode_to(&cpu, &dir, &dir.0, None, &files, &want);

    // Every trained length: the prefix of the longest code.
    for c in &outcome.codes[..2] {
        let want = saved_codes(&dir, &c.database, "want.npy");
        assert_files_encode_to(&cpu, &dir, &model, Some(c.bits), &files[..1], &want);
    }

    // The slice interface gives the same bytes, and the signs of its real outputs.
    let encoder = Encoder::load(&cpu, &model, None).unwrap();
    assert_eq!(encoder.input_dim(), 784);
    let codes = encoder.encode(&split.database.features).unwrap();
    assert_eq!(codes, longest.database.to_bytes());
    let u = encoder.outputs(&split.database.features).unwrap();
    let from_signs = nhl_index::Codes::from_signs(split.database.len(), 32, &u).unwrap();
    assert_eq!(from_signs, longest.database);
    let e = encoder
        .encode(&split.database.features[..785])
        .unwrap_err()
        .to_string();
    assert!(e.contains("785 values") && e.contains("784"), "{e}");
}

/// A GPU-trained model's codes come back from GPU encoding bit for bit; the CPU, which rounds
/// differently, agrees on every bit whose output is not within rounding of 0.
#[test]
fn gpu_encoding_reproduces_the_gpu_runs_codes_and_the_cpu_agrees_away_from_zero() {
    let Some(gpu) = nhl_kernels::gpu::test_backend() else {
        return;
    };
    let dir = Temp::new("gpu");
    let split = small_split();
    let model = dir.path("model.safetensors");
    let outcome = train_and_save(&gpu, &split, &config(Mode::Full, vec![8, 16, 32]), &model);
    let files = feature_files(&dir, &split.database);
    let longest = outcome.codes.last().unwrap();
    let want = saved_codes(&dir, &longest.database, "want.npy");
    assert_files_encode_to(&gpu, &dir, &model, None, &files[..2], &want);

    let cpu = CpuBackend::<f32>::new();
    let on_gpu = Encoder::load(&gpu, &model, None).unwrap();
    let on_cpu = Encoder::load(&cpu, &model, None).unwrap();
    let u_gpu = on_gpu.outputs(&split.database.features).unwrap();
    let u_cpu = on_cpu.outputs(&split.database.features).unwrap();
    // Each output sums 24 hidden products after 784 input products: a few ulps of its scale.
    let scale = u_cpu.iter().fold(0f32, |m, v| m.max(v.abs()));
    let tol = 1e-4 * scale;
    let mut flipped = 0;
    for (i, (&g, &c)) in u_gpu.iter().zip(&u_cpu).enumerate() {
        assert!((g - c).abs() <= tol, "output {i}: gpu {g}, cpu {c}");
        if (g > 0.0) != (c > 0.0) {
            assert!(
                g.abs() <= tol && c.abs() <= tol,
                "output {i}: gpu {g}, cpu {c}"
            );
            flipped += 1;
        }
    }
    let cpu_codes = on_cpu.encode(&split.database.features).unwrap();
    let differing: u32 = cpu_codes
        .iter()
        .zip(longest.database.to_bytes())
        .map(|(a, b)| (a ^ b).count_ones())
        .sum();
    assert_eq!(
        differing, flipped,
        "every differing bit is an output within rounding of 0"
    );
}

/// A `single` run holds one model per length: each length encodes to that model's codes, and
/// a length must be chosen.
#[test]
fn a_single_run_encodes_per_length() {
    let dir = Temp::new("single");
    let split = small_split();
    let cpu = CpuBackend::<f32>::new();
    let model = dir.path("model.safetensors");
    let outcome = train_and_save(&cpu, &split, &config(Mode::Single, vec![8, 16]), &model);
    let files = feature_files(&dir, &split.database);
    for c in &outcome.codes {
        let want = saved_codes(&dir, &c.database, "want.npy");
        assert_files_encode_to(&cpu, &dir, &model, Some(c.bits), &files[..1], &want);
    }
    let e = Encoder::load(&cpu, &model, None).err().unwrap().to_string();
    assert!(
        e.contains("--bits") && e.contains("single") && e.contains("8, 16"),
        "{e}"
    );
    let e = Encoder::load(&cpu, &model, Some(12))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("--bits") && e.contains("12") && e.contains("8, 16"),
        "{e}"
    );
}

/// Every bad input names the file and the field, and leaves no output (an earlier output stays
/// as it was).
#[test]
fn bad_inputs_are_named_and_leave_no_output() {
    let dir = Temp::new("bad");
    let split = small_split();
    let cpu = CpuBackend::<f32>::new();
    let model = dir.path("model.safetensors");
    train_and_save(&cpu, &split, &config(Mode::Nested, vec![8, 16]), &model);
    let out = dir.path("codes.npy");
    std::fs::write(&out, b"earlier output").unwrap();
    let write = |name: &str, shape: Vec<usize>, data: NpyData| -> PathBuf {
        let path = dir.path(name);
        write_npy(&path, &NpyArray { shape, data }).unwrap();
        path
    };
    let encoder = Encoder::load(&cpu, &model, None).unwrap();
    let mut cases: Vec<(PathBuf, Vec<&str>)> = Vec::new();

    let narrow = write("narrow.npy", vec![5, 100], NpyData::F32(vec![0.5; 500]));
    cases.push((narrow, vec!["narrow.npy", "features", "784", "100"]));

    let good = write("good.npy", vec![4, 784], NpyData::U8(vec![9; 4 * 784]));
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path("cut.npy");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    cases.push((cut, vec!["cut.npy", "truncated", "3136 data bytes"]));

    let ints = write("ints.npy", vec![2, 784], NpyData::I32(vec![1; 2 * 784]));
    cases.push((ints, vec!["ints.npy", "features", "dtype", "int32"]));

    let rank1 = write("rank1.npy", vec![784], NpyData::F32(vec![0.0; 784]));
    cases.push((rank1, vec!["rank1.npy", "rank-2"]));

    let mut values = vec![0.25f32; 3 * 784];
    values[784 + 17] = f32::INFINITY;
    let inf = write("inf.npy", vec![3, 784], NpyData::F32(values));
    cases.push((inf, vec!["inf.npy", "item 1, feature 17", "finite"]));

    let no_features = dir.path("labels_only.safetensors");
    let labels = [1u8, 2];
    let view = TensorView::new(Dtype::U8, vec![2], &labels).unwrap();
    std::fs::write(
        &no_features,
        safetensors::serialize([("labels", view)], None).unwrap(),
    )
    .unwrap();
    cases.push((
        no_features,
        vec!["labels_only.safetensors", "features", "labels"],
    ));

    let st_bytes: Vec<u8> = vec![0; 2 * 784 * 2];
    let bf16 = dir.path("bf16.safetensors");
    let view = TensorView::new(Dtype::BF16, vec![2, 784], &st_bytes).unwrap();
    std::fs::write(
        &bf16,
        safetensors::serialize([("features", view)], None).unwrap(),
    )
    .unwrap();
    cases.push((bf16, vec!["bf16.safetensors", "features", "BF16"]));

    cases.push((dir.path("absent.npy"), vec!["absent.npy", "not found"]));

    for (features, needles) in &cases {
        let e = encoder
            .encode_file(features, &out, &mut |_, _| {})
            .unwrap_err()
            .to_string();
        for needle in needles {
            assert!(e.contains(needle), "{}: {e}", features.display());
        }
        assert_eq!(std::fs::read(&out).unwrap(), b"earlier output");
        assert!(
            !dir.names().iter().any(|n| n.contains(".tmp")),
            "{:?}",
            dir.names()
        );
    }

    // Checkpoints that cannot be used: not ours, cut short, not there.
    let foreign = dir.path("foreign.safetensors");
    std::fs::write(
        &foreign,
        std::fs::read(dir.path("bf16.safetensors")).unwrap(),
    )
    .unwrap();
    let e = Encoder::load(&cpu, &foreign, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("foreign.safetensors") && e.contains("format_version"),
        "{e}"
    );
    let model_bytes = std::fs::read(&model).unwrap();
    let cut_model = dir.path("cut_model.safetensors");
    std::fs::write(&cut_model, &model_bytes[..model_bytes.len() / 2]).unwrap();
    let e = Encoder::load(&cpu, &cut_model, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("cut_model.safetensors") && e.contains("truncated"),
        "{e}"
    );
    let empty = dir.path("empty-run");
    std::fs::create_dir(&empty).unwrap();
    let e = Encoder::load(&cpu, &empty, None).err().unwrap().to_string();
    assert!(
        e.contains("empty-run/model.safetensors") && e.contains("not found"),
        "{e}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"earlier output");
}

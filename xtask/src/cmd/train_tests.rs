//! Tests of `cargo xtask train`: flags, limits, divergence and messages, each through `run`.

use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

/// A fresh temp directory, removed on drop.
struct Temp(PathBuf);

impl Temp {
    fn new(tag: &str) -> Temp {
        let p = std::env::temp_dir().join(format!("nhl-xtask-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Temp(p)
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `train` with `flags` plus `--out OUT --backend cpu` (and `--epochs 1` unless `flags`
/// set it) and returns the error text,
/// after checking that no output directory (partial or final) was left.
fn fails(tmp: &Temp, flags: &[&str]) -> String {
    let out = tmp.0.join("run");
    let out_s = out.to_str().unwrap();
    let mut argv = vec!["train", "--backend", "cpu", "--out", out_s];
    if !flags.contains(&"--epochs") {
        argv.extend(["--epochs", "1"]);
    }
    argv.extend_from_slice(flags);
    let err = Cli::try_parse_from(argv)
        .map_err(anyhow::Error::from)
        .and_then(|cli| run(cli.args))
        .unwrap_err();
    assert!(!out.exists(), "{} was left behind", out.display());
    let leftovers: Vec<_> = std::fs::read_dir(&tmp.0)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("run"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    format!("{err:#}")
}

fn idx(rank: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, rank];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(data);
    out
}

#[test]
fn missing_data_dir_file_is_named() {
    let tmp = Temp::new("missing");
    let dir = tmp.0.join("no-such-dir");
    let e = fails(
        &tmp,
        &["--protocol", "fmnist", "--data-dir", dir.to_str().unwrap()],
    );
    assert!(
        e.contains("no-such-dir") && e.contains("t10k-images-idx3-ubyte"),
        "{e}"
    );
}

#[test]
fn truncated_and_wrong_magic_idx_are_named() {
    let tmp = Temp::new("idx");
    let data = tmp.0.join("fm");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("t10k-labels-idx1-ubyte"),
        idx(1, &[6000], &[0; 6000]),
    )
    .unwrap();
    std::fs::write(
        data.join("t10k-images-idx3-ubyte"),
        idx(3, &[6000, 28, 28], &[0; 1000]),
    )
    .unwrap();
    let e = fails(&tmp, &["--data-dir", data.to_str().unwrap()]);
    assert!(
        e.contains("t10k-images-idx3-ubyte") && e.contains("truncated"),
        "{e}"
    );
    std::fs::write(
        data.join("t10k-images-idx3-ubyte"),
        idx(1, &[6000], &[0; 6000]),
    )
    .unwrap();
    let e = fails(&tmp, &["--data-dir", data.to_str().unwrap()]);
    assert!(
        e.contains("t10k-images-idx3-ubyte") && e.contains("magic"),
        "{e}"
    );
}

#[test]
fn bits_must_increase() {
    let tmp = Temp::new("bits");
    let e = fails(&tmp, &["--bits", "16,8"]);
    assert!(e.contains("--bits") && e.contains("16 then 8"), "{e}");
    let e = fails(&tmp, &["--bits", "8,2048"]);
    assert!(e.contains("--bits") && e.contains("2048"), "{e}");
}

#[test]
fn nan_in_user_features_is_named() {
    let tmp = Temp::new("nan");
    let f = tmp.0.join("feat.npy");
    let l = tmp.0.join("lab.npy");
    let mut values = vec![0.5f32; 20 * 4];
    values[4 * 7 + 2] = f32::NAN;
    write_npy(
        &f,
        &NpyArray {
            shape: vec![20, 4],
            data: NpyData::F32(values),
        },
    )
    .unwrap();
    write_npy(
        &l,
        &NpyArray {
            shape: vec![20],
            data: NpyData::I64((0..20).map(|i| i % 2).collect()),
        },
    )
    .unwrap();
    let source = format!("{},{}", f.display(), l.display());
    let e = fails(&tmp, &["--data", &source, "--split-sizes", "5,10"]);
    assert!(
        e.contains("feat.npy") && e.contains("item 7, feature 2"),
        "{e}"
    );
}

/// `n` items of 4 features and the labels `labels(i)`, as a `--data` source.
fn user_data(tmp: &Temp, n: usize, labels: impl Fn(usize) -> i64) -> String {
    let f = tmp.0.join("feat.npy");
    let l = tmp.0.join("lab.npy");
    let values = (0..n * 4).map(|i| (i % 7) as f32 / 7.0).collect();
    write_npy(
        &f,
        &NpyArray {
            shape: vec![n, 4],
            data: NpyData::F32(values),
        },
    )
    .unwrap();
    write_npy(
        &l,
        &NpyArray {
            shape: vec![n],
            data: NpyData::I64((0..n).map(labels).collect()),
        },
    )
    .unwrap();
    format!("{},{}", f.display(), l.display())
}

/// One stray label of 1,000,000 among 300 items would make a million classes: refused before
/// training, naming the file, the item and the label.
#[test]
fn a_stray_large_label_is_refused() {
    let tmp = Temp::new("stray");
    let source = user_data(
        &tmp,
        300,
        |i| if i == 17 { 1_000_000 } else { i as i64 % 3 },
    );
    let e = fails(&tmp, &["--data", &source, "--split-sizes", "50,100"]);
    assert!(
        e.contains("lab.npy")
            && e.contains("item 17 has class 1000000")
            && e.contains("only 300 items"),
        "{e}"
    );
}

#[test]
fn more_classes_than_items_or_none_name_the_flag() {
    let tmp = Temp::new("classes");
    let source = user_data(&tmp, 300, |i| i as i64 % 3);
    let e = fails(
        &tmp,
        &[
            "--data",
            &source,
            "--split-sizes",
            "50,100",
            "--classes",
            "301",
        ],
    );
    assert!(
        e.contains("--classes") && e.contains("more classes than items"),
        "{e}"
    );
    let e = fails(
        &tmp,
        &[
            "--data",
            &source,
            "--split-sizes",
            "50,100",
            "--classes",
            "0",
        ],
    );
    assert!(e.contains("--classes") && e.contains("at least 1"), "{e}");
    let e = fails(
        &tmp,
        &[
            "--data",
            &source,
            "--split-sizes",
            &format!("{},2", usize::MAX),
        ],
    );
    assert!(
        e.contains("split sizes") && e.contains("query + train"),
        "{e}"
    );
}

/// Sizes derived from flags are checked before training: an absurd one cannot overflow, a
/// merely huge one is measured against the machine, and both name the flag.
#[test]
fn sizes_the_machine_cannot_hold_name_the_flag() {
    let tmp = Temp::new("sizes");
    let max = usize::MAX.to_string();
    let e = fails(&tmp, &["--hidden", &max]);
    assert!(e.contains("--hidden") && e.contains("more than"), "{e}");
    // 4 TiB of parameters alone.
    let e = fails(&tmp, &["--hidden", "300000000"]);
    assert!(e.contains("--hidden") && e.contains("TiB"), "{e}");
    let e = fails(&tmp, &["--epochs", &max]);
    assert!(e.contains("--epochs") && e.contains("more than"), "{e}");
}

/// A learning rate that makes the loss explode without a NaN stops the run, naming the
/// flag and its value.
#[test]
fn a_diverging_run_is_stopped() {
    let tmp = Temp::new("diverge");
    let e = fails(&tmp, &["--lr", "1e6", "--method", "dpn", "--hidden", "16"]);
    assert!(
        e.contains("training diverged") && e.contains("--lr (now 1000000)"),
        "{e}"
    );
}

/// Identical features for every item can only give one code: the collapse is caught at the
/// evaluation and the cause named.
#[test]
fn collapsed_codes_are_an_error() {
    let tmp = Temp::new("collapse");
    let f = tmp.0.join("same.npy");
    let l = tmp.0.join("lab.npy");
    let n = 40;
    write_npy(
        &f,
        &NpyArray {
            shape: vec![n, 3],
            data: NpyData::F32([0.25, 0.5, 0.75].repeat(n)),
        },
    )
    .unwrap();
    write_npy(
        &l,
        &NpyArray {
            shape: vec![n],
            data: NpyData::I64((0..n as i64).map(|i| i % 2).collect()),
        },
    )
    .unwrap();
    let source = format!("{},{}", f.display(), l.display());
    let flags = [
        "--data",
        &source,
        "--split-sizes",
        "10,20",
        "--bits",
        "8,16",
        "--hidden",
        "8",
    ];
    let e = fails(&tmp, &flags);
    assert!(
        e.contains("every 8-bit code is the same")
            && e.contains("codes collapsed")
            && e.contains("same features")
            && e.contains("--on-collapse keep"),
        "{e}"
    );
    // Kept, the run is written whole and lists every collapsed length.
    let out = tmp.0.join("kept");
    let out_s = out.to_str().unwrap();
    let mut argv = vec!["train", "--backend", "cpu", "--epochs", "1", "--out", out_s];
    argv.extend(flags);
    argv.extend(["--on-collapse", "keep"]);
    run(Cli::try_parse_from(argv).unwrap().args).unwrap();
    let metrics = nhl_train::report::read_metrics(&out.join("metrics.json")).unwrap();
    assert_eq!(metrics.collapsed_lengths, vec![8, 16]);
    assert!(out.join("model.safetensors").is_file());
}

/// Messages that name the real cause, not a neighbouring one.
#[test]
fn messages_name_the_real_cause() {
    let tmp = Temp::new("causes");
    // float64 features beyond float32's range: the value as given, not "inf".
    let f = tmp.0.join("f64.npy");
    let mut values = vec![0.5f64; 30 * 2];
    values[2 * 4 + 1] = 1e300;
    write_npy(
        &f,
        &NpyArray {
            shape: vec![30, 2],
            data: NpyData::F64(values),
        },
    )
    .unwrap();
    let labels = user_data(&tmp, 30, |i| i as i64 % 2);
    let l = labels.split_once(',').unwrap().1;
    let e = fails(
        &tmp,
        &[
            "--data",
            &format!("{},{l}", f.display()),
            "--split-sizes",
            "5,10",
        ],
    );
    assert!(
        e.contains("f64.npy")
            && e.contains("item 4, feature 1 is 1e300")
            && e.contains("float32")
            && !e.contains("inf"),
        "{e}"
    );

    // Features scaled by 1e37: their scale, not --lr.
    let big = tmp.0.join("big.npy");
    write_npy(
        &big,
        &NpyArray {
            shape: vec![30, 2],
            data: NpyData::F32(
                (0..60)
                    .map(|i| (f64::from(i) * 1e37 / 60.0) as f32)
                    .collect(),
            ),
        },
    )
    .unwrap();
    let e = fails(
        &tmp,
        &[
            "--data",
            &format!("{},{l}", big.display()),
            "--split-sizes",
            "5,10",
        ],
    );
    assert!(
        e.contains("features reach") && e.contains("scale the features") && !e.contains("--lr"),
        "{e}"
    );

    // A directory given as a features file.
    let dir = tmp.0.join("features-dir");
    std::fs::create_dir_all(&dir).unwrap();
    let e = fails(
        &tmp,
        &[
            "--data",
            &format!("{},{l}", dir.display()),
            "--split-sizes",
            "5,10",
        ],
    );
    assert!(
        e.contains("features-dir: is a directory, not a .npy file") && !e.contains("not found"),
        "{e}"
    );
    let st = tmp.0.join("d.safetensors");
    std::fs::create_dir_all(&st).unwrap();
    let e = fails(
        &tmp,
        &["--data", st.to_str().unwrap(), "--split-sizes", "5,10"],
    );
    assert!(e.contains("d.safetensors: is a directory"), "{e}");
    // A file given as --data-dir.
    let e = fails(
        &tmp,
        &[
            "--protocol",
            "fmnist",
            "--data-dir",
            &f.display().to_string(),
        ],
    );
    assert!(e.contains("f64.npy: is a file, not a directory"), "{e}");

    // Too small a training set names the flags that exist.
    let e = fails(&tmp, &["--data", &labels, "--split-sizes", "5,1"]);
    assert!(
        e.contains("at least 2 items") && e.contains("--split-sizes or --train-data"),
        "{e}"
    );
}

#[test]
fn an_existing_run_is_not_overwritten() {
    let tmp = Temp::new("exists");
    let out = tmp.0.join("done");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("metrics.json"), "{}").unwrap();
    let cli = Cli::try_parse_from(["train", "--out", out.to_str().unwrap()]).unwrap();
    let e = format!("{:#}", run(cli.args).unwrap_err());
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(
        std::fs::read_to_string(out.join("metrics.json")).unwrap(),
        "{}"
    );
}

#[test]
fn bad_loss_params_list_the_methods_parameters() {
    let tmp = Temp::new("lossparam");
    let e = fails(&tmp, &["--method", "dbdh", "--loss-param", "gamma=2"]);
    assert!(
        e.contains("dbdh has no parameter \"gamma\"")
            && e.contains("alpha in [0, inf)")
            && e.contains("p in {1, 2}"),
        "{e}"
    );
    let e = fails(&tmp, &["--method", "dbdh", "--loss-param", "p=3"]);
    assert!(e.contains("p = 3 is outside {1, 2}"), "{e}");
    let e = fails(&tmp, &["--loss-param", "lambda"]);
    assert!(e.contains("NAME=VALUE"), "{e}");
    let e = fails(
        &tmp,
        &["--loss-param", "lambda=1", "--loss-param", "lambda=2"],
    );
    assert!(e.contains("more than once"), "{e}");
    let e = fails(&tmp, &["--method", "sgd"]);
    assert!(e.contains("hashnet") && e.contains("mdsh"), "{e}");
}

/// The training configuration that `xtask train FLAGS` parses to.
fn parsed(flags: &[&str]) -> TrainConfig {
    let argv = ["train"].iter().chain(flags).copied();
    config(&Cli::try_parse_from(argv).unwrap().args).unwrap()
}

/// `xtask train FLAG VALUE` fails, naming the value and listing the `expected` names.
fn refuses(flag: &str, value: &str, expected: &str) {
    let tmp = Temp::new("refused");
    let e = fails(&tmp, &[flag, value]);
    assert!(e.contains(value) && e.contains(expected), "{e}");
}

/// The centre flags: each name parses and `metrics.json` records it under the flag's own name (so
/// the file reads like the command line), the default is the documented one, and an unknown value
/// is refused with the list of names.
#[test]
fn centres_and_class_order_are_named_choices() {
    let flags = [
        (
            "--centres",
            "centres",
            "diverse",
            &["diverse", "diverse-plain", "prefix", "independent"][..],
        ),
        (
            "--class-order",
            "class_order",
            "auto",
            &["auto", "dissimilar", "labels"][..],
        ),
    ];
    for (flag, key, default, names) in flags {
        let json = |args: &[&str]| serde_json::to_value(parsed(args)).unwrap()[key].clone();
        assert_eq!(json(&[]), default, "{flag}");
        for name in names {
            assert_eq!(json(&[flag, name]), *name, "{flag} {name}");
        }
        let list = format!(
            "{} or {}",
            names[..names.len() - 1].join(", "),
            names[names.len() - 1]
        );
        refuses(flag, "hadamard", &list);
    }
    let defaults = parsed(&[]);
    assert_eq!(
        (defaults.centres, defaults.class_order),
        (Centres::Diverse, ClassOrder::Auto)
    );
}

#[test]
fn length_scale_is_a_named_choice() {
    refuses("--length-scale", "per-byte", "auto, plain or per-bit");
    let defaults = parsed(&["--bits", "8,16,64"]);
    assert_eq!(defaults.length_scale, LengthScale::Auto);
    // Auto: per bit for DSH alone.
    for method in Method::ALL {
        let per_bit = method == Method::Dsh;
        assert_eq!(
            defaults.length_scale.per_bit_for(method),
            per_bit,
            "{method}"
        );
    }
    assert_eq!(
        defaults.length_scale.factors(Method::Dsh, &defaults.bits),
        [1.0, 0.5, 0.125]
    );
    assert_eq!(
        defaults.length_scale.factors(Method::Dch, &defaults.bits),
        [1.0; 3]
    );
    let per_bit = parsed(&["--length-scale", "per-bit", "--bits", "8,16,64"]);
    assert_eq!(per_bit.length_scale, LengthScale::PerBit);
    assert_eq!(
        per_bit.length_scale.factors(Method::Dhn, &per_bit.bits),
        [1.0, 0.5, 0.125]
    );
    let plain = parsed(&["--length-scale", "plain", "--bits", "8,16,64"]);
    assert_eq!(
        plain.length_scale.factors(Method::Dsh, &plain.bits),
        [1.0; 3]
    );
    // Recorded under the flag's own name, so metrics.json reads like the command line.
    assert_eq!(
        serde_json::to_value(&per_bit).unwrap()["length_scale"],
        "per-bit"
    );
    assert_eq!(
        serde_json::to_value(&defaults).unwrap()["length_scale"],
        "auto"
    );
}

//! `cargo xtask train`: load a data set, train the nested hash codes, evaluate every length and
//! write a run directory.
//!
//! The run directory appears whole or not at all (see `nhl_train::run_dir`): on any error,
//! nothing is left behind, except a resumable directory when the run was interrupted (see
//! `train_dir`: checkpoints after every epoch, SIGINT/SIGTERM, `--resume`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use nhl_index::eval::Labels;
use nhl_index::npy::{write_npy, NpyArray, NpyData};
use nhl_kernels::cpu::CpuBackend;
use nhl_kernels::gpu::GpuBackend;
use nhl_kernels::{Backend, HashingOps};
use nhl_train::checkpoint::{self, CheckpointMeta};
use nhl_train::config::{Centres, ClassOrder, LengthScale, Method, Mode, TrainConfig};
use nhl_train::data::fingerprint::FileFingerprint;
use nhl_train::data::{
    load_protocol, load_user, protocol_files, Dataset, Protocol, Split, UserSource, UserSplit,
    INPUT_SCALING,
};
use nhl_train::divergence::collapsed_lengths;
use nhl_train::limits::{physical_memory, Footprint, Placement};
use nhl_train::losses::params::{parse_assignment, LossParams};
use nhl_train::metrics::{evaluate_lengths, LengthMetrics, PRECISION_KS};
use nhl_train::report::{
    format_table, write_metrics, write_svg, NumMap, RunMetrics, ValidationRecord,
};
use nhl_train::run_dir::{default_out_dir, RunDir};

use super::train_dir::{StopFlag, TrainDir};
use crate::backend_choice::BackendChoice;
use crate::names::{
    parse_centres, parse_class_order, parse_length_scale, parse_method, parse_mode,
};
use crate::out_path::restore_set_aside;
use nhl_train::error::TrainError;
use nhl_train::run_loop::{train_resumable, Control};
use nhl_train::train_state::TrainState;
use nhl_train::trainer::{validate, validate_config, Checks, LiveUnits, Progress, TrainOutcome};

/// `QUERY,TRAIN`.
fn parse_sizes(s: &str) -> Result<(usize, usize), String> {
    let parsed = s
        .split_once(',')
        .and_then(|(q, t)| Some((q.trim().parse().ok()?, t.trim().parse().ok()?)));
    parsed.ok_or_else(|| format!("{s:?}: expected QUERY,TRAIN, two counts"))
}

const USER_DATA_HELP: &str = "\
User data (instead of --protocol):
  A SOURCE is DATA.safetensors (tensors `features` and `labels`) or FEATURES.npy,LABELS.npy.
  Features: [n, dim] float32/float16/float64, or uint8 (scaled by 1/255); all finite.
  Labels: class indices [n] (uint8/int32/int64) or a 0/1 multi-hot matrix [n, C]
  (uint8/int32/int64/float32); items sharing a class are relevant to each other.
  --data SOURCE --split-sizes Q,T   the first Q items are queries, the next T train, and the
                                    database is every item after the queries (it holds the train set)
  --query-data S --train-data S --database-data S   one source per set";

/// Train nested hash codes and write a run directory.
#[derive(clap::Args, Clone, Debug, serde::Serialize, serde::Deserialize)]
#[command(after_long_help = USER_DATA_HELP)]
pub struct Args {
    /// Benchmark protocol: fmnist-t10k (embedded, no download) or fmnist (70,000 images).
    #[arg(long, default_value = "fmnist-t10k", conflicts_with_all = ["data", "query_data"])]
    pub protocol: Protocol,
    /// Directory of the Fashion-MNIST IDX files (`NAME.gz` or plain `NAME`); default: the
    /// embedded t10k pair, or /usr/share/datasets/fashion-mnist for `fmnist`.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// User data cut by --split-sizes (see --help).
    #[arg(long, value_name = "SOURCE", requires = "split_sizes", conflicts_with_all = ["query_data", "data_dir"])]
    pub data: Option<UserSource>,
    /// With --data: QUERY,TRAIN item counts.
    #[arg(long, value_name = "QUERY,TRAIN", value_parser = parse_sizes, requires = "data")]
    pub split_sizes: Option<(usize, usize)>,
    /// User queries (see --help).
    #[arg(long, value_name = "SOURCE", requires_all = ["train_data", "database_data"], conflicts_with = "data_dir")]
    pub query_data: Option<UserSource>,
    /// User training items.
    #[arg(long, value_name = "SOURCE", requires = "query_data")]
    pub train_data: Option<UserSource>,
    /// User database items.
    #[arg(long, value_name = "SOURCE", requires = "query_data")]
    pub database_data: Option<UserSource>,
    /// Number of classes of user class-index labels (default: the largest label + 1).
    #[arg(long, value_name = "C")]
    pub classes: Option<usize>,
    /// Base loss: csq, dpn, dsh, dhn, dbdh, dpsh, hashnet, dch, dtsh, lcdsh, shcir or mdsh.
    #[arg(long, default_value = "csq", value_parser = parse_method)]
    pub method: Method,
    /// A hyper-parameter of the loss, NAME=VALUE (repeatable); unset ones keep their defaults
    /// (docs/METHOD.md section 5). An unknown name or a value out of range lists the method's.
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_assignment)]
    pub loss_param: Vec<(String, f64)>,
    /// NHL mode: full, nested, distill, adaptive, or single (one model per length).
    #[arg(long, default_value = "full", value_parser = parse_mode)]
    pub mode: Mode,
    /// Code lengths, strictly increasing, each 1..=1024; the nested head is as wide as the last.
    #[arg(long, value_delimiter = ',', default_value = "8,16,32,64,128")]
    pub bits: Vec<usize>,
    /// Passes over the training set.
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    pub epochs: usize,
    /// Mini-batch size.
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    pub batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = TrainConfig::default().lr)]
    pub lr: f32,
    /// Backbone hidden width.
    #[arg(long, default_value_t = TrainConfig::default().hidden)]
    pub hidden: usize,
    /// Seed of initialisation, shuffling and random targets.
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    pub seed: u64,
    /// Weight of the cascade distillation term (modes distill and full).
    /// Default: the method's (1, or 0.1 for dhn, dbdh and dpsh; docs/METHOD.md Q16).
    #[arg(long)]
    pub distill_weight: Option<f32>,
    /// Also evaluate mAP@ALL every N epochs and report each length's best (the reference's
    /// reporting, selected on the queries) beside the final figures; 0 = off.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub eval_every: usize,
    /// Hash centres of CSQ, SHCIR and MDSH: diverse (the default: one centre per class for the
    /// longest code, the shorter centres its prefixes, every bit of the codes its own class
    /// partition), diverse-plain (the previous version's diverse rows, one bit constant), prefix
    /// (the protocol's rule: class c on Hadamard row c) or independent (the reference's, drawn
    /// per length). docs/METHOD.md 5.1.
    #[arg(long, default_value = "diverse", value_parser = parse_centres)]
    pub centres: Centres,
    /// Which class takes which place in the diverse and prefix centres: dissimilar (the classes
    /// whose training means lie farthest apart get the shortest code's opposite centres), labels
    /// (class c takes place c, as the protocol states the rule) or auto (the default: dissimilar
    /// for CSQ, labels for SHCIR and MDSH).
    #[arg(long, default_value = "auto", value_parser = parse_class_order)]
    pub class_order: ClassOrder,
    /// Each length's base loss in the nested modes: plain (as the loss defines it, the reference's
    /// sum), per-bit (length b_k's loss times b_1 / b_k; docs/METHOD.md section 4) or auto (the
    /// default: per-bit for DSH, plain for the other losses).
    #[arg(long, default_value = "auto", value_parser = parse_length_scale)]
    pub length_scale: LengthScale,
    /// Replicate the reference's leftover hash-layer gradient (docs/METHOD.md Q3) in the weighted modes.
    #[arg(long)]
    pub reference_grad_leak: bool,
    /// When every code of a length is one value for all items (collapsed codes): stop with an
    /// error that names the length and what to change, or keep the run: write it, warn, and list
    /// the lengths in metrics.json (`collapsed_lengths`), as a sweep over seeds or losses needs.
    #[arg(long, value_enum, default_value_t = OnCollapse::Stop)]
    #[serde(default)]
    pub on_collapse: OnCollapse,
    /// auto (a hardware GPU, else the CPU), cpu, or gpu (wgpu, software adapters allowed).
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Output directory; must not exist or be empty. Default: `runs/<UTC YYYYmmdd-HHMMSS>`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the interrupted run in RUN_DIR (with the flags it was started with); it ends as
    /// the run would have ended without the interruption.
    #[arg(long, value_name = "RUN_DIR", exclusive = true)]
    pub resume: Option<PathBuf>,
}

/// What `cargo xtask train` does with collapsed codes (`--on-collapse`).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum OnCollapse {
    /// Stop with an error at the evaluation that finds them, writing nothing.
    #[default]
    Stop,
    /// Finish and write the run; warn and record the collapsed lengths.
    Keep,
}

/// The training settings the flags ask for; `--loss-param` names given twice are an error.
fn config(args: &Args) -> anyhow::Result<TrainConfig> {
    let mut loss_params = BTreeMap::new();
    for (name, value) in &args.loss_param {
        if loss_params.insert(name.clone(), *value).is_some() {
            bail!("--loss-param {name} is given more than once");
        }
    }
    Ok(TrainConfig {
        method: args.method,
        mode: args.mode,
        bits: args.bits.clone(),
        hidden: args.hidden,
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
        distill_weight: args
            .distill_weight
            .unwrap_or_else(|| args.method.default_distill_weight()),
        reference_grad_leak: args.reference_grad_leak,
        eval_every: args.eval_every,
        centres: args.centres,
        class_order: args.class_order,
        length_scale: args.length_scale,
        loss_params,
        ..TrainConfig::default()
    })
}

/// Loads the split the flags name.
fn load_split(args: &Args) -> anyhow::Result<Split> {
    let split = match (&args.data, &args.query_data) {
        (Some(source), _) => {
            let (query, train) = args
                .split_sizes
                .context("--data needs --split-sizes QUERY,TRAIN")?;
            load_user(
                &UserSplit::Sizes {
                    source: source.clone(),
                    query,
                    train,
                },
                args.classes,
            )?
        }
        (None, Some(query)) => {
            let (Some(train), Some(database)) = (&args.train_data, &args.database_data) else {
                bail!("--query-data needs --train-data and --database-data");
            };
            load_user(
                &UserSplit::Files {
                    query: query.clone(),
                    train: train.clone(),
                    database: database.clone(),
                },
                args.classes,
            )?
        }
        (None, None) => load_protocol(args.protocol, args.data_dir.as_deref())?,
    };
    Ok(split)
}

/// The data files the flags name (none for the embedded protocol), fingerprinted.
fn fingerprint_inputs(args: &Args) -> anyhow::Result<Vec<FileFingerprint>> {
    let files: Vec<PathBuf> = match (&args.data, &args.query_data) {
        (Some(source), _) => source.files().into_iter().map(Path::to_path_buf).collect(),
        (None, Some(query)) => [
            Some(query),
            args.train_data.as_ref(),
            args.database_data.as_ref(),
        ]
        .into_iter()
        .flatten()
        .flat_map(UserSource::files)
        .map(Path::to_path_buf)
        .collect(),
        (None, None) => protocol_files(args.protocol, args.data_dir.as_deref())?,
    };
    Ok(files
        .iter()
        .map(|file| FileFingerprint::of(file))
        .collect::<Result<_, _>>()?)
}

/// One indicatif bar per epoch (finished bars stay on screen), showing the running loss.
struct Bars {
    current: Option<(usize, usize, ProgressBar)>,
}

impl Bars {
    fn update(&mut self, p: &Progress) {
        let same = matches!(&self.current, Some((m, e, _)) if *m == p.model && *e == p.epoch);
        if !same {
            if let Some((_, _, bar)) = self.current.take() {
                bar.finish();
            }
            let bar = ProgressBar::new(p.batches as u64);
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} batches, loss {msg} ({elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            let model = if p.models > 1 {
                format!("model {}/{} ", p.model + 1, p.models)
            } else {
                String::new()
            };
            bar.set_prefix(format!("{model}epoch {:>3}/{}", p.epoch + 1, p.epochs));
            self.current = Some((p.model, p.epoch, bar));
        }
        if let Some((_, _, bar)) = &self.current {
            bar.set_position(p.batch as u64);
            bar.set_message(format!("{:.5}", p.running_loss));
        }
    }

    fn finish(&mut self) {
        if let Some((_, _, bar)) = self.current.take() {
            bar.finish();
        }
    }
}

/// What a training run resumes from, stops on and checkpoints into.
struct Steering<'a> {
    resume: Option<&'a TrainState>,
    stop: &'a StopFlag,
    checks: Checks,
    dir: &'a mut TrainDir,
}

/// Trains on `backend` with progress bars.
fn train_on<B: HashingOps<Elem = f32>>(
    backend: &B,
    split: &Split,
    config: &TrainConfig,
    steering: Steering<'_>,
) -> anyhow::Result<TrainOutcome> {
    let mut bars = Bars { current: None };
    let Steering {
        resume,
        stop,
        checks,
        dir,
    } = steering;
    let mut sink = |state: &TrainState| dir.checkpoint(state);
    let mut control = Control {
        stop: &|| stop.raised(),
        checkpoint: Some(&mut sink),
    };
    let outcome = train_resumable(
        backend,
        split,
        config,
        checks,
        resume,
        &mut control,
        &mut |p| bars.update(p),
    );
    bars.finish();
    Ok(outcome?)
}

/// Trains on `gpu`, or on the CPU backend without one, and returns the outcome with the backend's
/// name and adapter.
fn train_with_backend(
    gpu: Option<GpuBackend>,
    split: &Split,
    config: &TrainConfig,
    steering: Steering<'_>,
) -> anyhow::Result<(TrainOutcome, &'static str, String)> {
    match gpu {
        Some(gpu) => {
            let adapter = gpu.adapter().to_string();
            eprintln!("backend: gpu, {adapter}");
            Ok((train_on(&gpu, split, config, steering)?, "gpu", adapter))
        }
        None => {
            let cpu = CpuBackend::<f32>::new();
            let adapter = cpu.name();
            eprintln!("backend: {adapter}");
            Ok((train_on(&cpu, split, config, steering)?, "cpu", adapter))
        }
    }
}

/// int64 `[n]` class indices, or uint8 `[n, C]` multi-hot rows.
fn labels_array(set: &Dataset) -> NpyArray {
    match &set.labels {
        Labels::Single(classes) => NpyArray {
            shape: vec![classes.len()],
            data: NpyData::I64(classes.iter().map(|&c| i64::from(c)).collect()),
        },
        Labels::Multi { .. } => NpyArray {
            shape: vec![set.len(), set.n_classes],
            data: NpyData::U8(set.label_matrix().iter().map(|&y| y as u8).collect()),
        },
    }
}

/// Writes everything a run records into `dir`.
fn write_run(
    dir: &RunDir,
    split: &Split,
    config: &TrainConfig,
    outcome: &TrainOutcome,
    metrics: &RunMetrics,
) -> anyhow::Result<()> {
    write_metrics(&dir.file("metrics.json"), metrics)?;
    write_svg(&dir.file("report.svg"), metrics)?;
    checkpoint::save(
        &dir.file("model.safetensors"),
        &CheckpointMeta {
            bits: config.bits.clone(),
            method: config.method,
            mode: config.mode,
            hidden: config.hidden,
            seed: config.seed,
            loss_params: metrics.loss_params.clone(),
            input_dim: split.train.dim,
            input_scaling: INPUT_SCALING,
        },
        outcome
            .params
            .iter()
            .map(|p| (p.name.as_str(), p.shape, p.data.as_slice())),
    )?;
    if config.mode == Mode::Single {
        // Independent models: the codes of different lengths do not nest.
        for c in &outcome.codes {
            c.query
                .write_npy(&dir.file(&format!("query_codes_{}.npy", c.bits)))?;
            c.database
                .write_npy(&dir.file(&format!("database_codes_{}.npy", c.bits)))?;
        }
    } else {
        // The shorter codes are prefixes of the longest, so only the longest is stored.
        let longest = outcome.codes.last().context("training produced no codes")?;
        longest.query.write_npy(&dir.file("query_codes.npy"))?;
        longest
            .database
            .write_npy(&dir.file("database_codes.npy"))?;
    }
    write_npy(&dir.file("query_labels.npy"), &labels_array(&split.query))?;
    write_npy(
        &dir.file("database_labels.npy"),
        &labels_array(&split.database),
    )?;
    Ok(())
}

/// Runs `cargo xtask train`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (dir, args, state) = match &args.resume {
        Some(dir) => {
            restore_set_aside("--resume", dir)?;
            let (dir, args, state) = TrainDir::resume(dir)?;
            (dir, args, Some(state))
        }
        None => {
            validate_config(&config(&args)?)?;
            let out = args
                .out
                .clone()
                .unwrap_or_else(|| default_out_dir(SystemTime::now()));
            // Checked first, so that a taken --out fails before any work.
            restore_set_aside("--out", &out)?;
            (TrainDir::fresh(&out, &args)?, args, None)
        }
    };
    let target = dir.target();
    let mut dir = Some(dir);
    let result = train_and_write(&args, state.as_ref(), &mut dir);
    if let Err(e) = &result {
        if let Some(TrainError::Interrupted { .. }) = e.downcast_ref::<TrainError>() {
            bail!(
                "{e}\nresume with: cargo xtask train --resume {}",
                target.display()
            );
        }
        if let Some(dir) = dir.take() {
            dir.abandon();
        }
        if let Some(TrainError::Collapsed { .. }) = e.downcast_ref::<TrainError>() {
            bail!("{e}\nto write the run with the collapsed codes anyway: --on-collapse keep");
        }
    }
    result
}

/// Loads the data, trains (from `state` when resuming), evaluates, and writes the run into
/// `dir`, which it takes when the outputs are written.
fn train_and_write(
    args: &Args,
    state: Option<&TrainState>,
    dir: &mut Option<TrainDir>,
) -> anyhow::Result<()> {
    let config = config(args)?;
    let loss_params = LossParams::resolve(config.method, &config.loss_params)?.to_map();
    let split = load_split(args)?;
    validate(&config, &split)?;
    if state.is_none() {
        // What a resumed run checks its data against (`TrainDir::resume`).
        dir.as_mut()
            .context("the run directory is gone")?
            .record_inputs(fingerprint_inputs(args)?)?;
    }
    eprintln!(
        "{}: {} queries, {} train, {} database, {} features, {} classes",
        split.name,
        split.query.len(),
        split.train.len(),
        split.database.len(),
        split.train.dim,
        split.train.n_classes()
    );
    let gpu = args.backend.gpu()?;
    let placement = match gpu {
        Some(_) => Placement::Device,
        None => Placement::Host,
    };
    Footprint::of(&config, &split).check(placement, physical_memory())?;
    let stop = StopFlag::install()?;
    let steering = Steering {
        resume: state,
        stop: &stop,
        checks: Checks {
            collapse: args.on_collapse == OnCollapse::Stop,
        },
        dir: dir.as_mut().context("the run directory is gone")?,
    };
    let (outcome, backend, adapter) = train_with_backend(gpu, &split, &config, steering)?;
    let collapsed = collapsed_lengths(&outcome.codes, &split);
    let lengths = evaluate(&outcome, &split)?;
    let mut metrics = RunMetrics {
        protocol: split.name.clone(),
        method: config.method,
        mode: config.mode,
        backend: backend.into(),
        adapter,
        seed: config.seed,
        epochs: config.epochs,
        bits: Vec::new(),
        map: NumMap::default(),
        map_tie_aware: NumMap::default(),
        precision_at: NumMap::default(),
        train_seconds: outcome.train_seconds,
        epoch_seconds: outcome.epoch_seconds.clone(),
        loss_per_epoch: outcome.loss_per_epoch.clone(),
        n_query: Some(split.query.len()),
        n_train: Some(split.train.len()),
        n_database: Some(split.database.len()),
        config: Some(config.clone()),
        loss_params,
        validations: outcome
            .validations
            .iter()
            .map(|v| ValidationRecord {
                epoch: v.epoch,
                map: NumMap(v.map.clone()),
            })
            .collect(),
        map_best_of_validations: (!outcome.validations.is_empty())
            .then(|| NumMap(outcome.best_validation_map())),
        backbone_live_units: outcome.live_units.clone(),
        dominance_weights_per_epoch: outcome.weights_per_epoch.clone(),
        collapsed_lengths: collapsed.clone(),
    };
    metrics.set_lengths(&lengths);
    let out = dir.take().context("the run directory is gone")?.finish()?;
    write_run(&out, &split, &config, &outcome, &metrics)?;
    let path = out.commit()?;
    println!("{}", format_table(&lengths));
    if let Some(best) = &metrics.map_best_of_validations {
        let cells: Vec<String> = best.0.iter().map(|(b, m)| format!("{b}: {m:.4}")).collect();
        println!(
            "best mAP@ALL over {} validations (reference-style, selected on the queries): {}",
            outcome.validations.len(),
            cells.join(", ")
        );
    }
    for units in &outcome.live_units {
        report_live_units(units, outcome.live_units.len() > 1);
    }
    report_weights(&config.bits, &outcome.weights_per_epoch);
    for bits in collapsed {
        eprintln!(
            "warning: every {bits}-bit code is the same for all query and database items: the \
             codes collapsed and rank every item alike (kept by --on-collapse keep)"
        );
    }
    println!("training: {:.2} s", outcome.train_seconds);
    println!("wrote {}", path.display());
    Ok(())
}

/// The weighted modes' mean dominance weights of the first and the last epoch, one per length.
fn report_weights(bits: &[usize], per_epoch: &[Vec<f64>]) {
    let (Some(first), Some(last)) = (per_epoch.first(), per_epoch.last()) else {
        return;
    };
    let cells = |w: &[f64]| -> String {
        let cells: Vec<String> = bits
            .iter()
            .zip(w)
            .map(|(b, w)| format!("{b}: {w:.3}"))
            .collect();
        cells.join(", ")
    };
    println!(
        "dominance weights, mean over the batches of epoch 1: {}; of epoch {}: {}",
        cells(first),
        per_epoch.len(),
        cells(last)
    );
}

/// One line on how much of a model's backbone is alive, and a warning when most of it died.
fn report_live_units(units: &LiveUnits, per_length: bool) {
    let model = if per_length {
        format!("the {}-bit model's backbone", units.bits)
    } else {
        "backbone".to_string()
    };
    let share = 100.0 * units.live as f64 / units.hidden.max(1) as f64;
    println!(
        "{model}: {} of {} hidden units fire for some training item ({share:.0}%)",
        units.live, units.hidden
    );
    if units.few() {
        eprintln!(
            "warning: {model} lost most of its ReLU units during training; the codes rest on the \
             {} left and will vary from seed to seed (docs/METHOD.md Q16)",
            units.live
        );
    }
}

/// mAP@ALL, tie-aware mAP and P@{1,10,100} of every length of the outcome.
fn evaluate(outcome: &TrainOutcome, split: &Split) -> anyhow::Result<Vec<LengthMetrics>> {
    let views = outcome
        .codes
        .iter()
        .map(|c| (c.bits, c.query.view(), c.database.view()));
    Ok(evaluate_lengths(
        views,
        &split.query.labels,
        &split.database.labels,
        &PRECISION_KS,
    )?)
}

#[cfg(test)]
#[path = "train_tests.rs"]
mod tests;

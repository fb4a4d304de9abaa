//! Dumps what the PyTorch twin (`tools/torch_twin/`) compares against: the Rust trainer's initial
//! weights, its first epoch's batch order, and for the first `--steps` steps of a single-length
//! CSQ run each step's loss, the first and the last step's gradients, and the parameters before
//! the last step and after it.
//!
//! ```text
//! cargo run --release --example torch_twin_dump -- --protocol fmnist --bits 8 --seed 0 \
//!     --steps 100 --out DIR
//! ```
//!
//! The steps are driven here from the library's public parts (model, fused CSQ objective, tape,
//! Adam) so that every step's gradient can be read; before writing anything the dump checks that
//! one epoch of this loop gives bit for bit the parameters of `nhl_train::trainer::train` with
//! `--epochs 1`, so it is the trainer's own step and not a look-alike.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nhl_autograd::Tape;
use nhl_kernels::cpu::CpuBackend;
use nhl_kernels::rng::SplitMix64;
use nhl_kernels::{Backend, Shape};
use nhl_train::checkpoint::{save, CheckpointMeta};
use nhl_train::config::{Centres, Method, Mode, TrainConfig};
use nhl_train::data::{load_protocol, Protocol, Split, INPUT_SCALING};
use nhl_train::losses::params::LossParams;
use nhl_train::losses::{BatchContext, LengthLoss};
use nhl_train::model::NamedParam;
use nhl_train::model::NestedHashModel;
use nhl_train::optim::Adam;
use nhl_train::targets::target_rows;
use nhl_train::trainer::train;

/// The trainer's shuffle stream (`SHUFFLE_STREAM` in `crates/nhl-train/src/trainer.rs`).
const SHUFFLE_STREAM: u64 = 0x5348_5546_464c_4521;

struct Args {
    protocol: Protocol,
    bits: usize,
    seed: u64,
    steps: usize,
    out: PathBuf,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        protocol: Protocol::Fmnist,
        bits: 8,
        seed: 0,
        steps: 100,
        out: PathBuf::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--protocol" => args.protocol = value.parse()?,
            "--bits" => args.bits = value.parse().context("--bits")?,
            "--seed" => args.seed = value.parse().context("--seed")?,
            "--steps" => args.steps = value.parse().context("--steps")?,
            "--out" => args.out = PathBuf::from(value),
            _ => bail!("unknown flag {flag}; expected --protocol, --bits, --seed, --steps, --out"),
        }
    }
    if args.out.as_os_str().is_empty() {
        bail!("--out DIR is required");
    }
    Ok(args)
}

/// The model and optimiser of one single-length run, stepped as the trainer steps them.
struct Run<'a> {
    be: &'a CpuBackend<f32>,
    model: NestedHashModel<CpuBackend<f32>>,
    adam: Adam<CpuBackend<f32>>,
    loss: LengthLoss<CpuBackend<f32>>,
    features: <CpuBackend<f32> as Backend>::Buf,
    /// Multi-hot labels of the training set (`N x C`).
    labels: <CpuBackend<f32> as Backend>::Buf,
    rows: Vec<u32>,
    bits: usize,
}

impl<'a> Run<'a> {
    fn new(be: &'a CpuBackend<f32>, split: &Split, config: &TrainConfig) -> anyhow::Result<Self> {
        let train = &split.train;
        let bits = config.bits[0];
        let model = NestedHashModel::new(be, train.dim, config.hidden, bits, config.seed)?;
        let adam = Adam::new(be, &model.params, config.lr, config.weight_decay)?;
        let params = LossParams::resolve(config.method, &config.loss_params)?;
        let loss = LengthLoss::new(be, &params, bits, train, config.seed, None)?;
        let features = be.upload(&train.features, Shape::new(train.len(), train.dim))?;
        let labels = be.upload(
            &train.label_matrix(),
            Shape::new(train.len(), train.n_classes()),
        )?;
        Ok(Self {
            be,
            model,
            adam,
            loss,
            features,
            labels,
            rows: target_rows(&train.labels),
            bits,
        })
    }

    /// One step on `indices`; returns the loss and the gradients before the update.
    fn step(&mut self, indices: &[u32]) -> anyhow::Result<(f64, Vec<NamedParam>)> {
        let be = self.be;
        let idx = be.upload_idx(indices)?;
        let rows: Vec<u32> = indices.iter().map(|&i| self.rows[i as usize]).collect();
        let rows = be.upload_idx(&rows)?;
        let tape = Tape::new(be);
        let x = tape.constant(be.gather_rows(&self.features, &idx)?);
        let fwd = self.model.forward(&tape, &x)?;
        let labels = be.gather_rows(&self.labels, &idx)?;
        let ctx = BatchContext {
            idx: &idx,
            target_rows: &rows,
            labels: &labels,
            bank: None,
            epoch: 0,
        };
        let Some(fused) = self.loss.fused(be, fwd.codes.value(), self.bits, &ctx) else {
            bail!("CSQ has a fused objective");
        };
        let (loss, d) = fused?;
        let grads = tape.backward_from(&[(&fwd.codes, d)])?;
        self.model.params.accumulate(be, &grads)?;
        let grads = self
            .model
            .params
            .iter()
            .map(|(_, p)| {
                let g = p.grad.as_ref().context("every parameter has a gradient")?;
                let s = be.shape(g);
                Ok(NamedParam {
                    name: p.name.clone(),
                    shape: [s.rows, s.cols],
                    data: be.download(g)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.adam.step(be, &mut self.model.params)?;
        Ok((f64::from(be.download(&loss)?[0]), grads))
    }

    fn params(&self) -> anyhow::Result<Vec<NamedParam>> {
        Ok(self.model.export(self.be, "")?)
    }
}

fn write(path: &Path, config: &TrainConfig, params: &[NamedParam]) -> anyhow::Result<()> {
    // The backbone weight is `[hidden, input_dim]`.
    let input_dim = params
        .iter()
        .find(|p| p.name == "backbone.weight")
        .map(|p| p.shape[1])
        .context("no backbone.weight among the parameters")?;
    let meta = CheckpointMeta {
        bits: config.bits.clone(),
        method: config.method,
        mode: config.mode,
        hidden: config.hidden,
        seed: config.seed,
        loss_params: LossParams::resolve(config.method, &config.loss_params)?.to_map(),
        input_dim,
        input_scaling: INPUT_SCALING,
    };
    save(
        path,
        &meta,
        params
            .iter()
            .map(|p| (p.name.as_str(), p.shape, p.data.as_slice())),
    )?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let split = load_protocol(args.protocol, None)?;
    let config = TrainConfig {
        mode: Mode::Single,
        method: Method::Csq,
        bits: vec![args.bits],
        epochs: 1,
        seed: args.seed,
        // The twin's centres (`twin.csq_centres`) and this loop's are the reference's per-length
        // ones, so the trainer it is checked against takes them too, whatever the length.
        centres: Centres::Independent,
        ..TrainConfig::default()
    };
    let be = CpuBackend::<f32>::new();
    let n = split.train.len();
    let mut shuffle = SplitMix64::new(args.seed ^ SHUFFLE_STREAM);
    let mut orders = Vec::new();
    let epochs = args.steps.div_ceil(n.div_ceil(config.batch_size)).max(1);
    for _ in 0..epochs {
        let mut order: Vec<u32> = (0..n as u32).collect();
        shuffle.shuffle(&mut order);
        orders.push(order);
    }

    // This loop is the trainer's step: one epoch of it must equal `train` for one epoch.
    let mut check = Run::new(&be, &split, &config)?;
    for batch in orders[0].chunks(config.batch_size) {
        check.step(batch)?;
    }
    let trained = train(&be, &split, &config, &mut |_| {})?;
    let prefix = format!("b{}.", args.bits);
    for p in check.params()? {
        let Some(t) = trained
            .params
            .iter()
            .find(|t| t.name == format!("{prefix}{}", p.name))
        else {
            bail!("the trainer has no parameter {prefix}{}", p.name);
        };
        if t.data
            .iter()
            .map(|v| v.to_bits())
            .ne(p.data.iter().map(|v| v.to_bits()))
        {
            bail!("{}: this loop's epoch differs from the trainer's", p.name);
        }
    }

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut run = Run::new(&be, &split, &config)?;
    write(&args.out.join("init.safetensors"), &config, &run.params()?)?;
    let batches = orders
        .iter()
        .flat_map(|o| o.chunks(config.batch_size))
        .take(args.steps);
    let mut losses = Vec::new();
    let (mut before_last, mut grad_last) = (Vec::new(), Vec::new());
    for (step, batch) in batches.enumerate() {
        before_last = run.params()?;
        let (loss, grads) = run.step(batch)?;
        losses.push(loss);
        if step == 0 {
            write(&args.out.join("grad0.safetensors"), &config, &grads)?;
        }
        grad_last = grads;
    }
    write(
        &args.out.join("before_last.safetensors"),
        &config,
        &before_last,
    )?;
    write(&args.out.join("grad_last.safetensors"), &config, &grad_last)?;
    write(&args.out.join("after.safetensors"), &config, &run.params()?)?;
    let order: Vec<String> = orders[0].iter().map(u32::to_string).collect();
    let record = format!(
        "{{\"bits\": {}, \"seed\": {}, \"steps\": {}, \"losses\": {:?}, \"order0\": [{}]}}\n",
        args.bits,
        args.seed,
        losses.len(),
        losses,
        order.join(", ")
    );
    std::fs::write(args.out.join("steps.json"), record)
        .with_context(|| format!("writing {}", args.out.join("steps.json").display()))?;
    println!("{}: {} steps", args.out.display(), losses.len());
    Ok(())
}

//! `cargo xtask encode --model RUN_DIR|model.safetensors --data SOURCE --out CODES.npy [--bits B]
//! [--backend auto|cpu|gpu] [--batch-size N]`: hash new items with a trained model.
//!
//! The features are memory-mapped and encoded a batch at a time, and the codes streamed into a
//! temporary file renamed to `--out` at the end (see `nhl_train::encoder`): memory is bounded by
//! the batch, not the file, and on any error nothing is left at `--out`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use nhl_kernels::cpu::CpuBackend;
use nhl_kernels::Backend;
use nhl_train::encoder::{EncodedFile, Encoder, ENCODE_BATCH};

use crate::backend_choice::BackendChoice;

const ENCODE_HELP: &str = "\
Codes: uint8 [n, ceil(B / 8)], bit j of an item in byte j / 8 at position j % 8 (docs/PROTOCOL.md,
\"Layout\"); the b-bit code of a nested model is the first b / 8 bytes of its longest code.
The codes equal those of the training run (database_codes.npy) bit for bit when the same backend
computes them; another backend may flip a bit whose output is within rounding of 0.
A model trained with --mode single holds one model per length, whose codes do not nest: --bits
picks one (one pass per length).";

/// Encode features into packed codes with a trained model.
#[derive(clap::Args, Debug)]
#[command(after_long_help = ENCODE_HELP)]
pub struct Args {
    /// The trained model: a run directory of `cargo xtask train`, or its model.safetensors.
    #[arg(long, value_name = "RUN_DIR|model.safetensors")]
    pub model: PathBuf,
    /// Features: FEATURES.npy [n, dim], or DATA.safetensors with a `features` tensor; uint8,
    /// float16, float32 or float64, read as the model's training read its data (uint8 / 255).
    #[arg(long, value_name = "SOURCE")]
    pub data: PathBuf,
    /// The codes file to write (replaced if it exists; written whole or not at all).
    #[arg(long, value_name = "CODES.npy")]
    pub out: PathBuf,
    /// Code length: one of the lengths the model was trained for. Default: the longest, which
    /// holds the shorter ones as prefixes; required for a --mode single model of several lengths.
    #[arg(long, value_name = "B")]
    pub bits: Option<usize>,
    /// auto (a hardware GPU, else the CPU), cpu, or gpu (wgpu, software adapters allowed).
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Items per forward pass (bounds memory; does not change the codes).
    #[arg(long, value_name = "N", default_value_t = ENCODE_BATCH)]
    pub batch_size: usize,
}

/// Encodes on `backend` with a progress bar.
fn encode_on<B: Backend<Elem = f32>>(backend: &B, args: &Args) -> anyhow::Result<EncodedFile> {
    let mut encoder = Encoder::load(backend, &args.model, args.bits)?;
    encoder.set_batch(args.batch_size)?;
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template("encode [{bar:30}] {pos}/{len} items ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    let encoded = encoder.encode_file(&args.data, &args.out, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    Ok(encoded?)
}

/// Runs `cargo xtask encode`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let start = Instant::now();
    let (encoded, backend) = match args.backend.gpu()? {
        Some(gpu) => {
            let name = format!("gpu, {}", gpu.adapter());
            (encode_on(&gpu, &args), name)
        }
        None => {
            let cpu = CpuBackend::<f32>::new();
            let name = cpu.name();
            (encode_on(&cpu, &args), name)
        }
    };
    let encoded = encoded.with_context(|| {
        format!(
            "encoding {} with {}",
            args.data.display(),
            args.model.display()
        )
    })?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "wrote {}: {} codes of {} bits ({} bytes each) in {seconds:.2} s, {:.0} items/s ({backend})",
        args.out.display(),
        encoded.items,
        encoded.bits,
        encoded.code_bytes,
        encoded.items as f64 / seconds.max(1e-9),
    );
    Ok(())
}

//! `cargo xtask <command>`: the commands users run, one file per command under `cmd/`, the
//! benchmarks under `bench/`, and the few helpers they share beside them.

mod allocator;
mod backend_choice;
mod bench;
mod cmd;
mod cpu_clock;
mod names;

use clap::{Parser, Subcommand};

/// Nested Hash Layer: train multi-length hash codes, evaluate them, search them.
#[derive(Parser)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train nested hash codes (default: fmnist-t10k, CSQ, full NHL).
    Train(cmd::train::Args),
    /// Recompute the metrics of a finished run from its saved codes.
    Eval(cmd::eval::Args),
    /// Hamming k-nearest-neighbour or range search over packed codes in .npy or FAISS files.
    Search(cmd::search::Args),
    /// Write packed codes as a FAISS binary index file (IndexBinaryFlat, or IndexBinaryIDMap with --ids).
    Export(cmd::export::Args),
    /// Hash new items with a trained model: features (.npy or safetensors) to packed codes.
    Encode(cmd::encode::Args),
    /// Benchmarks: `search` and `train` (the criterion benches run with `cargo bench`).
    Bench(bench::Args),
}

fn main() -> anyhow::Result<()> {
    allocator::keep_freed_buffers();
    match Cli::parse().command {
        Command::Train(args) => cmd::train::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Search(args) => cmd::search::run(args),
        Command::Export(args) => cmd::export::run(args),
        Command::Encode(args) => cmd::encode::run(args),
        Command::Bench(args) => bench::run(args),
    }
}

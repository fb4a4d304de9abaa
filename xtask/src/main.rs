//! `cargo xtask <command>`: the commands users run. One file per command.

mod allocator;
mod bench;
mod eval;
mod search;
mod train;

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
    Train(train::Args),
    /// Recompute the metrics of a finished run from its saved codes.
    Eval(eval::Args),
    /// Hamming k-nearest-neighbour or range search over packed codes in .npy files.
    Search(search::Args),
    /// Benchmarks: `search`, `train`, `kernels`.
    Bench(bench::Args),
}

fn main() -> anyhow::Result<()> {
    allocator::keep_freed_buffers();
    match Cli::parse().command {
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Search(args) => search::run(args),
        Command::Bench(args) => bench::run(args),
    }
}

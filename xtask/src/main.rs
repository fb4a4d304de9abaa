//! `cargo xtask <command>`: the commands users run, one file per command under `cmd/`, the
//! benchmarks under `bench/`, and the few helpers they share beside them.

mod allocator;
mod backend_choice;
mod bench;
mod cmd;
mod cpu_clock;
mod names;
mod out_path;

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
    /// Benchmarks: `search`, `train` and `encode` (the criterion benches run with `cargo bench`).
    Bench(bench::Args),
}

fn main() -> anyhow::Result<()> {
    allocator::keep_freed_buffers();
    let command = Cli::parse().command;
    // The command runs on a worker of rayon's pool, not on the main thread: every parallel op of
    // the CPU backend then splits its work with the other workers from where it is, where from
    // outside the pool each op would be handed to the pool while this thread slept, a wake-up
    // and a sleep per op (a training run took 16% less wall time and 12% less CPU time in the
    // pool, with the same bits).
    rayon::scope(|_| match command {
        Command::Train(args) => cmd::train::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Search(args) => cmd::search::run(args),
        Command::Export(args) => cmd::export::run(args),
        Command::Encode(args) => cmd::encode::run(args),
        Command::Bench(args) => bench::run(args),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The `bench` help names its benchmarks in its first line; they must be exactly the
    /// subcommands that exist.
    #[test]
    fn bench_help_names_exactly_the_benches_that_exist() {
        let cli = Cli::command();
        let bench = cli.find_subcommand("bench").expect("a bench command");
        let about = bench.get_about().expect("an about line").to_string();
        let before_note = about.split('(').next().unwrap_or_default();
        let listed: Vec<&str> = before_note.split('`').skip(1).step_by(2).collect();
        let real: Vec<&str> = bench
            .get_subcommands()
            .map(|c| c.get_name())
            .filter(|&name| name != "help")
            .collect();
        assert_eq!(listed, real, "{about}");
    }

    #[test]
    fn zero_threads_are_refused_where_they_are_parsed() {
        for argv in [
            &["xtask", "bench", "search", "--threads", "1,0"][..],
            &[
                "xtask",
                "search",
                "--database",
                "d",
                "--queries",
                "q",
                "--out",
                "o",
                "--threads",
                "0",
            ],
        ] {
            let e = Cli::try_parse_from(argv)
                .err()
                .expect("refused")
                .to_string();
            assert!(e.contains("--threads") && e.contains("at least 1"), "{e}");
        }
    }
}

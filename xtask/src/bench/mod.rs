//! `cargo xtask bench <what>`: side-by-side measurements that print the ratios the README quotes.

mod encode;
mod search;
mod train;

use clap::Subcommand;

/// Which benchmark to run.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Hamming kNN queries per second on random codes (1M and 10M codes, 64 and 128 bits).
    Search(Box<search::Args>),
    /// Training seconds per epoch of `nested`, `full` and `single` runs side by side.
    Train(train::Args),
    /// Encoding items/s and peak memory on a generated 1M-item features file, against the
    /// first layer's FLOP bound.
    Encode(encode::Args),
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.what {
        What::Search(a) => search::run(*a),
        What::Train(a) => train::run(a),
        What::Encode(a) => encode::run(a),
    }
}

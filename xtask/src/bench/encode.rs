//! `cargo xtask bench encode --model RUN_DIR`: how fast a trained model encodes a large features
//! file on the CPU, with how much memory, against the bound the first layer's arithmetic sets.
//!
//! It writes an `--n x input_dim` float32 `.npy` of uniform `[0, 1)` values into a scratch folder
//! (deleted at the end, also on error), then for each thread count (a rayon pool of that size):
//! - encodes the file into a codes file beside it, as `cargo xtask encode` does (memory-mapped,
//!   a batch at a time), reporting items/s and the peak resident memory of the encode alone
//!   (Linux: `VmHWM` of `/proc/self/status`, reset through `/proc/self/clear_refs` first);
//! - times the CPU backend's matrix product at the first layer's shape (`batch x input_dim` by
//!   `input_dim x hidden`), whose sustained GFLOP/s over the first layer's `2 input_dim hidden`
//!   FLOPs per item bounds the items/s any encoder of this model reaches on this machine (the
//!   second layer adds `2 hidden B` more, which the whole model's bound counts too).
//!
//! The turns alternate (thread counts, then encode and product) `--repeat` times and each figure
//! keeps its fastest turn, so a slow spell of a shared machine does not pick the winner.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use nhl_index::npy::{npy_header_bytes, NpyDtype};
use nhl_kernels::cpu::CpuBackend;
use nhl_kernels::rng::SplitMix64;
use nhl_kernels::{Backend, Shape};
use nhl_train::encoder::{Encoder, ENCODE_BATCH};

use crate::cpu_clock::timed;

/// Options of `cargo xtask bench encode`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The trained model: a run directory of `cargo xtask train`, or its model.safetensors.
    #[arg(long, value_name = "RUN_DIR|model.safetensors")]
    model: PathBuf,
    /// Items in the generated features file (float32, the model's input width).
    #[arg(long, default_value_t = 1_000_000)]
    n: usize,
    /// Folder for the generated features and codes (a subfolder, removed at the end).
    #[arg(long, value_name = "DIR", default_value_os_t = std::env::temp_dir())]
    scratch: PathBuf,
    /// Thread counts (rayon pool sizes); default: 1 and all.
    #[arg(long, value_delimiter = ',')]
    threads: Vec<usize>,
    /// Items per forward pass.
    #[arg(long, default_value_t = ENCODE_BATCH)]
    batch_size: usize,
    /// Turns per measurement; the fastest is reported.
    #[arg(long, default_value_t = 2)]
    repeat: usize,
}

/// The scratch folder, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("could not remove {}: {e}", self.0.display());
        }
    }
}

/// Writes `n x dim` float32 values uniform in `[0, 1)` as a `.npy` file, a block at a time.
fn write_features(path: &Path, n: usize, dim: usize) -> anyhow::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    out.write_all(&npy_header_bytes(NpyDtype::F32, &[n, dim])?)?;
    let mut rng = SplitMix64::new(0x656e_636f_6465);
    let mut block = Vec::with_capacity(4096 * dim * 4);
    for start in (0..n).step_by(4096) {
        block.clear();
        for _ in 0..(n - start).min(4096) * dim {
            block.extend_from_slice(&(rng.uniform(0.0, 1.0) as f32).to_le_bytes());
        }
        out.write_all(&block)?;
    }
    out.flush()?;
    Ok(())
}

/// `(VmRSS, VmHWM)` of this process in KiB (Linux).
fn rss_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Resets the peak resident memory (`VmHWM`) to the current one; false where Linux does not
/// let us.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A rate measured by the wall clock and by the CPU time of all threads of the process: on a
/// shared machine the first includes other processes' turns, the second does not.
#[derive(Clone, Copy, Default)]
struct Rate {
    per_s: f64,
    per_cpu_s: Option<f64>,
}

impl Rate {
    /// `amount` done in `wall` seconds with `cpu` CPU-seconds.
    fn of(amount: f64, wall: f64, cpu: Option<f64>) -> Rate {
        Rate {
            per_s: amount / wall,
            per_cpu_s: cpu.map(|c| amount / c),
        }
    }

    /// The faster of each figure.
    fn max(self, other: Rate) -> Rate {
        Rate {
            per_s: self.per_s.max(other.per_s),
            per_cpu_s: match (self.per_cpu_s, other.per_cpu_s) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

/// One thread count's best figures.
#[derive(Clone, Copy, Default)]
struct Best {
    /// Items encoded.
    items: Rate,
    /// Resident memory before the encode and its peak during it, in KiB.
    rss: Option<(u64, u64)>,
    /// Matrix-product GFLOP.
    gflop: Rate,
}

/// The sustained GFLOP rate of `reps` products `x w^T` (`m x k` by `n x k`), timed after one
/// warm-up product.
fn matmul_rate(
    cpu: &CpuBackend<f32>,
    m: usize,
    k: usize,
    n: usize,
    reps: usize,
) -> anyhow::Result<Rate> {
    let values = |seed, len| -> Vec<f32> {
        let mut rng = SplitMix64::new(seed);
        (0..len).map(|_| rng.uniform(-1.0, 1.0) as f32).collect()
    };
    let x = cpu.upload(&values(1, m * k), Shape::new(m, k))?;
    let w = cpu.upload(&values(2, n * k), Shape::new(n, k))?;
    cpu.matmul(&x, false, &w, true, None)?;
    let (done, wall, cpu_s) = timed(|| -> anyhow::Result<()> {
        for _ in 0..reps {
            cpu.matmul(&x, false, &w, true, None)?;
        }
        Ok(())
    });
    done?;
    Ok(Rate::of(2.0 * (m * k * n * reps) as f64 / 1e9, wall, cpu_s))
}

/// `x` with no decimals, or `n/a`.
fn whole(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |v| format!("{v:.0}"))
}

/// `part / of` as a percentage, or `n/a`.
fn share(part: Option<f64>, of: Option<f64>) -> String {
    part.zip(of)
        .map_or("n/a".into(), |(p, o)| format!("{:.0}%", 100.0 * p / o))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.repeat >= 1, "--repeat: must be at least 1");
    let threads = if args.threads.is_empty() {
        let all = std::thread::available_parallelism().map_or(1, |n| n.get());
        if all > 1 {
            vec![1, all]
        } else {
            vec![1]
        }
    } else {
        args.threads.clone()
    };
    let cpu = CpuBackend::<f32>::new();
    let mut encoder = Encoder::load(&cpu, &args.model, None)?;
    encoder.set_batch(args.batch_size)?;
    let (dim, hidden, bits) = (encoder.input_dim(), encoder.meta().hidden, encoder.bits());
    let scratch = Scratch(
        args.scratch
            .join(format!("nhl-bench-encode-{}", std::process::id())),
    );
    std::fs::create_dir_all(&scratch.0)
        .with_context(|| format!("creating {}", scratch.0.display()))?;
    let features = scratch.0.join("features.npy");
    let codes = scratch.0.join("codes.npy");
    let gib = (args.n * dim * 4) as f64 / (1u64 << 30) as f64;
    eprintln!(
        "writing {} ({} x {dim} float32, {gib:.2} GiB)",
        features.display(),
        args.n
    );
    write_features(&features, args.n, dim)
        .with_context(|| format!("writing {}", features.display()))?;

    // Every pool lives to the end: a pool's threads leave /proc/self/task when it is dropped,
    // taking their CPU time out of the process total that `timed` differences.
    let pools = threads
        .iter()
        .map(|&count| rayon::ThreadPoolBuilder::new().num_threads(count).build())
        .collect::<Result<Vec<_>, _>>()?;
    let mut best = vec![Best::default(); threads.len()];
    for turn in 0..args.repeat {
        for (t, (&count, pool)) in threads.iter().zip(&pools).enumerate() {
            let before = reset_peak().then(rss_kib).flatten();
            let (encoded, wall, cpu_s) =
                timed(|| pool.install(|| encoder.encode_file(&features, &codes, &mut |_, _| {})));
            let encoded = encoded?;
            let peak = before.zip(rss_kib()).map(|((rss, _), (_, hwm))| (rss, hwm));
            let items = Rate::of(encoded.items as f64, wall, cpu_s);
            let gflop = pool.install(|| matmul_rate(&cpu, args.batch_size, dim, hidden, 20))?;
            eprintln!(
                "turn {}: {count} thread(s): {:.0} items/s ({} per CPU-second), matmul {:.1} \
                 GFLOP/s ({} per CPU-second)",
                turn + 1,
                items.per_s,
                whole(items.per_cpu_s),
                gflop.per_s,
                whole(gflop.per_cpu_s),
            );
            let b = &mut best[t];
            b.items = b.items.max(items);
            b.gflop = b.gflop.max(gflop);
            b.rss = match (b.rss, peak) {
                (Some((r0, p0)), Some((r1, p1))) => Some((r0.max(r1), p0.max(p1))),
                (old, new) => new.or(old),
            };
        }
    }

    // FLOPs per item: the first layer, and the whole model with the hash layer.
    let first = 2.0 * (dim * hidden) as f64;
    let model = first + 2.0 * (hidden * encoder.hash_width()) as f64;
    println!(
        "encode {} x {dim} float32 ({gib:.2} GiB) with {} ({bits}-bit codes, hidden {hidden}), \
         batch {}; {:.2} MFLOP per item in the first layer, {:.2} in the whole model",
        args.n,
        encoder.path().display(),
        args.batch_size,
        first / 1e6,
        model / 1e6
    );
    println!(
        "\nBy the wall clock (bound: matmul FLOP rate / FLOPs per item):\n\n\
         | threads | items/s | RSS before -> peak (MiB) | matmul GFLOP/s | first-layer bound \
         (items/s) | share of it | share of the whole model's bound |\n\
         |---|---|---|---|---|---|---|"
    );
    for (b, &count) in best.iter().zip(&threads) {
        let rss = b.rss.map_or("n/a".to_string(), |(r, p)| {
            format!("{:.1} -> {:.1}", r as f64 / 1024.0, p as f64 / 1024.0)
        });
        let bound = b.gflop.per_s * 1e9 / first;
        println!(
            "| {count} | {:.0} | {rss} | {:.1} | {bound:.0} | {} | {} |",
            b.items.per_s,
            b.gflop.per_s,
            share(Some(b.items.per_s), Some(bound)),
            share(Some(b.items.per_s * model), Some(b.gflop.per_s * 1e9)),
        );
    }
    println!(
        "\nBy the CPU time of all threads (what other processes on the machine do not change):\n\n\
         | threads | items per CPU-second | matmul GFLOP per CPU-second | share of the first \
         layer's bound | share of the whole model's |\n\
         |---|---|---|---|---|"
    );
    for (b, &count) in best.iter().zip(&threads) {
        let flop_rate = b.gflop.per_cpu_s.map(|g| g * 1e9);
        println!(
            "| {count} | {} | {} | {} | {} |",
            whole(b.items.per_cpu_s),
            b.gflop
                .per_cpu_s
                .map_or("n/a".into(), |g| format!("{g:.1}")),
            share(b.items.per_cpu_s.map(|i| i * first), flop_rate),
            share(b.items.per_cpu_s.map(|i| i * model), flop_rate),
        );
    }
    Ok(())
}

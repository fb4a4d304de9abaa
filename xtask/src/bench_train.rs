//! `cargo xtask bench train`: training seconds per epoch of every mode, measured side by side in
//! one process on one backend, with the ratios the method promises and the reference's times.

use anyhow::Context;
use nhl_kernels::cpu::CpuBackend;
use nhl_kernels::Backend;
use nhl_train::config::{Mode, TrainConfig};
use nhl_train::data::{load_protocol, Protocol, Split};
use nhl_train::trainer::{train, Progress};

use crate::search::process_cpu_ns;
use crate::train::BackendChoice;

/// Seconds per epoch of the PyTorch reference on the `fmnist` protocol with 2 CPU threads
/// (NHL-SPEC section 11, as measured by the author): `nested` and `full`.
const REFERENCE_NESTED_EPOCH: f64 = 0.5;
const REFERENCE_FULL_EPOCH: f64 = 1.2;

/// Options of `cargo xtask bench train`.
#[derive(clap::Args)]
pub struct Args {
    /// Data protocol (`fmnist` needs `apt-get install dataset-fashion-mnist`).
    #[arg(long, default_value = "fmnist-t10k")]
    protocol: Protocol,
    /// Epochs per mode; the first epoch is reported separately (warm-up) when there are several.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Backend: `cpu`, `gpu` (software adapters allowed) or `auto`.
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendChoice,
    /// Modes to time, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "nested,distill,adaptive,full,single"
    )]
    modes: Vec<String>,
    /// Rounds: every mode is trained once per round, the modes taking turns, so that a slow
    /// spell of a shared machine falls on all of them; each mode reports its fastest round.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

fn parse_mode(s: &str) -> anyhow::Result<Mode> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).with_context(|| {
        format!("--modes: unknown mode {s:?} (expected nested, distill, adaptive, full or single)")
    })
}

/// One mode's timing: wall seconds per epoch, and CPU seconds per epoch of all threads where the
/// platform reports them.
struct Timing {
    mode: Mode,
    wall: f64,
    cpu: Option<f64>,
}

/// Process CPU time read at progress reports, per model: `(first_ns, first_step, last_ns,
/// last_step)`. The clock is read at the end of every epoch (the warm-up epoch's end starts the
/// span), plus at the first report of a one-epoch run, so the reads stay out of the steps.
#[derive(Default)]
struct CpuClock {
    spans: Vec<Option<(u64, usize, u64, usize)>>,
}

impl CpuClock {
    fn observe(&mut self, p: &Progress) {
        if self.spans.len() <= p.model {
            self.spans.resize(p.model + 1, None);
        }
        let epoch_end = p.batch == p.batches;
        let one_epoch_start = p.epochs == 1 && self.spans[p.model].is_none();
        if !(epoch_end || one_epoch_start) {
            return;
        }
        let Some(now) = process_cpu_ns() else {
            return;
        };
        let step = p.epoch * p.batches + p.batch;
        let span = self.spans[p.model].get_or_insert((now, step, now, step));
        (span.2, span.3) = (now, step);
    }

    /// CPU seconds of one epoch (summed over models): each model's CPU time per step between
    /// its first and last reading, times the steps per epoch.
    fn per_epoch(&self, batches: usize) -> Option<f64> {
        let mut total = 0.0;
        for span in &self.spans {
            let (t0, s0, t1, s1) = (*span)?;
            if s1 <= s0 {
                return None;
            }
            total += (t1 - t0) as f64 * 1e-9 / (s1 - s0) as f64 * batches as f64;
        }
        (!self.spans.is_empty()).then_some(total)
    }
}

/// One training run of `mode`: mean seconds per epoch, skipping the first epoch when there are
/// several.
fn time_mode<B: Backend<Elem = f32>>(
    backend: &B,
    split: &Split,
    epochs: usize,
    mode: Mode,
) -> anyhow::Result<Timing> {
    let config = TrainConfig {
        mode,
        epochs,
        ..TrainConfig::default()
    };
    let mut clock = CpuClock::default();
    let mut batches = 0;
    let outcome = train(backend, split, &config, &mut |p| {
        batches = p.batches;
        clock.observe(p);
    })?;
    let timed = if outcome.epoch_seconds.len() > 1 {
        &outcome.epoch_seconds[1..]
    } else {
        &outcome.epoch_seconds[..]
    };
    let wall = timed.iter().sum::<f64>() / timed.len() as f64;
    let cpu = clock.per_epoch(batches);
    eprintln!("{mode:?}: {wall:.3} s/epoch");
    Ok(Timing { mode, wall, cpu })
}

/// Every mode's timing in every round (`rounds[r][m]` for `modes[m]`), the modes taking turns.
fn time_rounds<B: Backend<Elem = f32>>(
    backend: &B,
    args: &Args,
    modes: &[Mode],
) -> anyhow::Result<Vec<Vec<Timing>>> {
    let split = load_protocol(args.protocol, None)?;
    (0..args.rounds)
        .map(|r| {
            eprintln!("round {} of {}", r + 1, args.rounds);
            modes
                .iter()
                .map(|&mode| time_mode(backend, &split, args.epochs, mode))
                .collect()
        })
        .collect()
}

/// Runs the benchmark and prints the table.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.epochs == 0 {
        anyhow::bail!("--epochs must be at least 1");
    }
    let modes = args
        .modes
        .iter()
        .map(|m| parse_mode(m))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if args.rounds == 0 {
        anyhow::bail!("--rounds must be at least 1");
    }
    let gpu = args.backend.gpu()?;
    let (name, rounds) = match &gpu {
        Some(gpu) => (gpu.adapter().to_string(), time_rounds(gpu, &args, &modes)?),
        None => {
            let cpu = CpuBackend::<f32>::new();
            (cpu.name(), time_rounds(&cpu, &args, &modes)?)
        }
    };
    // Each mode's fastest round, in wall time and (separately) in CPU time.
    let times: Vec<Timing> = (0..modes.len())
        .map(|m| {
            let runs = rounds.iter().map(|round| &round[m]);
            Timing {
                mode: modes[m],
                wall: runs.clone().map(|t| t.wall).fold(f64::INFINITY, f64::min),
                cpu: runs
                    .map(|t| t.cpu)
                    .collect::<Option<Vec<f64>>>()
                    .map(|c| c.into_iter().fold(f64::INFINITY, f64::min)),
            }
        })
        .collect();
    let of = |m: Mode| times.iter().find(|t| t.mode == m);
    println!(
        "training seconds per epoch, protocol {}, backend {name}, fastest of {} rounds",
        args.protocol, args.rounds
    );
    println!(
        "{:<10} {:>12} {:>12} {:>14} {:>14}",
        "mode", "s/epoch", "x nested", "CPU s/epoch", "reference s"
    );
    for t in &times {
        let ratio = of(Mode::Nested).map_or("-".to_string(), |n| format!("{:.2}", t.wall / n.wall));
        let cpu = t.cpu.map_or("-".to_string(), |c| format!("{c:.3}"));
        let reference = match t.mode {
            Mode::Nested => format!("{REFERENCE_NESTED_EPOCH:.2}"),
            Mode::Full => format!("{REFERENCE_FULL_EPOCH:.2}"),
            _ => "-".to_string(),
        };
        let label = if t.mode == Mode::Single {
            "single x5".to_string()
        } else {
            format!("{:?}", t.mode).to_lowercase()
        };
        println!(
            "{label:<10} {:>12.3} {ratio:>12} {cpu:>14} {reference:>14}",
            t.wall
        );
    }
    if let (Some(full), Some(single)) = (of(Mode::Full), of(Mode::Single)) {
        let cpu = match (single.cpu, full.cpu) {
            (Some(s), Some(f)) => format!(" ({:.2}x in CPU time of all threads)", s / f),
            _ => String::new(),
        };
        println!(
            "five single-length models / one full run: {:.2}x{cpu}",
            single.wall / full.wall
        );
        let index = |m: Mode| modes.iter().position(|&x| x == m);
        if let (Some(f), Some(s)) = (index(Mode::Full), index(Mode::Single)) {
            let per_round: Vec<String> = rounds
                .iter()
                .map(|round| format!("{:.2}x", round[s].wall / round[f].wall))
                .collect();
            println!("  in each round: {}", per_round.join(", "));
        }
    }
    Ok(())
}

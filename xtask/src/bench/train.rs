//! `cargo xtask bench train`: training seconds per epoch of every method and mode, measured side
//! by side in one process on one backend, with the ratios the method promises and the reference's
//! times.
//!
//! Every (method, mode) model (and each of the five models of `single`) is built up front, then
//! they take turns an epoch at a time: epoch 1 of every model, then epoch 2 of every model, and
//! so on. A slow spell of a shared machine then falls on all of them alike, and the ratios (single
//! / full of a method, one method's full epoch against the first method's) are taken within each
//! turn, from epochs run seconds apart. A second table splits a step of each into its phases
//! ([`nhl_train::step_phases`]), which shows where `full` spends the time a single-length step
//! does not.

use nhl_kernels::cpu::CpuBackend;
use nhl_kernels::{Backend, HashingOps};
use nhl_train::config::{Method, Mode, TrainConfig};
use nhl_train::data::{load_protocol, Protocol, Split};
use nhl_train::step_phases::{Phase, StepPhases};
use nhl_train::trainer::EpochRunner;

use crate::backend_choice::BackendChoice;
use crate::cpu_clock::process_cpu_ns;
use crate::names::{parse_method, parse_mode};

/// Seconds per epoch of the PyTorch reference on the `fmnist` protocol with 2 CPU threads: the
/// training seconds of 30 epochs in docs/METHOD.md section 11 (20 s `nested`, 36 s `full`) / 30.
const REFERENCE_NESTED_EPOCH: f64 = 20.0 / 30.0;
const REFERENCE_FULL_EPOCH: f64 = 36.0 / 30.0;

/// Options of `cargo xtask bench train`.
#[derive(clap::Args)]
pub struct Args {
    /// Data protocol (`fmnist` needs `apt-get install dataset-fashion-mnist`).
    #[arg(long, default_value = "fmnist-t10k")]
    protocol: Protocol,
    /// Epochs per model; the first is a warm-up and not reported when there are several.
    #[arg(long, default_value_t = 6)]
    epochs: usize,
    /// Backend: `cpu`, `gpu` (software adapters allowed) or `auto`.
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendChoice,
    /// Modes to time, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "nested,distill,adaptive,full,single",
        value_parser = parse_mode
    )]
    modes: Vec<Mode>,
    /// Base losses to time, comma-separated; the others' `full` epochs are compared with the
    /// first's (e.g. `--method csq,dhn`).
    #[arg(long, value_delimiter = ',', default_value = "csq", value_parser = parse_method)]
    method: Vec<Method>,
}

/// One epoch of one mode (summed over the models of `single`): wall seconds, and CPU seconds of
/// all threads where the platform reports them.
#[derive(Clone, Copy)]
struct EpochTime {
    wall: f64,
    cpu: Option<f64>,
}

/// The median of `values` (not empty).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// What [`time_interleaved`] measured of each mode.
struct ModeTimes {
    /// Every epoch after the warm-up.
    epochs: Vec<EpochTime>,
    /// Where the steps of those epochs spent their time (for `single`, its five models' steps).
    phases: StepPhases,
}

/// The epochs of every (method, mode) in `runs`, taking turns epoch by epoch.
fn time_interleaved<B: HashingOps<Elem = f32>>(
    backend: &B,
    split: &Split,
    epochs: usize,
    runs: &[(Method, Mode)],
) -> anyhow::Result<Vec<ModeTimes>> {
    let configs: Vec<TrainConfig> = runs
        .iter()
        .map(|&(method, mode)| TrainConfig {
            method,
            mode,
            epochs,
            distill_weight: method.default_distill_weight(),
            ..TrainConfig::default()
        })
        .collect();
    // Per mode its models: one nested model, or one per length for `single`.
    let mut runners = configs
        .iter()
        .map(|config| {
            let lengths: Vec<Vec<usize>> = if config.mode == Mode::Single {
                config.bits.iter().map(|&b| vec![b]).collect()
            } else {
                vec![config.bits.clone()]
            };
            lengths
                .iter()
                .map(|bits| Ok(EpochRunner::new(backend, split, config, bits)?))
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut times = vec![Vec::with_capacity(epochs); runs.len()];
    for epoch in 0..epochs {
        for (((method, mode), models), out) in runs.iter().zip(&mut runners).zip(&mut times) {
            let mut sum = EpochTime {
                wall: 0.0,
                cpu: Some(0.0),
            };
            for model in models.iter_mut() {
                // The CPU clock is read between epochs, never during one.
                let before = process_cpu_ns();
                let (wall, _) = model.epoch()?;
                let cpu = before
                    .zip(process_cpu_ns())
                    .map(|(a, b)| b.saturating_sub(a) as f64 * 1e-9);
                sum.wall += wall;
                sum.cpu = sum.cpu.zip(cpu).map(|(s, c)| s + c);
                if epoch == 0 && epochs > 1 {
                    model.take_phases();
                }
            }
            eprintln!("epoch {}: {method} {mode:?} {:.3} s", epoch + 1, sum.wall);
            out.push(sum);
        }
    }
    // The first epoch warms caches and allocators up: left out when there are more.
    Ok(times
        .into_iter()
        .zip(&mut runners)
        .map(|(mut epochs_of_mode, models)| {
            if epochs > 1 {
                epochs_of_mode.remove(0);
            }
            let phases = models
                .iter_mut()
                .fold(StepPhases::default(), |acc, m| acc.merged(&m.take_phases()));
            ModeTimes {
                epochs: epochs_of_mode,
                phases,
            }
        })
        .collect())
}

/// The median over the turns of epochs of `num`'s epoch over `den`'s, in wall and (where known)
/// CPU time of all threads, with the wall ratio of every turn.
fn turn_ratios(num: &ModeTimes, den: &ModeTimes) -> (f64, Option<f64>, Vec<f64>) {
    let pairs = || num.epochs.iter().zip(&den.epochs);
    let wall: Vec<f64> = pairs().map(|(a, b)| a.wall / b.wall).collect();
    let cpu: Option<Vec<f64>> = pairs().map(|(a, b)| Some(a.cpu? / b.cpu?)).collect();
    (median(wall.clone()), cpu.map(median), wall)
}

/// Runs the benchmark and prints the tables.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.epochs == 0 {
        anyhow::bail!("--epochs must be at least 1");
    }
    let runs: Vec<(Method, Mode)> = args
        .method
        .iter()
        .flat_map(|&method| args.modes.iter().map(move |&mode| (method, mode)))
        .collect();
    let split = load_protocol(args.protocol, None)?;
    let gpu = args.backend.gpu()?;
    let (name, times) = match &gpu {
        Some(gpu) => (
            gpu.adapter().to_string(),
            time_interleaved(gpu, &split, args.epochs, &runs)?,
        ),
        None => {
            let cpu = CpuBackend::<f32>::new();
            (
                cpu.name(),
                time_interleaved(&cpu, &split, args.epochs, &runs)?,
            )
        }
    };
    let wall = |r: usize| median(times[r].epochs.iter().map(|t| t.wall).collect());
    let cpu = |r: usize| {
        times[r]
            .epochs
            .iter()
            .map(|t| t.cpu)
            .collect::<Option<Vec<f64>>>()
            .map(median)
    };
    let index = |method: Method, mode: Mode| runs.iter().position(|&r| r == (method, mode));
    println!(
        "training seconds per epoch, protocol {}, backend {name}; runs interleaved epoch by \
         epoch, median of {} epochs",
        args.protocol,
        times.first().map_or(0, |t| t.epochs.len())
    );
    println!(
        "{:<8} {:<10} {:>12} {:>12} {:>14} {:>14}",
        "method", "mode", "s/epoch", "x nested", "CPU s/epoch", "reference s"
    );
    for (r, &(method, mode)) in runs.iter().enumerate() {
        let ratio = index(method, Mode::Nested)
            .map_or("-".to_string(), |n| format!("{:.2}", wall(r) / wall(n)));
        let cpu = cpu(r).map_or("-".to_string(), |c| format!("{c:.3}"));
        let reference = match (method, mode) {
            (Method::Csq, Mode::Nested) => format!("{REFERENCE_NESTED_EPOCH:.2}"),
            (Method::Csq, Mode::Full) => format!("{REFERENCE_FULL_EPOCH:.2}"),
            _ => "-".to_string(),
        };
        let label = if mode == Mode::Single {
            "single x5".to_string()
        } else {
            format!("{mode:?}").to_lowercase()
        };
        println!(
            "{method:<8} {label:<10} {:>12.3} {ratio:>12} {cpu:>14} {reference:>14}",
            wall(r)
        );
    }
    for &method in &args.method {
        if let (Some(f), Some(s)) = (index(method, Mode::Full), index(method, Mode::Single)) {
            let (wall, cpu, each) = turn_ratios(&times[s], &times[f]);
            let cpu = cpu.map_or(String::new(), |c| {
                format!(" ({c:.2}x in CPU time of all threads)")
            });
            let each: Vec<String> = each.iter().map(|r| format!("{r:.2}x")).collect();
            println!(
                "{method}: five single-length models / one full run, median over epochs: \
                 {wall:.2}x{cpu}"
            );
            println!("  epoch by epoch: {}", each.join(", "));
        }
    }
    let first = args.method[0];
    if let Some(base) = index(first, Mode::Full) {
        for &method in &args.method[1..] {
            if let Some(f) = index(method, Mode::Full) {
                let (wall, cpu, each) = turn_ratios(&times[f], &times[base]);
                let cpu = cpu.map_or(String::new(), |c| format!(" ({c:.2}x in CPU time)"));
                let each: Vec<String> = each.iter().map(|r| format!("{r:.2}x")).collect();
                println!(
                    "{method} full epoch / {first} full epoch, median over epochs: \
                     {wall:.2}x{cpu}"
                );
                println!("  epoch by epoch: {}", each.join(", "));
            }
        }
    }
    print_phases(&runs, &times);
    Ok(())
}

/// The mean microseconds of each phase of a step, per run (for `single`, of one of its models'
/// steps, the five lengths together).
fn print_phases(runs: &[(Method, Mode)], times: &[ModeTimes]) {
    println!("microseconds per step by phase (single: the mean step of its five models)");
    let header: Vec<String> = Phase::ALL
        .iter()
        .map(|p| format!("{:>11}", p.name()))
        .collect();
    println!(
        "{:<8} {:<10}{} {:>11}",
        "method",
        "mode",
        header.join(""),
        "step"
    );
    for ((method, mode), t) in runs.iter().zip(times) {
        let us = t.phases.micros_per_step();
        let cells: Vec<String> = us.iter().map(|v| format!("{v:>11.0}")).collect();
        let label = format!("{mode:?}").to_lowercase();
        println!(
            "{method:<8} {label:<10}{} {:>11.0}",
            cells.join(""),
            us.iter().sum::<f64>()
        );
    }
}

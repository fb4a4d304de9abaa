//! `cargo xtask bench train`: training seconds per epoch of every mode, measured side by side in
//! one process on one backend, with the ratios the method promises and the reference's times.

use anyhow::Context;
use nhl_kernels::cpu::CpuBackend;
use nhl_kernels::Backend;
use nhl_train::config::{Mode, TrainConfig};
use nhl_train::data::{load_protocol, Protocol};
use nhl_train::trainer::train;

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
}

fn parse_mode(s: &str) -> anyhow::Result<Mode> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).with_context(|| {
        format!("--modes: unknown mode {s:?} (expected nested, distill, adaptive, full or single)")
    })
}

/// Mean seconds per epoch of each mode, skipping the first epoch when there are several.
fn time_modes<B: Backend<Elem = f32>>(
    backend: &B,
    args: &Args,
    modes: &[Mode],
) -> anyhow::Result<Vec<(Mode, f64)>> {
    let split = load_protocol(args.protocol, None)?;
    modes
        .iter()
        .map(|&mode| {
            let config = TrainConfig {
                mode,
                epochs: args.epochs,
                ..TrainConfig::default()
            };
            let outcome = train(backend, &split, &config, &mut |_| {})?;
            let timed = if outcome.epoch_seconds.len() > 1 {
                &outcome.epoch_seconds[1..]
            } else {
                &outcome.epoch_seconds[..]
            };
            let per_epoch = timed.iter().sum::<f64>() / timed.len() as f64;
            eprintln!("{mode:?}: {per_epoch:.3} s/epoch");
            Ok((mode, per_epoch))
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
    let gpu = args.backend.gpu()?;
    let (name, times) = match &gpu {
        Some(gpu) => (gpu.adapter().to_string(), time_modes(gpu, &args, &modes)?),
        None => {
            let cpu = CpuBackend::<f32>::new();
            (cpu.name(), time_modes(&cpu, &args, &modes)?)
        }
    };
    let of = |m: Mode| times.iter().find(|(mode, _)| *mode == m).map(|&(_, s)| s);
    println!(
        "training seconds per epoch, protocol {}, backend {name}",
        args.protocol
    );
    println!(
        "{:<10} {:>12} {:>12} {:>14}",
        "mode", "s/epoch", "x nested", "reference s"
    );
    for &(mode, s) in &times {
        let ratio = of(Mode::Nested).map_or("-".to_string(), |n| format!("{:.2}", s / n));
        let reference = match mode {
            Mode::Nested => format!("{REFERENCE_NESTED_EPOCH:.2}"),
            Mode::Full => format!("{REFERENCE_FULL_EPOCH:.2}"),
            _ => "-".to_string(),
        };
        let label = if mode == Mode::Single {
            "single x5".to_string()
        } else {
            format!("{mode:?}").to_lowercase()
        };
        println!("{label:<10} {s:>12.3} {ratio:>12} {reference:>14}");
    }
    if let (Some(full), Some(single)) = (of(Mode::Full), of(Mode::Single)) {
        println!(
            "five single-length models / one full run: {:.2}x",
            single / full
        );
    }
    Ok(())
}

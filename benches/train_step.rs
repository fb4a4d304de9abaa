//! Training-step cost of every NHL mode against the single-length baseline, on the CPU backend
//! and on the GPU backend (whatever adapter is found, software allowed; its name is in the id).
//!
//! One iteration is one `train` call of one epoch of `STEPS` batches of 64 embedded t10k images
//! (CSQ, lengths 8..128): the model's set-up (initialisation, uploads) and `STEPS` steps, so the
//! time per iteration divided by `STEPS` is the cost of one step plus a small share of set-up.
//! The query and database sets are cut to a handful of items so that the encoding `train` does
//! after its last epoch stays negligible. `single` trains the five single-length models one after the
//! other, so `single / full` is the speed-up one `full` run gives over five separate runs.
//! `cargo xtask bench train` times whole epochs of the full data set instead.
//!
//! `cargo bench --bench train_step -- --warm-up-time 1 --measurement-time 5`

use std::time::Duration;

use anyhow::Result;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use nhl_kernels::cpu::CpuBackend;
use nhl_kernels::gpu::{AdapterPolicy, GpuBackend};
use nhl_kernels::HashingOps;
use nhl_train::config::{Mode, TrainConfig};
use nhl_train::data::{load_protocol, Protocol, Split};
use nhl_train::trainer::train;

/// Batches per iteration.
const STEPS: usize = 40;
const BATCH: usize = 64;
/// Items kept in the query and database sets (encoded once per iteration).
const EVAL_ITEMS: usize = 16;

/// The embedded split cut to `STEPS` batches of training items and a few evaluation items.
fn small_split() -> Result<Split> {
    let full = load_protocol(Protocol::FmnistT10k, None)?;
    let keep = |n: usize| (0..n).collect::<Vec<usize>>();
    Ok(Split {
        name: full.name.clone(),
        query: full.query.subset(&keep(EVAL_ITEMS)),
        // The train set is laid out class by class; a stride keeps every class in the subset.
        train: full.train.subset(
            &(0..STEPS * BATCH)
                .map(|i| i * full.train.len() / (STEPS * BATCH))
                .collect::<Vec<_>>(),
        ),
        database: full.database.subset(&keep(EVAL_ITEMS)),
    })
}

fn bench_modes<B: HashingOps<Elem = f32>>(c: &mut Criterion, backend: &B, id: &str, split: &Split) {
    let mut group = c.benchmark_group(format!("train_epoch_{STEPS}_steps"));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for (mode, name) in [
        (Mode::Nested, "nested"),
        (Mode::Distill, "distill"),
        (Mode::Adaptive, "adaptive"),
        (Mode::Full, "full"),
        (Mode::Single, "single"),
    ] {
        let config = TrainConfig {
            mode,
            epochs: 1,
            batch_size: BATCH,
            ..TrainConfig::default()
        };
        group.bench_function(BenchmarkId::new(id, name), |b| {
            b.iter(|| {
                if let Err(e) = train(backend, split, &config, &mut |_| {}) {
                    eprintln!("train_step bench: training failed: {e}");
                    std::process::exit(1);
                }
            })
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let split = match small_split() {
        Ok(split) => split,
        Err(e) => {
            eprintln!("train_step bench: cannot load the embedded data: {e:#}");
            std::process::exit(1);
        }
    };
    bench_modes(c, &CpuBackend::<f32>::new(), "cpu", &split);
    match GpuBackend::new(AdapterPolicy::AllowSoftware) {
        Ok(gpu) => {
            eprintln!("GPU cases on {}", gpu.adapter());
            bench_modes(c, &gpu, &gpu.adapter().slug(), &split);
        }
        Err(e) => eprintln!("train_step bench: GPU cases skipped, no adapter: {e}"),
    }
}

criterion_group!(train_step, benches);
criterion_main!(train_step);

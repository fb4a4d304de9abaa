//! Short training runs: reproducibility with a fixed seed on every backend, the same loss curve
//! on the CPU and GPU backends, and every method and mode end to end.

use nhl_index::eval::Labels;
use nhl_kernels::cpu::CpuBackend;
use nhl_kernels::HashingOps;
use nhl_train::config::{LengthScale, Method, Mode, TrainConfig};
use nhl_train::data::{load_protocol, Dataset, Protocol, Split};
use nhl_train::step_phases::StepPhases;
use nhl_train::trainer::{train, EpochRunner, TrainOutcome};

/// A small slice of the embedded t10k protocol: 40 queries, 160 training items, 400 database.
fn small_split() -> Split {
    let full = load_protocol(Protocol::FmnistT10k, None).expect("the embedded data loads");
    // Query and train sets are in class blocks; take a few of every class.
    let pick = |per_class: usize, block: usize| -> Vec<usize> {
        (0..10)
            .flat_map(|c| (0..per_class).map(move |i| c * block + i))
            .collect()
    };
    Split {
        name: "t10k-small".into(),
        query: full.query.subset(&pick(4, 100)),
        train: full.train.subset(&pick(16, 500)),
        database: full.database.subset(&(0..400).collect::<Vec<_>>()),
    }
}

fn small_config(method: Method, mode: Mode) -> TrainConfig {
    TrainConfig {
        method,
        mode,
        bits: vec![4, 8, 16],
        hidden: 32,
        epochs: 2,
        batch_size: 32,
        ..TrainConfig::default()
    }
}

fn run<B: HashingOps<Elem = f32>>(
    backend: &B,
    split: &Split,
    config: &TrainConfig,
) -> TrainOutcome {
    train(backend, split, config, &mut |_| {}).expect("training runs")
}

/// The same seed trains a bit-identical model: codes, parameters and losses.
fn assert_same_model(what: &str, a: &TrainOutcome, b: &TrainOutcome) {
    assert_eq!(a.loss_per_epoch, b.loss_per_epoch, "{what}: losses");
    for (x, y) in a.codes.iter().zip(&b.codes) {
        assert_eq!(
            x.query.to_bytes(),
            y.query.to_bytes(),
            "{what}: {} bits",
            x.bits
        );
        assert_eq!(
            x.database.to_bytes(),
            y.database.to_bytes(),
            "{what}: {} bits",
            x.bits
        );
    }
    assert_eq!(a.params, b.params, "{what}: parameters");
}

#[test]
fn the_thread_count_changes_nothing_and_the_seed_changes_the_model() {
    let split = small_split();
    let config = small_config(Method::Csq, Mode::Full);
    let cpu = CpuBackend::<f32>::new();
    let a = run(&cpu, &split, &config);
    // A different thread count must not change anything.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let b = pool.install(|| run(&cpu, &split, &config));
    assert_same_model("one thread", &a, &b);
    let other = run(&cpu, &split, &TrainConfig { seed: 1, ..config });
    assert_ne!(a.params, other.params, "another seed gives another model");
}

/// Interleaved runs, an epoch at a time, train exactly what `train` trains: the same losses per
/// epoch for a nested model and for each model of a `single` run.
#[test]
fn epoch_runners_interleaved_train_what_train_trains() {
    let split = small_split();
    let cpu = CpuBackend::<f32>::new();
    let full = small_config(Method::Csq, Mode::Full);
    let single = small_config(Method::Csq, Mode::Single);
    let mut runners = vec![EpochRunner::new(&cpu, &split, &full, &full.bits).unwrap()];
    for &b in &single.bits {
        runners.push(EpochRunner::new(&cpu, &split, &single, &[b]).unwrap());
    }
    let mut losses = vec![vec![0.0; full.epochs]; 2];
    for e in 0..full.epochs {
        for (r, runner) in runners.iter_mut().enumerate() {
            let (seconds, loss) = runner.epoch().unwrap();
            assert!(seconds > 0.0);
            // The nested model, then the sum over the single-length models.
            let curve = &mut losses[usize::from(r > 0)];
            curve[e] += loss;
        }
    }
    assert_eq!(losses[0], run(&cpu, &split, &full).loss_per_epoch);
    assert_eq!(losses[1], run(&cpu, &split, &single).loss_per_epoch);
    // Every step was timed, phase by phase; reading the times starts a new count.
    let steps = full.epochs * split.train.len().div_ceil(full.batch_size);
    for runner in &mut runners {
        let phases = runner.take_phases();
        assert_eq!(phases.steps, steps);
        assert!(
            phases.seconds.iter().all(|&s| s >= 0.0) && phases.seconds.iter().sum::<f64>() > 0.0
        );
        assert_eq!(runner.take_phases(), StepPhases::default());
    }
}

/// The default length scale trains DSH per bit and the other losses plain: each default model is
/// the one its named scale trains, and not the other scale's.
#[test]
fn the_default_length_scale_is_per_bit_for_dsh_alone() {
    let split = small_split();
    let cpu = CpuBackend::<f32>::new();
    for (method, named) in [
        (Method::Dsh, LengthScale::PerBit),
        (Method::Lcdsh, LengthScale::Plain),
        (Method::Dch, LengthScale::Plain),
    ] {
        let config = small_config(method, Mode::Nested);
        assert_eq!(config.length_scale, LengthScale::Auto);
        let default = run(&cpu, &split, &config);
        let with = |length_scale| {
            run(
                &cpu,
                &split,
                &TrainConfig {
                    length_scale,
                    ..config.clone()
                },
            )
        };
        assert_same_model(&format!("{method} default"), &default, &with(named));
        let other = match named {
            LengthScale::PerBit => LengthScale::Plain,
            _ => LengthScale::PerBit,
        };
        assert_ne!(default.params, with(other).params, "{method}: {other:?}");
    }
}

#[test]
fn every_method_and_mode_trains_and_learns() {
    let split = small_split();
    let cpu = CpuBackend::<f32>::new();
    for method in Method::ALL {
        for mode in [
            Mode::Nested,
            Mode::Distill,
            Mode::Adaptive,
            Mode::Full,
            Mode::Single,
        ] {
            let epochs = 4;
            let config = TrainConfig {
                epochs,
                // The bank likelihood scales with the codes squared and DBDH has no term that
                // grows them: with the small test backbone's tiny codes it would not move in four
                // epochs; the protocol's hidden width makes them five times larger.
                hidden: if method == Method::Dbdh { 1024 } else { 32 },
                // MDSH's pair term and HashNet's continuation step start during the run.
                loss_params: match method {
                    Method::Mdsh => [("pair_from".to_string(), 2.0)].into(),
                    Method::Hashnet => [("step".to_string(), 2.0)].into(),
                    _ => Default::default(),
                },
                ..small_config(method, mode)
            };
            let out = run(&cpu, &split, &config);
            assert_eq!(
                out.codes.iter().map(|c| c.bits).collect::<Vec<_>>(),
                vec![4, 8, 16]
            );
            assert!(
                out.loss_per_epoch.iter().all(|l| l.is_finite()),
                "{method:?} {mode:?}: {:?}",
                out.loss_per_epoch
            );
            // From epoch 1 on: the memory-bank losses change meaning while epoch 0 fills the bank,
            // MDSH's pair term starts and HashNet's scale grows at epoch 2.
            let from = if matches!(method, Method::Mdsh | Method::Hashnet) {
                2
            } else {
                1
            };
            assert!(
                out.loss_per_epoch[epochs - 1] < out.loss_per_epoch[from],
                "{method:?} {mode:?}: the loss falls: {:?}",
                out.loss_per_epoch
            );
            let models = if mode == Mode::Single { 3 } else { 1 };
            assert_eq!(out.params.len(), 4 * models, "{method:?} {mode:?}");
            // One live-unit count per model, of that model's backbone.
            let longest: Vec<usize> = out.live_units.iter().map(|u| u.bits).collect();
            let expected = if mode == Mode::Single {
                vec![4, 8, 16]
            } else {
                vec![16]
            };
            assert_eq!(longest, expected, "{method:?} {mode:?}");
            for units in &out.live_units {
                assert_eq!(units.hidden, config.hidden, "{method:?} {mode:?}");
                assert!(
                    units.live > 0 && units.live <= units.hidden,
                    "{method:?} {mode:?}: {units:?}"
                );
            }
            if mode != Mode::Single {
                // Nested codes: every shorter code is the prefix of the longest one.
                let longest = &out.codes[2];
                for c in &out.codes[..2] {
                    assert_eq!(
                        c.query.to_bytes(),
                        longest.query.prefix(c.bits).unwrap().to_codes().to_bytes()
                    );
                }
            }
        }
    }
}

/// [`small_split`] with multi-hot labels: every item keeps its class and most get a second one,
/// some none.
fn multi_label_split() -> Split {
    let split = small_split();
    let multi = |set: &Dataset| -> Dataset {
        let Labels::Single(classes) = &set.labels else {
            unreachable!("the protocol is single-label")
        };
        let rows = classes
            .iter()
            .enumerate()
            .map(|(i, &c)| match i % 4 {
                0 => vec![],
                1 => vec![c],
                _ => vec![c, (c + 1 + i as u32 % 3) % 10],
            })
            .collect();
        Dataset {
            labels: Labels::Multi {
                n_classes: 10,
                rows,
            },
            ..set.clone()
        }
    };
    Split {
        name: "t10k-small-multi".into(),
        query: multi(&split.query),
        train: multi(&split.train),
        database: multi(&split.database),
    }
}

/// Every loss that defines similarity by shared labels trains on multi-hot labels; SHCIR, whose
/// loss takes one positive class per item, refuses them and says why.
#[test]
fn multi_label_data_trains_every_method_but_shcir() {
    let split = multi_label_split();
    let cpu = CpuBackend::<f32>::new();
    for method in Method::ALL {
        let config = TrainConfig {
            epochs: 2,
            loss_params: match method {
                Method::Mdsh => [("pair_from".to_string(), 1.0)].into(),
                _ => Default::default(),
            },
            ..small_config(method, Mode::Full)
        };
        let result = train(&cpu, &split, &config, &mut |_| {});
        if method == Method::Shcir {
            let Err(e) = result else {
                panic!("shcir refuses multi-label data");
            };
            let e = e.to_string();
            assert!(
                e.contains("--method")
                    && e.contains("shcir")
                    && e.contains("training item 0 has 0 classes")
                    && e.contains("one positive class"),
                "{e}"
            );
            continue;
        }
        let out = result.unwrap_or_else(|e| panic!("{method}: {e}"));
        assert!(
            out.loss_per_epoch.iter().all(|l| l.is_finite()),
            "{method}: {:?}",
            out.loss_per_epoch
        );
    }
    // One class per item, stored as multi-hot rows, is single-label data for SHCIR.
    let mut one_each = split.clone();
    for set in [
        &mut one_each.query,
        &mut one_each.train,
        &mut one_each.database,
    ] {
        if let Labels::Multi { rows, .. } = &mut set.labels {
            for (i, r) in rows.iter_mut().enumerate() {
                *r = vec![i as u32 % 10];
            }
        }
    }
    let config = TrainConfig {
        epochs: 1,
        ..small_config(Method::Shcir, Mode::Full)
    };
    train(&cpu, &one_each, &config, &mut |_| {}).expect("one class per item trains");
}

#[test]
fn validations_report_each_lengths_best() {
    let split = small_split();
    let config = TrainConfig {
        eval_every: 1,
        epochs: 2,
        ..small_config(Method::Csq, Mode::Full)
    };
    let out = run(&CpuBackend::<f32>::new(), &split, &config);
    assert_eq!(out.validations.len(), 2);
    let best = out.best_validation_map();
    assert_eq!(best.iter().map(|b| b.0).collect::<Vec<_>>(), vec![4, 8, 16]);
    for (bits, m) in best {
        let seen: Vec<f64> = out
            .validations
            .iter()
            .flat_map(|v| v.map.iter().filter(|e| e.0 == bits).map(|e| e.1))
            .collect();
        assert_eq!(m, seen.iter().copied().fold(f64::MIN, f64::max));
    }
}

/// On `b`, the same seed trains a bit-identical model twice, and its loss curve and codes follow
/// the `CpuBackend<f32>` run's (on the CPU itself that is a third identical run).
fn trains_reproducibly_like_the_cpu<B: HashingOps<Elem = f32>>(b: &B) {
    let split = small_split();
    for mode in [Mode::Full, Mode::Nested] {
        let config = small_config(Method::Csq, mode);
        let cpu = run(&CpuBackend::<f32>::new(), &split, &config);
        let dev = run(b, &split, &config);
        assert_same_model(
            &format!("{mode:?} twice on {}", b.name()),
            &dev,
            &run(b, &split, &config),
        );
        for (e, (c, g)) in cpu
            .loss_per_epoch
            .iter()
            .zip(&dev.loss_per_epoch)
            .enumerate()
        {
            assert!(
                (c - g).abs() <= 1e-3 * c.abs() + 1e-4,
                "{mode:?} epoch {e}: cpu {c}, {} {g}",
                b.name()
            );
        }
        // Float summation order differs, so a few codes near zero may flip; nearly all agree.
        let (c, g) = (
            cpu.codes[2].database.to_bytes(),
            dev.codes[2].database.to_bytes(),
        );
        let differing: u32 = c.iter().zip(&g).map(|(a, b)| (a ^ b).count_ones()).sum();
        assert!(
            differing as usize <= c.len() * 8 / 100,
            "{mode:?}: {differing} of {} bits differ",
            c.len() * 8
        );
    }
}

/// Every method trains on `b` in `full` (distillation, weighting and every length's loss) and in
/// `single` (one length per model), with the loss curve of the `CpuBackend<f32>` run: the fused
/// kernels, the tapes and the losses' state (banks, MDSH's momentum model from epoch 1,
/// HashNet's continuation step at epoch 1) on the device.
fn every_method_trains_like_the_cpu<B: HashingOps<Elem = f32>>(b: &B) {
    let split = small_split();
    for method in Method::ALL {
        for mode in [Mode::Full, Mode::Single] {
            let config = TrainConfig {
                loss_params: match method {
                    Method::Mdsh => [("pair_from".to_string(), 1.0)].into(),
                    Method::Hashnet => [("step".to_string(), 1.0)].into(),
                    _ => Default::default(),
                },
                distill_weight: method.default_distill_weight(),
                ..small_config(method, mode)
            };
            let cpu = run(&CpuBackend::<f32>::new(), &split, &config);
            let dev = run(b, &split, &config);
            for (e, (c, g)) in cpu
                .loss_per_epoch
                .iter()
                .zip(&dev.loss_per_epoch)
                .enumerate()
            {
                assert!(
                    g.is_finite() && (c - g).abs() <= 1e-2 * c.abs() + 1e-3,
                    "{method} {mode:?} epoch {e}: cpu {c}, {} {g}",
                    b.name()
                );
            }
        }
    }
}

nhl_kernels::on_every_backend!(
    trains_reproducibly_like_the_cpu,
    every_method_trains_like_the_cpu
);

/// Outside the adaptive modes a training step reads nothing back: the objectives stay on the
/// device and are downloaded once per 16 steps, so the host waits far less often than it steps;
/// the adaptive modes still read the gradient products back once per step.
#[test]
fn gpu_steps_do_not_wait_for_the_device() {
    let Some(gpu) = nhl_kernels::gpu::test_backend() else {
        return;
    };
    let split = small_split();
    // 160 items in batches of 8: 20 steps per epoch, 40 in all.
    let steps = 40usize;
    let mut waits = Vec::new();
    for mode in [Mode::Nested, Mode::Distill, Mode::Adaptive, Mode::Full] {
        let config = TrainConfig {
            batch_size: 8,
            ..small_config(Method::Csq, mode)
        };
        let before = gpu.host_waits();
        let mut reports = 0;
        let out = train(&gpu, &split, &config, &mut |p| {
            assert_eq!(
                p.batch,
                reports % 20 + 1,
                "{mode:?}: every batch is reported"
            );
            assert!(p.running_loss.is_finite());
            reports += 1;
        })
        .expect("training runs");
        assert_eq!(reports, steps, "{mode:?}");
        assert!(out.loss_per_epoch.iter().all(|l| l.is_finite()));
        waits.push((mode, (gpu.host_waits() - before) as usize));
    }
    // Per epoch: two loss downloads (16 + 4 steps) and a sync; then encoding and export. The
    // adaptive modes' weights never come back to the host.
    for &(mode, w) in &waits {
        assert!(w < steps / 2, "{mode:?}: {w} host waits for {steps} steps");
    }
}

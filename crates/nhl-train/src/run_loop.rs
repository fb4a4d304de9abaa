//! The loop over models and epochs that [`crate::trainer::train`] runs, with what a long run
//! needs around it: validations, a checkpoint of the whole training state after every epoch, a
//! stop on request (after the current step, with a checkpoint), and resuming from a checkpoint
//! with the same result, bit for bit, as a run that never stopped.

use nhl_kernels::rng::SplitMix64;
use nhl_kernels::HashingOps;

use crate::config::{Mode, TrainConfig};
use crate::data::Split;
use crate::error::TrainError;
use crate::train_state::{download, LossState, Position, StateTensors, TrainState};
use crate::trainer::{
    mean_average_precision, validate, Checks, ModelRun, Progress, TrainOutcome, Validation,
};

/// Receives a training state to keep (write it to disk).
pub type CheckpointSink<'a> = &'a mut dyn FnMut(&TrainState) -> Result<(), TrainError>;

/// How a caller steers a run that may stop and resume.
pub struct Control<'a> {
    /// Asked after every step: `true` stops the run after that step, with a checkpoint, and
    /// the run returns [`TrainError::Interrupted`].
    pub stop: &'a dyn Fn() -> bool,
    /// Receives the training state after every epoch and when the run stops; `None` skips
    /// gathering it.
    pub checkpoint: Option<CheckpointSink<'a>>,
}

/// What the batches done so far of an epoch recorded.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct EpochSums {
    /// Batches done, counting those before a resumed start.
    pub done: usize,
    /// Sum of their losses.
    pub loss_sum: f64,
    /// Weighted modes: per length, the sum of its dominance weight over those batches; empty
    /// in the other modes.
    pub weight_sum: Vec<f64>,
}

/// How a pass over the training set ended.
pub(crate) struct EpochEnd {
    /// Wall-clock seconds of its steps.
    pub seconds: f64,
    /// Batches in the epoch.
    pub batches: usize,
    /// What the batches done recorded.
    pub sums: EpochSums,
    /// The shuffling state at the epoch's start.
    pub start_shuffle: u64,
    /// Whether the epoch ended because a stop was asked for (possibly after its last batch).
    pub stopped: bool,
}

impl EpochEnd {
    /// Mean batch loss of a finished epoch.
    pub fn mean_loss(&self) -> f64 {
        self.sums.loss_sum / self.batches as f64
    }

    /// Mean dominance weight of each length over a finished epoch (empty in the unweighted
    /// modes).
    pub fn mean_weights(&self) -> Vec<f64> {
        let batches = self.batches as f64;
        self.sums.weight_sum.iter().map(|w| w / batches).collect()
    }
}

/// The `b{bits}.` prefix of the parameter names of a `single` run's models (empty otherwise).
fn model_prefix(config: &TrainConfig, bits: &[usize]) -> String {
    if config.mode == Mode::Single {
        format!("b{}.", bits[0])
    } else {
        String::new()
    }
}

/// [`crate::trainer::train_checked`] that checkpoints through `control`, stops when it asks,
/// and starts from `resume` when given (a state saved by a run with the same `config` and
/// data).
pub fn train_resumable<B: HashingOps<Elem = f32>>(
    backend: &B,
    split: &Split,
    config: &TrainConfig,
    checks: Checks,
    resume: Option<&TrainState>,
    control: &mut Control<'_>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<TrainOutcome, TrainError> {
    validate(config, split)?;
    if let Some(state) = resume {
        if state.position.config != *config {
            return Err(TrainError::StateMismatch {
                what: "it was written by a run with other settings".into(),
            });
        }
    }
    let runs: Vec<Vec<usize>> = if config.mode == Mode::Single {
        config.bits.iter().map(|&b| vec![b]).collect()
    } else {
        vec![config.bits.clone()]
    };
    let mut outcome = TrainOutcome {
        codes: Vec::new(),
        train_seconds: 0.0,
        epoch_seconds: vec![0.0; config.epochs],
        loss_per_epoch: vec![0.0; config.epochs],
        params: Vec::new(),
        validations: Vec::new(),
        live_units: Vec::new(),
        weights_per_epoch: Vec::new(),
    };
    if let Some(p) = resume.map(|s| &s.position) {
        outcome.train_seconds = p.train_seconds;
        outcome.epoch_seconds.clone_from(&p.epoch_seconds);
        outcome.loss_per_epoch.clone_from(&p.loss_per_epoch);
        outcome.validations.clone_from(&p.validations);
        outcome.weights_per_epoch.clone_from(&p.weights_per_epoch);
    }
    let first_model = resume.map_or(0, |s| s.position.model);
    let models = runs.len();
    for (model_index, bits) in runs.iter().enumerate() {
        let mut run = ModelRun::new(backend, split, config, bits)?;
        let prefix = model_prefix(config, bits);
        let mut first_epoch = 0;
        let mut from = None;
        if let Some(state) = resume {
            if model_index < first_model {
                // Finished before the run stopped: its parameters give its codes again.
                run.load_params(&state.tensors, &format!("done.{prefix}"))?;
                outcome.codes.extend(run.encode(split)?);
                outcome.params.extend(run.model.export(backend, &prefix)?);
                outcome.live_units.push(run.live_units(&split.train)?);
                continue;
            }
            if model_index == first_model {
                run.load_state(state)?;
                first_epoch = state.position.epoch;
                from = Some(EpochSums {
                    done: state.position.batch,
                    loss_sum: state.position.loss_sum,
                    weight_sum: state.position.weight_sum.clone(),
                });
            }
        }
        for epoch in first_epoch..config.epochs {
            let end = run.epoch(
                epoch,
                from.take(),
                control.stop,
                &mut |batch, batches, loss| {
                    progress(&Progress {
                        model: model_index,
                        models,
                        epoch,
                        epochs: config.epochs,
                        batch,
                        batches,
                        running_loss: loss,
                    })
                },
            )?;
            outcome.epoch_seconds[epoch] += end.seconds;
            outcome.train_seconds += end.seconds;
            if end.sums.done < end.batches {
                let at = (epoch, end.start_shuffle, end.sums.clone());
                checkpoint(control, &run, &outcome, model_index, at)?;
                return Err(TrainError::Interrupted {
                    epoch,
                    batch: end.sums.done,
                });
            }
            outcome.loss_per_epoch[epoch] += end.mean_loss();
            let weights = end.mean_weights();
            if !weights.is_empty() {
                outcome.weights_per_epoch.push(weights);
            }
            if config.eval_every > 0 && (epoch + 1) % config.eval_every == 0 {
                let codes = run.encode(split)?;
                if checks.collapse {
                    run.check_collapse(&codes, split, &format!("epoch {}", epoch + 1))?;
                }
                outcome.validations.push(Validation {
                    epoch: epoch + 1,
                    map: mean_average_precision(&codes, split)?,
                });
            }
            let at = (epoch + 1, run.shuffle.state(), EpochSums::default());
            checkpoint(control, &run, &outcome, model_index, at)?;
            if end.stopped || (control.stop)() {
                return Err(TrainError::Interrupted {
                    epoch: epoch + 1,
                    batch: 0,
                });
            }
        }
        let codes = run.encode(split)?;
        if checks.collapse {
            run.check_collapse(&codes, split, "training")?;
        }
        outcome.codes.extend(codes);
        outcome.params.extend(run.model.export(backend, &prefix)?);
        outcome.live_units.push(run.live_units(&split.train)?);
    }
    Ok(outcome)
}

/// Hands the training state to `control`'s checkpoint, if it has one: `run` (model
/// `model_index`) at `(epoch, shuffling state at the epoch's start, what its batches done
/// recorded)`, and what `outcome` has recorded.
fn checkpoint<B: HashingOps<Elem = f32>>(
    control: &mut Control<'_>,
    run: &ModelRun<'_, B>,
    outcome: &TrainOutcome,
    model_index: usize,
    (epoch, shuffle, sums): (usize, u64, EpochSums),
) -> Result<(), TrainError> {
    let Some(sink) = control.checkpoint.as_mut() else {
        return Ok(());
    };
    let mut tensors = run.save_state()?;
    tensors.extend("done.", outcome.params.iter().cloned());
    let state = TrainState {
        position: Position {
            version: crate::train_state::STATE_VERSION,
            config: run.config.clone(),
            model: model_index,
            epoch,
            batch: sums.done,
            shuffle,
            loss_sum: sums.loss_sum,
            weight_sum: sums.weight_sum,
            monitor: run.monitor,
            adam_step: run.adam.step_count(),
            train_seconds: outcome.train_seconds,
            epoch_seconds: outcome.epoch_seconds.clone(),
            loss_per_epoch: outcome.loss_per_epoch.clone(),
            validations: outcome.validations.clone(),
            weights_per_epoch: outcome.weights_per_epoch.clone(),
        },
        tensors,
    };
    sink(&state)
}

impl<B: HashingOps<Elem = f32>> ModelRun<'_, B> {
    /// Every tensor of this model's training state: parameters, Adam's moments, the bank and
    /// each length's loss state ([`LossState`]).
    fn save_state(&self) -> Result<StateTensors, TrainError> {
        let be = self.backend;
        let mut tensors = StateTensors::default();
        tensors.extend("param.", self.model.export(be, "")?);
        let names: Vec<String> = self
            .model
            .params
            .iter()
            .map(|(_, p)| p.name.clone())
            .collect();
        for (name, (m, v)) in names.iter().zip(self.adam.moments()) {
            tensors.extend("adam.m.", [download(be, name, m)?]);
            tensors.extend("adam.v.", [download(be, name, v)?]);
        }
        tensors.extend("loss.", self.losses.save_state(be)?);
        Ok(tensors)
    }

    /// Sets the parameters to the tensors `PREFIX{name}` of `tensors`.
    fn load_params(&mut self, tensors: &StateTensors, prefix: &str) -> Result<(), TrainError> {
        let ids: Vec<_> = self.model.params.iter().map(|(id, _)| id).collect();
        for id in ids {
            let p = self.model.params.get_mut(id);
            let name = format!("{prefix}{}", p.name);
            tensors.restore(self.backend, &name, &mut p.value)?;
        }
        Ok(())
    }

    /// Puts back the state [`ModelRun::save_state`] and [`checkpoint`] saved.
    fn load_state(&mut self, state: &TrainState) -> Result<(), TrainError> {
        let be = self.backend;
        let tensors = &state.tensors;
        self.load_params(tensors, "param.")?;
        let names: Vec<String> = self
            .model
            .params
            .iter()
            .map(|(_, p)| p.name.clone())
            .collect();
        for (name, (m, v)) in names.iter().zip(self.adam.moments_mut()) {
            tensors.restore(be, &format!("adam.m.{name}"), m)?;
            tensors.restore(be, &format!("adam.v.{name}"), v)?;
        }
        self.adam.set_step_count(state.position.adam_step);
        let own = StateTensors::from(tensors.with_prefix("loss."));
        self.losses.load_state(be, &own)?;
        self.shuffle = SplitMix64::new(state.position.shuffle);
        self.monitor = state.position.monitor;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Method;
    use crate::data::Dataset;
    use crate::model::NamedParam;
    use crate::trainer::{train_checked, LengthCodes};
    use nhl_index::eval::Labels;
    use nhl_index::Codes;
    use nhl_kernels::cpu::CpuBackend;
    use nhl_kernels::testing::random_vec;
    use std::cell::Cell;

    /// A run's codes, parameters, loss history and mean dominance weights (as bits) and
    /// validations.
    type RunResult = (
        Vec<(usize, Codes, Codes)>,
        Vec<NamedParam>,
        Vec<u64>,
        Vec<Vec<u64>>,
        Vec<Validation>,
    );

    fn set(items: usize, seed: u64) -> Dataset {
        Dataset {
            features: random_vec(seed, items * 5, 0.0, 1.0)
                .into_iter()
                .map(|v| v as f32)
                .collect(),
            dim: 5,
            labels: Labels::Single((0..items as u32).map(|i| i % 3).collect()),
            n_classes: 3,
        }
    }

    fn split() -> Split {
        Split {
            name: "tiny".into(),
            query: set(9, 1),
            train: set(44, 2),
            database: set(30, 3),
        }
    }

    /// Everything a run's result holds, except its timings.
    fn result(o: &TrainOutcome) -> RunResult {
        let codes = o
            .codes
            .iter()
            .map(
                |LengthCodes {
                     bits,
                     query,
                     database,
                 }| (*bits, query.clone(), database.clone()),
            )
            .collect();
        let losses = o.loss_per_epoch.iter().map(|l| l.to_bits()).collect();
        let weights = o
            .weights_per_epoch
            .iter()
            .map(|w| w.iter().map(|x| x.to_bits()).collect())
            .collect();
        (
            codes,
            o.params.clone(),
            losses,
            weights,
            o.validations.clone(),
        )
    }

    /// Runs until `stop` has been asked `stop_at` times, keeping the last checkpoint, which goes
    /// through the file format; returns that state.
    fn interrupted(
        config: &TrainConfig,
        resume: Option<&TrainState>,
        stop_at: usize,
        dir: &std::path::Path,
    ) -> TrainState {
        let cpu = CpuBackend::<f32>::new();
        let asked = Cell::new(0);
        let stop = || {
            asked.set(asked.get() + 1);
            asked.get() == stop_at
        };
        let path = dir.join(crate::train_state::STATE_FILE);
        let mut sink = |state: &TrainState| state.save(&path);
        let mut control = Control {
            stop: &stop,
            checkpoint: Some(&mut sink),
        };
        let e = train_resumable(
            &cpu,
            &split(),
            config,
            Checks::default(),
            resume,
            &mut control,
            &mut |_| {},
        )
        .unwrap_err();
        assert!(matches!(e, TrainError::Interrupted { .. }), "{e}");
        TrainState::load(&path).unwrap()
    }

    /// A run stopped (mid-epoch, at an epoch's end, in a later model of `single`), saved to a
    /// file, loaded and resumed, maybe stopped and resumed again, ends with the codes,
    /// parameters, loss history, mean dominance weights and validations of a run that never
    /// stopped: every mode, losses with a memory bank, MDSH's momentum model and HashNet's
    /// epoch-driven scale.
    #[test]
    fn a_resumed_run_ends_as_an_uninterrupted_one() {
        let dir = std::env::temp_dir().join(format!("nhl-resume-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cpu = CpuBackend::<f32>::new();
        let cases = [
            (Method::Csq, Mode::Full),
            (Method::Csq, Mode::Nested),
            (Method::Csq, Mode::Distill),
            (Method::Dpn, Mode::Adaptive),
            (Method::Csq, Mode::Single),
            (Method::Dsh, Mode::Full),
            (Method::Dhn, Mode::Nested),
            (Method::Mdsh, Mode::Full),
            (Method::Hashnet, Mode::Distill),
        ];
        for (method, mode) in cases {
            let config = TrainConfig {
                method,
                mode,
                bits: vec![4, 8],
                hidden: 8,
                epochs: 3,
                batch_size: 8,
                eval_every: 1,
                // MDSH's pair term from the second epoch, so that its bank and momentum model
                // are read after a resume.
                loss_params: [("pair_from".to_string(), 1.0)]
                    .into_iter()
                    .filter(|_| method == Method::Mdsh)
                    .collect(),
                ..TrainConfig::default()
            };
            let whole =
                train_checked(&cpu, &split(), &config, Checks::default(), &mut |_| {}).unwrap();
            // The weighted modes record K weights per epoch, whose means sum to K; the others
            // none.
            if mode.adaptive() {
                assert_eq!(whole.weights_per_epoch.len(), config.epochs);
                for w in &whole.weights_per_epoch {
                    assert_eq!(w.len(), 2);
                    assert!((w.iter().sum::<f64>() - 2.0).abs() < 1e-5, "{w:?}");
                    assert!(w.iter().all(|&x| x > 0.0 && x <= 2.0), "{w:?}");
                }
            } else {
                assert!(whole.weights_per_epoch.is_empty());
            }
            // 6 batches per epoch; `stop` is also asked once at each epoch's end, so 21 times
            // per model: 24 stops in the second model of `single`.
            let mut all_stops = vec![&[2][..], &[7], &[3, 9], &[16, 5]];
            if mode == Mode::Single {
                all_stops.push(&[24, 10]);
            }
            for stops in all_stops {
                let mut state: Option<TrainState> = None;
                for &at in stops {
                    state = Some(interrupted(&config, state.as_ref(), at, &dir));
                }
                let mut control = Control {
                    stop: &|| false,
                    checkpoint: None,
                };
                let resumed = train_resumable(
                    &cpu,
                    &split(),
                    &config,
                    Checks::default(),
                    state.as_ref(),
                    &mut control,
                    &mut |_| {},
                )
                .unwrap();
                assert!(
                    result(&resumed) == result(&whole),
                    "{method:?} {mode:?} stopped at {stops:?}"
                );
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A state from a run with other settings is refused.
    #[test]
    fn a_state_of_other_settings_is_refused() {
        let dir = std::env::temp_dir().join(format!("nhl-resume-other-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = TrainConfig {
            bits: vec![4, 8],
            hidden: 8,
            epochs: 2,
            batch_size: 8,
            ..TrainConfig::default()
        };
        let state = interrupted(&config, None, 3, &dir);
        let other = TrainConfig { lr: 0.01, ..config };
        let cpu = CpuBackend::<f32>::new();
        let mut control = Control {
            stop: &|| false,
            checkpoint: None,
        };
        let e = train_resumable(
            &cpu,
            &split(),
            &other,
            Checks::default(),
            Some(&state),
            &mut control,
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("other settings"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The training loop: one backbone pass, one projection to the longest code, every length's loss
//! on its column prefix, the NHL weights, and one backward pass through head and backbone.

use std::time::Instant;

use nhl_autograd::Tape;
use nhl_index::Codes;
use nhl_kernels::rng::SplitMix64;
use nhl_kernels::{HashingOps, Real, Shape};

use crate::config::TrainConfig;
use crate::data::{Dataset, Split};
use crate::divergence::{check_collapse, Advice, BatchAt, LossMonitor};
use crate::encoder::ENCODE_BATCH;
use crate::error::TrainError;
use crate::losses::{BatchContext, LossSet};
use crate::metrics::evaluate_lengths;
use crate::model::{NamedParam, NestedHashModel};
use crate::nhl::{length_gradients, LengthGradients};
use crate::optim::Adam;
use crate::run_loop::{train_resumable, Control, EpochEnd, EpochSums};
use crate::step_phases::{Phase, PhaseClock, StepPhases};
use crate::targets::target_rows;
pub use crate::validate::{validate, validate_config};
use crate::weighting::GradientProducts;

/// Stream separation for the shuffling generator, so that it never replays the init draws.
const SHUFFLE_STREAM: u64 = 0x5348_5546_464c_4521;

/// Steps whose objectives stay on the device before one download reads them all: bounds how
/// far the host runs ahead and how stale the progress report is.
const LOSS_CHUNK: usize = 16;

/// What a step leaves in the device slots: its `k` objectives, then (weighted modes) its `k`
/// dominance weights. Per step: `sum_k J_k`, summed in `f64` in length order (as a per-step
/// read-back sums them), and the weights.
fn step_records<T: Real>(
    values: &[T],
    k: usize,
    stride: usize,
    steps: usize,
) -> Vec<(f64, Vec<f64>)> {
    values
        .chunks_exact(stride)
        .take(steps)
        .map(|slot| {
            let (js, weights) = slot.split_at(k);
            (
                js.iter().map(|v| v.to_f64()).sum(),
                weights.iter().map(|v| v.to_f64()).collect(),
            )
        })
        .collect()
}

/// Codes of one length for the query and database sets.
#[derive(Clone, Debug)]
pub struct LengthCodes {
    /// Code length in bits.
    pub bits: usize,
    /// Query codes.
    pub query: Codes,
    /// Database codes.
    pub database: Codes,
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    /// One entry per length, in `config.bits` order.
    pub codes: Vec<LengthCodes>,
    /// Wall-clock seconds of the training loops only (no data loading, no evaluation).
    pub train_seconds: f64,
    /// Seconds per epoch (summed over the models of a `single` run).
    pub epoch_seconds: Vec<f64>,
    /// Mean over the epoch's batches of `sum_k J_k` (summed over the models of a `single` run).
    pub loss_per_epoch: Vec<f64>,
    /// Every parameter of every model.
    pub params: Vec<NamedParam>,
    /// mAP@ALL at every validation (`config.eval_every`), in training order.
    pub validations: Vec<Validation>,
    /// Every model's live backbone units after training, in training order.
    pub live_units: Vec<LiveUnits>,
    /// Weighted modes (`adaptive`, `full`): per epoch, the mean over its batches of each length's
    /// dominance weight `w_k` (docs/METHOD.md 2.2; they sum to `K` at every step, so their means
    /// do too); empty in the other modes.
    pub weights_per_epoch: Vec<Vec<f64>>,
}

/// How much of a trained model's backbone is alive: the hidden units that fire for at least one
/// training item. Losses that kill most of them (DHN and the other bank likelihoods on raw
/// outputs, docs/METHOD.md Q16) give codes that swing from seed to seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveUnits {
    /// The model's longest code length (in a `single` run, the model of that length).
    pub bits: usize,
    /// Hidden units that fire for at least one training item.
    pub live: usize,
    /// The backbone's hidden width.
    pub hidden: usize,
}

impl LiveUnits {
    /// Below this fraction of live units a run is reported as having lost most of its backbone.
    pub const FEW: f64 = 0.25;

    /// Whether fewer than [`Self::FEW`] of the hidden units are alive.
    pub fn few(&self) -> bool {
        (self.live as f64) < Self::FEW * self.hidden as f64
    }
}

/// mAP@ALL of some lengths after an epoch (during training, on the query set).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Validation {
    /// Epoch just finished, from 1.
    pub epoch: usize,
    /// `(bits, mAP@ALL)` of the lengths the model being trained has.
    pub map: Vec<(usize, f64)>,
}

impl TrainOutcome {
    /// Each length's best mAP@ALL over the validations (the reference's reporting), if any.
    pub fn best_validation_map(&self) -> Vec<(usize, f64)> {
        let mut best: Vec<(usize, f64)> = Vec::new();
        for (bits, map) in self.validations.iter().flat_map(|v| v.map.iter().copied()) {
            match best.iter_mut().find(|(b, _)| *b == bits) {
                Some(entry) => entry.1 = entry.1.max(map),
                None => best.push((bits, map)),
            }
        }
        best.sort_by_key(|&(b, _)| b);
        best
    }
}

/// Where training is, reported for every batch when its loss is read back with those of up to
/// 15 later ones (once per 16 steps).
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// Index of the model being trained (`single` trains one per length).
    pub model: usize,
    /// Number of models.
    pub models: usize,
    /// Epoch, from 0.
    pub epoch: usize,
    /// Epochs per model.
    pub epochs: usize,
    /// Batches done in this epoch.
    pub batch: usize,
    /// Batches per epoch.
    pub batches: usize,
    /// Mean loss of this epoch's batches so far.
    pub running_loss: f64,
}

/// Checks that a caller may add to those every run makes (a loss that is not finite or grows by
/// orders of magnitude stops any run).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checks {
    /// Stop with [`TrainError::Collapsed`] when every code of a length is one value at an
    /// evaluation (each validation and the final encoding). Very short runs on small data can
    /// end before the shortest codes separate the items, so this is the caller's choice;
    /// `cargo xtask train` makes it.
    pub collapse: bool,
}

/// Trains the model(s) that `config` asks for on `split.train` and encodes the query and
/// database sets. `single` trains one model per length one after the other; every other mode
/// trains one nested model for all lengths.
pub fn train<B: HashingOps<Elem = f32>>(
    backend: &B,
    split: &Split,
    config: &TrainConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<TrainOutcome, TrainError> {
    train_checked(backend, split, config, Checks::default(), progress)
}

/// [`train`] with the extra `checks`.
pub fn train_checked<B: HashingOps<Elem = f32>>(
    backend: &B,
    split: &Split,
    config: &TrainConfig,
    checks: Checks,
    progress: &mut dyn FnMut(&Progress),
) -> Result<TrainOutcome, TrainError> {
    let mut control = Control {
        stop: &|| false,
        checkpoint: None,
    };
    train_resumable(backend, split, config, checks, None, &mut control, progress)
}

/// One model's training an epoch at a time, as [`train`] runs each of its models, for callers
/// that interleave several runs: `cargo xtask bench train` alternates the modes epoch by epoch,
/// so that a slow spell of a shared machine falls on all of them alike.
pub struct EpochRunner<'a, B: HashingOps<Elem = f32>> {
    run: ModelRun<'a, B>,
    epochs_done: usize,
}

impl<'a, B: HashingOps<Elem = f32>> EpochRunner<'a, B> {
    /// A fresh model with the code lengths `bits` (`config.bits` for the nested modes; one
    /// length for each model of a `single` run), initialised as [`train`] initialises it.
    pub fn new(
        backend: &'a B,
        split: &Split,
        config: &'a TrainConfig,
        bits: &[usize],
    ) -> Result<Self, TrainError> {
        validate(config, split)?;
        Ok(EpochRunner {
            run: ModelRun::new(backend, split, config, bits)?,
            epochs_done: 0,
        })
    }

    /// Trains one more epoch; returns its wall-clock seconds (the training loop only) and its
    /// mean batch loss.
    pub fn epoch(&mut self) -> Result<(f64, f64), TrainError> {
        let end = self
            .run
            .epoch(self.epochs_done, None, &|| false, &mut |_, _, _| {})?;
        self.epochs_done += 1;
        Ok((end.seconds, end.mean_loss()))
    }

    /// The time the steps since the last call spent in each phase (then starts a new count).
    pub fn take_phases(&mut self) -> StepPhases {
        std::mem::take(&mut self.run.phases)
    }
}

/// The state of one model's training: parameters, optimiser, losses, data on the device.
pub(crate) struct ModelRun<'a, B: HashingOps<Elem = f32>> {
    pub(crate) backend: &'a B,
    pub(crate) config: &'a TrainConfig,
    pub(crate) bits: Vec<usize>,
    pub(crate) model: NestedHashModel<B>,
    pub(crate) adam: Adam<B>,
    pub(crate) losses: LossSet<B>,
    pub(crate) train_features: B::Buf,
    pub(crate) train_labels: B::Buf,
    /// Each training item's row in the losses' target tables.
    pub(crate) target_rows: Vec<u32>,
    pub(crate) n_train: usize,
    pub(crate) shuffle: SplitMix64,
    /// The running level of the batch losses, for the divergence check.
    pub(crate) monitor: LossMonitor,
    /// What to change if training goes wrong.
    pub(crate) advice: Advice,
    /// Where the steps' time went, since [`EpochRunner::take_phases`] last read it.
    pub(crate) phases: StepPhases,
}

impl<'a, B: HashingOps<Elem = f32>> ModelRun<'a, B> {
    pub(crate) fn new(
        backend: &'a B,
        split: &Split,
        config: &'a TrainConfig,
        bits: &[usize],
    ) -> Result<Self, TrainError> {
        let train = &split.train;
        let code_bits = bits[bits.len() - 1];
        let model =
            NestedHashModel::new(backend, train.dim, config.hidden, code_bits, config.seed)?;
        let adam = Adam::new(backend, &model.params, config.lr, config.weight_decay)?;
        let losses = LossSet::new(backend, config, train, bits, &model)?;
        let train_features = backend.upload(&train.features, Shape::new(train.len(), train.dim))?;
        let train_labels = backend.upload(
            &train.label_matrix(),
            Shape::new(train.len(), train.n_classes()),
        )?;
        Ok(Self {
            backend,
            config,
            bits: bits.to_vec(),
            model,
            adam,
            losses,
            train_features,
            train_labels,
            target_rows: target_rows(&train.labels),
            n_train: train.len(),
            shuffle: SplitMix64::new(config.seed ^ SHUFFLE_STREAM),
            monitor: LossMonitor::default(),
            advice: Advice::new(train, config.lr),
            phases: StepPhases::default(),
        })
    }

    /// One pass over the shuffled training set, or the rest of one: `from` is what the batches
    /// already done of an epoch resumed with the shuffling state of its start recorded. Stops
    /// after the first step at which `stop` is true.
    ///
    /// A step reads nothing back (the adaptive modes' weights stay on the device too): its
    /// objectives, and in the weighted modes its weights, are copied into a device buffer of
    /// [`LOSS_CHUNK`] slots, downloaded once per chunk and summed on the host exactly as a
    /// per-step read-back would (so `loss_per_epoch` and the weights' means do not depend on the
    /// chunk, nor on where a run stopped and resumed). `report` and the divergence check then run
    /// for each batch of the chunk in order.
    pub(crate) fn epoch(
        &mut self,
        epoch: usize,
        from: Option<EpochSums>,
        stop: &dyn Fn() -> bool,
        report: &mut dyn FnMut(usize, usize, f64),
    ) -> Result<EpochEnd, TrainError> {
        let start_shuffle = self.shuffle.state();
        let mut order: Vec<u32> = (0..self.n_train as u32).collect();
        self.shuffle.shuffle(&mut order);
        let batches = order.len().div_ceil(self.config.batch_size);
        let k = self.bits.len();
        let weighted = self.config.mode.adaptive();
        let stride = if weighted { 2 * k } else { k };
        let start = Instant::now();
        let mut sums = from.unwrap_or_default();
        let skip = sums.done;
        if weighted && sums.weight_sum.is_empty() {
            sums.weight_sum = vec![0.0; k];
        }
        // Copies, so that the steps below may borrow `self` while `record` holds these.
        let mut monitor = self.monitor;
        let advice = self.advice.clone();
        let mut record = |steps: Vec<(f64, Vec<f64>)>| -> Result<(), TrainError> {
            for (loss, weights) in steps {
                let batch = sums.done;
                monitor.observe(loss, BatchAt { epoch, batch }, &advice)?;
                sums.loss_sum += loss;
                for (sum, w) in sums.weight_sum.iter_mut().zip(weights) {
                    *sum += w;
                }
                sums.done += 1;
                report(sums.done, batches, sums.loss_sum / sums.done as f64);
            }
            Ok(())
        };
        // (device slots of the pending steps' objectives and weights, how many are filled)
        let mut pending: Option<(B::Buf, usize)> = None;
        let mut stopped = false;
        for indices in order.chunks(self.config.batch_size).skip(skip) {
            let (objectives, weights) = self.step(indices, epoch)?;
            let be = self.backend;
            let (slots, used) = match &mut pending {
                Some(p) => p,
                None => pending.insert((be.zeros(Shape::new(1, stride * LOSS_CHUNK))?, 0)),
            };
            // Adding to zero copies the values exactly.
            be.add_prefix_scaled(slots, *used * stride, &objectives, 1.0)?;
            if let Some(w) = &weights {
                be.add_prefix_scaled(slots, *used * stride + k, w, 1.0)?;
            }
            *used += 1;
            if *used == LOSS_CHUNK {
                let (slots, used) = pending.take().unwrap_or_else(|| unreachable!());
                record(step_records(&be.download(&slots)?, k, stride, used))?;
            }
            if stop() {
                stopped = true;
                break;
            }
        }
        if let Some((slots, used)) = pending.take() {
            record(step_records(
                &self.backend.download(&slots)?,
                k,
                stride,
                used,
            ))?;
        }
        self.monitor = monitor;
        self.backend.sync()?;
        Ok(EpochEnd {
            seconds: start.elapsed().as_secs_f64(),
            batches,
            sums,
            start_shuffle,
            stopped,
        })
    }

    /// One optimiser step on the batch `indices` in epoch `epoch` (from 0); returns the `1 x K`
    /// objectives `J_k` and, in the weighted modes, the `1 x K` dominance weights, still on the
    /// device.
    fn step(
        &mut self,
        indices: &[u32],
        epoch: usize,
    ) -> Result<(B::Buf, Option<B::Buf>), TrainError> {
        let be = self.backend;
        let mut clock = PhaseClock::start();
        let n = indices.len();
        let idx = be.upload_idx(indices)?;
        let rows: Vec<u32> = indices
            .iter()
            .map(|&i| self.target_rows[i as usize])
            .collect();
        let target_rows = be.upload_idx(&rows)?;
        let tape = Tape::new(be);
        let x = tape.constant(be.gather_rows(&self.train_features, &idx)?);
        let labels = be.gather_rows(&self.train_labels, &idx)?;
        let fwd = self.model.forward(&tape, &x)?;
        // The reference writes the batch into the bank before the loss reads it.
        self.losses.write_batch(
            be,
            &self.model,
            x.value(),
            &idx,
            fwd.codes.value(),
            &labels,
            epoch,
        )?;

        clock.lap(Phase::Forward);

        // Phase 1: every length's objective J_k and its output gradient D_k = dJ_k/dU_k.
        let code_bits = self.model.code_bits();
        let ctx = BatchContext {
            idx: &idx,
            target_rows: &target_rows,
            labels: &labels,
            bank: self.losses.bank.as_ref(),
            epoch,
        };
        let distill = self
            .config
            .mode
            .distill()
            .then_some(self.config.distill_weight as f64);
        let base_scales = self
            .config
            .length_scale
            .factors(self.config.method, &self.bits);
        let objectives_of_lengths = || {
            length_gradients(
                be,
                &self.losses.lengths,
                &self.bits,
                fwd.codes.value(),
                &ctx,
                &base_scales,
                distill,
            )
        };
        // Adaptive modes need the batch Gram matrix of the hash layer's input, which depends on
        // nothing the objectives compute: where the backend runs parallel calls in parallel, it
        // is formed while they are.
        let adaptive = self.config.mode.adaptive();
        let features = fwd.features.value();
        let (gram, LengthGradients { objectives, d }) = if adaptive && be.parallel_calls() {
            let (gram, lengths) = rayon::join(|| be.gram(features), objectives_of_lengths);
            (Some(gram?), lengths?)
        } else {
            let lengths = objectives_of_lengths()?;
            let gram = adaptive.then(|| be.gram(features)).transpose()?;
            (gram, lengths)
        };

        clock.lap(Phase::Objectives);

        // Adaptive modes: the dominance weights are computed from the gradient products on the
        // device, so no mode reads anything back here.
        let weights = match gram {
            Some(gram) => {
                Some(GradientProducts::new(be, &gram, &d)?.weights(be, self.config.beta)?)
            }
            None => None,
        };

        clock.lap(Phase::Weights);

        // Phase 2: seed the shared output with sum_k w_k pad(D_k), one backward pass.
        let mut seed = be.zeros(Shape::new(n, code_bits))?;
        for (i, dk) in d.iter().enumerate() {
            match &weights {
                Some(w) => be.add_prefix_weighted(&mut seed, 0, dk, w, i)?,
                None => be.add_prefix_scaled(&mut seed, 0, dk, 1.0)?,
            }
        }
        let grads = tape.backward_from(&[(&fwd.codes, seed)])?;
        self.model.params.accumulate(be, &grads)?;
        if self.config.reference_grad_leak && self.config.mode.adaptive() {
            if let Some(d_longest) = d.last() {
                self.model
                    .add_hash_grad(be, d_longest, fwd.features.value())?;
            }
        }
        clock.lap(Phase::Backward);
        self.adam.step(be, &mut self.model.params)?;
        clock.lap(Phase::Update);
        clock.finish(&mut self.phases);
        Ok((objectives, weights))
    }

    /// Codes of every length for the query and database sets (bit = output > 0).
    pub(crate) fn encode(&self, split: &Split) -> Result<Vec<LengthCodes>, TrainError> {
        let query = self.outputs(&split.query)?;
        let database = self.outputs(&split.database)?;
        let code_bits = self.model.code_bits();
        self.bits
            .iter()
            .map(|&b| {
                Ok(LengthCodes {
                    bits: b,
                    query: prefix_codes(&query, split.query.len(), code_bits, b)?,
                    database: prefix_codes(&database, split.database.len(), code_bits, b)?,
                })
            })
            .collect()
    }

    /// [`check_collapse`] of `codes`, with this run's advice.
    pub(crate) fn check_collapse(
        &self,
        codes: &[LengthCodes],
        split: &Split,
        after: &str,
    ) -> Result<(), TrainError> {
        check_collapse(
            codes,
            split,
            after,
            &self.advice.for_collapse(&self.monitor),
        )
    }

    /// The hash layer's real outputs (`n x B`, row-major) for every item of `set`.
    /// The model's [`LiveUnits`] over the items of `set` (the training items).
    pub(crate) fn live_units(&self, set: &Dataset) -> Result<LiveUnits, TrainError> {
        let mut fired: Vec<bool> = Vec::new();
        for start in (0..set.len()).step_by(ENCODE_BATCH) {
            let end = (start + ENCODE_BATCH).min(set.len());
            let x = &set.features[start * set.dim..end * set.dim];
            let chunk = self.model.fired_units(self.backend, x, end - start)?;
            if fired.is_empty() {
                fired = chunk;
            } else {
                fired.iter_mut().zip(chunk).for_each(|(f, c)| *f |= c);
            }
        }
        Ok(LiveUnits {
            bits: self.model.code_bits(),
            live: fired.iter().filter(|&&f| f).count(),
            hidden: fired.len(),
        })
    }

    fn outputs(&self, set: &Dataset) -> Result<Vec<f32>, TrainError> {
        let mut out = Vec::with_capacity(set.len() * self.model.code_bits());
        for start in (0..set.len()).step_by(ENCODE_BATCH) {
            let end = (start + ENCODE_BATCH).min(set.len());
            let x = &set.features[start * set.dim..end * set.dim];
            out.extend(self.model.outputs(self.backend, x, end - start)?);
        }
        Ok(out)
    }
}

/// mAP@ALL of every length of `codes` on the query set against the database.
pub(crate) fn mean_average_precision(
    codes: &[LengthCodes],
    split: &Split,
) -> Result<Vec<(usize, f64)>, TrainError> {
    let metrics = evaluate_lengths(
        codes
            .iter()
            .map(|c| (c.bits, c.query.view(), c.database.view())),
        &split.query.labels,
        &split.database.labels,
        &[],
    )?;
    Ok(metrics.iter().map(|m| (m.bits, m.map)).collect())
}

/// Packs the first `bits` columns of `n x width` outputs into codes.
fn prefix_codes(
    values: &[f32],
    n: usize,
    width: usize,
    bits: usize,
) -> Result<Codes, nhl_index::IndexError> {
    if bits == width {
        return Codes::from_signs(n, bits, values);
    }
    let prefix: Vec<f32> = values
        .chunks_exact(width)
        .flat_map(|row| row[..bits].iter().copied())
        .collect();
    Codes::from_signs(n, bits, &prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Method, Mode};
    use crate::data::{Dataset, Split};
    use nhl_index::eval::Labels;
    use nhl_kernels::cpu::CpuBackend;
    use nhl_kernels::testing::random_vec;

    fn tiny_set(items: usize, seed: u64) -> Dataset {
        Dataset {
            features: random_vec(seed, items * 6, 0.0, 1.0)
                .into_iter()
                .map(|v| v as f32)
                .collect(),
            dim: 6,
            labels: Labels::Single((0..items as u32).map(|i| i % 3).collect()),
            n_classes: 3,
        }
    }

    /// Errors about the sets name them, never flags that do not exist.
    #[test]
    fn split_errors_name_the_sets() {
        let config = TrainConfig::default();
        let mut split = Split {
            name: "tiny".into(),
            query: tiny_set(3, 1),
            train: tiny_set(12, 2),
            database: tiny_set(5, 3),
        };
        split.query.dim = 3;
        split.query.features.truncate(9);
        let e = validate(&config, &split).unwrap_err().to_string();
        assert!(
            e.contains("the query items have 3 features, the training items 6")
                && !e.contains("--features"),
            "{e}"
        );
        split.query = tiny_set(3, 1);
        split.train = tiny_set(1, 2);
        let e = validate(&config, &split).unwrap_err().to_string();
        assert!(
            e.contains("at least 2 items") && e.contains("got 1") && !e.contains("--train "),
            "{e}"
        );
    }

    /// A step leaves no handle to a parameter alive when the optimiser updates it, so the CPU
    /// backend updates every parameter in place instead of copying it first.
    #[test]
    fn a_step_updates_the_parameters_in_place() {
        let split = Split {
            name: "tiny".into(),
            query: tiny_set(3, 1),
            train: tiny_set(12, 2),
            database: tiny_set(5, 3),
        };
        let cpu = CpuBackend::<f32>::new();
        for mode in [Mode::Full, Mode::Nested] {
            let config = TrainConfig {
                mode,
                bits: vec![4, 8],
                hidden: 16,
                batch_size: 4,
                ..TrainConfig::default()
            };
            let mut run = ModelRun::new(&cpu, &split, &config, &config.bits).unwrap();
            let snapshot = |run: &ModelRun<'_, CpuBackend<f32>>| -> Vec<(*const f32, Vec<f32>)> {
                run.model
                    .params
                    .iter()
                    .map(|(_, p)| (p.value.as_slice().as_ptr(), p.value.as_slice().to_vec()))
                    .collect()
            };
            let before = snapshot(&run);
            run.step(&[0, 5, 7, 10], 0).unwrap();
            let after = snapshot(&run);
            for (i, ((p0, v0), (p1, v1))) in before.iter().zip(&after).enumerate() {
                assert_eq!(
                    p0, p1,
                    "{mode:?}: parameter {i} was copied, not updated in place"
                );
                assert_ne!(v0, v1, "{mode:?}: parameter {i} did not change");
            }
        }
    }

    /// The bank holds the batch before any loss of the step reads it, as in the reference: after
    /// a step the batch's rows hold its codes (DBDH's clamped, MDSH's momentum codes), and the
    /// step's objectives are the losses evaluated against that bank, not against the bank as it
    /// was before the step.
    #[test]
    fn a_step_writes_the_bank_before_the_losses_read_it() {
        use crate::losses::{Bank, BatchContext};
        use nhl_kernels::{Backend, Unary};

        let split = Split {
            name: "tiny".into(),
            query: tiny_set(3, 1),
            train: tiny_set(12, 2),
            database: tiny_set(5, 3),
        };
        let cpu = CpuBackend::<f32>::new();
        let batch = [0u32, 5, 7, 10];
        for method in [
            Method::Dsh,
            Method::Dhn,
            Method::Dbdh,
            Method::Dpsh,
            Method::Mdsh,
        ] {
            let config = TrainConfig {
                method,
                mode: Mode::Nested,
                bits: vec![4, 8],
                hidden: 16,
                batch_size: 4,
                loss_params: [("pair_from".to_string(), 0.0)]
                    .into_iter()
                    .filter(|_| method == Method::Mdsh)
                    .collect(),
                ..TrainConfig::default()
            };
            let mut run = ModelRun::new(&cpu, &split, &config, &config.bits).unwrap();
            // Codes far from zero, so that the bank's contents move every loss.
            let ids: Vec<_> = run.model.params.iter().map(|(id, _)| id).collect();
            for id in ids {
                let p = run.model.params.get_mut(id);
                if p.name == "hash.weight" {
                    p.value = cpu.unary(Unary::Scale(100.0), &p.value).unwrap();
                }
            }
            let idx = cpu.upload_idx(&batch).unwrap();
            let x = cpu.gather_rows(&run.train_features, &idx).unwrap();
            let labels = cpu.gather_rows(&run.train_labels, &idx).unwrap();
            let tape = Tape::new(&cpu);
            let codes = tape
                .no_grad(|| run.model.forward(&tape, &tape.constant(x.clone())))
                .unwrap()
                .codes
                .value()
                .clone();
            let objectives = cpu.download(&run.step(&batch, 0).unwrap().0).unwrap();
            let bank = run.losses.bank.as_ref().unwrap();
            let written = match method {
                Method::Dbdh => cpu
                    .unary(Unary::Clamp { lo: -1.0, hi: 1.0 }, &codes)
                    .unwrap(),
                Method::Mdsh => run
                    .losses
                    .momentum
                    .as_ref()
                    .unwrap()
                    .codes(&cpu, &x)
                    .unwrap(),
                _ => codes.clone(),
            };
            assert_eq!(
                cpu.download(&cpu.gather_rows(&bank.codes, &idx).unwrap())
                    .unwrap(),
                cpu.download(&written).unwrap(),
                "{method}: the bank holds the batch"
            );
            let before = Bank::new(&cpu, split.train.len(), 8, 3).unwrap();
            let value = |bank: &Bank<CpuBackend<f32>>, k: usize| -> f64 {
                let rows = cpu.upload_idx(&batch.map(|i| i % 3)).unwrap();
                let ctx = BatchContext {
                    idx: &idx,
                    target_rows: &rows,
                    labels: &labels,
                    bank: Some(bank),
                    epoch: 0,
                };
                let tape = Tape::new(&cpu);
                let u = tape.constant(cpu.slice_cols(&codes, 0, config.bits[k]).unwrap());
                let j = run.losses.lengths[k].eval(&tape, &u, &ctx).unwrap();
                f64::from(tape.to_vec(&j).unwrap()[0])
            };
            // The step's objectives carry each length's scale (per bit for DSH by default).
            let scales = config.length_scale.factors(method, &config.bits);
            for (k, &objective) in objectives.iter().enumerate() {
                let (after, stale) = (scales[k] * value(bank, k), scales[k] * value(&before, k));
                let objective = f64::from(objective);
                assert!(
                    (objective - after).abs() <= 1e-5 * after.abs(),
                    "{method} length {k}: the step's {objective} is the loss {after} against the \
                     bank after the write"
                );
                assert!(
                    (objective - stale).abs() > 1e-3 * stale.abs(),
                    "{method} length {k}: {objective} is also the loss {stale} before the write"
                );
            }
        }
    }
}

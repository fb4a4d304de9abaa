//! Training that has gone wrong, caught while it happens: a loss that is not finite, a loss that
//! grows by orders of magnitude over its running level, features too large for float32, and codes
//! that collapse to one value. Each error says which happened and what to change.

use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Split};
use crate::error::TrainError;
use crate::trainer::LengthCodes;

/// How far above its lowest running level a batch loss may rise before the run counts as
/// diverged: three orders of magnitude.
pub const GROWTH_LIMIT: f64 = 1e3;
/// Weight of the newest batch in the running level (an exponential moving average).
const LEVEL_WEIGHT: f64 = 0.05;
/// The lowest running level is floored at this share of the first batch's loss, so that a loss
/// that has fallen to (nearly) zero does not make ordinary noise look like growth.
const FLOOR_SHARE: f64 = 1e-2;
/// Features beyond this magnitude are named as the likely cause when training diverges: the
/// backbone and its initialisation expect features of order 1.
const SUSPECT_FEATURE: f32 = 1e6;

/// The running level of the batch losses of one model, in the order the batches ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LossMonitor {
    /// The first batch's loss (`None` before any batch).
    first: Option<f64>,
    /// Exponential moving average of the batch losses.
    level: f64,
    /// The lowest `level` so far.
    lowest: f64,
}

/// Where a batch ran, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchAt {
    /// Epoch, from 0.
    pub epoch: usize,
    /// Batch in the epoch, from 0.
    pub batch: usize,
}

impl LossMonitor {
    /// Takes the loss of the next batch; an error when it is not finite or more than
    /// [`GROWTH_LIMIT`] times the lowest running level so far. `advice` says what to change.
    pub fn observe(&mut self, loss: f64, at: BatchAt, advice: &Advice) -> Result<(), TrainError> {
        if !loss.is_finite() {
            return Err(TrainError::Diverged {
                epoch: at.epoch,
                batch: at.batch,
                value: loss,
                advice: advice.to_string(),
            });
        }
        let Some(first) = self.first else {
            *self = LossMonitor {
                first: Some(loss),
                level: loss,
                lowest: loss,
            };
            return Ok(());
        };
        let reference = self.lowest.max(first * FLOOR_SHARE);
        if reference > 0.0 && loss > GROWTH_LIMIT * reference {
            return Err(TrainError::LossGrew {
                epoch: at.epoch,
                batch: at.batch,
                value: loss,
                level: reference,
                advice: advice.to_string(),
            });
        }
        self.level += LEVEL_WEIGHT * (loss - self.level);
        self.lowest = self.lowest.min(self.level);
        Ok(())
    }
}

/// What to change when training goes wrong: the features' scale when they are far from order 1,
/// else the learning rate.
#[derive(Clone, Debug, PartialEq)]
pub struct Advice {
    lr: f32,
    /// The largest training feature in magnitude, with its item and feature, when suspect.
    large_feature: Option<(f32, usize, usize)>,
    /// Every training item has the same features.
    constant: bool,
}

impl Advice {
    /// The advice for training on `train` with learning rate `lr`.
    pub fn new(train: &Dataset, lr: f32) -> Advice {
        let large_feature =
            largest_feature(train).filter(|&(value, _, _)| value.abs() > SUSPECT_FEATURE);
        let dim = train.dim.max(1);
        let mut rows = train.features.chunks_exact(dim);
        let first = rows.next();
        let constant = train.len() > 1 && first.is_some_and(|r0| rows.all(|r| r == r0));
        Advice {
            lr,
            large_feature,
            constant,
        }
    }
}

impl Advice {
    /// What to change when codes collapse: the features when they are the cause, else the
    /// learning rate if the loss rose (`monitor`'s level above its first batch), or longer
    /// training if it fell without separating the items.
    pub fn for_collapse(&self, monitor: &LossMonitor) -> String {
        let Some(first) = monitor.first else {
            return self.to_string();
        };
        if self.constant || self.large_feature.is_some() || monitor.level > first {
            let rose = format!("the loss rose from {first:.4} to {:.4}; ", monitor.level);
            let rose = if monitor.level > first {
                rose
            } else {
                String::new()
            };
            return format!("{rose}{self}");
        }
        format!(
            "the loss fell from {first:.4} to {:.4} without separating the items: train longer \
             (--epochs) or with a larger --lr (now {})",
            monitor.level, self.lr
        )
    }
}

impl std::fmt::Display for Advice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.constant {
            return write!(
                f,
                "every training item has the same features, so nothing tells the classes apart: \
                 check the features file"
            );
        }
        match self.large_feature {
            Some((value, item, feature)) => write!(
                f,
                "the training features reach {value:e} (item {item}, feature {feature}): scale \
                 them to order 1 (e.g. standardise each feature); a smaller --lr will not help"
            ),
            None => write!(f, "try a smaller --lr (now {})", self.lr),
        }
    }
}

/// The feature of largest magnitude of `set`: (value, item, feature).
fn largest_feature(set: &Dataset) -> Option<(f32, usize, usize)> {
    let (at, value) = set
        .features
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))?;
    Some((*value, at / set.dim.max(1), at % set.dim.max(1)))
}

/// Fails when some feature of `split` is so large that the dot product of two feature vectors
/// overflows float32 (`|x|^2 dim > f32::MAX`): the backbone, and the Gram matrices of the adaptive
/// modes, compute such products, so training could only produce infinities.
pub fn check_feature_scale(split: &Split) -> Result<(), TrainError> {
    for (name, set) in [
        ("training", &split.train),
        ("query", &split.query),
        ("database", &split.database),
    ] {
        let Some((value, item, feature)) = largest_feature(set) else {
            continue;
        };
        let limit = (f32::MAX as f64 / set.dim.max(1) as f64).sqrt();
        if f64::from(value.abs()) > limit {
            return Err(TrainError::FeatureScale {
                set: name,
                item,
                feature,
                value,
                limit,
            });
        }
    }
    Ok(())
}

/// Fails when every code of some length is one value for every query and database item while
/// the database holds more than one class (one code for all cannot rank anything). `after`
/// names the evaluation for the message ("epoch 3", "training"); `advice` says what to change
/// ([`Advice::for_collapse`]).
pub fn check_collapse(
    codes: &[LengthCodes],
    split: &Split,
    after: &str,
    advice: &str,
) -> Result<(), TrainError> {
    if !several_classes(&split.database) {
        return Ok(());
    }
    match codes.iter().find(|c| one_code(c)) {
        Some(c) => Err(TrainError::Collapsed {
            bits: c.bits,
            items: c.query.len() + c.database.len(),
            after: after.to_string(),
            advice: advice.to_string(),
        }),
        None => Ok(()),
    }
}

/// The lengths, in `codes` order, whose every query and database code is one value while the
/// database holds more than one class: collapsed codes, which rank every item alike.
pub fn collapsed_lengths(codes: &[LengthCodes], split: &Split) -> Vec<usize> {
    if !several_classes(&split.database) {
        return Vec::new();
    }
    codes
        .iter()
        .filter(|c| one_code(c))
        .map(|c| c.bits)
        .collect()
}

/// Whether every query and database code of `c` is the same (and there is at least one).
fn one_code(c: &LengthCodes) -> bool {
    let per_code = c.bits.div_ceil(8);
    let query = c.query.to_bytes();
    let database = c.database.to_bytes();
    let mut all = query
        .chunks_exact(per_code)
        .chain(database.chunks_exact(per_code));
    match all.next() {
        Some(first) => all.all(|code| code == first),
        None => false,
    }
}

fn several_classes(set: &Dataset) -> bool {
    match &set.labels {
        nhl_index::eval::Labels::Single(classes) => classes.windows(2).any(|w| w[0] != w[1]),
        nhl_index::eval::Labels::Multi { rows, .. } => rows.windows(2).any(|w| w[0] != w[1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhl_index::eval::Labels;
    use nhl_index::Codes;

    fn set(features: Vec<f32>, dim: usize, labels: Vec<u32>) -> Dataset {
        Dataset {
            features,
            dim,
            labels: Labels::Single(labels),
            n_classes: 3,
        }
    }

    fn advice() -> Advice {
        Advice::new(&set(vec![0.5, -2.0], 2, vec![0]), 0.25)
    }

    fn at(batch: usize) -> BatchAt {
        BatchAt { epoch: 1, batch }
    }

    #[test]
    fn ordinary_curves_pass() {
        // Falling, noisy, and falling to zero then wobbling: never three orders above the floor.
        let mut m = LossMonitor::default();
        for i in 0..2000 {
            let loss = 5.0 / (1.0 + i as f64) * (1.0 + 0.5 * ((i * 7919) % 13) as f64 / 13.0);
            m.observe(loss, at(i), &advice()).unwrap();
        }
        let mut m = LossMonitor::default();
        for i in 0..500 {
            let loss = if i < 100 {
                1.0
            } else if i % 50 == 0 {
                0.4
            } else {
                0.0
            };
            m.observe(loss, at(i), &advice()).unwrap();
        }
    }

    #[test]
    fn a_loss_that_explodes_or_is_not_finite_stops_the_run() {
        let mut m = LossMonitor::default();
        for i in 0..10 {
            m.observe(2.0, at(i), &advice()).unwrap();
        }
        let e = m.observe(2.5e3, at(10), &advice()).unwrap_err().to_string();
        assert!(
            e.contains("2500")
                && e.contains("running level of 2")
                && e.contains("epoch 2, batch 11")
                && e.contains("--lr (now 0.25)"),
            "{e}"
        );
        let mut m = LossMonitor::default();
        for i in 0..10 {
            m.observe(2.0, at(i), &advice()).unwrap();
        }
        m.observe(1.9e3, at(10), &advice()).unwrap();
        // Slow growth: a doubling per batch outruns the running level by 1000x in time.
        let mut m = LossMonitor::default();
        let stopped =
            (0..100).find(|&i| m.observe(2f64.powi(i), at(i as usize), &advice()).is_err());
        assert!(matches!(stopped, Some(10..=20)), "{stopped:?}");
        let e = LossMonitor::default()
            .observe(f64::NAN, at(3), &advice())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("NaN") && e.contains("batch 4") && e.contains("--lr"),
            "{e}"
        );
    }

    #[test]
    fn large_features_are_named_as_the_cause() {
        let big = set(vec![0.5, 3e7, -1.0, 2.0], 2, vec![0, 1]);
        let text = Advice::new(&big, 1e-3).to_string();
        assert!(
            text.contains("3e7")
                && text.contains("item 0, feature 1")
                && text.contains("will not help"),
            "{text}"
        );
        let split = |train: Dataset| Split {
            name: "t".into(),
            query: set(vec![1.0, 1.0], 2, vec![0]),
            train,
            database: set(vec![1.0, 1.0], 2, vec![0]),
        };
        check_feature_scale(&split(big)).unwrap();
        let e = check_feature_scale(&split(set(vec![0.5, 1e37, 1.0, 1.0], 2, vec![0, 1])))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("training features")
                && e.contains("1e37")
                && e.contains("item 0, feature 1"),
            "{e}"
        );
    }

    #[test]
    fn codes_that_are_all_one_value_are_a_collapse() {
        let codes = |bytes: &[u8]| Codes::from_bytes(bytes.len(), 8, bytes).unwrap();
        let length = |q: &[u8], d: &[u8]| LengthCodes {
            bits: 8,
            query: codes(q),
            database: codes(d),
        };
        let split = |labels: Vec<u32>| Split {
            name: "t".into(),
            query: set(vec![0.0; 2], 1, vec![0, 1]),
            train: set(vec![0.0; 2], 1, vec![0, 1]),
            database: set(vec![0.0; 3], 1, labels),
        };
        let two = split(vec![0, 1, 1]);
        check_collapse(&[length(&[5, 5], &[5, 5, 4])], &two, "training", "advice").unwrap();
        let e = check_collapse(&[length(&[5, 5], &[5, 5, 5])], &two, "epoch 2", "advice")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("every 8-bit code")
                && e.contains("5 query and database items")
                && e.contains("after epoch 2: the codes collapsed; advice"),
            "{e}"
        );
        // One class: the same code for every item is the right answer.
        check_collapse(
            &[length(&[5, 5], &[5, 5, 5])],
            &split(vec![1, 1, 1]),
            "training",
            "",
        )
        .unwrap();
    }

    /// Every collapsed length is named, not only the first, and the check fails on the first
    /// collapsed one even behind a healthy shorter length.
    #[test]
    fn every_collapsed_length_is_listed() {
        let codes = |bits: usize, bytes: &[u8]| {
            Codes::from_bytes(bytes.len() / bits.div_ceil(8), bits, bytes).unwrap()
        };
        let length = |bits: usize, q: &[u8], d: &[u8]| LengthCodes {
            bits,
            query: codes(bits, q),
            database: codes(bits, d),
        };
        let split = Split {
            name: "t".into(),
            query: set(vec![0.0; 2], 1, vec![0, 1]),
            train: set(vec![0.0; 2], 1, vec![0, 1]),
            database: set(vec![0.0; 3], 1, vec![0, 1, 1]),
        };
        let lengths = [
            length(8, &[5, 6], &[5, 5, 4]),
            length(16, &[5, 6, 5, 6], &[5, 6, 5, 6, 5, 6]),
            length(24, &[1, 2, 3, 1, 2, 3], &[1, 2, 3, 1, 2, 3, 1, 2, 3]),
        ];
        assert_eq!(collapsed_lengths(&lengths, &split), vec![16, 24]);
        assert_eq!(
            collapsed_lengths(&lengths[..1], &split),
            Vec::<usize>::new()
        );
        let e = check_collapse(&lengths, &split, "training", "advice")
            .unwrap_err()
            .to_string();
        assert!(e.contains("every 16-bit code"), "{e}");
    }

    #[test]
    fn collapse_advice_follows_the_loss_and_the_features() {
        let mut falling = LossMonitor::default();
        let mut rising = LossMonitor::default();
        for i in 0..50 {
            falling
                .observe(2.0 - 0.01 * i as f64, at(i), &advice())
                .unwrap();
            rising
                .observe(2.0 + 0.1 * i as f64, at(i), &advice())
                .unwrap();
        }
        let a = advice().for_collapse(&falling);
        assert!(
            a.contains("fell from 2.0000") && a.contains("--epochs"),
            "{a}"
        );
        let a = advice().for_collapse(&rising);
        assert!(
            a.contains("rose from 2.0000") && a.contains("smaller --lr (now 0.25)"),
            "{a}"
        );
        let same = Advice::new(&set(vec![0.5, 1.0, 0.5, 1.0], 2, vec![0, 1]), 1e-3);
        let a = same.for_collapse(&falling);
        assert!(
            a.contains("same features") && !a.contains("--epochs"),
            "{a}"
        );
    }
}

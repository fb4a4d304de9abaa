//! The checks a run makes before any work: the settings alone ([`validate_config`]), then the
//! settings against the data ([`validate`]), each failure an error that names the flag.

use crate::config::{Method, TrainConfig};
use crate::data::{Dataset, Split};
use crate::divergence::check_feature_scale;
use crate::error::TrainError;
use crate::limits::{Footprint, Placement};
use crate::losses::params::LossParams;

fn config_error(flag: &'static str, reason: impl Into<String>) -> TrainError {
    TrainError::Config {
        flag,
        reason: reason.into(),
    }
}

/// Checks the settings alone, before any data is read.
pub fn validate_config(config: &TrainConfig) -> Result<(), TrainError> {
    if config.bits.is_empty() {
        return Err(config_error("--bits", "no code length given"));
    }
    if let Some(&b) = config.bits.iter().find(|&&b| b == 0 || b > 1024) {
        return Err(config_error("--bits", format!("{b} is outside 1..=1024")));
    }
    if let Some(w) = config.bits.windows(2).find(|w| w[0] >= w[1]) {
        return Err(config_error(
            "--bits",
            format!("lengths must increase strictly, got {} then {}", w[0], w[1]),
        ));
    }
    if config.epochs == 0 {
        return Err(config_error("--epochs", "must be at least 1"));
    }
    if config.batch_size < 2 {
        return Err(config_error(
            "--batch-size",
            format!(
                "must be at least 2 (pairwise terms need pairs), got {}",
                config.batch_size
            ),
        ));
    }
    if !(config.lr.is_finite() && config.lr > 0.0) {
        return Err(config_error(
            "--lr",
            format!("must be a positive number, got {}", config.lr),
        ));
    }
    if !(config.distill_weight.is_finite() && config.distill_weight >= 0.0) {
        return Err(config_error(
            "--distill-weight",
            format!(
                "must be a non-negative number, got {}",
                config.distill_weight
            ),
        ));
    }
    if config.hidden == 0 {
        return Err(config_error("--hidden", "must be at least 1"));
    }
    LossParams::resolve(config.method, &config.loss_params)?;
    Ok(())
}

/// Checks a configuration against the data before any work starts, including that the sizes it
/// derives can be allocated at all ([`Footprint`]; the caller that knows the machine checks them
/// against its memory with [`Footprint::check`]).
pub fn validate(config: &TrainConfig, split: &Split) -> Result<(), TrainError> {
    validate_config(config)?;
    if split.train.len() < 2 {
        return Err(TrainError::Split {
            what: format!(
                "the training set needs at least 2 items (pairwise terms need pairs), got {} \
                 (set by --split-sizes or --train-data)",
                split.train.len()
            ),
        });
    }
    if config.method == Method::Shcir {
        single_positive_class(&split.train)?;
    }
    for (name, set) in [("query", &split.query), ("database", &split.database)] {
        if set.dim != split.train.dim {
            return Err(TrainError::Split {
                what: format!(
                    "the {name} items have {} features, the training items {}; every set needs \
                     the same features",
                    set.dim, split.train.dim
                ),
            });
        }
    }
    Footprint::of(config, split).check(Placement::Host, None)?;
    check_feature_scale(split)
}

/// SHCIR's loss takes one positive class per item (docs/METHOD.md 5.11): training data where an
/// item has another number of classes, or with fewer than two classes, is refused.
fn single_positive_class(train: &Dataset) -> Result<(), TrainError> {
    let refuse = |why: String| {
        Err(config_error(
            "--method",
            format!(
                "shcir cannot train on this data: {why}; its loss compares each item's one \
                 positive class with the others (a softmax over the class centres), so it needs \
                 single-label data with at least two classes"
            ),
        ))
    };
    if train.n_classes() < 2 {
        return refuse(format!("the data have {} class", train.n_classes()));
    }
    if let nhl_index::eval::Labels::Multi { rows, .. } = &train.labels {
        if let Some((item, classes)) = rows.iter().enumerate().find(|(_, r)| r.len() != 1) {
            return refuse(format!(
                "training item {item} has {} classes (multi-label data)",
                classes.len()
            ));
        }
    }
    Ok(())
}

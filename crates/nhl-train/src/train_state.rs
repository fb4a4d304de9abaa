//! The training state: everything a run needs to continue exactly where it stopped, in one file
//! (`training_state.safetensors`) that is replaced whole or not at all.
//!
//! A run that resumes from it ends with the same codes and parameters, bit for bit, as one that
//! never stopped: it holds the parameters, Adam's moments and step count, the state of every
//! loss ([`LossState`]: the DSH/DHN memory bank, ...), where the run is (model, epoch, batches
//! done in the epoch and the shuffling generator's state at the epoch's start, the sum of those
//! batches' losses), the divergence monitor's running level, the loss history and validations,
//! and the parameters of the models already finished (mode `single`).
//!
//! The file is safetensors: every tensor rank-2 F32 (`param.NAME`, `adam.m.NAME`,
//! `adam.v.NAME`, `bank.NAME`, `loss.BITS.NAME`, `done.NAME`), and the scalars as JSON under the
//! metadata key `state` (f64 values round-trip exactly through it).

use std::collections::HashMap;
use std::path::Path;

use nhl_kernels::{Backend, Real, Shape};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::divergence::LossMonitor;
use crate::error::TrainError;
use crate::model::NamedParam;
use crate::run_dir::write_atomic;
use crate::trainer::Validation;

/// The file name of the training state in a run directory.
pub const STATE_FILE: &str = "training_state.safetensors";

/// Version of the layout; [`TrainState::load`] refuses any other.
pub(crate) const STATE_VERSION: u32 = 2;

/// Where a run is and what it has recorded so far: the scalars of the training state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Layout version.
    pub version: u32,
    /// The settings of the run; a resumed run must have the same.
    pub config: TrainConfig,
    /// Index of the model in training (mode `single` trains one per length).
    pub model: usize,
    /// The epoch in progress, from 0 (`config.epochs` once every epoch is done).
    pub epoch: usize,
    /// Batches of that epoch already done.
    pub batch: usize,
    /// The shuffling generator's state at the start of the epoch, before it drew the epoch's
    /// order.
    pub shuffle: u64,
    /// Sum of the losses of the batches done in the epoch.
    pub loss_sum: f64,
    /// Weighted modes: per length, the sum of its dominance weight over those batches.
    pub weight_sum: Vec<f64>,
    /// The divergence monitor of the model in training.
    pub monitor: LossMonitor,
    /// Adam's step count.
    pub adam_step: i32,
    /// Training seconds so far.
    pub train_seconds: f64,
    /// Seconds per epoch so far.
    pub epoch_seconds: Vec<f64>,
    /// Mean batch loss per finished epoch (summed over the finished models of a `single` run).
    pub loss_per_epoch: Vec<f64>,
    /// The validations so far.
    pub validations: Vec<Validation>,
    /// Weighted modes: the mean dominance weights of every finished epoch.
    pub weights_per_epoch: Vec<Vec<f64>>,
}

/// A whole training state: the scalars and every tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainState {
    /// Where the run is.
    pub position: Position,
    /// The tensors, by name.
    pub tensors: StateTensors,
}

/// The named tensors of a training state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateTensors(Vec<NamedParam>);

impl From<Vec<NamedParam>> for StateTensors {
    fn from(tensors: Vec<NamedParam>) -> Self {
        StateTensors(tensors)
    }
}

impl StateTensors {
    /// Adds `tensors`, each name prefixed with `prefix`.
    pub fn extend(&mut self, prefix: &str, tensors: impl IntoIterator<Item = NamedParam>) {
        self.0.extend(tensors.into_iter().map(|mut t| {
            t.name.insert_str(0, prefix);
            t
        }));
    }

    /// The tensors whose names start with `prefix`, the prefix removed.
    pub fn with_prefix(&self, prefix: &str) -> Vec<NamedParam> {
        self.0
            .iter()
            .filter_map(|t| {
                let name = t.name.strip_prefix(prefix)?;
                Some(NamedParam {
                    name: name.to_string(),
                    ..t.clone()
                })
            })
            .collect()
    }

    /// The tensor called `name`, or an error naming it.
    pub fn get(&self, name: &str) -> Result<&NamedParam, TrainError> {
        self.0
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| TrainError::StateMismatch {
                what: format!("the tensor {name} is missing"),
            })
    }

    /// Copies the tensor `name` into `buf`, which must have its shape.
    pub fn restore<B: Backend>(
        &self,
        backend: &B,
        name: &str,
        buf: &mut B::Buf,
    ) -> Result<(), TrainError> {
        let t = self.get(name)?;
        let shape = backend.shape(buf);
        if t.shape != [shape.rows, shape.cols] {
            return Err(TrainError::StateMismatch {
                what: format!(
                    "the tensor {name} is {:?}, the run's is [{}, {}]",
                    t.shape, shape.rows, shape.cols
                ),
            });
        }
        let values: Vec<B::Elem> = t.data.iter().map(|&x| Real::from_f64(x.into())).collect();
        *buf = backend.upload(&values, shape)?;
        Ok(())
    }
}

/// `buf` copied to the host under `name`.
pub fn download<B: Backend>(
    backend: &B,
    name: &str,
    buf: &B::Buf,
) -> Result<NamedParam, TrainError> {
    let Shape { rows, cols } = backend.shape(buf);
    let data = backend
        .download(buf)?
        .into_iter()
        .map(|v| v.to_f64() as f32)
        .collect();
    Ok(NamedParam {
        name: name.to_string(),
        shape: [rows, cols],
        data,
    })
}

/// The hook through which whatever a loss carries from one step to the next (a memory bank, a
/// momentum head, running statistics) enters the training state, so that a resumed run
/// continues with it exactly. A loss without such state saves nothing.
pub trait LossState<B: Backend> {
    /// The state, downloaded, as tensors with names unique within this loss.
    fn save_state(&self, backend: &B) -> Result<Vec<NamedParam>, TrainError>;
    /// Puts back what [`LossState::save_state`] saved; `tensors` holds this loss's tensors under
    /// the names it gave them.
    fn load_state(&mut self, backend: &B, tensors: &StateTensors) -> Result<(), TrainError>;
}

impl TrainState {
    /// Writes the state to `path`, whole or not at all.
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let format = |what: String| TrainError::CheckpointFormat {
            path: path.to_path_buf(),
            what,
        };
        let bytes: Vec<Vec<u8>> = self
            .tensors
            .0
            .iter()
            .map(|t| t.data.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect();
        let views = self
            .tensors
            .0
            .iter()
            .zip(&bytes)
            .map(|(t, b)| {
                TensorView::new(Dtype::F32, t.shape.to_vec(), b)
                    .map(|v| (t.name.as_str(), v))
                    .map_err(|e| format(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let position = serde_json::to_string(&self.position).map_err(|e| format(e.to_string()))?;
        let metadata = HashMap::from([("state".to_string(), position)]);
        let file =
            safetensors::serialize(views, Some(metadata)).map_err(|e| format(e.to_string()))?;
        write_atomic(path, &file)
    }

    /// Reads the state that [`TrainState::save`] wrote; any other content is an error naming
    /// the file.
    pub fn load(path: &Path) -> Result<TrainState, TrainError> {
        let bytes = std::fs::read(path).map_err(|source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        TrainState::parse(path, &bytes)
    }

    /// [`TrainState::load`] of the bytes of a state file; `path` only names it in errors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<TrainState, TrainError> {
        let format = |what: String| TrainError::CheckpointFormat {
            path: path.to_path_buf(),
            what,
        };
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| format(e.to_string()))?;
        let state = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("state"))
            .ok_or_else(|| format("no `state` metadata: not a training state".into()))?;
        let position: Position =
            serde_json::from_str(state).map_err(|e| format(format!("state: {e}")))?;
        if position.version != STATE_VERSION {
            return Err(format(format!(
                "layout version {}, expected {STATE_VERSION}",
                position.version
            )));
        }
        let file = SafeTensors::deserialize(bytes).map_err(|e| format(e.to_string()))?;
        let mut tensors = Vec::new();
        for (name, view) in file.tensors() {
            let shape: [usize; 2] = match (view.dtype(), view.shape()) {
                (Dtype::F32, &[rows, cols]) => [rows, cols],
                (dtype, shape) => {
                    return Err(format(format!(
                        "{name}: expected a rank-2 F32 tensor, found {dtype:?} {shape:?}"
                    )))
                }
            };
            let data = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            tensors.push(NamedParam { name, shape, data });
        }
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(TrainState {
            position,
            tensors: StateTensors(tensors),
        })
    }
}

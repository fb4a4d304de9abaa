//! Hash new items with a trained model: load a checkpoint (`model.safetensors`, or the run
//! directory holding it) and turn features into packed codes on either backend, a block of rows
//! at a time.
//!
//! An item's code is its hash-layer output `u = relu(x W1^T + b1) W2^T + b2` cut to `B` columns,
//! bit `j` set when `u_j > 0`, packed as docs/PROTOCOL.md ("Layout") packs codes: bit `j` in byte
//! `j / 8` at position `j % 8`, `ceil(B / 8)` bytes per item. Stored features become inputs by the
//! rule the checkpoint records ([`InputScaling`](crate::data::InputScaling)), the one training
//! read its own data with.
//!
//! Which `B`: one of the lengths the model was trained for (its metadata lists them). A nested
//! model (every mode but `single`) encodes the longest by default, and its shorter codes are the
//! prefixes of that one: the first `b / 8` bytes. A `single` run holds one independent model per
//! length, whose codes do not nest, so `B` picks the model and must be given when there are
//! several; encoding every length takes one pass per length.
//!
//! The codes are those the run itself produced (`database_codes.npy`), bit for bit, when the same
//! backend computes them: the rows of a block do not interact, so the block size does not change
//! them either. Another backend rounds differently, so an output within rounding of 0 may take
//! the other sign there.
//!
//! ```no_run
//! use nhl_kernels::cpu::CpuBackend;
//! use nhl_train::encoder::Encoder;
//!
//! let cpu = CpuBackend::<f32>::new();
//! let encoder = Encoder::load(&cpu, "runs/fmnist-full".as_ref(), Some(64))?;
//! let codes = encoder.encode(&vec![0.5; 3 * encoder.input_dim()])?; // 3 items, 8 bytes each
//! encoder.encode_file("new.npy".as_ref(), "new_codes.npy".as_ref(), &mut |_, _| {})?;
//! # Ok::<(), nhl_train::TrainError>(())
//! ```

mod output;
pub mod source;

use std::path::{Path, PathBuf};

use nhl_kernels::Backend;

use crate::checkpoint::{self, Checkpoint, CheckpointMeta};
use crate::config::Mode;
use crate::error::TrainError;
use crate::model::{ModelDims, NestedHashModel};
use output::CodesWriter;
use source::FeatureFile;

/// Rows per forward pass unless [`Encoder::set_batch`] says otherwise (also the block size of
/// the codes a training run writes). It bounds memory, not results.
pub const ENCODE_BATCH: usize = 2048;

/// The checkpoint file `model` names: `model` itself, or `model/model.safetensors` when it is a
/// directory (a run directory).
pub fn model_file(model: &Path) -> PathBuf {
    if model.is_dir() {
        model.join("model.safetensors")
    } else {
        model.to_path_buf()
    }
}

/// A trained model ready to encode, on one backend.
pub struct Encoder<'a, B: Backend<Elem = f32>> {
    backend: &'a B,
    model: NestedHashModel<B>,
    /// The checkpoint file, for messages.
    path: PathBuf,
    meta: CheckpointMeta,
    /// Length of the codes produced.
    bits: usize,
    /// Rows per forward pass.
    batch: usize,
}

/// What [`Encoder::encode_file`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedFile {
    /// Number of codes.
    pub items: usize,
    /// Bits per code.
    pub bits: usize,
    /// Bytes per code.
    pub code_bytes: usize,
}

impl<'a, B: Backend<Elem = f32>> Encoder<'a, B> {
    /// Loads the checkpoint `model` (a `model.safetensors` or a run directory) onto `backend`,
    /// encoding `bits`-bit codes (`None`: see the module documentation).
    pub fn load(backend: &'a B, model: &Path, bits: Option<usize>) -> Result<Self, TrainError> {
        let path = model_file(model);
        let ckpt = checkpoint::load(&path)?;
        Self::from_checkpoint(backend, &ckpt, &path, bits)
    }

    /// The encoder of a loaded checkpoint; `path` names the file it came from in messages.
    pub fn from_checkpoint(
        backend: &'a B,
        ckpt: &Checkpoint,
        path: &Path,
        bits: Option<usize>,
    ) -> Result<Self, TrainError> {
        let meta = &ckpt.meta;
        let lengths = meta
            .bits
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let longest = meta.bits.iter().copied().max().unwrap_or(0);
        let single = meta.mode == Mode::Single;
        let bits = match bits {
            Some(b) if meta.bits.contains(&b) => b,
            Some(b) => {
                return Err(TrainError::Config {
                    flag: "--bits",
                    reason: format!(
                        "{b} is not a length {} was trained for; choose one of {lengths}",
                        path.display()
                    ),
                })
            }
            None if single && meta.bits.len() > 1 => {
                return Err(TrainError::Config {
                    flag: "--bits",
                    reason: format!(
                        "{} holds one model per length (mode single), whose codes do not nest; \
                         choose one of {lengths}",
                        path.display()
                    ),
                })
            }
            None => longest,
        };
        let (prefix, width) = if single {
            (format!("b{bits}."), bits)
        } else {
            (String::new(), longest)
        };
        let dims = ModelDims {
            input_dim: meta.input_dim,
            hidden: meta.hidden,
            code_bits: width,
        };
        let model = NestedHashModel::from_checkpoint(backend, ckpt, path, &prefix, dims)?;
        Ok(Encoder {
            backend,
            model,
            path: path.to_path_buf(),
            meta: meta.clone(),
            bits,
            batch: ENCODE_BATCH,
        })
    }

    /// Sets the rows per forward pass (at least 1).
    pub fn set_batch(&mut self, rows: usize) -> Result<(), TrainError> {
        if rows == 0 {
            return Err(TrainError::Config {
                flag: "--batch-size",
                reason: "must be at least 1".into(),
            });
        }
        self.batch = rows;
        Ok(())
    }

    /// What the checkpoint says about the model.
    pub fn meta(&self) -> &CheckpointMeta {
        &self.meta
    }

    /// The checkpoint file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Features per item.
    pub fn input_dim(&self) -> usize {
        self.meta.input_dim
    }

    /// Bits per code.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Width of the model's hash layer: the longest code of a nested model, or `bits()` for a
    /// model of a `single` run.
    pub fn hash_width(&self) -> usize {
        self.model.code_bits()
    }

    /// Bytes per packed code, `ceil(bits / 8)`.
    pub fn code_bytes(&self) -> usize {
        self.bits.div_ceil(8)
    }

    /// The real outputs whose signs are the codes (`n x bits`, row-major) of the items of
    /// `features` (`n x input_dim`, row-major, already inputs: no scaling is applied).
    pub fn outputs(&self, features: &[f32]) -> Result<Vec<f32>, TrainError> {
        let n = self.rows_of(features)?;
        let mut out = Vec::with_capacity(n * self.bits);
        self.for_each_block(features, n, |u, width| {
            for row in u.chunks_exact(width) {
                out.extend_from_slice(&row[..self.bits]);
            }
        })?;
        Ok(out)
    }

    /// The packed codes (`n * code_bytes()` bytes, item after item) of the items of `features`
    /// (`n x input_dim`, row-major, already inputs: no scaling is applied).
    pub fn encode(&self, features: &[f32]) -> Result<Vec<u8>, TrainError> {
        let n = self.rows_of(features)?;
        let mut out = Vec::with_capacity(n * self.code_bytes());
        self.for_each_block(features, n, |u, width| {
            pack_signs(u, width, self.bits, &mut out)
        })?;
        Ok(out)
    }

    /// Encodes the features file `features` (see [`FeatureFile::open`]) into the codes file
    /// `out`, a uint8 `.npy` array `[n, code_bytes()]`, streaming: the features are read through
    /// a memory map a block at a time and each block's codes are appended to a temporary file
    /// beside `out`, renamed to `out` once all are in. On any error nothing is left at `out`
    /// (an earlier file there stays as it was). `progress(done, n)` is called after each block.
    pub fn encode_file(
        &self,
        features: &Path,
        out: &Path,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<EncodedFile, TrainError> {
        let mut source = FeatureFile::open(features)?;
        if source.dim() != self.input_dim() {
            return Err(TrainError::Content {
                path: features.to_path_buf(),
                field: "features".into(),
                expected: format!(
                    "{} features per item, the input width of {}",
                    self.input_dim(),
                    self.path.display()
                ),
                found: format!(
                    "{} (shape [{}, {}])",
                    source.dim(),
                    source.rows(),
                    source.dim()
                ),
            });
        }
        let n = source.rows();
        let mut writer = CodesWriter::create(out, n, self.code_bytes())?;
        let mut inputs = Vec::with_capacity(self.batch.min(n) * self.input_dim());
        let mut codes = Vec::with_capacity(self.batch.min(n) * self.code_bytes());
        for start in (0..n).step_by(self.batch) {
            let end = (start + self.batch).min(n);
            inputs.clear();
            source.read_rows(start, end, self.meta.input_scaling, &mut inputs)?;
            let u = self.model.outputs(self.backend, &inputs, end - start)?;
            codes.clear();
            pack_signs(&u, self.model.code_bits(), self.bits, &mut codes);
            writer.write(&codes)?;
            progress(end, n);
        }
        writer.finish()?;
        Ok(EncodedFile {
            items: n,
            bits: self.bits,
            code_bytes: self.code_bytes(),
        })
    }

    /// Number of items in `features`, which must be whole rows.
    fn rows_of(&self, features: &[f32]) -> Result<usize, TrainError> {
        let dim = self.input_dim();
        if !features.len().is_multiple_of(dim) {
            return Err(TrainError::FeatureLength {
                model: self.path.clone(),
                len: features.len(),
                dim,
            });
        }
        Ok(features.len() / dim)
    }

    /// Calls `each(outputs, width)` with the hash-layer outputs of every block of rows, in order.
    fn for_each_block(
        &self,
        features: &[f32],
        n: usize,
        mut each: impl FnMut(&[f32], usize),
    ) -> Result<(), TrainError> {
        let dim = self.input_dim();
        for start in (0..n).step_by(self.batch) {
            let end = (start + self.batch).min(n);
            let u =
                self.model
                    .outputs(self.backend, &features[start * dim..end * dim], end - start)?;
            each(&u, self.model.code_bits());
        }
        Ok(())
    }
}

/// Appends the codes of `n x width` outputs cut to their first `bits` columns: bit `j` of an item
/// is `u_j > 0` (NaN gives 0), in byte `j / 8` at position `j % 8`, `ceil(bits / 8)` bytes each.
fn pack_signs(values: &[f32], width: usize, bits: usize, out: &mut Vec<u8>) {
    let code_bytes = bits.div_ceil(8);
    for row in values.chunks_exact(width) {
        let start = out.len();
        out.resize(start + code_bytes, 0);
        let code = &mut out[start..];
        for (byte, signs) in code.iter_mut().zip(row[..bits].chunks(8)) {
            *byte = signs
                .iter()
                .enumerate()
                .fold(0u8, |acc, (j, &v)| acc | (u8::from(v > 0.0) << j));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhl_index::Codes;
    use nhl_kernels::testing::random_vec;

    /// Packing agrees with `Codes::from_signs` (the packing of a training run), prefixes and
    /// lengths that are not whole bytes included.
    #[test]
    fn packing_is_the_protocol_layout() {
        let (n, width) = (7, 37);
        let mut u: Vec<f32> = random_vec(3, n * width, -1.0, 1.0)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        u[5] = 0.0;
        u[6] = f32::NAN;
        for bits in [1, 8, 13, 32, 37] {
            let mut packed = Vec::new();
            pack_signs(&u, width, bits, &mut packed);
            let prefix: Vec<f32> = u
                .chunks_exact(width)
                .flat_map(|r| r[..bits].iter().copied())
                .collect();
            let want = Codes::from_signs(n, bits, &prefix).unwrap().to_bytes();
            assert_eq!(packed, want, "{bits} bits");
        }
    }
}

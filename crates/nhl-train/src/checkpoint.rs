//! `model.safetensors`: the trained parameters and what produced them.
//!
//! Every parameter is a rank-2 F32 tensor under its model name (`backbone.weight`, ...; in mode
//! `single` one model per length, prefixed `b{bits}.`). The safetensors metadata carries, as
//! strings, the format version, what training used (lengths, method, mode, hidden width, seed,
//! the loss's hyper-parameters) and what encoding new items needs besides the tensors (input
//! width, input scaling), so that a checkpoint can be checked against the model it is loaded into
//! and used on its own.
//!
//! | key | value |
//! |---|---|
//! | `format_version` | `2` ([`FORMAT_VERSION`]) |
//! | `bits` | the code lengths, increasing, comma-separated (`8,16,32,64,128`) |
//! | `method`, `mode` | the base loss and NHL mode (`csq`, `full`, ...) |
//! | `hidden` | the backbone's hidden width |
//! | `seed` | the run seed |
//! | `loss_params` | the loss's hyper-parameters, `name=value,...` (optional: empty when absent) |
//! | `input_dim` | features per item |
//! | `input_scaling` | how stored features become inputs ([`InputScaling`], `uint8/255`) |
//!
//! Version 1 lacks the last two keys. It is still read: its input width is that of the
//! `backbone.weight` tensor, and its scaling is `uint8/255`, the only rule version 1 was ever
//! written with.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{de::DeserializeOwned, Serialize};

use crate::config::{Method, Mode};
use crate::data::InputScaling;
use crate::error::TrainError;
use crate::model::NamedParam;
use crate::run_dir::write_atomic;
use crate::safetensors_header::read_header;

/// Version of the layout written by [`save`]; [`load`] reads it and [`FORMAT_VERSION_1`].
pub const FORMAT_VERSION: &str = "2";
/// The previous version, read with the input width and scaling it implies.
pub const FORMAT_VERSION_1: &str = "1";

/// What a checkpoint was trained with.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointMeta {
    /// Code lengths, increasing.
    pub bits: Vec<usize>,
    /// Base loss.
    pub method: Method,
    /// NHL mode.
    pub mode: Mode,
    /// Backbone hidden width.
    pub hidden: usize,
    /// Run seed.
    pub seed: u64,
    /// The loss's hyper-parameters by name (stored as `name=value,...`; empty in a checkpoint
    /// written without them).
    pub loss_params: BTreeMap<String, f64>,

    // What encoding needs besides the tensors.
    /// Features per item (the backbone's input width).
    pub input_dim: usize,
    /// How stored features become inputs.
    pub input_scaling: InputScaling,
}

/// A loaded checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// What it was trained with.
    pub meta: CheckpointMeta,
    /// Its parameters, sorted by name.
    pub params: Vec<NamedParam>,
}

impl Checkpoint {
    /// The parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&NamedParam> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Checks that every `(name, shape)` is present with that shape; errors name `path`, the
    /// file the checkpoint came from.
    pub fn expect(&self, path: &Path, expected: &[(&str, [usize; 2])]) -> Result<(), TrainError> {
        for &(name, shape) in expected {
            let param = self.get(name).ok_or_else(|| TrainError::TensorMissing {
                path: path.to_path_buf(),
                tensor: name.into(),
            })?;
            if param.shape != shape {
                return Err(TrainError::TensorShape {
                    path: path.to_path_buf(),
                    tensor: name.into(),
                    expected: shape.to_vec(),
                    found: param.shape.to_vec(),
                });
            }
        }
        Ok(())
    }
}

/// The lowercase name serde gives a config enum (`csq`, `full`, ...).
fn enum_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Writes `params` (name, `[rows, cols]`, values) and `meta` to `path`, whole or not at all.
pub fn save<'a>(
    path: &Path,
    meta: &CheckpointMeta,
    params: impl IntoIterator<Item = (&'a str, [usize; 2], &'a [f32])>,
) -> Result<(), TrainError> {
    let mut owned = Vec::new();
    for (name, shape, data) in params {
        if shape[0] * shape[1] != data.len() {
            return Err(TrainError::TensorShape {
                path: path.to_path_buf(),
                tensor: name.into(),
                expected: shape.to_vec(),
                found: vec![data.len()],
            });
        }
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        owned.push((name, shape, bytes));
    }
    let format = |what: String| TrainError::CheckpointFormat {
        path: path.to_path_buf(),
        what,
    };
    let views = owned
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.to_vec(), bytes)
                .map(|v| (*name, v))
                .map_err(|e| format(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bits: Vec<String> = meta.bits.iter().map(usize::to_string).collect();
    let mut metadata = HashMap::from([
        ("format_version".to_string(), FORMAT_VERSION.to_string()),
        ("bits".to_string(), bits.join(",")),
        ("method".to_string(), enum_name(&meta.method)),
        ("mode".to_string(), enum_name(&meta.mode)),
        ("hidden".to_string(), meta.hidden.to_string()),
        ("seed".to_string(), meta.seed.to_string()),
        (
            "loss_params".to_string(),
            loss_params_text(&meta.loss_params),
        ),
    ]);
    // What encoding needs besides the tensors.
    metadata.extend([
        ("input_dim".to_string(), meta.input_dim.to_string()),
        (
            "input_scaling".to_string(),
            meta.input_scaling.name().to_string(),
        ),
    ]);
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| format(e.to_string()))?;
    let bytes = sorted_header(bytes).map_err(format)?;
    write_atomic(path, &bytes)?;
    Ok(())
}

/// `name=value` pairs in name order, comma-separated (Rust's shortest round-trip formatting of
/// each value, so that [`parse_loss_params`] reads back the same numbers).
fn loss_params_text(params: &BTreeMap<String, f64>) -> String {
    let pairs: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    pairs.join(",")
}

/// The inverse of [`loss_params_text`]; `None` when an entry is not `name=number`.
fn parse_loss_params(text: &str) -> Option<BTreeMap<String, f64>> {
    text.split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The serialised file with the keys of its JSON header in sorted order, so that the same
/// parameters always give the same bytes: `safetensors` writes the metadata from a `HashMap`,
/// whose order changes from one map to the next. The header keeps its length (the same compact
/// JSON, padded with spaces as before), so the data offsets stand.
fn sorted_header(mut bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let len = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n <= bytes.len().saturating_sub(8))
        .ok_or("header length out of range")?;
    let header = &mut bytes[8..8 + len];
    // serde_json's maps are sorted by key (no `preserve_order`).
    let value: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| format!("header: {e}"))?;
    let sorted = serde_json::to_vec(&value).map_err(|e| format!("header: {e}"))?;
    if sorted.len() > len {
        return Err(format!(
            "sorted header of {} bytes exceeds {len}",
            sorted.len()
        ));
    }
    header.fill(b' ');
    header[..sorted.len()].copy_from_slice(&sorted);
    Ok(bytes)
}

/// Reads a checkpoint written by [`save`], checking the metadata and that every tensor is a
/// rank-2 F32 matrix.
pub fn load(path: &Path) -> Result<Checkpoint, TrainError> {
    let bytes = std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => TrainError::NotFound {
            path: path.to_path_buf(),
            hint: "a model.safetensors written by `cargo xtask train`, or its run directory".into(),
        },
        _ => TrainError::Io {
            path: path.to_path_buf(),
            source,
        },
    })?;
    parse(path, &bytes)
}

/// [`load`] of the bytes of a checkpoint file; `path` only names it in errors.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Checkpoint, TrainError> {
    // Named errors for a file cut short or padded, before the parser's own.
    read_header(path, &mut &bytes[..], bytes.len() as u64)?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| TrainError::CheckpointFormat {
        path: path.to_path_buf(),
        what: e.to_string(),
    })?;
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| TrainError::CheckpointFormat {
            path: path.to_path_buf(),
            what: e.to_string(),
        })?;
    let empty = HashMap::new();
    let metadata = header.metadata().as_ref().unwrap_or(&empty);
    let field = |key: &'static str, expected: &str| -> Result<&str, TrainError> {
        metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| TrainError::CheckpointMeta {
                path: path.to_path_buf(),
                key,
                expected: expected.into(),
                found: "none".into(),
            })
    };
    let meta_err = |key: &'static str, expected: &str, found: &str| TrainError::CheckpointMeta {
        path: path.to_path_buf(),
        key,
        expected: expected.into(),
        found: found.into(),
    };
    let versions = format!(
        "{FORMAT_VERSION} or {FORMAT_VERSION_1} (a checkpoint written by `cargo xtask train`)"
    );
    let version = field("format_version", &versions)?;
    if version != FORMAT_VERSION && version != FORMAT_VERSION_1 {
        return Err(meta_err("format_version", &versions, version));
    }
    let parse_num = |key: &'static str| -> Result<u64, TrainError> {
        let s = field(key, "an integer")?;
        s.parse().map_err(|_| meta_err(key, "an integer", s))
    };
    let parse_width = |key: &'static str| -> Result<usize, TrainError> {
        let expected = "a positive integer";
        let s = field(key, expected)?;
        s.parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| meta_err(key, expected, s))
    };
    fn parse_enum<T: DeserializeOwned>(s: &str) -> Option<T> {
        serde_json::from_value(serde_json::Value::String(s.into())).ok()
    }
    let lengths = "comma-separated lengths, each in 1..=1024";
    let bits_s = field("bits", lengths)?;
    let bits = bits_s
        .split(',')
        .map(|b| b.parse().ok().filter(|b| (1..=1024).contains(b)))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| meta_err("bits", lengths, bits_s))?;
    let methods = Method::names();
    let method_s = field("method", &methods)?;
    let method = parse_enum(method_s).ok_or_else(|| meta_err("method", &methods, method_s))?;
    let mode_s = field("mode", "a mode name")?;
    let mode = parse_enum(mode_s)
        .ok_or_else(|| meta_err("mode", "full, nested, distill, adaptive or single", mode_s))?;
    let loss_params = match metadata.get("loss_params") {
        None => BTreeMap::new(),
        Some(text) => parse_loss_params(text)
            .ok_or_else(|| meta_err("loss_params", "comma-separated name=value pairs", text))?,
    };
    let hidden = parse_width("hidden")?;
    let seed = parse_num("seed")?;
    let mut params = Vec::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(TrainError::TensorDtype {
                path: path.to_path_buf(),
                tensor: name,
                found: format!("{:?}", view.dtype()),
            });
        }
        let &[rows, cols] = view.shape() else {
            return Err(TrainError::TensorShape {
                path: path.to_path_buf(),
                tensor: name,
                expected: vec![0, 0],
                found: view.shape().to_vec(),
            });
        };
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        params.push(NamedParam {
            name,
            shape: [rows, cols],
            data,
        });
    }
    params.sort_by(|a, b| a.name.cmp(&b.name));

    // What encoding needs besides the tensors: recorded from version 2, implied in version 1.
    let (input_dim, input_scaling) = if version == FORMAT_VERSION_1 {
        let width = params
            .iter()
            .find(|p| p.name.ends_with("backbone.weight"))
            .map(|p| p.shape[1])
            .filter(|&d| d > 0)
            .ok_or_else(|| {
                meta_err(
                    "input_dim",
                    "a positive integer, or (format version 1) a backbone.weight tensor with \
                     columns to read it from",
                    "neither",
                )
            })?;
        (width, InputScaling::Uint8Unit)
    } else {
        let scaling_s = field("input_scaling", "a scaling rule")?;
        let names: Vec<&str> = InputScaling::ALL.iter().map(|s| s.name()).collect();
        let scaling = InputScaling::from_name(scaling_s)
            .ok_or_else(|| meta_err("input_scaling", &names.join(" or "), scaling_s))?;
        (parse_width("input_dim")?, scaling)
    };
    let meta = CheckpointMeta {
        bits,
        method,
        mode,
        hidden,
        seed,
        loss_params,
        input_dim,
        input_scaling,
    };
    Ok(Checkpoint { meta, params })
}

/// [`load`], then checks that every `(name, shape)` the model needs is present with that shape.
pub fn load_expecting(
    path: &Path,
    expected: &[(&str, [usize; 2])],
) -> Result<Checkpoint, TrainError> {
    let ckpt = load(path)?;
    ckpt.expect(path, expected)?;
    Ok(ckpt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("nhl-ckpt-{}-{name}", std::process::id()))
    }

    fn meta() -> CheckpointMeta {
        CheckpointMeta {
            bits: vec![8, 16, 32],
            method: Method::Dpn,
            mode: Mode::Single,
            hidden: 3,
            seed: 42,
            loss_params: BTreeMap::from([("m".into(), 1.0), ("p".into(), 0.1 + 0.2)]),
            input_dim: 5,
            input_scaling: InputScaling::Uint8Unit,
        }
    }

    /// The metadata comes from a `HashMap`, whose order differs between maps: the file must not.
    #[test]
    fn the_same_parameters_give_the_same_bytes() {
        let w: Vec<f32> = (0..12).map(|i| i as f32 * 0.25).collect();
        let files: Vec<Vec<u8>> = (0..6)
            .map(|i| {
                let path = temp(&format!("same{i}.safetensors"));
                save(&path, &meta(), [("hash.weight", [3, 4], &w[..])]).unwrap();
                std::fs::read(&path).unwrap()
            })
            .collect();
        for f in &files[1..] {
            assert_eq!(f, &files[0]);
        }
        let header = String::from_utf8_lossy(&files[0][8..200]).into_owned();
        let keys = [
            "\"__metadata__\"",
            "\"bits\"",
            "\"format_version\"",
            "\"hidden\"",
        ];
        let at: Vec<usize> = keys.iter().map(|k| header.find(k).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{header}");
        assert_eq!(load(&temp("same0.safetensors")).unwrap().meta, meta());
    }

    #[test]
    fn round_trip_keeps_values_shapes_and_metadata() {
        let path = temp("rt.safetensors");
        let w: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
        let b = vec![f32::MIN_POSITIVE, -0.0, 1e30];
        save(
            &path,
            &meta(),
            [
                ("b8.head.weight", [2, 3], &w[..]),
                ("b8.head.bias", [1, 3], &b[..]),
            ],
        )
        .unwrap();
        let ckpt = load_expecting(
            &path,
            &[("b8.head.weight", [2, 3]), ("b8.head.bias", [1, 3])],
        )
        .unwrap();
        assert_eq!(ckpt.meta, meta());
        assert_eq!(ckpt.get("b8.head.weight").unwrap().data, w);
        assert_eq!(ckpt.get("b8.head.bias").unwrap().data, b);

        let e = load_expecting(&path, &[("b8.head.weight", [3, 2])])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rt.safetensors") && e.contains("b8.head.weight") && e.contains("[3, 2]"),
            "{e}"
        );
        let e = load_expecting(&path, &[("backbone.weight", [1, 1])])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("backbone.weight") && e.contains("missing"),
            "{e}"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn bad_checkpoints_name_the_file_and_the_tensor() {
        let path = temp("bad.safetensors");
        let e = save(&path, &meta(), [("w", [2, 2], &[1.0f32][..])])
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"w\""), "{e}");
        assert!(!path.exists(), "a failed save writes nothing");

        let ints = [1u8, 0, 0, 0];
        let view = TensorView::new(Dtype::I32, vec![1, 1], &ints).unwrap();
        let mut md = HashMap::new();
        for (k, v) in [
            ("format_version", "1"),
            ("bits", "8"),
            ("method", "csq"),
            ("mode", "full"),
            ("hidden", "4"),
            ("seed", "0"),
        ] {
            md.insert(k.to_string(), v.to_string());
        }
        std::fs::write(
            &path,
            safetensors::serialize([("w", view.clone())], Some(md.clone())).unwrap(),
        )
        .unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(
            e.contains("bad.safetensors") && e.contains("\"w\"") && e.contains("I32"),
            "{e}"
        );

        md.insert("loss_params".into(), "alpha=x".into());
        std::fs::write(
            &path,
            safetensors::serialize([("w", view.clone())], Some(md.clone())).unwrap(),
        )
        .unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("loss_params") && e.contains("alpha=x"), "{e}");

        md.remove("loss_params");
        md.insert("method".into(), "sgd".into());
        std::fs::write(
            &path,
            safetensors::serialize([("w", view)], Some(md)).unwrap(),
        )
        .unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("method") && e.contains("sgd"), "{e}");

        std::fs::write(&path, b"junk").unwrap();
        assert!(load(&path)
            .unwrap_err()
            .to_string()
            .contains("bad.safetensors"));
        std::fs::remove_file(&path).unwrap();
    }

    /// A file with the given metadata and one `backbone.weight` tensor of shape `[2, 3]`.
    fn write_with_metadata(path: &Path, md: &[(&str, &str)]) {
        let w: Vec<u8> = (0..6u8).flat_map(|i| f32::from(i).to_le_bytes()).collect();
        let view = TensorView::new(Dtype::F32, vec![2, 3], &w).unwrap();
        let md: HashMap<String, String> = md
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let bytes = safetensors::serialize([("backbone.weight", view)], Some(md)).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    const V1: [(&str, &str); 6] = [
        ("format_version", "1"),
        ("bits", "8,16"),
        ("method", "csq"),
        ("mode", "full"),
        ("hidden", "2"),
        ("seed", "7"),
    ];

    /// Version 1 lacks the input keys: the width comes from `backbone.weight`, the scaling is
    /// the one rule version 1 had. Version 2 must state both.
    #[test]
    fn version_1_is_read_with_its_implied_input_and_version_2_must_state_it() {
        let path = temp("v1.safetensors");
        write_with_metadata(&path, &V1);
        let ckpt = load(&path).unwrap();
        assert_eq!(ckpt.meta.input_dim, 3);
        assert_eq!(ckpt.meta.input_scaling, InputScaling::Uint8Unit);

        let mut v2 = V1.to_vec();
        v2[0] = ("format_version", "2");
        write_with_metadata(&path, &v2);
        let e = load(&path).unwrap_err().to_string();
        assert!(
            e.contains("v1.safetensors") && e.contains("\"input_scaling\"") && e.contains("none"),
            "{e}"
        );
        v2.push(("input_scaling", "uint8/127"));
        write_with_metadata(&path, &v2);
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("uint8/127") && e.contains("uint8/255"), "{e}");
        v2.pop();
        v2.push(("input_scaling", "uint8/255"));
        write_with_metadata(&path, &v2);
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("\"input_dim\"") && e.contains("none"), "{e}");
        v2.push(("input_dim", "0"));
        write_with_metadata(&path, &v2);
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("\"input_dim\"") && e.contains("positive"), "{e}");
        v2.pop();
        v2.push(("input_dim", "9"));
        write_with_metadata(&path, &v2);
        assert_eq!(load(&path).unwrap().meta.input_dim, 9);
        v2[1] = ("bits", "0,8");
        write_with_metadata(&path, &v2);
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("\"bits\"") && e.contains("1..=1024"), "{e}");
        std::fs::remove_file(&path).unwrap();
    }

    /// Someone else's safetensors file, a future version, and a file cut short: each named.
    #[test]
    fn foreign_newer_and_truncated_files_are_named() {
        let path = temp("foreign.safetensors");
        write_with_metadata(&path, &[]);
        let e = load(&path).unwrap_err().to_string();
        assert!(
            e.contains("foreign.safetensors")
                && e.contains("\"format_version\"")
                && e.contains("cargo xtask train")
                && e.contains("found none"),
            "{e}"
        );
        let mut v3 = V1.to_vec();
        v3[0] = ("format_version", "3");
        write_with_metadata(&path, &v3);
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("found 3"), "{e}");

        save(&path, &meta(), [("hash.weight", [2, 2], &[1.0f32; 4][..])]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(
            e.contains("foreign.safetensors")
                && e.contains("truncated")
                && e.contains("tensor data"),
            "{e}"
        );
        std::fs::remove_file(&path).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("not found"), "{e}");
    }
}

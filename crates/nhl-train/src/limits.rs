//! What a training run will hold in memory, estimated from the settings and the data before any
//! of it is allocated, so that a size the machine cannot hold is an error naming the setting
//! rather than an abort (or an allocation that overflows `usize`) in the middle of a run.
//!
//! The estimate counts the large buffers (4-byte floats): parameters with their gradients and Adam
//! moments, a step's activations, the memory bank and its batch-to-bank matrices, the label
//! matrices and target tables, the device copy of the training features, the encoded outputs and
//! the per-epoch records. Sizes are computed in `u128` with saturating arithmetic, so no setting,
//! however absurd, can overflow the estimate itself.

use crate::config::{Method, Mode, TrainConfig};
use crate::data::Split;
use crate::error::TrainError;

/// Bytes of one float as training stores it.
const FLOAT: u128 = 4;
/// Rows encoded per forward pass at evaluation (the trainer's chunk).
const ENCODE_ROWS: u128 = 2048;

/// Where the buffers of the backend live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// In host memory (the CPU backend): every buffer counts against the machine's memory.
    Host,
    /// On a device with memory of its own (the GPU backend): only the host-side buffers count;
    /// the device refuses buffers it cannot hold when they are created.
    Device,
}

/// One kind of buffer in the estimate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    /// What it holds.
    pub what: String,
    /// The setting that sizes it (a command-line flag, or the data's class count).
    pub setting: &'static str,
    /// Bytes.
    pub bytes: u128,
    /// True when the buffer lives wherever the backend keeps its buffers; false for host memory
    /// whatever the backend.
    pub on_backend: bool,
}

/// The estimated memory of a training run, term by term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Footprint {
    /// Every term.
    pub terms: Vec<Term>,
}

fn mul(factors: &[u128]) -> u128 {
    factors.iter().fold(1, |acc, &f| acc.saturating_mul(f))
}

impl Footprint {
    /// The estimate for training `config` on `split`.
    pub fn of(config: &TrainConfig, split: &Split) -> Footprint {
        let n = split.train.len() as u128;
        let d = split.train.dim as u128;
        let h = config.hidden as u128;
        let b = config.bits.last().copied().unwrap_or(0) as u128;
        let k = config.bits.len() as u128;
        let c = split.train.n_classes() as u128;
        let m = (config.batch_size as u128).min(n);
        let bits_sum = config
            .bits
            .iter()
            .fold(0u128, |acc, &x| acc.saturating_add(x as u128));
        let params = mul(&[h, d])
            .saturating_add(h)
            .saturating_add(mul(&[b, h]))
            .saturating_add(b);
        let mut terms = vec![
            Term {
                what: format!(
                    "{params} parameters of a model {h} wide, with their gradients and Adam moments"
                ),
                setting: "--hidden",
                bytes: mul(&[4, params, FLOAT]),
                on_backend: true,
            },
            Term {
                what: "the initial weights, drawn in double precision on the host".into(),
                setting: "--hidden",
                bytes: mul(&[3, mul(&[h, d]).saturating_add(mul(&[b, h])), FLOAT]),
                on_backend: false,
            },
            Term {
                what: format!("the activations of a batch of {m}, and their gradients"),
                setting: "--batch-size",
                bytes: mul(&[
                    m,
                    d.saturating_add(mul(&[4, h]))
                        .saturating_add(mul(&[k.saturating_add(3), b])),
                    FLOAT,
                ]),
                on_backend: true,
            },
            Term {
                what: format!("the labels of {n} items in {c} classes, and the target tables"),
                setting: "the class count (--classes or the labels)",
                bytes: mul(&[n, mul(&[2, c]).saturating_add(bits_sum), FLOAT]),
                on_backend: true,
            },
            Term {
                what: "the training features on the backend".into(),
                setting: "the training data",
                bytes: mul(&[n, d, FLOAT]),
                on_backend: true,
            },
            Term {
                what: "the encoded outputs of the query and database items".into(),
                setting: "--bits",
                bytes: mul(&[
                    (split.query.len() as u128).saturating_add(split.database.len() as u128),
                    b,
                    FLOAT,
                ]),
                on_backend: false,
            },
            Term {
                what: format!(
                    "the activations of {ENCODE_ROWS} items encoded at once by a model {h} wide"
                ),
                setting: "--hidden",
                bytes: mul(&[ENCODE_ROWS, mul(&[2, h]).saturating_add(b), FLOAT]),
                on_backend: true,
            },
            Term {
                what: format!("the records of {} epochs", config.epochs),
                setting: "--epochs",
                bytes: mul(&[config.epochs as u128, k.saturating_add(2), 8]),
                on_backend: false,
            },
        ];
        if config.mode.adaptive() {
            terms.push(Term {
                what: format!("the Gram matrices of a batch of {m}"),
                setting: "--batch-size",
                bytes: mul(&[2, m, m, FLOAT]).saturating_add(mul(&[k, k, FLOAT])),
                on_backend: true,
            });
        }
        // n x n matrices per step: the within-batch pair losses' (the fused kernels' work
        // blocks and the tape forms' intermediates, and their gradients) and the SP
        // distillation's (two Gram matrices, their normalised forms and two gradients for each
        // of the K - 1 students, which the CPU backend evaluates in parallel).
        let pair_matrices = match config.method {
            Method::Hashnet | Method::Dch | Method::Lcdsh | Method::Dtsh => 24u128,
            _ => 0,
        }
        .saturating_add(if config.mode.distill() {
            mul(&[6, k.saturating_sub(1)])
        } else {
            0
        });
        if pair_matrices > 0 {
            terms.push(Term {
                what: format!("the pair matrices within a batch of {m}"),
                setting: "--batch-size",
                bytes: mul(&[pair_matrices, m, m, FLOAT]),
                on_backend: true,
            });
        }
        if config.method.needs_bank() {
            terms.push(Term {
                what: format!(
                    "the memory bank of {n} items and the batch-to-bank matrices of a batch of {m}"
                ),
                setting: "--batch-size",
                bytes: mul(&[n, b.saturating_add(c), FLOAT]).saturating_add(mul(&[8, m, n, FLOAT])),
                on_backend: true,
            });
        }
        if config.mode == Mode::Single {
            terms.push(Term {
                what: "the finished models of a single run".into(),
                setting: "--hidden",
                bytes: mul(&[k, params, FLOAT]),
                on_backend: false,
            });
        }
        Footprint { terms }
    }

    /// Bytes of the terms that count against the memory of `placement`'s host.
    pub fn host_bytes(&self, placement: Placement) -> u128 {
        self.terms
            .iter()
            .filter(|t| placement == Placement::Host || !t.on_backend)
            .fold(0u128, |acc, t| acc.saturating_add(t.bytes))
    }

    /// Fails when the host part of the estimate exceeds `available` bytes (when known) or what a
    /// process can address at all (`isize::MAX`), naming the largest term's setting.
    pub fn check(&self, placement: Placement, available: Option<u64>) -> Result<(), TrainError> {
        let needed = self.host_bytes(placement);
        let addressable = isize::MAX as u128;
        let limit = available.map_or(addressable, |a| u128::from(a).min(addressable));
        if needed <= limit {
            return Ok(());
        }
        let largest = self
            .terms
            .iter()
            .filter(|t| placement == Placement::Host || !t.on_backend)
            .max_by_key(|t| t.bytes);
        let (setting, what) = largest.map_or(("--hidden", String::new()), |t| {
            (
                t.setting,
                format!(" (mostly {}: {})", t.what, bytes_text(t.bytes)),
            )
        });
        let machine = match available {
            Some(a) if u128::from(a) < addressable => {
                format!(
                    "the {} of memory of this machine",
                    bytes_text(u128::from(a))
                )
            }
            _ => "what a process can address".into(),
        };
        Err(TrainError::Memory {
            setting,
            reason: format!(
                "training would need about {}{what}, more than {machine}",
                bytes_text(needed)
            ),
        })
    }
}

/// `12.3 GiB`, `1.0e9 TiB`: a byte count for a message.
pub fn bytes_text(bytes: u128) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else if value < 1e6 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.1e} {}", UNITS[unit])
    }
}

/// The memory this process may use: the machine's physical memory, or less where a control
/// group limits it (Linux); `None` where neither can be read.
pub fn physical_memory() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            kib.checked_mul(1024)
        });
    // cgroup v2, then v1; "max" (or a huge v1 value) means no limit.
    let limit = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok()?.trim().parse::<u64>().ok());
    match (total, limit) {
        (Some(t), Some(l)) => Some(t.min(l)),
        (t, l) => t.or(l),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Dataset;
    use nhl_index::eval::Labels;

    fn split(n: usize, dim: usize, classes: usize) -> Split {
        let set = |items: usize| Dataset {
            features: vec![0.5; items * dim],
            dim,
            labels: Labels::Single((0..items as u32).map(|i| i % classes as u32).collect()),
            n_classes: classes,
        };
        Split {
            name: "tiny".into(),
            query: set(3),
            train: set(n),
            database: set(n),
        }
    }

    #[test]
    fn the_default_run_fits_and_the_estimate_counts_its_model() {
        let config = TrainConfig::default();
        let fp = Footprint::of(&config, &split(5000, 784, 10));
        let params = 1024 * 784 + 1024 + 128 * 1024 + 128;
        assert!(fp
            .terms
            .iter()
            .any(|t| t.setting == "--hidden" && t.bytes == 4 * params * 4));
        let bytes = fp.host_bytes(Placement::Host);
        assert!(bytes > 16 * params && bytes < 200 << 20, "{bytes}");
        assert!(fp.host_bytes(Placement::Device) < bytes);
        fp.check(Placement::Host, Some(1 << 30)).unwrap();
    }

    #[test]
    fn absurd_sizes_name_their_setting_and_never_overflow() {
        let data = split(50, 8, 2);
        let huge = |config: TrainConfig, placement| {
            Footprint::of(&config, &data)
                .check(placement, Some(16 << 30))
                .unwrap_err()
                .to_string()
        };
        let hidden = TrainConfig {
            hidden: usize::MAX,
            ..TrainConfig::default()
        };
        let e = huge(hidden.clone(), Placement::Host);
        assert!(e.contains("--hidden") && e.contains("more than"), "{e}");
        // Even on a device, the host draws the initial weights.
        assert!(huge(hidden, Placement::Device).contains("--hidden"));
        let e = huge(
            TrainConfig {
                hidden: 100_000_000,
                ..TrainConfig::default()
            },
            Placement::Host,
        );
        assert!(e.contains("--hidden") && e.contains("16.0 GiB"), "{e}");
        let e = huge(
            TrainConfig {
                epochs: usize::MAX,
                ..TrainConfig::default()
            },
            Placement::Device,
        );
        assert!(e.contains("--epochs"), "{e}");
        // Without a known machine size, the address space is the limit.
        let e = Footprint::of(
            &TrainConfig {
                hidden: usize::MAX / 2,
                ..TrainConfig::default()
            },
            &data,
        )
        .check(Placement::Host, None)
        .unwrap_err()
        .to_string();
        assert!(e.contains("what a process can address"), "{e}");
    }

    /// The estimate's verdict for `method` in `mode` with a batch of `batch` items, a 4-wide
    /// model and 200,000 training items, on a host with 1 GiB.
    fn verdict(method: Method, mode: Mode, batch: usize) -> Result<(), TrainError> {
        let config = TrainConfig {
            method,
            mode,
            batch_size: batch,
            hidden: 4,
            ..TrainConfig::default()
        };
        Footprint::of(&config, &split(200_000, 4, 2)).check(Placement::Host, Some(1 << 30))
    }

    /// Every loss with a memory bank counts it (DSH and DHN, and DBDH, DPSH and MDSH too), and a
    /// batch too large for its batch-to-bank matrices is refused naming the batch size.
    #[test]
    fn a_large_bank_batch_names_the_batch_size() {
        for method in [
            Method::Dsh,
            Method::Dhn,
            Method::Dbdh,
            Method::Dpsh,
            Method::Mdsh,
        ] {
            let e = verdict(method, Mode::Nested, 1 << 20)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("--batch-size") && e.contains("memory bank"),
                "{method}: {e}"
            );
        }
    }

    /// A batch too large for the n x n matrices of a within-batch pair loss, or of the
    /// distillation, is refused naming the batch size; the same batch of a loss without pair
    /// matrices, undistilled, passes.
    #[test]
    fn a_large_pair_batch_names_the_batch_size() {
        for (method, mode) in [
            (Method::Hashnet, Mode::Nested),
            (Method::Dtsh, Mode::Adaptive),
            (Method::Csq, Mode::Distill),
        ] {
            let e = verdict(method, mode, 1 << 16).unwrap_err().to_string();
            assert!(
                e.contains("--batch-size") && e.contains("pair matrices"),
                "{method} {mode:?}: {e}"
            );
        }
        verdict(Method::Csq, Mode::Nested, 1 << 16).unwrap();
    }

    #[test]
    fn byte_counts_read_as_units() {
        assert_eq!(bytes_text(512), "512 bytes");
        assert_eq!(bytes_text(3 << 29), "1.5 GiB");
        assert!(bytes_text(u128::MAX).ends_with("TiB"));
    }
}

//! `cargo xtask eval --run DIR`: recompute the metrics of a finished run from its saved codes and
//! labels, and compare them with the run's `metrics.json`: any figure that disagrees is an
//! error, so a script that runs `eval` learns of it from the exit status.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nhl_index::eval::Labels;
use nhl_index::npy::{read_npy, NpyData};
use nhl_index::Codes;
use nhl_train::config::Mode;
use nhl_train::metrics::{evaluate_lengths, nested_views, LengthMetrics, PRECISION_KS};
use nhl_train::report::{format_table, read_metrics};

use crate::out_path::restore_set_aside;

/// Recompute a run's metrics from its codes.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run directory written by `cargo xtask train`.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
}

/// Differences below this are rounding, not a mismatch.
const TOLERANCE: f64 = 1e-9;

/// Labels from an int64 `[n]` (class indices) or uint8 `[n, C]` (multi-hot) `.npy` file.
fn read_labels(path: &Path) -> anyhow::Result<Labels> {
    let array = read_npy(path)?;
    match (array.shape.as_slice(), array.data) {
        (&[_], NpyData::I64(v)) => {
            let classes = v
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    u32::try_from(c).with_context(|| {
                        format!("{}: item {i} has the negative class {c}", path.display())
                    })
                })
                .collect::<anyhow::Result<Vec<u32>>>()?;
            Ok(Labels::Single(classes))
        }
        (&[n, c], NpyData::U8(v)) => {
            // Without columns the array holds no bytes whatever `n` claims: refused before a
            // row is made per claimed item.
            if c == 0 {
                bail!(
                    "{}: labels: expected uint8 [n, C] with at least one class column, found \
                     shape [{n}, 0]",
                    path.display()
                );
            }
            let rows = (0..n)
                .map(|i| {
                    (0..c)
                        .filter(|&k| v[i * c + k] != 0)
                        .map(|k| k as u32)
                        .collect()
                })
                .collect();
            Ok(Labels::Multi { n_classes: c, rows })
        }
        (shape, data) => bail!(
            "{}: labels: expected int64 [n] or uint8 [n, C], found {} {shape:?}",
            path.display(),
            data.dtype_name()
        ),
    }
}

/// Reads codes holding at least `bits` bits per item.
fn read_codes(path: &Path, bits: usize) -> anyhow::Result<Codes> {
    Ok(Codes::read_npy(path, Some(bits))?)
}

/// Runs `cargo xtask eval`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let dir = &args.run;
    restore_set_aside("--run", dir)?;
    let stored = read_metrics(&dir.join("metrics.json"))?;
    let query_labels = read_labels(&dir.join("query_labels.npy"))?;
    let database_labels = read_labels(&dir.join("database_labels.npy"))?;
    let Some(&longest) = stored.bits.last() else {
        bail!(
            "{}: bits: the run lists no code length",
            dir.join("metrics.json").display()
        );
    };
    let recomputed: Vec<LengthMetrics> = if stored.mode == Mode::Single {
        let mut all = Vec::new();
        for &b in &stored.bits {
            let q = read_codes(&dir.join(format!("query_codes_{b}.npy")), b)?;
            let d = read_codes(&dir.join(format!("database_codes_{b}.npy")), b)?;
            all.extend(evaluate_lengths(
                [(b, q.view(), d.view())],
                &query_labels,
                &database_labels,
                &PRECISION_KS,
            )?);
        }
        all
    } else {
        let q = read_codes(&dir.join("query_codes.npy"), longest)?;
        let d = read_codes(&dir.join("database_codes.npy"), longest)?;
        evaluate_lengths(
            nested_views(&q, &d, &stored.bits)?,
            &query_labels,
            &database_labels,
            &PRECISION_KS,
        )?
    };
    let recorded = stored.lengths();
    println!("recomputed from the codes:\n{}", format_table(&recomputed));
    println!("recorded in metrics.json:\n{}", format_table(&recorded));
    let mismatches = mismatches(&recomputed, &recorded);
    if !mismatches.is_empty() {
        bail!(
            "{}: {} figure(s) disagree with the codes:\n  {}",
            dir.join("metrics.json").display(),
            mismatches.len(),
            mismatches.join("\n  ")
        );
    }
    println!("the recomputed metrics match metrics.json");
    Ok(())
}

/// Every figure that differs by more than [`TOLERANCE`], described.
fn mismatches(recomputed: &[LengthMetrics], recorded: &[LengthMetrics]) -> Vec<String> {
    let mut out = Vec::new();
    for (a, b) in recomputed.iter().zip(recorded) {
        let mut check = |what: String, x: f64, y: f64| {
            // Written so that a NaN on either side counts as a mismatch.
            let close = (x - y).abs() <= TOLERANCE;
            if !close {
                out.push(format!(
                    "{} bits: {what}: recomputed {x}, recorded {y}",
                    a.bits
                ));
            }
        };
        check("mAP@ALL".into(), a.map, b.map);
        check("tie-aware mAP".into(), a.map_tie_aware, b.map_tie_aware);
        for &(k, p) in &a.precision_at {
            let q = b
                .precision_at
                .iter()
                .find(|(kk, _)| *kk == k)
                .map_or(f64::NAN, |&(_, q)| q);
            check(format!("P@{k}"), p, q);
        }
    }
    if recomputed.len() != recorded.len() {
        out.push(format!(
            "{} lengths recomputed, {} recorded",
            recomputed.len(),
            recorded.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatches_are_reported_per_figure() {
        let m = |map| LengthMetrics {
            bits: 8,
            map,
            map_tie_aware: 0.5,
            precision_at: vec![(1, 1.0)],
        };
        assert!(mismatches(&[m(0.5)], &[m(0.5)]).is_empty());
        let diff = mismatches(&[m(0.5)], &[m(0.6)]);
        assert_eq!(diff.len(), 1);
        assert!(diff[0].contains("8 bits: mAP@ALL"), "{diff:?}");
        assert_eq!(mismatches(&[m(f64::NAN)], &[m(0.5)]).len(), 1);
    }

    /// A multi-hot file without columns holds no byte however many items it claims: refused,
    /// not answered with a row per claimed item.
    #[test]
    fn labels_without_class_columns_are_refused() {
        let path = std::env::temp_dir().join(format!("nhl-eval-labels-{}.npy", std::process::id()));
        nhl_index::npy::write_npy(
            &path,
            &nhl_index::npy::NpyArray {
                shape: vec![1 << 40, 0],
                data: NpyData::U8(vec![]),
            },
        )
        .unwrap();
        let e = format!("{:#}", read_labels(&path).unwrap_err());
        std::fs::remove_file(&path).unwrap();
        assert!(
            e.contains("nhl-eval-labels") && e.contains("at least one class column"),
            "{e}"
        );
    }
}

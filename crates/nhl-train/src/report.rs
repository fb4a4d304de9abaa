//! The record of a run: `metrics.json` (read back by `cargo xtask eval`) and `report.svg`, a
//! hand-drawn two-panel figure (mAP against code length; loss against epoch).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::config::{Method, Mode, TrainConfig};
use crate::error::TrainError;
use crate::metrics::LengthMetrics;
use crate::run_dir::write_atomic;
use crate::trainer::LiveUnits;

/// A JSON object keyed by numbers (`{"8": .., "16": ..}`) that keeps its keys in the order given,
/// so the file lists the lengths as the run did rather than in string order ("128" < "16").
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NumMap<T>(pub Vec<(usize, T)>);

impl<T> NumMap<T> {
    /// The value under `key`.
    pub fn get(&self, key: usize) -> Option<&T> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

impl<T: Serialize> Serialize for NumMap<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(&k.to_string(), v)?;
        }
        map.end()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NumMap<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumMapVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for NumMapVisitor<T> {
            type Value = NumMap<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object keyed by non-negative integers")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = access.next_entry::<String, T>()? {
                    let key = k.parse().map_err(|_| {
                        de::Error::invalid_value(de::Unexpected::Str(&k), &"an integer key")
                    })?;
                    out.push((key, v));
                }
                Ok(NumMap(out))
            }
        }
        deserializer.deserialize_map(NumMapVisitor(std::marker::PhantomData))
    }
}

/// JSON has no NaN: serde_json writes a non-finite float as `null`, so read `null` back as NaN
/// (a diverged loss must not make the whole file unreadable).
fn floats_or_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f64>, D::Error> {
    let values = Vec::<Option<f64>>::deserialize(deserializer)?;
    Ok(values.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

/// Everything `metrics.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    /// Protocol or data source (`fmnist-t10k`, `fmnist`, `user`).
    pub protocol: String,
    /// Base loss.
    pub method: Method,
    /// NHL mode.
    pub mode: Mode,
    /// `cpu` or `gpu`.
    pub backend: String,
    /// The adapter (GPU name and driver, or the CPU backend's name).
    pub adapter: String,
    /// Run seed.
    pub seed: u64,
    /// Epochs trained.
    pub epochs: usize,
    /// Code lengths, increasing.
    pub bits: Vec<usize>,
    /// mAP@ALL per length (stable tie order).
    pub map: NumMap<f64>,
    /// Tie-aware mAP@ALL per length.
    pub map_tie_aware: NumMap<f64>,
    /// Precision per length, then per cut-off k.
    pub precision_at: NumMap<NumMap<f64>>,
    /// Wall-clock seconds of the training loop only.
    pub train_seconds: f64,
    /// Seconds of every epoch (all models of the epoch in mode `single`).
    #[serde(deserialize_with = "floats_or_null")]
    pub epoch_seconds: Vec<f64>,
    /// Mean training loss of every epoch.
    #[serde(deserialize_with = "floats_or_null")]
    pub loss_per_epoch: Vec<f64>,
    /// Number of queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_query: Option<usize>,
    /// Number of training items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_train: Option<usize>,
    /// Number of database items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_database: Option<usize>,
    /// The full training configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<TrainConfig>,
    /// Every hyper-parameter of the loss by name, defaults included.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub loss_params: BTreeMap<String, f64>,
    /// mAP@ALL per length at every validation during training (`--eval-every`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validations: Vec<ValidationRecord>,
    /// Each length's best mAP@ALL over the validations: the reference implementation's way of
    /// reporting, selected on the query set, so biased upwards; `map` is the honest figure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_best_of_validations: Option<NumMap<f64>>,
    /// Every model's live backbone units after training (one entry, or one per length in mode
    /// `single`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backbone_live_units: Vec<LiveUnits>,
    /// Weighted modes (`adaptive`, `full`): per epoch, each length's dominance weight averaged
    /// over the epoch's batches (docs/METHOD.md 2.2: all 1 where no longer code opposes a
    /// shorter one; they sum to the number of lengths).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dominance_weights_per_epoch: Vec<Vec<f64>>,
    /// The lengths whose every query and database code is one value (`xtask train --on-collapse
    /// keep`; without it such a run stops with an error): their figures are those of a ranking
    /// that cannot tell items apart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collapsed_lengths: Vec<usize>,
}

/// One validation in `metrics.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidationRecord {
    /// Epoch just finished, from 1.
    pub epoch: usize,
    /// mAP@ALL per length.
    pub map: NumMap<f64>,
}

impl RunMetrics {
    /// Sets `bits`, `map`, `map_tie_aware` and `precision_at` from per-length results.
    pub fn set_lengths(&mut self, lengths: &[LengthMetrics]) {
        self.bits = lengths.iter().map(|m| m.bits).collect();
        self.map = NumMap(lengths.iter().map(|m| (m.bits, m.map)).collect());
        self.map_tie_aware = NumMap(lengths.iter().map(|m| (m.bits, m.map_tie_aware)).collect());
        self.precision_at = NumMap(
            lengths
                .iter()
                .map(|m| (m.bits, NumMap(m.precision_at.clone())))
                .collect(),
        );
    }

    /// The per-length results, one per entry of `bits` (NaN where a figure is absent).
    pub fn lengths(&self) -> Vec<LengthMetrics> {
        self.bits
            .iter()
            .map(|&b| LengthMetrics {
                bits: b,
                map: self.map.get(b).copied().unwrap_or(f64::NAN),
                map_tie_aware: self.map_tie_aware.get(b).copied().unwrap_or(f64::NAN),
                precision_at: self
                    .precision_at
                    .get(b)
                    .map(|p| p.0.clone())
                    .unwrap_or_default(),
            })
            .collect()
    }
}

/// The per-length results as a plain-text table: bits, mAP@ALL, tie-aware mAP and the precision
/// columns of the first row's cut-offs.
pub fn format_table(lengths: &[LengthMetrics]) -> String {
    let ks: Vec<usize> = lengths
        .first()
        .map(|m| m.precision_at.iter().map(|&(k, _)| k).collect())
        .unwrap_or_default();
    let mut out = format!("{:>5} | {:>8} | {:>9}", "bits", "mAP@ALL", "tie-aware");
    for k in &ks {
        let _ = write!(out, " | {:>7}", format!("P@{k}"));
    }
    out.push('\n');
    out.push_str(&"-".repeat(out.len() - 1));
    out.push('\n');
    for m in lengths {
        let _ = write!(
            out,
            "{:>5} | {:>8.4} | {:>9.4}",
            m.bits, m.map, m.map_tie_aware
        );
        for &k in &ks {
            let p = m
                .precision_at
                .iter()
                .find(|(kk, _)| *kk == k)
                .map_or(f64::NAN, |&(_, p)| p);
            let _ = write!(out, " | {p:>7.4}");
        }
        out.push('\n');
    }
    out
}

/// Writes `metrics` as pretty JSON to `path`, whole or not at all.
pub fn write_metrics(path: &Path, metrics: &RunMetrics) -> Result<(), TrainError> {
    let json = serde_json::to_string_pretty(metrics).map_err(|source| TrainError::MetricsJson {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, format!("{json}\n").as_bytes())?;
    Ok(())
}

/// Reads a `metrics.json`.
pub fn read_metrics(path: &Path) -> Result<RunMetrics, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_metrics(path, &text)
}

/// [`read_metrics`] of the text of a `metrics.json`; `path` only names it in errors.
pub fn parse_metrics(path: &Path, text: &str) -> Result<RunMetrics, TrainError> {
    serde_json::from_str(text).map_err(|source| TrainError::MetricsJson {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes [`render_svg`] of `metrics` to `path`, whole or not at all.
pub fn write_svg(path: &Path, metrics: &RunMetrics) -> Result<(), TrainError> {
    write_atomic(path, render_svg(metrics).as_bytes())?;
    Ok(())
}

/// Escapes text for SVG content and attributes.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A plot area in SVG pixels and the data range it maps.
struct Panel {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    x: (f64, f64),
    y: (f64, f64),
}

impl Panel {
    fn px(&self, x: f64) -> f64 {
        self.left + (x - self.x.0) / (self.x.1 - self.x.0) * self.width
    }
    fn py(&self, y: f64) -> f64 {
        self.top + self.height - (y - self.y.0) / (self.y.1 - self.y.0) * self.height
    }

    /// Frame, grid lines with tick labels, and the axis titles.
    fn axes(
        &self,
        out: &mut String,
        xticks: &[(f64, String)],
        yticks: &[(f64, String)],
        xlabel: &str,
        ylabel: &str,
    ) {
        let (l, t, w, h) = (self.left, self.top, self.width, self.height);
        let _ = writeln!(
            out,
            r##"<rect x="{l}" y="{t}" width="{w}" height="{h}" fill="none" stroke="#444"/>"##
        );
        for (x, label) in xticks {
            let px = self.px(*x);
            let _ = writeln!(
                out,
                r##"<line x1="{px:.1}" y1="{t}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                t + h,
                t + h + 16.0,
                escape(label)
            );
        }
        for (y, label) in yticks {
            let py = self.py(*y);
            let _ = writeln!(
                out,
                r##"<line x1="{l}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                l + w,
                l - 6.0,
                py + 4.0,
                escape(label)
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            l + w / 2.0,
            t + h + 36.0,
            escape(xlabel)
        );
        let (yx, yy) = (l - 44.0, t + h / 2.0);
        let _ = writeln!(
            out,
            r#"<text x="{yx:.1}" y="{yy:.1}" text-anchor="middle" transform="rotate(-90 {yx:.1} {yy:.1})">{}</text>"#,
            escape(ylabel)
        );
    }

    /// A polyline through the finite points, and a marker of class `class` on each.
    fn series(
        &self,
        out: &mut String,
        points: &[(f64, f64)],
        class: &str,
        colour: &str,
        dash: &str,
    ) {
        let finite: Vec<(f64, f64)> = points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        let coords: Vec<String> = finite
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", self.px(x), self.py(y)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline class="{class}-line" points="{}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>"#,
            coords.join(" ")
        );
        for &(x, y) in &finite {
            let _ = writeln!(
                out,
                r#"<circle class="{class}" cx="{:.1}" cy="{:.1}" r="3.5" fill="{colour}"/>"#,
                self.px(x),
                self.py(y)
            );
        }
    }
}

/// Short decimal form of a tick value.
fn tick_label(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The report figure: mAP@ALL (solid) and tie-aware mAP (dashed) against code length on a log2
/// axis on the left; the mean training loss per epoch on the right.
pub fn render_svg(m: &RunMetrics) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="960" height="440" viewBox="0 0 960 440" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="960" height="440" fill="white"/>"#);
    let method = serde_json::to_value(m.method).ok();
    let mode = serde_json::to_value(m.mode).ok();
    let name = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let _ = writeln!(
        out,
        r#"<text x="480" y="26" text-anchor="middle" font-size="16">{}</text>"#,
        escape(&format!(
            "{} / {} / {}: {} epochs, seed {}, {}",
            m.protocol,
            name(&method),
            name(&mode),
            m.epochs,
            m.seed,
            // The CPU backend's adapter name already starts with "cpu".
            if m.adapter.starts_with(&m.backend) {
                m.adapter.clone()
            } else {
                format!("{} ({})", m.backend, m.adapter)
            }
        ))
    );

    // Left: mAP against log2(bits), whole powers of two as ticks.
    let logs: Vec<f64> = m.bits.iter().map(|&b| (b.max(1) as f64).log2()).collect();
    let lo = logs.iter().copied().fold(f64::INFINITY, f64::min).floor();
    let hi = logs
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max)
        .ceil();
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else if lo.is_finite() {
        (lo - 1.0, lo + 1.0)
    } else {
        (3.0, 7.0)
    };
    let left = Panel {
        left: 70.0,
        top: 50.0,
        width: 360.0,
        height: 320.0,
        x: (lo - 0.25, hi + 0.25),
        y: (0.0, 1.0),
    };
    let xticks: Vec<(f64, String)> = (lo as i32..=hi as i32)
        .map(|k| (f64::from(k), format!("{}", 1u64 << k.clamp(0, 63))))
        .collect();
    let yticks: Vec<(f64, String)> = (0..=5)
        .map(|i| (i as f64 / 5.0, tick_label(i as f64 / 5.0)))
        .collect();
    left.axes(
        &mut out,
        &xticks,
        &yticks,
        "code length (bits, log2 scale)",
        "mAP@ALL",
    );
    let points = |f: &NumMap<f64>| -> Vec<(f64, f64)> {
        m.bits
            .iter()
            .zip(&logs)
            .map(|(&b, &x)| (x, f.get(b).copied().unwrap_or(f64::NAN)))
            .collect()
    };
    left.series(&mut out, &points(&m.map), "map", "#1f77b4", "");
    left.series(
        &mut out,
        &points(&m.map_tie_aware),
        "map-tie-aware",
        "#ff7f0e",
        r#" stroke-dasharray="6 4""#,
    );
    let _ = writeln!(
        out,
        // Bottom right: long codes score high, so the curves rarely pass there.
        r##"<line x1="300" y1="334" x2="330" y2="334" stroke="#1f77b4" stroke-width="2"/><text x="336" y="338">stable ties</text>
<line x1="300" y1="352" x2="330" y2="352" stroke="#ff7f0e" stroke-width="2" stroke-dasharray="6 4"/><text x="336" y="356">tie-aware</text>"##
    );

    // Right: loss against epoch.
    let losses: Vec<(f64, f64)> = m
        .loss_per_epoch
        .iter()
        .enumerate()
        .map(|(e, &l)| ((e + 1) as f64, l))
        .collect();
    let finite: Vec<f64> = losses
        .iter()
        .map(|p| p.1)
        .filter(|l| l.is_finite())
        .collect();
    let (ymin, ymax) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &l| {
            (a.min(l), b.max(l))
        });
    let (ymin, ymax) = if finite.is_empty() {
        (0.0, 1.0)
    } else if ymax > ymin {
        let pad = 0.05 * (ymax - ymin);
        (ymin - pad, ymax + pad)
    } else {
        (ymin - 0.5, ymax + 0.5)
    };
    let epochs = losses.len().max(1);
    let right = Panel {
        left: 560.0,
        top: 50.0,
        width: 360.0,
        height: 320.0,
        x: (0.5, epochs as f64 + 0.5),
        y: (ymin, ymax),
    };
    let step = epochs.div_ceil(6).max(1);
    let xticks: Vec<(f64, String)> = (1..=epochs)
        .filter(|e| (e - 1) % step == 0 || *e == epochs)
        .map(|e| (e as f64, e.to_string()))
        .collect();
    let yticks: Vec<(f64, String)> = (0..=4)
        .map(|i| {
            let v = ymin + (ymax - ymin) * i as f64 / 4.0;
            (v, format!("{v:.4}"))
        })
        .collect();
    right.axes(&mut out, &xticks, &yticks, "epoch", "mean training loss");
    if finite.is_empty() {
        let _ = writeln!(
            out,
            r#"<text x="740" y="210" text-anchor="middle">no finite loss recorded</text>"#
        );
    } else {
        right.series(&mut out, &losses, "loss", "#2ca02c", "");
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RunMetrics {
        let mut m = RunMetrics {
            protocol: "fmnist-t10k <&>".into(),
            method: Method::Csq,
            mode: Mode::Full,
            backend: "cpu".into(),
            adapter: "CPU reference".into(),
            seed: 0,
            epochs: 3,
            bits: vec![],
            map: NumMap::default(),
            map_tie_aware: NumMap::default(),
            precision_at: NumMap::default(),
            train_seconds: 1.5,
            epoch_seconds: vec![0.5, 0.5, 0.5],
            loss_per_epoch: vec![0.9, f64::NAN, 0.4],
            n_query: Some(1000),
            n_train: Some(5000),
            n_database: Some(9000),
            config: Some(TrainConfig::default()),
            loss_params: BTreeMap::from([("lambda".into(), 1e-4)]),
            validations: vec![ValidationRecord {
                epoch: 2,
                map: NumMap(vec![(8, 0.4), (16, 0.5)]),
            }],
            map_best_of_validations: Some(NumMap(vec![(8, 0.4), (16, 0.5)])),
            backbone_live_units: vec![LiveUnits {
                bits: 128,
                live: 60,
                hidden: 1024,
            }],
            dominance_weights_per_epoch: vec![vec![1.25, 0.75], vec![1.0, 1.0], vec![1.5, 0.5]],
            collapsed_lengths: vec![16],
        };
        let lengths: Vec<LengthMetrics> = [8, 16, 32, 64, 128]
            .iter()
            .enumerate()
            .map(|(i, &b)| LengthMetrics {
                bits: b,
                map: 0.5 + 0.05 * i as f64,
                map_tie_aware: 0.45 + 0.05 * i as f64,
                precision_at: vec![(1, 0.9), (10, 0.8), (100, 0.7)],
            })
            .collect();
        m.set_lengths(&lengths);
        m
    }

    #[test]
    fn metrics_json_has_the_agreed_keys_and_round_trips() {
        let m = sample();
        let path = std::env::temp_dir().join(format!("nhl-metrics-{}.json", std::process::id()));
        write_metrics(&path, &m).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for key in [
            "protocol",
            "method",
            "mode",
            "backend",
            "adapter",
            "seed",
            "epochs",
            "bits",
            "map",
            "map_tie_aware",
            "precision_at",
            "train_seconds",
            "epoch_seconds",
            "loss_per_epoch",
        ] {
            assert!(v.get(key).is_some(), "missing key {key}");
        }
        assert_eq!(v["method"], "csq");
        assert_eq!(v["map"]["8"], 0.5);
        assert_eq!(v["precision_at"]["128"]["100"], 0.7);
        // Lengths stay in numeric order in the file.
        assert!(text.find("\"16\"").unwrap() < text.find("\"128\"").unwrap());
        let back = read_metrics(&path).unwrap();
        assert!(back.loss_per_epoch[1].is_nan());
        assert_eq!(back.lengths(), m.lengths());
        assert_eq!(back.config, m.config);
        assert_eq!(back.collapsed_lengths, vec![16]);

        std::fs::write(&path, r#"{"protocol": "x"}"#).unwrap();
        let e = read_metrics(&path).unwrap_err().to_string();
        assert!(
            e.contains("metrics.json") && e.contains("missing field"),
            "{e}"
        );
        std::fs::remove_file(&path).unwrap();
    }

    /// Checks that every element is closed in order (a small XML well-formedness check: tags
    /// only, which is all the writer emits besides text).
    fn balanced(svg: &str) -> bool {
        let mut stack = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let Some(end) = rest[start..].find('>') else {
                return false;
            };
            let tag = &rest[start + 1..start + end];
            rest = &rest[start + end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                if stack.pop() != Some(name.trim().to_string()) {
                    return false;
                }
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().unwrap_or("").to_string());
            }
        }
        stack.is_empty() && !rest.contains('>')
    }

    #[test]
    fn svg_is_well_formed_with_one_point_per_length() {
        let m = sample();
        let svg = render_svg(&m);
        assert!(balanced(&svg), "{svg}");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches(r#"class="map""#).count(), 5);
        assert_eq!(svg.matches(r#"class="map-tie-aware""#).count(), 5);
        // The NaN epoch is skipped, not drawn.
        assert_eq!(svg.matches(r#"class="loss""#).count(), 2);
        assert!(svg.contains("&lt;&amp;&gt;") && !svg.contains("NaN"));
        for tick in [">8<", ">16<", ">32<", ">64<", ">128<"] {
            assert!(svg.contains(tick), "tick {tick}");
        }
        let mut empty = m.clone();
        empty.set_lengths(&[]);
        empty.loss_per_epoch.clear();
        assert!(balanced(&render_svg(&empty)));
    }

    #[test]
    fn table_has_a_row_per_length_and_a_column_per_cut_off() {
        let table = format_table(&sample().lengths());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 7);
        assert!(lines[0].contains("P@1") && lines[0].contains("P@100"));
        assert!(
            lines[2].starts_with("    8 |   0.5000 |    0.4500 |  0.9000"),
            "{}",
            lines[2]
        );
    }
}

//! Every loss's hyper-parameters: one table per method (name, default from docs/METHOD.md
//! section 5, valid range, meaning), and the values of a run, each at its default unless the
//! command line sets it (`--loss-param name=value`).

use std::collections::BTreeMap;

use crate::config::Method;
use crate::error::TrainError;

/// One hyper-parameter of a loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamSpec {
    /// The name `--loss-param` uses.
    pub name: &'static str,
    /// Its value when not set.
    pub default: f64,
    /// Smallest valid value.
    pub min: f64,
    /// False when `min` itself is excluded (a strictly positive parameter).
    pub min_inclusive: bool,
    /// Largest valid value (inclusive; infinite when unbounded).
    pub max: f64,
    /// True when only whole numbers are valid (epochs, exponents, switches).
    pub integer: bool,
    /// One line: what it does.
    pub meaning: &'static str,
}

impl ParamSpec {
    const fn real(name: &'static str, default: f64, meaning: &'static str) -> Self {
        Self {
            name,
            default,
            min: 0.0,
            min_inclusive: true,
            max: f64::INFINITY,
            integer: false,
            meaning,
        }
    }

    const fn positive(name: &'static str, default: f64, meaning: &'static str) -> Self {
        Self {
            min_inclusive: false,
            ..Self::real(name, default, meaning)
        }
    }

    const fn unit(name: &'static str, default: f64, meaning: &'static str) -> Self {
        Self {
            max: 1.0,
            ..Self::real(name, default, meaning)
        }
    }

    const fn whole(
        name: &'static str,
        default: f64,
        min: f64,
        max: f64,
        meaning: &'static str,
    ) -> Self {
        Self {
            min,
            max,
            integer: true,
            ..Self::real(name, default, meaning)
        }
    }

    /// True when `value` is in the range (and whole where it must be).
    pub fn accepts(&self, value: f64) -> bool {
        let above = if self.min_inclusive {
            value >= self.min
        } else {
            value > self.min
        };
        above && value <= self.max && (!self.integer || value.fract() == 0.0)
    }

    /// The valid values in words: `[0, inf)`, `(0, inf)`, `[0, 1]`, `{1, 2}`, `integers in
    /// [1, inf)`.
    pub fn range(&self) -> String {
        let num = |v: f64| {
            if v.is_infinite() {
                "inf".to_string()
            } else {
                format!("{v}")
            }
        };
        if self.integer && self.max - self.min <= 2.0 {
            let values: Vec<String> = (self.min as i64..=self.max as i64)
                .map(|v| v.to_string())
                .collect();
            return format!("{{{}}}", values.join(", "));
        }
        let open = if self.min_inclusive { '[' } else { '(' };
        let close = if self.max.is_infinite() { ')' } else { ']' };
        let interval = format!("{open}{}, {}{close}", num(self.min), num(self.max));
        if self.integer {
            format!("integers in {interval}")
        } else {
            interval
        }
    }
}

const ALPHA_QUANT: &str = "weight of the quantisation term";

const CSQ: &[ParamSpec] = &[ParamSpec::real(
    "lambda",
    1e-4,
    "weight of the quantisation term mean((|tanh u| - 1)^2)",
)];
const DPN: &[ParamSpec] = &[
    ParamSpec::real("m", 1.0, "hinge margin of max(0, m - u t)"),
    ParamSpec::unit("p", 0.5, "share of -1 entries in each class target"),
];
const DSH: &[ParamSpec] = &[
    ParamSpec::real(
        "margin",
        2.0,
        "the margin m of dissimilar pairs as a multiple of the code length (m = margin * b)",
    ),
    ParamSpec::real(
        "alpha",
        0.1,
        "weight of the quantisation term mean(|1 - |u||)",
    ),
];
const DHN: &[ParamSpec] = &[ParamSpec::real(
    "alpha",
    0.1,
    "weight of the quantisation term mean(log cosh(|u| - 1))",
)];
const DBDH: &[ParamSpec] = &[
    ParamSpec::real(
        "alpha",
        0.1,
        "weight of the bit-balance term mean_i |mean_j u_ij|^p",
    ),
    ParamSpec::whole(
        "p",
        2.0,
        1.0,
        2.0,
        "exponent of the bit-balance term (1: absolute value, 2: square)",
    ),
];
const DPSH: &[ParamSpec] = &[ParamSpec::real(
    "alpha",
    0.1,
    "weight of the quantisation term mean((u - sign u)^2)",
)];
const HASHNET: &[ParamSpec] = &[
    ParamSpec::positive(
        "alpha",
        0.1,
        "scale of the pair logits alpha tanh(su) . tanh(su)",
    ),
    ParamSpec::whole(
        "step",
        20.0,
        1.0,
        f64::INFINITY,
        "epochs per continuation step: the scale is sqrt(floor(epoch / step) + 1)",
    ),
];
const DCH: &[ParamSpec] = &[
    ParamSpec::positive("gamma", 20.0, "scale of the Cauchy distribution"),
    ParamSpec::real("lambda", 0.1, ALPHA_QUANT),
];
const DTSH: &[ParamSpec] = &[
    ParamSpec::real("alpha", 5.0, "triplet margin on the inner products"),
    ParamSpec::real(
        "lambda",
        1.0,
        "weight of the quantisation term mean((u - sign u)^2)",
    ),
];
const LCDSH: &[ParamSpec] = &[ParamSpec::real(
    "lambda",
    3.0,
    "weight of the agreement term with the sign codes' similarity",
)];
const SHCIR: &[ParamSpec] = &[ParamSpec::real(
    "lambda",
    1e-4,
    "weight of the quantisation term mean((|u| - 1)^2)",
)];
const MDSH: &[ParamSpec] = &[
    ParamSpec::real(
        "lambda",
        1e-4,
        "weight of the quantisation term mean((|u| - 1)^2)",
    ),
    ParamSpec::real(
        "beta",
        1.0,
        "weight of the pair term against the momentum bank",
    ),
    ParamSpec::unit(
        "momentum",
        0.9,
        "momentum of the key model: key <- momentum key + (1 - momentum) model",
    ),
    ParamSpec::whole(
        "pair_from",
        9.0,
        0.0,
        f64::INFINITY,
        "first epoch (counted from 0) with the pair term",
    ),
    ParamSpec::whole(
        "reference_dead_pair",
        0.0,
        0.0,
        1.0,
        "1: the reference's behaviour, where the pair term never runs (docs/METHOD.md Q15)",
    ),
];

/// The hyper-parameters of `method`, in a fixed order.
pub fn specs(method: Method) -> &'static [ParamSpec] {
    match method {
        Method::Csq => CSQ,
        Method::Dpn => DPN,
        Method::Dsh => DSH,
        Method::Dhn => DHN,
        Method::Dbdh => DBDH,
        Method::Dpsh => DPSH,
        Method::Hashnet => HASHNET,
        Method::Dch => DCH,
        Method::Dtsh => DTSH,
        Method::Lcdsh => LCDSH,
        Method::Shcir => SHCIR,
        Method::Mdsh => MDSH,
    }
}

/// The table of `method` in words, one parameter per line: name, range, default, meaning.
pub fn describe(method: Method) -> String {
    specs(method)
        .iter()
        .map(|s| {
            format!(
                "  {} in {} (default {}): {}",
                s.name,
                s.range(),
                s.default,
                s.meaning
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The hyper-parameters of a run: one value for every parameter of the method's table.
#[derive(Clone, Debug, PartialEq)]
pub struct LossParams {
    method: Method,
    /// In [`specs`] order.
    values: Vec<f64>,
}

impl LossParams {
    /// Every parameter of `method` at its default.
    pub fn defaults(method: Method) -> Self {
        Self {
            method,
            values: specs(method).iter().map(|s| s.default).collect(),
        }
    }

    /// The defaults of `method` with `overrides` applied. An unknown name or a value out of its
    /// range is a [`TrainError::Config`] of `--loss-param` that lists the method's parameters
    /// and their ranges.
    pub fn resolve(method: Method, overrides: &BTreeMap<String, f64>) -> Result<Self, TrainError> {
        let mut params = Self::defaults(method);
        let table = specs(method);
        for (name, &value) in overrides {
            let problem = match table.iter().position(|s| s.name == name) {
                None => format!("{method} has no parameter {name:?}"),
                Some(i) if !table[i].accepts(value) => {
                    format!("{method}: {name} = {value} is outside {}", table[i].range())
                }
                Some(i) => {
                    params.values[i] = value;
                    continue;
                }
            };
            return Err(TrainError::Config {
                flag: "--loss-param",
                reason: format!("{problem}; {method} takes:\n{}", describe(method)),
            });
        }
        Ok(params)
    }

    /// The method these values belong to.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The value of the parameter `name` of the method's table.
    ///
    /// # Panics
    /// When the table has no such name: the losses ask only for the names of their own table,
    /// which the tests of every method check.
    pub fn get(&self, name: &str) -> f64 {
        match specs(self.method).iter().position(|s| s.name == name) {
            Some(i) => self.values[i],
            None => panic!("{} has no loss parameter {name:?}", self.method),
        }
    }

    /// A switch parameter (0 or 1) as a boolean.
    pub fn flag(&self, name: &str) -> bool {
        self.get(name) != 0.0
    }

    /// Every parameter by name, as `metrics.json` and checkpoints record them.
    pub fn to_map(&self) -> BTreeMap<String, f64> {
        specs(self.method)
            .iter()
            .zip(&self.values)
            .map(|(s, &v)| (s.name.to_string(), v))
            .collect()
    }
}

/// Parses one `--loss-param` value, `name=value`.
pub fn parse_assignment(s: &str) -> Result<(String, f64), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=VALUE, e.g. alpha=0.2"))?;
    let value: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: {value:?} is not a number"))?;
    if !value.is_finite() {
        return Err(format!("{s:?}: the value must be finite"));
    }
    Ok((name.trim().to_string(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_in_range_and_names_unique() {
        for method in Method::ALL {
            let table = specs(method);
            assert!(!table.is_empty(), "{method}");
            for (i, s) in table.iter().enumerate() {
                assert!(s.accepts(s.default), "{method} {}", s.name);
                assert!(table[..i].iter().all(|t| t.name != s.name), "{method}");
            }
            assert_eq!(
                LossParams::resolve(method, &BTreeMap::new()).unwrap(),
                LossParams::defaults(method)
            );
        }
    }

    #[test]
    fn overrides_apply_and_bad_ones_list_the_table() {
        let set = |pairs: &[(&str, f64)]| -> BTreeMap<String, f64> {
            pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
        };
        let p = LossParams::resolve(Method::Dbdh, &set(&[("alpha", 0.2), ("p", 1.0)])).unwrap();
        assert_eq!((p.get("alpha"), p.get("p")), (0.2, 1.0));
        assert_eq!(p.to_map(), set(&[("alpha", 0.2), ("p", 1.0)]));

        let unknown = LossParams::resolve(Method::Dhn, &set(&[("gamma", 1.0)]))
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("--loss-param")
                && unknown.contains("dhn has no parameter \"gamma\"")
                && unknown.contains("alpha in [0, inf) (default 0.1)"),
            "{unknown}"
        );
        for (method, name, value, range) in [
            (Method::Dbdh, "p", 3.0, "{1, 2}"),
            (Method::Dbdh, "p", 1.5, "{1, 2}"),
            (Method::Dch, "gamma", 0.0, "(0, inf)"),
            (Method::Dpn, "p", 1.5, "[0, 1]"),
            (Method::Hashnet, "step", 0.0, "integers in [1, inf)"),
            (Method::Csq, "lambda", -1.0, "[0, inf)"),
        ] {
            let e = LossParams::resolve(method, &set(&[(name, value)]))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("{name} = {value} is outside {range}")),
                "{e}"
            );
        }
    }

    #[test]
    fn assignments_parse() {
        assert_eq!(parse_assignment("alpha=0.2"), Ok(("alpha".into(), 0.2)));
        assert_eq!(parse_assignment(" p = 1 "), Ok(("p".into(), 1.0)));
        assert!(parse_assignment("alpha")
            .unwrap_err()
            .contains("NAME=VALUE"));
        assert!(parse_assignment("alpha=x")
            .unwrap_err()
            .contains("not a number"));
        assert!(parse_assignment("alpha=inf")
            .unwrap_err()
            .contains("finite"));
    }
}

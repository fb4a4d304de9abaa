//! The one parser of the names that `metrics.json` and the flags share (`csq`, `full`, ...), and
//! the parsers of flag values that clap's own do not check.

use nhl_train::config::{Centres, ClassOrder, LengthScale, Method, Mode};

/// A config enum from its lowercase name.
fn parse_lower<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("unknown value {s:?}"))
}

/// `--method`.
pub fn parse_method(s: &str) -> Result<Method, String> {
    parse_lower(s).map_err(|e| format!("{e}; expected one of {}", Method::names()))
}

/// `--mode` (and each entry of `bench train --modes`).
pub fn parse_mode(s: &str) -> Result<Mode, String> {
    parse_lower(s).map_err(|e| format!("{e}; expected full, nested, distill, adaptive or single"))
}

/// `--centres`.
pub fn parse_centres(s: &str) -> Result<Centres, String> {
    parse_lower(s)
        .map_err(|e| format!("{e}; expected diverse, diverse-plain, prefix or independent"))
}

/// `--class-order`.
pub fn parse_class_order(s: &str) -> Result<ClassOrder, String> {
    parse_lower(s).map_err(|e| format!("{e}; expected auto, dissimilar or labels"))
}

/// `--length-scale`.
pub fn parse_length_scale(s: &str) -> Result<LengthScale, String> {
    parse_lower(s).map_err(|e| format!("{e}; expected auto, plain or per-bit"))
}

/// A count that must be at least 1 (`--threads`).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}

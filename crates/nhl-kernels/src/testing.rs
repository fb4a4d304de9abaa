//! Helpers the tests of every crate share: seeded random matrices and a NaN-aware comparison
//! with explicit absolute and relative tolerances that names the first bad index.

use crate::rng::SplitMix64;

/// `n` values uniform in `[lo, hi)` from `seed` (never all zeros).
pub fn random_vec(seed: u64, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed);
    (0..n).map(|_| rng.uniform(lo, hi)).collect()
}

/// Checks `|got - want| <= atol + rtol * |want|` elementwise; NaN matches only NaN.
///
/// # Errors
/// A message naming `what`, the first failing index, both values and the difference.
pub fn check_close(
    what: &str,
    got: &[f64],
    want: &[f64],
    atol: f64,
    rtol: f64,
) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: length {} != expected {}",
            got.len(),
            want.len()
        ));
    }
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if g.is_nan() || w.is_nan() {
            g.is_nan() && w.is_nan()
        } else if g.is_infinite() || w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= atol + rtol * w.abs()
        };
        if !ok {
            return Err(format!(
                "{what}: index {i}: got {g:e}, expected {w:e}, difference {:e} (atol {atol:e}, rtol {rtol:e})",
                (g - w).abs()
            ));
        }
    }
    Ok(())
}

/// [`check_close`] that panics with its message, for use inside `#[test]` bodies.
#[track_caller]
pub fn assert_close(what: &str, got: &[f64], want: &[f64], atol: f64, rtol: f64) {
    if let Err(msg) = check_close(what, got, want, atol, rtol) {
        panic!("{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_close_reports_the_first_bad_index_and_handles_nan() {
        assert!(check_close("x", &[1.0, f64::NAN], &[1.0 + 1e-9, f64::NAN], 1e-8, 0.0).is_ok());
        let err = check_close("x", &[1.0, 2.0, 3.5], &[1.0, 2.0, 3.0], 1e-3, 1e-3).unwrap_err();
        assert!(err.contains("index 2") && err.contains("3.5"), "{err}");
        assert!(check_close("x", &[f64::NAN], &[0.0], 1.0, 1.0).is_err());
        assert!(check_close("x", &[1.0], &[1.0, 2.0], 1.0, 1.0).is_err());
    }
}

//! Helpers the tests of every crate share (behind the `testing` cargo feature, which the crates
//! enable in their `[dev-dependencies]`): seeded random matrices, a NaN-aware comparison with
//! explicit absolute and relative tolerances that names the first bad index, and
//! [`on_every_backend!`](crate::on_every_backend), which turns one generic check into a test per
//! backend.

use std::fmt::Debug;

use crate::backend::Backend;
use crate::cpu::CpuBackend;
use crate::gpu::GpuBackend;
use crate::rng::SplitMix64;

/// Defines, for each named check, a module of that name with one `#[test]` per backend:
/// `cpu_f32` runs the check on a fresh [`CpuBackend<f32>`](crate::cpu::CpuBackend) and `gpu` on
/// [`gpu::test_backend`](crate::gpu::test_backend). Without a usable adapter the GPU test prints
/// `skipping GPU test: <why>` and passes; with `NHL_REQUIRE_GPU=1` it fails instead.
///
/// A check is a generic function `fn check<B: Backend<Elem = f32>>(b: &B) -> R` in the invoking
/// module, where `R` is `()` (the check panics on failure) or a `Result<(), E>` with
/// `E: Debug` (an `Err` fails the test with its message); see [`CheckResult`]. The tests call
/// [`on_cpu_f32`] and [`on_gpu`], which name the check and the backend in any failure.
///
/// ```
/// use nhl_kernels::{Backend, KernelError, Reduce, Shape};
///
/// fn sums_a_row<B: Backend<Elem = f32>>(b: &B) -> Result<(), KernelError> {
///     let x = b.upload(&[1.0, 2.0, 3.5], Shape::new(1, 3))?;
///     assert_eq!(b.download(&b.reduce(Reduce::All, &x)?)?, vec![6.5]);
///     Ok(())
/// }
///
/// // Tests `sums_a_row::cpu_f32` and `sums_a_row::gpu`.
/// nhl_kernels::on_every_backend!(sums_a_row);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! on_every_backend {
    ($($check:ident),+ $(,)?) => {$(
        mod $check {
            #[test]
            pub fn cpu_f32() {
                $crate::testing::on_cpu_f32(stringify!($check), |b| super::$check(b));
            }

            #[test]
            pub fn gpu() {
                $crate::testing::on_gpu(stringify!($check), |b| super::$check(b));
            }
        }
    )+};
}

/// What a check run by [`on_every_backend!`](crate::on_every_backend) returns: `()` for a check
/// that panics when it fails, or a `Result` whose `Err` fails the test.
pub trait CheckResult {
    /// `Err` with the failure's message (the error's `Debug` form, which for `anyhow` includes
    /// its causes).
    ///
    /// # Errors
    /// When the check failed.
    fn into_result(self) -> Result<(), String>;
}

impl CheckResult for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Debug> CheckResult for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| format!("{e:?}"))
    }
}

/// Runs the check `name` on a fresh `CpuBackend<f32>`.
///
/// # Panics
/// When the check fails, with a message naming the check and the backend.
pub fn on_cpu_f32<R: CheckResult>(name: &str, check: impl FnOnce(&CpuBackend<f32>) -> R) {
    let backend = CpuBackend::<f32>::new();
    fail_on_error(name, &backend.name(), check(&backend).into_result());
}

/// Runs the check `name` on the GPU backend of [`gpu::test_backend`](crate::gpu::test_backend).
/// Without a usable adapter the check does not run: the notice `skipping GPU test: <why>` is
/// printed, or, with `NHL_REQUIRE_GPU=1`, the test fails.
///
/// # Panics
/// When the check fails, with a message naming the check and the adapter; when
/// `NHL_REQUIRE_GPU=1` and there is no adapter.
pub fn on_gpu<R: CheckResult>(name: &str, check: impl FnOnce(&GpuBackend) -> R) {
    if let Some(backend) = crate::gpu::test_backend() {
        fail_on_error(name, &backend.name(), check(&backend).into_result());
    }
}

fn fail_on_error(name: &str, backend: &str, result: Result<(), String>) {
    if let Err(msg) = result {
        panic!("{name} on {backend}: {msg}");
    }
}

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
    use std::cell::RefCell;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use super::*;
    use crate::{KernelError, Reduce, Shape};

    thread_local! {
        /// The backends [`records_its_backend`] ran on, on this thread.
        static RAN_ON: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    }

    /// A check that can fail (a wrong sum) and records the backend it ran on.
    fn records_its_backend<B: Backend<Elem = f32>>(b: &B) -> Result<(), KernelError> {
        let x = b.upload(&[1.5, -2.0, 4.0], Shape::new(1, 3))?;
        assert_eq!(b.download(&b.reduce(Reduce::All, &x)?)?, vec![3.5]);
        RAN_ON.with(|r| r.borrow_mut().push(b.name()));
        Ok(())
    }

    crate::on_every_backend!(records_its_backend);

    /// The panic message of `f`, or `None` when it returns.
    fn panic_message(f: impl FnOnce()) -> Option<String> {
        let payload = catch_unwind(AssertUnwindSafe(f)).err()?;
        let text = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()));
        Some(text.unwrap_or_default())
    }

    #[test]
    fn the_macro_runs_the_check_once_on_each_backend() {
        // The generated tests, called on this thread so that the records are this test's.
        records_its_backend::cpu_f32();
        records_its_backend::gpu();
        let cpu = CpuBackend::<f32>::new().name();
        let gpu = crate::gpu::test_backend().map(|b| b.name());
        let want: Vec<String> = std::iter::once(cpu).chain(gpu).collect();
        assert_eq!(RAN_ON.with(RefCell::take), want);
    }

    #[test]
    fn a_failing_check_fails_its_test_naming_the_check_and_the_backend() {
        let msg = panic_message(|| {
            on_cpu_f32("refuses", |b| -> Result<(), String> {
                Err(format!("refused by {}", b.name()))
            })
        })
        .expect("an Err fails the CPU test");
        let cpu = CpuBackend::<f32>::new().name();
        assert!(
            msg.starts_with(&format!("refuses on {cpu}: ")) && msg.contains("refused by"),
            "{msg}"
        );
        let msg = panic_message(|| on_cpu_f32::<()>("panics", |_| panic!("a failed assertion")));
        assert_eq!(msg.as_deref(), Some("a failed assertion"));
        assert_eq!(panic_message(|| on_cpu_f32("passes", |_| ())), None);

        let gpu = crate::gpu::test_backend().map(|b| b.name());
        let msg = panic_message(|| on_gpu("refuses", |_| -> Result<(), &str> { Err("refused") }));
        match gpu {
            Some(name) => {
                let msg = msg.expect("an Err fails the GPU test");
                assert_eq!(msg, format!("refuses on {name}: \"refused\""));
            }
            // Without an adapter (and without NHL_REQUIRE_GPU=1) the check never runs.
            None => assert_eq!(msg, None),
        }
        assert_eq!(panic_message(|| on_gpu("passes", |_| ())), None);
    }

    #[test]
    fn check_close_reports_the_first_bad_index_and_handles_nan() {
        assert!(check_close("x", &[1.0, f64::NAN], &[1.0 + 1e-9, f64::NAN], 1e-8, 0.0).is_ok());
        let err = check_close("x", &[1.0, 2.0, 3.5], &[1.0, 2.0, 3.0], 1e-3, 1e-3).unwrap_err();
        assert!(err.contains("index 2") && err.contains("3.5"), "{err}");
        assert!(check_close("x", &[f64::NAN], &[0.0], 1.0, 1.0).is_err());
        assert!(check_close("x", &[1.0], &[1.0, 2.0], 1.0, 1.0).is_err());
    }
}

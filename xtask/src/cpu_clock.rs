//! The CPU time of this process, beside the wall clock: on a shared machine the wall time of a
//! measurement includes other processes' turns.

use std::time::Instant;

/// CPU time of every thread of this process so far, in nanoseconds (Linux `schedstat`; `None`
/// elsewhere).
pub fn process_cpu_ns() -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Runs `f`, returning its output, wall seconds and CPU seconds of all threads (if known).
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, f64, Option<f64>) {
    let cpu = process_cpu_ns();
    let start = Instant::now();
    let out = f();
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu
        .zip(process_cpu_ns())
        .map(|(a, b)| b.saturating_sub(a) as f64 * 1e-9);
    (out, wall, cpu)
}

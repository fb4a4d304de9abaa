//! The elementwise maps of the CPU backend: the output is written in place of a fresh
//! allocation, in parallel chunks when large, and each chunk's loop is compiled once for the
//! baseline instruction set and once for AVX2. The two builds perform the same IEEE operations
//! (Rust never fuses a multiply and an add on its own), so results do not depend on which runs
//! (a NaN's sign and payload aside, see [`super::isa`]).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::isa::Isa;
use super::PAR_MIN;

/// Elements per parallel task (maps of at least [`PAR_MIN`] elements run in parallel chunks).
const CHUNK: usize = 1 << 14;

/// `out[i] = f(x[i])`.
pub(super) fn map<T, F>(x: &[T], f: F) -> Vec<T>
where
    T: Copy + Send + Sync,
    F: Fn(T) -> T + Sync,
{
    map_on(Isa::best(), x, f)
}

/// [`map`] with its loop built for `isa`.
pub(super) fn map_on<T, F>(isa: Isa, x: &[T], f: F) -> Vec<T>
where
    T: Copy + Send + Sync,
    F: Fn(T) -> T + Sync,
{
    fill(x.len(), |start, out| {
        map_chunk(isa, out, &x[start..start + out.len()], &f)
    })
}

/// `out[i] = f(x[i], y[i])` for two slices of one length.
///
/// # Panics
/// When the lengths differ (a caller bug: shapes are checked before).
pub(super) fn zip_map<T, F>(x: &[T], y: &[T], f: F) -> Vec<T>
where
    T: Copy + Send + Sync,
    F: Fn(T, T) -> T + Sync,
{
    zip_map_on(Isa::best(), x, y, f)
}

/// [`zip_map`] with its loop built for `isa`.
///
/// # Panics
/// When the lengths differ.
pub(super) fn zip_map_on<T, F>(isa: Isa, x: &[T], y: &[T], f: F) -> Vec<T>
where
    T: Copy + Send + Sync,
    F: Fn(T, T) -> T + Sync,
{
    assert_eq!(x.len(), y.len(), "zip_map operands of one length");
    fill(x.len(), |start, out| {
        let end = start + out.len();
        zip_chunk(isa, out, &x[start..end], &y[start..end], &f)
    })
}

/// A vector of `n` elements, each chunk written by `body(first_index, chunk)`, which must write
/// every element of its chunk.
fn fill<T: Send>(n: usize, body: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync) -> Vec<T> {
    let mut out = Vec::with_capacity(n);
    let spare = &mut out.spare_capacity_mut()[..n];
    if n >= PAR_MIN {
        spare
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, chunk)| body(i * CHUNK, chunk));
    } else {
        body(0, spare);
    }
    // SAFETY: the chunks cover all n elements and `map_chunk` / `zip_chunk` write each one.
    unsafe { out.set_len(n) };
    out
}

fn map_chunk<T: Copy, F: Fn(T) -> T>(isa: Isa, out: &mut [MaybeUninit<T>], x: &[T], f: &F) {
    #[cfg(target_arch = "x86_64")]
    if isa.is_avx2() {
        // SAFETY: an `Isa` says AVX2 only when the CPU has it, which is all `map_avx2` needs.
        return unsafe { map_avx2(out, x, f) };
    }
    // Elsewhere the baseline build is the only one.
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    map_body(out, x, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn map_avx2<T: Copy, F: Fn(T) -> T>(out: &mut [MaybeUninit<T>], x: &[T], f: &F) {
    map_body(out, x, f)
}

#[inline(always)]
fn map_body<T: Copy, F: Fn(T) -> T>(out: &mut [MaybeUninit<T>], x: &[T], f: &F) {
    for (o, &v) in out.iter_mut().zip(x) {
        o.write(f(v));
    }
}

fn zip_chunk<T: Copy, F: Fn(T, T) -> T>(
    isa: Isa,
    out: &mut [MaybeUninit<T>],
    x: &[T],
    y: &[T],
    f: &F,
) {
    #[cfg(target_arch = "x86_64")]
    if isa.is_avx2() {
        // SAFETY: an `Isa` says AVX2 only when the CPU has it, which is all `zip_avx2` needs.
        return unsafe { zip_avx2(out, x, y, f) };
    }
    // Elsewhere the baseline build is the only one.
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    zip_body(out, x, y, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn zip_avx2<T: Copy, F: Fn(T, T) -> T>(out: &mut [MaybeUninit<T>], x: &[T], y: &[T], f: &F) {
    zip_body(out, x, y, f)
}

#[inline(always)]
fn zip_body<T: Copy, F: Fn(T, T) -> T>(out: &mut [MaybeUninit<T>], x: &[T], y: &[T], f: &F) {
    for ((o, &a), &b) in out.iter_mut().zip(x).zip(y) {
        o.write(f(a, b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_write_every_element_in_order_at_every_size() {
        // Sizes around the parallel threshold and the chunk size, odd ones included.
        for n in [
            0,
            1,
            7,
            CHUNK - 1,
            CHUNK + 3,
            PAR_MIN - 1,
            PAR_MIN,
            3 * CHUNK + 5,
        ] {
            let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 100.0).collect();
            let y: Vec<f32> = (0..n).map(|i| (i % 13) as f32).collect();
            let mapped = map(&x, |v| v.max(0.0));
            assert_eq!(mapped.len(), n);
            assert!(
                mapped.iter().zip(&x).all(|(&m, &v)| m == v.max(0.0)),
                "map {n}"
            );
            let zipped = zip_map(&x, &y, |a, b| a * b + 1.0);
            assert!(
                zipped
                    .iter()
                    .zip(x.iter().zip(&y))
                    .all(|(&z, (&a, &b))| z == a * b + 1.0),
                "zip_map {n}"
            );
        }
    }
}

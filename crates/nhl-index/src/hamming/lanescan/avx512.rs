//! The eight-lane scan with AVX-512F + VPOPCNTDQ: [`Lanes8`] as AVX-512 operations, and the
//! `FilterFn` entry point that instantiates [`super::filter`] with them.

use std::arch::x86_64::*;

use super::super::raw::Filter;
use super::Lanes8;

/// The fused multi-query threshold scan (`FilterFn`) with AVX-512F + VPOPCNTDQ for 64-bit
/// codes, 128-bit codes and the 64-bit (or shorter) prefixes of 128-bit codes (other shapes
/// return `false`, for the per-query vector scan): [`super::filter`] with [`Avx512`]. Per
/// block of 32 codes, loaded (and for two-word strides de-interleaved) once per chunk of 32
/// queries, each query costs one `vpxorq` + `vpopcntq` per vector of eight codes and word,
/// a `vpaddq` per eight 128-bit codes, three `vpminuq` and a single `vpcmpuq` against its
/// k-th-best limit; only the rare passing blocks leave the registers.
///
/// # Safety
/// The CPU has AVX-512F, VPOPCNTDQ and `popcnt`.
#[target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")]
pub(in crate::hamming) unsafe fn filter(f: Filter<'_>) -> bool {
    match (f.codes.words(), f.codes.stride()) {
        // SAFETY: the caller checked the CPU features; the code shape is checked here.
        (1, 1) => unsafe { super::filter::<Avx512, 1, 1>(f) },
        // SAFETY: as above.
        (1, 2) => unsafe { super::filter::<Avx512, 1, 2>(f) },
        // SAFETY: as above.
        (2, 2) => unsafe { super::filter::<Avx512, 2, 2>(f) },
        _ => return false,
    }
    true
}

/// The eight-lane operations of [`super::filter`] with AVX-512F and VPOPCNTDQ (no byte
/// operations, so no AVX-512BW). Each method is an `#[inline(always)]` wrapper of one or two
/// intrinsics, inlined with [`super::filter`] into [`filter`], whose `#[target_feature]` lets
/// them compile to single instructions.
#[derive(Clone, Copy)]
pub(super) struct Avx512;

// SAFETY (every unsafe block of this impl): the trait's contract is that the caller checked
// AVX-512F and VPOPCNTDQ, which is all these intrinsics need; loads read only what the
// method's own contract says is readable.
impl Lanes8 for Avx512 {
    type V = __m512i;

    #[inline(always)]
    unsafe fn splat(x: u64) -> __m512i {
        // SAFETY: see the impl.
        unsafe { _mm512_set1_epi64(x as i64) }
    }

    #[inline(always)]
    unsafe fn load(p: *const u64) -> __m512i {
        // SAFETY: see the impl; the caller guarantees eight readable words, and loadu has no
        // alignment requirement.
        unsafe { _mm512_loadu_si512(p.cast()) }
    }

    #[inline(always)]
    unsafe fn load_first(p: *const u64, count: usize) -> __m512i {
        let k: __mmask8 = (1u8 << count) - 1;
        // SAFETY: see the impl; lanes not in `k` are neither read nor able to fault, and the
        // caller guarantees the `count` words of the others.
        unsafe { _mm512_maskz_loadu_epi64(k, p.cast()) }
    }

    #[inline(always)]
    unsafe fn even(a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: see the impl. Index bit 3 picks `b`: 0, 2, 4, 6 of a then of b.
        unsafe { _mm512_permutex2var_epi64(a, _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), b) }
    }

    #[inline(always)]
    unsafe fn odd(a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: see the impl.
        unsafe { _mm512_permutex2var_epi64(a, _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15), b) }
    }

    #[inline(always)]
    unsafe fn and(a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: see the impl.
        unsafe { _mm512_and_si512(a, b) }
    }

    #[inline(always)]
    unsafe fn xor_popcnt(a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: see the impl.
        unsafe { _mm512_popcnt_epi64(_mm512_xor_si512(a, b)) }
    }

    #[inline(always)]
    unsafe fn add(a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: see the impl.
        unsafe { _mm512_add_epi64(a, b) }
    }

    #[inline(always)]
    unsafe fn min(a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: see the impl.
        unsafe { _mm512_min_epu64(a, b) }
    }

    #[inline(always)]
    unsafe fn lt_mask(a: __m512i, b: __m512i) -> u8 {
        // SAFETY: see the impl.
        unsafe { _mm512_cmplt_epu64_mask(a, b) }
    }

    #[inline(always)]
    unsafe fn store(a: __m512i) -> [u64; 8] {
        let mut out = [0u64; 8];
        // SAFETY: see the impl; `out` has room for eight u64.
        unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), a) };
        out
    }
}

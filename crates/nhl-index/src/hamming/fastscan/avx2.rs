//! The fast scan with AVX2: [`Lanes32`] as AVX2 byte operations, and the `FilterFn` entry point
//! that instantiates [`super::filter`] with them.

use std::arch::x86_64::*;

use super::super::raw::Filter;
use super::Lanes32;

/// The fused multi-query threshold scan (`FilterFn`) for codes of one or two words (64-bit codes,
/// 128-bit codes and every prefix of up to 128 bits of longer codes; other shapes return
/// `false`, for the per-query vector scan): [`super::filter`] with [`Avx2`]. Per block of 32
/// codes, byte-sliced once per chunk of queries, a query costs one `vpshufb` and one `vpaddb` per
/// nibble position of the code, and one saturating subtract against its limit.
///
/// # Safety
/// The CPU has AVX2 and `popcnt`.
#[target_feature(enable = "avx2,popcnt")]
pub(in crate::hamming) unsafe fn filter(f: Filter<'_>) -> bool {
    match (f.codes.words(), f.codes.stride()) {
        // SAFETY: the caller checked AVX2; the shape is checked here (PACKED exactly for one-word
        // codes back to back, else a stride of at least two words).
        (1, 1) => unsafe { super::filter::<Avx2, 1, true>(f) },
        // SAFETY: as above.
        (1, 2..) => unsafe { super::filter::<Avx2, 1, false>(f) },
        // SAFETY: as above.
        (2, 2..) => unsafe { super::filter::<Avx2, 2, false>(f) },
        _ => return false,
    }
    true
}

/// The byte-lane operations of the fast scan with AVX2: each method is an `#[inline(always)]`
/// wrapper of one or two intrinsics, inlined into [`filter`], whose `#[target_feature]` makes
/// them single instructions.
#[derive(Clone, Copy)]
pub(super) struct Avx2;

// SAFETY (every unsafe block of this impl): the trait's contract is that the caller checked
// AVX2, which is all these intrinsics need; loads and stores touch only what the method's
// own contract says is readable or writable, and have no alignment requirement.
impl Lanes32 for Avx2 {
    type V = __m256i;

    #[inline(always)]
    unsafe fn splat(x: u8) -> __m256i {
        // SAFETY: see the impl.
        unsafe { _mm256_set1_epi8(x as i8) }
    }

    #[inline(always)]
    unsafe fn load(p: *const u8) -> __m256i {
        // SAFETY: see the impl.
        unsafe { _mm256_loadu_si256(p.cast()) }
    }

    #[inline(always)]
    unsafe fn broadcast_half(p: *const u8) -> __m256i {
        // SAFETY: see the impl.
        unsafe { _mm256_broadcastsi128_si256(_mm_loadu_si128(p.cast())) }
    }

    #[inline(always)]
    unsafe fn load_halves(lo: *const u8, hi: *const u8) -> __m256i {
        // SAFETY: see the impl.
        unsafe { _mm256_loadu2_m128i(hi.cast(), lo.cast()) }
    }

    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        // SAFETY: see the impl; a prefetch never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.cast()) }
    }

    #[inline(always)]
    unsafe fn store(p: *mut u8, v: __m256i) {
        // SAFETY: see the impl.
        unsafe { _mm256_storeu_si256(p.cast(), v) }
    }

    #[inline(always)]
    unsafe fn shuffle(table: __m256i, idx: __m256i) -> __m256i {
        // SAFETY: see the impl.
        unsafe { _mm256_shuffle_epi8(table, idx) }
    }

    #[inline(always)]
    unsafe fn unpack_lo16(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: see the impl.
        unsafe { _mm256_unpacklo_epi16(a, b) }
    }

    #[inline(always)]
    unsafe fn unpack_hi16(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: see the impl.
        unsafe { _mm256_unpackhi_epi16(a, b) }
    }

    #[inline(always)]
    unsafe fn unpack_lo32(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: see the impl.
        unsafe { _mm256_unpacklo_epi32(a, b) }
    }

    #[inline(always)]
    unsafe fn unpack_hi32(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: see the impl.
        unsafe { _mm256_unpackhi_epi32(a, b) }
    }

    #[inline(always)]
    unsafe fn unpack_lo64(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: see the impl.
        unsafe { _mm256_unpacklo_epi64(a, b) }
    }

    #[inline(always)]
    unsafe fn unpack_hi64(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: see the impl.
        unsafe { _mm256_unpackhi_epi64(a, b) }
    }

    #[inline(always)]
    unsafe fn join_halves(lo: __m256i, hi: __m256i) -> __m256i {
        // SAFETY: see the impl. Dwords 4..8 (the high half) from `hi`.
        unsafe { _mm256_blend_epi32::<0xf0>(lo, hi) }
    }

    #[inline(always)]
    unsafe fn low_nibbles(v: __m256i) -> __m256i {
        // SAFETY: see the impl.
        unsafe { _mm256_and_si256(v, _mm256_set1_epi8(0x0f)) }
    }

    #[inline(always)]
    unsafe fn high_nibbles(v: __m256i) -> __m256i {
        // SAFETY: see the impl. The 16-bit shift moves the next byte's low bits into each
        // byte's top nibble, which the mask clears.
        unsafe { _mm256_and_si256(_mm256_srli_epi16::<4>(v), _mm256_set1_epi8(0x0f)) }
    }

    #[inline(always)]
    unsafe fn xor(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: see the impl.
        unsafe { _mm256_xor_si256(a, b) }
    }

    #[inline(always)]
    unsafe fn or(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: see the impl.
        unsafe { _mm256_or_si256(a, b) }
    }

    #[inline(always)]
    unsafe fn add(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: see the impl.
        unsafe { _mm256_add_epi8(a, b) }
    }

    #[inline(always)]
    unsafe fn sub_sat(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: see the impl.
        unsafe { _mm256_subs_epu8(a, b) }
    }

    #[inline(always)]
    unsafe fn is_zero(v: __m256i) -> bool {
        // SAFETY: see the impl.
        unsafe { _mm256_testz_si256(v, v) != 0 }
    }

    #[inline(always)]
    unsafe fn lt_mask(a: __m256i, b: __m256i) -> u32 {
        // SAFETY: see the impl. a < b exactly when b -sat a is non-zero.
        unsafe {
            let ge = _mm256_cmpeq_epi8(_mm256_subs_epu8(b, a), _mm256_setzero_si256());
            !(_mm256_movemask_epi8(ge) as u32)
        }
    }
}

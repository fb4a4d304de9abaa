//! The AVX-512F + VPOPCNTDQ path: eight 64-bit popcounts per instruction for per-code distances;
//! its kNN threshold scan is the eight-lane scan of [`crate::hamming::lanescan`].

use std::arch::x86_64::*;

use super::super::lanescan;
use super::super::portable;
use super::super::raw::{KernelFns, RawCodes};

/// The AVX-512 path.
pub(in crate::hamming) const FNS: KernelFns = KernelFns {
    scan,
    pair: super::pair,
    scan32,
    filter: Some(lanescan::avx512::filter),
};

/// Narrow codes, sixteen per vector.
#[target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")]
unsafe fn scan32(q: u32, db: &[u32], out: &mut [u32]) {
    let n = out.len();
    let blocks = n / 16;
    let qv = _mm512_set1_epi32(q as i32);
    for b in 0..blocks {
        // SAFETY: codes 16b .. 16b + 16 exist (b < n / 16 and db.len() >= n); out likewise.
        unsafe {
            let x = _mm512_xor_si512(_mm512_loadu_si512(db.as_ptr().add(16 * b).cast()), qv);
            _mm512_storeu_si512(out.as_mut_ptr().add(16 * b).cast(), _mm512_popcnt_epi32(x));
        }
    }
    let done = blocks * 16;
    portable::scan32(q, &db[done..], &mut out[done..]);
}

#[inline]
#[target_feature(enable = "avx512f")]
fn pairs(a: __m512i, b: __m512i) -> __m512i {
    let even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
    let odd = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
    _mm512_add_epi64(
        _mm512_permutex2var_epi64(a, even, b),
        _mm512_permutex2var_epi64(a, odd, b),
    )
}

/// Per-code distances (`ScanFn`): codes of 1, 2 or 4 words packed back to back, eight codes per
/// step; other codes of more than two words one at a time, eight words per vector; one- and
/// two-word prefixes of longer codes, and the last codes, with the portable loop compiled for
/// `popcnt`.
#[target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")]
unsafe fn scan(q: &[u64], codes: RawCodes<'_>, out: &mut [u32]) {
    let (db, stride, words, mask) = (codes.data(), codes.stride(), codes.words(), codes.mask());
    let n = out.len();
    let p = db.as_ptr();
    let o = out.as_mut_ptr();
    let blocks = n / 8;
    // SAFETY (all loads below): `p + 8 j` for the vectors named in each arm lies inside the
    // codes 8b .. 8b + 8, which exist because b < n / 8 and codes are `stride` words apart.
    if words == stride && matches!(words, 1 | 2 | 4) {
        let m = mask as i64;
        match words {
            1 => {
                let qv = _mm512_set1_epi64(q[0] as i64);
                let mv = _mm512_set1_epi64(m);
                for b in 0..blocks {
                    // SAFETY: see above; out has slots 8b .. 8b + 8.
                    unsafe {
                        let x = _mm512_and_si512(
                            _mm512_xor_si512(_mm512_loadu_si512(p.add(8 * b).cast()), qv),
                            mv,
                        );
                        _mm256_storeu_si256(
                            o.add(8 * b).cast(),
                            _mm512_cvtepi64_epi32(_mm512_popcnt_epi64(x)),
                        );
                    }
                }
            }
            2 => {
                let (q0, q1) = (q[0] as i64, q[1] as i64);
                let qv = _mm512_setr_epi64(q0, q1, q0, q1, q0, q1, q0, q1);
                let mv = _mm512_setr_epi64(-1, m, -1, m, -1, m, -1, m);
                for b in 0..blocks {
                    // SAFETY: see above (vectors 2b, 2b + 1 of eight words).
                    unsafe {
                        let c0 = _mm512_popcnt_epi64(_mm512_and_si512(
                            _mm512_xor_si512(_mm512_loadu_si512(p.add(16 * b).cast()), qv),
                            mv,
                        ));
                        let c1 = _mm512_popcnt_epi64(_mm512_and_si512(
                            _mm512_xor_si512(_mm512_loadu_si512(p.add(16 * b + 8).cast()), qv),
                            mv,
                        ));
                        _mm256_storeu_si256(
                            o.add(8 * b).cast(),
                            _mm512_cvtepi64_epi32(pairs(c0, c1)),
                        );
                    }
                }
            }
            _ => {
                let (q0, q1, q2, q3) = (q[0] as i64, q[1] as i64, q[2] as i64, q[3] as i64);
                let qv = _mm512_setr_epi64(q0, q1, q2, q3, q0, q1, q2, q3);
                let mv = _mm512_setr_epi64(-1, -1, -1, m, -1, -1, -1, m);
                for b in 0..blocks {
                    // SAFETY: see above (vectors 4b .. 4b + 4 of eight words).
                    unsafe {
                        let mut c = [_mm512_setzero_si512(); 4];
                        for (j, cj) in c.iter_mut().enumerate() {
                            *cj = _mm512_popcnt_epi64(_mm512_and_si512(
                                _mm512_xor_si512(
                                    _mm512_loadu_si512(p.add(32 * b + 8 * j).cast()),
                                    qv,
                                ),
                                mv,
                            ));
                        }
                        let s = pairs(pairs(c[0], c[1]), pairs(c[2], c[3]));
                        _mm256_storeu_si256(o.add(8 * b).cast(), _mm512_cvtepi64_epi32(s));
                    }
                }
            }
        }
        let done = blocks * 8;
        return portable::scan(q, codes.skip(done), &mut out[done..]);
    }
    if words <= 2 {
        // Prefix views of one or two words of longer codes: the scalar loop is as fast.
        return portable::scan(q, codes, out);
    }
    // Generic width: per code, eight words per vector, the tail with a masked load (masked-out
    // lanes are not read, so nothing past the code is touched).
    let mut qpad = [0u64; 16];
    let mut mpad = [0u64; 16];
    qpad[..words].copy_from_slice(&q[..words]);
    mpad[..words].fill(u64::MAX);
    mpad[words - 1] = mask;
    let chunks = words.div_ceil(8);
    for (i, slot) in out.iter_mut().enumerate() {
        let mut acc = _mm512_setzero_si512();
        for c in 0..chunks {
            let left = words - 8 * c;
            let k: __mmask8 = if left >= 8 { 0xff } else { (1u8 << left) - 1 };
            // SAFETY: lanes enabled by `k` are words 8c .. min(8c + 8, words) of code i, which
            // exist; qpad/mpad have 16 words and 8c + 8 <= 16 because words <= 16.
            unsafe {
                let x = _mm512_maskz_loadu_epi64(k, p.add(i * stride + 8 * c).cast());
                let qv = _mm512_loadu_si512(qpad.as_ptr().add(8 * c).cast());
                let mv = _mm512_loadu_si512(mpad.as_ptr().add(8 * c).cast());
                acc = _mm512_add_epi64(
                    acc,
                    _mm512_popcnt_epi64(_mm512_and_si512(_mm512_xor_si512(x, qv), mv)),
                );
            }
        }
        *slot = _mm512_reduce_add_epi64(acc) as u32;
    }
}

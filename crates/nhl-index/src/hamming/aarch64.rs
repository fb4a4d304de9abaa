//! The aarch64 NEON path: `cnt` per byte and pairwise widening adds; the pair distance is the
//! portable one, and there is no fused threshold scan (kNN filters per query through the scan).

use std::arch::aarch64::*;

use super::portable;
use super::raw::{KernelFns, RawCodes};

/// The NEON path.
pub(super) const FNS: KernelFns = KernelFns {
    scan,
    pair: portable::distance,
    scan32,
    filter: None,
};

/// Narrow codes, four per vector.
#[target_feature(enable = "neon")]
unsafe fn scan32(q: u32, db: &[u32], out: &mut [u32]) {
    let n = out.len();
    let blocks = n / 4;
    let qv = vdupq_n_u32(q);
    for b in 0..blocks {
        // SAFETY: codes 4b .. 4b + 4 exist (b < n / 4 and db.len() >= n); out likewise.
        unsafe {
            let x = veorq_u32(vld1q_u32(db.as_ptr().add(4 * b)), qv);
            let counts = vpaddlq_u16(vpaddlq_u8(vcntq_u8(vreinterpretq_u8_u32(x))));
            vst1q_u32(out.as_mut_ptr().add(4 * b), counts);
        }
    }
    let done = blocks * 4;
    portable::scan32(q, &db[done..], &mut out[done..]);
}

/// Per-code distances (`ScanFn`): one-word codes packed back to back two per vector, two-word
/// codes one per vector; other shapes, and the last code, with the portable loop.
#[target_feature(enable = "neon")]
unsafe fn scan(q: &[u64], codes: RawCodes<'_>, out: &mut [u32]) {
    let (db, stride, words, mask) = (codes.data(), codes.stride(), codes.words(), codes.mask());
    let n = out.len();
    let p = db.as_ptr();
    match words {
        1 if stride == 1 => {
            let qv = vdupq_n_u64(q[0]);
            let mv = vdupq_n_u64(mask);
            let pairs = n / 2;
            for b in 0..pairs {
                // SAFETY: codes 2b, 2b + 1 exist (b < n / 2) and are one word each.
                let x = unsafe { vld1q_u64(p.add(2 * b)) };
                let c = vcntq_u8(vreinterpretq_u8_u64(vandq_u64(veorq_u64(x, qv), mv)));
                let lanes = vpaddlq_u32(vpaddlq_u16(vpaddlq_u8(c)));
                out[2 * b] = vgetq_lane_u64::<0>(lanes) as u32;
                out[2 * b + 1] = vgetq_lane_u64::<1>(lanes) as u32;
            }
            let done = pairs * 2;
            portable::scan(q, codes.skip(done), &mut out[done..]);
        }
        2 => {
            // SAFETY: `q` has at least two words (the ScanFn contract).
            let qv = unsafe { vld1q_u64(q.as_ptr()) };
            let mv = vcombine_u64(vcreate_u64(u64::MAX), vcreate_u64(mask));
            for (i, slot) in out.iter_mut().enumerate() {
                // SAFETY: code i has two words at `p + i stride`.
                let x = unsafe { vld1q_u64(p.add(i * stride)) };
                *slot = u32::from(vaddvq_u8(vcntq_u8(vreinterpretq_u8_u64(vandq_u64(
                    veorq_u64(x, qv),
                    mv,
                )))));
            }
        }
        _ => portable::scan(q, codes, out),
    }
}

//! The eight-lane scan's logic (blocks, de-interleaving, masked tails, limits) on an emulation
//! of the lanes, so that it is tested on every machine; and, where the CPU has AVX-512F +
//! VPOPCNTDQ, every lane operation of the AVX-512 implementation against the emulation.

use super::*;
use crate::hamming::raw::{RawCodes, RowBits};
use crate::hamming::testing::{allow_patterns, limit_rules, reference, words_for};
use crate::hamming::Isa;
use crate::synth::SplitMix64;
use std::cell::Cell;
use std::io::Write;

thread_local! {
    /// The readable word range `[start, end)` (addresses) of the current emulated scan.
    static READABLE: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// Checks that `count` words from `p` lie inside the readable range, then reads them.
fn read(p: *const u64, count: usize) -> [u64; 8] {
    let (lo, hi) = READABLE.with(Cell::get);
    let a = p as usize;
    assert!(
        a >= lo && a + 8 * count <= hi,
        "read of {count} words at word {} of a {}-word slice",
        (a.wrapping_sub(lo)) / 8,
        (hi - lo) / 8
    );
    let mut v = [0u64; 8];
    for (l, slot) in v.iter_mut().enumerate().take(count) {
        // SAFETY: the assert above: word l < count lies inside the slice being scanned.
        *slot = unsafe { p.add(l).read() };
    }
    v
}

/// The lanes as a plain array, with the semantics of the AVX-512 instructions.
struct Emu;

impl Lanes8 for Emu {
    type V = [u64; 8];
    unsafe fn splat(x: u64) -> [u64; 8] {
        [x; 8]
    }
    unsafe fn load(p: *const u64) -> [u64; 8] {
        read(p, 8)
    }
    unsafe fn load_first(p: *const u64, count: usize) -> [u64; 8] {
        assert!((1..8).contains(&count), "masked load of {count} lanes");
        read(p, count)
    }
    unsafe fn even(a: [u64; 8], b: [u64; 8]) -> [u64; 8] {
        std::array::from_fn(|l| if l < 4 { a[2 * l] } else { b[2 * l - 8] })
    }
    unsafe fn odd(a: [u64; 8], b: [u64; 8]) -> [u64; 8] {
        std::array::from_fn(|l| if l < 4 { a[2 * l + 1] } else { b[2 * l - 7] })
    }
    unsafe fn and(a: [u64; 8], b: [u64; 8]) -> [u64; 8] {
        std::array::from_fn(|l| a[l] & b[l])
    }
    unsafe fn xor_popcnt(a: [u64; 8], b: [u64; 8]) -> [u64; 8] {
        std::array::from_fn(|l| u64::from((a[l] ^ b[l]).count_ones()))
    }
    unsafe fn add(a: [u64; 8], b: [u64; 8]) -> [u64; 8] {
        std::array::from_fn(|l| a[l].wrapping_add(b[l]))
    }
    unsafe fn min(a: [u64; 8], b: [u64; 8]) -> [u64; 8] {
        std::array::from_fn(|l| a[l].min(b[l]))
    }
    unsafe fn lt_mask(a: [u64; 8], b: [u64; 8]) -> u8 {
        (0..8).fold(0, |m, l| m | (u8::from(a[l] < b[l]) << l))
    }
    unsafe fn store(a: [u64; 8]) -> [u64; 8] {
        a
    }
}

/// [`filter`] with the emulated lanes on the shape of `f.codes`, its reads checked against the
/// codes' words.
fn filter_emulated(f: Filter<'_>) {
    let range = f.codes.data().as_ptr_range();
    READABLE.with(|r| r.set((range.start as usize, range.end as usize)));
    // SAFETY: the emulation needs no CPU feature and checks every read; the shape is matched.
    unsafe {
        match (f.codes.words(), f.codes.stride()) {
            (1, 1) => filter::<Emu, 1, 1>(f),
            (1, 2) => filter::<Emu, 1, 2>(f),
            (2, 2) => filter::<Emu, 2, 2>(f),
            _ => unreachable!("not an eight-lane shape"),
        }
    }
}

#[test]
fn avx512_fused_logic_on_emulated_lanes() {
    let mut rng = SplitMix64::new(512);
    // (words, stride, valid bits of the last word): 64-bit codes and shorter, the 64-bit and
    // shorter prefixes of 128-bit codes, 128-bit codes and prefixes of 65 to 127 bits.
    let shapes = [
        (1, 1, 64),
        (1, 1, 13),
        (1, 1, 1),
        (1, 2, 64),
        (1, 2, 37),
        (2, 2, 64),
        (2, 2, 36),
        (2, 2, 1),
    ];
    for (words, stride, last_bits) in shapes {
        let mask = if last_bits == 64 {
            u64::MAX
        } else {
            (1u64 << last_bits) - 1
        };
        let width = 64 * (words as u32 - 1) + last_bits as u32;
        let centre = [rng.next_u64(), rng.next_u64()];
        // Every length 0 ..= 2 blocks + 9 codes: full blocks, leftover full groups and every
        // partial group; the slice ends at the last code's last word (with words < stride
        // the unused word of the last code is absent).
        for n in 0..=(2 * 8 * BLOCK_GROUPS + 9) {
            let db_full = words_for(&mut rng, n * stride, &centre);
            let db = &db_full[..if n == 0 { 0 } else { (n - 1) * stride + words }];
            let codes = RawCodes::new(db, n, words, stride, mask);
            for nq in [1, 5, 33, 67] {
                let q_words: Vec<Vec<u64>> = (0..nq)
                    .map(|_| words_for(&mut rng, words, &centre))
                    .collect();
                let qs: Vec<&[u64]> = q_words.iter().map(Vec::as_slice).collect();
                let patterns = allow_patterns(&mut rng, 1000 + n);
                for (name, next, limit0) in &limit_rules(width, nq) {
                    for (base, (pattern, bitmap)) in [0, 1000]
                        .into_iter()
                        .flat_map(|base| patterns.iter().map(move |p| (base, p)))
                    {
                        let allow = bitmap.as_deref().map(RowBits::new);
                        let want = reference(&qs, codes, limit0, next, base, allow);
                        let mut got = vec![Vec::new(); nq];
                        let mut limits = limit0.clone();
                        filter_emulated(Filter {
                            queries: &qs,
                            codes,
                            base,
                            limits: &mut limits,
                            sink: &mut |i, j, d| {
                                got[i].push((j - base, d));
                                next(i, d)
                            },
                            allow,
                        });
                        assert_eq!(
                            got, want,
                            "words {words}, stride {stride}, mask {mask:x}, n {n}, {nq} \
                             queries, rule {name}, base {base}, allowed {pattern}"
                        );
                    }
                }
            }
        }
    }
}

/// Every lane operation of `L` on `a`, `b`: their results, then `lt_mask(a, b)`.
///
/// # Safety
/// The CPU has `L`'s features.
#[inline(always)]
unsafe fn lane_ops<L: Lanes8>(a: &[u64; 8], b: &[u64; 8], count: usize) -> ([[u64; 8]; 8], u8) {
    // SAFETY: the caller checked the CPU features; `a` has eight readable words and
    // `count <= 7` of them are read by the masked load.
    unsafe {
        let (va, vb) = (L::load(a.as_ptr()), L::load(b.as_ptr()));
        let ops = [
            L::store(L::splat(a[3])),
            L::store(L::load_first(a.as_ptr(), count)),
            L::store(L::even(va, vb)),
            L::store(L::odd(va, vb)),
            L::store(L::and(va, vb)),
            L::store(L::xor_popcnt(va, vb)),
            L::store(L::add(va, vb)),
            L::store(L::min(va, vb)),
        ];
        (ops, L::lt_mask(va, vb))
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
unsafe fn lane_ops_avx512(a: &[u64; 8], b: &[u64; 8], count: usize) -> ([[u64; 8]; 8], u8) {
    // SAFETY: this function's features are those of `avx512::Avx512`, checked by the caller.
    unsafe { lane_ops::<avx512::Avx512>(a, b, count) }
}

#[test]
fn avx512_lane_ops_equal_emulation() {
    if !Isa::Avx512Vpopcntdq.is_available() {
        // Straight to stderr, so that libtest's capture does not hide the notice.
        let _ = writeln!(
            std::io::stderr(),
            "skipping avx512_lane_ops_equal_emulation: no AVX-512F + VPOPCNTDQ on this CPU"
        );
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let mut rng = SplitMix64::new(8);
        for t in 0..10_000 {
            let a: [u64; 8] = std::array::from_fn(|_| rng.next_u64() >> rng.below(64));
            let b: [u64; 8] = std::array::from_fn(|l| match (t + l) % 4 {
                0 => a[l],
                1 => rng.next_u64() >> rng.below(64),
                2 => a[l] ^ (1 << rng.below(64)),
                _ => u64::MAX - rng.below(3),
            });
            let count = 1 + t % 7;
            // The emulation's loads are checked against one readable range: a then b.
            let ab: [u64; 16] = std::array::from_fn(|l| if l < 8 { a[l] } else { b[l - 8] });
            let (a, b): (&[u64; 8], &[u64; 8]) = (
                ab[..8].try_into().expect("eight words"),
                ab[8..].try_into().expect("eight words"),
            );
            let range = ab.as_ptr_range();
            READABLE.with(|r| r.set((range.start as usize, range.end as usize)));
            // SAFETY: the emulation needs no CPU feature.
            let want = unsafe { lane_ops::<Emu>(a, b, count) };
            // SAFETY: AVX-512F + VPOPCNTDQ were checked above.
            let got = unsafe { lane_ops_avx512(a, b, count) };
            assert_eq!(got, want, "a {a:x?}, b {b:x?}, count {count}");
        }
    }
}

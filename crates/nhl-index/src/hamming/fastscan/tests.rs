//! [`filter`]'s logic (slicing, tables, blocks, superblocks, padded tails, thresholds, sink
//! order) on an emulation of the lanes, so that it is tested on every machine; and, where the
//! CPU has AVX2, every lane operation of the AVX2 implementation against the emulation.

use super::*;
use crate::hamming::raw::{RawCodes, RowBits};
use crate::hamming::testing::{allow_patterns, limit_rules, reference, words_for};
use crate::hamming::Isa;
use crate::synth::SplitMix64;
use std::cell::Cell;

thread_local! {
    /// The database being scanned, `[start, end)`, and the end of the guard words after it
    /// (addresses): a code read must not touch `[end, guard)`.
    static DB: Cell<(usize, usize, usize)> = const { Cell::new((0, 0, 0)) };
}

/// Reads 16 bytes of codes, failing when they run past the database into its guard words
/// (reads elsewhere are the zero-padded copy of the last block, on the stack).
fn read16(p: *const u8) -> [u8; 16] {
    let (start, end, guard) = DB.with(Cell::get);
    let a = p as usize;
    assert!(
        !(a < guard && a + 16 > end && a + 16 > start),
        "code read of 16 bytes at byte {} of a {}-byte database",
        a.wrapping_sub(start),
        end - start
    );
    // SAFETY: inside the database or the kernel's own buffer (checked above for the former).
    unsafe { p.cast::<[u8; 16]>().read_unaligned() }
}

/// The lanes as a plain array, with the semantics of the AVX2 instructions.
struct Emu;

fn per_half(f: impl Fn(usize, usize) -> u8) -> [u8; 32] {
    std::array::from_fn(|l| f(l / 16, l % 16))
}

/// Interleaves the low (`hi == false`) or high units of `size` bytes of `a` and `b`, per half.
fn unpack(a: [u8; 32], b: [u8; 32], size: usize, hi: bool) -> [u8; 32] {
    per_half(|h, i| {
        let unit = i / size;
        let src = if unit.is_multiple_of(2) { a } else { b };
        let from = unit / 2 + if hi { 8 / size } else { 0 };
        src[16 * h + from * size + i % size]
    })
}

impl Lanes32 for Emu {
    type V = [u8; 32];
    unsafe fn splat(x: u8) -> [u8; 32] {
        [x; 32]
    }
    unsafe fn load(p: *const u8) -> [u8; 32] {
        // SAFETY: the trait's contract.
        unsafe { p.cast::<[u8; 32]>().read_unaligned() }
    }
    unsafe fn broadcast_half(p: *const u8) -> [u8; 32] {
        // SAFETY: the trait's contract.
        let h = unsafe { p.cast::<[u8; 16]>().read_unaligned() };
        std::array::from_fn(|l| h[l % 16])
    }
    unsafe fn load_halves(lo: *const u8, hi: *const u8) -> [u8; 32] {
        let (lo, hi) = (read16(lo), read16(hi));
        std::array::from_fn(|l| if l < 16 { lo[l] } else { hi[l - 16] })
    }
    unsafe fn prefetch(_: *const u8) {}
    unsafe fn store(p: *mut u8, v: [u8; 32]) {
        // SAFETY: the trait's contract.
        unsafe { p.cast::<[u8; 32]>().write_unaligned(v) }
    }
    unsafe fn shuffle(table: [u8; 32], idx: [u8; 32]) -> [u8; 32] {
        per_half(|h, i| {
            let x = idx[16 * h + i];
            if x >= 128 {
                0
            } else {
                table[16 * h + usize::from(x & 15)]
            }
        })
    }
    unsafe fn unpack_lo16(a: [u8; 32], b: [u8; 32]) -> [u8; 32] {
        unpack(a, b, 2, false)
    }
    unsafe fn unpack_hi16(a: [u8; 32], b: [u8; 32]) -> [u8; 32] {
        unpack(a, b, 2, true)
    }
    unsafe fn unpack_lo32(a: [u8; 32], b: [u8; 32]) -> [u8; 32] {
        unpack(a, b, 4, false)
    }
    unsafe fn unpack_hi32(a: [u8; 32], b: [u8; 32]) -> [u8; 32] {
        unpack(a, b, 4, true)
    }
    unsafe fn unpack_lo64(a: [u8; 32], b: [u8; 32]) -> [u8; 32] {
        unpack(a, b, 8, false)
    }
    unsafe fn unpack_hi64(a: [u8; 32], b: [u8; 32]) -> [u8; 32] {
        unpack(a, b, 8, true)
    }
    unsafe fn join_halves(lo: [u8; 32], hi: [u8; 32]) -> [u8; 32] {
        std::array::from_fn(|l| if l < 16 { lo[l] } else { hi[l] })
    }
    unsafe fn low_nibbles(v: [u8; 32]) -> [u8; 32] {
        v.map(|x| x & 0x0f)
    }
    unsafe fn high_nibbles(v: [u8; 32]) -> [u8; 32] {
        v.map(|x| x >> 4)
    }
    unsafe fn xor(a: [u8; 32], b: [u8; 32]) -> [u8; 32] {
        std::array::from_fn(|l| a[l] ^ b[l])
    }
    unsafe fn or(a: [u8; 32], b: [u8; 32]) -> [u8; 32] {
        std::array::from_fn(|l| a[l] | b[l])
    }
    unsafe fn add(a: [u8; 32], b: [u8; 32]) -> [u8; 32] {
        std::array::from_fn(|l| a[l].wrapping_add(b[l]))
    }
    unsafe fn sub_sat(a: [u8; 32], b: [u8; 32]) -> [u8; 32] {
        std::array::from_fn(|l| a[l].saturating_sub(b[l]))
    }
    unsafe fn is_zero(v: [u8; 32]) -> bool {
        v == [0; 32]
    }
    unsafe fn lt_mask(a: [u8; 32], b: [u8; 32]) -> u32 {
        (0..32).fold(0, |m, l| m | (u32::from(a[l] < b[l]) << l))
    }
}

/// [`filter`] with the emulated lanes on the shape of `f.codes`, with code reads checked against
/// the codes' words, which `alloc` holds and continues with guard words.
fn filter_emulated(f: Filter<'_>, alloc: &[u64]) {
    let db = f.codes.data();
    let (start, end) = (db.as_ptr() as usize, db.as_ptr() as usize + 8 * db.len());
    DB.with(|r| r.set((start, end, alloc.as_ptr() as usize + 8 * alloc.len())));
    // SAFETY: the emulation needs no CPU feature and checks every code read; the shape is
    // matched.
    unsafe {
        match (f.codes.words(), f.codes.stride()) {
            (1, 1) => filter::<Emu, 1, true>(f),
            (1, _) => filter::<Emu, 1, false>(f),
            (2, _) => filter::<Emu, 2, false>(f),
            _ => unreachable!("not a fast-scan shape"),
        }
    }
}

#[test]
fn fastscan_logic_on_emulated_lanes() {
    let mut rng = SplitMix64::new(4);
    // (words, stride, valid bits of the last word): 64-bit codes and shorter, one-word
    // prefixes of 128- and 256-bit codes, 128-bit codes and their prefixes of 65 to 127 bits,
    // and two-word prefixes of 192-bit codes.
    let shapes = [
        (1, 1, 64),
        (1, 1, 13),
        (1, 1, 1),
        (1, 1, 4),
        (1, 2, 64),
        (1, 2, 32),
        (1, 2, 37),
        (1, 4, 61),
        (2, 2, 64),
        (2, 2, 36),
        (2, 2, 1),
        (2, 3, 60),
    ];
    // Lengths: none, partial first blocks, one block, a superblock and more (with blocks and
    // a partial block after it), two superblocks and a tail.
    let lengths: Vec<usize> = (0..=40)
        .chain([63, 64, 65, 255, 256, 257, 289, 300, 511, 512, 547])
        .collect();
    for (words, stride, last_bits) in shapes {
        let mask = if last_bits == 64 {
            u64::MAX
        } else {
            (1u64 << last_bits) - 1
        };
        let width = 64 * (words as u32 - 1) + last_bits;
        let centre = [rng.next_u64(), rng.next_u64()];
        for &n in &lengths {
            // The slice ends at the last code's last word (with words < stride the unused
            // words of the last code are absent), then come 64 guard words.
            let db_words = if n == 0 { 0 } else { (n - 1) * stride + words };
            let alloc = words_for(&mut rng, db_words + 64, &centre);
            for nq in [1, 3, 33, 70] {
                if n > 300 && nq != 33 {
                    continue;
                }
                let q_words: Vec<Vec<u64>> = (0..nq)
                    .map(|_| words_for(&mut rng, words, &centre))
                    .collect();
                let qs: Vec<&[u64]> = q_words.iter().map(Vec::as_slice).collect();
                let base = 1000;
                let patterns = allow_patterns(&mut rng, base + n);
                for ((name, next, limit0), (pattern, bitmap)) in limit_rules(width, nq)
                    .iter()
                    .flat_map(|rule| patterns.iter().map(move |p| (rule, p)))
                {
                    let codes = RawCodes::new(&alloc[..db_words], n, words, stride, mask);
                    let allow = bitmap.as_deref().map(RowBits::new);
                    let want = reference(&qs, codes, limit0, next, base, allow);
                    let mut got = vec![Vec::new(); nq];
                    let mut limits = limit0.clone();
                    let scan = Filter {
                        queries: &qs,
                        codes,
                        base,
                        limits: &mut limits,
                        sink: &mut |i, j, d| {
                            got[i].push((j - base, d));
                            next(i, d)
                        },
                        allow,
                    };
                    filter_emulated(scan, &alloc);
                    assert_eq!(
                        got, want,
                        "words {words}, stride {stride}, mask {mask:x}, n {n}, {nq} queries, \
                         rule {name}, allowed {pattern}"
                    );
                }
            }
        }
    }
}

/// Codes at the largest distance (every valid bit differs) pass a limit of width + 1 even when
/// no other code of their block does: the byte threshold must not clip it.
#[test]
fn fastscan_full_distance_passes_width_plus_one() {
    for (words, stride, last_bits) in [(1, 1, 64), (1, 2, 64), (1, 1, 7), (2, 2, 64), (2, 2, 9)] {
        let mask = u64::MAX >> (64 - last_bits);
        let width = 64 * (words as u32 - 1) + last_bits;
        for n in [5, 32, 300] {
            let db_words = (n - 1) * stride + words;
            let alloc = vec![0x0123_4567_89ab_cdef_u64; db_words + 64];
            let query: Vec<u64> = vec![!0x0123_4567_89ab_cdef_u64; words];
            let mut got = Vec::new();
            let mut limits = [width + 1];
            let scan = Filter {
                queries: &[&query],
                codes: RawCodes::new(&alloc[..db_words], n, words, stride, mask),
                base: 0,
                limits: &mut limits,
                sink: &mut |_, j, d| {
                    got.push((j, d));
                    width + 1
                },
                allow: None,
            };
            filter_emulated(scan, &alloc);
            let want: Vec<(usize, u32)> = (0..n).map(|j| (j, width)).collect();
            assert_eq!(
                got, want,
                "words {words}, stride {stride}, width {width}, n {n}"
            );
        }
    }
}

/// The guard of the emulated reads is live: a read past the database fails.
#[test]
#[should_panic(expected = "code read of 16 bytes")]
fn emulated_code_reads_past_the_database_fail() {
    let alloc = [0u64; 8];
    DB.with(|r| {
        r.set((
            alloc.as_ptr() as usize,
            alloc.as_ptr() as usize + 8 * 3,
            alloc.as_ptr() as usize + 64,
        ))
    });
    // Words 2 and 3: the second lies past the three-word database.
    let _ = read16(alloc[2..].as_ptr().cast());
}

/// Every lane operation of `L` on `a`, `b`, `c` (32 bytes each, `c` read as codes).
///
/// # Safety
/// The CPU has `L`'s features.
#[inline(always)]
unsafe fn lane_ops<L: Lanes32>(a: &[u8; 32], b: &[u8; 32]) -> Vec<[u8; 32]> {
    // SAFETY: the caller checked the CPU features; `a` and `b` have 32 readable bytes.
    unsafe {
        let (va, vb) = (L::load(a.as_ptr()), L::load(b.as_ptr()));
        let out = |v: L::V| {
            let mut o = [0u8; 32];
            L::store(o.as_mut_ptr(), v);
            o
        };
        let flags = |x: bool| [u8::from(x); 32];
        let mask = |m: u32| std::array::from_fn(|l| (m >> l) as u8 & 1);
        vec![
            out(L::splat(a[5])),
            out(L::broadcast_half(b.as_ptr().add(3))),
            out(L::load_halves(a.as_ptr().add(7), b.as_ptr().add(16))),
            out(L::shuffle(va, vb)),
            out(L::unpack_lo16(va, vb)),
            out(L::unpack_hi16(va, vb)),
            out(L::unpack_lo32(va, vb)),
            out(L::unpack_hi32(va, vb)),
            out(L::unpack_lo64(va, vb)),
            out(L::unpack_hi64(va, vb)),
            out(L::join_halves(va, vb)),
            out(L::low_nibbles(va)),
            out(L::high_nibbles(va)),
            out(L::xor(va, vb)),
            out(L::or(va, vb)),
            out(L::add(va, vb)),
            out(L::sub_sat(va, vb)),
            flags(L::is_zero(va)),
            flags(L::is_zero(L::xor(va, va))),
            mask(L::lt_mask(va, vb)),
        ]
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn lane_ops_avx2(a: &[u8; 32], b: &[u8; 32]) -> Vec<[u8; 32]> {
    // SAFETY: this function's features are those of `avx2::Avx2`, checked by the caller.
    unsafe { lane_ops::<avx2::Avx2>(a, b) }
}

#[test]
fn avx2_lane_ops_equal_emulation() {
    if !Isa::Avx2.is_available() {
        use std::io::Write;
        // Straight to stderr, so that libtest's capture does not hide the notice.
        let _ = writeln!(
            std::io::stderr(),
            "skipping avx2_lane_ops_equal_emulation: no AVX2 on this CPU"
        );
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let mut rng = SplitMix64::new(32);
        for t in 0..20_000 {
            let a: [u8; 32] = std::array::from_fn(|_| (rng.next_u64() >> rng.below(8)) as u8);
            let b: [u8; 32] = std::array::from_fn(|l| match (t + l) % 4 {
                0 => a[l],
                1 => rng.next_u64() as u8,
                2 => a[l] ^ (1 << rng.below(8)),
                _ => (rng.below(3) as u8).wrapping_sub(1),
            });
            // The emulated code reads (load_halves) are checked against a range holding
            // neither: no guard is hit.
            DB.with(|r| r.set((0, 0, 0)));
            // SAFETY: the emulation needs no CPU feature.
            let want = unsafe { lane_ops::<Emu>(&a, &b) };
            // SAFETY: AVX2 was checked above.
            let got = unsafe { lane_ops_avx2(&a, &b) };
            assert_eq!(got, want, "a {a:?}, b {b:?}");
        }
    }
}

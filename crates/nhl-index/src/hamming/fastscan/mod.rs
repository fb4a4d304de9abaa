//! Fast-scan threshold filter: the Hamming distance as a sum of nibble table lookups, the
//! "fast-scan" of product quantisation (André, Kermarrec and Le Scouarnec) applied to binary codes.
//!
//! Split a code of `b` bits into `J = ceil(b / 4)` nibbles `x_j` (nibble `j` is bits `4j .. 4j + 4`).
//! With the query's nibbles `q_j` and the view's mask nibbles `m_j` (zero past the code's valid
//! bits), the distance is
//!
//! `d(q, x) = sum_j T_j[x_j]`, with the 16-entry table `T_j[v] = popcount((v XOR q_j) AND m_j)`.
//!
//! Each entry is at most 4, so `d <= 4 J <= 128` fits one byte, and a `vpshufb` looks up one
//! nibble position of 32 codes at once: the database block is *byte-sliced* (vector `j` holds
//! nibble `j` of 32 codes, one per byte), and one query meets it with one table broadcast, one
//! shuffle and one byte add per nibble position, that is per 32 code nibbles. A 128-bit code costs
//! about one shuffle and one add, against about four vector operations for the per-code nibble
//! popcount. The mask lives in the tables, so every prefix length costs only its own nibbles.
//!
//! The slicing (a byte transpose and nibble split of the codes) is done on the fly, into a small
//! L1 buffer, once per block of codes and call, and shared by all the queries of the call, which
//! meet it a chunk of [`QCHUNK`] at a time; nothing is stored in the index, so a scan pays for its
//! own layout. The threshold test is
//! one saturating subtract per 32 codes: `thr -sat d` is non-zero exactly where `d < thr`, so only
//! blocks with a hit leave the registers.
//!
//! The logic is written once against [`Lanes32`]: the AVX2 implementation lives in [`avx2`],
//! and a plain-array emulation in the tests runs the same blocking, slicing, threshold and
//! sink-order code on every machine.

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2;
#[cfg(test)]
mod tests;

use super::raw::{EveryRow, Filter, Rows, Sink};

/// Thirty-two u8 lanes in two halves of sixteen, with the semantics of the AVX2 byte operations
/// (shuffles and unpacks act within each half), for [`filter`].
///
/// # Safety
/// Every method may require the implementation's CPU features: callers must have checked them.
pub(super) trait Lanes32 {
    /// A vector of 32 bytes.
    type V: Copy;
    /// All lanes `x`.
    unsafe fn splat(x: u8) -> Self::V;
    /// The 32 bytes at `p`.
    ///
    /// # Safety
    /// They are readable.
    unsafe fn load(p: *const u8) -> Self::V;
    /// The sixteen bytes at `p` in both halves.
    ///
    /// # Safety
    /// They are readable.
    unsafe fn broadcast_half(p: *const u8) -> Self::V;
    /// Database codes: the sixteen bytes at `lo` in the low half and those at `hi` in the high.
    ///
    /// # Safety
    /// They are readable.
    unsafe fn load_halves(lo: *const u8, hi: *const u8) -> Self::V;
    /// A hint to bring the cache line of `p` closer (any address).
    unsafe fn prefetch(p: *const u8);
    /// Writes the 32 lanes to `p`.
    ///
    /// # Safety
    /// The 32 bytes at `p` are writable.
    unsafe fn store(p: *mut u8, v: Self::V);
    /// Per half, lane `i` takes lane `idx_i & 15` of `table` (0 when `idx_i >= 128`): `vpshufb`.
    unsafe fn shuffle(table: Self::V, idx: Self::V) -> Self::V;
    /// Per half, the low 16-bit units of `a` and `b` interleaved: `vpunpcklwd`.
    unsafe fn unpack_lo16(a: Self::V, b: Self::V) -> Self::V;
    /// Per half, the high 16-bit units interleaved: `vpunpckhwd`.
    unsafe fn unpack_hi16(a: Self::V, b: Self::V) -> Self::V;
    /// Per half, the low 32-bit units interleaved: `vpunpckldq`.
    unsafe fn unpack_lo32(a: Self::V, b: Self::V) -> Self::V;
    /// Per half, the high 32-bit units interleaved: `vpunpckhdq`.
    unsafe fn unpack_hi32(a: Self::V, b: Self::V) -> Self::V;
    /// Per half, the low 64-bit units interleaved: `vpunpcklqdq`.
    unsafe fn unpack_lo64(a: Self::V, b: Self::V) -> Self::V;
    /// Per half, the high 64-bit units interleaved: `vpunpckhqdq`.
    unsafe fn unpack_hi64(a: Self::V, b: Self::V) -> Self::V;
    /// The low half of `lo` and the high half of `hi`.
    unsafe fn join_halves(lo: Self::V, hi: Self::V) -> Self::V;
    /// Lane-wise `v & 0x0f`.
    unsafe fn low_nibbles(v: Self::V) -> Self::V;
    /// Lane-wise `v >> 4`.
    unsafe fn high_nibbles(v: Self::V) -> Self::V;
    /// Lane-wise `a ^ b`.
    unsafe fn xor(a: Self::V, b: Self::V) -> Self::V;
    /// Lane-wise `a | b`.
    unsafe fn or(a: Self::V, b: Self::V) -> Self::V;
    /// Lane-wise wrapping `a + b`.
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// Lane-wise saturating `a - b` (unsigned): non-zero exactly where `a > b`.
    unsafe fn sub_sat(a: Self::V, b: Self::V) -> Self::V;
    /// Whether every lane is zero.
    unsafe fn is_zero(v: Self::V) -> bool;
    /// Bit `l` set exactly when `a_l < b_l` (unsigned).
    unsafe fn lt_mask(a: Self::V, b: Self::V) -> u32;
}

/// Codes per block: one byte lane each.
pub(super) const BLOCK: usize = 32;
/// Blocks per superblock: one query's accumulators for a superblock stay in registers while the
/// query walks its nibble positions (one table broadcast serves `SUPER` shuffles).
pub(super) const SUPER: usize = 8;
/// Queries per chunk: the chunk's tables (at most 16 KiB) and the sliced superblock (at most
/// 8 KiB) stay in L1 together while the chunk scans the superblock.
pub(super) const QCHUNK: usize = 32;
/// Nibble positions of the widest code the filter takes (two words).
const MAX_NIBBLES: usize = 32;

/// `popcount(i)` for `i < 16`, in both halves.
static POPCOUNT4: [u8; 32] = [
    0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
];
/// Per half, two codes of eight bytes `a, b` become the 16-bit units `(a_p, b_p)`, `p = 0..8`.
static PAIR_BYTES: [u8; 32] = [
    0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15, 0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13,
    6, 14, 7, 15,
];

/// 32-byte aligned storage, so that the sliced blocks and tables never split a cache line.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Aligned<T>(T);

/// An aligned scratch buffer that is written before it is read, so it is not zeroed: zeroing the
/// tables and the sliced superblock on every call would cost a few per cent of a scan.
type Scratch<const N: usize> = Aligned<std::mem::MaybeUninit<[u8; N]>>;

/// The nibble positions a view of `W` words with last-word mask `mask` needs: up to the highest
/// valid bit (tables zero the masked bits below it).
fn nibbles<const W: usize>(mask: u64) -> usize {
    let bits = 64 * (W - 1) + (64 - mask.leading_zeros() as usize);
    bits.div_ceil(4)
}

/// The eight byte vectors of one word of a block: `out[p]` holds byte `p` of that word of codes
/// `0 .. 16` (low half, in order) and `16 .. 32` (high half), given `y[r]` holding the word of
/// codes `2r, 2r + 1` (low half) and `16 + 2r, 17 + 2r` (high half). Per half this is a 16 x 8
/// byte transpose: bytes paired per code pair by one shuffle, then an 8 x 8 transpose of 16-bit
/// units in three rounds of unpacks.
///
/// # Safety
/// The CPU has `L`'s features.
#[inline(always)]
unsafe fn transpose_word<L: Lanes32>(y: [L::V; 8]) -> [L::V; 8] {
    // Plain loops, not `array::from_fn`: a closure does not inherit the caller's target features,
    // so its intrinsics would be calls. SAFETY: the caller checked the CPU features; PAIR_BYTES
    // has 32 bytes.
    unsafe {
        let pair = L::load(PAIR_BYTES.as_ptr());
        let mut u = y;
        for v in u.iter_mut() {
            *v = L::shuffle(*v, pair);
        }
        // t[2k], t[2k + 1]: units 0..4 and 4..8 of rows 2k, 2k + 1 interleaved.
        let mut t = u;
        for k in 0..4 {
            t[2 * k] = L::unpack_lo16(u[2 * k], u[2 * k + 1]);
            t[2 * k + 1] = L::unpack_hi16(u[2 * k], u[2 * k + 1]);
        }
        // s[h..h + 4] (h = 0, 4): units (0, 1), (2, 3), (4, 5), (6, 7) of rows h..h + 4.
        let mut s = t;
        for h in [0, 4] {
            s[h] = L::unpack_lo32(t[h], t[h + 2]);
            s[h + 1] = L::unpack_hi32(t[h], t[h + 2]);
            s[h + 2] = L::unpack_lo32(t[h + 1], t[h + 3]);
            s[h + 3] = L::unpack_hi32(t[h + 1], t[h + 3]);
        }
        // Unit p of all eight rows: byte p of the sixteen codes of each half.
        let mut out = s;
        for k in 0..4 {
            out[2 * k] = L::unpack_lo64(s[k], s[4 + k]);
            out[2 * k + 1] = L::unpack_hi64(s[k], s[4 + k]);
        }
        out
    }
}

/// Slices the block of 32 codes at `p` into nibble vectors: nibble `j < nibbles` (the low nibble
/// of byte `j / 2` when `j` is even, else its high nibble) of code `c` goes to byte `c` of the
/// 32 bytes at `out + j * row`.
///
/// `PACKED`: one-word codes back to back (`stride == 1`), sixteen bytes holding two codes. Else
/// each code's first sixteen bytes are read, `stride >= 2` words apart, and word `W - 1 < 2` used.
///
/// # Safety
/// The CPU has `L`'s features; `PACKED` implies `W == 1` and `stride == 1`; the 32 codes' reads
/// (256 bytes from `p` when `PACKED`, else 16 bytes from `p + 8 stride c`, `c < 32`) are in
/// bounds; the `nibbles` rows of 32 bytes at `out + j * row` are writable.
#[inline(always)]
unsafe fn slice_block<L: Lanes32, const W: usize, const PACKED: bool>(
    p: *const u8,
    stride: usize,
    nibbles: usize,
    out: *mut u8,
    row: usize,
) {
    // SAFETY: the caller's contract covers every read and write, and the
    // CPU features.
    unsafe {
        let zero = L::splat(0);
        let mut words = [[zero; 8]; W];
        if PACKED {
            // Codes 2r, 2r + 1 at byte 16 r; codes 16 + 2r, 17 + 2r at byte 128 + 16 r.
            for (r, y) in words[0].iter_mut().enumerate() {
                *y = L::load_halves(p.add(16 * r), p.add(128 + 16 * r));
            }
        } else {
            // Codes 2r | 16 + 2r and 2r + 1 | 17 + 2r, both words of each; the 64-bit unpacks
            // gather word w of the code pairs.
            let code = 8 * stride;
            let (mut first, mut second) = ([zero; 8], [zero; 8]);
            for (r, (y0, y1)) in first.iter_mut().zip(second.iter_mut()).enumerate() {
                let a = L::load_halves(p.add(code * 2 * r), p.add(code * (16 + 2 * r)));
                let b = L::load_halves(p.add(code * (2 * r + 1)), p.add(code * (17 + 2 * r)));
                *y0 = L::unpack_lo64(a, b);
                if W == 2 {
                    *y1 = L::unpack_hi64(a, b);
                }
            }
            words[0] = first;
            words[W - 1] = if W == 2 { second } else { first };
        }
        for (w, y) in words.into_iter().enumerate() {
            if 16 * w >= nibbles {
                break;
            }
            let bytes = transpose_word::<L>(y);
            for (k, &v) in bytes.iter().enumerate() {
                let j = 16 * w + 2 * k;
                if j < nibbles {
                    L::store(out.add(j * row), L::low_nibbles(v));
                }
                if j + 1 < nibbles {
                    L::store(out.add((j + 1) * row), L::high_nibbles(v));
                }
            }
        }
    }
}

/// The tables of one query: `T_j` (sixteen bytes) at `out + 16 j` for the `2 * ceil(nibbles / 2)`
/// first positions, built two at a time: byte `k` of the masked query, split into its nibbles
/// (low half: low nibble), is broadcast within each half, XORed with `v AND m_j`
/// (`masked[k]`, `v = 0..16` per half) and looked up in the popcount table:
/// `popcount((v AND m_j) XOR (q_j AND m_j)) = popcount((v XOR q_j) AND m_j)`.
///
/// # Safety
/// The CPU has `L`'s features; `out` has `16 * 2 * ceil(nibbles / 2)` writable bytes; `masked`
/// has `ceil(nibbles / 2)` entries.
#[inline(always)]
unsafe fn build_tables<L: Lanes32>(
    query: &[u8; 16],
    masked: &[Aligned<[u8; 32]>],
    nibbles: usize,
    out: *mut u8,
) {
    // SAFETY: the caller's contract; `query` has sixteen bytes, POPCOUNT4 thirty-two.
    unsafe {
        let popcount = L::load(POPCOUNT4.as_ptr());
        let q = L::broadcast_half(query.as_ptr());
        let split = L::join_halves(L::low_nibbles(q), L::high_nibbles(q));
        for (k, m) in masked.iter().enumerate().take(nibbles.div_ceil(2)) {
            let qk = L::shuffle(split, L::splat(k as u8));
            let t = L::shuffle(popcount, L::xor(L::load(m.0.as_ptr()), qk));
            L::store(out.add(32 * k), t);
        }
    }
}

/// One query against `NB` sliced blocks (nibble `j` of block `b` at `sliced + 32 (NB j + b)`),
/// tables at `tables`: the 32 distances of each block, one per byte.
///
/// # Safety
/// The CPU has `L`'s features; the `nibbles` rows of `NB` blocks and the `nibbles` tables are
/// readable.
#[inline(always)]
unsafe fn distances<L: Lanes32, const NB: usize>(
    sliced: *const u8,
    tables: *const u8,
    nibbles: usize,
) -> [L::V; NB] {
    // SAFETY: the caller's contract.
    unsafe {
        let mut acc = [L::splat(0); NB];
        for j in 0..nibbles {
            let t = L::broadcast_half(tables.add(16 * j));
            let row = sliced.add(BLOCK * NB * j);
            for (b, a) in acc.iter_mut().enumerate() {
                *a = L::add(*a, L::shuffle(t, L::load(row.add(BLOCK * b))));
            }
        }
        acc
    }
}

/// Bit `l` set exactly when lane `l` of `v` is below `limit`.
///
/// # Safety
/// The CPU has `L`'s features.
#[inline(always)]
unsafe fn below<L: Lanes32>(v: L::V, limit: u32) -> u32 {
    if limit > 255 {
        u32::MAX
    } else {
        // SAFETY: the caller checked the CPU features.
        unsafe { L::lt_mask(v, L::splat(limit as u8)) }
    }
}

/// The shared state of one chunk of queries: their tables and limits.
struct Chunk<'c> {
    /// Query `i`'s tables at `tables + 512 i`, written for the chunk's queries.
    tables: *const u8,
    /// The nibble positions of the codes: tables per query, rows of the sliced blocks.
    nibbles: usize,
    /// One more than the largest distance: a limit above it acts as it, which fits a byte.
    cap: u32,
    /// The limits of the chunk's queries (one per query).
    limits: &'c mut [u32],
    /// The index of the chunk's first query.
    q0: usize,
}

/// `NB` blocks of 32 codes, sliced into the rows of their nibble positions.
#[derive(Clone, Copy)]
struct Sliced<const NB: usize> {
    /// Nibble `j` of block `b` at `rows + 32 (NB j + b)`.
    rows: *const u8,
    /// `keep[b]`: a bit per code of block `b` that may be reported (it exists and is allowed).
    keep: [u32; NB],
    /// The position reported for the first code of block 0.
    code0: usize,
}

/// Every query of `chunk` against the `NB` sliced `blocks`. The threshold `min(limit, cap)` fits
/// a byte because a distance is at most `cap - 1`; the test of all `32 NB` codes at once only
/// selects the blocks worth a closer look, and on a hit the blocks' codes are walked in ascending
/// order, each block's lanes below the limit as the sink leaves it (whatever it returns) ANDed
/// with its `keep` bits. `R` says whether `keep` can exclude a code: then the selecting test
/// looks at `keep` too.
/// `ahead`: bytes to prefetch, shared out among the queries.
///
/// # Safety
/// The CPU has `L`'s features; `blocks.rows` holds `chunk.nibbles` rows of `NB` blocks; the
/// tables of the chunk's queries hold `chunk.nibbles` positions.
#[inline(always)]
unsafe fn scan_blocks<L: Lanes32, const NB: usize, R: Rows>(
    chunk: &mut Chunk<'_>,
    blocks: Sliced<NB>,
    ahead: Option<(*const u8, usize)>,
    sink: Sink<'_>,
) {
    let Sliced {
        rows: sliced,
        keep,
        code0,
    } = blocks;
    let (nibbles, cap) = (chunk.nibbles, chunk.cap);
    // Each query prefetches its own run of `share` lines: the division is paid once per call,
    // not once per query (a 64-bit division costs as much as a tenth of a query's scan).
    let qn = chunk.limits.len();
    let (next, bytes) = ahead.unwrap_or((std::ptr::null(), 0));
    let share = 64 * (bytes.div_ceil(64)).div_ceil(qn.max(1));
    for (i, limit) in chunk.limits.iter_mut().enumerate() {
        let run = share * i..(share * (i + 1)).min(bytes);
        for line in run.step_by(64) {
            // SAFETY: a prefetch reads nothing architecturally and never faults.
            unsafe { L::prefetch(next.wrapping_add(line)) };
        }
        // SAFETY: the caller's contract; query i < QCHUNK has its tables at 512 i.
        let (acc, hit) = unsafe {
            let acc = distances::<L, NB>(sliced, chunk.tables.add(512 * i), nibbles);
            let hit = if R::EVERY {
                let thr = L::splat((*limit).min(cap) as u8);
                let mut any = L::sub_sat(thr, acc[0]);
                for &a in &acc[1..] {
                    any = L::or(any, L::sub_sat(thr, a));
                }
                !L::is_zero(any)
            } else {
                // With a filter, a block whose hits are all disallowed is no hit: few allowed
                // rows leave the limit loose, and a vector test blind to `keep` would send
                // most blocks down the code-by-code walk below.
                let thr = (*limit).min(cap);
                let mut any = 0;
                for (&a, &k) in acc.iter().zip(&keep) {
                    any |= below::<L>(a, thr) & k;
                }
                any != 0
            };
            (acc, hit)
        };
        if !hit {
            continue;
        }
        let mut dist = [Aligned([0u8; 32]); NB];
        for (d, &a) in dist.iter_mut().zip(&acc) {
            // SAFETY: `d` has 32 bytes; the CPU features were checked.
            unsafe { L::store(d.0.as_mut_ptr(), a) };
        }
        let mut lim = *limit;
        for (b, d) in dist.iter().enumerate() {
            // SAFETY: `d` has 32 bytes; the CPU features were checked.
            let v = unsafe { L::load(d.0.as_ptr()) };
            // SAFETY: as above.
            let mut m = unsafe { below::<L>(v, lim) } & keep[b];
            while m != 0 {
                let l = m.trailing_zeros() as usize;
                lim = sink(chunk.q0 + i, code0 + BLOCK * b + l, u32::from(d.0[l]));
                // SAFETY: as above.
                m = unsafe { below::<L>(v, lim) } & keep[b] & (u64::MAX << (l + 1)) as u32;
            }
        }
        *limit = lim;
    }
}

/// The fast-scan threshold scan (`FilterFn` semantics) of codes of `W` words (1 or 2), `stride`
/// words apart, last word masked by `mask`: every query's tables are built, then the database is
/// sliced [`SUPER`] blocks of 32 codes at a time, once for all the queries, and the chunks of
/// [`QCHUNK`] queries take turns on the superblock, each query meeting it in registers. Blocks
/// left over (fewer than a superblock, a partial last block, or a last code whose unused second
/// word lies past `db`) are sliced one at a time, the last from a zero-padded copy, its missing
/// codes masked out. With a filter, each block's allowed codes are its `keep` bits, and a
/// superblock or leftover block with none is neither sliced nor scanned.
///
/// # Safety
/// The CPU has `L`'s features; the codes are `W` words (`f.codes.words() == W`), and `PACKED`
/// exactly when `W == 1` and the stride is 1, else the stride is at least 2.
#[inline(always)]
unsafe fn filter<L: Lanes32, const W: usize, const PACKED: bool>(f: Filter<'_>) {
    match f.allow {
        // SAFETY: the caller's contract.
        None => unsafe { scan::<L, W, PACKED, EveryRow>(f, EveryRow) },
        // SAFETY: the caller's contract.
        Some(bits) => unsafe { scan::<L, W, PACKED, _>(f, bits) },
    }
}

/// [`filter`] reporting only the positions of `rows`.
///
/// # Safety
/// As [`filter`].
#[inline(always)]
unsafe fn scan<L: Lanes32, const W: usize, const PACKED: bool, R: Rows>(f: Filter<'_>, rows: R) {
    let Filter {
        queries: qs,
        codes,
        base,
        limits,
        sink,
        ..
    } = f;
    let (db, stride, mask, n) = (codes.data(), codes.stride(), codes.mask(), codes.len());
    if n == 0 {
        return;
    }
    let nibbles = nibbles::<W>(mask);
    let cap = 64 * W as u32 + 1;
    // Blocks whose reads all lie in `db`: PACKED reads exactly the codes' words; otherwise each
    // code's sixteen bytes, of which the last code's second word may be absent when W = 1.
    let len = db.len();
    let in_bounds = if PACKED {
        len / BLOCK
    } else if len >= 2 {
        ((len - 2) / stride + 1) / BLOCK
    } else {
        0
    };
    let full = (n / BLOCK).min(in_bounds);
    let supers = full / SUPER;
    let blocks = n.div_ceil(BLOCK);
    // `v AND m_j` per byte k of the code (low nibble in the low half), for the tables.
    let mut masked = [Aligned([0u8; 32]); MAX_NIBBLES / 2];
    for (k, m) in masked.iter_mut().enumerate().take(nibbles.div_ceil(2)) {
        let word = if k / 8 == W - 1 { mask } else { u64::MAX };
        let byte = (word >> (8 * (k % 8))) as u8;
        for v in 0..16u8 {
            m.0[usize::from(v)] = v & byte & 0x0f;
            m.0[16 + usize::from(v)] = v & (byte >> 4);
        }
    }
    // Every query's tables, built once; the superblocks are the outer loop, so each is sliced
    // once for all the queries of the call, and its chunks of QCHUNK queries take turns on it
    // (their tables come from L2 then, the sliced superblock from L1).
    let mut all_tables = vec![Aligned([0u8; MAX_NIBBLES * 16]); qs.len()];
    for (q, t) in qs.iter().zip(all_tables.iter_mut()) {
        let mut bytes = [0u8; 16];
        for w in 0..W {
            let word = if w == W - 1 { q[w] & mask } else { q[w] };
            bytes[8 * w..8 * w + 8].copy_from_slice(&word.to_le_bytes());
        }
        // SAFETY: the CPU features were checked by the caller; `t` has 512 bytes, enough for
        // 32 tables; `masked` has 16 entries.
        unsafe { build_tables::<L>(&bytes, &masked, nibbles, t.0.as_mut_ptr()) };
    }
    // Only ever read where written first: the rows of a block are sliced before it is scanned.
    let mut sliced_buf: Scratch<{ SUPER * BLOCK * MAX_NIBBLES }> =
        Aligned(std::mem::MaybeUninit::uninit());
    let sliced = sliced_buf.0.as_mut_ptr().cast::<u8>();
    let code_bytes = if PACKED { 8 } else { 8 * stride };
    let p = db.as_ptr().cast::<u8>();
    // Query `i`'s tables at `tables + 512 i`.
    let tables = all_tables.as_ptr().cast::<u8>();
    for s in 0..supers {
        let mut keep = [0u32; SUPER];
        for (b, k) in keep.iter_mut().enumerate() {
            *k = rows.window(base + BLOCK * (SUPER * s + b)) as u32;
        }
        if keep == [0; SUPER] {
            continue;
        }
        for b in 0..SUPER {
            let first = BLOCK * (SUPER * s + b);
            // SAFETY: block SUPER s + b < full is in bounds (see `in_bounds`); its rows go to
            // `sliced` at 32 b + 256 j, j < nibbles <= 32, inside its 8 KiB.
            unsafe {
                slice_block::<L, W, PACKED>(
                    p.add(code_bytes * first),
                    stride,
                    nibbles,
                    sliced.add(BLOCK * b),
                    BLOCK * SUPER,
                )
            };
        }
        // The next superblock's codes are fetched while this one is scanned, a few lines per
        // query of the first chunk: the hardware prefetchers lose a stream read in bursts tens
        // of thousands of cycles apart, and a burst of misses at slicing time would stall.
        let ahead = (s + 1 < supers).then(|| {
            (
                p.wrapping_add(code_bytes * BLOCK * SUPER * (s + 1)),
                code_bytes * BLOCK * SUPER,
            )
        });
        for (c, chunk_limits) in limits.chunks_mut(QCHUNK).enumerate() {
            let mut chunk = Chunk {
                // SAFETY: the queries QCHUNK c .. of this chunk have their tables from there.
                tables: unsafe { tables.add(512 * QCHUNK * c) },
                nibbles,
                cap,
                limits: chunk_limits,
                q0: c * QCHUNK,
            };
            let blocks = Sliced {
                rows: sliced,
                keep,
                code0: base + BLOCK * SUPER * s,
            };
            let ahead = if c == 0 { ahead } else { None };
            // SAFETY: `sliced` now holds `nibbles` rows of SUPER blocks.
            unsafe { scan_blocks::<L, SUPER, R>(&mut chunk, blocks, ahead, &mut *sink) };
        }
    }
    for b in SUPER * supers..blocks {
        let first = BLOCK * b;
        let valid = (n - first).min(BLOCK);
        // Lanes 0 .. valid, those allowed.
        let keep = (rows.window(base + first) & (u64::MAX >> (64 - valid))) as u32;
        if keep == 0 {
            continue;
        }
        if b < full {
            // SAFETY: block b < full is in bounds; its rows fit `sliced` (row = 32 bytes).
            unsafe {
                slice_block::<L, W, PACKED>(
                    p.add(code_bytes * first),
                    stride,
                    nibbles,
                    sliced,
                    BLOCK,
                )
            };
        } else {
            // The codes that exist, copied into a zeroed block of the same layout (two words per
            // code unless PACKED), so that no read leaves `db`.
            let s = if PACKED { 1 } else { 2 };
            let mut buf = [0u64; 2 * BLOCK];
            for c in 0..valid {
                let at = (first + c) * stride;
                buf[c * s..c * s + W].copy_from_slice(&db[at..at + W]);
            }
            // SAFETY: `buf` holds 32 codes of the layout `slice_block` reads with stride `s`;
            // the rows fit `sliced`.
            unsafe { slice_block::<L, W, PACKED>(buf.as_ptr().cast(), s, nibbles, sliced, BLOCK) };
        }
        for (c, chunk_limits) in limits.chunks_mut(QCHUNK).enumerate() {
            let mut chunk = Chunk {
                // SAFETY: as for the superblocks.
                tables: unsafe { tables.add(512 * QCHUNK * c) },
                nibbles,
                cap,
                limits: chunk_limits,
                q0: c * QCHUNK,
            };
            let block = Sliced {
                rows: sliced,
                keep: [keep],
                code0: base + first,
            };
            // SAFETY: `sliced` holds `nibbles` rows of one block.
            unsafe { scan_blocks::<L, 1, R>(&mut chunk, block, None, &mut *sink) };
        }
    }
}

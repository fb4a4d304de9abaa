//! Mutation fuzzing of file parsers inside the test suite, behind the `testing` feature (nothing
//! here is for users of the crate).
//!
//! A [`Campaign`] turns small valid files ([`Seed`]s) into a fixed number of mutated inputs, each
//! one determined by the campaign's seed and its case number alone ([`Campaign::case`]), so any
//! failure can be replayed. [`run`] feeds every case to a parser under `catch_unwind` and
//! measures the largest single allocation the parser makes; a case fails when the parser panics
//! or when that allocation exceeds [`alloc_bound`] of the bytes that justify it.
//!
//! The measurement needs [`CountingAlloc`] as the global allocator of the test binary:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: nhl_index::fuzz::CountingAlloc = nhl_index::fuzz::CountingAlloc;
//! ```
//!
//! [`run`] checks that it is installed, so a binary without it fails instead of passing blind.

use crate::synth::SplitMix64;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

/// A parser may allocate, in one piece, this many times the bytes that justify the allocation...
///
/// The widest expansions of input bytes in this workspace's parsers stay well below it: a
/// one-byte code becomes a `u64` word (8x), a uint8 feature an `f32` (4x), a uint8 multi-hot row
/// a `Vec` header of 24 bytes plus its classes, an 8-byte ID a 16-byte (ID, row) pair or a hash
/// map slot; a growing `Vec` may then double its capacity once more (2x).
pub const ALLOC_FACTOR: usize = 64;

/// ...plus this many bytes that no input length justifies or needs to. The largest such
/// allocations come from gzip: `flate2` allocates a gzip header's extra field at its claimed
/// length (a 16-bit field: up to 65,535 bytes) before reading it, and its decoder state is one
/// block of about 43 KB (the 32 KiB window and the Huffman tables); then a `BufReader`'s 8 KiB,
/// error messages.
pub const ALLOC_SLACK: usize = 128 << 10;

/// The largest single allocation allowed to a parser given `justified` bytes of input:
/// `ALLOC_FACTOR * justified + ALLOC_SLACK`.
pub fn alloc_bound(justified: usize) -> usize {
    justified
        .saturating_mul(ALLOC_FACTOR)
        .saturating_add(ALLOC_SLACK)
}

thread_local! {
    /// Whether this thread's allocations are being measured.
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    /// The largest allocation of this thread since the measurement started.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: an allocation made while the thread's locals are torn down is not measured.
    let _ = TRACKING.try_with(|on| {
        if on.get() {
            let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
        }
    });
}

/// The system allocator, noting the size of every allocation (and reallocation) that a thread
/// makes inside [`largest_allocation`].
#[derive(Debug)]
pub struct CountingAlloc;

// SAFETY: every method passes its arguments unchanged to `System` and returns what it returns,
// so the allocator contract is `System`'s. The bookkeeping only reads and writes two
// const-initialised thread-locals of `Cell<bool>` and `Cell<usize>`, which never allocate and
// have no destructor, so it cannot re-enter the allocator.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract; passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation of this
        // allocator is `System`'s), as the caller guarantees for this allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as in `dealloc`; the caller upholds `realloc`'s contract for `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` and returns its result with the size of the largest single allocation (or
/// reallocation) this thread made during it; 0 unless [`CountingAlloc`] is the global allocator.
pub fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    /// Ends the measurement even when `f` panics.
    struct Stop;
    impl Drop for Stop {
        fn drop(&mut self) {
            TRACKING.with(|on| on.set(false));
        }
    }
    LARGEST.with(|largest| largest.set(0));
    TRACKING.with(|on| on.set(true));
    let stop = Stop;
    let result = f();
    drop(stop);
    (result, LARGEST.with(Cell::get))
}

/// A binary integer field of a seed file, for edits that know where the header's numbers are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Byte offset in the seed.
    pub offset: usize,
    /// Width in bytes: 1, 2, 4 or 8.
    pub width: usize,
    /// Big-endian (IDX) rather than little-endian (FAISS, npy, safetensors).
    pub big_endian: bool,
}

impl Field {
    /// A little-endian field.
    pub fn le(offset: usize, width: usize) -> Field {
        Field {
            offset,
            width,
            big_endian: false,
        }
    }

    /// A big-endian field.
    pub fn be(offset: usize, width: usize) -> Field {
        Field {
            offset,
            width,
            big_endian: true,
        }
    }
}

/// A valid file to mutate, with the binary fields worth editing as numbers.
#[derive(Clone, Debug)]
pub struct Seed {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// Its header's binary integer fields (none for a text header: its decimal numbers are
    /// found and edited anyway).
    pub fields: Vec<Field>,
}

impl Seed {
    /// A seed whose header is text, or whose fields are not listed.
    pub fn plain(bytes: Vec<u8>) -> Seed {
        Seed {
            bytes,
            fields: Vec::new(),
        }
    }
}

/// Numbers at the edges of the integer types, where size arithmetic overflows or truncates.
const INTERESTING: [u64; 22] = [
    0,
    1,
    2,
    7,
    8,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x1_0000_0001,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX - 7,
    u64::MAX - 1,
    u64::MAX,
];

/// The same as text, for the numbers of text headers (an npy shape, safetensors offsets, JSON).
const INTERESTING_TEXT: [&str; 18] = [
    "0",
    "1",
    "-1",
    "255",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "340282366920938463463374607431768211456",
    "1e308",
    "1e999",
    "0.5",
    "NaN",
];

/// The mutations of one case.
struct Mutator<'c> {
    rng: SplitMix64,
    tokens: &'c [&'c [u8]],
}

impl Mutator<'_> {
    fn below(&mut self, n: usize) -> usize {
        self.rng.below(n as u64) as usize
    }

    fn interesting(&mut self) -> u64 {
        INTERESTING[self.below(INTERESTING.len())]
    }

    /// `value`'s low `width` bytes written at `at` (clipped to the input).
    fn put(bytes: &mut [u8], at: usize, width: usize, big_endian: bool, value: u64) {
        let le = value.to_le_bytes();
        for k in 0..width {
            let byte = if big_endian { le[width - 1 - k] } else { le[k] };
            if let Some(b) = bytes.get_mut(at + k) {
                *b = byte;
            }
        }
    }

    /// A random range `a..b` of `bytes` (`b - a <= 64`).
    fn span(&mut self, len: usize) -> (usize, usize) {
        let a = self.below(len + 1);
        let b = a + self.below((len - a).min(64) + 1);
        (a, b)
    }

    /// Applies one mutation to `bytes`; `fields` are the seed's numeric fields.
    fn mutate_once(&mut self, bytes: &mut Vec<u8>, fields: &[Field]) {
        let len = bytes.len();
        match self.below(11) {
            0 if len > 0 => {
                for _ in 0..1 + self.below(4) {
                    let bit = self.below(8 * len);
                    bytes[bit / 8] ^= 1 << (bit % 8);
                }
            }
            1 if len > 0 => {
                let at = self.below(len);
                bytes[at] = [0, 1, 0x7f, 0x80, 0xfe, 0xff][self.below(6)];
            }
            2 if len > 0 => {
                let width = [2, 4, 8][self.below(3)];
                let (at, value, be) = (self.below(len), self.interesting(), self.below(2) == 0);
                Self::put(bytes, at, width, be, value);
            }
            3 => bytes.truncate(self.below(len + 1)),
            4 => {
                let extra = 1 + self.below(64);
                let fill = self.below(3);
                for _ in 0..extra {
                    let b = match fill {
                        0 => 0,
                        1 => self.rng.next_u64() as u8,
                        _ => b' ',
                    };
                    bytes.push(b);
                }
            }
            5 => {
                let (a, b) = self.span(len);
                let chunk = bytes[a..b].to_vec();
                let at = self.below(len + 1);
                bytes.splice(at..at, chunk);
            }
            6 => {
                let (a, b) = self.span(len);
                bytes.drain(a..b);
            }
            7 => self.edit_number(bytes),
            8 => self.swap_token(bytes),
            9 if !fields.is_empty() => {
                let field = fields[self.below(fields.len())];
                let value = match self.below(3) {
                    0 => self.interesting(),
                    1 => self.rng.below(1 << 12),
                    _ => self.rng.next_u64(),
                };
                Self::put(bytes, field.offset, field.width, field.big_endian, value);
            }
            _ if len > 0 => {
                let at = self.below(len);
                bytes[at] = self.rng.next_u64() as u8;
            }
            _ => bytes.push(self.rng.next_u64() as u8),
        }
    }

    /// Replaces a run of ASCII digits (a number of a text header) with an interesting number.
    fn edit_number(&mut self, bytes: &mut Vec<u8>) {
        let mut runs = Vec::new();
        let mut start = None;
        for (i, b) in bytes.iter().chain(std::iter::once(&b'\0')).enumerate() {
            match (b.is_ascii_digit(), start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    runs.push((s, i));
                    start = None;
                }
                _ => {}
            }
        }
        if runs.is_empty() {
            return;
        }
        let (a, b) = runs[self.below(runs.len())];
        let text = INTERESTING_TEXT[self.below(INTERESTING_TEXT.len())];
        bytes.splice(a..b, text.bytes());
    }

    /// Replaces an occurrence of one of the campaign's tokens (dtype names, keys) with another
    /// token, or inserts a token where there is none.
    fn swap_token(&mut self, bytes: &mut Vec<u8>) {
        if self.tokens.is_empty() {
            return;
        }
        let from = self.tokens[self.below(self.tokens.len())];
        let to = self.tokens[self.below(self.tokens.len())];
        let found = (!from.is_empty())
            .then(|| bytes.windows(from.len()).position(|w| w == from))
            .flatten();
        match found {
            Some(at) => {
                bytes.splice(at..at + from.len(), to.iter().copied());
            }
            None => {
                let at = self.below(bytes.len() + 1);
                bytes.splice(at..at, to.iter().copied());
            }
        }
    }
}

/// A fixed set of mutated inputs for one parser.
#[derive(Clone, Copy, Debug)]
pub struct Campaign<'c> {
    /// The parser's name, for reports.
    pub name: &'c str,
    /// The valid files the cases are mutated from.
    pub seeds: &'c [Seed],
    /// Words of the format worth swapping for one another (dtype names, keys).
    pub tokens: &'c [&'c [u8]],
    /// Number of cases.
    pub cases: usize,
    /// The seed of the whole campaign.
    pub seed: u64,
    /// Makes a length field of the format agree with the text it measures again, after a text
    /// edit moved the text's end ([`repair_npy`], [`repair_safetensors`]); applied to half the
    /// cases, so that the checks behind the length check are reached too.
    pub repair: Option<fn(&mut [u8])>,
}

/// Cases per parser in the test suites (at least; `NHL_FUZZ_CASES` asks for more, [`cases`]).
pub const SUITE_CASES: usize = 100_000;
/// The seed of the test suites' campaigns; each parser's name is mixed in.
pub const SUITE_SEED: u64 = 0x4e48_4c5f_4655_5a5a;

impl<'c> Campaign<'c> {
    /// The test suites' campaign for the parser `name`: [`cases`]`(`[`SUITE_CASES`]`)` cases
    /// from [`SUITE_SEED`] with the name's bytes mixed in (FNV-1a), so that every parser gets
    /// its own fixed sequence.
    pub fn for_suite(
        name: &'c str,
        seeds: &'c [Seed],
        tokens: &'c [&'c [u8]],
        repair: Option<fn(&mut [u8])>,
    ) -> Self {
        let seed = name.bytes().fold(SUITE_SEED, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        Self {
            name,
            seeds,
            tokens,
            cases: cases(SUITE_CASES),
            seed,
            repair,
        }
    }
}

/// Sets the header length of an `.npy` file (version 1, 2 or 3) to end at the header's first
/// newline, where a text edit may have moved it.
pub fn repair_npy(bytes: &mut [u8]) {
    let (start, width) = match bytes.get(6) {
        Some(1) => (10, 2),
        Some(2 | 3) => (12, 4),
        _ => return,
    };
    let Some(newline) = bytes.iter().skip(start).position(|&b| b == b'\n') else {
        return;
    };
    let len = (newline + 1) as u64;
    if width == 2 && len > u64::from(u16::MAX) {
        return;
    }
    Mutator::put(bytes, 8, width, false, len);
}

/// Sets the header length of a safetensors file (the first 8 bytes) to cover its JSON object
/// and the spaces after it, where a text edit may have moved the object's end.
pub fn repair_safetensors(bytes: &mut [u8]) {
    if bytes.get(8) != Some(&b'{') {
        return;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut end = None;
    for (i, &b) in bytes.iter().enumerate().skip(8) {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (false, _, b'"') => in_string = true,
            (false, _, b'{' | b'[') => depth += 1,
            (false, _, b'}' | b']') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    end = Some(i + 1);
                    break;
                }
            }
            _ => {}
        }
    }
    let Some(mut end) = end else {
        return;
    };
    while bytes.get(end) == Some(&b' ') {
        end += 1;
    }
    Mutator::put(bytes, 0, 8, false, (end - 8) as u64);
}

impl Campaign<'_> {
    /// The seed file and the bytes of case `index`: one to three mutations of a seed file, drawn
    /// from a generator seeded with the campaign's seed and `index` alone.
    pub fn case(&self, index: usize) -> (usize, Vec<u8>) {
        let mut rng =
            SplitMix64::new(self.seed ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next_u64();
        let which = rng.below(self.seeds.len() as u64) as usize;
        let seed = &self.seeds[which];
        let mut mutator = Mutator {
            rng,
            tokens: self.tokens,
        };
        let mut bytes = seed.bytes.clone();
        for _ in 0..1 + mutator.below(3) {
            mutator.mutate_once(&mut bytes, &seed.fields);
        }
        if let Some(repair) = self.repair {
            if mutator.below(2) == 0 {
                repair(&mut bytes);
            }
        }
        (which, bytes)
    }
}

/// What a campaign found.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Cases run.
    pub cases: usize,
    /// Cases the parser accepted.
    pub accepted: usize,
    /// Every failure (a seed refused, a panic, an allocation over the bound), with what
    /// reproduces it; the campaign stops after [`MAX_FAILURES`].
    pub failures: Vec<String>,
    /// The largest single allocation of any case, in bytes.
    pub largest_allocation: usize,
    /// The largest ratio of a case's largest allocation to its [`alloc_bound`].
    pub largest_fraction_of_bound: f64,
    /// Seconds the campaign took.
    pub seconds: f64,
}

/// A campaign stops after this many failures (each one prints a panic message).
pub const MAX_FAILURES: usize = 10;

/// Cases per campaign: `default`, or the number in the environment variable
/// `NHL_FUZZ_CASES` (for a longer search than the test suite's; values below `default` are
/// raised to it, so the suite's count is a floor).
pub fn cases(default: usize) -> usize {
    std::env::var("NHL_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .map_or(default, |n| n.max(default))
}

/// The bytes as hex, the first 256 of them.
fn hex(bytes: &[u8]) -> String {
    let shown: String = bytes.iter().take(256).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 256 {
        format!("{shown}...")
    } else {
        shown
    }
}

/// Runs `campaign`: every seed file must be accepted (`parse` returns true), then every case
/// must neither panic nor allocate more than [`alloc_bound`] of `justified(input)` in one piece.
/// `justified` is the input's length for most formats; for a compressed one it may add the bytes
/// the input really inflates to.
pub fn run(
    campaign: &Campaign<'_>,
    justified: impl Fn(&[u8]) -> usize,
    parse: impl Fn(&[u8]) -> bool,
) -> Outcome {
    let start = Instant::now();
    let mut outcome = Outcome::default();
    let (_, probe) = largest_allocation(|| std::hint::black_box(Vec::<u8>::with_capacity(4096)));
    if probe < 4096 {
        outcome.failures.push(
            "CountingAlloc is not the global allocator of this test binary: allocations cannot \
             be measured"
                .into(),
        );
        return outcome;
    }
    for (k, seed) in campaign.seeds.iter().enumerate() {
        if !parse(&seed.bytes) {
            outcome.failures.push(format!(
                "{}: seed file {k} is refused: {}",
                campaign.name,
                hex(&seed.bytes)
            ));
        }
    }
    for index in 0..campaign.cases {
        if outcome.failures.len() >= MAX_FAILURES {
            break;
        }
        let (which, input) = campaign.case(index);
        let result = catch_unwind(AssertUnwindSafe(|| {
            largest_allocation(|| parse(std::hint::black_box(&input)))
        }));
        let reproduce = || {
            format!(
                "{}: case {index} of campaign seed {:#x} (from seed file {which}), {} bytes: {}",
                campaign.name,
                campaign.seed,
                input.len(),
                hex(&input)
            )
        };
        outcome.cases += 1;
        match result {
            Ok((accepted, largest)) => {
                outcome.accepted += usize::from(accepted);
                let bound = alloc_bound(justified(&input));
                outcome.largest_allocation = outcome.largest_allocation.max(largest);
                outcome.largest_fraction_of_bound = outcome
                    .largest_fraction_of_bound
                    .max(largest as f64 / bound as f64);
                if largest > bound {
                    outcome.failures.push(format!(
                        "{}: allocated {largest} bytes at once, over the bound of {bound}",
                        reproduce()
                    ));
                }
            }
            Err(payload) => {
                let what = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                outcome
                    .failures
                    .push(format!("{}: panicked: {what}", reproduce()));
            }
        }
    }
    outcome.seconds = start.elapsed().as_secs_f64();
    outcome
}

/// [`run`]s the campaign, prints its figures and panics with every failure it found: the test
/// suites' check of one parser.
pub fn check(
    campaign: &Campaign<'_>,
    justified: impl Fn(&[u8]) -> usize,
    parse: impl Fn(&[u8]) -> bool,
) {
    let outcome = run(campaign, justified, parse);
    eprintln!(
        "{}: {} cases ({} accepted) in {:.2} s; largest allocation {} bytes, {:.3} of its bound",
        campaign.name,
        outcome.cases,
        outcome.accepted,
        outcome.seconds,
        outcome.largest_allocation,
        outcome.largest_fraction_of_bound
    );
    assert!(
        outcome.failures.is_empty(),
        "{} failures:\n{}",
        outcome.failures.len(),
        outcome.failures.join("\n")
    );
    assert_eq!(outcome.cases, campaign.cases);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_are_fixed_by_the_seed_and_the_index_and_differ_from_the_seed_file() {
        let seeds = [Seed::plain(b"{'shape': (2, 3)}".to_vec())];
        let campaign = Campaign {
            name: "t",
            seeds: &seeds,
            tokens: &[b"shape", b"descr"],
            cases: 200,
            seed: 7,
            repair: None,
        };
        let changed = (0..200)
            .filter(|&i| {
                let (_, a) = campaign.case(i);
                assert_eq!(campaign.case(i).1, a);
                a != seeds[0].bytes
            })
            .count();
        assert!(changed > 150, "{changed} of 200 cases differ from the seed");
        assert_ne!(campaign.case(0).1, campaign.case(1).1);
    }

    #[test]
    fn repairs_make_the_length_fields_measure_the_edited_headers_again() {
        let mut npy = b"\x93NUMPY\x01\x00\x05\x00{'a': (12345,)}\n".to_vec();
        repair_npy(&mut npy);
        assert_eq!(&npy[8..10], &[16, 0]);
        let mut v2 = b"\x93NUMPY\x02\x00\xff\xff\xff\xff{}\nDATA".to_vec();
        repair_npy(&mut v2);
        assert_eq!(&v2[8..12], &[3, 0, 0, 0]);

        let mut st = vec![0u8; 8];
        st.extend(b"{\"a\":{\"s\":[1,2]},\"m\":\"}\\\"\"}  DATA}");
        repair_safetensors(&mut st);
        assert_eq!(u64::from_le_bytes(st[..8].try_into().unwrap()), 29);
    }

    #[test]
    fn the_bound_grows_with_the_input() {
        assert_eq!(alloc_bound(0), ALLOC_SLACK);
        assert_eq!(alloc_bound(100), 6400 + 131_072);
        assert_eq!(alloc_bound(usize::MAX), usize::MAX);
    }
}

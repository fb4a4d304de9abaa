//! The instruction-set paths of the Hamming kernels, and which of them this CPU can run.

use std::sync::atomic::{AtomicU8, Ordering};

/// An instruction-set path of the Hamming kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// `u64::count_ones` compiled for the baseline target: the reference every path must equal.
    Portable,
    /// x86-64 scalar `popcnt`.
    Popcnt,
    /// x86-64 AVX2: nibble-table popcount (`vpshufb`) summed per 64-bit lane with `vpsadbw`;
    /// the kNN threshold scan sums per-query nibble tables over byte-sliced codes (fast scan).
    Avx2,
    /// x86-64 AVX-512F + VPOPCNTDQ: eight 64-bit popcounts per instruction.
    Avx512Vpopcntdq,
    /// aarch64 NEON: `cnt` per byte and pairwise widening adds.
    Neon,
}

const UNSET: u8 = u8::MAX;
static BEST: AtomicU8 = AtomicU8::new(UNSET);

impl Isa {
    /// Every path, in order of preference (best first), including those this CPU lacks.
    pub const ALL: [Isa; 5] = [
        Isa::Avx512Vpopcntdq,
        Isa::Avx2,
        Isa::Neon,
        Isa::Popcnt,
        Isa::Portable,
    ];

    /// The short name used in bench ids and reports.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Popcnt => "popcnt",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vpopcntdq => "avx512vpopcntdq",
            Isa::Neon => "neon",
        }
    }

    /// Parse a name produced by [`Isa::name`].
    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|isa| isa.name() == name)
    }

    /// Whether this CPU can run the path.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Popcnt => std::arch::is_x86_feature_detected!("popcnt"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("popcnt")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vpopcntdq => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
                    && std::arch::is_x86_feature_detected!("popcnt")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every path this CPU can run, best first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
    }

    /// The best available path. Detected on the first call and cached in an atomic, so the
    /// feature probes run once per process.
    pub fn best() -> Isa {
        let cached = BEST.load(Ordering::Relaxed);
        if let Some(&isa) = Isa::ALL.get(usize::from(cached)) {
            return isa;
        }
        let index = Isa::ALL
            .iter()
            .position(|i| i.is_available())
            .unwrap_or(Isa::ALL.len() - 1);
        // A race only stores the same value twice.
        BEST.store(index as u8, Ordering::Relaxed);
        Isa::ALL[index]
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

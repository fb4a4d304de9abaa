//! The x86-64 paths: scalar `popcnt` here, AVX2 and AVX-512 in their own files. Each is a set of
//! `#[target_feature]` entry points ([`KernelFns`]) that [`crate::Kernel::new`] installs only
//! once the CPU has been checked for their features.

pub(super) mod avx2;
pub(super) mod avx512;

use super::portable;
use super::raw::{KernelFns, RawCodes};

/// The scalar `popcnt` path: the portable loops, compiled with `popcnt` enabled.
pub(super) const FNS: KernelFns = KernelFns {
    scan,
    pair,
    scan32,
    filter: None,
};

/// [`portable::distance`] with `popcnt`; the pair distance of every x86-64 path.
#[target_feature(enable = "popcnt")]
pub(super) unsafe fn pair(a: &[u64], b: &[u64], mask: u64) -> u32 {
    portable::distance(a, b, mask)
}

#[target_feature(enable = "popcnt")]
unsafe fn scan32(q: u32, db: &[u32], out: &mut [u32]) {
    portable::scan32(q, db, out)
}

#[target_feature(enable = "popcnt")]
unsafe fn scan(q: &[u64], codes: RawCodes<'_>, out: &mut [u32]) {
    portable::scan(q, codes, out)
}

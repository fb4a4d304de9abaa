//! The instruction sets that the CPU backend's vectorised loops are compiled for. Each such loop
//! has a baseline build and, on x86-64, an AVX2 build of one `#[inline(always)]` body, and takes
//! an [`Isa`] saying which to run: the backend always passes [`Isa::best`], and the tests
//! (`isa_bits`) pass each available one to check that the builds give the same bits. They do for
//! every value but NaN: where two NaNs meet, which one an operation returns depends on operand
//! order, which the compiler may choose differently per build, so a NaN's sign and payload
//! (which Rust leaves unspecified) may differ.

/// An instruction set a loop can run on. A value that says AVX2 is only made after detecting
/// AVX2 on the running CPU, so running an AVX2 build for it is sound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Isa(Kind);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Isa {
    /// The target's baseline (SSE2 on x86-64), which every CPU of the target runs.
    pub(crate) const BASELINE: Isa = Isa(Kind::Baseline);

    /// AVX2, when the running CPU has it (detection is cached by `std`).
    pub(crate) fn avx2() -> Option<Isa> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Some(Isa(Kind::Avx2));
        }
        None
    }

    /// The widest instruction set the running CPU has: the one the backend runs.
    pub(crate) fn best() -> Isa {
        Self::avx2().unwrap_or(Self::BASELINE)
    }

    /// True for AVX2 (which implies the CPU has it).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn is_avx2(self) -> bool {
        self.0 == Kind::Avx2
    }
}

//! The element types the kernels run on: `f32` everywhere, `f64` on the CPU reference for
//! finite-difference checks.

/// A floating-point element type of the CPU backend.
pub trait Real:
    Copy
    + Send
    + Sync
    + Default
    + PartialOrd
    + std::fmt::Debug
    + std::fmt::Display
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
    + std::iter::Sum
    + bytemuck::Pod
    + 'static
{
    /// Converts from `f64` (rounding for `f32`).
    fn from_f64(x: f64) -> Self;
    /// Converts to `f64` exactly.
    fn to_f64(self) -> f64;
    /// `e^self`.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// `ln(1 + self)`, accurate near zero.
    fn ln_1p(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// Hyperbolic tangent for loops the compiler should vectorise: `f32` uses the branch-free
    /// [`crate::cpu::lanes::tanh`] (within 2 ulp), `f64` the exact library function, so the `f64`
    /// reference of every op that uses it stays exact.
    fn tanh_lanes(self) -> Self;
    /// Natural logarithm for vectorised loops, as [`Real::tanh_lanes`] is for `tanh`.
    fn ln_lanes(self) -> Self;
    /// `e^self` for `self <= 0` in vectorised loops: `f32` uses [`crate::cpu::lanes::exp_neg`],
    /// `f64` the exact library function.
    fn exp_neg_lanes(self) -> Self;
    /// `self * a + b` with one rounding (a fused multiply-add): one instruction in a loop built
    /// for FMA, a library call elsewhere.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
    /// The larger of two values; when one of them is NaN, the other (as `f32::max`).
    fn max(self, other: Self) -> Self;
    /// The smaller of two values; when one of them is NaN, the other (as `f32::min`).
    fn min(self, other: Self) -> Self;
    /// `C = A B` (`m x k` by `k x n`) with explicit row and column strides, by `sgemm` or
    /// `dgemm` of `matrixmultiply`. `C` is overwritten and never read, so it may be
    /// uninitialised.
    ///
    /// # Safety
    /// The pointers and strides must describe valid matrices of the stated sizes, `c` writable.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );

    /// Zero.
    fn zero() -> Self {
        Self::from_f64(0.0)
    }
    /// One.
    fn one() -> Self {
        Self::from_f64(1.0)
    }
}

macro_rules! impl_real {
    ($t:ty, $gemm:path, $tanh_lanes:path, $ln_lanes:path, $exp_neg_lanes:path) => {
        impl Real for $t {
            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline(always)]
            fn tanh_lanes(self) -> Self {
                $tanh_lanes(self)
            }
            #[inline(always)]
            fn ln_lanes(self) -> Self {
                $ln_lanes(self)
            }
            #[inline(always)]
            fn exp_neg_lanes(self) -> Self {
                $exp_neg_lanes(self)
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                <$t>::mul_add(self, a, b)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            #[inline(always)]
            fn min(self, other: Self) -> Self {
                <$t>::min(self, other)
            }
            unsafe fn gemm(
                m: usize,
                k: usize,
                n: usize,
                a: *const Self,
                rsa: isize,
                csa: isize,
                b: *const Self,
                rsb: isize,
                csb: isize,
                c: *mut Self,
                rsc: isize,
                csc: isize,
            ) {
                // SAFETY: the caller guarantees the matrices are valid for these sizes and strides.
                unsafe { $gemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, 0.0, c, rsc, csc) }
            }
        }
    };
}

impl_real!(
    f32,
    matrixmultiply::sgemm,
    crate::cpu::lanes::tanh,
    crate::cpu::lanes::ln,
    crate::cpu::lanes::exp_neg
);
impl_real!(f64, matrixmultiply::dgemm, f64::tanh, f64::ln, f64::exp);

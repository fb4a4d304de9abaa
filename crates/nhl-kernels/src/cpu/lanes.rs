//! `f32` transcendental functions written without branches or library calls, so that a loop
//! over a slice compiles to vector instructions (libm's `tanhf` and `logf` are opaque calls that
//! keep such a loop scalar). Each one is a fixed sequence of IEEE additions, multiplications,
//! divisions and selects, so its result does not depend on the instruction set the loop is
//! compiled for: the CPU backend stays bit-reproducible across machines.
//!
//! Accuracy (checked against `f64` in the tests): within 2 ulp of the exact value.

use std::f32::consts::{LOG2_E, SQRT_2};

/// `ln 2` split so that `n * LN2_HI` is exact for the exponents that occur (|n| < 2^9).
const LN2_HI: f32 = 0.693_359_4;
/// `ln 2 - LN2_HI`.
const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding and subtracting `1.5 * 2^23` rounds an `f32` of magnitude below 2^22 to an integer
/// (ties to even) with plain arithmetic.
const ROUND_MAGIC: f32 = 12_582_912.0;
/// Below this magnitude `tanh` uses its odd Taylor polynomial; above, the exponential form,
/// where `1 - e^(-2|x|)` no longer cancels.
const TANH_SERIES_LIMIT: f32 = 0.55;

/// `e^y` for `y` in `[-87, 0]` (the caller clamps): `y = n ln 2 + r` with `|r| <= ln 2 / 2`
/// (Cody-Waite), `e^r` by its degree-7 Taylor polynomial (truncation below 6e-9 relative), then
/// the exponent of `2^n` written into the bits (`n >= -126`, so the result is a normal number).
/// `n` is read from the bits of `shifted = n + 1.5 * 2^23`, whose low bits hold `n` (two's
/// complement): integer operations that vectorise, where a float-to-integer cast (which Rust
/// defines to saturate) is done one lane at a time.
#[inline(always)]
fn exp_nonpositive(y: f32) -> f32 {
    let shifted = y * LOG2_E + ROUND_MAGIC;
    let n = shifted - ROUND_MAGIC;
    let r = (y - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    p * pow2(shifted)
}

/// `2^n` for an integer `n` in `[-126, 127]` given as `shifted = n + ROUND_MAGIC`: the biased
/// exponent `n + 127` is the low bits of `shifted` less those of `ROUND_MAGIC`, plus 127.
#[inline(always)]
fn pow2(shifted: f32) -> f32 {
    let biased = shifted
        .to_bits()
        .wrapping_sub(ROUND_MAGIC.to_bits())
        .wrapping_add(127);
    f32::from_bits(biased << 23)
}

/// `e^y` for `y <= 0`, clamped below at -87 (where `e^y` is below the smallest normal `f32`
/// and the result is flushed to about 1.6e-38): the exponential of the stable forms
/// `softplus(x) = max(x, 0) + ln(1 + e^(-|x|))` and `sigmoid`.
#[inline(always)]
pub fn exp_neg(y: f32) -> f32 {
    exp_nonpositive(y.max(-87.0))
}

/// Hyperbolic tangent. For `|x| < 0.55` the odd Taylor series to `x^19` (truncation below 1e-9
/// relative); above, `(1 - e) / (1 + e)` with `e = e^(-2|x|) <= 1/3`, which saturates to 1 in
/// `f32` long before the clamp at `2|x| = 87`. The sign is copied from `x`; NaN stays NaN.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let a = x.abs();
    let s = a * a;
    let series = a + a
        * s
        * (-1.0 / 3.0
            + s * (2.0 / 15.0
                + s * (-17.0 / 315.0
                    + s * (62.0 / 2835.0
                        + s * (-1382.0 / 155_925.0
                            + s * (21_844.0 / 6_081_075.0
                                + s * (-929_569.0 / 638_512_875.0
                                    + s * (6_404_582.0 / 10_854_718_875.0
                                        + s * (-443_861_162.0 / 1_856_156_927_625.0)))))))));
    let e = exp_nonpositive((-2.0 * a).max(-87.0));
    let large = (1.0 - e) / (1.0 + e);
    let t = if a < TANH_SERIES_LIMIT { series } else { large };
    let signed = t.copysign(x);
    if x.is_nan() {
        x
    } else {
        signed
    }
}

/// Natural logarithm of `x >= 0`: `x = m 2^e` with `m` in `[sqrt(1/2), sqrt(2))`, then
/// `ln m = 2 atanh(s)` with `s = (m - 1) / (m + 1)`, `|s| <= 0.172`, by its odd series to `s^11`
/// (truncation below 6e-11 relative), plus `e ln 2` in two parts. Subnormals are scaled by 2^25
/// first. `ln 0 = -inf`, `ln inf = inf`, negative or NaN input gives NaN.
#[inline(always)]
pub fn ln(x: f32) -> f32 {
    let subnormal = x < f32::MIN_POSITIVE;
    let scaled = if subnormal { x * 33_554_432.0 } else { x };
    let bits = scaled.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - if subnormal { 152 } else { 127 };
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let high = m > SQRT_2;
    m = if high { m * 0.5 } else { m };
    e += high as i32;
    let s = (m - 1.0) / (m + 1.0);
    let z = s * s;
    let odd =
        z * (1.0 / 3.0 + z * (1.0 / 5.0 + z * (1.0 / 7.0 + z * (1.0 / 9.0 + z * (1.0 / 11.0)))));
    let ef = e as f32;
    let value = ef * LN2_HI + ((2.0 * s + 2.0 * s * odd) + ef * LN2_LO);
    if x == 0.0 {
        f32::NEG_INFINITY
    } else if x == f32::INFINITY {
        x
    } else if x.is_nan() || x < 0.0 {
        f32::NAN
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// Distance in units in the last place between an `f32` result and the exact value,
    /// measured at the exact value's `f32` spacing.
    fn ulps(got: f32, exact: f64) -> f64 {
        let rounded = exact as f32;
        let spacing = (f32::from_bits(rounded.abs().to_bits() + 1) - rounded.abs()) as f64;
        (got as f64 - exact).abs() / spacing
    }

    fn samples() -> Vec<f32> {
        let mut rng = SplitMix64::new(41);
        let mut xs: Vec<f32> = (0..400_000)
            .map(|i| {
                // Log-uniform magnitudes from 1e-30 to 1e2 and both signs, plus a dense grid
                // around the series/exponential switch and the saturation region.
                let u = rng.next_f64();
                let mag = if i % 2 == 0 {
                    10f64.powf(-30.0 + 32.0 * u)
                } else {
                    20.0 * u
                };
                let sign = if rng.next_f64() < 0.5 { -1.0 } else { 1.0 };
                (sign * mag) as f32
            })
            .collect();
        xs.extend((0..2000).map(|i| 0.5 + i as f32 * 1e-4));
        xs.extend([
            0.0,
            -0.0,
            TANH_SERIES_LIMIT,
            f32::from_bits(TANH_SERIES_LIMIT.to_bits() - 1),
            43.5,
            44.0,
            1e-45,
            f32::MIN_POSITIVE,
            f32::MAX,
        ]);
        xs
    }

    #[test]
    fn tanh_is_within_two_ulp_of_f64() {
        let mut worst = (0.0, 0.0f32);
        for x in samples() {
            let err = ulps(tanh(x), (x as f64).tanh());
            if err > worst.0 {
                worst = (err, x);
            }
        }
        assert!(worst.0 <= 2.0, "tanh({}) is {} ulp off", worst.1, worst.0);
        assert!(tanh(f32::NAN).is_nan());
        assert_eq!(tanh(f32::INFINITY), 1.0);
        assert_eq!(tanh(f32::NEG_INFINITY), -1.0);
        assert_eq!(tanh(-0.0).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn pow2_reads_the_exponent_from_the_shifted_bits() {
        for n in -126..=127 {
            let shifted = n as f32 + ROUND_MAGIC;
            assert_eq!(pow2(shifted), 2f32.powi(n), "2^{n}");
        }
    }

    #[test]
    fn exp_neg_is_within_two_ulp_of_f64() {
        let mut worst = (0.0, 0.0f32);
        for y in samples()
            .into_iter()
            .map(|x| -x.abs())
            .filter(|&y| y > -87.0)
        {
            let err = ulps(exp_neg(y), (y as f64).exp());
            if err > worst.0 {
                worst = (err, y);
            }
        }
        assert!(worst.0 <= 2.0, "exp({}) is {} ulp off", worst.1, worst.0);
        assert_eq!(exp_neg(0.0), 1.0);
        assert!(exp_neg(-1000.0) < 2e-38 && exp_neg(-1000.0) >= 0.0);
    }

    #[test]
    fn ln_is_within_two_ulp_of_f64() {
        let mut worst = (0.0, 0.0f32);
        for x in samples().into_iter().map(f32::abs).filter(|&x| x > 0.0) {
            let err = ulps(ln(x), (x as f64).ln());
            if err > worst.0 {
                worst = (err, x);
            }
        }
        assert!(worst.0 <= 2.0, "ln({}) is {} ulp off", worst.1, worst.0);
        // Every subnormal binade, and the values that tanh-based probabilities produce.
        for k in 0..23 {
            let x = f32::from_bits(1 << k);
            assert!(ulps(ln(x), (x as f64).ln()) <= 3.0, "ln({x:e})");
        }
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln(0.0), f32::NEG_INFINITY);
        assert_eq!(ln(f32::INFINITY), f32::INFINITY);
        assert!(ln(-1.0).is_nan() && ln(f32::NAN).is_nan());
        assert_eq!(ln(2.0), std::f32::consts::LN_2);
    }
}

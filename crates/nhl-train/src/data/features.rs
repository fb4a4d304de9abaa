//! How stored feature values become the model's inputs: one rule, [`INPUT_SCALING`], applied by
//! every loader of this crate when it trains and recorded in the checkpoint, so that encoding new
//! items later reads them exactly as training read its own.

use nhl_index::npy::NpyDtype;

/// A rule that turns stored feature values into `f32` model inputs. Checkpoints record it under
/// the metadata key `input_scaling` by its [`name`](InputScaling::name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputScaling {
    /// `uint8` values `v` become `v / 255` (pixel bytes to `[0, 1]`, as the image protocols read
    /// them); `float16`, `float32` and `float64` values are kept, rounded to the nearest `f32`
    /// (`float16` is exact). Name: `uint8/255`.
    Uint8Unit,
}

/// The rule this crate's loaders apply to training data, and that `cargo xtask train` records.
pub const INPUT_SCALING: InputScaling = InputScaling::Uint8Unit;

impl InputScaling {
    /// Every rule, for messages that list them.
    pub const ALL: [InputScaling; 1] = [InputScaling::Uint8Unit];

    /// The name a checkpoint stores.
    pub fn name(self) -> &'static str {
        match self {
            InputScaling::Uint8Unit => "uint8/255",
        }
    }

    /// The rule called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<InputScaling> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The input for a stored `uint8` value.
    pub fn u8(self, v: u8) -> f32 {
        match self {
            InputScaling::Uint8Unit => f32::from(v) / 255.0,
        }
    }

    /// The input for a stored IEEE half-precision value, given as its bits.
    pub fn f16(self, bits: u16) -> f32 {
        match self {
            InputScaling::Uint8Unit => f16_to_f32(bits),
        }
    }

    /// The input for a stored `float64` value.
    pub fn f64(self, v: f64) -> f32 {
        match self {
            InputScaling::Uint8Unit => v as f32,
        }
    }

    /// The input for a stored `float32` value.
    pub fn f32(self, v: f32) -> f32 {
        match self {
            InputScaling::Uint8Unit => v,
        }
    }

    /// Appends to `out` the inputs for `raw`, little-endian elements of `dtype` (one of the
    /// feature dtypes: `uint8`, `float16`, `float32`, `float64`; see [`is_feature_dtype`]).
    /// Returns false, appending nothing, for any other dtype.
    pub fn extend_from_le(self, dtype: NpyDtype, raw: &[u8], out: &mut Vec<f32>) -> bool {
        match dtype {
            NpyDtype::U8 => out.extend(raw.iter().map(|&v| self.u8(v))),
            NpyDtype::F16 => out.extend(
                raw.chunks_exact(2)
                    .map(|c| self.f16(u16::from_le_bytes([c[0], c[1]]))),
            ),
            NpyDtype::F32 => out.extend(
                raw.chunks_exact(4)
                    .map(|c| self.f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
            ),
            NpyDtype::F64 => out.extend(raw.chunks_exact(8).map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                self.f64(f64::from_le_bytes(b))
            })),
            NpyDtype::I32 | NpyDtype::I64 => return false,
        }
        true
    }
}

/// True for the dtypes features may have: `uint8`, `float16`, `float32` and `float64`.
pub fn is_feature_dtype(dtype: NpyDtype) -> bool {
    matches!(
        dtype,
        NpyDtype::U8 | NpyDtype::F16 | NpyDtype::F32 | NpyDtype::F64
    )
}

/// IEEE half-precision bits to f32 (exact: every f16 is an f32).
fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    match exp {
        // Zero and subnormals: man * 2^-24.
        0 => sign * man as f32 * f32::from_bits(0x3380_0000),
        0x1f => f32::from_bits(u32::from(h & 0x8000) << 16 | 0x7f80_0000 | man << 13),
        _ => f32::from_bits(u32::from(h & 0x8000) << 16 | (exp + 112) << 23 | man << 13),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_none() {
        for s in InputScaling::ALL {
            assert_eq!(InputScaling::from_name(s.name()), Some(s));
        }
        assert_eq!(InputScaling::from_name("uint8/256"), None);
    }

    /// The bytes of every feature dtype give the values the in-memory rules give.
    #[test]
    fn raw_bytes_convert_as_the_values_do() {
        let s = INPUT_SCALING;
        let mut out = Vec::new();
        assert!(s.extend_from_le(NpyDtype::U8, &[0, 51, 255], &mut out));
        assert_eq!(out, [0.0, 0.2, 1.0]);
        out.clear();
        // 1.0, -2.0, the smallest subnormal and +inf in half precision.
        let halves = [0x3c00u16, 0xc000, 0x0001, 0x7c00];
        let raw: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
        assert!(s.extend_from_le(NpyDtype::F16, &raw, &mut out));
        assert_eq!(out, [1.0, -2.0, 2f32.powi(-24), f32::INFINITY]);
        out.clear();
        let raw: Vec<u8> = [0.1f64, -3.5]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert!(s.extend_from_le(NpyDtype::F64, &raw, &mut out));
        assert_eq!(out, [0.1f32, -3.5]);
        out.clear();
        let raw: Vec<u8> = [0.3f32, -7.25]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert!(s.extend_from_le(NpyDtype::F32, &raw, &mut out));
        assert_eq!(out, [0.3f32, -7.25]);
        assert!(!s.extend_from_le(NpyDtype::I32, &[0; 4], &mut out));
        assert_eq!(out.len(), 2);
    }
}

//! The one registry of WGSL sources. Every shader is compiled into the binary with
//! `include_str!` (no run-time file reads), behind the shared `shaders/prologue.wgsl` (the
//! parameter binding, grid indexing, the workgroup tree sum, the stable tanh) joined at compile
//! time with `concat!`, and specialised only through WGSL `override` constants, whose values are
//! listed here so that the naga test checks every specialisation the GPU backend builds.

use crate::backend::{Binary, Unary};

/// A WGSL shader family, one file under `shaders/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    /// `matmul.wgsl`: tiled `C = op(A) op(B) (+ bias)`.
    Matmul,
    /// `elementwise.wgsl`: unary and binary ops, their backwards, fill.
    Elementwise,
    /// `reduce.wgsl`: sums over all, rows and columns.
    Reduce,
    /// `rows.wgsl`: row normalisation, column slices, prefix adds (scaled and weighted),
    /// gather / scatter-add / set of rows.
    Rows,
    /// `adam.wgsl`: the Adam step.
    Adam,
    /// `loss.wgsl`: the fused hashing ops: the per-length objectives (CSQ, SP distillation)
    /// with their gradients, the prefix pair dots and the dominance weights.
    Loss,
    /// `pairs.wgsl`: the pairwise objectives, against a memory bank (DSH, DHN, DBDH, DPSH,
    /// MDSH's pair term) and DTSH's triplets within the batch.
    Pairs,
}

impl Shader {
    /// Every shader in the registry.
    pub const fn all() -> [Shader; 7] {
        [
            Shader::Matmul,
            Shader::Elementwise,
            Shader::Reduce,
            Shader::Rows,
            Shader::Adam,
            Shader::Loss,
            Shader::Pairs,
        ]
    }

    /// The file name under `shaders/`, for labels and messages.
    pub const fn file_name(self) -> &'static str {
        match self {
            Shader::Matmul => "matmul.wgsl",
            Shader::Elementwise => "elementwise.wgsl",
            Shader::Reduce => "reduce.wgsl",
            Shader::Rows => "rows.wgsl",
            Shader::Adam => "adam.wgsl",
            Shader::Loss => "loss.wgsl",
            Shader::Pairs => "pairs.wgsl",
        }
    }

    /// The WGSL source the GPU backend compiles: `prologue.wgsl`, then the family's own file.
    pub const fn source(self) -> &'static str {
        // The prologue and one file of `shaders/`, joined at compile time.
        macro_rules! with_prologue {
            ($file:literal) => {
                concat!(
                    include_str!("../../../shaders/prologue.wgsl"),
                    include_str!(concat!("../../../shaders/", $file))
                )
            };
        }
        match self {
            Shader::Matmul => with_prologue!("matmul.wgsl"),
            Shader::Elementwise => with_prologue!("elementwise.wgsl"),
            Shader::Reduce => with_prologue!("reduce.wgsl"),
            Shader::Rows => with_prologue!("rows.wgsl"),
            Shader::Adam => with_prologue!("adam.wgsl"),
            Shader::Loss => with_prologue!("loss.wgsl"),
            Shader::Pairs => with_prologue!("pairs.wgsl"),
        }
    }

    /// Every override constant of the shader with every value the backend sets it to; the
    /// specialisations the backend builds are drawn from the product of these sets.
    pub const fn overrides(self) -> &'static [(&'static str, &'static [f64])] {
        const BOOLS: &[f64] = &[0.0, 1.0];
        const OPS: &[f64] = &[
            0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0,
        ];
        const SLABS: &[f64] = &[crate::hashing::pairs_gpu::SLAB as f64];
        match self {
            Shader::Matmul => &[("TRANS_A", BOOLS), ("TRANS_B", BOOLS), ("HAS_BIAS", BOOLS)],
            Shader::Elementwise => &[("OP", OPS)],
            Shader::Pairs => &[("HASHNET", BOOLS), ("SLAB", SLABS)],
            Shader::Reduce | Shader::Rows | Shader::Adam | Shader::Loss => &[],
        }
    }
}

/// The `OP` code of a unary op in `elementwise.wgsl`.
pub const fn unary_code(op: Unary) -> u32 {
    match op {
        Unary::Relu => 0,
        Unary::Tanh => 1,
        Unary::Abs => 2,
        Unary::Sign => 3,
        Unary::Exp => 4,
        Unary::Log => 5,
        Unary::Softplus => 6,
        Unary::LogCosh => 7,
        Unary::Square => 8,
        Unary::Sigmoid => 9,
        Unary::Scale(_) => 10,
        Unary::AddScalar(_) => 11,
        Unary::Clamp { .. } => 12,
        Unary::Sqrt => 13,
    }
}

/// The `OP` code of a binary op in `elementwise.wgsl`.
pub const fn binary_code(op: Binary) -> u32 {
    match op {
        Binary::Add => 0,
        Binary::Sub => 1,
        Binary::Mul => 2,
        Binary::Div => 3,
        Binary::Bce => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_code_is_a_listed_override_value() {
        let ops = Shader::Elementwise.overrides()[0].1;
        let unary = [
            Unary::Relu,
            Unary::Tanh,
            Unary::Abs,
            Unary::Sign,
            Unary::Exp,
            Unary::Log,
            Unary::Softplus,
            Unary::LogCosh,
            Unary::Square,
            Unary::Sigmoid,
            Unary::Scale(2.0),
            Unary::AddScalar(1.0),
            Unary::Clamp { lo: -1.0, hi: 1.0 },
            Unary::Sqrt,
        ];
        for op in unary {
            assert!(ops.contains(&(unary_code(op) as f64)), "{op:?}");
        }
        for op in [
            Binary::Add,
            Binary::Sub,
            Binary::Mul,
            Binary::Div,
            Binary::Bce,
        ] {
            assert!(ops.contains(&(binary_code(op) as f64)), "{op:?}");
        }
    }
}

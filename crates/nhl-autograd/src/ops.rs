//! Named shorthands for the ops losses are written with; each is one recorded tape op (or two,
//! for means), so every gradient comes from the rules in [`crate::tape`].

use nhl_kernels::{Backend, Binary, Reduce, Unary};

use crate::error::AutogradError;
use crate::tape::{Tape, Tensor};

type R<B> = Result<Tensor<B>, AutogradError>;

impl<B: Backend> Tape<'_, B> {
    /// `a + b` (`b` broadcast).
    pub fn add(&self, a: &Tensor<B>, b: &Tensor<B>) -> R<B> {
        self.binary(Binary::Add, a, b)
    }
    /// `a - b` (`b` broadcast).
    pub fn sub(&self, a: &Tensor<B>, b: &Tensor<B>) -> R<B> {
        self.binary(Binary::Sub, a, b)
    }
    /// `a * b` elementwise (`b` broadcast).
    pub fn mul(&self, a: &Tensor<B>, b: &Tensor<B>) -> R<B> {
        self.binary(Binary::Mul, a, b)
    }
    /// `a / b` elementwise (`b` broadcast).
    pub fn div(&self, a: &Tensor<B>, b: &Tensor<B>) -> R<B> {
        self.binary(Binary::Div, a, b)
    }
    /// Binary cross-entropy of probabilities `p` against targets `t`, logs clamped at -100.
    pub fn bce(&self, p: &Tensor<B>, t: &Tensor<B>) -> R<B> {
        self.binary(Binary::Bce, p, t)
    }
    /// `alpha * x`.
    pub fn scale(&self, x: &Tensor<B>, alpha: f64) -> R<B> {
        self.unary(Unary::Scale(alpha), x)
    }
    /// `x + c`.
    pub fn add_scalar(&self, x: &Tensor<B>, c: f64) -> R<B> {
        self.unary(Unary::AddScalar(c), x)
    }
    /// `max(x, 0)`.
    pub fn relu(&self, x: &Tensor<B>) -> R<B> {
        self.unary(Unary::Relu, x)
    }
    /// `tanh x`.
    pub fn tanh(&self, x: &Tensor<B>) -> R<B> {
        self.unary(Unary::Tanh, x)
    }
    /// `|x|`.
    pub fn abs(&self, x: &Tensor<B>) -> R<B> {
        self.unary(Unary::Abs, x)
    }
    /// `sign x` (no gradient).
    pub fn sign(&self, x: &Tensor<B>) -> R<B> {
        self.unary(Unary::Sign, x)
    }
    /// `e^x`.
    pub fn exp(&self, x: &Tensor<B>) -> R<B> {
        self.unary(Unary::Exp, x)
    }
    /// `ln x`.
    pub fn log(&self, x: &Tensor<B>) -> R<B> {
        self.unary(Unary::Log, x)
    }
    /// `ln(1 + e^x)`, stable.
    pub fn softplus(&self, x: &Tensor<B>) -> R<B> {
        self.unary(Unary::Softplus, x)
    }
    /// `ln cosh x`, stable.
    pub fn log_cosh(&self, x: &Tensor<B>) -> R<B> {
        self.unary(Unary::LogCosh, x)
    }
    /// `x^2`.
    pub fn square(&self, x: &Tensor<B>) -> R<B> {
        self.unary(Unary::Square, x)
    }
    /// `1 / (1 + e^-x)`.
    pub fn sigmoid(&self, x: &Tensor<B>) -> R<B> {
        self.unary(Unary::Sigmoid, x)
    }
    /// `sqrt x`.
    pub fn sqrt(&self, x: &Tensor<B>) -> R<B> {
        self.unary(Unary::Sqrt, x)
    }
    /// `min(max(x, lo), hi)`.
    pub fn clamp(&self, x: &Tensor<B>, lo: f64, hi: f64) -> R<B> {
        self.unary(Unary::Clamp { lo, hi }, x)
    }
    /// Sum of all elements (`1 x 1`).
    pub fn sum_all(&self, x: &Tensor<B>) -> R<B> {
        self.sum(Reduce::All, x)
    }
    /// Mean of all elements (`1 x 1`).
    pub fn mean_all(&self, x: &Tensor<B>) -> R<B> {
        let n = x.shape().len().max(1) as f64;
        self.scale(&self.sum(Reduce::All, x)?, 1.0 / n)
    }
    /// Sum of each row (`rows x 1`).
    pub fn row_sums(&self, x: &Tensor<B>) -> R<B> {
        self.sum(Reduce::RowSums, x)
    }
    /// Sum of each column (`1 x cols`).
    pub fn col_sums(&self, x: &Tensor<B>) -> R<B> {
        self.sum(Reduce::ColSums, x)
    }
    /// Mean of each row (`rows x 1`).
    pub fn row_means(&self, x: &Tensor<B>) -> R<B> {
        let n = x.shape().cols.max(1) as f64;
        self.scale(&self.sum(Reduce::RowSums, x)?, 1.0 / n)
    }
    /// `A B^T`, e.g. the batch Gram matrix `U U^T` when `b` is `a`.
    pub fn matmul_nt(&self, a: &Tensor<B>, b: &Tensor<B>) -> R<B> {
        self.matmul(a, false, b, true, None)
    }
}

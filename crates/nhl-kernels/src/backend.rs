//! The narrow backend trait that training code is written against once.
//!
//! Every tensor is a dense row-major matrix (`rows x cols`); a scalar is `1 x 1`, a row vector
//! `1 x n`. That is all a hashing trainer needs, and it keeps every kernel a plain 2-D loop.
//!
//! Two implementations exist: [`crate::cpu::CpuBackend`] (plain Rust with rayon, generic over
//! `f32`/`f64`; it is also the reference every GPU result is checked against) and
//! [`crate::gpu::GpuBackend`] (wgpu + hand-written WGSL, `f32`).

use crate::error::KernelError;
use crate::real::Real;

/// Shape of a dense row-major matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
}

impl Shape {
    /// A `rows x cols` shape.
    pub const fn new(rows: usize, cols: usize) -> Self {
        Self { rows, cols }
    }

    /// The `1 x 1` shape of a scalar.
    pub const fn scalar() -> Self {
        Self { rows: 1, cols: 1 }
    }

    /// Number of elements, `rows * cols`.
    pub const fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// True when the shape holds no element.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when `other` broadcasts onto `self` in a binary op: the same shape, a `1 x cols` row,
    /// a `rows x 1` column or a `1 x 1` scalar.
    pub fn accepts_broadcast(&self, other: Shape) -> bool {
        (other.rows == self.rows || other.rows == 1) && (other.cols == self.cols || other.cols == 1)
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {}]", self.rows, self.cols)
    }
}

/// The `(m, k, n)` of `op(A) op(B)` (+ a `1 x n` bias), or a shape error naming both operands.
pub(crate) fn matmul_dims(
    a: Shape,
    trans_a: bool,
    b: Shape,
    trans_b: bool,
    bias: Option<Shape>,
) -> Result<(usize, usize, usize), KernelError> {
    let (m, ka) = if trans_a {
        (a.cols, a.rows)
    } else {
        (a.rows, a.cols)
    };
    let (kb, n) = if trans_b {
        (b.cols, b.rows)
    } else {
        (b.rows, b.cols)
    };
    if ka != kb {
        return Err(KernelError::Shape {
            op: "matmul",
            detail: format!(
                "op(A) is [{m}, {ka}] (A {a}, transposed: {trans_a}) but op(B) is [{kb}, {n}] (B {b}, transposed: {trans_b})"
            ),
        });
    }
    match bias {
        Some(s) if s != Shape::new(1, n) => Err(KernelError::Shape {
            op: "matmul",
            detail: format!("bias is {s}, expected [1, {n}]"),
        }),
        _ => Ok((m, ka, n)),
    }
}

/// Elementwise functions `y = f(x)`; the backward of each is `dx = dy * f'(x)`.
///
/// Parameters are `f64` so that the `f64` reference is exact; `f32` backends round them once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// `max(x, 0)`; `f'(x) = 1[x > 0]`.
    Relu,
    /// `tanh(x)`; `f'(x) = 1 - tanh(x)^2`.
    Tanh,
    /// `|x|`; `f'(x) = sign(x)` (0 at 0).
    Abs,
    /// `sign(x)` in `{-1, 0, 1}`; no gradient (`f' = 0`).
    Sign,
    /// `e^x`.
    Exp,
    /// `ln x`; `f'(x) = 1/x`.
    Log,
    /// `ln(1 + e^x)`, evaluated as `max(x, 0) + ln(1 + e^-|x|)`; `f'(x) = sigmoid(x)`.
    Softplus,
    /// `ln cosh x`, evaluated as `|x| + ln(1 + e^(-2|x|)) - ln 2`; `f'(x) = tanh(x)`.
    LogCosh,
    /// `x^2`; `f'(x) = 2x`.
    Square,
    /// `1 / (1 + e^-x)`; `f'(x) = s(1 - s)`.
    Sigmoid,
    /// `sqrt(x)` for `x >= 0`; `f'(x) = 1 / (2 sqrt(x))` (infinite at 0).
    Sqrt,
    /// `alpha * x`.
    Scale(f64),
    /// `x + c`.
    AddScalar(f64),
    /// `min(max(x, lo), hi)`; `f'(x) = 1[lo <= x <= hi]` (PyTorch's rule).
    Clamp {
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
    },
}

/// Elementwise functions of two operands `y = f(a, b)`, where `b` broadcasts onto `a`
/// (see [`Shape::accepts_broadcast`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b`.
    Div,
    /// Binary cross-entropy of a probability `a` against a target `b`, each log clamped at -100
    /// as PyTorch does: `-(b * max(ln a, -100) + (1 - b) * max(ln(1 - a), -100))`.
    /// `df/da = -b/a * 1[ln a > -100] + (1 - b)/(1 - a) * 1[ln(1 - a) > -100]`,
    /// `df/db = max(ln(1 - a), -100) - max(ln a, -100)`.
    Bce,
}

/// Which sums a reduction takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduce {
    /// Sum of every element: `1 x 1`.
    All,
    /// Sum of each row: `rows x 1`.
    RowSums,
    /// Sum of each column: `1 x cols`.
    ColSums,
}

/// Hyper-parameters of one Adam step, with the bias corrections already folded in by the caller.
///
/// With `g' = g + weight_decay * p` (coupled L2, as `torch.optim.Adam`):
/// `m = beta1 m + (1 - beta1) g'`, `v = beta2 v + (1 - beta2) g'^2`,
/// `p -= lr * (m / bias1) / (sqrt(v / bias2) + eps)` where `bias_t = 1 - beta_t^step`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Denominator guard.
    pub eps: f32,
    /// Coupled L2 coefficient added to the gradient.
    pub weight_decay: f32,
    /// `1 - beta1^step`.
    pub bias1: f32,
    /// `1 - beta2^step`.
    pub bias2: f32,
}

/// A compute backend: owns device memory and runs the general tensor ops. The fused ops of
/// nested-hash training extend it in [`crate::hashing::HashingOps`].
///
/// Buffers are cheap-to-clone handles: a clone shares the buffer. Ops never mutate their inputs,
/// except the ones that take `&mut` (`write`, `set_rows`, `add_prefix_scaled`, `adam_step`,
/// [`crate::hashing::HashingOps::add_prefix_weighted`]), which update that buffer in place and
/// need the only live handle to it. Every backend checks this and refuses a shared handle with
/// [`KernelError::SharedBuffer`], never copying it silently, so that code that passes on one
/// backend cannot depend on an aliasing (or a copy) that another backend would not have.
pub trait Backend: Send + Sync {
    /// Element type on this backend.
    type Elem: Real;
    /// A device matrix.
    type Buf: Clone + Send + Sync + std::fmt::Debug;
    /// A device vector of row indices.
    type Idx: Clone + Send + Sync + std::fmt::Debug;

    /// Human-readable name of the backend and device (`cpu (2 threads)`, `vulkan: llvmpipe ...`).
    fn name(&self) -> String;

    /// The shape of a buffer.
    fn shape(&self, x: &Self::Buf) -> Shape;
    /// Copy host data into a new buffer; `data.len()` must equal `shape.len()`.
    fn upload(&self, data: &[Self::Elem], shape: Shape) -> Result<Self::Buf, KernelError>;
    /// Overwrite a buffer with host data of the same length, in place (`dst` must be the only
    /// handle to its buffer).
    fn write(&self, dst: &mut Self::Buf, data: &[Self::Elem]) -> Result<(), KernelError>;
    /// Copy a buffer back to the host (waits for pending work).
    fn download(&self, x: &Self::Buf) -> Result<Vec<Self::Elem>, KernelError>;
    /// A buffer filled with one value.
    fn fill(&self, shape: Shape, value: f32) -> Result<Self::Buf, KernelError>;
    /// Copy row indices to the device.
    fn upload_idx(&self, idx: &[u32]) -> Result<Self::Idx, KernelError>;
    /// Number of indices in an index vector.
    fn idx_len(&self, idx: &Self::Idx) -> usize;
    /// Wait until all submitted work is done (a no-op on the CPU).
    fn sync(&self) -> Result<(), KernelError>;

    /// `C = op(A) op(B) (+ bias)`, where `op(M)` is `M^T` when the flag is set and `bias` is a
    /// `1 x n` row added to every row of `C`. Tiled; the nested projection `Y = X W^T + b` is
    /// `matmul(x, false, w, true, Some(b))`, its gradients `dX = dY W` and `dW = dY^T X`.
    fn matmul(
        &self,
        a: &Self::Buf,
        trans_a: bool,
        b: &Self::Buf,
        trans_b: bool,
        bias: Option<&Self::Buf>,
    ) -> Result<Self::Buf, KernelError>;
    /// `y = f(x)` elementwise.
    fn unary(&self, op: Unary, x: &Self::Buf) -> Result<Self::Buf, KernelError>;
    /// `dx = dy * f'(x)` elementwise.
    fn unary_bwd(&self, op: Unary, x: &Self::Buf, dy: &Self::Buf)
        -> Result<Self::Buf, KernelError>;
    /// `y = f(a, b)` elementwise, `b` broadcast onto `a`'s shape.
    fn binary(&self, op: Binary, a: &Self::Buf, b: &Self::Buf) -> Result<Self::Buf, KernelError>;
    /// The elementwise partials `(dy * df/da, dy * df/db)`, both of `a`'s (full) shape; the caller
    /// sums the second back to `b`'s shape when `b` was broadcast.
    fn binary_bwd(
        &self,
        op: Binary,
        a: &Self::Buf,
        b: &Self::Buf,
        dy: &Self::Buf,
    ) -> Result<(Self::Buf, Self::Buf), KernelError>;
    /// Sums over all elements, each row or each column.
    fn reduce(&self, op: Reduce, x: &Self::Buf) -> Result<Self::Buf, KernelError>;
    /// Row L2 normalisation `y_i = x_i / max(||x_i||, eps)`.
    fn row_normalize(&self, x: &Self::Buf, eps: f32) -> Result<Self::Buf, KernelError>;
    /// Backward of [`Backend::row_normalize`]: with `n = ||x_i||`, `dx_i = (dy_i - y_i <y_i, dy_i>) / n`
    /// when `n > eps`, else `dy_i / eps`.
    fn row_normalize_bwd(
        &self,
        x: &Self::Buf,
        dy: &Self::Buf,
        eps: f32,
    ) -> Result<Self::Buf, KernelError>;
    /// Columns `start .. start + len` of `x`, as a new `rows x len` buffer.
    fn slice_cols(&self, x: &Self::Buf, start: usize, len: usize)
        -> Result<Self::Buf, KernelError>;
    /// `out[:, start .. start + x.cols] += alpha * x` in place (`out` must be the only handle to
    /// its buffer): the backward of a column slice, and the NHL gradient combine (each length's
    /// output gradient, scaled by its weight, summed into one gradient of the longest code).
    fn add_prefix_scaled(
        &self,
        out: &mut Self::Buf,
        start: usize,
        x: &Self::Buf,
        alpha: f32,
    ) -> Result<(), KernelError>;
    /// Rows `idx[i]` of `table`, as a new `idx.len() x cols` buffer.
    fn gather_rows(&self, table: &Self::Buf, idx: &Self::Idx) -> Result<Self::Buf, KernelError>;
    /// Backward of [`Backend::gather_rows`]: a `table_rows x cols` buffer whose row `r` is the sum of
    /// the rows `i` of `src` with `idx[i] == r` (summed in index order, so it is deterministic).
    fn scatter_add_rows(
        &self,
        src: &Self::Buf,
        idx: &Self::Idx,
        table_rows: usize,
    ) -> Result<Self::Buf, KernelError>;
    /// `table[idx[i]] = src[i]` in place (memory banks); `table` must be the only handle to its
    /// buffer. Later rows win on duplicate indices.
    fn set_rows(
        &self,
        table: &mut Self::Buf,
        idx: &Self::Idx,
        src: &Self::Buf,
    ) -> Result<(), KernelError>;
    /// One Adam step on `param` in place, with its moment buffers `m` and `v` (each of the three
    /// the only handle to its buffer).
    fn adam_step(
        &self,
        param: &mut Self::Buf,
        grad: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
        step: AdamStep,
    ) -> Result<(), KernelError>;

    /// True when ops called at the same time from several host threads run in parallel, as on
    /// the CPU backend: a caller with independent small ops (NHL's per-length objectives) may then
    /// spread them over rayon's pool. The default is false: a GPU backend records every op into
    /// one queue, so more host threads would only contend for it. No op's result depends on it.
    fn parallel_calls(&self) -> bool {
        false
    }
    /// The batch Gram matrix `X X^T`.
    fn gram(&self, x: &Self::Buf) -> Result<Self::Buf, KernelError> {
        self.matmul(x, false, x, true, None)
    }
    /// A zero buffer.
    fn zeros(&self, shape: Shape) -> Result<Self::Buf, KernelError> {
        self.fill(shape, 0.0)
    }
}

//! Scalar definitions of every elementwise op and its derivative: the single source of truth that
//! the CPU backend applies and that the WGSL kernels must match.

use crate::backend::{Binary, Unary};
use crate::real::Real;

/// PyTorch's floor for each log term of the binary cross-entropy.
const BCE_LOG_FLOOR: f64 = -100.0;

fn softplus<T: Real>(x: T) -> T {
    // max(x, 0) + ln(1 + e^-|x|) never overflows.
    x.max(T::zero()) + (-x.abs()).exp().ln_1p()
}

fn sigmoid<T: Real>(x: T) -> T {
    // Split by sign so that e^(-x) never overflows.
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

fn sign<T: Real>(x: T) -> T {
    if x > T::zero() {
        T::one()
    } else if x < T::zero() {
        -T::one()
    } else {
        T::zero()
    }
}

/// `f(x)` of a unary op.
#[inline(always)]
pub fn unary<T: Real>(op: Unary, x: T) -> T {
    match op {
        Unary::Relu => x.max(T::zero()),
        Unary::Tanh => x.tanh(),
        Unary::Abs => x.abs(),
        Unary::Sign => sign(x),
        Unary::Exp => x.exp(),
        Unary::Log => x.ln(),
        Unary::Softplus => softplus(x),
        Unary::LogCosh => {
            let a = x.abs();
            a + (T::from_f64(-2.0) * a).exp().ln_1p() - T::from_f64(std::f64::consts::LN_2)
        }
        Unary::Square => x * x,
        Unary::Sigmoid => sigmoid(x),
        Unary::Sqrt => x.sqrt(),
        Unary::Scale(alpha) => T::from_f64(alpha) * x,
        Unary::AddScalar(c) => x + T::from_f64(c),
        Unary::Clamp { lo, hi } => x.max(T::from_f64(lo)).min(T::from_f64(hi)),
    }
}

/// `f'(x)` of a unary op (the backward multiplies it by the incoming gradient).
#[inline(always)]
pub fn unary_grad<T: Real>(op: Unary, x: T) -> T {
    let indicator = |c: bool| if c { T::one() } else { T::zero() };
    match op {
        Unary::Relu => indicator(x > T::zero()),
        Unary::Tanh => {
            let t = x.tanh();
            T::one() - t * t
        }
        Unary::Abs => sign(x),
        Unary::Sign => T::zero(),
        Unary::Exp => x.exp(),
        Unary::Log => T::one() / x,
        Unary::Softplus => sigmoid(x),
        Unary::LogCosh => x.tanh(),
        Unary::Square => T::from_f64(2.0) * x,
        Unary::Sigmoid => {
            let s = sigmoid(x);
            s * (T::one() - s)
        }
        Unary::Sqrt => T::one() / (T::from_f64(2.0) * x.sqrt()),
        Unary::Scale(alpha) => T::from_f64(alpha),
        Unary::AddScalar(_) => T::one(),
        Unary::Clamp { lo, hi } => indicator(x >= T::from_f64(lo) && x <= T::from_f64(hi)),
    }
}

fn clamped_ln<T: Real>(x: T) -> (T, bool) {
    let l = x.ln();
    let floor = T::from_f64(BCE_LOG_FLOOR);
    // `!(l > floor)` also catches NaN from ln of a negative argument.
    if l > floor {
        (l, true)
    } else {
        (floor, false)
    }
}

/// `f(a, b)` of a binary op.
pub fn binary<T: Real>(op: Binary, a: T, b: T) -> T {
    match op {
        Binary::Add => a + b,
        Binary::Sub => a - b,
        Binary::Mul => a * b,
        Binary::Div => a / b,
        Binary::Bce => {
            let (lp, _) = clamped_ln(a);
            let (lq, _) = clamped_ln(T::one() - a);
            -(b * lp + (T::one() - b) * lq)
        }
    }
}

/// `(df/da, df/db)` of a binary op.
pub fn binary_grad<T: Real>(op: Binary, a: T, b: T) -> (T, T) {
    match op {
        Binary::Add => (T::one(), T::one()),
        Binary::Sub => (T::one(), -T::one()),
        Binary::Mul => (b, a),
        Binary::Div => (T::one() / b, -a / (b * b)),
        Binary::Bce => {
            let q = T::one() - a;
            let (lp, p_live) = clamped_ln(a);
            let (lq, q_live) = clamped_ln(q);
            let mut da = T::zero();
            if p_live {
                da = -b / a;
            }
            if q_live {
                da += (T::one() - b) / q;
            }
            (da, lq - lp)
        }
    }
}

/// `(BCE(p, t), dBCE/dp)` in one branch-free pass, each clamped log computed once by
/// [`Real::ln_lanes`], so that a loop over it compiles to vector code. For `f64` the values are
/// those of [`binary`] and [`binary_grad`] with [`Binary::Bce`] (a zero may differ in sign only);
/// for `f32` the logs are within a few ulp of the library's. A term whose coefficient (`t` or
/// `1 - t`) is zero contributes nothing even where its log is clamped or infinite.
#[inline(always)]
pub fn bce_and_grad<T: Real>(p: T, t: T) -> (T, T) {
    let floor = T::from_f64(BCE_LOG_FLOOR);
    let (q, s) = (T::one() - p, T::one() - t);
    let (lp, lq) = (p.ln_lanes(), q.ln_lanes());
    // `!(l > floor)` also catches NaN from the log of a negative argument.
    let (p_live, q_live) = (lp > floor, lq > floor);
    let lp = if p_live { lp } else { floor };
    let lq = if q_live { lq } else { floor };
    let dp = if p_live { -t / p } else { T::zero() };
    let dq = if q_live { s / q } else { T::zero() };
    (-(t * lp) - s * lq, dp + dq)
}

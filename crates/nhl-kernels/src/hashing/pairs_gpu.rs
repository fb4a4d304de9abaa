//! The pairwise objectives of [`HashingOps`](super::HashingOps) on the GPU backend: the memory
//! bank losses ([`super::HashingOps::bank_objectives`]), DTSH's triplets
//! ([`super::HashingOps::dtsh_objective`]) and HashNet's batch likelihood
//! ([`super::HashingOps::hashnet_objective`]), by the kernels of `shaders/pairs.wgsl`. Every op
//! only records work; nothing is read back.

use super::bank::{BankLoss, BankPair};
use crate::backend::Shape;
use crate::error::KernelError;
use crate::gpu::{kernel, params, u, Access, GpuBackend, GpuBuf, Kernel};
use crate::shaders::Shader;

use Access::{Read as R, ReadWrite as W};

// Binding numbers follow the `@binding` of the shader's globals.
static BANK_ROW_NORMS: Kernel = kernel(Shader::Pairs, "bank_row_norms", &[(1, R), (7, W)], &[]);
static BANK_ROWS: Kernel = kernel(
    Shader::Pairs,
    "bank_rows",
    &[(1, R), (2, R), (3, R), (4, R), (5, W), (7, W)],
    &[],
);
static BANK_ROW_SUMS: Kernel = kernel(Shader::Pairs, "bank_row_sums", &[(6, W), (7, W)], &[]);
static BANK_SLABS: Kernel = kernel(Shader::Pairs, "bank_slabs", &[(3, R), (5, W)], &["SLAB"]);
static BANK_GRAD: Kernel = kernel(
    Shader::Pairs,
    "bank_grad",
    &[(1, R), (3, R), (5, W), (6, W), (7, W)],
    &["SLAB"],
);
static BANK_VALUE: Kernel = kernel(Shader::Pairs, "bank_value", &[(1, R), (6, W), (7, W)], &[]);
// DTSH and HashNet share the first pass and the last two; `HASHNET` picks HashNet's.
static WITHIN_PREP: Kernel = kernel(
    Shader::Pairs,
    "within_prep",
    &[(1, R), (2, R), (5, W)],
    &["HASHNET"],
);
static WITHIN_GRAD: Kernel = kernel(
    Shader::Pairs,
    "within_grad",
    &[(1, R), (5, W), (7, W)],
    &["HASHNET"],
);
static WITHIN_VALUE: Kernel = kernel(
    Shader::Pairs,
    "within_value",
    &[(1, R), (5, W), (7, W)],
    &["HASHNET"],
);
static DTSH_COUNTS: Kernel = kernel(Shader::Pairs, "dtsh_counts", &[(5, W), (6, W)], &[]);
static DTSH_ROWS: Kernel = kernel(Shader::Pairs, "dtsh_rows", &[(5, W), (6, W)], &[]);
static HASHNET_COUNTS: Kernel = kernel(Shader::Pairs, "hashnet_counts", &[(5, W), (6, W)], &[]);
static HASHNET_ROWS: Kernel = kernel(Shader::Pairs, "hashnet_rows", &[(5, W), (6, W)], &[]);

/// Bank rows per slab of `bank_slabs`: the shader's `SLAB`, which the host sets (and
/// [`Shader::overrides`] lists for the shader checks).
pub(crate) const SLAB: usize = 256;

/// Label classes travel in the top bits of a parameter word.
const MAX_CLASSES: usize = 1 << 20;

fn classes_fit(op: &'static str, classes: usize) -> Result<(), KernelError> {
    if classes >= MAX_CLASSES {
        return Err(KernelError::Shape {
            op,
            detail: format!("{classes} label classes (the GPU kernels take fewer than 2^20)"),
        });
    }
    Ok(())
}

/// [`super::HashingOps::bank_objectives`] after the shared shape checks.
pub(super) fn bank_objectives(
    gpu: &GpuBackend,
    codes: &GpuBuf,
    bits: &[usize],
    labels: &GpuBuf,
    bank: &GpuBuf,
    bank_labels: &GpuBuf,
    loss: &BankLoss,
) -> Result<Vec<(GpuBuf, GpuBuf)>, KernelError> {
    const OP: &str = "bank_objectives";
    let classes = labels.shape.cols;
    classes_fit(OP, classes)?;
    // `bank_rows` takes each length's first new column and its index in 16 bits each.
    let widest_lo = bits.len().checked_sub(2).map_or(0, |k| bits[k]);
    if widest_lo >= 1 << 16 || bits.len() > 1 << 16 {
        return Err(KernelError::Shape {
            op: OP,
            detail: format!(
                "{} code lengths, the second longest {widest_lo} bits (the GPU bank pass takes \
                 fewer than 65,536 lengths and a second longest below 65,536 bits)",
                bits.len()
            ),
        });
    }
    let (n, n_bank) = (codes.shape.rows, bank.shape.rows);
    let code = loss.pair.code()
        | loss.quant.code() << 4
        | u32::from(loss.clamp_unit) << 8
        | u(classes) << 12;
    // G (n x N), then `bank_slabs`' sums: one n x b block per slab of the bank's rows.
    let slabs = n_bank.div_ceil(SLAB);
    let longest = bits[bits.len() - 1];
    let coefficients = gpu.alloc(OP, Shape::new(n, n_bank + slabs * longest))?;
    let rowsums = gpu.alloc(OP, Shape::new(n, 4))?;
    // The bank kernels' running state over the lengths: inner products, similarities, pair values
    // and own-code coefficients (n x N each), two slots of N bank-row squared norms (length k
    // writes slot k mod 2, reads the other), and the batch rows' squared norms.
    let state = gpu.alloc(OP, Shape::new(1, (4 * n + 2) * n_bank + n))?;
    let mut out = Vec::with_capacity(bits.len());
    let mut lo = 0;
    for (k, &b) in bits.iter().enumerate() {
        let step = u(lo) | u(k) << 16;
        let words = |f0: f64, f1: u32| {
            params(&[
                u(n),
                u(codes.shape.cols),
                u(n_bank),
                u(bank.shape.cols),
                u(b),
                code,
                (f0 as f32).to_bits(),
                f1,
            ])
        };
        let margin = match loss.pair {
            BankPair::Contrastive { margin } => margin * b as f64,
            _ => 0.0,
        };
        gpu.dispatch_1d(
            &BANK_ROW_NORMS,
            &[],
            words(margin, step),
            &[codes.raw(), state.raw()],
            n,
        )?;
        gpu.dispatch_1d(
            &BANK_ROWS,
            &[],
            words(margin, step),
            &[
                codes.raw(),
                labels.raw(),
                bank.raw(),
                bank_labels.raw(),
                coefficients.raw(),
                state.raw(),
            ],
            n * n_bank,
        )?;
        gpu.dispatch_rows(
            &BANK_ROW_SUMS,
            words(margin, step),
            &[rowsums.raw(), state.raw()],
            n,
        )?;
        lo = b;
        let scaled = words(loss.alpha, (loss.pair_weight as f32).to_bits());
        gpu.dispatch_1d(
            &BANK_SLABS,
            &[u(SLAB)],
            scaled,
            &[bank.raw(), coefficients.raw()],
            slabs * n * b,
        )?;
        let grad = gpu.alloc(OP, Shape::new(n, b))?;
        gpu.dispatch_1d(
            &BANK_GRAD,
            &[u(SLAB)],
            scaled,
            &[
                codes.raw(),
                bank.raw(),
                coefficients.raw(),
                rowsums.raw(),
                grad.raw(),
            ],
            n * b,
        )?;
        let value = gpu.alloc(OP, Shape::scalar())?;
        gpu.dispatch(
            &BANK_VALUE,
            &[],
            scaled,
            &[codes.raw(), rowsums.raw(), value.raw()],
            [1, 1, 1],
        )?;
        out.push((value, grad));
    }
    Ok(out)
}

/// A within-batch objective's own passes between the shared first pass and the shared last
/// two, each over `[work, rowsums]`: its kernel and how many invocations it needs.
enum Pass {
    /// One per batch row.
    Rows(&'static Kernel),
    /// One per pair of batch rows.
    Pairs(&'static Kernel),
    /// One workgroup.
    Once(&'static Kernel),
}

/// A within-batch objective (`op`, DTSH or HashNet by `hashnet`) of the first `bits` columns of
/// `codes` (`n x B`) with `labels`, with the loss's two scalars `f0` and `f1` (shaders/pairs.wgsl,
/// `Params`): `within_prep`, the objective's own `passes`, `within_grad` and `within_value`, on
/// four `n x n` work blocks and one row-sum slot per batch row.
fn within_batch(
    gpu: &GpuBackend,
    op: &'static str,
    (codes, bits, labels): (&GpuBuf, usize, &GpuBuf),
    (f0, f1): (f64, f64),
    hashnet: bool,
    passes: &[Pass],
) -> Result<(GpuBuf, GpuBuf), KernelError> {
    let classes = labels.shape.cols;
    classes_fit(op, classes)?;
    let n = codes.shape.rows;
    let p = params(&[
        u(n),
        u(codes.shape.cols),
        0,
        0,
        u(bits),
        u(classes),
        (f0 as f32).to_bits(),
        (f1 as f32).to_bits(),
    ]);
    let work = gpu.alloc(op, Shape::new(4 * n, n))?;
    let rowsums = gpu.alloc(op, Shape::new(n, 4))?;
    let grad = gpu.alloc(op, Shape::new(n, bits))?;
    let value = gpu.alloc(op, Shape::scalar())?;
    let variant = [u32::from(hashnet)];
    gpu.dispatch_1d(
        &WITHIN_PREP,
        &variant,
        p,
        &[codes.raw(), labels.raw(), work.raw()],
        n * n,
    )?;
    let state = [work.raw(), rowsums.raw()];
    for pass in passes {
        match *pass {
            Pass::Rows(k) => gpu.dispatch_1d(k, &[], p, &state, n)?,
            Pass::Pairs(k) => gpu.dispatch_1d(k, &[], p, &state, n * n)?,
            Pass::Once(k) => gpu.dispatch(k, &[], p, &state, [1, 1, 1])?,
        }
    }
    gpu.dispatch_1d(
        &WITHIN_GRAD,
        &variant,
        p,
        &[codes.raw(), work.raw(), grad.raw()],
        n * bits,
    )?;
    gpu.dispatch(
        &WITHIN_VALUE,
        &variant,
        p,
        &[codes.raw(), work.raw(), value.raw()],
        [1, 1, 1],
    )?;
    Ok((value, grad))
}

/// [`super::HashingOps::dtsh_objective`] after the shared shape checks.
pub(super) fn dtsh_objective(
    gpu: &GpuBackend,
    codes: &GpuBuf,
    bits: usize,
    labels: &GpuBuf,
    alpha: f64,
    lambda: f64,
) -> Result<(GpuBuf, GpuBuf), KernelError> {
    within_batch(
        gpu,
        "dtsh_objective",
        (codes, bits, labels),
        (alpha, lambda),
        false,
        &[Pass::Rows(&DTSH_COUNTS), Pass::Pairs(&DTSH_ROWS)],
    )
}

/// [`super::HashingOps::hashnet_objective`] after the shared shape checks.
pub(super) fn hashnet_objective(
    gpu: &GpuBackend,
    codes: &GpuBuf,
    bits: usize,
    labels: &GpuBuf,
    alpha: f64,
    scale: f64,
) -> Result<(GpuBuf, GpuBuf), KernelError> {
    within_batch(
        gpu,
        "hashnet_objective",
        (codes, bits, labels),
        (alpha, scale),
        true,
        &[Pass::Once(&HASHNET_COUNTS), Pass::Pairs(&HASHNET_ROWS)],
    )
}

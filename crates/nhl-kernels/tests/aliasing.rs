//! The rule of the in-place (`&mut`) ops, the same on every backend: the handle they update must
//! be the only one to its buffer. A shared handle is refused with `KernelError::SharedBuffer`
//! naming the op and the operand, before anything is written: a clone kept across the op never
//! sees a write (on the GPU it would, since a clone aliases device memory), and the CPU never
//! copies silently. Once the clone is dropped, the same call goes through.

use anyhow::{ensure, Result};
use nhl_kernels::testing::random_vec;
use nhl_kernels::{AdamStep, Backend, HashingOps, KernelError, Shape};

const SHAPE: Shape = Shape::new(5, 7);

fn values(seed: u64, n: usize) -> Vec<f32> {
    random_vec(seed, n, -1.0, 1.0)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// `result` is the refusal of `op` updating `operand` through a shared handle.
fn ensure_refused(result: Result<(), KernelError>, op: &str, operand: &str) -> Result<()> {
    match result {
        Err(KernelError::SharedBuffer { op: o, operand: a }) if o == op && a == operand => Ok(()),
        other => anyhow::bail!("{op} on a shared `{operand}`: expected a refusal, got {other:?}"),
    }
}

/// Runs `update` on a buffer of `init` while a clone of it is alive (it must be refused and the
/// clone keep `init`), then again after the clone is dropped (it must go through).
fn refused_while_cloned<B: Backend<Elem = f32>>(
    b: &B,
    init: &[f32],
    op: &str,
    operand: &str,
    mut update: impl FnMut(&mut B::Buf) -> Result<(), KernelError>,
) -> Result<()> {
    let mut buf = b.upload(init, SHAPE)?;
    let clone = buf.clone();
    ensure_refused(update(&mut buf), op, operand)?;
    ensure!(b.download(&clone)? == init, "{op}: the clone saw a write");
    ensure!(b.download(&buf)? == init, "{op}: a refused op wrote");
    drop(clone);
    update(&mut buf)?;
    ensure!(
        b.download(&buf)? != init,
        "{op}: the unique handle was not updated"
    );
    Ok(())
}

fn check_shared_handles_are_refused<B: HashingOps<Elem = f32>>(b: &B) -> Result<()> {
    let n = SHAPE.len();
    let init = values(1, n);
    let other = values(2, n);
    let x = b.upload(&other, SHAPE)?;

    refused_while_cloned(b, &init, "write", "dst", |buf| b.write(buf, &other))?;

    let idx = b.upload_idx(&[4, 0, 4])?;
    let src = b.upload(&values(3, 3 * SHAPE.cols), Shape::new(3, SHAPE.cols))?;
    refused_while_cloned(b, &init, "set_rows", "table", |buf| {
        b.set_rows(buf, &idx, &src)
    })?;

    let prefix = b.upload(&values(4, SHAPE.rows * 3), Shape::new(SHAPE.rows, 3))?;
    refused_while_cloned(b, &init, "add_prefix_scaled", "out", |buf| {
        b.add_prefix_scaled(buf, 2, &prefix, 0.5)
    })?;

    let weights = b.upload(&[0.25, 1.5], Shape::new(1, 2))?;
    refused_while_cloned(b, &init, "add_prefix_weighted", "out", |buf| {
        b.add_prefix_weighted(buf, 2, &prefix, &weights, 1)
    })?;

    let step = AdamStep {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        bias1: 0.1,
        bias2: 0.001,
    };
    let (mut m, mut v) = (b.zeros(SHAPE)?, b.zeros(SHAPE)?);
    let mut param = b.upload(&init, SHAPE)?;
    refused_while_cloned(b, &init, "adam_step", "param", |buf| {
        b.adam_step(buf, &x, &mut m, &mut v, step)
    })?;
    refused_while_cloned(b, &init, "adam_step", "m", |buf| {
        b.adam_step(&mut param, &x, buf, &mut v, step)
    })?;
    refused_while_cloned(b, &init, "adam_step", "v", |buf| {
        b.adam_step(&mut param, &x, &mut m, buf, step)
    })?;

    // An operand that is also read through a clone of the output is refused too: the op would
    // read what it writes.
    let mut out = b.upload(&init, SHAPE)?;
    let alias = out.clone();
    ensure_refused(
        b.add_prefix_scaled(&mut out, 0, &alias, 1.0),
        "add_prefix_scaled",
        "out",
    )?;
    ensure!(b.download(&alias)? == init, "add_prefix_scaled wrote");
    Ok(())
}

#[test]
fn cpu_refuses_shared_handles() -> Result<()> {
    check_shared_handles_are_refused(&nhl_kernels::cpu::CpuBackend::<f32>::new())
}

#[test]
fn gpu_refuses_shared_handles() -> Result<()> {
    match nhl_kernels::gpu::test_backend() {
        Some(b) => check_shared_handles_are_refused(&b),
        None => Ok(()),
    }
}

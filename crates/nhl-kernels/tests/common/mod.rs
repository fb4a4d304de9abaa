//! What the parity tests of this crate share: seeded inputs rounded to `f32`, uploads and
//! downloads in `f64`, and the `CpuBackend<f64>` reference.

use anyhow::Result;
use nhl_kernels::cpu::CpuBackend;
use nhl_kernels::testing::random_vec;
use nhl_kernels::{Backend, Shape};

pub type Ref = CpuBackend<f64>;

/// Random values in `[lo, hi)`, rounded to f32 so that both sides see the same inputs.
pub fn data(seed: u64, shape: Shape, lo: f64, hi: f64) -> Vec<f64> {
    random_vec(seed, shape.len(), lo, hi)
        .into_iter()
        .map(|v| v as f32 as f64)
        .collect()
}

pub fn up<B: Backend<Elem = f32>>(b: &B, v: &[f64], shape: Shape) -> Result<B::Buf> {
    let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Ok(b.upload(&v, shape)?)
}

pub fn down<B: Backend<Elem = f32>>(b: &B, x: &B::Buf) -> Result<Vec<f64>> {
    Ok(b.download(x)?.into_iter().map(f64::from).collect())
}

pub fn reference(v: &[f64], shape: Shape) -> Result<<Ref as Backend>::Buf> {
    Ok(Ref::new().upload(v, shape)?)
}

pub fn ref_down(x: &<Ref as Backend>::Buf) -> Result<Vec<f64>> {
    Ok(Ref::new().download(x)?)
}

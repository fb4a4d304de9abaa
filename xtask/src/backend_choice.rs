//! `--backend auto|cpu|gpu`, shared by every command that computes.

use anyhow::Context;
use nhl_kernels::gpu::{AdapterPolicy, GpuBackend};

/// Where the computation runs.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum BackendChoice {
    /// A hardware GPU if there is one, else the CPU.
    Auto,
    /// The CPU backend.
    Cpu,
    /// wgpu, accepting a software adapter (lavapipe) when there is no GPU.
    Gpu,
}

impl BackendChoice {
    /// The GPU backend this choice asks for, or `None` for the CPU backend.
    pub fn gpu(self) -> anyhow::Result<Option<GpuBackend>> {
        Ok(match self {
            BackendChoice::Cpu => None,
            BackendChoice::Gpu => Some(
                GpuBackend::new(AdapterPolicy::AllowSoftware)
                    .context("--backend gpu: no usable wgpu adapter")?,
            ),
            BackendChoice::Auto => match GpuBackend::new(AdapterPolicy::HardwareOnly) {
                Ok(gpu) => Some(gpu),
                Err(e) => {
                    eprintln!("no hardware GPU ({e}); using the CPU");
                    None
                }
            },
        })
    }
}

//! The GPU backend: wgpu with the hand-written WGSL of `shaders/`, in `f32`.
//!
//! * [`GpuContext`] chooses an adapter ([`AdapterPolicy`]), opens the device with the
//!   adapter's limits, captures wgpu errors with error scopes and caches pipelines.
//! * [`GpuBackend`] implements [`crate::Backend`] on a context. Buffers come from a pool keyed
//!   by size class and return to it when their last handle drops, so a steady training loop
//!   creates no wgpu buffers after its first step ([`GpuBackend::buffers_created`]). Dispatches
//!   are recorded into one command encoder, each with its parameters in a slot of a uniform ring
//!   bound with a dynamic offset, and submitted together at a download or sync (or when the
//!   ring is full) instead of once per op.
//!
//! ```no_run
//! use nhl_kernels::gpu::{AdapterPolicy, GpuBackend};
//! use nhl_kernels::{Backend, Shape};
//!
//! let gpu = GpuBackend::new(AdapterPolicy::AllowSoftware)?;
//! println!("running on {}", gpu.name());
//! let x = gpu.upload(&[3.0, 4.0], Shape::new(1, 2))?;
//! let y = gpu.row_normalize(&x, 1e-12)?;
//! let y = gpu.download(&y)?;
//! assert!((y[0] - 0.6).abs() < 1e-6 && (y[1] - 0.8).abs() < 1e-6);
//! # Ok::<(), nhl_kernels::KernelError>(())
//! ```

mod context;
mod ops;
mod pool;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use context::{AdapterPolicy, AdapterReport, GpuContext};
pub use pool::{GpuBuf, GpuIdx};

use crate::backend::Shape;
use crate::error::KernelError;
use context::{Kernel, PARAM_BYTES, WORKGROUP};
use pool::{Kind, Pool, Pooled};

/// Dispatches recorded before the batch is submitted even without a sync: bounds the parameter
/// ring and the latency of a long op sequence.
const MAX_DISPATCHES: u64 = 256;
/// Workgroups per grid dimension that every adapter allows.
const MAX_GROUPS_PER_DIM: u32 = 65_535;

/// Commands recorded but not yet submitted, with the parameter blocks they read.
#[derive(Default)]
struct Batch {
    encoder: Option<wgpu::CommandEncoder>,
    /// Parameter slots of the recorded dispatches, `stride` bytes apart.
    params: Vec<u8>,
    dispatches: u64,
}

struct Inner {
    ctx: Arc<GpuContext>,
    pool: Arc<Pool>,
    batch: Mutex<Batch>,
    /// The parameter ring: `MAX_DISPATCHES` slots of `stride` bytes.
    params: wgpu::Buffer,
    stride: u64,
    /// Queue submissions of recorded commands ([`GpuBackend::submits`]).
    submits: AtomicU64,
    /// Host waits for the device: downloads and syncs ([`GpuBackend::host_waits`]).
    waits: AtomicU64,
    /// Constant index vectors built once and kept (the block widths of `prefix_pair_dots`).
    constants: Mutex<HashMap<Vec<u32>, GpuIdx>>,
}

/// [`crate::Backend`] on a wgpu device, in `f32`. Cloning is cheap and shares the pool and
/// the pending batch.
#[derive(Clone)]
pub struct GpuBackend {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuBackend")
            .field("adapter", self.inner.ctx.adapter())
            .finish_non_exhaustive()
    }
}

/// The number of workgroups covering `n` items at `per_group` items each, laid out as a 2-D grid
/// when one dimension would pass the 65535 limit; kernels flatten `(wg.y * nwg.x + wg.x)` and
/// bounds-check, so the spare workgroups of the last grid row do nothing.
fn grid(op: &'static str, n: usize, per_group: usize) -> Result<[u32; 3], KernelError> {
    let groups = n.div_ceil(per_group);
    let max = MAX_GROUPS_PER_DIM as usize;
    if groups <= max {
        return Ok([groups as u32, 1, 1]);
    }
    let rows = groups.div_ceil(max);
    if rows > max {
        return Err(KernelError::Shape {
            op,
            detail: format!("{n} items exceed the dispatch grid"),
        });
    }
    Ok([MAX_GROUPS_PER_DIM, rows as u32, 1])
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl GpuBackend {
    /// A backend on a new context (see [`GpuContext::new`] for the adapter choice).
    ///
    /// # Errors
    /// [`KernelError::NoAdapter`] when no adapter fits `policy`; [`KernelError::Device`] when
    /// the device cannot be opened.
    pub fn new(policy: AdapterPolicy) -> Result<Self, KernelError> {
        Self::with_context(GpuContext::new(policy)?)
    }

    /// A backend with its own buffer pool and batch on a shared context: cheap, since the
    /// device and the pipelines are the context's.
    ///
    /// # Errors
    /// [`KernelError::Device`] when the parameter ring cannot be allocated.
    pub fn with_context(ctx: Arc<GpuContext>) -> Result<Self, KernelError> {
        let align = u64::from(ctx.limits.min_uniform_buffer_offset_alignment);
        let stride = PARAM_BYTES.div_ceil(align) * align;
        let pool = Arc::new(Pool::default());
        let params = ctx.scoped("create_buffer", || {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("nhl params"),
                size: stride * MAX_DISPATCHES,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        pool.count_created();
        Ok(Self {
            inner: Arc::new(Inner {
                ctx,
                pool,
                batch: Mutex::default(),
                params,
                stride,
                submits: AtomicU64::new(0),
                waits: AtomicU64::new(0),
                constants: Mutex::default(),
            }),
        })
    }

    /// The context: device, adapter and pipeline cache.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.inner.ctx
    }

    /// The adapter in use.
    pub fn adapter(&self) -> &AdapterReport {
        self.inner.ctx.adapter()
    }

    /// How many wgpu buffers this backend has created so far (pooled operands, read-back
    /// staging, the parameter ring). A repeated op sequence that frees what it allocates leaves
    /// it unchanged after its first run.
    pub fn buffers_created(&self) -> u64 {
        self.inner.pool.created()
    }

    /// How many times this backend has submitted recorded commands to the queue. Ops only
    /// record; a submission happens at a download, a sync, a host write after recorded work, or
    /// when the parameter ring is full.
    pub fn submits(&self) -> u64 {
        self.inner.submits.load(Ordering::Relaxed)
    }

    /// How many times the host has waited for the device (each download and each sync).
    pub fn host_waits(&self) -> u64 {
        self.inner.waits.load(Ordering::Relaxed)
    }

    /// The index vector of the constant `words`, uploaded on first use and kept for the life
    /// of the backend, so that repeating an op with the same constants writes nothing.
    fn constant_idx(&self, words: &[u32]) -> Result<GpuIdx, KernelError> {
        if let Some(idx) = lock(&self.inner.constants).get(words) {
            return Ok(idx.clone());
        }
        let idx = crate::Backend::upload_idx(self, words)?;
        lock(&self.inner.constants).insert(words.to_vec(), idx.clone());
        Ok(idx)
    }

    /// A pooled storage buffer for `shape` (its contents are whatever the last user left).
    fn alloc(&self, op: &'static str, shape: Shape) -> Result<GpuBuf, KernelError> {
        let mem = self.take(op, Kind::Storage, shape.len() as u64 * 4)?;
        Ok(GpuBuf {
            mem: Arc::new(mem),
            shape,
        })
    }

    fn take(&self, op: &'static str, kind: Kind, bytes: u64) -> Result<Pooled, KernelError> {
        let ctx = &self.inner.ctx;
        let limit = ctx
            .limits
            .max_storage_buffer_binding_size
            .min(ctx.limits.max_buffer_size);
        if pool::size_class(bytes) > limit {
            return Err(KernelError::TooLarge { op, bytes, limit });
        }
        ctx.scoped(op, || self.inner.pool.take(&ctx.device, kind, bytes))
    }

    /// Copies host words into `dst` in queue order after everything recorded so far.
    fn write_words(
        &self,
        op: &'static str,
        dst: &wgpu::Buffer,
        bytes: &[u8],
    ) -> Result<(), KernelError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let mut batch = lock(&self.inner.batch);
        // `write_buffer` lands before the next submission's commands, so the pending ones (which
        // may still read a recycled `dst`) are submitted first.
        self.flush_locked(&mut batch)?;
        let ctx = &self.inner.ctx;
        ctx.scoped(op, || ctx.queue.write_buffer(dst, 0, bytes))
    }

    /// Records one dispatch of `kernel` with override `values`, the parameter block `params`
    /// (binding 0) and `buffers` for `kernel.bindings`, over `groups` workgroups.
    fn dispatch(
        &self,
        kernel: &'static Kernel,
        values: &[u32],
        params: [u32; 8],
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<(), KernelError> {
        debug_assert_eq!(buffers.len(), kernel.bindings.len(), "{}", kernel.entry);
        let ctx = &self.inner.ctx;
        let pipeline = ctx.pipeline(kernel, values)?;
        let mut batch = lock(&self.inner.batch);
        if batch.dispatches == MAX_DISPATCHES {
            self.flush_locked(&mut batch)?;
        }
        let offset = batch.dispatches * self.inner.stride;
        let mut entries = Vec::with_capacity(buffers.len() + 1);
        entries.push(wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.inner.params,
                offset: 0,
                size: wgpu::BufferSize::new(PARAM_BYTES),
            }),
        });
        entries.extend(
            kernel
                .bindings
                .iter()
                .zip(buffers)
                .map(|(&(binding, _), buffer)| wgpu::BindGroupEntry {
                    binding,
                    resource: buffer.as_entire_binding(),
                }),
        );
        let bind_group = ctx.scoped(kernel.entry, || {
            ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(kernel.entry),
                layout: &pipeline.layout,
                entries: &entries,
            })
        })?;

        batch.params.resize(offset as usize, 0);
        batch
            .params
            .extend_from_slice(bytemuck::cast_slice(&params));
        batch.dispatches += 1;
        let encoder = batch.encoder.get_or_insert_with(|| {
            ctx.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor::default())
        });
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(kernel.entry),
            timestamp_writes: None,
        });
        pass.set_pipeline(&pipeline.pipeline);
        // The ring holds MAX_DISPATCHES slots, so the offset fits easily in u32.
        pass.set_bind_group(0, &bind_group, &[offset as u32]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        Ok(())
    }

    /// A 1-D elementwise dispatch over `n` items, 256 per workgroup.
    fn dispatch_1d(
        &self,
        kernel: &'static Kernel,
        values: &[u32],
        params: [u32; 8],
        buffers: &[&wgpu::Buffer],
        n: usize,
    ) -> Result<(), KernelError> {
        if n == 0 {
            return Ok(());
        }
        let groups = grid(kernel.entry, n, WORKGROUP as usize)?;
        self.dispatch(kernel, values, params, buffers, groups)
    }

    /// Submits the pending batch: the parameter slots first (a queue write lands before the
    /// commands of the submission), then the commands.
    fn flush_locked(&self, batch: &mut Batch) -> Result<(), KernelError> {
        let Some(encoder) = batch.encoder.take() else {
            return Ok(());
        };
        let ctx = &self.inner.ctx;
        let result = ctx.scoped("submit", || {
            if !batch.params.is_empty() {
                ctx.queue.write_buffer(&self.inner.params, 0, &batch.params);
            }
            ctx.queue.submit([encoder.finish()]);
        });
        self.inner.submits.fetch_add(1, Ordering::Relaxed);
        batch.params.clear();
        batch.dispatches = 0;
        result
    }

    fn wait(&self, op: &'static str) -> Result<(), KernelError> {
        self.inner.waits.fetch_add(1, Ordering::Relaxed);
        let ctx = &self.inner.ctx;
        ctx.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| KernelError::Device {
                op,
                message: e.to_string(),
            })?;
        ctx.take_uncaptured(op)
    }

    /// Copies `bytes` bytes of `src` to the host after all recorded work.
    fn read_back(&self, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>, KernelError> {
        const OP: &str = "download";
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.take(OP, Kind::Staging, bytes)?;
        {
            let mut batch = lock(&self.inner.batch);
            let ctx = &self.inner.ctx;
            let encoder = batch.encoder.get_or_insert_with(|| {
                ctx.device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor::default())
            });
            encoder.copy_buffer_to_buffer(src, 0, staging.buffer(), 0, bytes);
            self.flush_locked(&mut batch)?;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        staging
            .buffer()
            .map_async(wgpu::MapMode::Read, 0..bytes, move |r| {
                // The receiver outlives the wait below; a failed send means it gave up already.
                let _ = tx.send(r);
            });
        self.wait(OP)?;
        let device_err = |message: String| KernelError::Device { op: OP, message };
        rx.recv()
            .map_err(|_| device_err("the map callback never ran".into()))?
            .map_err(|e| device_err(e.to_string()))?;
        let data = {
            let view = staging
                .buffer()
                .get_mapped_range(0..bytes)
                .map_err(|e| device_err(e.to_string()))?;
            view.to_vec()
        };
        staging.buffer().unmap();
        Ok(data)
    }
}

/// A GPU backend for tests, on a device shared by every test of the process (opening one per
/// test is slow on software adapters). Software adapters such as lavapipe are allowed.
///
/// Without a usable adapter it prints `skipping GPU test: <why>` and returns `None`, so the
/// caller returns early; with `NHL_REQUIRE_GPU=1` (CI) it panics with the reason instead.
/// Each call returns a backend with its own pool and batch, so tests running in parallel do not
/// share buffer counts.
///
/// # Panics
/// When `NHL_REQUIRE_GPU=1` and no adapter fits.
#[cfg(feature = "testing")]
pub fn test_backend() -> Option<GpuBackend> {
    use std::io::Write;
    use std::sync::OnceLock;
    static SHARED: OnceLock<Result<Arc<GpuContext>, String>> = OnceLock::new();
    let shared = SHARED
        .get_or_init(|| GpuContext::new(AdapterPolicy::AllowSoftware).map_err(|e| e.to_string()));
    let backend = shared
        .as_ref()
        .map_err(String::clone)
        .and_then(|ctx| GpuBackend::with_context(Arc::clone(ctx)).map_err(|e| e.to_string()));
    match backend {
        Ok(b) => Some(b),
        Err(why) if std::env::var("NHL_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("NHL_REQUIRE_GPU=1 but no GPU backend: {why}")
        }
        Err(why) => {
            // Straight to stderr: libtest captures `eprintln!` of passing tests, and the notice
            // must be seen.
            let _ = writeln!(std::io::stderr(), "skipping GPU test: {why}");
            None
        }
    }
}

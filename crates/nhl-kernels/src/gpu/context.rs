//! The device context: adapter choice, the device and its limits, error capture, and the cache
//! of shader modules and pipelines that every [`super::GpuBackend`] on the device shares.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::KernelError;
use crate::shaders::Shader;

/// Which adapters [`GpuContext::new`] may choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterPolicy {
    /// Only a hardware GPU (discrete, integrated or virtual).
    HardwareOnly,
    /// A hardware GPU if there is one, else a software rasteriser such as lavapipe (Mesa's
    /// llvmpipe Vulkan driver), which runs the same shaders on the CPU: slow, but exact enough
    /// for tests.
    AllowSoftware,
}

/// What [`GpuContext::new`] chose.
#[derive(Clone, Debug)]
pub struct AdapterReport {
    /// Adapter name, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    /// The graphics API it runs on.
    pub backend: wgpu::Backend,
    /// Discrete, integrated, virtual, CPU or other.
    pub device_type: wgpu::DeviceType,
    /// Driver name and version, as the driver reports them.
    pub driver: String,
}

impl AdapterReport {
    /// A short identifier for bench ids and logs: the API and the first word of the adapter
    /// name, lowercase (`vulkan-llvmpipe`, `metal-apple`).
    pub fn slug(&self) -> String {
        let first = self
            .name
            .split(|c: char| !c.is_ascii_alphanumeric())
            .find(|w| !w.is_empty())
            .unwrap_or("unknown");
        format!("{}-{}", self.backend.to_str(), first).to_ascii_lowercase()
    }
}

impl std::fmt::Display for AdapterReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} ({:?}",
            self.backend.to_str(),
            self.name,
            self.device_type
        )?;
        if !self.driver.is_empty() {
            write!(f, ", {}", self.driver)?;
        }
        write!(f, ")")
    }
}

/// Access of one storage binding of a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Access {
    Read,
    ReadWrite,
}

/// One entry point and the storage bindings it is given, in the order the dispatch passes
/// buffers. Binding 0 is always the parameter block (a uniform with a dynamic offset).
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Kernel {
    pub shader: Shader,
    pub entry: &'static str,
    pub bindings: &'static [(u32, Access)],
    pub overrides: &'static [&'static str],
}

/// A built pipeline with the explicit bind-group layout it was made with (explicit, so that a
/// binding an entry point does not touch can never be stripped out of the layout).
pub(crate) struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

type PipelineKey = (&'static Kernel, Vec<u32>);

/// Workgroup size of the 1-D and row kernels; the tiled matmul uses 16 x 16.
pub(crate) const WORKGROUP: u32 = 256;
/// Bytes of workgroup memory the matmul tiles need (two 64 x 16 f32 slabs).
const WORKGROUP_STORAGE: u32 = 2 * 64 * 16 * 4;
/// Storage buffers the widest kernel binds at once (binary backward, Adam).
const STORAGE_BINDINGS: u32 = 5;
/// Bytes of the widest parameter block.
pub(crate) const PARAM_BYTES: u64 = 32;

/// A device and queue with everything built from them that does not depend on a caller: the
/// shader modules and the pipelines, each built once per (entry point, override values).
///
/// Create one per process and share it (`Arc`); each [`super::GpuBackend`] made from it keeps
/// its own buffer pool and command batch.
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) limits: wgpu::Limits,
    report: AdapterReport,
    modules: Mutex<HashMap<Shader, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
    /// The last error wgpu raised outside any error scope; reported by the next sync.
    uncaptured: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.report)
            .finish_non_exhaustive()
    }
}

/// Lower is preferred: hardware first, and native APIs before OpenGL.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    let api = u8::from(info.backend == wgpu::Backend::Gl);
    (kind, api)
}

fn is_hardware(t: wgpu::DeviceType) -> bool {
    matches!(
        t,
        wgpu::DeviceType::DiscreteGpu
            | wgpu::DeviceType::IntegratedGpu
            | wgpu::DeviceType::VirtualGpu
    )
}

/// Why an adapter cannot run the kernels, or `None` when it can.
fn unsuitable(adapter: &wgpu::Adapter) -> Option<String> {
    let down = adapter.get_downlevel_capabilities();
    if !down.flags.contains(wgpu::DownlevelFlags::COMPUTE_SHADERS) {
        return Some("no compute shaders".into());
    }
    let l = adapter.limits();
    let checks = [
        (
            "max_compute_invocations_per_workgroup",
            l.max_compute_invocations_per_workgroup,
            WORKGROUP,
        ),
        (
            "max_compute_workgroup_size_x",
            l.max_compute_workgroup_size_x,
            WORKGROUP,
        ),
        (
            "max_compute_workgroup_size_y",
            l.max_compute_workgroup_size_y,
            16,
        ),
        (
            "max_compute_workgroup_storage_size",
            l.max_compute_workgroup_storage_size,
            WORKGROUP_STORAGE,
        ),
        (
            "max_storage_buffers_per_shader_stage",
            l.max_storage_buffers_per_shader_stage,
            STORAGE_BINDINGS,
        ),
        (
            "max_compute_workgroups_per_dimension",
            l.max_compute_workgroups_per_dimension,
            65535,
        ),
    ];
    for (name, have, need) in checks {
        if have < need {
            return Some(format!("{name} is {have}, the kernels need {need}"));
        }
    }
    if l.max_uniform_buffer_binding_size < PARAM_BYTES {
        return Some("uniform buffers too small".into());
    }
    None
}

fn device_error(op: &'static str, e: impl std::fmt::Display) -> KernelError {
    KernelError::Device {
        op,
        message: e.to_string(),
    }
}

impl GpuContext {
    /// Chooses an adapter under `policy` (the best hardware GPU; a software one only when
    /// allowed and no hardware one fits), checks that it runs compute shaders with the limits
    /// the kernels need, and opens a device with the adapter's own limits, so that buffers as
    /// large as the adapter allows work.
    ///
    /// The APIs searched are Vulkan, Metal, DX12 and WebGPU, or those named in `WGPU_BACKEND`.
    ///
    /// # Errors
    /// [`KernelError::NoAdapter`] when no adapter fits (with each rejected one and why),
    /// [`KernelError::Device`] when the device cannot be opened.
    pub fn new(policy: AdapterPolicy) -> Result<Arc<Self>, KernelError> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::PRIMARY;
        let instance = wgpu::Instance::new(desc.with_env());
        let mut adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        adapters.sort_by_key(|a| rank(&a.get_info()));

        let mut rejected = Vec::new();
        let chosen = adapters.into_iter().find(|adapter| {
            let info = adapter.get_info();
            let why = if policy == AdapterPolicy::HardwareOnly && !is_hardware(info.device_type) {
                Some(format!(
                    "{:?} adapter, software not allowed",
                    info.device_type
                ))
            } else {
                unsuitable(adapter)
            };
            match why {
                Some(why) => {
                    rejected.push(format!("{} ({}): {why}", info.name, info.backend.to_str()));
                    false
                }
                None => true,
            }
        });
        let Some(adapter) = chosen else {
            let detail = if rejected.is_empty() {
                "no adapter found".to_string()
            } else {
                format!("rejected {}", rejected.join("; "))
            };
            return Err(KernelError::NoAdapter(detail));
        };

        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("nhl-kernels"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::default(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| device_error("request_device", e))?;

        // wgpu panics on an error no scope captures unless a handler is installed; keep the
        // message for the next sync to report instead.
        let uncaptured = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
        }));

        Ok(Arc::new(Self {
            device,
            queue,
            limits,
            report: AdapterReport {
                name: info.name,
                backend: info.backend,
                device_type: info.device_type,
                driver: format!("{} {}", info.driver, info.driver_info)
                    .trim()
                    .to_string(),
            },
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            uncaptured,
        }))
    }

    /// The adapter in use.
    pub fn adapter(&self) -> &AdapterReport {
        &self.report
    }

    /// Runs `f` inside validation and out-of-memory error scopes and turns what they catch into
    /// [`KernelError::Device`] for `op`.
    pub(crate) fn scoped<T>(
        &self,
        op: &'static str,
        f: impl FnOnce() -> T,
    ) -> Result<T, KernelError> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let v = pollster::block_on(validation.pop());
        let o = pollster::block_on(oom.pop());
        match v.or(o) {
            Some(e) => Err(device_error(op, e)),
            None => Ok(out),
        }
    }

    /// The error wgpu raised outside every scope since the last call, if any.
    pub(crate) fn take_uncaptured(&self, op: &'static str) -> Result<(), KernelError> {
        let msg = self
            .uncaptured
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match msg {
            Some(m) => Err(device_error(op, m)),
            None => Ok(()),
        }
    }

    fn module(&self, shader: Shader) -> Result<Arc<wgpu::ShaderModule>, KernelError> {
        let mut modules = self.modules.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = modules.get(&shader) {
            return Ok(Arc::clone(m));
        }
        let module = self.scoped("create_shader_module", || {
            self.device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(shader.file_name()),
                    source: wgpu::ShaderSource::Wgsl(Cow::Borrowed(shader.source())),
                })
        })?;
        let module = Arc::new(module);
        modules.insert(shader, Arc::clone(&module));
        Ok(module)
    }

    /// The pipeline of `kernel` specialised with `values` (one per name in
    /// `kernel.overrides`), built on first use and cached.
    pub(crate) fn pipeline(
        &self,
        kernel: &'static Kernel,
        values: &[u32],
    ) -> Result<Arc<Pipeline>, KernelError> {
        let key = (kernel, values.to_vec());
        if let Some(p) = self
            .pipelines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(Arc::clone(p));
        }
        let module = self.module(kernel.shader)?;
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: wgpu::BufferSize::new(PARAM_BYTES),
            },
            count: None,
        }];
        entries.extend(kernel.bindings.iter().map(|&(binding, access)| {
            wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: access == Access::Read,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            }
        }));
        let constants: Vec<(&str, f64)> = kernel
            .overrides
            .iter()
            .zip(values)
            .map(|(&n, &v)| (n, f64::from(v)))
            .collect();
        let built = self.scoped("create_compute_pipeline", || {
            let layout = self
                .device
                .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(kernel.entry),
                    entries: &entries,
                });
            let pipeline_layout =
                self.device
                    .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                        label: Some(kernel.entry),
                        bind_group_layouts: &[Some(&layout)],
                        immediate_size: 0,
                    });
            let pipeline = self
                .device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(kernel.entry),
                    layout: Some(&pipeline_layout),
                    module: &module,
                    entry_point: Some(kernel.entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &constants,
                        // Every kernel writes its workgroup memory before reading it.
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                });
            Pipeline { pipeline, layout }
        })?;
        let built = Arc::new(built);
        self.pipelines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, Arc::clone(&built));
        Ok(built)
    }
}

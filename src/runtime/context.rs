//! Device acquisition: which adapter to use and how to open it. Kept apart from the kernels
//! so tests and embedders can hand in a device of their own (`GpuContext::from_parts`).

use super::buffer::GpuTensor;
use super::error::{GpuError, GpuResult};
use super::pipeline::PipelineCache;
use serde::Serialize;
use std::sync::{Arc, Mutex, OnceLock};

/// Which wgpu backend to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

impl BackendChoice {
    pub fn to_backends(self) -> wgpu::Backends {
        match self {
            BackendChoice::Vulkan => wgpu::Backends::VULKAN,
            BackendChoice::Metal => wgpu::Backends::METAL,
            BackendChoice::Dx12 => wgpu::Backends::DX12,
            BackendChoice::Gl => wgpu::Backends::GL,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "vulkan" | "vk" => Some(Self::Vulkan),
            "metal" | "mtl" => Some(Self::Metal),
            "dx12" | "d3d12" => Some(Self::Dx12),
            "gl" | "gles" | "opengl" => Some(Self::Gl),
            _ => None,
        }
    }
}

/// How to pick an adapter. `Default` means: any backend, the best device type available.
#[derive(Clone, Debug, Default)]
pub struct AdapterOptions {
    pub backend: Option<BackendChoice>,
    /// Case-insensitive substring of the adapter's name.
    pub adapter_name: Option<String>,
    /// Only software (CPU) adapters, such as Mesa's lavapipe or llvmpipe.
    pub cpu_fallback: bool,
}

impl AdapterOptions {
    /// Fills unset fields from `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`.
    pub fn with_env(mut self) -> GpuResult<Self> {
        if self.backend.is_none() {
            if let Ok(v) = std::env::var("WGPU_BACKEND") {
                if !v.trim().is_empty() {
                    self.backend = Some(BackendChoice::parse(&v).ok_or_else(|| {
                        GpuError::InvalidArgument(format!(
                            "WGPU_BACKEND='{v}' is not one of vulkan, metal, dx12, gl"
                        ))
                    })?);
                }
            }
        }
        if self.adapter_name.is_none() {
            if let Ok(v) = std::env::var("WGPU_ADAPTER_NAME") {
                if !v.trim().is_empty() {
                    self.adapter_name = Some(v);
                }
            }
        }
        Ok(self)
    }

    fn backends(&self) -> wgpu::Backends {
        match self.backend {
            Some(b) => b.to_backends(),
            None => {
                wgpu::Backends::VULKAN
                    | wgpu::Backends::METAL
                    | wgpu::Backends::DX12
                    | wgpu::Backends::GL
            }
        }
    }

    fn describe_filter(&self) -> String {
        let mut parts = Vec::new();
        if let Some(b) = self.backend {
            parts.push(format!("backend {b:?}"));
        }
        if let Some(n) = &self.adapter_name {
            parts.push(format!("name containing '{n}'"));
        }
        if self.cpu_fallback {
            parts.push("software (CPU) only".to_string());
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" matching {}", parts.join(", "))
        }
    }
}

/// What we report about an adapter (`gkl-gpu info`).
#[derive(Clone, Debug, Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub vendor: u32,
    pub device: u32,
}

impl AdapterSummary {
    pub fn from_info(info: &wgpu::AdapterInfo) -> Self {
        AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend).to_lowercase(),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            vendor: info.vendor,
            device: info.device,
        }
    }

    /// One line, as printed at start-up so a user knows where the work runs.
    pub fn one_line(&self) -> String {
        let drv = if self.driver_info.is_empty() {
            self.driver.clone()
        } else {
            format!("{} {}", self.driver, self.driver_info)
        };
        format!(
            "{} ({}, {}, {})",
            self.name,
            self.backend,
            self.device_type,
            drv.trim()
        )
    }
}

fn is_cpu(info: &wgpu::AdapterInfo) -> bool {
    if info.device_type == wgpu::DeviceType::Cpu {
        return true;
    }
    // GL reports llvmpipe as "Other"; recognise Mesa's software rasterisers by name.
    let n = info.name.to_ascii_lowercase();
    n.contains("llvmpipe")
        || n.contains("lavapipe")
        || n.contains("softpipe")
        || n.contains("swiftshader")
}

/// Preference order: real GPUs first, then software; Vulkan before the others on ties.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let t = if is_cpu(info) {
        3
    } else {
        match info.device_type {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            _ => 3,
        }
    };
    let b = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (t, b)
}

fn new_instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

const NO_ADAPTER_HINT: &str = "On Linux, a software adapter comes with Mesa's Vulkan driver: \
    `apt-get install mesa-vulkan-drivers libvulkan1` (Debian/Ubuntu; on Debian 12 add \
    `-t bookworm-backports` for the much faster Mesa 25), or use `--backend gl` where Mesa's \
    EGL/llvmpipe is installed. Run `gkl-gpu info` to see every adapter found.";

/// Every adapter the enabled backends can see, best first.
pub fn list_adapters(opts: &AdapterOptions) -> Vec<wgpu::Adapter> {
    let instance = new_instance(opts.backends());
    let mut adapters = pollster::block_on(instance.enumerate_adapters(opts.backends()));
    adapters.sort_by_key(|a| rank(&a.get_info()));
    adapters
}

fn select_adapter(opts: &AdapterOptions) -> GpuResult<(wgpu::Instance, wgpu::Adapter)> {
    let instance = new_instance(opts.backends());
    let mut adapters = pollster::block_on(instance.enumerate_adapters(opts.backends()));
    adapters.retain(|a| {
        let info = a.get_info();
        let name_ok = opts
            .adapter_name
            .as_ref()
            .is_none_or(|n| info.name.to_lowercase().contains(&n.to_lowercase()));
        let cpu_ok = !opts.cpu_fallback || is_cpu(&info);
        name_ok && cpu_ok
    });
    adapters.sort_by_key(|a| rank(&a.get_info()));
    match adapters.into_iter().next() {
        Some(a) => Ok((instance, a)),
        None => Err(GpuError::NoAdapter {
            filter: opts.describe_filter(),
            hint: NO_ADAPTER_HINT.to_string(),
        }),
    }
}

/// An open device with its queue and the pipeline cache. Cheap to clone (all handles are shared).
#[derive(Clone)]
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter_info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// Kernels use their subgroup sources (`ShaderDef::subgroup_source`): a CPU adapter
    /// with subgroups of at least 4 lanes. Read when a shader is first compiled.
    pub subgroup_kernels: bool,
    pub(crate) pipelines: Arc<PipelineCache>,
    lost: Arc<Mutex<Option<String>>>,
    dummies: Arc<OnceLock<(GpuTensor, GpuTensor)>>,
}

impl GpuContext {
    /// Picks an adapter by `opts` and opens a device with the adapter's own limits.
    pub fn new(opts: &AdapterOptions) -> GpuResult<Self> {
        let (_instance, adapter) = select_adapter(opts)?;
        Self::open(&adapter)
    }

    /// Opens a device on a given adapter, asking for everything it offers (not the downlevel defaults).
    pub fn open(adapter: &wgpu::Adapter) -> GpuResult<Self> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        // Only features that kernels may use; each is optional.
        let wanted = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SUBGROUP;
        let features = adapter.features() & wanted;
        let desc = wgpu::DeviceDescriptor {
            label: Some("gkl-gpu"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc)).map_err(|e| {
            GpuError::RequestDevice {
                adapter: info.name.clone(),
                reason: e.to_string(),
            }
        })?;
        Ok(Self::from_parts(device, queue, info))
    }

    /// Wraps a device opened elsewhere (tests, embedding applications).
    pub fn from_parts(
        device: wgpu::Device,
        queue: wgpu::Queue,
        adapter_info: wgpu::AdapterInfo,
    ) -> Self {
        let lost = Arc::new(Mutex::new(None));
        let lost2 = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if let Ok(mut g) = lost2.lock() {
                *g = Some(format!("{reason:?}: {msg}"));
            }
        });
        // Errors outside an error scope would otherwise panic inside wgpu; record them instead,
        // and `check_errors`-style scopes in the launchers report them with context.
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
            eprintln!("gkl-gpu: uncaptured wgpu error: {e}");
        }));
        let subgroup_kernels = device.features().contains(wgpu::Features::SUBGROUP)
            && adapter_info.device_type == wgpu::DeviceType::Cpu
            && adapter_info.subgroup_min_size >= 4;
        GpuContext {
            limits: device.limits(),
            features: device.features(),
            subgroup_kernels,
            device,
            queue,
            adapter_info,
            pipelines: Arc::new(PipelineCache::default()),
            lost,
            dummies: Arc::new(OnceLock::new()),
        }
    }

    /// Two small placeholder buffers for bindings a kernel variant does not use (one for a
    /// read slot, one for a read-write slot, so they never alias within a launch).
    pub fn dummies(&self) -> GpuResult<&(GpuTensor, GpuTensor)> {
        if let Some(d) = self.dummies.get() {
            return Ok(d);
        }
        let d = (
            self.tensor_zeros("unused-read", 4)?,
            self.tensor_zeros("unused-write", 4)?,
        );
        Ok(self.dummies.get_or_init(|| d))
    }

    pub fn summary(&self) -> AdapterSummary {
        AdapterSummary::from_info(&self.adapter_info)
    }

    pub fn is_software(&self) -> bool {
        is_cpu(&self.adapter_info)
    }

    /// Fails if the device was lost since the last call.
    pub fn check_lost(&self) -> GpuResult<()> {
        if let Ok(g) = self.lost.lock() {
            if let Some(m) = g.as_ref() {
                return Err(GpuError::DeviceLost(m.clone()));
            }
        }
        Ok(())
    }

    /// Marks the device as lost, as the driver's device-lost callback would: every later
    /// submission, readback and `check_lost` fails with [`GpuError::DeviceLost`]. For fault
    /// injection in tests (`GKL_GPU_FAULT`); the device itself keeps working.
    #[doc(hidden)]
    pub fn inject_device_loss(&self, message: &str) {
        if let Ok(mut g) = self.lost.lock() {
            *g = Some(format!("injected: {message}"));
        }
    }

    /// Blocks until all submitted work is done.
    pub fn wait(&self) -> GpuResult<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Internal {
                context: "device poll".into(),
                description: e.to_string(),
            })?;
        self.check_lost()
    }

    /// Runs `f` inside validation and out-of-memory error scopes and turns a captured error
    /// into a typed one naming `context`.
    pub fn scoped<T>(&self, context: &str, f: impl FnOnce() -> T) -> GpuResult<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let v = pollster::block_on(val.pop());
        let o = pollster::block_on(oom.pop());
        if let Some(e) = v.or(o) {
            return Err(GpuError::from_wgpu(context, e));
        }
        self.check_lost()?;
        Ok(out)
    }
}

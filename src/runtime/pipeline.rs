//! Shader registry and the pipeline cache, keyed by (shader, entry point, override constants).

use super::context::GpuContext;
use super::error::{GpuError, GpuResult};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How a binding is declared in WGSL; each shader file keeps one binding list for all its entry
/// points, so one explicit layout serves every pipeline built from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Uniform,
    Read,
    ReadWrite,
}

use Slot::{Read as R, ReadWrite as W, Uniform as U};

/// A kernel file: its name, its WGSL (library files from `shaders/lib/` prepended), and its bindings.
pub struct ShaderDef {
    pub name: &'static str,
    pub source: &'static str,
    /// The same kernels for CPU adapters with subgroups ([`GpuContext::subgroup_kernels`]), where
    /// they differ: the flow kernels with `lib/flow_tiles_sg.wgsl` in place of
    /// `lib/flow_tiles.wgsl` (tile loads shared by subgroup broadcasts; see that file).
    pub subgroup_source: Option<&'static str>,
    /// A build with larger private arrays for the pipelines the sources above cannot serve.
    pub wide: Option<WideDef>,
    pub slots: &'static [Slot],
}

/// The wide build of a kernel file: the flow kernels with `lib/flow_limits_wide.wgsl` in place of
/// `lib/flow_limits.wgsl` (WGSL sizes private arrays with constants only, so a flow of dim 128
/// needs other sources, and small flows keep the small arrays they are fast with).
pub struct WideDef {
    pub source: &'static str,
    pub subgroup_source: Option<&'static str>,
    /// The narrow sources serve a pipeline whose override constants stay within these bounds
    /// (name, largest value); one above any of them gets the wide sources.
    pub narrow_limits: &'static [(&'static str, f64)],
}

impl ShaderDef {
    /// Whether a pipeline with these override constants needs the wide sources.
    pub fn needs_wide(&self, constants: Constants<'_>) -> bool {
        self.wide.as_ref().is_some_and(|w| {
            w.narrow_limits
                .iter()
                .any(|(name, max)| constants.iter().any(|(k, v)| k == name && v > max))
        })
    }

    /// The WGSL of one build: wide or not, with the subgroup tile loads or not (each falls back
    /// to the plain source where the definition has no such variant).
    pub fn source_for(&self, wide: bool, subgroup: bool) -> &'static str {
        let (plain, sg) = match (&self.wide, wide) {
            (Some(w), true) => (w.source, w.subgroup_source),
            _ => (self.source, self.subgroup_source),
        };
        sg.filter(|_| subgroup).unwrap_or(plain)
    }
}

/// One build of `flow_rows`: its shared pieces with the given capacity limits
/// (`lib/flow_limits*.wgsl`) and tile loads (`lib/flow_tiles*.wgsl`).
macro_rules! flow_rows_source {
    ($limits:literal, $tiles:literal) => {
        concat!(
            include_str!("../../shaders/lib/philox.wgsl"),
            include_str!("../../shaders/lib/flow_common.wgsl"),
            include_str!(concat!("../../shaders/lib/", $limits, ".wgsl")),
            include_str!(concat!("../../shaders/lib/", $tiles, ".wgsl")),
            include_str!("../../shaders/flow_rows.wgsl")
        )
    };
}

/// Every kernel under `shaders/`, compiled into the binary. A test checks that this list and the
/// directory agree, and validates each one with naga.
pub const SHADERS: &[ShaderDef] = &[
    ShaderDef {
        name: "dense",
        source: concat!(
            include_str!("../../shaders/lib/activations.wgsl"),
            include_str!("../../shaders/dense.wgsl")
        ),
        subgroup_source: None,
        wide: None,
        slots: &[U, R, R, R, R, W, W],
    },
    ShaderDef {
        name: "elementwise",
        source: concat!(
            include_str!("../../shaders/lib/activations.wgsl"),
            include_str!("../../shaders/elementwise.wgsl")
        ),
        subgroup_source: None,
        wide: None,
        slots: &[U, R, R, W],
    },
    ShaderDef {
        name: "reduce",
        source: include_str!("../../shaders/reduce.wgsl"),
        subgroup_source: None,
        wide: None,
        slots: &[U, R, W],
    },
    ShaderDef {
        name: "adam",
        source: include_str!("../../shaders/adam.wgsl"),
        subgroup_source: None,
        wide: None,
        slots: &[U, W, W, W, W, W],
    },
    ShaderDef {
        name: "philox",
        source: concat!(
            include_str!("../../shaders/lib/philox.wgsl"),
            include_str!("../../shaders/philox.wgsl")
        ),
        subgroup_source: None,
        wide: None,
        slots: &[U, W],
    },
    ShaderDef {
        name: "gather",
        source: include_str!("../../shaders/gather.wgsl"),
        subgroup_source: None,
        wide: None,
        slots: &[U, R, R, R, R, W, W],
    },
    ShaderDef {
        name: "loss",
        source: include_str!("../../shaders/loss.wgsl"),
        subgroup_source: None,
        wide: None,
        slots: &[U, R, R, W, W],
    },
    ShaderDef {
        name: "flow_rows",
        source: flow_rows_source!("flow_limits", "flow_tiles"),
        subgroup_source: Some(flow_rows_source!("flow_limits", "flow_tiles_sg")),
        // Flows of dim > 32 (models::flow::MAX_DIM is the wide build's MAXD).
        wide: Some(WideDef {
            source: flow_rows_source!("flow_limits_wide", "flow_tiles"),
            subgroup_source: Some(flow_rows_source!("flow_limits_wide", "flow_tiles_sg")),
            narrow_limits: &[("D", 32.0)],
        }),
        slots: &[U, R, R, R, R, W, W, W],
    },
    ShaderDef {
        name: "flow_wgrad",
        source: concat!(
            include_str!("../../shaders/lib/flow_common.wgsl"),
            include_str!("../../shaders/lib/flow_tiles.wgsl"),
            include_str!("../../shaders/flow_wgrad.wgsl")
        ),
        subgroup_source: Some(concat!(
            include_str!("../../shaders/lib/flow_common.wgsl"),
            include_str!("../../shaders/lib/flow_tiles_sg.wgsl"),
            include_str!("../../shaders/flow_wgrad.wgsl")
        )),
        // Its private arrays do not grow with the flow's shape.
        wide: None,
        slots: &[U, R, R, R, R, W],
    },
    ShaderDef {
        name: "propose",
        source: concat!(
            include_str!("../../shaders/lib/philox.wgsl"),
            include_str!("../../shaders/propose.wgsl")
        ),
        subgroup_source: None,
        wide: None,
        slots: &[U, R, R, R, W, W],
    },
    ShaderDef {
        name: "accept",
        source: concat!(
            include_str!("../../shaders/lib/philox.wgsl"),
            include_str!("../../shaders/accept.wgsl")
        ),
        subgroup_source: None,
        wide: None,
        slots: &[U, R, R, R, W, W, W],
    },
    ShaderDef {
        name: "gkl",
        source: include_str!("../../shaders/gkl.wgsl"),
        subgroup_source: None,
        wide: None,
        slots: &[U, R, R, R, W, W],
    },
];

pub fn shader_def(name: &str) -> GpuResult<&'static ShaderDef> {
    SHADERS
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| GpuError::UnknownShader(name.to_string()))
}

/// Override constants of a pipeline, e.g. `[("ACT", 2.0)]`.
pub type Constants<'a> = &'a [(&'a str, f64)];

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    shader: &'static str,
    /// Built from the wide sources ([`ShaderDef::wide`]).
    wide: bool,
    entry: &'static str,
    constants: Vec<(String, u64)>,
}

#[derive(Default)]
pub struct PipelineCache {
    /// Per (shader, wide build).
    modules: Mutex<HashMap<(&'static str, bool), wgpu::ShaderModule>>,
    /// Per shader: one layout serves both builds (same bindings).
    layouts: Mutex<HashMap<&'static str, wgpu::BindGroupLayout>>,
    pipelines: Mutex<HashMap<Key, Arc<wgpu::ComputePipeline>>>,
}

impl PipelineCache {
    pub fn len(&self) -> usize {
        self.pipelines.lock().map(|p| p.len()).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl GpuContext {
    fn module(&self, shader: &'static str, wide: bool) -> GpuResult<wgpu::ShaderModule> {
        let mut modules = self
            .pipelines
            .modules
            .lock()
            .expect("module cache poisoned");
        if let Some(m) = modules.get(&(shader, wide)) {
            return Ok(m.clone());
        }
        let source = shader_def(shader)?.source_for(wide, self.subgroup_kernels);
        let what = if wide { " (wide)" } else { "" };
        let m = self.scoped(&format!("compiling shader '{shader}'{what}"), || {
            self.device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(shader),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                })
        })?;
        modules.insert((shader, wide), m.clone());
        Ok(m)
    }

    /// The bind group layout shared by every entry point of `shader` (both builds).
    pub fn layout(&self, shader: &'static str) -> GpuResult<wgpu::BindGroupLayout> {
        let mut layouts = self
            .pipelines
            .layouts
            .lock()
            .expect("layout cache poisoned");
        if let Some(l) = layouts.get(shader) {
            return Ok(l.clone());
        }
        let entries: Vec<wgpu::BindGroupLayoutEntry> = shader_def(shader)?
            .slots
            .iter()
            .enumerate()
            .map(|(i, slot)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match slot {
                    Slot::Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Slot::Read | Slot::ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage {
                            read_only: *slot == Slot::Read,
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        let l = self.scoped(&format!("bind group layout of '{shader}'"), || {
            self.device
                .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(shader),
                    entries: &entries,
                })
        })?;
        layouts.insert(shader, l.clone());
        Ok(l)
    }

    /// A compute pipeline for `shader::entry` with the given override constants; built once, then
    /// served from the cache.
    pub fn pipeline(
        &self,
        shader: &'static str,
        entry: &'static str,
        constants: Constants<'_>,
    ) -> GpuResult<Arc<wgpu::ComputePipeline>> {
        let wide = shader_def(shader)?.needs_wide(constants);
        let key = Key {
            shader,
            wide,
            entry,
            constants: constants
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_bits()))
                .collect(),
        };
        if let Some(p) = self
            .pipelines
            .pipelines
            .lock()
            .expect("pipeline cache poisoned")
            .get(&key)
        {
            return Ok(p.clone());
        }
        let module = self.module(shader, wide)?;
        let bgl = self.layout(shader)?;
        let consts: Vec<(&str, f64)> = constants.to_vec();
        let label = format!("{shader}::{entry}{}", if wide { " (wide)" } else { "" });
        let p = self.scoped(&format!("building pipeline {label} {constants:?}"), || {
            let layout = self
                .device
                .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some(&label),
                    bind_group_layouts: &[Some(&bgl)],
                    immediate_size: 0,
                });
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&label),
                    layout: Some(&layout),
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &consts,
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                })
        })?;
        let p = Arc::new(p);
        self.pipelines
            .pipelines
            .lock()
            .expect("pipeline cache poisoned")
            .insert(key, p.clone());
        Ok(p)
    }
}

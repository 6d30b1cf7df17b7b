//! The GPU runtime: adapter selection, device, pipeline cache, buffers and launches.

pub mod buffer;
pub mod context;
pub mod error;
pub mod pipeline;

pub use buffer::{groups_1d, Bind, Dispatch, GpuTensor};
pub use context::{list_adapters, AdapterOptions, AdapterSummary, BackendChoice, GpuContext};
pub use error::{GpuError, GpuResult};
pub use pipeline::{ShaderDef, Slot, WideDef, SHADERS};

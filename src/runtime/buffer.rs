//! Long-lived GPU buffers, uploads, readback, and recorded dispatches.

use super::context::GpuContext;
use super::error::{GpuError, GpuResult};
use std::sync::Arc;
use wgpu::util::DeviceExt;

/// A storage buffer of 4-byte words (f32 or u32), or a view of `len` words at `offset` into one
/// (parameter arenas hand out views, so one optimizer launch updates every tensor).
/// Lives as long as the model or trainer that owns it.
#[derive(Clone, Debug)]
pub struct GpuTensor {
    pub buffer: wgpu::Buffer,
    /// Start, in 4-byte elements, within `buffer`.
    pub offset: usize,
    /// Number of 4-byte elements.
    pub len: usize,
    pub label: String,
}

impl GpuTensor {
    pub fn bytes(&self) -> u64 {
        (self.len * 4) as u64
    }

    /// A view of `len` elements at `offset` (relative to this tensor). Bound as a slice, the
    /// offset must meet the adapter's storage offset alignment (256 bytes on most).
    pub fn view(&self, label: &str, offset: usize, len: usize) -> GpuTensor {
        assert!(
            offset + len <= self.len,
            "view {label}: {offset}+{len} > {}",
            self.len
        );
        GpuTensor {
            buffer: self.buffer.clone(),
            offset: self.offset + offset,
            len,
            label: label.to_string(),
        }
    }
}

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

impl GpuContext {
    fn check_size(&self, label: &str, len: usize) -> GpuResult<()> {
        let bytes = (len.max(1) * 4) as u64;
        let max = self
            .limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size);
        if bytes > max {
            return Err(GpuError::BufferTooLarge {
                label: label.to_string(),
                bytes,
                max,
            });
        }
        Ok(())
    }

    /// A storage buffer holding `data` (f32 or u32 words).
    pub fn tensor_from<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> GpuResult<GpuTensor> {
        assert_eq!(std::mem::size_of::<T>(), 4, "tensors hold 4-byte words");
        self.check_size(label, data.len())?;
        let contents: &[u8] = if data.is_empty() {
            &[0u8; 16]
        } else {
            bytemuck::cast_slice(data)
        };
        let buffer = self.scoped(&format!("creating buffer '{label}'"), || {
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents,
                    usage: STORAGE,
                })
        })?;
        Ok(GpuTensor {
            buffer,
            offset: 0,
            len: data.len(),
            label: label.to_string(),
        })
    }

    /// A zero-filled storage buffer of `len` words.
    pub fn tensor_zeros(&self, label: &str, len: usize) -> GpuResult<GpuTensor> {
        self.check_size(label, len)?;
        let buffer = self.scoped(&format!("creating buffer '{label}'"), || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                // wgpu zero-initialises new buffers.
                size: (len.max(4) * 4) as u64,
                usage: STORAGE,
                mapped_at_creation: false,
            })
        })?;
        Ok(GpuTensor {
            buffer,
            offset: 0,
            len,
            label: label.to_string(),
        })
    }

    /// A uniform buffer holding one `T` (updated later with `write_uniform`).
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::bytes_of(value),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
    }

    pub fn write_uniform<T: bytemuck::Pod>(&self, buffer: &wgpu::Buffer, value: &T) {
        self.queue
            .write_buffer(buffer, 0, bytemuck::bytes_of(value));
    }

    /// Copies `data` into `t` starting at element `offset` (staged; takes effect at the next submit).
    pub fn write<T: bytemuck::Pod>(
        &self,
        t: &GpuTensor,
        offset: usize,
        data: &[T],
    ) -> GpuResult<()> {
        if offset + data.len() > t.len {
            return Err(GpuError::InvalidArgument(format!(
                "writing {} elements at {} into '{}' of length {}",
                data.len(),
                offset,
                t.label,
                t.len
            )));
        }
        if !data.is_empty() {
            self.queue.write_buffer(
                &t.buffer,
                ((t.offset + offset) * 4) as u64,
                bytemuck::cast_slice(data),
            );
        }
        Ok(())
    }

    /// Reads a whole tensor back to the host (waits for the GPU).
    pub fn read<T: bytemuck::Pod>(&self, t: &GpuTensor) -> GpuResult<Vec<T>> {
        self.read_range(t, 0, t.len)
    }

    /// Reads `len` elements starting at `offset`; only these bytes cross the bus.
    pub fn read_range<T: bytemuck::Pod>(
        &self,
        t: &GpuTensor,
        offset: usize,
        len: usize,
    ) -> GpuResult<Vec<T>> {
        if offset + len > t.len {
            return Err(GpuError::InvalidArgument(format!(
                "reading {len} elements at {offset} from '{}' of length {}",
                t.label, t.len
            )));
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        let bytes = (len * 4) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.scoped(&format!("reading back '{}'", t.label), || {
            let mut enc = self.device.create_command_encoder(&Default::default());
            enc.copy_buffer_to_buffer(
                &t.buffer,
                ((t.offset + offset) * 4) as u64,
                &staging,
                0,
                bytes,
            );
            self.queue.submit([enc.finish()]);
        })?;
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        let map_err = |reason: String| GpuError::Readback {
            label: t.label.clone(),
            reason,
        };
        rx.recv()
            .map_err(|e| map_err(e.to_string()))?
            .map_err(|e| map_err(e.to_string()))?;
        let view = slice
            .get_mapped_range()
            .map_err(|e| map_err(e.to_string()))?;
        let out = bytemuck::cast_slice::<u8, T>(&view).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }
}

impl GpuContext {
    /// Copies `src` into `dst` on the GPU (same length), as its own submission.
    pub fn copy(&self, src: &GpuTensor, dst: &GpuTensor) -> GpuResult<()> {
        if src.len != dst.len {
            return Err(GpuError::InvalidArgument(format!(
                "copy '{}' ({}) into '{}' ({}): lengths differ",
                src.label, src.len, dst.label, dst.len
            )));
        }
        self.scoped(
            &format!("copying '{}' to '{}'", src.label, dst.label),
            || {
                let mut enc = self.device.create_command_encoder(&Default::default());
                enc.copy_buffer_to_buffer(
                    &src.buffer,
                    (src.offset * 4) as u64,
                    &dst.buffer,
                    (dst.offset * 4) as u64,
                    src.bytes(),
                );
                self.queue.submit([enc.finish()]);
            },
        )
    }
}

/// Workgroup counts for `n` invocations of a 1-D kernel with workgroup size `wg`, folded into
/// two dimensions when the count exceeds the per-dimension limit (kernels rebuild the flat id).
pub fn groups_1d(n: usize, wg: u32) -> [u32; 3] {
    let g = n.div_ceil(wg as usize).max(1);
    let max = 65_535usize;
    if g <= max {
        [g as u32, 1, 1]
    } else {
        let y = g.div_ceil(max);
        [g.div_ceil(y) as u32, y as u32, 1]
    }
}

/// One recorded kernel launch: pipeline, its bound buffers, and its grid. Built once, replayed
/// every step.
#[derive(Clone)]
pub struct Dispatch {
    pub label: String,
    pub pipeline: Arc<wgpu::ComputePipeline>,
    pub bind_group: wgpu::BindGroup,
    pub groups: [u32; 3],
}

/// A binding: a storage tensor (or a view into one) or a uniform buffer.
pub enum Bind<'a> {
    T(&'a GpuTensor),
    U(&'a wgpu::Buffer),
}

impl GpuContext {
    /// Records a launch of `shader::entry` with override `constants` over `bindings` (in binding order).
    pub fn dispatch(
        &self,
        shader: &'static str,
        entry: &'static str,
        constants: &[(&str, f64)],
        bindings: &[Bind<'_>],
        groups: [u32; 3],
    ) -> GpuResult<Dispatch> {
        let pipeline = self.pipeline(shader, entry, constants)?;
        let layout = self.layout(shader)?;
        let label = format!("{shader}::{entry}");
        let entries: Vec<wgpu::BindGroupEntry> = bindings
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: match b {
                    Bind::T(t) if t.offset == 0 && t.bytes() >= t.buffer.size() => {
                        t.buffer.as_entire_binding()
                    }
                    Bind::T(t) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &t.buffer,
                        offset: (t.offset * 4) as u64,
                        size: std::num::NonZeroU64::new(t.bytes().max(4)),
                    }),
                    Bind::U(u) => u.as_entire_binding(),
                },
            })
            .collect();
        let max = self.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            return Err(GpuError::InvalidArgument(format!(
                "{label}: grid {groups:?} exceeds the adapter's {max} workgroups per dimension"
            )));
        }
        let bind_group = self.scoped(&format!("binding {label}"), || {
            self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(&label),
                layout: &layout,
                entries: &entries,
            })
        })?;
        Ok(Dispatch {
            label,
            pipeline,
            bind_group,
            groups,
        })
    }

    /// Encodes `dispatches` in order into one compute pass of `encoder`. wgpu inserts the
    /// barriers between dependent launches.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder, dispatches: &[&Dispatch]) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes: None,
        });
        for d in dispatches {
            if d.groups.contains(&0) {
                continue;
            }
            pass.set_pipeline(&d.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[]);
            pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
        }
    }

    /// Runs `dispatches` as one submission (does not wait; readback or `wait` does).
    pub fn run(&self, dispatches: &[&Dispatch]) -> GpuResult<()> {
        self.scoped("submitting kernels", || {
            let mut enc = self.device.create_command_encoder(&Default::default());
            self.encode(&mut enc, dispatches);
            self.queue.submit([enc.finish()]);
        })
    }
}

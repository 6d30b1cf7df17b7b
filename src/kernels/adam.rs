//! Adam (bias-corrected, optional decoupled weight decay, global-norm clipping) on a flat
//! parameter arena (`shaders/adam.wgsl`), with its f64 reference.

use crate::runtime::{groups_1d, Bind, Dispatch, GpuContext, GpuResult, GpuTensor};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Decoupled (AdamW) weight decay; 0 disables it.
    pub weight_decay: f32,
    /// Global gradient-norm clip; ≤ 0 disables it.
    pub max_norm: f32,
    /// Where ε goes: false adds it to √v̂ after bias correction (PyTorch's Adam); true adds it to
    /// √v and folds the bias corrections into the step size, lr·√(1−β₂ᵗ)/(1−β₁ᵗ)·m/(√v + ε)
    /// (Kingma and Ba's efficient form, and scikit-learn's, which the C2ST reproduces).
    #[serde(default)]
    pub eps_on_raw_v: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            max_norm: 5.0,
            eps_on_raw_v: false,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AdamParams {
    pub n4: u32,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub max_norm: f32,
    /// 1: ε on √v (`AdamConfig::eps_on_raw_v`).
    pub eps_on_raw_v: u32,
}

impl AdamParams {
    pub fn new(len: usize, c: &AdamConfig) -> Self {
        AdamParams {
            n4: len.div_ceil(4) as u32,
            lr: c.lr,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            weight_decay: c.weight_decay,
            max_norm: c.max_norm,
            eps_on_raw_v: u32::from(c.eps_on_raw_v),
        }
    }
}

/// Optimizer state on the GPU for one parameter arena (length a multiple of 4).
pub struct Adam {
    pub config: AdamConfig,
    pub params_buf: wgpu::Buffer,
    pub m: GpuTensor,
    pub v: GpuTensor,
    /// [step (u32), clip scale, gradient norm, pad]
    pub state: GpuTensor,
    pub norm_dispatch: Dispatch,
    pub step_dispatch: Dispatch,
}

const WG: u32 = 256;

impl Adam {
    pub fn new(
        ctx: &GpuContext,
        config: AdamConfig,
        theta: &GpuTensor,
        grad: &GpuTensor,
    ) -> GpuResult<Self> {
        assert_eq!(
            theta.len % 4,
            0,
            "parameter arena must be padded to a multiple of 4"
        );
        assert_eq!(theta.len, grad.len);
        let params_buf = ctx.uniform("adam-params", &AdamParams::new(theta.len, &config));
        let m = ctx.tensor_zeros("adam-m", theta.len)?;
        let v = ctx.tensor_zeros("adam-v", theta.len)?;
        let state = ctx.tensor_zeros("adam-state", 4)?;
        let binds = [
            Bind::U(&params_buf),
            Bind::T(theta),
            Bind::T(grad),
            Bind::T(&m),
            Bind::T(&v),
            Bind::T(&state),
        ];
        let norm_dispatch = ctx.dispatch("adam", "grad_norm", &[], &binds, [1, 1, 1])?;
        let step_dispatch = ctx.dispatch(
            "adam",
            "adam_step",
            &[("WG", WG as f64)],
            &binds,
            groups_1d(theta.len / 4, WG),
        )?;
        Ok(Adam {
            config,
            params_buf,
            m,
            v,
            state,
            norm_dispatch,
            step_dispatch,
        })
    }

    /// The two launches of one optimizer step, to be encoded after the backward pass.
    pub fn dispatches(&self) -> [&Dispatch; 2] {
        [&self.norm_dispatch, &self.step_dispatch]
    }

    /// Changes the learning rate from the next submit on (schedules, plateaus).
    pub fn set_lr(&mut self, ctx: &GpuContext, lr: f32) {
        self.config.lr = lr;
        let n = self.m.len;
        ctx.write_uniform(&self.params_buf, &AdamParams::new(n, &self.config));
    }

    /// (step, gradient norm before clipping) of the last step; reads back 16 bytes.
    pub fn last_step(&self, ctx: &GpuContext) -> GpuResult<(u32, f32)> {
        let s: Vec<u32> = ctx.read(&self.state)?;
        Ok((s[0], f32::from_bits(s[2])))
    }
}

pub mod cpu {
    use super::AdamConfig;

    /// Plain f64 optimizer state mirroring the GPU one.
    pub struct AdamCpu {
        pub m: Vec<f64>,
        pub v: Vec<f64>,
        pub step: u32,
    }

    impl AdamCpu {
        pub fn new(n: usize) -> Self {
            AdamCpu {
                m: vec![0.0; n],
                v: vec![0.0; n],
                step: 0,
            }
        }

        /// One step; returns the gradient norm before clipping.
        pub fn step(&mut self, c: &AdamConfig, theta: &mut [f64], grad: &[f64]) -> f64 {
            let norm = grad.iter().map(|g| g * g).sum::<f64>().sqrt();
            let scale = if c.max_norm > 0.0 {
                (c.max_norm as f64 / (norm + 1e-6)).min(1.0)
            } else {
                1.0
            };
            self.step += 1;
            let t = self.step as i32;
            let (b1, b2) = (c.beta1 as f64, c.beta2 as f64);
            let bc1 = 1.0 - b1.powi(t);
            let bc2 = 1.0 - b2.powi(t);
            for i in 0..theta.len() {
                let g = grad[i] * scale;
                self.m[i] = b1 * self.m[i] + (1.0 - b1) * g;
                self.v[i] = b2 * self.v[i] + (1.0 - b2) * g * g;
                let upd = if c.eps_on_raw_v {
                    self.m[i] * (bc2.sqrt() / bc1) / (self.v[i].sqrt() + c.eps as f64)
                } else {
                    (self.m[i] / bc1) / ((self.v[i] / bc2).sqrt() + c.eps as f64)
                };
                theta[i] -= c.lr as f64 * c.weight_decay as f64 * theta[i];
                theta[i] -= c.lr as f64 * upd;
            }
            norm
        }
    }
}

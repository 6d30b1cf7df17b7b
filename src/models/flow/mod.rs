//! Conditional normalizing flows on the GPU: MAF (affine autoregressive) and the autoregressive
//! rational-quadratic neural spline flow (NSF), each a stack of transforms whose parameters come
//! from a conditional MADE, with a standard-normal base. The f64 reference is [`cpu`].
//!
//! Density direction (θ → z): for transform t = 0 … T−1, the MADE of transform t reads x_t (x_0 = θ)
//! and the context c and outputs, per dim, the parameters of an elementwise monotone map
//! x_{t+1,i} = g(x_{t,i}; params_i(x_{t,<i}, c)):
//!   MAF: z = (x − μ)·exp(−α), α = 5·tanh(a/5) (a soft clamp to ±5);
//!   NSF: monotone rational-quadratic spline with K bins on [−B, B], identity outside (linear
//!        tails), widths/heights by softmax with a minimum bin size, inner derivatives by softplus
//!        with a minimum (nflows' construction; the boundary derivatives are 1).
//! log q(θ|c) = log N(x_T; 0, I) + Σ_t Σ_i log|∂x_{t+1,i}/∂x_{t,i}|.
//! Transform t is autoregressive in the natural order of θ's dims when t is even, the reversed
//! order when t is odd (done by the MADE degrees, no data movement).
//!
//! GPU passes (`shaders/flow_rows.wgsl`, `shaders/flow_wgrad.wgsl`): one launch for the forward
//! pass (log q and a tape), one for the per-row backward pass (gradients of every pre-activation
//! and of the context), one for all weight gradients (plus a reduction launch when the rows are
//! split into chunks), one for sampling. Every MADE layer of every transform runs inside those
//! launches, each invocation carrying 4 rows. [`FlowInverseGradPlan`] differentiates the sampling
//! direction: given dL/dθ for samples θ = T⁻¹(z; c) with z held fixed, the gradients of every
//! parameter and of the context (the forward pass at θ for its tape, then `inverse_backward`:
//! implicit differentiation of each transform, dim MADE backward passes per transform, the
//! mirror image of sampling's dim forward passes; then the same weight-gradient launch).
//!
//! Parameters live in a caller-owned arena (see [`FlowConfig::arena_len`]); masked and padding
//! entries are exactly zero there and get exactly-zero gradients, so Adam keeps them zero.
//!
//! MADE: layer 0 reads [x_t, c] (the context reaches every unit of the first layer), then
//! `hidden_layers` layers of `hidden` units with the activation, then the output layer. nflows'
//! non-random degrees; note that nflows' MADE as sbi builds it (`num_blocks = 2`) has 3 hidden
//! layers, i.e. `hidden_layers = 3` here. With nflows' degrees the first dim in a transform's order
//! gets parameters that depend on neither θ nor c (its output unit sees no hidden unit); with
//! [`FlowConfig::context_every_dim`] (the default of new models) hidden units of degree 0 see the
//! context only and feed every dim, as in zuko's MADE.
//!
//! Cost on a CPU adapter (lavapipe, 2 cores, shared machine; see tests/flow_bench.rs): the kernels
//! run at ≈ 7 GFLOP per CPU-second, d = 2, e = 2, 5 transforms, hidden 50, 2 hidden layers:
//! forward + backward ≈ 2.8 ms (MAF) / 5.4 ms (NSF) of CPU time at batch 200, 58 / 104 ms at 4096
//! (with the subgroup tile loads of `shaders/lib/flow_tiles_sg.wgsl`; 25–30% more without).
//! First use of a configuration compiles its pipelines: 2–5 s each for MAF, 4–10 s for NSF on
//! lavapipe (longer for hidden widths ≤ 24, whose loops the compiler unrolls fully); Mesa keeps
//! them in its on-disk shader cache afterwards.
//!
//! Limits (private arrays of the kernels): dim ≤ 128, context_dim ≤ 128, hidden ≤ 128, bins ≤ 32.
//! Flows of dim ≤ [`NARROW_DIM`] run `flow_rows` built with `shaders/lib/flow_limits.wgsl`; wider
//! ones get the build with `shaders/lib/flow_limits_wide.wgsl` (larger private arrays for the
//! dims), which the pipeline cache picks from the override constant `D` (`ShaderDef::wide`).
//! Private memory per invocation: ≈ 22 KiB narrow, ≈ 32 KiB wide. On lavapipe the wide
//! pipelines compile in about the time the narrow ones do (3–16 s each at d = 64 and 128, hidden
//! 50, 5 transforms, shader cache off).
//! Tape memory of a [`FlowTrainPlan`]: [`FlowConfig::tape_len`] + [`FlowConfig::grad_tape_len`]
//! floats; use [`FlowLogProbPlan`] (no tape) for large evaluation batches.

pub mod cpu;

use crate::kernels::layout::pad4;
use crate::kernels::rng::RngStream;
use crate::kernels::Activation;
use crate::runtime::{groups_1d, Bind, Dispatch, GpuContext, GpuError, GpuResult, GpuTensor};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Soft clamp of the MAF log-scale: α = ALPHA_MAX · tanh(a / ALPHA_MAX).
pub const ALPHA_MAX: f64 = 5.0;
/// nflows' defaults for the spline.
pub const MIN_BIN_WIDTH: f64 = 1e-3;
pub const MIN_BIN_HEIGHT: f64 = 1e-3;
pub const MIN_DERIVATIVE: f64 = 1e-3;

/// The shift c in an inner derivative MIN_DERIVATIVE + softplus(raw + c) that makes raw = 0 give
/// derivative 1 ([`FlowConfig::spline_identity_init`]).
pub fn derivative_identity_shift() -> f64 {
    (1.0 - MIN_DERIVATIVE).exp_m1().ln()
}
/// Limits of the kernels' private arrays (`MAXD` of `shaders/lib/flow_limits_wide.wgsl`, ...).
pub const MAX_DIM: usize = 128;
/// The largest dim the narrow build of `flow_rows` serves (`MAXD` of
/// `shaders/lib/flow_limits.wgsl`); wider flows run the wide build.
pub const NARROW_DIM: usize = 32;
pub const MAX_CONTEXT: usize = 128;
pub const MAX_HIDDEN: usize = 128;
pub const MAX_BINS: usize = 32;
/// Philox stream id used by [`FlowSamplePlan::dispatches`].
pub const SAMPLE_STREAM: u32 = 0x464c_4f57;

pub const ROWS_SHADER: &str = "flow_rows";
pub const WGRAD_SHADER: &str = "flow_wgrad";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FlowKind {
    Maf,
    Nsf,
}

impl FlowKind {
    /// The MADE activation `train` and the bench use unless told otherwise: SiLU for the NSF,
    /// ReLU for MAF (BENCHMARKS.md, "The NSF at small budgets").
    pub fn default_activation(self) -> Activation {
        match self {
            FlowKind::Nsf => Activation::Silu,
            FlowKind::Maf => Activation::Relu,
        }
    }

    /// Whether `train` and the bench give every dim's map the context by default
    /// ([`FlowConfig::context_every_dim`]): measured better for the NSF, worse for MAF (one seed).
    pub fn default_context_every_dim(self) -> bool {
        self == FlowKind::Nsf
    }
}

fn d_transforms() -> usize {
    5
}
fn d_hidden() -> usize {
    50
}
fn d_layers() -> usize {
    2
}
fn d_bins() -> usize {
    10
}
fn d_tail() -> f64 {
    3.0
}
fn d_act() -> Activation {
    Activation::Tanh
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowConfig {
    pub kind: FlowKind,
    /// Dimension of θ.
    pub dim: usize,
    /// Dimension of the context (≥ 1).
    pub context_dim: usize,
    #[serde(default = "d_transforms")]
    pub transforms: usize,
    #[serde(default = "d_hidden")]
    pub hidden: usize,
    /// Hidden layers of each MADE (each followed by the activation), ≥ 1.
    #[serde(default = "d_layers")]
    pub hidden_layers: usize,
    /// NSF: spline bins.
    #[serde(default = "d_bins")]
    pub bins: usize,
    /// NSF: the spline acts on [−tail_bound, tail_bound], identity outside.
    #[serde(default = "d_tail")]
    pub tail_bound: f64,
    #[serde(default = "d_act")]
    pub act: Activation,
    /// MADE wiring. false: nflows' MADE, in which the first dim of each transform's order gets
    /// parameters that depend on neither θ nor the context, so only D − 1 of a transform's D maps
    /// see x. true: as in zuko's MADE, a share of each layer's hidden units (degree 0) sees the
    /// context only and feeds every dim, so every dim's map depends on x. Saved models from
    /// before this field read as false.
    #[serde(default)]
    pub context_every_dim: bool,
    /// NSF: inner knot derivatives are MIN_DERIVATIVE + softplus(raw + c) with c chosen so that
    /// raw = 0 gives derivative 1: a network output of zero is then the identity map (uniform
    /// bins, unit slopes), as in zuko. false: nflows' softplus(raw) (derivative ≈ 0.69 at 0).
    #[serde(default)]
    pub spline_identity_init: bool,
}

/// Derived shapes of the parameter arena; all sizes in vec4 units unless named otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowLayout {
    pub d4: usize,
    pub e4: usize,
    pub h4: usize,
    /// Transform parameters per dim (2 or 3K − 1).
    pub params_per_dim: usize,
    /// Output columns per dim (floats): 2 for MAF, pad4(3K − 1) for NSF.
    pub col_stride: usize,
    pub no4: usize,
    pub size0: usize,
    pub size_hidden: usize,
    pub size_out: usize,
    /// One transform's parameters.
    pub per_transform: usize,
    pub transforms: usize,
    pub hidden_layers: usize,
}

impl FlowLayout {
    /// Floats of all transforms (before arena alignment).
    pub fn floats(&self) -> usize {
        4 * self.per_transform * self.transforms
    }

    /// Offset (vec4) of layer l (l = hidden_layers: the output layer) within a transform.
    pub fn layer_off(&self, l: usize) -> usize {
        if l == 0 {
            0
        } else {
            self.size0 + (l - 1) * self.size_hidden
        }
    }

    /// Input blocks of layer l (its weight matrix has 4·kin4 rows, then the bias row).
    pub fn kin4(&self, l: usize) -> usize {
        if l == 0 {
            self.d4 + self.e4
        } else {
            self.h4
        }
    }

    /// Output blocks of layer l.
    pub fn n4(&self, l: usize) -> usize {
        if l == self.hidden_layers {
            self.no4
        } else {
            self.h4
        }
    }

    /// Float index in the arena of weight (row, col) of layer l of transform t (arena rows and
    /// columns: padded, bias row = 4·kin4(l)).
    pub fn index(&self, t: usize, l: usize, row: usize, col: usize) -> usize {
        4 * (t * self.per_transform + self.layer_off(l)) + row * 4 * self.n4(l) + col
    }
}

impl FlowConfig {
    /// 5 transforms, 2 hidden layers of 50, tanh, 10 bins on [−3, 3], with zuko's MADE wiring and
    /// identity-initialized splines. `gkl-gpu train` and the bench use SiLU and B = 5 instead
    /// (measured in BENCHMARKS.md, "The NSF at small budgets").
    pub fn new(kind: FlowKind, dim: usize, context_dim: usize) -> Self {
        FlowConfig {
            kind,
            dim,
            context_dim,
            transforms: d_transforms(),
            hidden: d_hidden(),
            hidden_layers: d_layers(),
            bins: d_bins(),
            tail_bound: d_tail(),
            act: d_act(),
            context_every_dim: true,
            spline_identity_init: true,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let c = self;
        if c.dim == 0 || c.dim > MAX_DIM {
            return Err(format!("flow dim {} outside 1..={MAX_DIM}", c.dim));
        }
        if c.context_dim == 0 || c.context_dim > MAX_CONTEXT {
            return Err(format!(
                "flow context_dim {} outside 1..={MAX_CONTEXT}",
                c.context_dim
            ));
        }
        if c.hidden == 0 || c.hidden > MAX_HIDDEN {
            return Err(format!("flow hidden {} outside 1..={MAX_HIDDEN}", c.hidden));
        }
        if c.hidden_layers == 0 || c.transforms == 0 {
            return Err("flow needs ≥ 1 transform and ≥ 1 hidden layer".into());
        }
        if c.kind == FlowKind::Nsf {
            if c.bins < 2 || c.bins > MAX_BINS {
                return Err(format!("flow bins {} outside 2..={MAX_BINS}", c.bins));
            }
            if !(c.tail_bound > 0.0 && c.tail_bound.is_finite()) {
                return Err(format!("flow tail_bound {} must be > 0", c.tail_bound));
            }
        }
        Ok(())
    }

    pub fn params_per_dim(&self) -> usize {
        match self.kind {
            FlowKind::Maf => 2,
            FlowKind::Nsf => 3 * self.bins - 1,
        }
    }

    pub fn layout(&self) -> FlowLayout {
        let d4 = pad4(self.dim) / 4;
        let e4 = pad4(self.context_dim) / 4;
        let h4 = pad4(self.hidden) / 4;
        let p = self.params_per_dim();
        let ps = match self.kind {
            FlowKind::Maf => 2,
            FlowKind::Nsf => pad4(p),
        };
        let no4 = pad4(self.dim * ps) / 4;
        let size0 = (4 * (d4 + e4) + 1) * h4;
        let size_hidden = (4 * h4 + 1) * h4;
        let size_out = (4 * h4 + 1) * no4;
        FlowLayout {
            d4,
            e4,
            h4,
            params_per_dim: p,
            col_stride: ps,
            no4,
            size0,
            size_hidden,
            size_out,
            per_transform: size0 + (self.hidden_layers - 1) * size_hidden + size_out,
            transforms: self.transforms,
            hidden_layers: self.hidden_layers,
        }
    }

    /// Floats the flow takes in an arena whose blocks start at multiples of `align_floats`
    /// (its length rounded up to that multiple).
    pub fn arena_len(&self, align_floats: usize) -> usize {
        let a = align_floats.max(4);
        self.layout().floats().div_ceil(a) * a
    }

    /// Freely trainable parameters (masked and padding entries excluded).
    pub fn num_params(&self) -> usize {
        cpu::FlowWeights::zeros(self).num_free(self)
    }

    /// PyTorch-style uniform(±1/√fan_in) weights and biases with the masks applied, packed into
    /// an arena block of `arena_len(align_floats)` floats.
    pub fn init_arena(&self, rng: &mut impl Rng, align_floats: usize) -> Vec<f32> {
        cpu::FlowWeights::init(self, rng).to_arena(self, align_floats)
    }

    /// Multiply-adds of one MADE pass per row (all transforms).
    pub fn macs_per_row(&self) -> f64 {
        let l = self.layout();
        let per_t = 16 * (l.d4 + l.e4) * l.h4
            + 16 * (self.hidden_layers - 1) * l.h4 * l.h4
            + 16 * l.h4 * l.no4;
        (per_t * self.transforms) as f64
    }

    /// The override constants of the flow kernels for this shape (`D` also picks the narrow or
    /// the wide build of `flow_rows`).
    pub fn constants(&self) -> Vec<(&'static str, f64)> {
        let l = self.layout();
        let need_z = matches!(self.act, Activation::Gelu | Activation::Silu);
        vec![
            ("KIND", if self.kind == FlowKind::Maf { 0.0 } else { 1.0 }),
            ("D", self.dim as f64),
            ("D4", l.d4 as f64),
            ("E", self.context_dim as f64),
            ("E4", l.e4 as f64),
            ("H", self.hidden as f64),
            ("H4", l.h4 as f64),
            ("L", self.hidden_layers as f64),
            ("T", self.transforms as f64),
            ("K", self.bins as f64),
            ("P", l.params_per_dim as f64),
            ("PS", l.col_stride as f64),
            ("PS4", (l.col_stride / 4).max(1) as f64),
            ("NO4", l.no4 as f64),
            ("SIZE0", l.size0 as f64),
            ("SIZEH", l.size_hidden as f64),
            ("TS", l.per_transform as f64),
            ("ACT", self.act.id()),
            ("NEED_Z", need_z as u8 as f64),
            ("TAIL_B", self.tail_bound),
            ("ALPHA_MAX", ALPHA_MAX),
            ("MIN_W", MIN_BIN_WIDTH),
            ("MIN_H", MIN_BIN_HEIGHT),
            ("MIN_D", MIN_DERIVATIVE),
            ("CTX_ALL", self.context_every_dim as u8 as f64),
            (
                "DV_SHIFT",
                if self.spline_identity_init {
                    derivative_identity_shift()
                } else {
                    0.0
                },
            ),
            ("RAW_SCALE", 1.0 / (self.hidden as f64).sqrt()),
        ]
    }

    fn needs_z(&self) -> bool {
        matches!(self.act, Activation::Gelu | Activation::Silu)
    }

    /// Floats of the forward tape for `rows` rows.
    pub fn tape_len(&self, rows: usize) -> usize {
        let l = self.layout();
        let t = self.transforms;
        let hs = t * self.hidden_layers * rows * l.h4;
        4 * ((t + 1) * rows * l.d4 + hs * (1 + self.needs_z() as usize) + t * rows * l.no4)
    }

    /// Floats of the gradient tape for `rows` rows.
    pub fn grad_tape_len(&self, rows: usize) -> usize {
        let l = self.layout();
        let t = self.transforms;
        4 * (t * self.hidden_layers * rows * l.h4 + t * rows * l.no4)
    }
}

/// The uniform shared by the flow kernels (`FlowParams` in `shaders/lib/flow_common.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FlowParams {
    pub rows: u32,
    pub ctx_step: u32,
    pub chunk: u32,
    pub chunks: u32,
    pub scale: f32,
    pub key_lo: u32,
    pub key_hi: u32,
    pub off_lo: u32,
    pub off_hi: u32,
    pub stream: u32,
    /// Always 0 (see `nz` in the shader).
    pub zero: u32,
    /// Rows per context row (≥ 1): with `ctx_step` 1, row r reads context row r / ctx_div.
    pub ctx_div: u32,
    /// Sampling: row r draws the Philox normals of row `row_off + r`.
    pub row_off: u32,
    /// Inverse backward: dL/dθ of row r, dim i is float `(grad_off + r) · grad_stride + i`.
    pub grad_off: u32,
    pub grad_stride: u32,
    pub _pad: u32,
}

impl FlowParams {
    pub fn new(rows: usize) -> Self {
        FlowParams {
            rows: rows as u32,
            ctx_step: 1,
            chunk: rows.max(1) as u32,
            chunks: 1,
            scale: 1.0 / rows.max(1) as f32,
            key_lo: 0,
            key_hi: 0,
            off_lo: 0,
            off_hi: 0,
            stream: 0,
            zero: 0,
            ctx_div: 1,
            row_off: 0,
            grad_off: 0,
            grad_stride: 0,
            _pad: 0,
        }
    }

    pub fn with_stream(mut self, s: &RngStream) -> Self {
        self.key_lo = s.seed as u32;
        self.key_hi = (s.seed >> 32) as u32;
        self.off_lo = s.offset as u32;
        self.off_hi = (s.offset >> 32) as u32;
        self.stream = s.stream;
        self
    }
}

/// A flow whose parameters and gradients are views into a caller-owned arena.
pub struct Flow {
    pub config: FlowConfig,
    pub layout: FlowLayout,
    pub params: GpuTensor,
    pub grads: GpuTensor,
}

fn invalid(msg: String) -> GpuError {
    GpuError::InvalidArgument(msg)
}

/// Invocations (4 rows each) per workgroup of the per-row kernels: one SIMD batch of a CPU adapter
/// so that small batches still spread over every core; larger groups for large batches.
fn rows_wg(rows: usize) -> u32 {
    let inv = rows.div_ceil(4);
    if inv >= 1024 {
        32
    } else {
        8
    }
}

impl Flow {
    /// `params`, `grads`: views of length ≥ `config.arena_len(align)` into the caller's arenas
    /// (bindable: at 256-byte-aligned offsets), `params` holding `init_arena`-style values.
    pub fn new(
        _ctx: &GpuContext,
        config: FlowConfig,
        params: GpuTensor,
        grads: GpuTensor,
    ) -> GpuResult<Self> {
        config.validate().map_err(invalid)?;
        let layout = config.layout();
        let need = layout.floats();
        if params.len < need || grads.len < need {
            return Err(invalid(format!(
                "flow needs {need} floats of parameters and gradients, got {} and {}",
                params.len, grads.len
            )));
        }
        Ok(Flow {
            config,
            layout,
            params,
            grads,
        })
    }

    /// The flow's parameter block, unpacked to f64 (the reference's form).
    pub fn weights(&self, ctx: &GpuContext) -> GpuResult<cpu::FlowWeights> {
        let a = ctx.read_range::<f32>(&self.params, 0, self.layout.floats())?;
        Ok(cpu::FlowWeights::from_arena(&self.config, &a))
    }

    /// The gradient block, unpacked like [`Flow::weights`].
    pub fn gradients(&self, ctx: &GpuContext) -> GpuResult<cpu::FlowWeights> {
        let a = ctx.read_range::<f32>(&self.grads, 0, self.layout.floats())?;
        Ok(cpu::FlowWeights::from_arena(&self.config, &a))
    }

    fn params_view(&self) -> GpuTensor {
        self.params.view("flow-params", 0, self.layout.floats())
    }

    fn grads_view(&self) -> GpuTensor {
        self.grads.view("flow-grads", 0, self.layout.floats())
    }

    fn check_context(&self, what: &str, t: &GpuTensor, rows: usize) -> GpuResult<()> {
        let need = rows * pad4(self.config.context_dim);
        if t.len < need {
            return Err(invalid(format!(
                "{what} '{}' has {} floats, needs [{rows}, {}] = {need}",
                t.label,
                t.len,
                pad4(self.config.context_dim)
            )));
        }
        Ok(())
    }
}

/// Options of a [`FlowTrainPlan`].
#[derive(Clone, Debug, Default)]
pub struct FlowTrainOptions {
    /// Per-row weights w_r (caller-filled `row_weights` [rows]): L = scale · Σ_r w_r · (−log q_r).
    pub row_weights: bool,
    /// Row chunks of the weight-gradient launch (partial sums, then one reduction launch);
    /// `None` picks by batch size.
    pub chunks: Option<usize>,
}

/// Forward (log q) and backward (gradients of L = scale · Σ_rows −log q) launches for a batch size.
pub struct FlowTrainPlan {
    pub rows: usize,
    /// θ batch [rows, pad4(dim)]: write here.
    pub theta: GpuTensor,
    /// log q(θ_r | c_r) [rows], written by `forward`.
    pub log_prob: GpuTensor,
    /// [rows] weights when built with `row_weights`.
    pub row_weights: Option<GpuTensor>,
    pub forward: Vec<Dispatch>,
    /// Overwrites the flow's gradient block and `dcontext`.
    pub backward: Vec<Dispatch>,
    pub tape: GpuTensor,
    pub grad_tape: GpuTensor,
    pub chunks: usize,
    uniform: wgpu::Buffer,
    params: FlowParams,
    _partials: Option<GpuTensor>,
}

impl FlowTrainPlan {
    /// `context` [rows, pad4(context_dim)] (the embedding net's output) and `dcontext` (same shape,
    /// its upstream gradient, overwritten by `backward`) are owned by the caller. The scale
    /// defaults to 1/rows (L = −mean log q).
    pub fn new(
        ctx: &GpuContext,
        flow: &Flow,
        rows: usize,
        context: &GpuTensor,
        dcontext: &GpuTensor,
    ) -> GpuResult<Self> {
        Self::with_options(
            ctx,
            flow,
            rows,
            context,
            dcontext,
            FlowTrainOptions::default(),
        )
    }

    pub fn with_options(
        ctx: &GpuContext,
        flow: &Flow,
        rows: usize,
        context: &GpuTensor,
        dcontext: &GpuTensor,
        opts: FlowTrainOptions,
    ) -> GpuResult<Self> {
        if rows == 0 {
            return Err(invalid("flow plan with 0 rows".into()));
        }
        flow.check_context("context", context, rows)?;
        flow.check_context("dcontext", dcontext, rows)?;
        let cfg = &flow.config;
        let lay = &flow.layout;
        let chunks = opts.chunks.unwrap_or(default_chunks(rows)).clamp(1, rows);
        let mut params = FlowParams::new(rows);
        params.chunks = chunks as u32;
        params.chunk = rows.div_ceil(chunks) as u32;
        let uniform = ctx.uniform("flow-params", &params);
        let theta = ctx.tensor_zeros("flow-theta", rows * 4 * lay.d4)?;
        let log_prob = ctx.tensor_zeros("flow-log-prob", rows)?;
        let tape = ctx.tensor_zeros("flow-tape", cfg.tape_len(rows))?;
        let grad_tape = ctx.tensor_zeros("flow-grad-tape", cfg.grad_tape_len(rows))?;
        let row_weights = if opts.row_weights {
            Some(ctx.tensor_from("flow-row-weights", &vec![1f32; rows])?)
        } else {
            None
        };
        let ctxv = context.view("context", 0, rows * 4 * lay.e4);
        let fwd = rows_forward(
            ctx,
            flow,
            &uniform,
            &theta,
            &ctxv,
            Some(&tape),
            &log_prob,
            rows,
        )?;
        let bwd = rows_backward(
            ctx,
            flow,
            &uniform,
            &tape,
            row_weights.as_ref(),
            &grad_tape,
            dcontext,
            rows,
        )?;
        let partials = if chunks > 1 {
            Some(ctx.tensor_zeros("flow-grad-partials", chunks * lay.floats())?)
        } else {
            None
        };
        let mut backward = vec![bwd];
        backward.extend(wgrad_dispatches(
            ctx,
            flow,
            &uniform,
            &tape,
            &grad_tape,
            &ctxv,
            partials.as_ref(),
            chunks,
            false,
        )?);
        Ok(FlowTrainPlan {
            rows,
            theta,
            log_prob,
            row_weights,
            forward: vec![fwd],
            backward,
            tape,
            grad_tape,
            chunks,
            uniform,
            params,
            _partials: partials,
        })
    }

    /// The backward launches with per-row weights `weights` [rows] (L = scale · Σ_r w_r ·
    /// (−log q_r)) instead of the plan's own: a plan without `row_weights` can mask rows
    /// (w_r = 0 gives those rows exactly zero gradients) in some of its steps. `dcontext` is
    /// the buffer the plan was built with.
    pub fn weighted_backward(
        &self,
        ctx: &GpuContext,
        flow: &Flow,
        dcontext: &GpuTensor,
        weights: &GpuTensor,
    ) -> GpuResult<Vec<Dispatch>> {
        if weights.len < self.rows {
            return Err(invalid(format!(
                "row weights '{}' hold {} values for {} rows",
                weights.label, weights.len, self.rows
            )));
        }
        flow.check_context("dcontext", dcontext, self.rows)?;
        let bwd = rows_backward(
            ctx,
            flow,
            &self.uniform,
            &self.tape,
            Some(weights),
            &self.grad_tape,
            dcontext,
            self.rows,
        )?;
        Ok(std::iter::once(bwd)
            .chain(self.backward[1..].iter().cloned())
            .collect())
    }

    /// Sets the loss scale (L = scale · Σ_rows −log q); takes effect at the next submit.
    pub fn set_scale(&mut self, ctx: &GpuContext, scale: f32) {
        self.params.scale = scale;
        ctx.write_uniform(&self.uniform, &self.params);
    }

    pub fn scale(&self) -> f32 {
        self.params.scale
    }

    /// Forward then backward, in order.
    pub fn step_dispatches(&self) -> Vec<&Dispatch> {
        self.forward.iter().chain(&self.backward).collect()
    }
}

/// Row chunks of a weight-gradient launch for `rows` rows (partial sums when more than one).
fn default_chunks(rows: usize) -> usize {
    if rows >= 2048 {
        4
    } else if rows >= 512 {
        2
    } else {
        1
    }
}

/// The weight-gradient launches from a forward tape and a gradient tape: `wgrad` (into
/// `partials` when `chunks` > 1, then `reduce`), overwriting the flow's gradient block or, with
/// `accumulate`, adding to it. `context` is the context binding of the tapes' rows.
#[allow(clippy::too_many_arguments)]
fn wgrad_dispatches(
    ctx: &GpuContext,
    flow: &Flow,
    uniform: &wgpu::Buffer,
    tape: &GpuTensor,
    grad_tape: &GpuTensor,
    context: &GpuTensor,
    partials: Option<&GpuTensor>,
    chunks: usize,
    accumulate: bool,
) -> GpuResult<Vec<Dispatch>> {
    let cfg = &flow.config;
    let lay = &flow.layout;
    let (dr, _) = ctx.dummies()?;
    let gv = flow.grads_view();
    let obt = 16usize;
    let wgw = ((lay.d4 + lay.e4).max(lay.h4) + 1).div_ceil(8) * 8;
    let tiles = lay.h4.max(lay.no4).div_ceil(obt);
    let mut cw = cfg.constants();
    cw.push(("WGW", wgw as f64));
    cw.push(("OBT", obt as f64));
    if accumulate {
        cw.push(("ACCUM", 1.0));
    }
    let mut out = vec![ctx.dispatch(
        WGRAD_SHADER,
        "wgrad",
        &cw,
        &[
            Bind::U(uniform),
            Bind::T(tape),
            Bind::T(grad_tape),
            Bind::T(context),
            Bind::T(dr),
            Bind::T(partials.unwrap_or(&gv)),
        ],
        [
            tiles as u32,
            (cfg.hidden_layers + 1) as u32,
            (cfg.transforms * chunks) as u32,
        ],
    )?];
    if let Some(part) = partials {
        let mut cr = cfg.constants();
        cr.push(("WGR", 64.0));
        if accumulate {
            cr.push(("ACCUM", 1.0));
        }
        out.push(ctx.dispatch(
            WGRAD_SHADER,
            "reduce",
            &cr,
            &[
                Bind::U(uniform),
                Bind::T(dr),
                Bind::T(dr),
                Bind::T(dr),
                Bind::T(part),
                Bind::T(&gv),
            ],
            groups_1d(lay.floats() / 4, 64),
        )?);
    }
    Ok(out)
}

/// The per-row backward launch of a training plan (`weights`: ROW_W).
/// The `forward` launch of `flow_rows` over `rows` rows: log q of θ given the context, and the
/// tape for the backward passes (without a tape, log q only).
#[allow(clippy::too_many_arguments)]
fn rows_forward(
    ctx: &GpuContext,
    flow: &Flow,
    uniform: &wgpu::Buffer,
    theta: &GpuTensor,
    context: &GpuTensor,
    tape: Option<&GpuTensor>,
    log_prob: &GpuTensor,
    rows: usize,
) -> GpuResult<Dispatch> {
    let (dr, dw) = ctx.dummies()?;
    let wg = rows_wg(rows);
    let mut c = flow.config.constants();
    c.push(("WG", wg as f64));
    if tape.is_none() {
        c.push(("TAPE", 0.0));
    }
    ctx.dispatch(
        ROWS_SHADER,
        "forward",
        &c,
        &[
            Bind::U(uniform),
            Bind::T(&flow.params_view()),
            Bind::T(theta),
            Bind::T(context),
            Bind::T(dr),
            Bind::T(tape.unwrap_or(dw)),
            Bind::T(dw),
            Bind::T(log_prob),
        ],
        groups_1d(rows.div_ceil(4), wg),
    )
}

#[allow(clippy::too_many_arguments)]
fn rows_backward(
    ctx: &GpuContext,
    flow: &Flow,
    uniform: &wgpu::Buffer,
    tape: &GpuTensor,
    weights: Option<&GpuTensor>,
    grad_tape: &GpuTensor,
    dcontext: &GpuTensor,
    rows: usize,
) -> GpuResult<Dispatch> {
    let (dr, dw) = ctx.dummies()?;
    let wg = rows_wg(rows);
    let mut cb = flow.config.constants();
    cb.push(("WG", wg as f64));
    cb.push(("ROW_W", weights.is_some() as u8 as f64));
    ctx.dispatch(
        ROWS_SHADER,
        "backward",
        &cb,
        &[
            Bind::U(uniform),
            Bind::T(&flow.params_view()),
            Bind::T(tape),
            Bind::T(dr),
            Bind::T(weights.unwrap_or(dr)),
            Bind::T(grad_tape),
            Bind::T(&dcontext.view("dcontext", 0, rows * 4 * flow.layout.e4)),
            Bind::T(dw),
        ],
        groups_1d(rows.div_ceil(4), wg),
    )
}

/// log q(θ|c) only (no tape): evaluation batches, density grids.
pub struct FlowLogProbPlan {
    pub rows: usize,
    /// θ [rows, pad4(dim)]: write here.
    pub theta: GpuTensor,
    pub log_prob: GpuTensor,
    pub dispatch: Dispatch,
    _uniform: wgpu::Buffer,
}

impl FlowLogProbPlan {
    /// `context`: [rows, pad4(e)], or a single row [1, pad4(e)] shared by every row (when it holds
    /// fewer than rows·pad4(e) floats).
    pub fn new(ctx: &GpuContext, flow: &Flow, rows: usize, context: &GpuTensor) -> GpuResult<Self> {
        if rows == 0 {
            return Err(invalid("flow plan with 0 rows".into()));
        }
        let lay = &flow.layout;
        let (ctxv, step) = context_binding(flow, context, rows)?;
        let mut params = FlowParams::new(rows);
        params.ctx_step = step;
        let uniform = ctx.uniform("flow-params", &params);
        let theta = ctx.tensor_zeros("flow-theta", rows * 4 * lay.d4)?;
        let log_prob = ctx.tensor_zeros("flow-log-prob", rows)?;
        let dispatch = rows_forward(ctx, flow, &uniform, &theta, &ctxv, None, &log_prob, rows)?;
        Ok(FlowLogProbPlan {
            rows,
            theta,
            log_prob,
            dispatch,
            _uniform: uniform,
        })
    }
}

fn context_binding(flow: &Flow, context: &GpuTensor, rows: usize) -> GpuResult<(GpuTensor, u32)> {
    context_binding_div(flow, context, rows, 1)
}

/// Binds `context` for `rows` rows, row r reading context row r / div (or one shared row).
fn context_binding_div(
    flow: &Flow,
    context: &GpuTensor,
    rows: usize,
    div: usize,
) -> GpuResult<(GpuTensor, u32)> {
    let e = 4 * flow.layout.e4;
    let need = rows.div_ceil(div.max(1));
    if context.len >= need * e {
        Ok((context.view("context", 0, need * e), 1))
    } else if context.len >= e {
        Ok((context.view("context", 0, e), 0))
    } else {
        Err(invalid(format!(
            "context '{}' has {} floats, needs at least one row of {e}",
            context.label, context.len
        )))
    }
}

/// Options of a [`FlowSamplePlan`].
#[derive(Clone, Debug, Default)]
pub struct FlowSampleOptions<'a> {
    /// z read from the plan's `z` buffer instead of the Philox stream.
    pub z_buf: bool,
    /// Consecutive rows sharing one context row (0 or 1: one context row per row).
    pub ctx_div: usize,
    /// A u32 counter (the optimizer's step, word 0) added to the stream offset's high word, so a
    /// queued sequence of training steps draws fresh z at every step.
    pub step_counter: Option<&'a GpuTensor>,
}

/// Sampling θ ~ q(·|c) by inverting every transform (dim sequential MADE passes per transform,
/// all inside one launch), with log q of each sample.
pub struct FlowSamplePlan {
    pub rows: usize,
    /// θ samples [rows, pad4(dim)].
    pub samples: GpuTensor,
    /// log q(sample | c) [rows].
    pub log_prob: GpuTensor,
    /// Base draws [rows, pad4(dim)] when built by [`FlowSamplePlan::with_z`] (caller-filled);
    /// otherwise z comes from the Philox stream set by [`FlowSamplePlan::set_stream`]:
    /// z[r, i] = element r·dim + i of `RngStream::normal` (element (row_off + r)·dim + i for a
    /// launch from [`FlowSamplePlan::at_row_offset`]).
    pub z: Option<GpuTensor>,
    pub dispatch: Dispatch,
    uniform: wgpu::Buffer,
    params: FlowParams,
    constants: Vec<(&'static str, f64)>,
    /// Bindings 1..=4 of the launch (parameters, z, context, step counter).
    inputs: [GpuTensor; 4],
}

impl FlowSamplePlan {
    /// `context`: [rows, pad4(e)], or a single row shared by every sample (see
    /// [`FlowLogProbPlan::new`]).
    pub fn new(ctx: &GpuContext, flow: &Flow, rows: usize, context: &GpuTensor) -> GpuResult<Self> {
        Self::with_options(ctx, flow, rows, context, FlowSampleOptions::default())
    }

    /// z read from `self.z` instead of the Philox stream.
    pub fn with_z(
        ctx: &GpuContext,
        flow: &Flow,
        rows: usize,
        context: &GpuTensor,
    ) -> GpuResult<Self> {
        Self::with_options(
            ctx,
            flow,
            rows,
            context,
            FlowSampleOptions {
                z_buf: true,
                ..Default::default()
            },
        )
    }

    pub fn with_options(
        ctx: &GpuContext,
        flow: &Flow,
        rows: usize,
        context: &GpuTensor,
        opts: FlowSampleOptions,
    ) -> GpuResult<Self> {
        if rows == 0 {
            return Err(invalid("flow plan with 0 rows".into()));
        }
        let z_buf = opts.z_buf;
        let div = opts.ctx_div.max(1);
        let lay = &flow.layout;
        let (ctxv, step) = context_binding_div(flow, context, rows, div)?;
        let mut params = FlowParams::new(rows).with_stream(&RngStream::new(0, SAMPLE_STREAM));
        params.ctx_step = step;
        params.ctx_div = div as u32;
        let uniform = ctx.uniform("flow-params", &params);
        let samples = ctx.tensor_zeros("flow-samples", rows * 4 * lay.d4)?;
        let log_prob = ctx.tensor_zeros("flow-sample-log-prob", rows)?;
        let z = if z_buf {
            Some(ctx.tensor_zeros("flow-z", rows * 4 * lay.d4)?)
        } else {
            None
        };
        let (dr, _) = ctx.dummies()?;
        let wg = rows_wg(rows);
        let mut c = flow.config.constants();
        c.push(("WG", wg as f64));
        c.push(("Z_BUF", z_buf as u8 as f64));
        c.push(("STEP_CTR", opts.step_counter.is_some() as u8 as f64));
        let inputs = [
            flow.params_view(),
            z.as_ref().unwrap_or(dr).clone(),
            ctxv,
            opts.step_counter.unwrap_or(dr).clone(),
        ];
        let dispatch = Self::launch(ctx, &c, &uniform, &inputs, &samples, &log_prob, rows)?;
        Ok(FlowSamplePlan {
            rows,
            samples,
            log_prob,
            z,
            dispatch,
            uniform,
            params,
            constants: c,
            inputs,
        })
    }

    fn launch(
        ctx: &GpuContext,
        c: &[(&'static str, f64)],
        uniform: &wgpu::Buffer,
        inputs: &[GpuTensor; 4],
        samples: &GpuTensor,
        log_prob: &GpuTensor,
        rows: usize,
    ) -> GpuResult<Dispatch> {
        let (_, dw) = ctx.dummies()?;
        ctx.dispatch(
            ROWS_SHADER,
            "sample",
            c,
            &[
                Bind::U(uniform),
                Bind::T(&inputs[0]),
                Bind::T(&inputs[1]),
                Bind::T(&inputs[2]),
                Bind::T(&inputs[3]),
                Bind::T(samples),
                Bind::T(dw),
                Bind::T(log_prob),
            ],
            groups_1d(rows.div_ceil(4), rows_wg(rows)),
        )
    }

    /// A second launch of this plan (same buffers, same stream as last set) whose row r draws
    /// the Philox normals of row `row_off + r`: a micro-batch of a split batch draws exactly what
    /// the same rows of the whole batch would. Returns the launch and the uniform it binds (keep
    /// it alive with the launch).
    pub fn at_row_offset(
        &self,
        ctx: &GpuContext,
        row_off: usize,
    ) -> GpuResult<(Dispatch, wgpu::Buffer)> {
        let params = FlowParams {
            row_off: row_off as u32,
            ..self.params
        };
        let uniform = ctx.uniform("flow-params-row-offset", &params);
        let d = Self::launch(
            ctx,
            &self.constants,
            &uniform,
            &self.inputs,
            &self.samples,
            &self.log_prob,
            self.rows,
        )?;
        Ok((d, uniform))
    }

    /// Uses only the first `rows` rows (≤ the plan's), row r reading context row r / `div`; takes
    /// effect at the next submit. Rows past `rows` cost nothing.
    pub fn set_rows(&mut self, ctx: &GpuContext, rows: usize, div: usize) {
        self.params.rows = rows.min(self.rows) as u32;
        self.params.ctx_div = div.max(1) as u32;
        ctx.write_uniform(&self.uniform, &self.params);
    }

    /// Sets the Philox stream of the next launch (takes effect at the next submit).
    pub fn set_stream(&mut self, ctx: &GpuContext, stream: &RngStream) {
        self.params = self.params.with_stream(stream);
        ctx.write_uniform(&self.uniform, &self.params);
    }

    /// Sets the stream (seed, offset, [`SAMPLE_STREAM`]) and returns the launch to record.
    pub fn dispatches(&mut self, ctx: &GpuContext, seed: u64, offset: u64) -> [&Dispatch; 1] {
        self.set_stream(
            ctx,
            &RngStream {
                seed,
                offset,
                stream: SAMPLE_STREAM,
            },
        );
        [&self.dispatch]
    }
}

/// Options of a [`FlowInverseGradPlan`].
#[derive(Clone, Debug, Default)]
pub struct FlowInverseGradOptions<'a> {
    /// Consecutive rows sharing one context row (0 or 1: one context row per row), as the
    /// [`FlowSamplePlan`] that drew the samples.
    pub ctx_div: usize,
    /// dL/dθ of row r, dim i is float `(grad_off + r) · grad_stride + i` of the gradient buffer
    /// (`grad_stride` 0: pad4(dim), a [rows, pad4(dim)] buffer).
    pub grad_off: usize,
    pub grad_stride: usize,
    /// dL/dcontext [rows / ctx_div, pad4(context_dim)]: each context row gets the sum over its
    /// rows. `None`: the context's gradient is not computed.
    pub dcontext: Option<&'a GpuTensor>,
    /// Add to the flow's gradient block and to `dcontext` instead of overwriting them (a second
    /// loss term of the same step).
    pub accumulate: bool,
}

/// The gradient through the flow's samples θ = T⁻¹(z; c) with the base draws z held fixed (the
/// reparameterization): given dL/dθ per row, the gradients of every flow parameter and of the
/// context. Launches: the forward pass at θ (its tape), `inverse_backward` (implicit
/// differentiation of each transform's inverse, dims in reverse order: see the shader), the
/// weight gradients from the tapes (plus a chunk reduction for large batches), and with a
/// context gradient its sum over the rows sharing a context row.
pub struct FlowInverseGradPlan {
    pub rows: usize,
    /// The launches, in order; they overwrite (or with `accumulate` add to) the flow's
    /// gradient block and `dcontext`.
    pub dispatches: Vec<Dispatch>,
    pub tape: GpuTensor,
    pub grad_tape: GpuTensor,
    /// log q of the samples (a by-product of the forward pass).
    pub log_prob: GpuTensor,
    _keep: (Vec<GpuTensor>, wgpu::Buffer),
}

impl FlowInverseGradPlan {
    /// `samples` [rows, pad4(dim)]: θ = T⁻¹(z; c) as a [`FlowSamplePlan`] with the same
    /// `context` and `ctx_div` wrote them (read when the launches run); `dtheta`: dL/dθ, laid out
    /// as `opts` says.
    pub fn new(
        ctx: &GpuContext,
        flow: &Flow,
        rows: usize,
        samples: &GpuTensor,
        context: &GpuTensor,
        dtheta: &GpuTensor,
        opts: FlowInverseGradOptions,
    ) -> GpuResult<Self> {
        if rows == 0 {
            return Err(invalid("flow plan with 0 rows".into()));
        }
        let cfg = &flow.config;
        let lay = &flow.layout;
        let div = opts.ctx_div.max(1);
        let d4 = 4 * lay.d4;
        if samples.len < rows * d4 {
            return Err(invalid(format!(
                "samples '{}' hold {} floats, need [{rows}, {d4}]",
                samples.label, samples.len
            )));
        }
        let stride = if opts.grad_stride == 0 {
            d4
        } else {
            opts.grad_stride
        };
        if stride < cfg.dim || dtheta.len < (opts.grad_off + rows - 1) * stride + cfg.dim {
            return Err(invalid(format!(
                "dL/dθ '{}' ({} floats) does not hold {rows} rows of {} at offset {} with stride {stride}",
                dtheta.label, dtheta.len, cfg.dim, opts.grad_off
            )));
        }
        let (ctxv, step) = context_binding_div(flow, context, rows, div)?;
        if opts.dcontext.is_some() && (step != 1 || rows % div != 0) {
            return Err(invalid(format!(
                "a context gradient needs one context row per {div} rows ({rows} rows)"
            )));
        }
        if let Some(dc) = opts.dcontext {
            flow.check_context("dcontext", dc, rows / div)?;
        }
        let chunks = default_chunks(rows).clamp(1, rows);
        let mut params = FlowParams::new(rows);
        params.ctx_step = step;
        params.ctx_div = div as u32;
        params.chunks = chunks as u32;
        params.chunk = rows.div_ceil(chunks) as u32;
        params.grad_off = opts.grad_off as u32;
        params.grad_stride = stride as u32;
        let uniform = ctx.uniform("flow-inverse-grad-params", &params);
        let tape = ctx.tensor_zeros("flow-inverse-tape", cfg.tape_len(rows))?;
        let grad_tape = ctx.tensor_zeros("flow-inverse-grad-tape", cfg.grad_tape_len(rows))?;
        let log_prob = ctx.tensor_zeros("flow-inverse-log-prob", rows)?;
        let dctx_rows = opts
            .dcontext
            .map(|_| ctx.tensor_zeros("flow-inverse-dcontext-rows", rows * 4 * lay.e4))
            .transpose()?;
        let (dr, dw) = ctx.dummies()?;
        let wg = rows_wg(rows);
        let grid = groups_1d(rows.div_ceil(4), wg);
        let pv = flow.params_view();
        let sv = samples.view("samples", 0, rows * d4);
        let mut dispatches = vec![rows_forward(
            ctx,
            flow,
            &uniform,
            &sv,
            &ctxv,
            Some(&tape),
            &log_prob,
            rows,
        )?];
        let mut cb = cfg.constants();
        cb.push(("WG", wg as f64));
        cb.push(("CTX_GRAD", dctx_rows.is_some() as u8 as f64));
        dispatches.push(ctx.dispatch(
            ROWS_SHADER,
            "inverse_backward",
            &cb,
            &[
                Bind::U(&uniform),
                Bind::T(&pv),
                Bind::T(&tape),
                Bind::T(&ctxv),
                Bind::T(dtheta),
                Bind::T(&grad_tape),
                Bind::T(dctx_rows.as_ref().unwrap_or(dw)),
                Bind::T(dw),
            ],
            grid,
        )?);
        let partials = (chunks > 1)
            .then(|| ctx.tensor_zeros("flow-inverse-grad-partials", chunks * lay.floats()))
            .transpose()?;
        dispatches.extend(wgrad_dispatches(
            ctx,
            flow,
            &uniform,
            &tape,
            &grad_tape,
            &ctxv,
            partials.as_ref(),
            chunks,
            opts.accumulate,
        )?);
        if let (Some(rows_t), Some(dc)) = (&dctx_rows, opts.dcontext) {
            let n = (rows / div) * lay.e4;
            let mut cs = cfg.constants();
            cs.push(("WG", 64.0));
            cs.push(("ACCUM", opts.accumulate as u8 as f64));
            dispatches.push(ctx.dispatch(
                ROWS_SHADER,
                "context_sum",
                &cs,
                &[
                    Bind::U(&uniform),
                    Bind::T(&pv),
                    Bind::T(rows_t),
                    Bind::T(dr),
                    Bind::T(dr),
                    Bind::T(dw),
                    Bind::T(&dc.view("dcontext", 0, (rows / div) * 4 * lay.e4)),
                    Bind::T(dw),
                ],
                groups_1d(n, 64),
            )?);
        }
        let mut keep: Vec<GpuTensor> = vec![];
        keep.extend(dctx_rows);
        keep.extend(partials);
        Ok(FlowInverseGradPlan {
            rows,
            dispatches,
            tape,
            grad_tape,
            log_prob,
            _keep: (keep, uniform),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Models saved before the MADE wiring and spline options existed keep the function they
    /// were trained as: nflows' wiring and parameterization.
    #[test]
    fn configs_without_the_newer_fields_read_as_the_old_flow() {
        let old = r#"{"kind": "nsf", "dim": 2, "context_dim": 2, "transforms": 5, "hidden": 50,
                      "hidden_layers": 2, "bins": 10, "tail_bound": 3.0, "act": "relu"}"#;
        let c: FlowConfig = serde_json::from_str(old).unwrap();
        assert!(!c.context_every_dim && !c.spline_identity_init);
        let consts = c.constants();
        let get = |k: &str| consts.iter().find(|(n, _)| *n == k).unwrap().1;
        assert_eq!(get("CTX_ALL"), 0.0);
        assert_eq!(get("DV_SHIFT"), 0.0);
        let new = FlowConfig::new(FlowKind::Nsf, 2, 2);
        assert!(new.context_every_dim && new.spline_identity_init);
        let consts = new.constants();
        let shift = consts.iter().find(|(n, _)| *n == "DV_SHIFT").unwrap().1;
        assert!((MIN_DERIVATIVE + (1.0 + shift.exp()).ln() - 1.0).abs() < 1e-12);
    }
}

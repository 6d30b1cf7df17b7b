//! f64 reference of the conditional flows: unpadded weights with the MADE masks applied
//! explicitly, forward log-density, backward (gradients of Σ_r w_r · log q_r with respect to every
//! parameter and to the context), and the inverse (sampling) pass.
//!
//! Row-major, unpadded: θ [rows × dim], context [rows × context_dim]. Layer 0 of a MADE reads
//! [θ (dim), context (context_dim)]; the output layer has dim·P columns, column i·P + p being
//! parameter p of dim i (MAF: p = 0 μ, p = 1 the raw log-scale; NSF: K width logits, K height
//! logits, K − 1 derivative logits).

use super::{FlowConfig, FlowKind, ALPHA_MAX, MIN_BIN_HEIGHT, MIN_BIN_WIDTH, MIN_DERIVATIVE};
use rand::Rng;

const LOG_2PI: f64 = 1.837_877_066_409_345_5;

/// One dense layer, unpadded: W [k × n] row-major, b [n].
#[derive(Clone, Debug, PartialEq)]
pub struct LayerW {
    pub k: usize,
    pub n: usize,
    pub w: Vec<f64>,
    pub b: Vec<f64>,
}

/// layers[t][l]: transform t, layer l (0 … hidden_layers; the last is the output layer).
#[derive(Clone, Debug, PartialEq)]
pub struct FlowWeights {
    pub layers: Vec<Vec<LayerW>>,
}

fn deg_in(cfg: &FlowConfig, t: usize, i: usize) -> usize {
    if t % 2 == 1 {
        cfg.dim - i
    } else {
        i + 1
    }
}

fn deg_h(cfg: &FlowConfig, j: usize) -> usize {
    if cfg.context_every_dim {
        return j % cfg.dim;
    }
    let dm1 = cfg.dim - 1;
    j % dm1.max(1) + dm1.min(1)
}

/// The dim of degree k (1-based) in transform t.
pub fn dim_of_degree(cfg: &FlowConfig, t: usize, k: usize) -> usize {
    if t % 2 == 1 {
        cfg.dim - k
    } else {
        k - 1
    }
}

/// Whether weight (row, col) of layer l of transform t is free; unpadded indices
/// (layer 0 rows: θ dims then context dims).
pub fn mask(cfg: &FlowConfig, t: usize, l: usize, row: usize, col: usize) -> bool {
    let p = cfg.params_per_dim();
    if l == cfg.hidden_layers {
        return deg_in(cfg, t, col / p) > deg_h(cfg, row);
    }
    if l == 0 {
        if row < cfg.dim {
            return deg_h(cfg, col) >= deg_in(cfg, t, row);
        }
        return true;
    }
    deg_h(cfg, col) >= deg_h(cfg, row)
}

impl FlowWeights {
    pub fn layer_dims(cfg: &FlowConfig) -> Vec<(usize, usize)> {
        let mut d = vec![(cfg.dim + cfg.context_dim, cfg.hidden)];
        d.extend(std::iter::repeat_n(
            (cfg.hidden, cfg.hidden),
            cfg.hidden_layers - 1,
        ));
        d.push((cfg.hidden, cfg.dim * cfg.params_per_dim()));
        d
    }

    pub fn zeros(cfg: &FlowConfig) -> Self {
        let dims = Self::layer_dims(cfg);
        FlowWeights {
            layers: (0..cfg.transforms)
                .map(|_| {
                    dims.iter()
                        .map(|&(k, n)| LayerW {
                            k,
                            n,
                            w: vec![0.0; k * n],
                            b: vec![0.0; n],
                        })
                        .collect()
                })
                .collect(),
        }
    }

    /// uniform(±1/√fan_in) (PyTorch's default for Linear), masked entries zero.
    pub fn init(cfg: &FlowConfig, rng: &mut impl Rng) -> Self {
        let mut w = Self::zeros(cfg);
        for (t, tl) in w.layers.iter_mut().enumerate() {
            for (l, lw) in tl.iter_mut().enumerate() {
                let bound = 1.0 / (lw.k as f64).sqrt();
                for r in 0..lw.k {
                    for c in 0..lw.n {
                        let v = rng.random_range(-bound..bound);
                        if mask(cfg, t, l, r, c) {
                            lw.w[r * lw.n + c] = v;
                        }
                    }
                }
                for b in lw.b.iter_mut() {
                    *b = rng.random_range(-bound..bound);
                }
            }
        }
        w
    }

    /// Arena row of unpadded row `r` of layer l, and arena column of unpadded column c.
    fn arena_rc(cfg: &FlowConfig, l: usize, r: usize, c: usize) -> (usize, usize) {
        let lay = cfg.layout();
        let row = if l == 0 && r >= cfg.dim {
            4 * lay.d4 + (r - cfg.dim)
        } else {
            r
        };
        let col = if l == cfg.hidden_layers {
            let p = cfg.params_per_dim();
            (c / p) * lay.col_stride + c % p
        } else {
            c
        };
        (row, col)
    }

    /// Packs into an arena block of `cfg.arena_len(align_floats)` floats (zeros elsewhere);
    /// masked entries are written as zero whatever they hold.
    pub fn to_arena(&self, cfg: &FlowConfig, align_floats: usize) -> Vec<f32> {
        let lay = cfg.layout();
        let mut a = vec![0f32; cfg.arena_len(align_floats)];
        for (t, tl) in self.layers.iter().enumerate() {
            for (l, lw) in tl.iter().enumerate() {
                for r in 0..lw.k {
                    for c in 0..lw.n {
                        if mask(cfg, t, l, r, c) {
                            let (ar, ac) = Self::arena_rc(cfg, l, r, c);
                            a[lay.index(t, l, ar, ac)] = lw.w[r * lw.n + c] as f32;
                        }
                    }
                }
                let brow = 4 * lay.kin4(l);
                for c in 0..lw.n {
                    let (_, ac) = Self::arena_rc(cfg, l, 0, c);
                    a[lay.index(t, l, brow, ac)] = lw.b[c] as f32;
                }
            }
        }
        a
    }

    /// Unpacks an arena block (at least `cfg.layout().floats()` long).
    pub fn from_arena(cfg: &FlowConfig, a: &[f32]) -> Self {
        let lay = cfg.layout();
        let mut w = Self::zeros(cfg);
        for (t, tl) in w.layers.iter_mut().enumerate() {
            for (l, lw) in tl.iter_mut().enumerate() {
                for r in 0..lw.k {
                    for c in 0..lw.n {
                        let (ar, ac) = Self::arena_rc(cfg, l, r, c);
                        lw.w[r * lw.n + c] = a[lay.index(t, l, ar, ac)] as f64;
                    }
                }
                let brow = 4 * lay.kin4(l);
                for c in 0..lw.n {
                    let (_, ac) = Self::arena_rc(cfg, l, 0, c);
                    lw.b[c] = a[lay.index(t, l, brow, ac)] as f64;
                }
            }
        }
        w
    }

    /// Every weight and bias in a fixed order (masked entries included).
    pub fn flat(&self) -> Vec<f64> {
        self.layers
            .iter()
            .flatten()
            .flat_map(|l| l.w.iter().chain(&l.b).copied())
            .collect()
    }

    pub fn flat_mut(&mut self) -> Vec<&mut f64> {
        self.layers
            .iter_mut()
            .flatten()
            .flat_map(|l| l.w.iter_mut().chain(l.b.iter_mut()))
            .collect()
    }

    /// Number of free (unmasked) parameters.
    pub fn num_free(&self, cfg: &FlowConfig) -> usize {
        let mut n = 0;
        for (t, tl) in self.layers.iter().enumerate() {
            for (l, lw) in tl.iter().enumerate() {
                for r in 0..lw.k {
                    for c in 0..lw.n {
                        n += mask(cfg, t, l, r, c) as usize;
                    }
                }
                n += lw.n;
            }
        }
        n
    }
}

/// Per-row activations of one MADE pass: inputs of every layer, hidden pre-activations, outputs.
struct MadeTape {
    inputs: Vec<Vec<f64>>,
    pre: Vec<Vec<f64>>,
    out: Vec<f64>,
}

fn made_forward(cfg: &FlowConfig, w: &[LayerW], t: usize, x: &[f64], c: &[f64]) -> MadeTape {
    let mut a: Vec<f64> = x.iter().chain(c).copied().collect();
    let mut inputs = vec![];
    let mut pre = vec![];
    for (l, lw) in w.iter().enumerate() {
        let mut z = lw.b.clone();
        for (r, &ar) in a.iter().enumerate() {
            if ar == 0.0 {
                continue;
            }
            for (o, zo) in z.iter_mut().enumerate() {
                if mask(cfg, t, l, r, o) {
                    *zo += ar * lw.w[r * lw.n + o];
                }
            }
        }
        inputs.push(std::mem::take(&mut a));
        if l < cfg.hidden_layers {
            a = z.iter().map(|&v| cfg.act.f(v)).collect();
            pre.push(z);
        } else {
            return MadeTape {
                inputs,
                pre,
                out: z,
            };
        }
    }
    unreachable!("a MADE has an output layer")
}

/// Adds the gradients of Σ dout · out into `g` (masked) and returns d/d[x, c].
fn made_backward(
    cfg: &FlowConfig,
    w: &[LayerW],
    g: &mut [LayerW],
    t: usize,
    tape: &MadeTape,
    dout: &[f64],
) -> Vec<f64> {
    let mut dz = dout.to_vec();
    for l in (0..=cfg.hidden_layers).rev() {
        let lw = &w[l];
        let gl = &mut g[l];
        let inp = &tape.inputs[l];
        let mut da = vec![0.0; lw.k];
        for (gb, &d) in gl.b.iter_mut().zip(&dz) {
            *gb += d;
        }
        for r in 0..lw.k {
            let mut s = 0.0;
            for (o, &d) in dz.iter().enumerate() {
                if mask(cfg, t, l, r, o) {
                    gl.w[r * lw.n + o] += inp[r] * d;
                    s += lw.w[r * lw.n + o] * d;
                }
            }
            da[r] = s;
        }
        if l == 0 {
            return da;
        }
        dz = da
            .iter()
            .zip(&tape.pre[l - 1])
            .map(|(&g, &z)| g * cfg.act.df(z))
            .collect();
    }
    unreachable!()
}

// ---------------------------------------------------------------------------------------------
// Elementwise maps.

/// MAF: z = (x − μ)·exp(−α), α = ALPHA_MAX·tanh(a/ALPHA_MAX); returns (z, log|dz/dx| = −α).
pub fn affine_forward(x: f64, mu: f64, a: f64) -> (f64, f64) {
    let alpha = ALPHA_MAX * (a / ALPHA_MAX).tanh();
    ((x - mu) * (-alpha).exp(), -alpha)
}

/// Inverse of [`affine_forward`]: (x, forward log-det).
pub fn affine_inverse(z: f64, mu: f64, a: f64) -> (f64, f64) {
    let alpha = ALPHA_MAX * (a / ALPHA_MAX).tanh();
    (z * alpha.exp() + mu, -alpha)
}

/// Gradients of gz·z + gl·logdet: (d/dx, d/dμ, d/da).
pub fn affine_backward(x: f64, mu: f64, a: f64, gz: f64, gl: f64) -> (f64, f64, f64) {
    let th = (a / ALPHA_MAX).tanh();
    let s = (-ALPHA_MAX * th).exp();
    let z = (x - mu) * s;
    let dalpha = -gz * z - gl;
    (gz * s, -gz * s, dalpha * (1.0 - th * th))
}

fn softplus(u: f64) -> f64 {
    u.max(0.0) + (-u.abs()).exp().ln_1p()
}

fn sigmoid(u: f64) -> f64 {
    1.0 / (1.0 + (-u).exp())
}

/// A rational-quadratic spline built from one dim's 3K − 1 raw parameters.
pub struct Spline {
    pub k: usize,
    pub b: f64,
    /// Softmax of the (scaled) width and height logits.
    pub sw: Vec<f64>,
    pub sh: Vec<f64>,
    /// Knots (K + 1) and derivatives at the knots (K + 1).
    pub cw: Vec<f64>,
    pub ch: Vec<f64>,
    pub dv: Vec<f64>,
    raw_scale: f64,
    /// The derivatives' raw parameters plus the identity shift (the softplus arguments).
    raw_d: Vec<f64>,
}

struct Bin {
    idx: usize,
    xk: f64,
    w: f64,
    yk: f64,
    h: f64,
    dk: f64,
    dk1: f64,
}

impl Spline {
    pub fn new(cfg: &FlowConfig, raw: &[f64]) -> Self {
        let k = cfg.bins;
        let b = cfg.tail_bound;
        let rs = 1.0 / (cfg.hidden as f64).sqrt();
        let shift = if cfg.spline_identity_init {
            super::derivative_identity_shift()
        } else {
            0.0
        };
        let softmax = |u: &[f64]| -> Vec<f64> {
            let m = u.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v * rs));
            let e: Vec<f64> = u.iter().map(|&v| (v * rs - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|v| v / s).collect()
        };
        let sw = softmax(&raw[..k]);
        let sh = softmax(&raw[k..2 * k]);
        let knots = |s: &[f64], min: f64| -> Vec<f64> {
            let c = 1.0 - min * k as f64;
            let mut out = vec![-b];
            let mut acc = 0.0;
            for &v in s {
                acc += min + c * v;
                out.push(2.0 * b * acc - b);
            }
            out[k] = b;
            out
        };
        let cw = knots(&sw, MIN_BIN_WIDTH);
        let ch = knots(&sh, MIN_BIN_HEIGHT);
        let raw_d: Vec<f64> = raw[2 * k..3 * k - 1].iter().map(|r| r + shift).collect();
        let mut dv = vec![1.0; k + 1];
        for j in 1..k {
            dv[j] = MIN_DERIVATIVE + softplus(raw_d[j - 1]);
        }
        Spline {
            k,
            b,
            sw,
            sh,
            cw,
            ch,
            dv,
            raw_scale: rs,
            raw_d,
        }
    }

    fn bin(&self, v: f64, by_y: bool) -> Bin {
        let kn = if by_y { &self.ch } else { &self.cw };
        let idx = (1..self.k).filter(|&j| v >= kn[j]).count();
        Bin {
            idx,
            xk: self.cw[idx],
            w: self.cw[idx + 1] - self.cw[idx],
            yk: self.ch[idx],
            h: self.ch[idx + 1] - self.ch[idx],
            dk: self.dv[idx],
            dk1: self.dv[idx + 1],
        }
    }

    fn inside(&self, v: f64) -> bool {
        v >= -self.b && v <= self.b
    }

    fn logdet(b: &Bin, xi: f64) -> f64 {
        let s = b.h / b.w;
        let t2 = xi * (1.0 - xi);
        let den = s + (b.dk + b.dk1 - 2.0 * s) * t2;
        let m = b.dk1 * xi * xi + 2.0 * s * t2 + b.dk * (1.0 - xi) * (1.0 - xi);
        (s * s * m).ln() - 2.0 * den.ln()
    }

    /// (y, log g'(x)).
    pub fn forward(&self, x: f64) -> (f64, f64) {
        if !self.inside(x) {
            return (x, 0.0);
        }
        let b = self.bin(x, false);
        let xi = ((x - b.xk) / b.w).clamp(0.0, 1.0);
        let s = b.h / b.w;
        let t2 = xi * (1.0 - xi);
        let den = s + (b.dk + b.dk1 - 2.0 * s) * t2;
        let y = b.yk + b.h * (s * xi * xi + b.dk * t2) / den;
        (y, Self::logdet(&b, xi))
    }

    /// (x, log g'(x)) for y = g(x).
    pub fn inverse(&self, y: f64) -> (f64, f64) {
        if !self.inside(y) {
            return (y, 0.0);
        }
        let b = self.bin(y, true);
        let s = b.h / b.w;
        let dy = y - b.yk;
        let sum = b.dk + b.dk1 - 2.0 * s;
        let qa = b.h * (s - b.dk) + dy * sum;
        let qb = b.h * b.dk - dy * sum;
        let qc = -s * dy;
        let disc = (qb * qb - 4.0 * qa * qc).max(0.0);
        let xi = (2.0 * qc / (-qb - disc.sqrt())).clamp(0.0, 1.0);
        (xi * b.w + b.xk, Self::logdet(&b, xi))
    }

    /// Gradients of gy·y + gl·log g'(x): (d/dx, d/draw [3K − 1]).
    pub fn backward(&self, x: f64, gy: f64, gl: f64) -> (f64, Vec<f64>) {
        let k = self.k;
        let mut graw = vec![0.0; 3 * k - 1];
        if !self.inside(x) {
            return (gy, graw);
        }
        let b = self.bin(x, false);
        let xi = ((x - b.xk) / b.w).clamp(0.0, 1.0);
        let s = b.h / b.w;
        let om = 1.0 - xi;
        let t2 = xi * om;
        let sum = b.dk + b.dk1 - 2.0 * s;
        let den = s + sum * t2;
        let n = s * xi * xi + b.dk * t2;
        let m = b.dk1 * xi * xi + 2.0 * s * t2 + b.dk * om * om;
        let (id, im) = (1.0 / den, 1.0 / m);
        let id2 = id * id;
        let n_xi = 2.0 * s * xi + b.dk * (1.0 - 2.0 * xi);
        let d_xi = sum * (1.0 - 2.0 * xi);
        let m_xi = 2.0 * b.dk1 * xi + 2.0 * s * (1.0 - 2.0 * xi) - 2.0 * b.dk * om;
        let y_xi = b.h * (n_xi * den - n * d_xi) * id2;
        let y_s = b.h * (xi * xi * den - n * (1.0 - 2.0 * t2)) * id2;
        let y_dk = b.h * t2 * (den - n) * id2;
        let y_dk1 = -b.h * n * t2 * id2;
        let y_h = n * id;
        let l_xi = m_xi * im - 2.0 * d_xi * id;
        let l_s = 2.0 / s + 2.0 * t2 * im - 2.0 * (1.0 - 2.0 * t2) * id;
        let l_dk = om * om * im - 2.0 * t2 * id;
        let l_dk1 = xi * xi * im - 2.0 * t2 * id;
        let g_xi = gy * y_xi + gl * l_xi;
        let g_s = gy * y_s + gl * l_s;
        let g_dk = gy * y_dk + gl * l_dk;
        let g_dk1 = gy * y_dk1 + gl * l_dk1;
        let iw = 1.0 / b.w;
        let g_x = g_xi * iw;
        let g_xk = -g_xi * iw;
        let g_w = -(g_xi * xi + g_s * s) * iw;
        let g_yk = gy;
        let g_h = gy * y_h + g_s * iw;
        let cw = 1.0 - MIN_BIN_WIDTH * k as f64;
        let chh = 1.0 - MIN_BIN_HEIGHT * k as f64;
        let mut gw = vec![0.0; k];
        let mut gh = vec![0.0; k];
        for j in 0..k {
            let sel = |before: f64, same: f64| {
                if j < b.idx {
                    before
                } else if j == b.idx {
                    same
                } else {
                    0.0
                }
            };
            gw[j] = 2.0 * self.b * cw * sel(g_xk, g_w);
            gh[j] = 2.0 * self.b * chh * sel(g_yk, g_h);
        }
        let dotw: f64 = self.sw.iter().zip(&gw).map(|(a, b)| a * b).sum();
        let doth: f64 = self.sh.iter().zip(&gh).map(|(a, b)| a * b).sum();
        for j in 0..k {
            graw[j] = self.sw[j] * (gw[j] - dotw) * self.raw_scale;
            graw[k + j] = self.sh[j] * (gh[j] - doth) * self.raw_scale;
        }
        for j in 1..k {
            let g = if j == b.idx { g_dk } else { 0.0 } + if j == b.idx + 1 { g_dk1 } else { 0.0 };
            graw[2 * k + j - 1] = g * sigmoid(self.raw_d[j - 1]);
        }
        (g_x, graw)
    }
}

fn elem_forward(cfg: &FlowConfig, x: f64, par: &[f64]) -> (f64, f64) {
    match cfg.kind {
        FlowKind::Maf => affine_forward(x, par[0], par[1]),
        FlowKind::Nsf => Spline::new(cfg, par).forward(x),
    }
}

fn elem_inverse(cfg: &FlowConfig, y: f64, par: &[f64]) -> (f64, f64) {
    match cfg.kind {
        FlowKind::Maf => affine_inverse(y, par[0], par[1]),
        FlowKind::Nsf => Spline::new(cfg, par).inverse(y),
    }
}

/// (d/dx, d/dparams) of gy·y + gl·logdet.
fn elem_backward(cfg: &FlowConfig, x: f64, par: &[f64], gy: f64, gl: f64) -> (f64, Vec<f64>) {
    match cfg.kind {
        FlowKind::Maf => {
            let (gx, gmu, ga) = affine_backward(x, par[0], par[1], gy, gl);
            (gx, vec![gmu, ga])
        }
        FlowKind::Nsf => Spline::new(cfg, par).backward(x, gy, gl),
    }
}

// ---------------------------------------------------------------------------------------------
// The flow.

struct RowTape {
    /// x_t for t = 0 … T.
    xs: Vec<Vec<f64>>,
    made: Vec<MadeTape>,
    log_prob: f64,
}

fn row_forward(cfg: &FlowConfig, w: &FlowWeights, theta: &[f64], c: &[f64]) -> RowTape {
    let p = cfg.params_per_dim();
    let mut x = theta.to_vec();
    let mut xs = vec![];
    let mut made = vec![];
    let mut ld = 0.0;
    for t in 0..cfg.transforms {
        let m = made_forward(cfg, &w.layers[t], t, &x, c);
        xs.push(x.clone());
        for (i, xi) in x.iter_mut().enumerate() {
            let (y, l) = elem_forward(cfg, *xi, &m.out[i * p..(i + 1) * p]);
            *xi = y;
            ld += l;
        }
        made.push(m);
    }
    let lp = ld - 0.5 * cfg.dim as f64 * LOG_2PI - 0.5 * x.iter().map(|v| v * v).sum::<f64>();
    xs.push(x);
    RowTape {
        xs,
        made,
        log_prob: lp,
    }
}

fn ctx_row<'a>(cfg: &FlowConfig, context: &'a [f64], r: usize) -> &'a [f64] {
    &context[r * cfg.context_dim..(r + 1) * cfg.context_dim]
}

/// log q(θ_r | c_r) per row.
pub fn log_prob(
    cfg: &FlowConfig,
    w: &FlowWeights,
    theta: &[f64],
    context: &[f64],
    rows: usize,
) -> Vec<f64> {
    forward_z(cfg, w, theta, context, rows).1
}

/// (z = x_T [rows × dim], log q per row).
pub fn forward_z(
    cfg: &FlowConfig,
    w: &FlowWeights,
    theta: &[f64],
    context: &[f64],
    rows: usize,
) -> (Vec<f64>, Vec<f64>) {
    let d = cfg.dim;
    let mut z = Vec::with_capacity(rows * d);
    let mut lp = Vec::with_capacity(rows);
    for r in 0..rows {
        let tape = row_forward(cfg, w, &theta[r * d..(r + 1) * d], ctx_row(cfg, context, r));
        z.extend_from_slice(&tape.xs[cfg.transforms]);
        lp.push(tape.log_prob);
    }
    (z, lp)
}

/// Gradients of Σ_r row_w[r] · log q(θ_r | c_r): (parameters, context [rows × context_dim]).
pub fn backward(
    cfg: &FlowConfig,
    w: &FlowWeights,
    theta: &[f64],
    context: &[f64],
    rows: usize,
    row_w: &[f64],
) -> (FlowWeights, Vec<f64>) {
    let d = cfg.dim;
    let e = cfg.context_dim;
    let p = cfg.params_per_dim();
    let mut g = FlowWeights::zeros(cfg);
    let mut dctx = vec![0.0; rows * e];
    for r in 0..rows {
        let wr = row_w[r];
        let c = ctx_row(cfg, context, r);
        let tape = row_forward(cfg, w, &theta[r * d..(r + 1) * d], c);
        let mut gx: Vec<f64> = tape.xs[cfg.transforms].iter().map(|v| -wr * v).collect();
        for t in (0..cfg.transforms).rev() {
            let x = &tape.xs[t];
            let m = &tape.made[t];
            let mut gn = vec![0.0; d];
            let mut dout = vec![0.0; d * p];
            for i in 0..d {
                let (gxi, gp) = elem_backward(cfg, x[i], &m.out[i * p..(i + 1) * p], gx[i], wr);
                gn[i] = gxi;
                dout[i * p..(i + 1) * p].copy_from_slice(&gp);
            }
            let din = made_backward(cfg, &w.layers[t], &mut g.layers[t], t, m, &dout);
            for i in 0..d {
                gn[i] += din[i];
            }
            for j in 0..e {
                dctx[r * e + j] += din[d + j];
            }
            gx = gn;
        }
    }
    (g, dctx)
}

/// θ from base draws z [rows × dim] (inverting every transform), and log q(θ_r | c_r).
pub fn inverse(
    cfg: &FlowConfig,
    w: &FlowWeights,
    z: &[f64],
    context: &[f64],
    rows: usize,
) -> (Vec<f64>, Vec<f64>) {
    let d = cfg.dim;
    let p = cfg.params_per_dim();
    let mut theta = Vec::with_capacity(rows * d);
    let mut lps = Vec::with_capacity(rows);
    for r in 0..rows {
        let c = ctx_row(cfg, context, r);
        let mut x = z[r * d..(r + 1) * d].to_vec();
        let mut lq = -0.5 * d as f64 * LOG_2PI - 0.5 * x.iter().map(|v| v * v).sum::<f64>();
        for t in (0..cfg.transforms).rev() {
            let y = std::mem::replace(&mut x, vec![0.0; d]);
            for k in 1..=d {
                let i = dim_of_degree(cfg, t, k);
                let m = made_forward(cfg, &w.layers[t], t, &x, c);
                let (xi, ld) = elem_inverse(cfg, y[i], &m.out[i * p..(i + 1) * p]);
                x[i] = xi;
                lq += ld;
            }
        }
        theta.extend_from_slice(&x);
        lps.push(lq);
    }
    (theta, lps)
}

/// The outputs of transform t's MADE for one row (unpadded, dim·P): for tests of the
/// autoregressive structure.
pub fn made_outputs(cfg: &FlowConfig, w: &FlowWeights, t: usize, x: &[f64], c: &[f64]) -> Vec<f64> {
    made_forward(cfg, &w.layers[t], t, x, c).out
}

/// Gradients of Σ_r Σ_i dtheta[r, i] · θ_{r,i} for the samples θ = T⁻¹(z; c) of base draws z held
/// fixed (the reparameterized sample): (parameters, context [rows × context_dim]).
///
/// Implicit differentiation of each transform F_t (x_{t+1} = F_t(x_t; ψ, c)) at its inverse:
/// with g = dL/dx_t, v = J⁻ᵀ g is dL/dx_{t+1} and −vᵀ ∂F_t/∂(ψ, c) the parameters' and the
/// context's share. J is triangular in the transform's order, so the solve runs over the dims
/// from the last in that order to the first: v_i = g_i / g'(x_i), the dim's transform parameters
/// get −v_i ∂g/∂params_i, and those are back-propagated through the MADE at x_t (only into
/// inputs earlier in the order) and added to g of the earlier dims, to the weight gradients
/// and to the context's gradient. Transforms in the order opposite to sampling (t = 0 first).
pub fn inverse_backward(
    cfg: &FlowConfig,
    w: &FlowWeights,
    z: &[f64],
    context: &[f64],
    rows: usize,
    dtheta: &[f64],
) -> (FlowWeights, Vec<f64>) {
    let d = cfg.dim;
    let e = cfg.context_dim;
    let p = cfg.params_per_dim();
    let mut g = FlowWeights::zeros(cfg);
    let mut dctx = vec![0.0; rows * e];
    for r in 0..rows {
        let c = ctx_row(cfg, context, r);
        // x_t of the sample, t = 0 … T (x_T = z, x_0 = θ).
        let mut xs = vec![z[r * d..(r + 1) * d].to_vec()];
        for t in (0..cfg.transforms).rev() {
            let y = xs.last().expect("x_{t+1}").clone();
            let mut x = vec![0.0; d];
            for k in 1..=d {
                let i = dim_of_degree(cfg, t, k);
                let m = made_forward(cfg, &w.layers[t], t, &x, c);
                x[i] = elem_inverse(cfg, y[i], &m.out[i * p..(i + 1) * p]).0;
            }
            xs.push(x);
        }
        xs.reverse();
        let mut gx = dtheta[r * d..(r + 1) * d].to_vec();
        for (t, x) in xs.iter().enumerate().take(cfg.transforms) {
            let m = made_forward(cfg, &w.layers[t], t, x, c);
            let mut v = vec![0.0; d];
            for k in (1..=d).rev() {
                let i = dim_of_degree(cfg, t, k);
                // (g'(x_i), ∂g/∂params_i): the gradients of y = g(x) itself.
                let (gp, dpar) = elem_backward(cfg, x[i], &m.out[i * p..(i + 1) * p], 1.0, 0.0);
                v[i] = gx[i] / gp;
                let mut dout = vec![0.0; d * p];
                for (o, dp) in dout[i * p..(i + 1) * p].iter_mut().zip(&dpar) {
                    *o = -v[i] * dp;
                }
                let din = made_backward(cfg, &w.layers[t], &mut g.layers[t], t, &m, &dout);
                for j in 0..d {
                    gx[j] += din[j];
                }
                for j in 0..e {
                    dctx[r * e + j] += din[d + j];
                }
            }
            gx = v;
        }
    }
    (g, dctx)
}

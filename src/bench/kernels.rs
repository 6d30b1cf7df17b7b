//! `gkl-gpu bench kernels`: dense forward+backward GFLOP/s and residual-MLP training steps/s on
//! the GPU, each beside a plain-Rust CPU version of the same work timed in the same run.

use super::cpu_mlp::{dense_fwd_bwd, CpuMlpTrainer, DenseScratch};
use crate::kernels::adam::AdamConfig;
use crate::kernels::dense::{self, DenseParams};
use crate::kernels::layout::{pack, pack_weight, pad4};
use crate::kernels::Activation;
use crate::models::mlp::{MlpConfig, MlpWeights};
use crate::runtime::{Dispatch, GpuContext, GpuResult};
use crate::training::regress::Regressor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::time::Instant;

#[derive(Clone, Debug, Serialize)]
pub struct DenseRow {
    pub batch: usize,
    pub width: usize,
    pub gpu_gflops: f64,
    pub cpu_gflops: f64,
    pub gpu_over_cpu: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct MlpRow {
    pub batch: usize,
    pub width: usize,
    pub blocks: usize,
    pub gpu_steps_per_s: f64,
    pub cpu_steps_per_s: f64,
    pub gpu_pairs_per_s: f64,
    pub gpu_gflops: f64,
    pub gpu_over_cpu: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct KernelBenchReport {
    pub adapter: String,
    pub dense: Vec<DenseRow>,
    pub mlp: Vec<MlpRow>,
}

/// Calls `f` until `min_s` seconds and `min_reps` calls have passed (after one warm-up call);
/// `finish` runs once before the clock stops (waits for the GPU). Returns calls per second.
fn rate(min_s: f64, min_reps: usize, mut f: impl FnMut(), finish: impl Fn()) -> f64 {
    f();
    finish();
    let t = Instant::now();
    let mut n = 0;
    while n < min_reps || t.elapsed().as_secs_f64() < min_s {
        f();
        n += 1;
        if n % 8 == 0 {
            finish();
        }
    }
    finish();
    n as f64 / t.elapsed().as_secs_f64()
}

fn rand_vec(rng: &mut StdRng, n: usize, s: f64) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-s..s)).collect()
}

/// One dense layer (width × width, ReLU): forward, backward to the input, backward to W and b.
pub fn dense_row(ctx: &GpuContext, batch: usize, width: usize, min_s: f64) -> GpuResult<DenseRow> {
    let mut rng = StdRng::seed_from_u64(1);
    let (k, n) = (width, width);
    let x = rand_vec(&mut rng, batch * k, 1.0);
    let w = rand_vec(&mut rng, k * n, 1.0 / (k as f64).sqrt());
    let b = rand_vec(&mut rng, n, 0.1);
    let xt = ctx.tensor_from("x", &pack(&x, batch, k))?;
    let wt = ctx.tensor_from("w", &pack_weight(&w, k, n))?;
    let bt = ctx.tensor_from("b", &pack(&b, 1, n))?;
    let z = ctx.tensor_zeros("z", batch * pad4(n))?;
    let a = ctx.tensor_zeros("a", batch * pad4(n))?;
    let dx = ctx.tensor_zeros("dx", batch * pad4(k))?;
    let dw = ctx.tensor_zeros("dw", pad4(k) * pad4(n))?;
    let db = ctx.tensor_zeros("db", pad4(n))?;
    let shape = DenseParams::new(batch, k, n);
    let p = ctx.uniform("p", &shape);
    let d = [
        dense::forward(
            ctx,
            &p,
            shape,
            Activation::Relu,
            &xt,
            &wt,
            &bt,
            None,
            Some(&z),
            &a,
        )?,
        // Upstream gradient = the activations themselves: same work as any other gradient.
        dense::backward_input(ctx, &p, shape, &a, &wt, None, None, &dx)?,
        dense::backward_weight(ctx, &p, shape, &xt, &a, &dw, &db, false, None)?,
    ];
    let refs: Vec<&Dispatch> = d.iter().collect();
    let flops = 6.0 * (batch * k * n) as f64;
    let gpu = rate(
        min_s,
        3,
        || ctx.run(&refs).expect("dense bench submit"),
        || ctx.wait().expect("wait"),
    );
    let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let wf: Vec<f32> = w.iter().map(|&v| v as f32).collect();
    let bf: Vec<f32> = b.iter().map(|&v| v as f32).collect();
    let mut s = DenseScratch::new(batch, k, n);
    let cpu = rate(
        min_s,
        3,
        || dense_fwd_bwd(&xf, &wf, &bf, batch, k, n, &mut s),
        || {},
    );
    Ok(DenseRow {
        batch,
        width,
        gpu_gflops: gpu * flops / 1e9,
        cpu_gflops: cpu * flops / 1e9,
        gpu_over_cpu: gpu / cpu,
    })
}

/// A full training step of the residual MLP (2 blocks, ReLU, 8 → width → 8, MSE, Adam).
pub fn mlp_row(ctx: &GpuContext, batch: usize, width: usize, min_s: f64) -> GpuResult<MlpRow> {
    let cfg = MlpConfig {
        in_dim: 8,
        out_dim: 8,
        hidden: width,
        blocks: 2,
        act: Activation::Relu,
        residual: true,
    };
    let mut rng = StdRng::seed_from_u64(2);
    let weights = MlpWeights::init(&cfg, &mut rng);
    let adam = AdamConfig {
        lr: 1e-4,
        ..Default::default()
    };
    let reg = Regressor::new(ctx, cfg.clone(), &weights, batch, adam)?;
    let x = rand_vec(&mut rng, batch * 8, 1.0);
    let y = rand_vec(&mut rng, batch * 8, 1.0);
    // Includes uploading the batch, as a real training step does.
    let gpu = rate(
        min_s,
        3,
        || reg.step(&x, &y).expect("mlp bench step"),
        || ctx.wait().expect("wait"),
    );
    let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let yf: Vec<f32> = y.iter().map(|&v| v as f32).collect();
    let mut cpu_t = CpuMlpTrainer::new(&cfg, &weights, batch);
    let cpu = rate(
        min_s,
        3,
        || {
            cpu_t.step(&xf, &yf, 1e-4);
        },
        || {},
    );
    let flops = 3.0 * cfg.flops_per_row() * batch as f64;
    Ok(MlpRow {
        batch,
        width,
        blocks: cfg.blocks,
        gpu_steps_per_s: gpu,
        cpu_steps_per_s: cpu,
        gpu_pairs_per_s: gpu * batch as f64,
        gpu_gflops: gpu * flops / 1e9,
        gpu_over_cpu: gpu / cpu,
    })
}

pub fn run(
    ctx: &GpuContext,
    batches: &[usize],
    widths: &[usize],
    min_s: f64,
    mut progress: impl FnMut(&str),
) -> GpuResult<KernelBenchReport> {
    let mut dense = vec![];
    let mut mlp = vec![];
    for &w in widths {
        for &b in batches {
            progress(&format!("dense   batch {b:>5} width {w:>4}"));
            dense.push(dense_row(ctx, b, w, min_s)?);
            progress(&format!("mlp     batch {b:>5} width {w:>4}"));
            mlp.push(mlp_row(ctx, b, w, min_s)?);
        }
    }
    Ok(KernelBenchReport {
        adapter: ctx.summary().one_line(),
        dense,
        mlp,
    })
}

impl KernelBenchReport {
    pub fn table(&self) -> String {
        let mut s = format!("adapter: {}\n\n", self.adapter);
        s += "dense layer forward+backward (ReLU), GFLOP/s\n";
        s +=
            "| batch | width | GPU GFLOP/s | CPU GFLOP/s | GPU/CPU |\n|---:|---:|---:|---:|---:|\n";
        for r in &self.dense {
            s += &format!(
                "| {} | {} | {:.2} | {:.2} | {:.2} |\n",
                r.batch, r.width, r.gpu_gflops, r.cpu_gflops, r.gpu_over_cpu
            );
        }
        s += "\nresidual MLP training step (8 → width → 8, 2 blocks, MSE, Adam)\n";
        s += "| batch | width | GPU steps/s | CPU steps/s | GPU pairs/s | GPU GFLOP/s | GPU/CPU |\n|---:|---:|---:|---:|---:|---:|---:|\n";
        for r in &self.mlp {
            s += &format!(
                "| {} | {} | {:.1} | {:.1} | {:.0} | {:.2} | {:.2} |\n",
                r.batch,
                r.width,
                r.gpu_steps_per_s,
                r.cpu_steps_per_s,
                r.gpu_pairs_per_s,
                r.gpu_gflops,
                r.gpu_over_cpu
            );
        }
        s
    }
}

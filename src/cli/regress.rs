//! `gkl-gpu regress`: trains the residual MLP on the GPU to regress a known function
//! (sin(2x₁)·cos(x₂) + x₁x₂/2 on [−2, 2]²) and reports held-out error: a quick end-to-end check
//! that an adapter computes correctly.

use super::GpuArgs;
use anyhow::{bail, Result};
use clap::Args;
use gkl_gpu::kernels::adam::AdamConfig;
use gkl_gpu::kernels::Activation;
use gkl_gpu::models::mlp::MlpConfig;
use gkl_gpu::training::regress::run_regression;
use serde_json::json;

#[derive(Args)]
pub struct RegressArgs {
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    #[arg(long, default_value_t = 2)]
    blocks: usize,
    #[arg(long, value_enum, default_value_t = Activation::Gelu)]
    activation: Activation,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    #[arg(long, default_value_t = 4096)]
    train_size: usize,
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    #[arg(long, default_value_t = 3e-3)]
    lr: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(gpu: &GpuArgs, a: RegressArgs) -> Result<()> {
    if a.batch_size == 0 || a.train_size < a.batch_size {
        bail!(
            "--train-size ({}) must be at least --batch-size ({}) and both positive",
            a.train_size,
            a.batch_size
        );
    }
    let ctx = gpu.context()?;
    let cfg = MlpConfig {
        in_dim: 2,
        out_dim: 1,
        hidden: a.hidden,
        blocks: a.blocks,
        act: a.activation,
        residual: true,
    };
    let adam = AdamConfig {
        lr: a.lr,
        ..Default::default()
    };
    let r = run_regression(
        &ctx,
        cfg,
        a.batch_size,
        a.train_size,
        a.epochs,
        adam,
        a.seed,
        |e, l| eprintln!("epoch {:>3}  train mse {l:.5}", e + 1),
    )?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "adapter": ctx.summary(),
                "untrained_test_mse": r.untrained_test_mse,
                "test_mse": r.test_mse,
                "steps": r.steps,
                "seconds": r.seconds,
                "steps_per_second": r.steps as f64 / r.seconds,
                "epochs": r.epochs.iter().map(|(e, l)| json!({"epoch": e + 1, "train_mse": l})).collect::<Vec<_>>(),
            }))?
        );
    } else {
        println!(
            "held-out mse: {:.5} (untrained {:.4}); {} steps in {:.2} s ({:.0} steps/s)",
            r.test_mse,
            r.untrained_test_mse,
            r.steps,
            r.seconds,
            r.steps as f64 / r.seconds
        );
    }
    Ok(())
}

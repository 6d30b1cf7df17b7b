//! Supervised regression with the residual MLP, trained entirely on the GPU: the smallest
//! complete training loop (forward, loss, backward, clip, Adam in one submission per step;
//! the loss read back once per epoch).

use crate::kernels::adam::{Adam, AdamConfig};
use crate::kernels::layout::{pack, pad4, unpack};
use crate::kernels::loss::{self, LossParams};
use crate::kernels::reduce::{self, ReduceOp, ReduceParams};
use crate::models::mlp::{Mlp, MlpConfig, MlpPlan, MlpWeights};
use crate::runtime::{Dispatch, GpuContext, GpuResult, GpuTensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// The known function the demo and the test regress: R² → R.
pub fn target_fn(x: &[f64]) -> f64 {
    (2.0 * x[0]).sin() * x[1].cos() + 0.5 * x[0] * x[1]
}

/// `n` inputs uniform on [−2, 2]² and their targets.
pub fn make_data(n: usize, rng: &mut impl Rng) -> (Vec<f64>, Vec<f64>) {
    let x: Vec<f64> = (0..2 * n).map(|_| rng.random_range(-2.0..2.0)).collect();
    let y = x.chunks(2).map(target_fn).collect();
    (x, y)
}

pub struct Regressor {
    pub ctx: GpuContext,
    pub mlp: Mlp,
    pub plan: MlpPlan,
    pub adam: Adam,
    truth: GpuTensor,
    loss_acc: GpuTensor,
    step_dispatches: Vec<Dispatch>,
    _keep: (GpuTensor, Vec<wgpu::Buffer>),
}

impl Regressor {
    pub fn new(
        ctx: &GpuContext,
        cfg: MlpConfig,
        weights: &MlpWeights,
        batch: usize,
        adam: AdamConfig,
    ) -> GpuResult<Self> {
        let mlp = Mlp::new(ctx, cfg.clone(), weights)?;
        let plan = MlpPlan::new(ctx, &mlp, batch)?;
        let adam = Adam::new(ctx, adam, &mlp.params, &mlp.grads)?;
        let truth = ctx.tensor_zeros("truth", batch * pad4(cfg.out_dim))?;
        let row_loss = ctx.tensor_zeros("row-loss", batch)?;
        let loss_acc = ctx.tensor_zeros("loss-acc", 1)?;
        let lp = ctx.uniform("loss-params", &LossParams::new(batch, cfg.out_dim));
        let rp = ctx.uniform("reduce-params", &ReduceParams::row_major(batch, 1, 1));
        let mut step = plan.forward.clone();
        step.push(loss::mse(
            ctx, &lp, batch, &plan.y, &truth, &plan.dy, &row_loss,
        )?);
        step.push(reduce::reduce_cols(
            ctx,
            &rp,
            1,
            ReduceOp::Sum,
            true,
            &row_loss,
            &loss_acc,
        )?);
        step.extend(plan.backward.iter().cloned());
        step.extend(adam.dispatches().into_iter().cloned());
        Ok(Regressor {
            ctx: ctx.clone(),
            mlp,
            plan,
            adam,
            truth,
            loss_acc,
            step_dispatches: step,
            _keep: (row_loss, vec![lp, rp]),
        })
    }

    /// One optimizer step on a batch (`x` rows × in_dim, `y` rows × out_dim, unpadded), one submit.
    pub fn step(&self, x: &[f64], y: &[f64]) -> GpuResult<()> {
        let c = &self.mlp.config;
        let rows = self.plan.rows;
        self.ctx.write(&self.plan.x, 0, &pack(x, rows, c.in_dim))?;
        self.ctx.write(&self.truth, 0, &pack(y, rows, c.out_dim))?;
        let d: Vec<&Dispatch> = self.step_dispatches.iter().collect();
        self.ctx.run(&d)
    }

    /// Sum of the batch losses since the last call (one 4-byte readback), then resets it.
    pub fn take_loss_sum(&self) -> GpuResult<f64> {
        let v = self.ctx.read::<f32>(&self.loss_acc)?[0] as f64;
        self.ctx.write(&self.loss_acc, 0, &[0f32])?;
        Ok(v)
    }

    /// Network output for any number of rows (forward only, in batches of the plan's size).
    pub fn predict(&self, x: &[f64]) -> GpuResult<Vec<f64>> {
        let c = &self.mlp.config;
        let rows = self.plan.rows;
        let n = x.len() / c.in_dim;
        let mut out = Vec::with_capacity(n * c.out_dim);
        let fwd: Vec<&Dispatch> = self.plan.forward.iter().collect();
        for start in (0..n).step_by(rows) {
            let m = rows.min(n - start);
            let mut chunk = x[start * c.in_dim..(start + m) * c.in_dim].to_vec();
            chunk.resize(rows * c.in_dim, 0.0);
            self.ctx
                .write(&self.plan.x, 0, &pack(&chunk, rows, c.in_dim))?;
            self.ctx.run(&fwd)?;
            let y = unpack(&self.ctx.read::<f32>(&self.plan.y)?, rows, c.out_dim);
            out.extend_from_slice(&y[..m * c.out_dim]);
        }
        Ok(out)
    }
}

pub fn mse(pred: &[f64], truth: &[f64]) -> f64 {
    pred.iter()
        .zip(truth)
        .map(|(p, t)| (p - t) * (p - t))
        .sum::<f64>()
        / pred.len() as f64
}

#[derive(Clone, Debug)]
pub struct RegressReport {
    pub epochs: Vec<(usize, f64)>,
    pub untrained_test_mse: f64,
    pub test_mse: f64,
    pub seconds: f64,
    pub steps: usize,
}

/// Trains on `n_train` points for `epochs` epochs and reports the held-out error.
#[allow(clippy::too_many_arguments)]
pub fn run_regression(
    ctx: &GpuContext,
    cfg: MlpConfig,
    batch: usize,
    n_train: usize,
    epochs: usize,
    adam: AdamConfig,
    seed: u64,
    mut on_epoch: impl FnMut(usize, f64),
) -> GpuResult<RegressReport> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (xtr, ytr) = make_data(n_train, &mut rng);
    let (xte, yte) = make_data(2000, &mut rng);
    let weights = MlpWeights::init(&cfg, &mut rng);
    let reg = Regressor::new(ctx, cfg, &weights, batch, adam)?;
    let untrained_test_mse = mse(&reg.predict(&xte)?, &yte);
    let start = std::time::Instant::now();
    let mut idx: Vec<usize> = (0..n_train).collect();
    let mut report = vec![];
    let mut steps = 0;
    let (mut xb, mut yb) = (vec![0.0; batch * 2], vec![0.0; batch]);
    for epoch in 0..epochs {
        idx.shuffle(&mut rng);
        let nb = n_train / batch;
        for b in 0..nb {
            for (r, &i) in idx[b * batch..(b + 1) * batch].iter().enumerate() {
                xb[2 * r..2 * r + 2].copy_from_slice(&xtr[2 * i..2 * i + 2]);
                yb[r] = ytr[i];
            }
            reg.step(&xb, &yb)?;
            steps += 1;
        }
        let l = reg.take_loss_sum()? / nb.max(1) as f64;
        on_epoch(epoch, l);
        report.push((epoch, l));
    }
    let test_mse = mse(&reg.predict(&xte)?, &yte);
    Ok(RegressReport {
        epochs: report,
        untrained_test_mse,
        test_mse,
        seconds: start.elapsed().as_secs_f64(),
        steps,
    })
}

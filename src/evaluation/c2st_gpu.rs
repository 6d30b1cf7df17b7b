//! The C2ST classifiers on the GPU: all folds train at once, as models in the same launches; an
//! epoch of steps is one submission, and only the epoch losses and weights come back.

use super::c2st::{C2stError, FoldTrainer, Setup};
use crate::kernels::adam::Adam;
use crate::kernels::gather::{self, GatherParams};
use crate::kernels::layout::{pack, pad4, unpack};
use crate::kernels::loss::{self, LossParams};
use crate::kernels::reduce::{self, ReduceOp, ReduceParams};
use crate::models::mlp::{Mlp, MlpPlan};
use crate::runtime::{Dispatch, GpuContext, GpuTensor};

pub(super) struct GpuFolds<'a> {
    ctx: &'a GpuContext,
    setup: &'a Setup,
    mlp: Mlp,
    perm: GpuTensor,
    loss_acc: GpuTensor,
    /// One training step of every fold: gather, forward, loss, loss sum, backward, Adam.
    step: Vec<Dispatch>,
    eval: MlpPlan,
    /// Rows per fold in `eval` (the largest fold; smaller ones are padded).
    test_rows: usize,
}

impl<'a> GpuFolds<'a> {
    pub fn new(ctx: &'a GpuContext, setup: &'a Setup) -> Result<Self, C2stError> {
        let (d, nf, batch) = (setup.d, setup.folds.len(), setup.batch);
        let n = setup.labels.len();
        let mlp = Mlp::new_batched(ctx, setup.mlp.clone(), &setup.weights)?;
        let plan = MlpPlan::with_l2(ctx, &mlp, batch, setup.l2)?;
        let adam = Adam::new(ctx, setup.adam, &mlp.params, &mlp.grads)?;

        let d4 = pad4(d);
        let data_t = ctx.tensor_from("c2st-data", &pack(&setup.data, n, d))?;
        let labels_t = ctx.tensor_from("c2st-labels", &setup.labels)?;
        let perm = ctx.tensor_zeros("c2st-perm", nf * setup.n_train)?;
        let truth = ctx.tensor_zeros("c2st-truth", nf * batch * 4)?;
        let row_loss = ctx.tensor_zeros("c2st-row-loss", nf * batch)?;
        let loss_acc = ctx.tensor_zeros("c2st-loss", nf)?;
        // The batch is picked by Adam's step counter modulo `steps`: each epoch is exactly
        // `steps` steps, so step b of an epoch takes batch b.
        let gp = GatherParams::new(batch, d4 / 4, setup.n_train, setup.steps, nf);
        let gp_buf = ctx.uniform("gather-params", &gp);
        let lp = ctx.uniform("loss-params", &LossParams::batched(batch, 1, nf));
        let rp = ctx.uniform("reduce-params", &ReduceParams::blocks(batch, nf));
        let mut step = vec![gather::gather_batch(
            ctx,
            &gp_buf,
            &gp,
            &data_t,
            &labels_t,
            &perm,
            &adam.state,
            &plan.x,
            &truth,
        )?];
        step.extend(plan.forward.iter().cloned());
        step.push(loss::bce_logits(
            ctx,
            &lp,
            nf * batch,
            &plan.y,
            &truth,
            &plan.dy,
            &row_loss,
        )?);
        step.push(reduce::reduce_cols(
            ctx,
            &rp,
            nf,
            ReduceOp::Sum,
            true,
            &row_loss,
            &loss_acc,
        )?);
        step.extend(plan.backward.iter().cloned());
        step.extend(adam.dispatches().into_iter().cloned());

        // Held-out evaluation: every fold's test rows through its own model, in one forward pass.
        let test_rows = setup.folds.iter().map(Vec::len).max().unwrap_or(1);
        let eval = MlpPlan::new(ctx, &mlp, test_rows)?;
        let mut test_x = vec![0f32; nf * test_rows * d4];
        for (f, fold) in setup.folds.iter().enumerate() {
            let rows: Vec<f64> = fold
                .iter()
                .flat_map(|&i| setup.data[i * d..(i + 1) * d].to_vec())
                .collect();
            let packed = pack(&rows, fold.len(), d);
            test_x[f * test_rows * d4..f * test_rows * d4 + packed.len()].copy_from_slice(&packed);
        }
        ctx.write(&eval.x, 0, &test_x)?;
        Ok(GpuFolds {
            ctx,
            setup,
            mlp,
            perm,
            loss_acc,
            step,
            eval,
            test_rows,
        })
    }
}

impl FoldTrainer for GpuFolds<'_> {
    /// Trains every fold, stopped ones too (their score is already taken; skipping them would
    /// cost more launches than it saves).
    fn epoch(&mut self, perm: &[u32], _active: &[bool]) -> Result<Vec<(f64, f64)>, C2stError> {
        let ctx = self.ctx;
        let nf = self.setup.folds.len();
        ctx.write(&self.perm, 0, perm)?;
        ctx.write(&self.loss_acc, 0, &vec![0f32; nf])?;
        let epoch: Vec<&Dispatch> = (0..self.setup.steps)
            .flat_map(|_| self.step.iter())
            .collect();
        ctx.run(&epoch)?;
        let sums: Vec<f32> = ctx.read(&self.loss_acc)?;
        let w = self.mlp.weights_all(ctx)?;
        Ok(sums
            .iter()
            .zip(&w)
            .map(|(&s, wf)| (s as f64, wf.w.iter().flatten().map(|v| v * v).sum()))
            .collect())
    }

    fn accuracy(&mut self, f: usize) -> Result<f64, C2stError> {
        let (ctx, rows) = (self.ctx, self.test_rows);
        let forward: Vec<&Dispatch> = self.eval.forward.iter().collect();
        ctx.run(&forward)?;
        let out = ctx.read_range::<f32>(&self.eval.y, f * rows * 4, rows * 4)?;
        let logits = unpack(&out, rows, 1);
        let fold = &self.setup.folds[f];
        let correct = fold
            .iter()
            .zip(&logits)
            .filter(|(&i, &z)| (z > 0.0) == (self.setup.labels[i] > 0.5))
            .count();
        Ok(correct as f64 / fold.len() as f64)
    }
}

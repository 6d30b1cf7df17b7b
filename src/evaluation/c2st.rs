//! Classifier two-sample test (C2ST) as sbibm defines it, trained on the GPU.
//!
//! Both sample sets are z-scored with the mean and unbiased standard deviation of the first (the
//! reference). Labelled 0 (reference) and 1 (other), they are split by 5-fold shuffled
//! cross-validation; on each fold an MLP classifier (ReLU, two hidden layers of 10·d units, one
//! logistic output) is trained as scikit-learn's `MLPClassifier` trains it: Adam (lr 1e-3),
//! minibatches of min(200, n) reshuffled every epoch, L2 penalty 1e-4 on the weights, Glorot-uniform
//! initialisation, and a stop once the epoch's training loss has failed to improve on the best by
//! 1e-4 for more than 10 epochs (or after 10,000 epochs). The score is the mean held-out accuracy.
//!
//! All five folds train at once, as five models in the same launches; an epoch of steps is one
//! submission, and only the five epoch losses come back. Differences from scikit-learn, each too
//! small to move the score: Adam's ε is applied after bias correction (as PyTorch does), the L2 term
//! of the reported loss uses the end-of-epoch weights, and when the training set is not a multiple
//! of the batch size the last batch is completed from the start of the permutation.

use crate::kernels::adam::{Adam, AdamConfig};
use crate::kernels::gather::{self, GatherParams};
use crate::kernels::layout::{pack, pad4, unpack};
use crate::kernels::loss::{self, LossParams};
use crate::kernels::reduce::{self, ReduceOp, ReduceParams};
use crate::kernels::Activation;
use crate::models::mlp::{Mlp, MlpConfig, MlpPlan, MlpWeights};
use crate::runtime::{Dispatch, GpuContext, GpuError, GpuResult};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

#[derive(Clone, Debug)]
pub struct C2stConfig {
    pub folds: usize,
    pub hidden_factor: usize,
    pub lr: f32,
    pub batch: usize,
    pub alpha: f64,
    pub tol: f64,
    pub n_iter_no_change: usize,
    pub max_epochs: usize,
    pub seed: u64,
    /// z-score both sets with the reference's statistics.
    pub z_score: bool,
}

impl Default for C2stConfig {
    fn default() -> Self {
        C2stConfig {
            folds: 5,
            hidden_factor: 10,
            lr: 1e-3,
            batch: 200,
            alpha: 1e-4,
            tol: 1e-4,
            n_iter_no_change: 10,
            max_epochs: 10_000,
            seed: 1,
            z_score: true,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct C2stResult {
    /// Mean held-out accuracy over the folds.
    pub accuracy: f64,
    pub fold_accuracies: Vec<f64>,
    pub fold_epochs: Vec<usize>,
    pub seconds: f64,
}

/// Row-major samples: `data.len() == rows * dim`.
pub struct Samples<'a> {
    pub data: &'a [f64],
    pub rows: usize,
    pub dim: usize,
}

/// z-scores `x` and `y` with the mean and unbiased standard deviation of `x` (a constant column
/// keeps scale 1 rather than dividing by zero).
pub fn z_score(x: &Samples, y: &Samples) -> (Vec<f64>, Vec<f64>) {
    let d = x.dim;
    let n = x.rows as f64;
    let mean: Vec<f64> = (0..d).map(|j| (0..x.rows).map(|r| x.data[r * d + j]).sum::<f64>() / n).collect();
    let sd: Vec<f64> = (0..d)
        .map(|j| {
            let v = (0..x.rows).map(|r| (x.data[r * d + j] - mean[j]).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
            if v > 0.0 {
                v.sqrt()
            } else {
                1.0
            }
        })
        .collect();
    let f = |s: &Samples| s.data.chunks(d).flat_map(|row| row.iter().enumerate().map(|(j, v)| (v - mean[j]) / sd[j]).collect::<Vec<_>>()).collect();
    (f(x), f(y))
}

/// scikit-learn's KFold(shuffle=True) split sizes: the first n mod k folds get one extra sample.
fn kfold(n: usize, k: usize, rng: &mut StdRng) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(rng);
    let mut folds = vec![];
    let mut start = 0;
    for f in 0..k {
        let size = n / k + usize::from(f < n % k);
        folds.push(idx[start..start + size].to_vec());
        start += size;
    }
    folds
}

/// Glorot-uniform initialisation as scikit-learn's MLP uses for ReLU networks (weights and biases).
fn glorot(cfg: &MlpConfig, rng: &mut StdRng) -> MlpWeights {
    let mut w = vec![];
    let mut b = vec![];
    for (k, n) in cfg.layer_dims() {
        let bound = (6.0 / (k + n) as f64).sqrt();
        w.push((0..k * n).map(|_| rng.random_range(-bound..bound)).collect());
        b.push((0..n).map(|_| rng.random_range(-bound..bound)).collect());
    }
    MlpWeights { w, b }
}

/// scikit-learn's no-improvement rule, per fold.
struct Stopper {
    best: f64,
    bad: usize,
    stopped_at: Option<usize>,
}

pub fn c2st(ctx: &GpuContext, x: &Samples, y: &Samples, cfg: &C2stConfig, mut progress: impl FnMut(usize, usize)) -> GpuResult<C2stResult> {
    if x.dim != y.dim {
        return Err(GpuError::InvalidArgument(format!("c2st: dimensions differ ({} vs {})", x.dim, y.dim)));
    }
    let d = x.dim;
    let n = x.rows + y.rows;
    if d == 0 || n < 2 * cfg.folds {
        return Err(GpuError::InvalidArgument(format!("c2st: need at least {} samples of dimension ≥ 1", 2 * cfg.folds)));
    }
    let start = std::time::Instant::now();
    let (xz, yz) = if cfg.z_score { z_score(x, y) } else { (x.data.to_vec(), y.data.to_vec()) };
    let mut all = xz;
    all.extend_from_slice(&yz);
    let labels: Vec<f32> = (0..n).map(|i| if i < x.rows { 0.0 } else { 1.0 }).collect();

    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let folds = kfold(n, cfg.folds, &mut rng);
    let nf = cfg.folds;
    let train_sets: Vec<Vec<u32>> = (0..nf)
        .map(|f| (0..nf).filter(|&g| g != f).flat_map(|g| folds[g].iter().map(|&i| i as u32)).collect())
        .collect();
    // Equal permutation lengths across folds (they differ by at most one sample; an epoch then skips it).
    let n_train = train_sets.iter().map(Vec::len).min().unwrap_or(0);
    let batch = cfg.batch.min(n_train);
    let steps = n_train.div_ceil(batch);

    let hidden = cfg.hidden_factor * d;
    let mcfg = MlpConfig { in_dim: d, out_dim: 1, hidden, blocks: 1, act: Activation::Relu, residual: false };
    let weights: Vec<MlpWeights> = (0..nf).map(|_| glorot(&mcfg, &mut rng)).collect();
    let mlp = Mlp::new_batched(ctx, mcfg.clone(), &weights)?;
    // scikit-learn adds alpha·W / batch_size to each weight gradient.
    let plan = MlpPlan::with_l2(ctx, &mlp, batch, (cfg.alpha / batch as f64) as f32)?;
    let adam = Adam::new(ctx, AdamConfig { lr: cfg.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, max_norm: 0.0 }, &mlp.params, &mlp.grads)?;

    let d4 = pad4(d);
    let data_t = ctx.tensor_from("c2st-data", &pack(&all, n, d))?;
    let labels_t = ctx.tensor_from("c2st-labels", &labels)?;
    let perm_t = ctx.tensor_zeros("c2st-perm", nf * n_train)?;
    let truth = ctx.tensor_zeros("c2st-truth", nf * batch * 4)?;
    let row_loss = ctx.tensor_zeros("c2st-row-loss", nf * batch)?;
    let loss_acc = ctx.tensor_zeros("c2st-loss", nf)?;
    let gp = GatherParams::new(batch, d4 / 4, n_train, steps, nf);
    let gp_buf = ctx.uniform("gather-params", &gp);
    let lp = ctx.uniform("loss-params", &LossParams::batched(batch, 1, nf));
    let rp = ctx.uniform("reduce-params", &ReduceParams::blocks(batch, nf));
    let mut step_d: Vec<Dispatch> = vec![gather::gather_batch(ctx, &gp_buf, &gp, &data_t, &labels_t, &perm_t, &adam.state, &plan.x, &truth)?];
    step_d.extend(plan.forward.iter().cloned());
    step_d.push(loss::bce_logits(ctx, &lp, nf * batch, &plan.y, &truth, &plan.dy, &row_loss)?);
    step_d.push(reduce::reduce_cols(ctx, &rp, nf, ReduceOp::Sum, true, &row_loss, &loss_acc)?);
    step_d.extend(plan.backward.iter().cloned());
    step_d.extend(adam.dispatches().into_iter().cloned());
    let epoch_d: Vec<&Dispatch> = (0..steps).flat_map(|_| step_d.iter()).collect();

    // Held-out evaluation: every fold's test rows through its own model, in one forward pass.
    let test_rows = folds.iter().map(Vec::len).max().unwrap_or(1);
    let eval = MlpPlan::new(ctx, &mlp, test_rows)?;
    let mut test_x = vec![0f32; nf * test_rows * d4];
    for (f, fold) in folds.iter().enumerate() {
        let rows: Vec<f64> = fold.iter().flat_map(|&i| all[i * d..(i + 1) * d].to_vec()).collect();
        let packed = pack(&rows, fold.len(), d);
        test_x[f * test_rows * d4..f * test_rows * d4 + packed.len()].copy_from_slice(&packed);
    }
    ctx.write(&eval.x, 0, &test_x)?;
    let eval_d: Vec<&Dispatch> = eval.forward.iter().collect();
    let accuracy_now = |f: usize| -> GpuResult<f64> {
        ctx.run(&eval_d)?;
        let out = ctx.read_range::<f32>(&eval.y, f * test_rows * 4, test_rows * 4)?;
        let logits = unpack(&out, test_rows, 1);
        let correct = folds[f].iter().zip(&logits).filter(|(&i, &z)| (z > 0.0) == (labels[i] > 0.5)).count();
        Ok(correct as f64 / folds[f].len() as f64)
    };

    let mut stoppers: Vec<Stopper> = (0..nf).map(|_| Stopper { best: f64::INFINITY, bad: 0, stopped_at: None }).collect();
    let mut acc = vec![f64::NAN; nf];
    let mut perm = vec![0u32; nf * n_train];
    for epoch in 1..=cfg.max_epochs {
        for (f, set) in train_sets.iter().enumerate() {
            let mut s = set.clone();
            s.shuffle(&mut rng);
            perm[f * n_train..(f + 1) * n_train].copy_from_slice(&s[..n_train]);
        }
        ctx.write(&perm_t, 0, &perm)?;
        ctx.write(&loss_acc, 0, &vec![0f32; nf])?;
        ctx.run(&epoch_d)?;
        let sums: Vec<f32> = ctx.read(&loss_acc)?;
        let w = mlp.weights_all(ctx)?;
        for f in 0..nf {
            if stoppers[f].stopped_at.is_some() {
                continue;
            }
            let sq: f64 = w[f].w.iter().flatten().map(|v| v * v).sum();
            let loss = sums[f] as f64 / steps as f64 + 0.5 * cfg.alpha * sq / batch as f64;
            let st = &mut stoppers[f];
            if loss > st.best - cfg.tol {
                st.bad += 1;
            } else {
                st.bad = 0;
            }
            if loss < st.best {
                st.best = loss;
            }
            if st.bad > cfg.n_iter_no_change || epoch == cfg.max_epochs {
                st.stopped_at = Some(epoch);
                acc[f] = accuracy_now(f)?;
            }
        }
        let done = stoppers.iter().filter(|s| s.stopped_at.is_some()).count();
        progress(epoch, done);
        if done == nf {
            break;
        }
    }
    Ok(C2stResult {
        accuracy: acc.iter().sum::<f64>() / nf as f64,
        fold_accuracies: acc,
        fold_epochs: stoppers.iter().map(|s| s.stopped_at.unwrap_or(cfg.max_epochs)).collect(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

//! Classifier two-sample test (C2ST) as sbibm defines it, on the GPU or the CPU.
//!
//! Both sample sets are z-scored with the mean and unbiased standard deviation of the first (the
//! reference). Labelled 0 (reference) and 1 (other), they are split by 5-fold shuffled
//! cross-validation; on each fold an MLP classifier (ReLU, two hidden layers of 10·d units, one
//! logistic output) is trained as scikit-learn's `MLPClassifier` trains it: Adam (lr 1e-3),
//! minibatches of min(200, n) reshuffled every epoch, L2 penalty 1e-4 on the weights, Glorot-uniform
//! initialisation, and a stop once the epoch's training loss has failed to improve on the best by
//! 1e-4 for more than 10 epochs (or after 10,000 epochs). The score is the mean held-out accuracy.
//!
//! Two backends train the folds ([`C2stDevice`]): the GPU one (`c2st_gpu.rs`) trains all five as
//! five models in the same launches; the CPU one (`c2st_cpu.rs`) trains them in f32 on the CPU, in
//! parallel, and is much faster on a software adapter. Everything else lives here once: the
//! z-scoring, the fold split, the initialisation, the per-epoch shuffles, the Adam settings, the L2
//! term and the stopping rule; for one seed the two backends differ only by float rounding.
//!
//! The random draws are scikit-learn's own for the same seed ([`NumpyRandomState`]): the fold split
//! is `KFold(shuffle=True, random_state=seed)`'s; each fold's classifier, like the clone that
//! `cross_val_score` fits, starts a fresh `RandomState(seed)`, draws its Glorot weights layer by
//! layer (W in C order, then b), then reshuffles its training rows (kept in ascending order, as
//! KFold yields them) every epoch by composing permutations, as `sklearn.utils.shuffle` does. So
//! a seed's score follows scikit-learn's, not merely its distribution.
//!
//! Adam places ε as scikit-learn does (`AdamConfig::eps_on_raw_v`): with it, the first epochs'
//! losses equal scikit-learn's to the printed digits; later, float rounding in a different
//! summation order lets the runs drift apart, so a fold may stop some epochs earlier or later.
//! Differences from scikit-learn, each too small to move the score: the L2 term of the reported loss
//! uses the end-of-epoch weights, and when the training set is not a multiple of the batch size
//! the last batch is completed from the start of the permutation.

use super::c2st_cpu::CpuFolds;
use super::c2st_gpu::GpuFolds;
use super::numpy_rng::NumpyRandomState;
use crate::kernels::adam::AdamConfig;
use crate::kernels::Activation;
use crate::models::mlp::{MlpConfig, MlpWeights};
use crate::runtime::{GpuContext, GpuError};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Where the classifiers train.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum C2stDevice {
    /// The wgpu adapter.
    #[default]
    Gpu,
    /// f32 on the CPU, folds in parallel: much faster than a software (CPU) adapter.
    Cpu,
}

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
    pub device: C2stDevice,
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
            device: C2stDevice::Gpu,
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
    pub device: C2stDevice,
}

#[derive(Debug, thiserror::Error)]
pub enum C2stError {
    #[error("c2st: {0}")]
    InvalidInput(String),
    #[error(transparent)]
    Gpu(#[from] GpuError),
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
    let mean: Vec<f64> = (0..d)
        .map(|j| (0..x.rows).map(|r| x.data[r * d + j]).sum::<f64>() / n)
        .collect();
    let sd: Vec<f64> = (0..d)
        .map(|j| {
            let v = (0..x.rows)
                .map(|r| (x.data[r * d + j] - mean[j]).powi(2))
                .sum::<f64>()
                / (n - 1.0).max(1.0);
            if v > 0.0 {
                v.sqrt()
            } else {
                1.0
            }
        })
        .collect();
    let f = |s: &Samples| {
        s.data
            .chunks(d)
            .flat_map(|row| {
                row.iter()
                    .enumerate()
                    .map(|(j, v)| (v - mean[j]) / sd[j])
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    (f(x), f(y))
}

/// scikit-learn's `KFold(n_splits=k, shuffle=True, random_state=seed)`: `RandomState(seed)`
/// shuffles 0..n and the folds are consecutive runs of it, the first n mod k one sample longer.
fn kfold(n: usize, k: usize, seed: u32) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..n).collect();
    NumpyRandomState::new(seed).shuffle(&mut idx);
    let mut folds = vec![];
    let mut start = 0;
    for f in 0..k {
        let size = n / k + usize::from(f < n % k);
        folds.push(idx[start..start + size].to_vec());
        start += size;
    }
    folds
}

/// scikit-learn's MLP initialisation (`_init_coef`, ReLU): per layer, W [fan_in × fan_out] in C
/// order and then b, uniform on ±√(6 / (fan_in + fan_out)), from the classifier's `RandomState`.
fn glorot(cfg: &MlpConfig, rng: &mut NumpyRandomState) -> MlpWeights {
    let mut w = vec![];
    let mut b = vec![];
    for (k, n) in cfg.layer_dims() {
        let bound = (6.0 / (k + n) as f64).sqrt();
        w.push((0..k * n).map(|_| rng.uniform(-bound, bound)).collect());
        b.push((0..n).map(|_| rng.uniform(-bound, bound)).collect());
    }
    MlpWeights { w, b }
}

/// The training problem both backends solve: data, fold split and initial weights.
pub(super) struct Setup {
    pub d: usize,
    /// z-scored rows (or raw, without z-scoring), the reference's first.
    pub data: Vec<f64>,
    /// 0 for the reference's rows, 1 for the other's.
    pub labels: Vec<f32>,
    /// Held-out rows of each fold.
    pub folds: Vec<Vec<usize>>,
    /// Permutation entries per fold and epoch: the smallest training set (they differ by at most
    /// one sample, which an epoch then skips), so that all folds take the same steps.
    pub n_train: usize,
    pub batch: usize,
    /// Batches per epoch; the last is completed from the start of the permutation.
    pub steps: usize,
    pub mlp: MlpConfig,
    /// Each fold's initial weights.
    pub weights: Vec<MlpWeights>,
    pub adam: AdamConfig,
    /// scikit-learn adds alpha·W / batch_size to each weight gradient.
    pub l2: f32,
}

/// The per-epoch reshuffles of every fold's training rows, each fold from its own classifier's
/// `RandomState` (continued after its initialisation).
pub(super) struct Shuffler {
    rngs: Vec<NumpyRandomState>,
    /// Each fold's training rows in their current order (ascending before the first epoch).
    order: Vec<Vec<u32>>,
    n_train: usize,
}

impl Shuffler {
    /// Every fold's permutation for the next epoch, `folds × n_train` data rows. Stopped folds
    /// draw theirs too (each fold has its own stream, so this changes nothing for the others).
    fn next_epoch(&mut self) -> Vec<u32> {
        let mut perm = Vec::with_capacity(self.order.len() * self.n_train);
        for (order, rng) in self.order.iter_mut().zip(&mut self.rngs) {
            // sklearn.utils.shuffle(sample_idx): sample_idx[shuffled arange].
            let mut p: Vec<usize> = (0..order.len()).collect();
            rng.shuffle(&mut p);
            *order = p.iter().map(|&i| order[i]).collect();
            perm.extend_from_slice(&order[..self.n_train]);
        }
        perm
    }
}

impl Setup {
    /// Checks the input, z-scores, splits the folds and draws each fold's initial weights; each
    /// fold's shuffler continues its classifier's stream.
    fn new(x: &Samples, y: &Samples, cfg: &C2stConfig) -> Result<(Setup, Shuffler), C2stError> {
        if x.dim != y.dim {
            return Err(C2stError::InvalidInput(format!(
                "dimensions differ ({} vs {})",
                x.dim, y.dim
            )));
        }
        let d = x.dim;
        let n = x.rows + y.rows;
        if d == 0 || n < 2 * cfg.folds || cfg.folds < 2 || cfg.batch == 0 {
            return Err(C2stError::InvalidInput(format!(
                "need at least 2 folds, a batch of at least 1, and at least {} samples of dimension ≥ 1",
                2 * cfg.folds
            )));
        }
        if x.data.len() != x.rows * d || y.data.len() != y.rows * d {
            return Err(C2stError::InvalidInput(
                "samples' length is not rows × dim".into(),
            ));
        }
        let (xz, yz) = if cfg.z_score {
            z_score(x, y)
        } else {
            (x.data.to_vec(), y.data.to_vec())
        };
        let mut data = xz;
        data.extend_from_slice(&yz);
        let labels: Vec<f32> = (0..n).map(|i| if i < x.rows { 0.0 } else { 1.0 }).collect();

        let seed = u32::try_from(cfg.seed).map_err(|_| {
            C2stError::InvalidInput(format!(
                "seed {} is above 2^32 - 1 (NumPy's limit)",
                cfg.seed
            ))
        })?;
        let folds = kfold(n, cfg.folds, seed);
        let mut held_out = vec![usize::MAX; n];
        for (f, fold) in folds.iter().enumerate() {
            for &i in fold {
                held_out[i] = f;
            }
        }
        let train_sets: Vec<Vec<u32>> = (0..cfg.folds)
            .map(|f| {
                (0..n)
                    .filter(|&i| held_out[i] != f)
                    .map(|i| i as u32)
                    .collect()
            })
            .collect();
        let n_train = train_sets.iter().map(Vec::len).min().unwrap_or(0);
        let batch = cfg.batch.min(n_train);
        let mlp = MlpConfig {
            in_dim: d,
            out_dim: 1,
            hidden: cfg.hidden_factor * d,
            blocks: 1,
            act: Activation::Relu,
            residual: false,
        };
        let mut rngs: Vec<NumpyRandomState> = (0..cfg.folds)
            .map(|_| NumpyRandomState::new(seed))
            .collect();
        let weights = rngs.iter_mut().map(|rng| glorot(&mlp, rng)).collect();
        let setup = Setup {
            d,
            data,
            labels,
            folds,
            n_train,
            batch,
            steps: n_train.div_ceil(batch),
            mlp,
            weights,
            adam: AdamConfig {
                lr: cfg.lr,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
                max_norm: 0.0,
                eps_on_raw_v: true,
            },
            l2: (cfg.alpha / batch as f64) as f32,
        };
        Ok((
            setup,
            Shuffler {
                rngs,
                order: train_sets,
                n_train,
            },
        ))
    }
}

/// What a backend does for the shared training loop.
pub(super) trait FoldTrainer {
    /// One epoch of `steps` Adam steps for every fold with `active[f]`; `perm` holds the folds'
    /// permutations (`folds × n_train` data rows), batch b taking entries b·batch .. (b+1)·batch
    /// modulo n_train. Returns per fold (Σ over steps of the mean batch loss, ‖W‖² over the
    /// end-of-epoch weights, biases excluded); entries of inactive folds are not used.
    fn epoch(&mut self, perm: &[u32], active: &[bool]) -> Result<Vec<(f64, f64)>, C2stError>;
    /// Held-out accuracy of fold `f`'s classifier as it is now.
    fn accuracy(&mut self, f: usize) -> Result<f64, C2stError>;
}

/// scikit-learn's no-improvement rule, per fold.
struct Stopper {
    best: f64,
    bad: usize,
    stopped_at: Option<usize>,
}

impl Stopper {
    /// Records epoch `epoch`'s loss; true when the fold stops here: more than
    /// `n_iter_no_change` epochs without improving on the best by `tol`, or the last epoch.
    fn update(&mut self, loss: f64, epoch: usize, cfg: &C2stConfig) -> bool {
        if loss > self.best - cfg.tol {
            self.bad += 1;
        } else {
            self.bad = 0;
        }
        if loss < self.best {
            self.best = loss;
        }
        if self.bad > cfg.n_iter_no_change || epoch == cfg.max_epochs {
            self.stopped_at = Some(epoch);
        }
        self.stopped_at.is_some()
    }
}

/// Trains every fold until it stops and scores it at that epoch.
fn drive(
    setup: &Setup,
    mut shuffler: Shuffler,
    trainer: &mut impl FoldTrainer,
    cfg: &C2stConfig,
    progress: &mut impl FnMut(usize, usize),
) -> Result<(Vec<f64>, Vec<usize>), C2stError> {
    let nf = cfg.folds;
    let mut stoppers: Vec<Stopper> = (0..nf)
        .map(|_| Stopper {
            best: f64::INFINITY,
            bad: 0,
            stopped_at: None,
        })
        .collect();
    let mut acc = vec![f64::NAN; nf];
    for epoch in 1..=cfg.max_epochs {
        let perm = shuffler.next_epoch();
        let active: Vec<bool> = stoppers.iter().map(|s| s.stopped_at.is_none()).collect();
        let out = trainer.epoch(&perm, &active)?;
        for f in (0..nf).filter(|&f| active[f]) {
            let (sum, sq) = out[f];
            let loss = sum / setup.steps as f64 + 0.5 * cfg.alpha * sq / setup.batch as f64;
            if stoppers[f].update(loss, epoch, cfg) {
                acc[f] = trainer.accuracy(f)?;
            }
        }
        let done = stoppers.iter().filter(|s| s.stopped_at.is_some()).count();
        progress(epoch, done);
        if done == nf {
            break;
        }
    }
    let epochs = stoppers
        .iter()
        .map(|s| s.stopped_at.unwrap_or(cfg.max_epochs))
        .collect();
    Ok((acc, epochs))
}

fn finish(
    acc: Vec<f64>,
    fold_epochs: Vec<usize>,
    start: Instant,
    device: C2stDevice,
) -> C2stResult {
    C2stResult {
        accuracy: acc.iter().sum::<f64>() / acc.len() as f64,
        fold_accuracies: acc,
        fold_epochs,
        seconds: start.elapsed().as_secs_f64(),
        device,
    }
}

/// C2ST of `x` (the reference) against `y` on `cfg.device`; `ctx` is used only by the GPU.
pub fn c2st(
    ctx: &GpuContext,
    x: &Samples,
    y: &Samples,
    cfg: &C2stConfig,
    mut progress: impl FnMut(usize, usize),
) -> Result<C2stResult, C2stError> {
    match cfg.device {
        C2stDevice::Cpu => c2st_cpu(x, y, cfg, progress),
        C2stDevice::Gpu => {
            let start = Instant::now();
            let (setup, shuffler) = Setup::new(x, y, cfg)?;
            let mut trainer = GpuFolds::new(ctx, &setup)?;
            let (acc, epochs) = drive(&setup, shuffler, &mut trainer, cfg, &mut progress)?;
            Ok(finish(acc, epochs, start, C2stDevice::Gpu))
        }
    }
}

/// C2ST of `x` (the reference) against `y` on the CPU, whatever `cfg.device` says: needs no GPU.
pub fn c2st_cpu(
    x: &Samples,
    y: &Samples,
    cfg: &C2stConfig,
    mut progress: impl FnMut(usize, usize),
) -> Result<C2stResult, C2stError> {
    let start = Instant::now();
    let (setup, shuffler) = Setup::new(x, y, cfg)?;
    let mut trainer = CpuFolds::new(&setup);
    let (acc, epochs) = drive(&setup, shuffler, &mut trainer, cfg, &mut progress)?;
    Ok(finish(acc, epochs, start, C2stDevice::Cpu))
}

//! Where the trainer's rows come from, and how they reach the GPU in bounded blocks.
//!
//! A source is either rows in memory or a folder of shards streamed from disk
//! ([`ShardStream`]). Both go through the same steps, so a data set gives the same model bits
//! whether it is held in memory or streamed:
//!
//! 1. **Split.** `round(N · validation_fraction)` row indices (of the N rows the source holds,
//!    counted before invalid rows are dropped) are drawn without replacement from a generator
//!    seeded by the training seed; they are the validation set, the rest is the training set.
//! 2. **Scan** (one streaming pass): the z-score statistics (Welford, in row order) of the
//!    training rows, the validation rows (kept in memory, in network space), the count of
//!    training rows, a fingerprint of all rows, and the data checks (prior support, NaN/Inf).
//! 3. **Blocks.** The training rows, in source order, are cut into `B = ⌈n_train / block_rows⌉`
//!    consecutive blocks of equal size (±1), where `block_rows` keeps a block's θ and x on the
//!    GPU within the block bound. Every epoch visits the blocks in order; a CPU thread reads
//!    and converts the next block while the GPU trains on the current one.

use super::checkpoint::Fingerprint;
use super::error::{TrainError, TrainResult};
use super::preprocess::{Preprocess, Standardize};
use crate::data::{
    check_against_prior, load_npy_pair, load_npz, DataError, InvalidCount, InvalidPolicy,
    ShardFiles, ShardSet, Simulations,
};
use crate::kernels::layout::pad4;
use gkl_tasks::Prior;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

/// A folder of shards read one shard at a time, each checked against the prior (θ in its
/// support, within float32 rounding of a uniform bound clamped onto it) and the invalid-row
/// policy (rows with NaN/Inf in x dropped and counted, or an error).
#[derive(Clone, Debug)]
pub struct ShardStream {
    pub set: ShardSet,
    pub prior: Prior,
    pub prior_name: String,
    pub policy: InvalidPolicy,
}

/// One shard's rows with the rows to keep.
struct Chunk {
    sims: Simulations,
    keep: Option<Vec<bool>>,
    invalid: InvalidCount,
    clamped: usize,
}

impl ShardStream {
    /// Opens `dir` (headers only) and checks θ's width against the prior.
    pub fn open(
        dir: &Path,
        prior: &Prior,
        prior_name: &str,
        policy: InvalidPolicy,
    ) -> Result<Self, DataError> {
        let set = ShardSet::open(dir)?;
        if set.dim_theta() != prior.dim() {
            return Err(DataError::File {
                path: set.shards()[0].files.path().to_path_buf(),
                problem: format!(
                    "theta has {} columns but the prior ({prior_name}) has dimension {}",
                    set.dim_theta(),
                    prior.dim()
                ),
            });
        }
        Ok(ShardStream {
            set,
            prior: prior.clone(),
            prior_name: prior_name.to_string(),
            policy,
        })
    }

    fn load(&self, i: usize) -> Result<Chunk, DataError> {
        let s = &self.set.shards()[i];
        let mut sims = match &s.files {
            ShardFiles::Npz(p) => load_npz(p)?,
            ShardFiles::NpyPair { theta, x } => load_npy_pair(theta, x)?,
        };
        let file = s.files.path();
        if (sims.rows(), sims.dim_theta, sims.dim_x)
            != (s.rows, self.set.dim_theta(), self.set.dim_x())
        {
            return Err(DataError::File {
                path: file.to_path_buf(),
                problem: "changed since the shard set was opened".into(),
            });
        }
        let clamped = check_against_prior(&mut sims, &self.prior, file, &self.prior_name)?;
        let (keep, invalid) = sims.invalid_mask(self.policy, &file.display().to_string())?;
        let keep = (invalid.total() > 0).then_some(keep);
        Ok(Chunk {
            sims,
            keep,
            invalid,
            clamped,
        })
    }
}

/// The rows to train on.
pub enum TrainSource<'a> {
    /// θ (N × dθ) and x (N × `dim_x`), row-major, in the original space.
    Memory {
        theta: &'a [f64],
        x: &'a [f64],
        dim_x: usize,
    },
    /// Shards streamed from disk.
    Shards(&'a ShardStream),
}

impl TrainSource<'_> {
    pub fn dim_x(&self) -> usize {
        match self {
            TrainSource::Memory { dim_x, .. } => *dim_x,
            TrainSource::Shards(s) => s.set.dim_x(),
        }
    }

    /// Rows before any are dropped (the split is drawn over these).
    pub fn rows(&self, d: usize) -> usize {
        match self {
            TrainSource::Memory { theta, .. } => theta.len() / d.max(1),
            TrainSource::Shards(s) => s.set.rows(),
        }
    }
}

/// What the scan of a shard folder found (for `data_summary.json`).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ScanReport {
    pub shards: usize,
    pub rows_read: usize,
    pub invalid: InvalidCount,
    pub theta_values_clamped: usize,
    pub rows_train: usize,
    pub rows_val: usize,
}

/// Validation rows: `round(n · fraction)` clamped to [1, n − 1], drawn without replacement.
pub fn split(n: usize, fraction: f64, seed: u64) -> Vec<usize> {
    let n_val = ((n as f64 * fraction).round() as usize).clamp(1, n.saturating_sub(1).max(1));
    let mut rng = StdRng::seed_from_u64(seed);
    let mut v = rand::seq::index::sample(&mut rng, n, n_val.min(n)).into_vec();
    v.sort_unstable();
    v
}

/// Column moments by Welford's update, row by row.
struct Moments {
    n: f64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Moments {
    fn new(d: usize) -> Self {
        Moments {
            n: 0.0,
            mean: vec![0.0; d],
            m2: vec![0.0; d],
        }
    }
    fn push(&mut self, row: &[f64]) {
        self.n += 1.0;
        for ((m, s), &v) in self.mean.iter_mut().zip(&mut self.m2).zip(row) {
            let delta = v - *m;
            *m += delta / self.n;
            *s += delta * (v - *m);
        }
    }
    /// Means and unbiased standard deviations; a constant (or non-finite) column keeps scale 1.
    fn finish(self) -> Standardize {
        let n1 = (self.n - 1.0).max(1.0);
        let std = self
            .m2
            .iter()
            .map(|&s| s / n1)
            .map(|v| {
                if v.is_finite() && v > 1e-24 {
                    v.sqrt()
                } else {
                    1.0
                }
            })
            .collect();
        Standardize {
            mean: self.mean,
            std,
        }
    }
}

/// The result of the scan.
pub struct Scanned {
    pub pre: Preprocess,
    /// Validation θ and x in network space, packed (rows × pad4).
    pub val_theta: Vec<f32>,
    pub val_x: Vec<f32>,
    pub n_val: usize,
    pub n_train: usize,
    /// In-memory sources: the training rows, packed in network space.
    pub train: Option<(Vec<f32>, Vec<f32>)>,
    pub fingerprint: Fingerprint,
    pub report: Option<ScanReport>,
    /// Sorted validation indices (of the source's rows).
    pub val_index: Arc<Vec<usize>>,
}

/// Appends `rows` f64 rows of width `w` as f32 rows of width pad4(w).
fn pack_into(out: &mut Vec<f32>, data: &[f64], w: usize) {
    let w4 = pad4(w);
    for r in data.chunks_exact(w) {
        out.extend(r.iter().map(|&v| v as f32));
        out.extend(std::iter::repeat_n(0f32, w4 - w));
    }
}

/// Network-space packed rows of (θ, x).
pub fn pack_rows(
    pre: &Preprocess,
    theta: &[f64],
    x: &[f64],
    d: usize,
    dx: usize,
) -> (Vec<f32>, Vec<f32>) {
    let (mut t, mut xs) = (
        Vec::with_capacity(theta.len() / d * pad4(d)),
        Vec::with_capacity(x.len() / dx * pad4(dx)),
    );
    pack_into(&mut t, &pre.theta_forward(theta), d);
    pack_into(&mut xs, &pre.x_forward(x), dx);
    (t, xs)
}

/// Splits one chunk's kept rows into (training θ, training x) and (validation θ, x), given the
/// chunk's first row index and a cursor into the sorted validation indices.
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn divide(
    theta: &[f64],
    x: &[f64],
    keep: Option<&[bool]>,
    start: usize,
    val: &[usize],
    cursor: &mut usize,
    d: usize,
    dx: usize,
    mut each_kept: impl FnMut(&[f64], &[f64]),
) -> ((Vec<f64>, Vec<f64>), (Vec<f64>, Vec<f64>)) {
    let (mut tt, mut tx, mut vt, mut vx) = (vec![], vec![], vec![], vec![]);
    for (r, (th, xr)) in theta.chunks_exact(d).zip(x.chunks_exact(dx)).enumerate() {
        let i = start + r;
        while *cursor < val.len() && val[*cursor] < i {
            *cursor += 1;
        }
        let is_val = *cursor < val.len() && val[*cursor] == i;
        if keep.is_some_and(|k| !k[r]) {
            continue;
        }
        each_kept(th, xr);
        if is_val {
            vt.extend_from_slice(th);
            vx.extend_from_slice(xr);
        } else {
            tt.extend_from_slice(th);
            tx.extend_from_slice(xr);
        }
    }
    ((tt, tx), (vt, vx))
}

/// Step 1 and 2: the split, the z-scores, the validation set, the fingerprint.
pub fn scan(
    source: &TrainSource<'_>,
    prior: &Prior,
    unconstrained: bool,
    fraction: f64,
    seed: u64,
) -> TrainResult<Scanned> {
    let d = prior.dim();
    let dx = source.dim_x();
    let n = source.rows(d);
    let val = split(n, fraction, seed);
    let mut cursor = 0;
    let (mut mt, mut mx) = (Moments::new(d), Moments::new(dx));
    let mut fp = Fingerprint::default();
    fp.word(d as u64);
    fp.word(dx as u64);
    let (mut val_t, mut val_x) = (vec![], vec![]);
    let mut n_train = 0;
    let mut train_rows: Option<(Vec<f64>, Vec<f64>)> = None;
    let mut report = None;
    let mut add = |tt: &[f64], tx: &[f64], n_train: &mut usize| {
        for (th, xr) in tt.chunks_exact(d).zip(tx.chunks_exact(dx)) {
            if unconstrained {
                mt.push(&prior.to_unconstrained(th));
            } else {
                mt.push(th);
            }
            mx.push(xr);
            *n_train += 1;
        }
    };
    match source {
        TrainSource::Memory { theta, x, .. } => {
            if theta.len() != n * d || x.len() != n * dx {
                return Err(TrainError::Invalid(format!(
                    "theta ({}) and x ({}) do not hold the same number of rows",
                    theta.len(),
                    x.len()
                )));
            }
            let ((tt, tx), (vt, vx)) =
                divide(theta, x, None, 0, &val, &mut cursor, d, dx, |a, b| {
                    fp.f64s(a);
                    fp.f64s(b)
                });
            add(&tt, &tx, &mut n_train);
            (val_t, val_x) = (vt, vx);
            train_rows = Some((tt, tx));
        }
        TrainSource::Shards(s) => {
            let mut r = ScanReport {
                shards: s.set.len(),
                ..Default::default()
            };
            let mut start = 0;
            for i in 0..s.set.len() {
                let c = s.load(i)?;
                r.rows_read += c.sims.rows();
                r.invalid.add(c.invalid);
                r.theta_values_clamped += c.clamped;
                let ((tt, tx), (vt, vx)) = divide(
                    &c.sims.theta,
                    &c.sims.x,
                    c.keep.as_deref(),
                    start,
                    &val,
                    &mut cursor,
                    d,
                    dx,
                    |a, b| {
                        fp.f64s(a);
                        fp.f64s(b)
                    },
                );
                start += c.sims.rows();
                add(&tt, &tx, &mut n_train);
                val_t.extend(vt);
                val_x.extend(vx);
            }
            r.rows_train = n_train;
            r.rows_val = val_t.len() / d;
            report = Some(r);
        }
    }
    let n_val = val_t.len() / d;
    if n_train < 2 {
        return Err(TrainError::Invalid(format!("{n} simulations ({n_train} for training after the validation split) are too few to train on")));
    }
    if n_val == 0 {
        return Err(TrainError::Invalid(
            "no valid simulation is left for the validation set".into(),
        ));
    }
    let pre = Preprocess {
        prior: prior.clone(),
        unconstrained,
        theta: mt.finish(),
        x: mx.finish(),
    };
    let (vt, vx) = pack_rows(&pre, &val_t, &val_x, d, dx);
    let train = train_rows.map(|(tt, tx)| pack_rows(&pre, &tt, &tx, d, dx));
    Ok(Scanned {
        pre,
        val_theta: vt,
        val_x: vx,
        n_val,
        n_train,
        train,
        fingerprint: fp,
        report,
        val_index: Arc::new(val),
    })
}

/// Fingerprint of the z-score statistics (exact bits).
pub fn preprocess_fingerprint(pre: &Preprocess) -> Fingerprint {
    let mut f = Fingerprint::default();
    f.word(pre.unconstrained as u64);
    for v in [&pre.theta.mean, &pre.theta.std, &pre.x.mean, &pre.x.std] {
        f.word(v.len() as u64);
        f.f64s(v);
    }
    f
}

/// Block boundaries: `blocks + 1` training-row offsets.
pub fn block_bounds(n_train: usize, block_rows: usize) -> Vec<usize> {
    let b = n_train.div_ceil(block_rows.max(1)).max(1);
    (0..=b).map(|k| k * n_train / b).collect()
}

/// One GPU block: packed θ and x in network space.
pub struct Block {
    pub theta: Vec<f32>,
    pub x: Vec<f32>,
    pub rows: usize,
}

/// Streams the training rows of `stream`, in order, as the blocks `bounds` describes, from a
/// CPU thread; at most one finished block waits in the channel while the next is read.
pub fn stream_blocks(
    stream: ShardStream,
    val: Arc<Vec<usize>>,
    pre: Preprocess,
    bounds: Vec<usize>,
) -> Receiver<TrainResult<Block>> {
    let (tx, rx) = sync_channel::<TrainResult<Block>>(1);
    std::thread::spawn(move || {
        let d = stream.set.dim_theta();
        let dx = stream.set.dim_x();
        let (d4, dx4) = (pad4(d), pad4(dx));
        let mut k = 0;
        let mut cur = Block {
            theta: vec![],
            x: vec![],
            rows: 0,
        };
        let mut cursor = 0;
        let mut start = 0;
        for i in 0..stream.set.len() {
            let c = match stream.load(i) {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(e.into()));
                    return;
                }
            };
            let ((tt, txs), _) = divide(
                &c.sims.theta,
                &c.sims.x,
                c.keep.as_deref(),
                start,
                &val,
                &mut cursor,
                d,
                dx,
                |_, _| {},
            );
            start += c.sims.rows();
            drop(c);
            let (pt, px) = pack_rows(&pre, &tt, &txs, d, dx);
            drop((tt, txs));
            let rows = pt.len() / d4;
            let mut r = 0;
            while r < rows {
                if k + 1 >= bounds.len() {
                    let _ = tx.send(Err(TrainError::Invalid(
                        "the shards hold more training rows than their first reading found".into(),
                    )));
                    return;
                }
                let want = bounds[k + 1] - bounds[k];
                if cur.rows == 0 {
                    cur.theta.reserve_exact(want * d4);
                    cur.x.reserve_exact(want * dx4);
                }
                let take = (want - cur.rows).min(rows - r);
                cur.theta.extend_from_slice(&pt[r * d4..(r + take) * d4]);
                cur.x.extend_from_slice(&px[r * dx4..(r + take) * dx4]);
                cur.rows += take;
                r += take;
                if cur.rows == want {
                    let full = std::mem::replace(
                        &mut cur,
                        Block {
                            theta: vec![],
                            x: vec![],
                            rows: 0,
                        },
                    );
                    if tx.send(Ok(full)).is_err() {
                        return; // the trainer stopped
                    }
                    k += 1;
                }
            }
        }
        if k + 1 != bounds.len() {
            let _ = tx.send(Err(TrainError::Invalid(
                "the shards hold fewer training rows than their first reading found".into(),
            )));
        }
    });
    rx
}

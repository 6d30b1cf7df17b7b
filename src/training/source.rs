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
//!    training rows, a fingerprint of all rows, the data checks (prior support, NaN/Inf), and
//!    the indices of the dropped rows (with the validation indices they give any training row's
//!    place in the files, [`source_row`]).
//! 3. **Blocks.** The training rows, in source order, are cut into `B = ⌈n_train / block_rows⌉`
//!    blocks of equal size (±1), where `block_rows` keeps a block's θ and x on the GPU within
//!    the block bound. Every epoch ([`epoch_blocks`]) draws from its own generator (a function
//!    of the seed and the epoch, so a resumed run repeats it) a rotation of the training rows
//!    and an order of the blocks: block k of the epoch holds the rows bounds[k] .. bounds[k+1]
//!    counted from the rotation's start (wrapping around the end), so which rows share a block
//!    changes from epoch to epoch while each block stays one or two runs of consecutive rows
//!    (read sequentially: a seek into `.npy` shards, decompressing past the rows before it in
//!    `.npz` members). Rows within a block are shuffled by the trainer. With one block nothing
//!    is drawn for this (the single block is every row). Rows of one block stay neighbours in
//!    the files: assigning small chunks of rows to blocks at random would mix more, but would
//!    decompress each `.npz` member once per chunk instead of about once per epoch. A CPU thread reads and converts the
//!    next block while the GPU trains on the current one.

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
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::ops::Range;
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
        let sims = match &s.files {
            ShardFiles::Npz(p) => load_npz(p)?,
            ShardFiles::NpyPair { theta, x } => load_npy_pair(theta, x)?,
        };
        self.check(i, sims, s.rows)
    }

    /// Rows `rows` of shard `i` only (see [`ShardFiles::load_rows`]).
    fn load_rows(&self, i: usize, rows: Range<usize>) -> Result<Chunk, DataError> {
        let n = rows.len();
        let sims = self.set.shards()[i].files.load_rows(rows)?;
        self.check(i, sims, n)
    }

    fn check(&self, i: usize, mut sims: Simulations, rows: usize) -> Result<Chunk, DataError> {
        let s = &self.set.shards()[i];
        let file = s.files.path();
        if (sims.rows(), sims.dim_theta, sims.dim_x)
            != (rows, self.set.dim_theta(), self.set.dim_x())
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
    /// Sorted indices (of the source's rows) of the rows dropped as invalid that are not
    /// validation rows: with `val_index` they map a training row to its source row.
    pub dropped: Arc<Vec<usize>>,
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
    let mut dropped = vec![];
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
                if let Some(keep) = &c.keep {
                    dropped.extend(
                        (0..keep.len())
                            .filter(|&r| !keep[r])
                            .map(|r| start + r)
                            .filter(|i| val.binary_search(i).is_err()),
                    );
                }
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
        dropped: Arc::new(dropped),
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

/// The generator of epoch `epoch`'s data order (its blocks, see [`epoch_blocks`], then each
/// block's row order): a function of (seed, epoch) only, so a run resumed from a checkpoint (at
/// an epoch boundary) orders every later epoch exactly as an uninterrupted run.
pub fn epoch_rng(seed: u64, epoch: usize) -> StdRng {
    let mut z = seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5348_5546_464c_4521;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

/// The blocks of one epoch, in the order it visits them, each as the runs of training rows it
/// holds (one, or two where it wraps around the end). With one block: all rows, nothing drawn.
/// Otherwise a rotation r (uniform in 0..n_train) and an order of the blocks are drawn from
/// `rng`, and block k holds the rows (r + j) mod n_train for bounds[k] ≤ j < bounds[k + 1]:
/// every row once, block sizes as `bounds` says, which rows share a block changing with r.
#[allow(clippy::single_range_in_vec_init)] // runs of rows, not the rows
pub fn epoch_blocks(bounds: &[usize], rng: &mut StdRng) -> Vec<Vec<Range<usize>>> {
    let n = *bounds.last().unwrap_or(&0);
    let blocks = bounds.len().saturating_sub(1);
    if blocks <= 1 {
        return vec![vec![0..n]];
    }
    let rot = rng.random_range(0..n);
    let mut order: Vec<usize> = (0..blocks).collect();
    order.shuffle(rng);
    order
        .into_iter()
        .map(|k| {
            let (lo, hi) = (bounds[k] + rot, bounds[k + 1] + rot);
            if hi <= n {
                vec![lo..hi]
            } else if lo >= n {
                vec![lo - n..hi - n]
            } else {
                vec![lo..n, 0..hi - n]
            }
        })
        .collect()
}

/// The source row (index among all rows the source holds) of training row `t`, given the sorted
/// validation rows and the sorted dropped non-validation rows: the t-th row in neither.
pub fn source_row(t: usize, val: &[usize], dropped: &[usize]) -> usize {
    // Training rows among source rows 0..=s.
    let trained =
        |s: usize| s + 1 - val.partition_point(|&v| v <= s) - dropped.partition_point(|&v| v <= s);
    let (mut lo, mut hi) = (t, t + val.len() + dropped.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if trained(mid) > t {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// One GPU block: packed θ and x in network space.
pub struct Block {
    pub theta: Vec<f32>,
    pub x: Vec<f32>,
    pub rows: usize,
}

/// Streams the training rows of `stream` as the blocks `plan` lists (in that order; see
/// [`epoch_blocks`]), from a CPU thread; at most one finished block waits in the channel while
/// the next is read. Each run of training rows is read from the source rows that hold it: only
/// the shards it spans, and in those only the rows from its first to its last (in host memory:
/// at most those rows of one shard, the block being filled and one finished block).
pub fn stream_blocks(
    stream: ShardStream,
    val: Arc<Vec<usize>>,
    dropped: Arc<Vec<usize>>,
    pre: Preprocess,
    plan: Vec<Vec<Range<usize>>>,
) -> Receiver<TrainResult<Block>> {
    let (tx, rx) = sync_channel::<TrainResult<Block>>(1);
    std::thread::spawn(move || {
        let d = stream.set.dim_theta();
        let dx = stream.set.dim_x();
        let (d4, dx4) = (pad4(d), pad4(dx));
        // Source rows of each shard: starts[i] .. starts[i + 1].
        let mut starts = vec![0usize];
        for s in stream.set.shards() {
            starts.push(starts.last().unwrap() + s.rows);
        }
        let read_block = |runs: &[Range<usize>]| -> TrainResult<Block> {
            let want: usize = runs.iter().map(|r| r.len()).sum();
            let mut b = Block {
                theta: Vec::with_capacity(want * d4),
                x: Vec::with_capacity(want * dx4),
                rows: 0,
            };
            for run in runs.iter().filter(|r| !r.is_empty()) {
                let src = source_row(run.start, &val, &dropped)
                    ..source_row(run.end - 1, &val, &dropped) + 1;
                let mut got = 0;
                for i in 0..stream.set.len() {
                    let (lo, hi) = (src.start.max(starts[i]), src.end.min(starts[i + 1]));
                    if lo >= hi {
                        continue;
                    }
                    let c = stream.load_rows(i, lo - starts[i]..hi - starts[i])?;
                    let mut cursor = val.partition_point(|&v| v < lo);
                    let ((tt, txs), _) = divide(
                        &c.sims.theta,
                        &c.sims.x,
                        c.keep.as_deref(),
                        lo,
                        &val,
                        &mut cursor,
                        d,
                        dx,
                        |_, _| {},
                    );
                    drop(c);
                    let (pt, px) = pack_rows(&pre, &tt, &txs, d, dx);
                    got += pt.len() / d4;
                    b.theta.extend_from_slice(&pt);
                    b.x.extend_from_slice(&px);
                }
                if got != run.len() {
                    return Err(TrainError::Invalid(format!(
                        "the shards changed since they were first read: training rows {}..{} came back as {got} rows",
                        run.start, run.end
                    )));
                }
                b.rows += got;
            }
            Ok(b)
        };
        for runs in &plan {
            let b = read_block(runs);
            let failed = b.is_err();
            if tx.send(b).is_err() || failed {
                return; // the trainer stopped, or was told why this one cannot go on
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_of(plan: &[Vec<Range<usize>>]) -> Vec<Vec<usize>> {
        plan.iter()
            .map(|runs| runs.iter().flat_map(|r| r.clone()).collect())
            .collect()
    }

    #[test]
    fn every_epoch_visits_every_row_once_in_blocks_of_the_bounds_sizes() {
        for (n, block_rows) in [(1000usize, 300usize), (7, 2), (10, 10), (10, 3)] {
            let bounds = block_bounds(n, block_rows);
            let mut sizes: Vec<usize> = bounds.windows(2).map(|w| w[1] - w[0]).collect();
            sizes.sort_unstable();
            for epoch in 1..6 {
                let plan = epoch_blocks(&bounds, &mut epoch_rng(3, epoch));
                let blocks = rows_of(&plan);
                let mut got: Vec<usize> = blocks.iter().map(Vec::len).collect();
                got.sort_unstable();
                assert_eq!(got, sizes);
                let mut all: Vec<usize> = blocks.concat();
                all.sort_unstable();
                assert_eq!(all, (0..n).collect::<Vec<_>>());
                // One or two runs of consecutive rows per block.
                assert!(plan.iter().all(|runs| (1..=2).contains(&runs.len())));
            }
        }
    }

    #[test]
    fn the_block_order_and_grouping_change_with_the_epoch_and_seed_and_repeat_exactly() {
        let bounds = block_bounds(1000, 100);
        let plan = |seed, epoch| epoch_blocks(&bounds, &mut epoch_rng(seed, epoch));
        assert_eq!(plan(5, 3), plan(5, 3));
        let firsts = |p: &[Vec<Range<usize>>]| p.iter().map(|r| r[0].start).collect::<Vec<_>>();
        let mut seen = std::collections::HashSet::new();
        for (seed, epoch) in [(5, 1), (5, 2), (5, 3), (6, 1), (6, 2), (0, 1)] {
            assert!(
                seen.insert(firsts(&plan(seed, epoch))),
                "seed {seed} epoch {epoch}"
            );
        }
        // Not only the order: which rows share a block changes too (the rotation).
        let sets = |p: &[Vec<Range<usize>>]| {
            let mut v: Vec<Vec<usize>> = rows_of(p)
                .into_iter()
                .map(|mut b| {
                    b.sort_unstable();
                    b
                })
                .collect();
            v.sort();
            v
        };
        assert_ne!(sets(&plan(5, 1)), sets(&plan(5, 2)));
        // Block orders over many epochs: every block comes first sometimes.
        let mut first = std::collections::HashSet::new();
        for epoch in 1..200 {
            let p = plan(5, epoch);
            let starts: Vec<usize> = bounds[..10].to_vec();
            let r = p[0][0].start;
            first.insert(starts.iter().filter(|&&s| s <= r).count());
        }
        assert!(first.len() >= 8, "{first:?}");
    }

    #[test]
    fn one_block_draws_nothing_and_holds_every_row_in_order() {
        let bounds = block_bounds(500, 1000);
        let mut a = epoch_rng(9, 4);
        assert_eq!(epoch_blocks(&bounds, &mut a), vec![vec![0..500]]);
        let mut b = epoch_rng(9, 4);
        assert_eq!(a.random::<u64>(), b.random::<u64>());
    }

    #[test]
    fn training_rows_map_to_their_source_rows() {
        let mut g = StdRng::seed_from_u64(1);
        for n in [1usize, 2, 10, 257] {
            let val = split(n.max(2), 0.2, 7);
            let val: Vec<usize> = val.into_iter().filter(|&v| v < n).collect();
            let dropped: Vec<usize> = (0..n)
                .filter(|i| val.binary_search(i).is_err() && g.random::<f64>() < 0.1)
                .collect();
            let train: Vec<usize> = (0..n)
                .filter(|i| val.binary_search(i).is_err() && dropped.binary_search(i).is_err())
                .collect();
            for (t, &s) in train.iter().enumerate() {
                assert_eq!(source_row(t, &val, &dropped), s, "n {n} t {t}");
            }
        }
    }
}

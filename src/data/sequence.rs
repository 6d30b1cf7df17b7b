//! The reproducible simulation sequence of a benchmark task, in fixed blocks, so that any range
//! of rows can be simulated on its own: `gkl-gpu simulate --shard i/n` writes rows
//! `[i·N/n, (i+1)·N/n)`, and the n shards concatenated equal the unsharded run with the same seed.
//!
//! Row r belongs to block `r / SEQUENCE_BLOCK_ROWS`; block k draws its θ from the prior and
//! simulates its x with seeds derived from (seed, k) only. The sequence does not depend on N.

use gkl_tasks::Task;
use rayon::prelude::*;
use std::str::FromStr;

/// Rows per block of the sequence. Part of the sequence's definition: changing it changes
/// every data set simulated with a given seed.
pub const SEQUENCE_BLOCK_ROWS: usize = 256;

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn block_seed(seed: u64, block: usize) -> u64 {
    splitmix64(seed ^ splitmix64(block as u64 ^ 0x5348_4152_4453_4551))
}

/// Rows `[start, end)` of a task's simulation sequence for `seed`: (θ, x), row-major.
pub fn simulate_task_rows(
    task: &dyn Task,
    seed: u64,
    start: usize,
    end: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (dt, dx) = (task.dim_theta(), task.dim_x());
    if end <= start {
        return (vec![], vec![]);
    }
    let b = SEQUENCE_BLOCK_ROWS;
    let blocks: Vec<usize> = (start / b..end.div_ceil(b)).collect();
    let parts: Vec<(Vec<f64>, Vec<f64>)> = blocks
        .par_iter()
        .map(|&k| {
            let (lo, hi) = (start.max(k * b) - k * b, end.min((k + 1) * b) - k * b);
            let s = block_seed(seed, k);
            let theta = task.sample_prior(b, s);
            // Only the rows asked for are simulated; row i of the block keeps its own stream.
            let x = task.simulate(&theta[..hi * dt], s.wrapping_add(0x5349_4d55));
            (
                theta[lo * dt..hi * dt].to_vec(),
                x[lo * dx..hi * dx].to_vec(),
            )
        })
        .collect();
    let mut theta = Vec::with_capacity((end - start) * dt);
    let mut x = Vec::with_capacity((end - start) * dx);
    for (t, xs) in parts {
        theta.extend(t);
        x.extend(xs);
    }
    (theta, x)
}

/// Shard `index` of `count` (0-based), as given on the command line: `i/n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardSpec {
    pub index: usize,
    pub count: usize,
}

impl FromStr for ShardSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("'{s}' is not of the form i/n (e.g. 0/4)"))?;
        let index: usize = i
            .trim()
            .parse()
            .map_err(|_| format!("shard index '{i}' is not a non-negative integer"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("shard count '{n}' is not a positive integer"))?;
        if count == 0 {
            return Err("the shard count must be positive".into());
        }
        if index >= count {
            return Err(format!(
                "shard index {index} is not below the shard count {count} (shards are numbered 0..{count})"
            ));
        }
        Ok(ShardSpec { index, count })
    }
}

impl ShardSpec {
    /// `shard-00003-of-00008.npz`.
    pub fn file_name(&self) -> String {
        format!("shard-{:05}-of-{:05}.npz", self.index, self.count)
    }
}

/// Rows `[i·n/k, (i+1)·n/k)`: shard `i` of `k` of `n` rows (no overflow for any n).
pub fn shard_range(n: usize, i: usize, k: usize) -> (usize, usize) {
    let f = |j: usize| ((n as u128 * j as u128) / k.max(1) as u128) as usize;
    (f(i), f(i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_tile_and_specs_parse() {
        for (n, k) in [(10, 3), (7, 7), (1000, 1), (5, 8), (0, 2)] {
            let mut next = 0;
            for i in 0..k {
                let (a, b) = shard_range(n, i, k);
                assert_eq!(a, next);
                assert!(b >= a);
                next = b;
            }
            assert_eq!(next, n);
        }
        assert_eq!(
            "2/5".parse::<ShardSpec>().unwrap(),
            ShardSpec { index: 2, count: 5 }
        );
        assert!("5/5".parse::<ShardSpec>().is_err());
        assert!("1/0".parse::<ShardSpec>().is_err());
        assert!("x".parse::<ShardSpec>().is_err());
        assert_eq!(
            ShardSpec { index: 3, count: 8 }.file_name(),
            "shard-00003-of-00008.npz"
        );
    }

    #[test]
    fn any_range_is_a_slice_of_the_whole() {
        let task = gkl_tasks::task_by_name("two_moons").unwrap();
        let (t, x) = simulate_task_rows(task.as_ref(), 7, 0, 700);
        for (a, b) in [(0, 1), (255, 257), (100, 600), (512, 700), (3, 3)] {
            let (ts, xs) = simulate_task_rows(task.as_ref(), 7, a, b);
            assert_eq!(ts, t[a * 2..b * 2]);
            assert_eq!(xs, x[a * 2..b * 2]);
        }
        let (t2, _) = simulate_task_rows(task.as_ref(), 8, 0, 700);
        assert_ne!(t, t2);
    }
}

//! Invalid simulations (NaN or ±Inf anywhere in x): dropped and counted, or an error; and the
//! `--online` source that keeps every block at full size by simulating again for dropped rows.

use super::error::{DataError, Result};
use super::simulations::Simulations;
use crate::training::npe::Simulator;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What to do with simulations whose x holds NaN or ±Inf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InvalidPolicy {
    /// Drop the rows and count them (the default).
    Drop,
    /// Stop with an error naming the first such row.
    Error,
}

/// Rows found invalid: with a NaN in x, and with an infinity (but no NaN) in x.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InvalidCount {
    pub rows_with_nan: usize,
    pub rows_with_inf: usize,
}

impl InvalidCount {
    pub fn total(&self) -> usize {
        self.rows_with_nan + self.rows_with_inf
    }
    pub fn add(&mut self, o: InvalidCount) {
        self.rows_with_nan += o.rows_with_nan;
        self.rows_with_inf += o.rows_with_inf;
    }
}

fn classify(row: &[f64]) -> Option<bool> {
    if row.iter().any(|v| v.is_nan()) {
        Some(true)
    } else if row.iter().any(|v| v.is_infinite()) {
        Some(false)
    } else {
        None
    }
}

impl Simulations {
    /// Applies `policy` to rows with NaN/±Inf in x: under `Drop` they are removed (order kept)
    /// and counted; under `Error` the first one is an error naming `source_name`. Rows whose θ
    /// is not finite are always an error (θ comes from a prior).
    pub fn apply_invalid_policy(
        &mut self,
        policy: InvalidPolicy,
        source_name: &str,
    ) -> Result<InvalidCount> {
        let (dt, dx) = (self.dim_theta, self.dim_x);
        let n = self.rows();
        let (keep, count) = self.invalid_mask(policy, source_name)?;
        if count.total() > 0 {
            let mut theta = Vec::with_capacity((n - count.total()) * dt);
            let mut x = Vec::with_capacity((n - count.total()) * dx);
            for (i, k) in keep.iter().enumerate() {
                if *k {
                    theta.extend_from_slice(&self.theta[i * dt..(i + 1) * dt]);
                    x.extend_from_slice(&self.x[i * dx..(i + 1) * dx]);
                }
            }
            self.theta = theta;
            self.x = x;
        }
        Ok(count)
    }

    /// As [`Simulations::apply_invalid_policy`] without removing anything: which rows to keep
    /// (row indices stay those of the file, as the streaming trainer needs), and the counts.
    pub fn invalid_mask(
        &self,
        policy: InvalidPolicy,
        source_name: &str,
    ) -> Result<(Vec<bool>, InvalidCount)> {
        let (dt, dx) = (self.dim_theta, self.dim_x);
        let n = self.rows();
        if let Some(i) = self
            .theta
            .chunks_exact(dt)
            .position(|r| r.iter().any(|v| !v.is_finite()))
        {
            return Err(DataError::Invalid {
                source_name: source_name.into(),
                problem: format!("theta row {i} is not finite"),
            });
        }
        let mut count = InvalidCount::default();
        let mut first = None;
        let keep: Vec<bool> = self
            .x
            .chunks_exact(dx)
            .enumerate()
            .map(|(i, r)| match classify(r) {
                None => true,
                Some(nan) => {
                    if nan {
                        count.rows_with_nan += 1;
                    } else {
                        count.rows_with_inf += 1;
                    }
                    first.get_or_insert(i);
                    false
                }
            })
            .collect();
        if let (Some(i), InvalidPolicy::Error) = (first, policy) {
            return Err(DataError::Invalid {
                source_name: source_name.into(),
                problem: format!(
                    "{} of {n} simulations have NaN or Inf in x (first: row {i}); rejected by --invalid error",
                    count.total()
                ),
            });
        }
        Ok((keep, count))
    }
}

/// Where an `--online` source leaves its error when it fails (the training loop only sees that
/// the source stopped).
pub type FailureSlot = Arc<Mutex<Option<DataError>>>;

/// Counters of an `--online` source.
#[derive(Debug, Default)]
pub struct OnlineStats {
    pub rows_simulated: AtomicUsize,
    pub rows_with_nan: AtomicUsize,
    pub rows_with_inf: AtomicUsize,
}

impl OnlineStats {
    pub fn invalid(&self) -> InvalidCount {
        InvalidCount {
            rows_with_nan: self.rows_with_nan.load(Ordering::Relaxed),
            rows_with_inf: self.rows_with_inf.load(Ordering::Relaxed),
        }
    }
}

/// Draws `n` simulations for a seed: the raw material of an online source.
pub type OnlineDraw = Arc<dyn Fn(usize, u64) -> Result<Simulations> + Send + Sync>;

/// Most draws per online block before giving up on filling it with valid rows.
const MAX_REFILLS: u64 = 32;

/// Wraps `draw` as the trainer's `--online` [`Simulator`]: every block has exactly the rows asked
/// for, invalid rows being dropped and simulated again (`Drop`) or failing the run (`Error`).
///
/// On failure the error goes to `failure` and the source stops: it unwinds its thread without
/// running the panic hook (no message, no backtrace), which the trainer reports as the online
/// simulator having stopped; the caller then reports the error left in `failure`.
pub fn online_source(
    draw: OnlineDraw,
    policy: InvalidPolicy,
    source_name: String,
    failure: FailureSlot,
    stats: Arc<OnlineStats>,
) -> Simulator {
    Arc::new(move |n: usize, seed: u64| {
        let attempt = || -> Result<(Vec<f64>, Vec<f64>)> {
            let mut out = Simulations::default();
            for round in 0..MAX_REFILLS {
                let want = n - out.rows();
                // Ask for a little more than is missing once rows have been dropped.
                let ask = if round == 0 {
                    want
                } else {
                    (want + want / 4 + 8).min(want.saturating_mul(4).max(64))
                };
                let mut s = draw(
                    ask,
                    seed.wrapping_add(round.wrapping_mul(0xD1B5_4A32_D192_ED03)),
                )?;
                stats.rows_simulated.fetch_add(s.rows(), Ordering::Relaxed);
                let c = s.apply_invalid_policy(policy, &source_name)?;
                stats
                    .rows_with_nan
                    .fetch_add(c.rows_with_nan, Ordering::Relaxed);
                stats
                    .rows_with_inf
                    .fetch_add(c.rows_with_inf, Ordering::Relaxed);
                let take = s.rows().min(want);
                s.theta.truncate(take * s.dim_theta);
                s.x.truncate(take * s.dim_x);
                out.append(s).map_err(|m| DataError::Invalid {
                    source_name: source_name.clone(),
                    problem: m,
                })?;
                if out.rows() == n {
                    return Ok((out.theta, out.x));
                }
            }
            Err(DataError::Invalid {
                source_name: source_name.clone(),
                problem: format!("could not fill an online block of {n} valid simulations in {MAX_REFILLS} attempts (most have NaN or Inf in x)"),
            })
        };
        match attempt() {
            Ok(v) => v,
            Err(e) => {
                failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(e);
                std::panic::resume_unwind(Box::new("online simulator failed"))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_keeps_order_and_counts() {
        let mut s = Simulations::new(
            vec![1., 2., 3., 4.],
            vec![0., f64::NAN, 1., 1., f64::INFINITY, 0., 5., 5.],
            1,
            2,
        )
        .unwrap();
        let c = s.apply_invalid_policy(InvalidPolicy::Drop, "t").unwrap();
        assert_eq!(
            c,
            InvalidCount {
                rows_with_nan: 1,
                rows_with_inf: 1
            }
        );
        assert_eq!(s.theta, vec![2., 4.]);
        assert_eq!(s.x, vec![1., 1., 5., 5.]);
        let mut s = Simulations::new(vec![1., 2.], vec![0., f64::NAN], 1, 1).unwrap();
        let e = s
            .apply_invalid_policy(InvalidPolicy::Error, "sims.npz")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "sims.npz: 1 of 2 simulations have NaN or Inf in x (first: row 1); rejected by --invalid error"
        );
    }

    #[test]
    fn online_blocks_are_full_and_failures_are_kept() {
        // Every third row invalid.
        let draw: OnlineDraw = Arc::new(|n, seed| {
            let theta: Vec<f64> = (0..n).map(|i| (seed as usize + i) as f64).collect();
            let x = theta
                .iter()
                .map(|&t| if t as usize % 3 == 0 { f64::NAN } else { t })
                .collect();
            Ok(Simulations::new(theta, x, 1, 1).unwrap())
        });
        let stats = Arc::new(OnlineStats::default());
        let slot: FailureSlot = Default::default();
        let sim = online_source(
            draw.clone(),
            InvalidPolicy::Drop,
            "s".into(),
            slot.clone(),
            stats.clone(),
        );
        let (t, x) = sim(100, 0);
        assert_eq!((t.len(), x.len()), (100, 100));
        assert!(x.iter().all(|v| v.is_finite()));
        assert!(stats.invalid().rows_with_nan >= 33);
        let sim = online_source(draw, InvalidPolicy::Error, "s".into(), slot.clone(), stats);
        let r = std::thread::spawn(move || sim(10, 0)).join();
        assert!(r.is_err());
        let e = slot.lock().unwrap().take().unwrap().to_string();
        assert!(e.starts_with("s: "), "{e}");
    }
}

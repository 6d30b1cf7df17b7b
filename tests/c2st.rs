//! C2ST on the GPU: chance level on two samples of one distribution, near 1 on separated ones,
//! and in between for a modest shift; all five folds must train and stop.

mod common;
use common::*;
use gkl_gpu::evaluation::c2st::{c2st, z_score, C2stConfig, Samples};
use rand::Rng;
use rand_distr::StandardNormal;

fn gauss(seed: u64, n: usize, d: usize, shift: f64) -> Vec<f64> {
    let mut g = rng(seed);
    (0..n * d)
        .map(|i| g.sample::<f64, _>(StandardNormal) + if i % d == 0 { shift } else { 0.0 })
        .collect()
}

fn score(a: &[f64], b: &[f64], n: usize, d: usize) -> f64 {
    let r = c2st(
        ctx(),
        &Samples {
            data: a,
            rows: n,
            dim: d,
        },
        &Samples {
            data: b,
            rows: n,
            dim: d,
        },
        &C2stConfig::default(),
        |_, _| {},
    )
    .unwrap();
    assert_eq!(r.fold_accuracies.len(), 5);
    assert!(
        r.fold_epochs.iter().all(|&e| e > 1 && e < 10_000),
        "fold epochs {:?}",
        r.fold_epochs
    );
    r.accuracy
}

#[test]
fn same_distribution_scores_near_chance() {
    let (n, d) = (2000, 2);
    let s = score(&gauss(1, n, d, 0.0), &gauss(2, n, d, 0.0), n, d);
    assert!(
        (0.44..=0.56).contains(&s),
        "c2st of one distribution against itself: {s}"
    );
}

#[test]
fn separated_distributions_score_near_one() {
    let (n, d) = (2000, 3);
    let s = score(&gauss(3, n, d, 0.0), &gauss(4, n, d, 6.0), n, d);
    assert!(s > 0.98, "c2st of well-separated samples: {s}");
}

#[test]
fn a_one_sigma_shift_scores_in_between() {
    // Bayes-optimal accuracy for a 1σ shift of one coordinate is Φ(0.5) ≈ 0.69.
    let (n, d) = (2000, 2);
    let s = score(&gauss(5, n, d, 0.0), &gauss(6, n, d, 1.0), n, d);
    assert!((0.63..=0.73).contains(&s), "c2st for a 1σ shift: {s}");
}

#[test]
fn z_scoring_uses_the_first_sets_statistics() {
    let a = [1.0, 10.0, 3.0, 10.0, 5.0, 10.0]; // column 2 is constant
    let b = [3.0, 12.0];
    let (za, zb) = z_score(
        &Samples {
            data: &a,
            rows: 3,
            dim: 2,
        },
        &Samples {
            data: &b,
            rows: 1,
            dim: 2,
        },
    );
    // mean 3, unbiased sd 2 in column 1; the constant column keeps scale 1.
    assert_eq!(za, vec![-1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    assert_eq!(zb, vec![0.0, 2.0]);
}

#[test]
fn mismatched_dimensions_are_an_error() {
    let a = gauss(7, 20, 2, 0.0);
    let b = gauss(8, 20, 3, 0.0);
    let r = c2st(
        ctx(),
        &Samples {
            data: &a,
            rows: 20,
            dim: 2,
        },
        &Samples {
            data: &b[..60],
            rows: 20,
            dim: 3,
        },
        &C2stConfig::default(),
        |_, _| {},
    );
    assert!(r.is_err());
}

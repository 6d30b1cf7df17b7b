//! NPE end to end on a conjugate Gaussian model, where the posterior is known exactly:
//! train on the GPU, save and reload the model directory, sample, and evaluate log q.

mod common;
use common::*;
use gkl_gpu::kernels::Activation;
use gkl_gpu::models::flow::{FlowConfig, FlowKind};
use gkl_gpu::models::posterior::NpeModel;
use gkl_gpu::sampling::npe::NpePosterior;
use gkl_gpu::training::npe::{train_npe, NpeSettings};
use gkl_gpu::training::Method;
use gkl_tasks::Prior;
use rand::Rng;
use rand_distr::StandardNormal;

/// θ ~ N(0, 1) in 2-D, x = θ + 0.5·ε: the posterior is N(0.8·x, 0.2·I).
fn data(n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut g = rng(seed);
    let theta: Vec<f64> = (0..2 * n).map(|_| g.sample(StandardNormal)).collect();
    let x = theta
        .iter()
        .map(|t| t + 0.5 * g.sample::<f64, _>(StandardNormal))
        .collect();
    (theta, x)
}

fn settings(kind: FlowKind) -> NpeSettings {
    NpeSettings {
        method: Method::Npe,
        ratio: None,
        contrastive: 1,
        base_epochs: 0,
        base_gradient: Default::default(),
        support_mask: false,
        flow: FlowConfig {
            act: Activation::Relu,
            transforms: 3,
            ..FlowConfig::new(kind, 0, 0)
        },
        embedding: None,
        batch_size: 128,
        lr: 2e-3,
        max_epochs: 40,
        patience: 10,
        validation_fraction: 0.1,
        clip_norm: 5.0,
        weight_decay: 0.0,
        lr_patience: 0,
        lr_factor: 0.5,
        lr_restore_best: false,
        seed: 3,
        unconstrained: false,
    }
}

#[test]
fn npe_recovers_a_conjugate_gaussian_posterior_and_survives_a_save() {
    let ctx = ctx();
    let prior =
        Prior::from_json(r#"{"type": "gaussian", "mean": [0, 0], "cov": [[1, 0], [0, 1]]}"#)
            .unwrap();
    let (theta, x) = data(4000, 1);
    let out = train_npe(
        ctx,
        &prior,
        &theta,
        &x,
        2,
        &settings(FlowKind::Maf),
        None,
        |_| {},
    )
    .unwrap();
    let first = out.history[0].val_loss;
    let best = out.history[out.best_epoch - 1].val_loss;
    // The exact posterior's entropy-based loss is ln(2πe·0.2) ≈ 1.23 for 2-D; an untrained flow is far above.
    assert!(
        best < first,
        "validation loss did not fall: {first} → {best}"
    );
    assert!(
        best < 1.45,
        "validation loss {best} (exact posterior ≈ 1.23)"
    );

    let dir = std::env::temp_dir().join(format!("gkl-npe-test-{}", std::process::id()));
    out.model.save(&dir).unwrap();
    let loaded = NpeModel::load(&dir).unwrap();
    assert_eq!(loaded.params, out.model.params);
    let post = NpePosterior::new(ctx, loaded).unwrap();
    let xo = vec![1.0, -0.5];
    let (s, report) = post.sample(std::slice::from_ref(&xo), 5000, 7).unwrap();
    assert_eq!(
        report.drawn[0], 5000,
        "a Gaussian prior has no edge to reject at"
    );
    let s = &s[0];
    for (j, &xj) in xo.iter().enumerate() {
        let m = s.iter().skip(j).step_by(2).sum::<f64>() / 5000.0;
        let v = s
            .iter()
            .skip(j)
            .step_by(2)
            .map(|t| (t - m) * (t - m))
            .sum::<f64>()
            / 4999.0;
        assert!(
            (m - 0.8 * xj).abs() < 0.08,
            "posterior mean[{j}] {m}, exact {}",
            0.8 * xj
        );
        assert!(
            (v - 0.2).abs() < 0.05,
            "posterior variance[{j}] {v}, exact 0.2"
        );
    }
    // log q at the exact posterior mode is close to the exact log-density there: −ln(2π·0.2).
    let lq = post.log_prob(&[0.8, -0.4], &xo).unwrap()[0];
    let exact = -(2.0 * std::f64::consts::PI * 0.2).ln();
    assert!(
        (lq - exact).abs() < 0.25,
        "log q at the mode {lq}, exact {exact}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn samples_never_leave_a_box_prior() {
    let ctx = ctx();
    // θ ~ U(0, 1)², x = θ + 0.3·ε: the posterior at x = (0.95, 0.05) piles up against two edges.
    let prior =
        Prior::from_json(r#"{"type": "box_uniform", "low": [0, 0], "high": [1, 1]}"#).unwrap();
    let mut g = rng(5);
    let theta: Vec<f64> = (0..2 * 3000).map(|_| g.random::<f64>()).collect();
    let x: Vec<f64> = theta
        .iter()
        .map(|t| t + 0.3 * g.sample::<f64, _>(StandardNormal))
        .collect();
    for unconstrained in [false, true] {
        let mut st = settings(FlowKind::Maf);
        st.max_epochs = 8;
        st.unconstrained = unconstrained;
        let out = train_npe(ctx, &prior, &theta, &x, 2, &st, None, |_| {}).unwrap();
        let post = NpePosterior::new(ctx, out.model).unwrap();
        let (s, report) = post.sample(&[vec![0.95, 0.05]], 2000, 1).unwrap();
        assert!(
            s[0].iter().all(|v| (0.0..=1.0).contains(v)),
            "unconstrained={unconstrained}: a sample left the box"
        );
        if unconstrained {
            assert_eq!(
                report.rejected_outside_support[0], 0,
                "the logit-space model cannot put mass outside"
            );
        }
    }
}

#[test]
fn a_model_directory_with_a_wrong_version_is_rejected_with_a_clear_message() {
    let dir = std::env::temp_dir().join(format!("gkl-npe-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"format_version": 99}"#).unwrap();
    let e = NpeModel::load(&dir).unwrap_err().to_string();
    assert!(e.contains("config.json"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
    let missing = NpeModel::load(std::path::Path::new("/nonexistent/model"))
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("/nonexistent/model") && missing.contains("config.json"),
        "{missing}"
    );
}

/// `lr_restore_best`: a plateau cut continues from the best parameters so far. With the rate cut
/// to almost nothing the next epoch barely moves them, so its validation loss is the best one
/// again; without the option it stays near the plateau's worse value.
#[test]
fn a_plateau_cut_with_lr_restore_best_continues_from_the_best_parameters() {
    let ctx = ctx();
    let prior =
        Prior::from_json(r#"{"type": "gaussian", "mean": [0, 0], "cov": [[1, 0], [0, 1]]}"#)
            .unwrap();
    let (theta, x) = data(600, 4);
    for restore in [true, false] {
        let s = NpeSettings {
            lr: 1e-2,
            max_epochs: 30,
            patience: 30,
            lr_patience: 2,
            lr_factor: 1e-6,
            lr_restore_best: restore,
            ..settings(FlowKind::Maf)
        };
        let out = train_npe(ctx, &prior, &theta, &x, 2, &s, None, |_| {}).unwrap();
        let h = &out.history;
        let cut = h
            .windows(2)
            .position(|w| w[1].lr < w[0].lr)
            .expect("no plateau: the test exercises nothing");
        let best = h[..=cut]
            .iter()
            .map(|m| m.val_loss)
            .fold(f64::INFINITY, f64::min);
        let (at_cut, after) = (h[cut].val_loss, h[cut + 1].val_loss);
        assert!(
            at_cut - best > 1e-3,
            "the plateau is as good as the best: {at_cut} vs {best}"
        );
        if restore {
            assert!(
                (after - best).abs() < 1e-4,
                "restored: {after} vs best {best}"
            );
        } else {
            assert!(
                (after - at_cut).abs() < 1e-4,
                "not restored: {after} vs {at_cut}"
            );
        }
    }
}

#[test]
fn the_learning_rate_is_cut_after_each_plateau_and_recorded_per_epoch() {
    let ctx = ctx();
    let prior =
        Prior::from_json(r#"{"type": "gaussian", "mean": [0, 0], "cov": [[1, 0], [0, 1]]}"#)
            .unwrap();
    // Few rows and a large step: the validation loss stalls within a few epochs.
    let (theta, x) = data(600, 4);
    let s = NpeSettings {
        lr: 1e-2,
        max_epochs: 30,
        patience: 30,
        lr_patience: 2,
        lr_factor: 0.25,
        ..settings(FlowKind::Maf)
    };
    let out = train_npe(ctx, &prior, &theta, &x, 2, &s, None, |_| {}).unwrap();
    let h = &out.history;
    assert_eq!(h[0].lr, Some(1e-2f32 as f64));
    let mut since = 0;
    let mut cuts = 0;
    for w in h.windows(2) {
        since = if w[0].best { 0 } else { since + 1 };
        let want = if since > 0 && since % 2 == 0 {
            0.25
        } else {
            1.0
        };
        let (a, b) = (w[0].lr.unwrap(), w[1].lr.unwrap());
        assert_eq!(
            b,
            (a as f32 * want as f32) as f64,
            "epoch {}: lr {a} -> {b}",
            w[1].epoch
        );
        cuts += (want < 1.0) as usize;
    }
    assert!(
        cuts >= 1,
        "no plateau in {} epochs: the test exercises nothing",
        h.len()
    );
    // A constant rate when the schedule is off.
    let flat = train_npe(
        ctx,
        &prior,
        &theta,
        &x,
        2,
        &NpeSettings {
            lr_patience: 0,
            max_epochs: 8,
            ..s
        },
        None,
        |_| {},
    )
    .unwrap();
    assert!(flat.history.iter().all(|m| m.lr == Some(1e-2f32 as f64)));
}

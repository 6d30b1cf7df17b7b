//! The residual MLP: GPU forward and gradients against the f64 reference, the reference's
//! gradients against finite differences, and a training run that must actually learn.

mod common;
use common::*;
use gkl_gpu::kernels::adam::AdamConfig;
use gkl_gpu::kernels::layout::{pack, unpack};
use gkl_gpu::kernels::Activation;
use gkl_gpu::models::mlp::{cpu, Mlp, MlpConfig, MlpPlan, MlpWeights};
use gkl_gpu::runtime::Dispatch;
use gkl_gpu::training::regress::run_regression;

fn flat(w: &MlpWeights) -> Vec<f64> {
    w.w.iter()
        .zip(&w.b)
        .flat_map(|(a, b)| a.iter().chain(b.iter()).copied())
        .collect()
}

#[test]
fn gpu_gradients_match_cpu_reference() {
    let ctx = ctx();
    // (blocks, activation, rows, residual, models, l2): single and batched models, both forms.
    let cases = [
        (0, Activation::Relu, 5, true, 1, 0.0),
        (2, Activation::Gelu, 37, true, 1, 0.0),
        (3, Activation::Silu, 130, true, 1, 0.0),
        (1, Activation::Relu, 23, false, 1, 0.0),
        (1, Activation::Tanh, 41, false, 5, 0.01),
        (2, Activation::Elu, 9, true, 3, 0.1),
    ];
    for (blocks, act, rows, residual, models, l2) in cases {
        let cfg = MlpConfig {
            in_dim: 3,
            out_dim: 2,
            hidden: 10,
            blocks,
            act,
            residual,
        };
        let mut g = rng(blocks as u64 + 17 * models as u64);
        let ws: Vec<MlpWeights> = (0..models)
            .map(|_| MlpWeights::init(&cfg, &mut g))
            .collect();
        let xs: Vec<Vec<f64>> = (0..models).map(|_| randn(&mut g, rows * 3, 1.5)).collect();
        let dys: Vec<Vec<f64>> = (0..models).map(|_| randn(&mut g, rows * 2, 1.0)).collect();
        let mlp = Mlp::new_batched(ctx, cfg.clone(), &ws).unwrap();
        let plan = MlpPlan::with_l2(ctx, &mlp, rows, l2 as f32).unwrap();
        for m in 0..models {
            ctx.write(&plan.x, m * rows * 4, &pack(&xs[m], rows, 3))
                .unwrap();
            ctx.write(&plan.dy, m * rows * 4, &pack(&dys[m], rows, 2))
                .unwrap();
        }
        let all: Vec<&Dispatch> = plan.forward.iter().chain(&plan.backward).collect();
        ctx.run(&all).unwrap();
        let y_all = ctx.read::<f32>(&plan.y).unwrap();
        let grads = mlp.gradients_all(ctx).unwrap();
        for m in 0..models {
            let tape = cpu::forward(&cfg, &ws[m], &xs[m], rows);
            let what =
                format!("mlp blocks={blocks} {act:?} residual={residual} model {m}/{models}");
            assert_close(
                &what,
                &unpack(&y_all[m * rows * 4..(m + 1) * rows * 4], rows, 2),
                &tape.y,
                1e-4,
                1e-4,
            );
            let want = cpu::backward(&cfg, &ws[m], &xs[m], rows, &tape, &dys[m], l2);
            assert_close(
                &format!("{what} grads"),
                &flat(&grads[m]),
                &flat(&want),
                1e-4,
                1e-3,
            );
        }
    }
}

/// dL/dX of L = Σ dY ⊙ Y: the GPU plan's `dx` against the f64 reference, and the reference
/// against central differences in X; input widths that are not multiples of 4, both forms,
/// batched models.
#[test]
fn input_gradient_matches_cpu_reference_and_finite_differences() {
    let ctx = ctx();
    // (in_dim, blocks, activation, rows, residual, models)
    let cases = [
        (5, 1, Activation::Relu, 13, true, 1),
        (3, 2, Activation::Tanh, 7, false, 1),
        (6, 0, Activation::Gelu, 21, true, 2),
        (4, 1, Activation::Elu, 9, false, 3),
    ];
    for (k, blocks, act, rows, residual, models) in cases {
        let cfg = MlpConfig {
            in_dim: k,
            out_dim: 2,
            hidden: 9,
            blocks,
            act,
            residual,
        };
        let what = format!("input gradient in={k} blocks={blocks} {act:?} residual={residual}");
        let mut g = rng(31 + k as u64);
        let ws: Vec<MlpWeights> = (0..models)
            .map(|_| MlpWeights::init(&cfg, &mut g))
            .collect();
        let xs: Vec<Vec<f64>> = (0..models).map(|_| randn(&mut g, rows * k, 1.5)).collect();
        let dys: Vec<Vec<f64>> = (0..models).map(|_| randn(&mut g, rows * 2, 1.0)).collect();
        let mlp = Mlp::new_batched(ctx, cfg.clone(), &ws).unwrap();
        let plan = MlpPlan::with_input_grad(ctx, &mlp, rows).unwrap();
        let k4 = k.div_ceil(4) * 4;
        for m in 0..models {
            ctx.write(&plan.x, m * rows * k4, &pack(&xs[m], rows, k))
                .unwrap();
            ctx.write(&plan.dy, m * rows * 4, &pack(&dys[m], rows, 2))
                .unwrap();
        }
        let all: Vec<&Dispatch> = plan.forward.iter().chain(&plan.backward).collect();
        ctx.run(&all).unwrap();
        let dx_all = ctx.read::<f32>(plan.dx.as_ref().unwrap()).unwrap();
        let grads = mlp.gradients_all(ctx).unwrap();
        for m in 0..models {
            let tape = cpu::forward(&cfg, &ws[m], &xs[m], rows);
            let (gw, dx) =
                cpu::backward_with_input(&cfg, &ws[m], &xs[m], rows, &tape, &dys[m], 0.0);
            let got = &dx_all[m * rows * k4..(m + 1) * rows * k4];
            assert_close(
                &format!("{what} model {m}"),
                &unpack(got, rows, k),
                &dx,
                1e-4,
                1e-3,
            );
            // Padding columns stay zero; the weight gradients are unchanged by the extra launch.
            assert!(
                got.chunks(k4).all(|r| r[k..].iter().all(|&v| v == 0.0)),
                "{what}: padding"
            );
            assert_close(
                &format!("{what} weight grads"),
                &flat(&grads[m]),
                &flat(&gw),
                1e-4,
                1e-3,
            );
            let loss = |x: &[f64]| -> f64 {
                cpu::forward(&cfg, &ws[m], x, rows)
                    .y
                    .iter()
                    .zip(&dys[m])
                    .map(|(a, b)| a * b)
                    .sum()
            };
            let h = 1e-6;
            let fd: Vec<f64> = (0..rows * k)
                .map(|i| {
                    let (mut a, mut b) = (xs[m].clone(), xs[m].clone());
                    a[i] += h;
                    b[i] -= h;
                    (loss(&a) - loss(&b)) / (2.0 * h)
                })
                .collect();
            assert_close(
                &format!("{what}: reference vs finite differences"),
                &dx,
                &fd,
                1e-6,
                1e-5,
            );
        }
    }
}

#[test]
fn cpu_network_gradients_match_finite_differences() {
    for residual in [true, false] {
        let cfg = MlpConfig {
            in_dim: 2,
            out_dim: 2,
            hidden: 5,
            blocks: 2,
            act: Activation::Tanh,
            residual,
        };
        let rows = 4;
        let l2 = 0.3;
        let mut g = rng(9);
        let w = MlpWeights::init(&cfg, &mut g);
        let x = randn(&mut g, rows * 2, 1.0);
        let dy = randn(&mut g, rows * 2, 1.0);
        let loss = |w: &MlpWeights| -> f64 {
            let data: f64 = cpu::forward(&cfg, w, &x, rows)
                .y
                .iter()
                .zip(&dy)
                .map(|(a, b)| a * b)
                .sum();
            data + 0.5 * l2 * w.w.iter().flatten().map(|v| v * v).sum::<f64>()
        };
        let tape = cpu::forward(&cfg, &w, &x, rows);
        let grads = cpu::backward(&cfg, &w, &x, rows, &tape, &dy, l2);
        let h = 1e-6;
        for l in 0..cfg.blocks + 2 {
            for i in 0..w.w[l].len() {
                let (mut a, mut b) = (w.clone(), w.clone());
                a.w[l][i] += h;
                b.w[l][i] -= h;
                let fd = (loss(&a) - loss(&b)) / (2.0 * h);
                assert!(
                    (fd - grads.w[l][i]).abs() < 1e-6 + 1e-5 * fd.abs(),
                    "layer {l} w[{i}]: {} vs fd {fd}",
                    grads.w[l][i]
                );
            }
            for i in 0..w.b[l].len() {
                let (mut a, mut b) = (w.clone(), w.clone());
                a.b[l][i] += h;
                b.b[l][i] -= h;
                let fd = (loss(&a) - loss(&b)) / (2.0 * h);
                assert!(
                    (fd - grads.b[l][i]).abs() < 1e-6 + 1e-5 * fd.abs(),
                    "layer {l} b[{i}]: {} vs fd {fd}",
                    grads.b[l][i]
                );
            }
        }
    }
}

#[test]
fn residual_mlp_learns_a_known_function() {
    let cfg = MlpConfig {
        in_dim: 2,
        out_dim: 1,
        hidden: 64,
        blocks: 2,
        act: Activation::Gelu,
        residual: true,
    };
    let adam = AdamConfig {
        lr: 3e-3,
        ..Default::default()
    };
    let r = run_regression(ctx(), cfg, 128, 4096, 25, adam, 1, |_, _| {}).unwrap();
    // The target has variance ≈ 0.5; an untrained network is far off, a trained one close.
    assert!(
        r.untrained_test_mse > 0.1,
        "untrained mse {}",
        r.untrained_test_mse
    );
    assert!(
        r.test_mse < 0.01,
        "trained held-out mse {} (epochs {:?})",
        r.test_mse,
        r.epochs
    );
    let (first, last) = (r.epochs[0].1, r.epochs.last().unwrap().1);
    assert!(
        last < 0.1 * first,
        "training loss fell only from {first} to {last}"
    );
}

//! Reductions, element-wise activations, Adam and the Philox generator against their references;
//! and errors from wgpu surfacing as typed errors.

mod common;
use common::*;
use gkl_gpu::kernels::adam::{cpu::AdamCpu, Adam, AdamConfig};
use gkl_gpu::kernels::elementwise::{self, EwParams};
use gkl_gpu::kernels::gather::{self, GatherParams};
use gkl_gpu::kernels::reduce::{self, ReduceOp, ReduceParams};
use gkl_gpu::kernels::rng::{self, philox4x32, RngMode, RngParams, RngStream};
use gkl_gpu::kernels::Activation;
use gkl_gpu::runtime::{Bind, GpuError};
use rand::Rng;

#[test]
fn reductions_match_cpu_on_ragged_sizes() {
    let ctx = ctx();
    for &(rows, cols, stride) in &[
        (1usize, 1usize, 1usize),
        (255, 3, 3),
        (257, 7, 9),
        (1000, 2, 2),
        (5003, 5, 8),
    ] {
        let mut g = rng(rows as u64);
        // Large offsets make a naive exp-sum overflow; log-sum-exp must not.
        let x: Vec<f64> = randn(&mut g, rows * stride, 3.0)
            .iter()
            .map(|v| v + 60.0)
            .collect();
        let xt = ctx
            .tensor_from("x", &x.iter().map(|&v| v as f32).collect::<Vec<_>>())
            .unwrap();
        for op in ReduceOp::ALL {
            let out = ctx.tensor_zeros("out", cols).unwrap();
            let p = ctx.uniform("p", &ReduceParams::row_major(rows, cols, stride));
            let d = reduce::reduce_cols(ctx, &p, cols, op, false, &xt, &out).unwrap();
            ctx.run(&[&d]).unwrap();
            let got: Vec<f64> = ctx
                .read::<f32>(&out)
                .unwrap()
                .iter()
                .map(|&v| v as f64)
                .collect();
            let xf: Vec<f64> = x.iter().map(|&v| v as f32 as f64).collect();
            let want = reduce::cpu::reduce_cols(&xf, rows, cols, stride, op);
            assert_close(&format!("{op:?} {rows}x{cols}"), &got, &want, 1e-3, 1e-5);
            // Accumulating mode adds onto what is there.
            let d2 = reduce::reduce_cols(ctx, &p, cols, op, true, &xt, &out).unwrap();
            ctx.run(&[&d2]).unwrap();
            let got2: Vec<f64> = ctx
                .read::<f32>(&out)
                .unwrap()
                .iter()
                .map(|&v| v as f64)
                .collect();
            let want2: Vec<f64> = want.iter().map(|v| 2.0 * v).collect();
            assert_close(&format!("{op:?} accumulate"), &got2, &want2, 2e-3, 1e-5);
        }
    }
}

#[test]
fn elementwise_activations_match_cpu() {
    let ctx = ctx();
    let n = 1001;
    let x = randn(&mut rng(3), n, 6.0);
    let dy = randn(&mut rng(4), n, 1.0);
    let f32s = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<_>>();
    let xt = ctx.tensor_from("x", &f32s(&x)).unwrap();
    let dyt = ctx.tensor_from("dy", &f32s(&dy)).unwrap();
    let p = ctx.uniform("p", &EwParams::new(n));
    for act in Activation::ALL {
        let y = ctx.tensor_zeros("y", n).unwrap();
        let dx = ctx.tensor_zeros("dx", n).unwrap();
        let d1 = elementwise::act_forward(ctx, &p, n, act, &xt, &y).unwrap();
        let d2 = elementwise::act_backward(ctx, &p, n, act, &xt, &dyt, &dx).unwrap();
        ctx.run(&[&d1, &d2]).unwrap();
        let want_y: Vec<f64> = x.iter().map(|&v| act.f(v)).collect();
        let want_dx: Vec<f64> = x.iter().zip(&dy).map(|(&v, &g)| g * act.df(v)).collect();
        let got_y: Vec<f64> = ctx
            .read::<f32>(&y)
            .unwrap()
            .iter()
            .map(|&v| v as f64)
            .collect();
        let got_dx: Vec<f64> = ctx
            .read::<f32>(&dx)
            .unwrap()
            .iter()
            .map(|&v| v as f64)
            .collect();
        assert_close(&format!("{act:?} forward"), &got_y, &want_y, 1e-5, 1e-4);
        assert_close(&format!("{act:?} backward"), &got_dx, &want_dx, 1e-5, 1e-4);
    }
}

#[test]
fn gradient_accumulation_over_micro_batches_matches_cpu() {
    // The trainer's pattern for a micro-batches: acc = g₀; acc += gᵢ (0 < i < a − 1);
    // g = acc + g_last, so the optimizer reads the sum from the gradient buffer itself.
    let ctx = ctx();
    let f32s = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<_>>();
    let as64 = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
    for (n, micros) in [(1usize, 2usize), (257, 2), (1036, 3), (5003, 4)] {
        let gs: Vec<Vec<f64>> = (0..micros)
            .map(|i| randn(&mut rng(40 + i as u64), n, 2.0))
            .collect();
        // Stale contents must not leak in: both buffers start with garbage.
        let grad = ctx.tensor_from("grad", &f32s(&vec![7.5; n + 3])).unwrap();
        let acc = ctx.tensor_from("acc", &f32s(&vec![-3.25; n])).unwrap();
        let first = ctx.uniform("first", &EwParams::accumulate(n, false));
        let add = ctx.uniform("add", &EwParams::accumulate(n, true));
        let d_first = elementwise::accumulate(ctx, &first, n, &grad, &acc).unwrap();
        let d_mid = elementwise::accumulate(ctx, &add, n, &grad, &acc).unwrap();
        let d_last = elementwise::accumulate(ctx, &add, n, &acc, &grad).unwrap();
        let (mut want_acc, mut want_g) = (vec![0.0; n], vec![0.0; n]);
        for (i, g) in gs.iter().enumerate() {
            // Each micro-batch's backward pass overwrites the gradient buffer.
            ctx.write(&grad, 0, &f32s(g)).unwrap();
            let g32 = as64(f32s(g));
            let d = if i == 0 {
                elementwise::cpu::accumulate(&g32, &mut want_acc, false);
                &d_first
            } else if i + 1 < micros {
                elementwise::cpu::accumulate(&g32, &mut want_acc, true);
                &d_mid
            } else {
                want_g = g32.clone();
                elementwise::cpu::accumulate(&want_acc, &mut want_g, true);
                &d_last
            };
            ctx.run(&[d]).unwrap();
        }
        let got = as64(ctx.read_range::<f32>(&grad, 0, n).unwrap());
        let sum: Vec<f64> = (0..n).map(|j| gs.iter().map(|g| g[j]).sum()).collect();
        assert_close(
            &format!("accumulate n={n} a={micros}"),
            &got,
            &want_g,
            1e-5,
            1e-5,
        );
        assert_close(&format!("sum n={n} a={micros}"), &got, &sum, 1e-4, 1e-4);
        // Elements past n are left alone.
        let tail = ctx.read::<f32>(&grad).unwrap();
        assert_eq!(&tail[n..], &[7.5; 3]);
    }
    let short = ctx.tensor_zeros("short", 3).unwrap();
    let p = ctx.uniform("p", &EwParams::accumulate(4, true));
    assert!(elementwise::accumulate(ctx, &p, 4, &short, &short).is_err());
}

#[test]
fn gathered_micro_batches_and_contrastive_rows_match_cpu() {
    // Rows of 8 floats (d4 = 2) whose values name the row; two models with their own
    // permutations; the last batch of the epoch wraps around the permutation.
    let ctx = ctx();
    let (n, n_train, models, d4) = (50usize, 37usize, 2usize, 2usize);
    let data: Vec<f32> = (0..n * 4 * d4)
        .map(|i| (i / (4 * d4)) as f32 + 0.001 * (i % 8) as f32)
        .collect();
    let mut g = rng(21);
    let perm: Vec<u32> = (0..models * n_train)
        .map(|_| g.random_range(0..n as u32))
        .collect();
    let data_t = ctx.tensor_from("data", &data).unwrap();
    let perm_t = ctx.tensor_from("perm", &perm).unwrap();
    let (batch, steps) = (10usize, 4usize);
    for counter in [0u32, 2, 3, 7] {
        let ctr = ctx.tensor_from("counter", &[counter, 0, 0, 0]).unwrap();
        let row_of =
            |v: &[f32]| -> Vec<usize> { v.chunks(4 * d4).map(|r| r[0] as usize).collect() };
        // Micro-batches of 4, 4, 2 rows together are the whole batch.
        let whole = GatherParams::new(batch, d4, n_train, steps, models);
        let mut parts: Vec<Vec<usize>> = vec![vec![]; models];
        for (off, rows) in [(0usize, 4usize), (4, 4), (8, 2)] {
            for k in [0usize, 1, 3] {
                let p = whole.micro(batch, off, rows).contrastive(k.max(1));
                let u = ctx.uniform("p", &p);
                let out = ctx
                    .tensor_zeros("out", models * rows * k.max(1) * 4 * d4)
                    .unwrap();
                let (d, want) = if k == 0 {
                    (
                        gather::gather_rows(ctx, &u, &p, &data_t, &perm_t, &ctr, &out).unwrap(),
                        gather::cpu::rows(&p, &perm, counter),
                    )
                } else {
                    (
                        gather::gather_contrast(ctx, &u, &p, &data_t, &perm_t, &ctr, &out).unwrap(),
                        gather::cpu::contrast(&p, &perm, counter),
                    )
                };
                ctx.run(&[&d]).unwrap();
                let got = ctx.read::<f32>(&out).unwrap();
                assert_eq!(row_of(&got), want, "counter {counter} off {off} k {k}");
                // Whole rows are copied.
                for (r, &i) in want.iter().enumerate() {
                    assert_eq!(
                        &got[r * 4 * d4..(r + 1) * 4 * d4],
                        &data[i * 4 * d4..(i + 1) * 4 * d4]
                    );
                }
                if k == 0 {
                    for m in 0..models {
                        parts[m].extend_from_slice(&want[m * rows..(m + 1) * rows]);
                    }
                }
            }
        }
        let full = gather::cpu::rows(&whole, &perm, counter);
        assert_eq!(parts.concat(), full);
        // Contrastive rows are the whole batch's rows rolled: row i's k-th is row (i + k + 1) mod B.
        let c = gather::cpu::contrast(&whole.contrastive(3), &perm, counter);
        for i in 0..batch {
            for k in 0..3 {
                assert_eq!(c[i * 3 + k], full[(i + k + 1) % batch]);
            }
        }
        let b = counter as usize % steps;
        assert_eq!(full[0], perm[(b * batch) % n_train] as usize);
        assert_eq!(
            full[batch + 9],
            perm[n_train + (b * batch + 9) % n_train] as usize
        );
    }
}

#[test]
fn activation_derivatives_match_finite_differences() {
    for act in Activation::ALL {
        for i in 0..200 {
            let x = -5.0 + 10.0 * (i as f64 + 0.37) / 200.0;
            let h = 1e-6;
            let fd = (act.f(x + h) - act.f(x - h)) / (2.0 * h);
            assert!(
                (fd - act.df(x)).abs() < 1e-6,
                "{act:?}'({x}) = {} but finite difference {fd}",
                act.df(x)
            );
        }
    }
}

#[test]
fn adam_matches_cpu_with_clipping_and_weight_decay() {
    let ctx = ctx();
    let n = 1036; // padded arena: a multiple of 4, not of the workgroup size
    for (config, grad_scale) in [
        (
            AdamConfig {
                lr: 1e-2,
                weight_decay: 0.0,
                max_norm: 0.0,
                ..Default::default()
            },
            1.0,
        ),
        (
            AdamConfig {
                lr: 1e-2,
                weight_decay: 0.1,
                max_norm: 1.0,
                ..Default::default()
            },
            10.0,
        ),
        // Gradients small enough that ε's placement changes the step (scikit-learn's form).
        (
            AdamConfig {
                lr: 1e-2,
                max_norm: 0.0,
                eps_on_raw_v: true,
                ..Default::default()
            },
            1e-7,
        ),
    ] {
        let mut theta = randn(&mut rng(5), n, 1.0);
        let tt = ctx
            .tensor_from(
                "theta",
                &theta.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            )
            .unwrap();
        let gt = ctx.tensor_zeros("grad", n).unwrap();
        let adam = Adam::new(ctx, config, &tt, &gt).unwrap();
        let mut cpu = AdamCpu::new(n);
        for step in 0..5 {
            let grad = randn(&mut rng(10 + step), n, grad_scale);
            ctx.write(&gt, 0, &grad.iter().map(|&v| v as f32).collect::<Vec<_>>())
                .unwrap();
            ctx.run(&adam.dispatches()).unwrap();
            let norm = cpu.step(&config, &mut theta, &grad);
            let (s, gnorm) = adam.last_step(ctx).unwrap();
            assert_eq!(s as u64, step + 1);
            assert!(
                (gnorm as f64 - norm).abs() < 1e-3 * norm,
                "grad norm {gnorm} vs {norm}"
            );
        }
        let got: Vec<f64> = ctx
            .read::<f32>(&tt)
            .unwrap()
            .iter()
            .map(|&v| v as f64)
            .collect();
        assert_close(&format!("adam {config:?}"), &got, &theta, 1e-5, 1e-4);
    }
}

#[test]
fn adam_eps_placement_changes_small_steps_only() {
    // ε on √v (scikit-learn) against ε on √v̂ (PyTorch): after one step of gradient g the moves are
    // lr·|g|/(√(1−β₂)|g| + ε)·√(1−β₂) and lr·|g|/(|g| + ε); equal for |g| ≫ ε, not for |g| ~ ε.
    let step = |eps_on_raw_v: bool, g: f64| {
        let c = AdamConfig {
            lr: 1.0,
            max_norm: 0.0,
            eps_on_raw_v,
            ..Default::default()
        };
        let mut theta = [0.0];
        AdamCpu::new(1).step(&c, &mut theta, &[g]);
        -theta[0]
    };
    assert!((step(true, 1.0) - step(false, 1.0)).abs() < 1e-6);
    let (raw, corrected) = (step(true, 1e-8), step(false, 1e-8));
    assert!(
        (raw - 1.0 / (1.0 + 1e-8 / (1e-8 * 0.001f64.sqrt()))).abs() < 1e-6,
        "{raw}"
    );
    assert!((corrected - 0.5).abs() < 1e-6, "{corrected}");
}

#[test]
fn philox_known_answers() {
    // Known-answer vectors of Philox4x32-10 (Random123).
    assert_eq!(
        philox4x32([0, 0, 0, 0], [0, 0]),
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
    );
    assert_eq!(
        philox4x32([u32::MAX; 4], [u32::MAX; 2]),
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
    );
    assert_eq!(
        philox4x32(
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0]
        ),
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
    );
}

#[test]
fn philox_gpu_and_cpu_give_the_same_bits_and_sane_draws() {
    let ctx = ctx();
    let n = 100_003;
    let s = RngStream {
        seed: 0x1234_5678_9abc_def0,
        offset: (7u64 << 32) | 3,
        stream: 11,
    };
    let p = ctx.uniform("p", &RngParams::new(n, &s));
    let out = ctx.tensor_zeros("out", n).unwrap();
    for mode in [RngMode::Bits, RngMode::Uniform, RngMode::Normal] {
        let d = rng::fill(ctx, &p, n, mode, &out).unwrap();
        ctx.run(&[&d]).unwrap();
        let got: Vec<u32> = ctx.read(&out).unwrap();
        match mode {
            RngMode::Bits => assert_eq!(got, s.bits(n)),
            RngMode::Uniform => {
                let want: Vec<u32> = s.uniform(n).iter().map(|v| v.to_bits()).collect();
                assert_eq!(got, want, "uniforms must be bit-identical");
                let u: Vec<f64> = got.iter().map(|&b| f32::from_bits(b) as f64).collect();
                assert!(u.iter().all(|&v| v > 0.0 && v < 1.0));
                let mean = u.iter().sum::<f64>() / n as f64;
                assert!((mean - 0.5).abs() < 0.005, "uniform mean {mean}");
            }
            RngMode::Normal => {
                let want: Vec<f64> = s.normal(n).iter().map(|&v| v as f64).collect();
                let z: Vec<f64> = got.iter().map(|&b| f32::from_bits(b) as f64).collect();
                // Same uniforms; sin/cos/log of the adapter differ from Rust's in the last bits.
                assert_close("normals", &z, &want, 1e-4, 1e-4);
                let mean = z.iter().sum::<f64>() / n as f64;
                let var = z.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
                let kurt =
                    z.iter().map(|v| (v - mean).powi(4)).sum::<f64>() / n as f64 / (var * var);
                assert!(
                    mean.abs() < 0.02 && (var - 1.0).abs() < 0.02 && (kurt - 3.0).abs() < 0.1,
                    "normal moments {mean} {var} {kurt}"
                );
            }
        }
    }
    // A different stream gives different bits.
    assert_ne!(RngStream { stream: 12, ..s }.bits(8), s.bits(8));
}

#[test]
fn wgpu_validation_errors_are_typed_errors_with_the_description() {
    let ctx = ctx();
    let t = ctx.tensor_zeros("t", 16).unwrap();
    let u = ctx.uniform("u", &[0u32; 4]);
    // A uniform buffer where the layout wants storage: wgpu's validator must refuse, and we must say why.
    let err = ctx
        .dispatch(
            "reduce",
            "reduce_cols",
            &[],
            &[Bind::U(&u), Bind::U(&u), Bind::T(&t)],
            [1, 1, 1],
        )
        .err()
        .expect("binding a uniform buffer to a storage slot must fail");
    match err {
        GpuError::Validation { description, .. } => assert!(!description.is_empty()),
        other => panic!("expected a validation error, got {other}"),
    }
    // Reading past the end is refused before touching the device.
    assert!(matches!(
        ctx.read_range::<f32>(&t, 10, 10),
        Err(GpuError::InvalidArgument(_))
    ));
    // An unknown shader is a typed error too.
    assert!(matches!(
        ctx.pipeline("nope", "main", &[]),
        Err(GpuError::UnknownShader(_))
    ));
}

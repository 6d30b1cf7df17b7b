//! Dense layer kernels: GPU against the f64 CPU reference, and the CPU backward against
//! central finite differences of the CPU forward. Shapes include sizes that are not multiples
//! of 4 or of the workgroup size.

mod common;
use common::*;
use gkl_gpu::kernels::dense::{self, cpu, DenseParams};
use gkl_gpu::kernels::layout::{pack, pack_weight, pad4, unpack};
use gkl_gpu::kernels::Activation;
use gkl_gpu::runtime::GpuTensor;

const SHAPES: [(usize, usize, usize); 6] = [
    (1, 1, 1),
    (3, 2, 5),
    (37, 5, 13),
    (130, 33, 7),
    (257, 64, 128),
    (64, 128, 64),
];

struct Case {
    x: Vec<f64>,
    w: Vec<f64>,
    b: Vec<f64>,
    r: Vec<f64>,
}

fn case(seed: u64, rows: usize, k: usize, n: usize) -> Case {
    let mut g = rng(seed);
    Case {
        x: randn(&mut g, rows * k, 1.0),
        w: randn(&mut g, k * n, 1.0 / (k as f64).sqrt()),
        b: randn(&mut g, n, 0.5),
        r: randn(&mut g, rows * n, 1.0),
    }
}

fn up(label: &str, data: Vec<f32>) -> GpuTensor {
    ctx().tensor_from(label, &data).unwrap()
}

#[test]
fn forward_matches_cpu_for_every_activation_and_shape() {
    let ctx = ctx();
    for (si, &(rows, k, n)) in SHAPES.iter().enumerate() {
        for act in Activation::ALL {
            for residual in [false, true] {
                let c = case(si as u64 * 31 + act as u64, rows, k, n);
                let x = up("x", pack(&c.x, rows, k));
                let w = up("w", pack_weight(&c.w, k, n));
                let b = up("b", pack(&c.b, 1, n));
                let r = up("r", pack(&c.r, rows, n));
                let z = ctx.tensor_zeros("z", rows * pad4(n)).unwrap();
                let a = ctx.tensor_zeros("a", rows * pad4(n)).unwrap();
                let shape = DenseParams::new(rows, k, n);
                let pbuf = ctx.uniform("p", &shape);
                let d = dense::forward(
                    ctx,
                    &pbuf,
                    shape,
                    act,
                    &x,
                    &w,
                    &b,
                    residual.then_some(&r),
                    Some(&z),
                    &a,
                )
                .unwrap();
                ctx.run(&[&d]).unwrap();
                let (zc, ac) = cpu::forward(
                    &c.x,
                    &c.w,
                    &c.b,
                    residual.then_some(&c.r[..]),
                    rows,
                    k,
                    n,
                    act,
                );
                let what = format!("forward {act:?} residual={residual} {rows}x{k}x{n}");
                let a_gpu = ctx.read::<f32>(&a).unwrap();
                assert_close(&what, &unpack(&a_gpu, rows, n), &ac, 1e-4, 1e-4);
                // Padding columns stay exactly zero, so the next layer can read whole vec4s.
                for row in a_gpu.chunks(pad4(n)) {
                    assert!(
                        row[n..].iter().all(|&v| v == 0.0),
                        "{what}: padding not zero"
                    );
                }
                if act != Activation::Identity {
                    assert_close(
                        &what,
                        &unpack(&ctx.read::<f32>(&z).unwrap(), rows, n),
                        &zc,
                        1e-4,
                        1e-4,
                    );
                }
            }
        }
    }
}

#[test]
fn backward_input_matches_cpu_with_residual_and_fused_activation() {
    let ctx = ctx();
    for (si, &(rows, k, n)) in SHAPES.iter().enumerate() {
        let c = case(100 + si as u64, rows, k, n);
        let mut g = rng(7 + si as u64);
        let dz = randn(&mut g, rows * n, 1.0);
        let rg = randn(&mut g, rows * k, 1.0); // gradient arriving through a skip connection
        let zp = randn(&mut g, rows * k, 2.0); // pre-activation of the previous layer
        for act in [Activation::Relu, Activation::Gelu, Activation::Tanh] {
            for residual in [false, true] {
                let shape = DenseParams::new(rows, k, n);
                let pbuf = ctx.uniform("p", &shape);
                let dz_t = up("dz", pack(&dz, rows, n));
                let w = up("w", pack_weight(&c.w, k, n));
                let rg_t = up("rg", pack(&rg, rows, k));
                let zp_t = up("zp", pack(&zp, rows, k));
                let dx = ctx.tensor_zeros("dx", rows * pad4(k)).unwrap();
                let dzp = ctx.tensor_zeros("dzp", rows * pad4(k)).unwrap();
                let d = dense::backward_input(
                    ctx,
                    &pbuf,
                    shape,
                    &dz_t,
                    &w,
                    residual.then_some(&rg_t),
                    Some((act, &zp_t, &dzp)),
                    &dx,
                )
                .unwrap();
                ctx.run(&[&d]).unwrap();
                let want = cpu::backward_input(&dz, &c.w, residual.then_some(&rg[..]), rows, k, n);
                let what = format!("backward_input {act:?} residual={residual} {rows}x{k}x{n}");
                assert_close(
                    &what,
                    &unpack(&ctx.read::<f32>(&dx).unwrap(), rows, k),
                    &want,
                    1e-4,
                    1e-4,
                );
                let want_p = cpu::act_backward(&want, &zp, act);
                assert_close(
                    &what,
                    &unpack(&ctx.read::<f32>(&dzp).unwrap(), rows, k),
                    &want_p,
                    1e-4,
                    1e-4,
                );
            }
        }
    }
}

#[test]
fn backward_weight_matches_cpu_and_accumulates() {
    let ctx = ctx();
    for (si, &(rows, k, n)) in SHAPES.iter().enumerate() {
        let c = case(200 + si as u64, rows, k, n);
        let dz = randn(&mut rng(300 + si as u64), rows * n, 1.0);
        let shape = DenseParams::new(rows, k, n);
        let pbuf = ctx.uniform("p", &shape);
        let x = up("x", pack(&c.x, rows, k));
        let dz_t = up("dz", pack(&dz, rows, n));
        let dw = ctx.tensor_zeros("dw", pad4(k) * pad4(n)).unwrap();
        let db = ctx.tensor_zeros("db", pad4(n)).unwrap();
        let d =
            dense::backward_weight(ctx, &pbuf, shape, &x, &dz_t, &dw, &db, false, None).unwrap();
        ctx.run(&[&d]).unwrap();
        let (dw_c, db_c) = cpu::backward_weight(&c.x, &dz, rows, k, n);
        let what = format!("backward_weight {rows}x{k}x{n}");
        let dw_g = ctx.read::<f32>(&dw).unwrap();
        assert_close(&what, &unpack(&dw_g, k, n), &dw_c, 1e-3, 1e-4);
        assert!(
            dw_g[k * pad4(n)..].iter().all(|&v| v == 0.0),
            "{what}: padded rows of dW not zero"
        );
        assert_close(
            &what,
            &unpack(&ctx.read::<f32>(&db).unwrap(), 1, n),
            &db_c,
            1e-3,
            1e-4,
        );
        // Accumulate mode adds a second copy on top.
        let d2 =
            dense::backward_weight(ctx, &pbuf, shape, &x, &dz_t, &dw, &db, true, None).unwrap();
        ctx.run(&[&d2]).unwrap();
        let twice: Vec<f64> = dw_c.iter().map(|v| 2.0 * v).collect();
        assert_close(
            &what,
            &unpack(&ctx.read::<f32>(&dw).unwrap(), k, n),
            &twice,
            2e-3,
            1e-4,
        );
    }
}

/// L = Σ C ⊙ A(X, W, b, R): the CPU backward chain (act' then dX, dW, db) against central
/// differences of the CPU forward.
#[test]
fn cpu_backward_matches_finite_differences() {
    for act in Activation::ALL {
        let (rows, k, n) = (5, 6, 7);
        let c = case(400 + act as u64, rows, k, n);
        let coef = randn(&mut rng(500), rows * n, 1.0);
        let loss = |x: &[f64], w: &[f64], b: &[f64], r: &[f64]| -> f64 {
            let (_, a) = cpu::forward(x, w, b, Some(r), rows, k, n, act);
            a.iter().zip(&coef).map(|(p, q)| p * q).sum()
        };
        let (z, _) = cpu::forward(&c.x, &c.w, &c.b, Some(&c.r), rows, k, n, act);
        let dz = cpu::act_backward(&coef, &z, act);
        let dx = cpu::backward_input(&dz, &c.w, None, rows, k, n);
        let (dw, db) = cpu::backward_weight(&c.x, &dz, rows, k, n);
        let h = 1e-6;
        let fd = |f: &dyn Fn(f64) -> f64| (f(h) - f(-h)) / (2.0 * h);
        let mut fx = vec![];
        for i in 0..c.x.len() {
            fx.push(fd(&|e| {
                let mut x = c.x.clone();
                x[i] += e;
                loss(&x, &c.w, &c.b, &c.r)
            }));
        }
        let mut fw = vec![];
        for i in 0..c.w.len() {
            fw.push(fd(&|e| {
                let mut w = c.w.clone();
                w[i] += e;
                loss(&c.x, &w, &c.b, &c.r)
            }));
        }
        let mut fb = vec![];
        for i in 0..c.b.len() {
            fb.push(fd(&|e| {
                let mut b = c.b.clone();
                b[i] += e;
                loss(&c.x, &c.w, &b, &c.r)
            }));
        }
        // The skip connection passes its gradient straight through.
        let fr: Vec<f64> = (0..c.r.len())
            .map(|i| {
                fd(&|e| {
                    let mut r = c.r.clone();
                    r[i] += e;
                    loss(&c.x, &c.w, &c.b, &r)
                })
            })
            .collect();
        let what = format!("finite differences {act:?}");
        assert_close(&format!("{what} dX"), &dx, &fx, 1e-6, 1e-5);
        assert_close(&format!("{what} dW"), &dw, &fw, 1e-6, 1e-5);
        assert_close(&format!("{what} db"), &db, &fb, 1e-6, 1e-5);
        assert_close(&format!("{what} dR"), &coef, &fr, 1e-6, 1e-5);
    }
}

//! Timing of the flow passes (ignored by default: `cargo test --release --test flow_bench -- --ignored --nocapture`).

mod common;
mod flow_common;
use common::*;
use flow_common::*;
use gkl_gpu::kernels::layout::pad4;
use gkl_gpu::kernels::Activation;
use gkl_gpu::models::flow::{FlowKind, FlowSamplePlan, FlowTrainPlan};
use gkl_gpu::runtime::Dispatch;
use std::time::Instant;

fn cpu_s() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn time_steps(kind: FlowKind, rows: usize, act: Activation) {
    let ctx = ctx();
    let cfg = config(kind, 2, 2, 5, 50, 2, act);
    let s = setup(&cfg, 1, 1.0);
    let mut g = rng(5);
    let ct = ctx.tensor_from("c", &vec![0.3f32; rows * pad4(2)]).unwrap();
    let dct = ctx.tensor_zeros("dc", rows * pad4(2)).unwrap();
    let t0 = Instant::now();
    let plan = FlowTrainPlan::new(ctx, &s.flow, rows, &ct, &dct).unwrap();
    let build = t0.elapsed().as_secs_f64();
    let th: Vec<f32> = data(&mut g, rows * 4, 1.5)
        .iter()
        .map(|&v| v as f32)
        .collect();
    ctx.write(&plan.theta, 0, &th).unwrap();
    let all: Vec<&Dispatch> = plan.step_dispatches();
    ctx.run(&all).unwrap();
    ctx.wait().unwrap();
    // Minimum over bursts: the machine is shared, the minimum is what the code costs.
    let time = |ds: &[&Dispatch], reps: usize| {
        let mut best = f64::MAX;
        for _ in 0..7 {
            let t = Instant::now();
            for _ in 0..reps {
                ctx.run(ds).unwrap();
            }
            ctx.wait().unwrap();
            best = best.min(t.elapsed().as_secs_f64() / reps as f64 * 1e3);
        }
        best
    };
    // CPU time of the whole process (all lavapipe threads) per call: insensitive to other load.
    let cpu_time = |ds: &[&Dispatch], reps: usize| {
        let c0 = cpu_s();
        for _ in 0..reps {
            ctx.run(ds).unwrap();
        }
        ctx.wait().unwrap();
        (cpu_s() - c0) / reps as f64 * 1e3
    };
    let reps = if rows > 1000 { 2 } else { 10 };
    let step = time(&all, reps);
    let step_cpu = cpu_time(&all, reps * 5);
    let f_cpu = cpu_time(&[&plan.forward[0]], reps * 5);
    let b_cpu = cpu_time(&[&plan.backward[0]], reps * 5);
    let f = time(&[&plan.forward[0]], reps);
    let b = time(&[&plan.backward[0]], reps);
    let w: Vec<&Dispatch> = plan.backward[1..].iter().collect();
    let wg = time(&w, reps);
    let wg_cpu = cpu_time(&w, reps * 5);
    eprintln!(
        "  cpu ms/step {step_cpu:.2} (fwd {f_cpu:.2}, bwd-rows {b_cpu:.2}, wgrad {wg_cpu:.2})"
    );
    let t1 = Instant::now();
    let mut sp = FlowSamplePlan::new(ctx, &s.flow, rows, &ct).unwrap();
    let sbuild = t1.elapsed().as_secs_f64();
    let d = sp.dispatches(ctx, 1, 0)[0].clone();
    ctx.run(&[&d]).unwrap();
    ctx.wait().unwrap();
    let smp = time(&[&d], reps);
    let flops = 6.0 * cfg.macs_per_row() * rows as f64;
    eprintln!(
        "{kind:?} {act:?} rows {rows}: step {step:.2} ms (fwd {f:.2}, bwd-rows {b:.2}, wgrad {wg:.2} [{} launches]) ≈ {:.2} GFLOP/s; sample {smp:.2} ms; build {build:.2}s + sample build {sbuild:.2}s",
        plan.backward.len() - 1,
        flops / step / 1e6
    );
}

#[test]
#[ignore]
fn flow_step_timings() {
    let act = match std::env::var("ACT").as_deref() {
        Ok("relu") => Activation::Relu,
        _ => Activation::Tanh,
    };
    let kinds: Vec<FlowKind> = match std::env::var("KIND").as_deref() {
        Ok("maf") => vec![FlowKind::Maf],
        Ok("nsf") => vec![FlowKind::Nsf],
        _ => vec![FlowKind::Maf, FlowKind::Nsf],
    };
    let rows: Vec<usize> = std::env::var("ROWS")
        .map(|v| v.split(',').map(|x| x.parse().unwrap()).collect())
        .unwrap_or(vec![200, 4096]);
    for &kind in &kinds {
        for &r in &rows {
            time_steps(kind, r, act);
        }
    }
}

#[test]
#[ignore]
fn flow_compile_times() {
    let ctx = ctx();
    let shapes: Vec<(usize, usize, usize, usize, usize)> = match std::env::var("SHAPES") {
        Ok(v) => v
            .split(';')
            .map(|t| {
                let n: Vec<usize> = t.split(',').map(|x| x.parse().unwrap()).collect();
                (n[0], n[1], n[2], n[3], n[4])
            })
            .collect(),
        Err(_) => vec![(2, 2, 5, 50, 2)],
    };
    for kind in [FlowKind::Maf, FlowKind::Nsf] {
        for &(d, e, t, h, l) in &shapes {
            let cfg = config(kind, d, e, t, h, l, Activation::Tanh);
            eprintln!("{d},{e},{t},{h},{l}:");
            let s = setup(&cfg, 1, 1.0);
            let rows = 64;
            let ct = ctx.tensor_from("c", &vec![0.3f32; rows * 4]).unwrap();
            let dct = ctx.tensor_zeros("dc", rows * 4).unwrap();
            let plan = FlowTrainPlan::new(ctx, &s.flow, rows, &ct, &dct).unwrap();
            for d in plan.forward.iter().chain(&plan.backward) {
                let t = Instant::now();
                ctx.run(&[d]).unwrap();
                ctx.wait().unwrap();
                eprintln!(
                    "{kind:?} {}: first run {:.2}s",
                    d.label,
                    t.elapsed().as_secs_f64()
                );
            }
            let mut sp = FlowSamplePlan::new(ctx, &s.flow, rows, &ct).unwrap();
            let d = sp.dispatches(ctx, 1, 0)[0].clone();
            let t = Instant::now();
            ctx.run(&[&d]).unwrap();
            ctx.wait().unwrap();
            eprintln!(
                "{kind:?} sample: first run {:.2}s",
                t.elapsed().as_secs_f64()
            );
        }
    }
}

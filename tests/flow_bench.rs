//! Timings of the flow passes; ignored by default:
//!   cargo test --release --test flow_bench -- --ignored --nocapture
//! Environment: KIND=maf|nsf, ROWS=200,4096, LAYERS=2 (hidden layers; sbi's MADE has 3),
//! ACT=tanh|relu; for compile times SHAPES="d,e,T,H,L;..." (cold: MESA_SHADER_CACHE_DISABLE=true).
//!
//! Wall times are the minimum over bursts; "cpu" is the process's CPU time per call (all lavapipe
//! threads together), which other load on a shared machine disturbs much less. On an idle 2-core
//! machine the wall time of a large batch approaches half the CPU time.

mod common;
mod flow_common;
use common::*;
use flow_common::*;
use gkl_gpu::kernels::layout::pad4;
use gkl_gpu::kernels::Activation;
use gkl_gpu::models::flow::{FlowKind, FlowSamplePlan, FlowTrainPlan};
use gkl_gpu::runtime::{Dispatch, GpuContext};
use std::time::Instant;

fn cpu_s() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// (min wall ms, cpu ms) per submission of `ds`.
fn measure(ctx: &GpuContext, ds: &[&Dispatch], reps: usize) -> (f64, f64) {
    let mut best = f64::MAX;
    let c0 = cpu_s();
    for _ in 0..7 {
        let t = Instant::now();
        for _ in 0..reps {
            ctx.run(ds).unwrap();
        }
        ctx.wait().unwrap();
        best = best.min(t.elapsed().as_secs_f64() / reps as f64 * 1e3);
    }
    (best, (cpu_s() - c0) / (7 * reps) as f64 * 1e3)
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or(default.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .collect()
}

#[test]
#[ignore]
fn flow_step_timings() {
    let ctx = ctx();
    let act = match std::env::var("ACT").as_deref() {
        Ok("relu") => Activation::Relu,
        _ => Activation::Tanh,
    };
    let layers: usize = std::env::var("LAYERS").map_or(2, |v| v.parse().unwrap());
    for kind in env_list("KIND", "maf,nsf") {
        let kind = if kind == "maf" {
            FlowKind::Maf
        } else {
            FlowKind::Nsf
        };
        for rows in env_list("ROWS", "200,4096") {
            let rows: usize = rows.parse().unwrap();
            let cfg = config(kind, 2, 2, 5, 50, layers, act);
            let s = setup(&cfg, 1, 1.0);
            let ct = ctx.tensor_from("c", &vec![0.3f32; rows * pad4(2)]).unwrap();
            let dct = ctx.tensor_zeros("dc", rows * pad4(2)).unwrap();
            let plan = FlowTrainPlan::new(ctx, &s.flow, rows, &ct, &dct).unwrap();
            let th: Vec<f32> = data(&mut rng(5), rows * 4, 1.5)
                .iter()
                .map(|&v| v as f32)
                .collect();
            ctx.write(&plan.theta, 0, &th).unwrap();
            let all = plan.step_dispatches();
            ctx.run(&all).unwrap();
            ctx.wait().unwrap();
            let reps = if rows > 1000 { 2 } else { 10 };
            let (step, step_cpu) = measure(ctx, &all, reps);
            let (f, f_cpu) = measure(ctx, &[&plan.forward[0]], reps);
            let (b, b_cpu) = measure(ctx, &[&plan.backward[0]], reps);
            let w: Vec<&Dispatch> = plan.backward[1..].iter().collect();
            let (wg, wg_cpu) = measure(ctx, &w, reps);
            let mut sp = FlowSamplePlan::new(ctx, &s.flow, rows, &ct).unwrap();
            let d = sp.dispatches(ctx, 1, 0)[0].clone();
            ctx.run(&[&d]).unwrap();
            ctx.wait().unwrap();
            let (smp, smp_cpu) = measure(ctx, &[&d], reps);
            let flops = 6.0 * cfg.macs_per_row() * rows as f64;
            eprintln!(
                "{kind:?} L={layers} {act:?} batch {rows:>5}: fwd+bwd step {step:7.2} ms wall / {step_cpu:7.2} ms cpu \
                 [fwd {f:.2}/{f_cpu:.2}, bwd-rows {b:.2}/{b_cpu:.2}, wgrad {wg:.2}/{wg_cpu:.2} ({} launch)] \
                 {:.1} GFLOP/cpu-s; sample {smp:.2}/{smp_cpu:.2} ms",
                plan.backward.len() - 1,
                flops / step_cpu / 1e6
            );
        }
    }
}

#[test]
#[ignore]
fn flow_compile_times() {
    let ctx = ctx();
    for shape in std::env::var("SHAPES")
        .unwrap_or("2,2,5,50,2".into())
        .split(';')
    {
        let n: Vec<usize> = shape.split(',').map(|x| x.parse().unwrap()).collect();
        for kind in [FlowKind::Maf, FlowKind::Nsf] {
            let cfg = config(kind, n[0], n[1], n[2], n[3], n[4], Activation::Tanh);
            let s = setup(&cfg, 1, 1.0);
            let rows = 64;
            let e4 = pad4(cfg.context_dim);
            let ct = ctx.tensor_from("c", &vec![0.3f32; rows * e4]).unwrap();
            let dct = ctx.tensor_zeros("dc", rows * e4).unwrap();
            let plan = FlowTrainPlan::new(ctx, &s.flow, rows, &ct, &dct).unwrap();
            let mut sp = FlowSamplePlan::new(ctx, &s.flow, rows, &ct).unwrap();
            let sd = sp.dispatches(ctx, 1, 0)[0].clone();
            let mut line = format!("{kind:?} {shape}: first launch (compile)");
            for d in plan.forward.iter().chain(&plan.backward).chain([&sd]) {
                let t = Instant::now();
                ctx.run(&[d]).unwrap();
                ctx.wait().unwrap();
                line += &format!(" {} {:.2}s", d.label, t.elapsed().as_secs_f64());
            }
            eprintln!("{line}");
        }
    }
}

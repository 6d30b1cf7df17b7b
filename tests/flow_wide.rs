//! Flows wider than the narrow build of the per-row kernels (dim 33 … 128, context up to 128):
//! the wide build of `flow_rows` (`shaders/lib/flow_limits_wide.wgsl`) against the f64 reference
//! for log q, every parameter and context gradient, sampling (from given z and from the Philox
//! stream) and the gradient through the samples, MAF and NSF at d = 64 and 128; and which build
//! the pipeline cache picks. Small hidden widths and few rows keep CPU adapters quick.

mod common;
mod flow_common;
use flow_common::*;
use gkl_gpu::kernels::Activation;
use gkl_gpu::models::flow::FlowKind::{Maf, Nsf};
use gkl_gpu::models::flow::{FlowConfig, FlowKind, MAX_DIM, NARROW_DIM};
use gkl_gpu::runtime::SHADERS;
use std::time::Instant;

fn cfg(
    kind: FlowKind,
    d: usize,
    e: usize,
    hidden: usize,
    layers: usize,
    act: Activation,
) -> FlowConfig {
    let mut c = config(kind, d, e, 2, hidden, layers, act);
    if kind == Nsf {
        c.bins = 6;
        c.tail_bound = 2.5;
    }
    c
}

/// Every GPU pass of one wide flow against the reference (the first call compiles its pipelines).
fn check_all(c: &FlowConfig, seed: u64) {
    let what = format!(
        "{:?} d={} e={} hidden={}",
        c.kind, c.dim, c.context_dim, c.hidden
    );
    let t = Instant::now();
    // log q, z, gradients of every parameter (masked and padding exactly zero) and of the context.
    check_gpu_against_cpu(c, seed, 9, 1.0, 1.5, false, None);
    eprintln!(
        "{what}: forward + backward (with pipeline builds) {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    // Sampling from given z, and forward(sample) = z.
    check_roundtrip(c, seed + 1, 6, 1.0, 1.5);
    // Sampling from the Philox stream with a shared context row; log q of the samples.
    check_philox_sampling(c, seed + 2, 5);
    eprintln!("{what}: sampling {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    // The gradient through the samples (2 draws per context row, accumulated onto a gradient).
    check_inverse_grad_gpu(c, seed + 3, 1.0, 3, 2, 1.5, true);
    eprintln!(
        "{what}: inverse gradient {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

#[test]
fn maf_wide_gpu_matches_cpu() {
    check_all(&cfg(Maf, 64, 64, 28, 2, Activation::Tanh), 100);
    // Context of 128 (x of a 128-d task without an embedding); GELU keeps pre-activations.
    check_all(&cfg(Maf, 128, 128, 28, 1, Activation::Gelu), 110);
}

#[test]
fn nsf_wide_gpu_matches_cpu() {
    check_all(&cfg(Nsf, 64, 64, 28, 2, Activation::Tanh), 200);
    check_all(&cfg(Nsf, 128, 128, 28, 1, Activation::Relu), 210);
}

#[test]
fn config_limits() {
    assert_eq!(MAX_DIM, 128);
    for kind in [Maf, Nsf] {
        let mut c = FlowConfig::new(kind, MAX_DIM, 128);
        assert!(c.validate().is_ok());
        c.dim = MAX_DIM + 1;
        let e = c.validate().unwrap_err();
        assert!(e.contains("outside 1..=128"), "{e}");
        c.dim = 2;
        c.context_dim = 129;
        assert!(c.validate().is_err());
    }
}

/// The integer value of `const NAME: u32 = Nu;` in a WGSL source.
fn wgsl_const(src: &str, name: &str) -> u32 {
    let pat = format!("const {name}: u32 = ");
    let at = src.find(&pat).unwrap_or_else(|| panic!("no const {name}")) + pat.len();
    src[at..].split('u').next().unwrap().parse().unwrap()
}

#[test]
fn the_pipeline_cache_picks_the_wide_build_exactly_past_the_narrow_limits() {
    let def = SHADERS.iter().find(|d| d.name == "flow_rows").unwrap();
    let wide = def.wide.as_ref().expect("flow_rows has a wide build");
    assert_eq!(wide.narrow_limits, &[("D", NARROW_DIM as f64)]);
    // The capacities the two builds declare agree with the Rust-side limits.
    let narrow_src = def.source_for(false, false);
    let wide_src = def.source_for(true, false);
    assert_eq!(wgsl_const(narrow_src, "MAXD") as usize, NARROW_DIM);
    assert_eq!(wgsl_const(wide_src, "MAXD") as usize, MAX_DIM);
    for src in [narrow_src, wide_src] {
        let maxd = wgsl_const(src, "MAXD");
        assert_eq!(wgsl_const(src, "MAXD4"), maxd / 4);
        // MAF's output blocks (2 columns per dim) and NSF's per dim (bins ≤ 32: 3·32 − 1 → 24).
        assert!(wgsl_const(src, "MAXO4") >= (maxd / 2).max(24));
        // Context and hidden width 128.
        assert_eq!(wgsl_const(src, "MAXE4"), 32);
        assert_eq!(wgsl_const(src, "MAXH4"), 32);
    }
    assert!(def.source_for(true, true).contains("subgroupBroadcast"));
    assert!(def
        .source_for(false, true)
        .contains("const MAXD: u32 = 32u;"));
    // The choice, from the flows' own override constants.
    for d in [1, 2, 31, 32, 33, 64, 128] {
        for kind in [Maf, Nsf] {
            let c = FlowConfig::new(kind, d, 128);
            let consts = c.constants();
            assert_eq!(def.needs_wide(&consts), d > NARROW_DIM, "{kind:?} d={d}");
        }
    }
    // Kernel files without a wide build never switch.
    let wgrad = SHADERS.iter().find(|d| d.name == "flow_wgrad").unwrap();
    assert!(!wgrad.needs_wide(&[("D", 128.0)]));
}

//! MAF: GPU against the f64 reference (log q, gradients of every parameter and of the context,
//! sampling), the reference against finite differences, invertibility, normalisation, the
//! autoregressive structure, and a short training run that must lower the loss.

mod common;
mod flow_common;
use common::*;
use flow_common::*;
use gkl_gpu::kernels::Activation;
use gkl_gpu::models::flow::cpu::{self, FlowWeights};
use gkl_gpu::models::flow::FlowKind::Maf;

/// The configurations the GPU tests share (pipelines are compiled once per test binary).
fn two_moons_like() -> gkl_gpu::models::flow::FlowConfig {
    config(Maf, 2, 2, 5, 50, 2, Activation::Tanh)
}

fn one_d() -> gkl_gpu::models::flow::FlowConfig {
    config(Maf, 1, 1, 2, 41, 1, Activation::Relu)
}

#[test]
fn maf_gpu_matches_cpu() {
    // Shapes not multiples of 4 or of the workgroup; 1 to 3 hidden layers; every activation
    // family (GELU keeps pre-activations on the tape); per-row weights; chunked weight gradients.
    check_gpu_against_cpu(&two_moons_like(), 10, 37, 1.0, 1.5, false, None);
    check_gpu_against_cpu(&one_d(), 11, 5, 1.0, 1.5, false, None);
    let cfg = config(Maf, 3, 5, 3, 45, 3, Activation::Gelu);
    check_gpu_against_cpu(&cfg, 12, 130, 1.0, 1.5, true, Some(3));
    let cfg = config(Maf, 5, 3, 2, 37, 2, Activation::Elu);
    check_gpu_against_cpu(&cfg, 13, 1, 1.0, 1.5, false, None);
    // nflows' MADE wiring (models saved before `context_every_dim` existed).
    let mut cfg = config(Maf, 3, 2, 3, 20, 2, Activation::Relu);
    cfg.context_every_dim = false;
    check_gpu_against_cpu(&cfg, 14, 29, 1.0, 1.5, false, None);
}

#[test]
fn maf_cpu_gradients_match_finite_differences() {
    for (i, act) in [Activation::Tanh, Activation::Silu].into_iter().enumerate() {
        let cfg = config(Maf, 3, 2, 2, 5, 2, act);
        check_fd(&cfg, 30 + i as u64, 1.0, 3, 1.5);
    }
    // Soft clamp active: large raw log-scales.
    let cfg = config(Maf, 2, 1, 2, 4, 1, Activation::Tanh);
    check_fd(&cfg, 33, 6.0, 2, 1.0);
}

#[test]
fn maf_inverse_roundtrip_cpu_and_gpu() {
    check_roundtrip(&two_moons_like(), 40, 29, 1.0, 1.5);
}

#[test]
fn maf_gpu_sampling_matches_cpu_inverse_of_philox_draws() {
    check_philox_sampling(&two_moons_like(), 50, 203);
}

#[test]
fn maf_density_integrates_to_one() {
    check_normalised(&one_d(), 60, 40.0, 40_000, 2e-3);
    check_normalised(&two_moons_like(), 61, 30.0, 600, 5e-3);
}

/// Output i of transform t's MADE depends on θ_j only if j comes before i in that transform's
/// order (natural for even t, reversed for odd t), and on every context entry.
#[test]
fn made_is_autoregressive_in_each_transforms_order() {
    for context_every_dim in [false, true] {
        let mut cfg = config(Maf, 4, 2, 2, 11, 2, Activation::Tanh);
        cfg.context_every_dim = context_every_dim;
        let mut g = rng(70);
        let w = FlowWeights::init(&cfg, &mut g);
        let x = data(&mut g, 4, 1.0);
        let c = data(&mut g, 2, 1.0);
        let p = cfg.params_per_dim();
        for t in 0..2 {
            let base = cpu::made_outputs(&cfg, &w, t, &x, &c);
            let pos = |i: usize| if t % 2 == 0 { i } else { 3 - i };
            for j in 0..4 {
                let mut x2 = x.clone();
                x2[j] += 0.5;
                let out = cpu::made_outputs(&cfg, &w, t, &x2, &c);
                for i in 0..4 {
                    let changed = (0..p).any(|q| (out[i * p + q] - base[i * p + q]).abs() > 1e-12);
                    assert_eq!(
                        changed,
                        pos(j) < pos(i),
                        "t{t}: output {i} vs input {j} (changed: {changed})"
                    );
                }
            }
            // nflows' wiring: the context reaches every output except the first in the order
            // (which sees no hidden unit). With context_every_dim it reaches all of them.
            let mut c2 = c.clone();
            c2[1] += 0.5;
            let out = cpu::made_outputs(&cfg, &w, t, &x, &c2);
            for i in 0..4 {
                let changed = (0..p).any(|q| (out[i * p + q] - base[i * p + q]).abs() > 1e-12);
                assert_eq!(
                    changed,
                    context_every_dim || pos(i) > 0,
                    "context_every_dim {context_every_dim}, t{t}: output {i} vs context"
                );
            }
        }
    }
}

#[test]
fn maf_training_lowers_the_loss() {
    train_two_d(&two_moons_like(), 300, 0.15);
}

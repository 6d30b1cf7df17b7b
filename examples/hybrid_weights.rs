//! Where a hybrid model's mass sits: draws N proposals from the base flow q(θ|x_o) on the GPU,
//! evaluates the ratio net f(θ, x_o) with the f64 reference, and prints the quantiles of f, the
//! Monte-Carlo Z = E_q[exp f], the share of it carried by the 100 largest exp f, and those draws.
//! A hybrid whose Z is carried by a handful of rare base draws has most of its mass where the base
//! has almost none: its rejection sampler needs M ≈ the largest exp f, so acceptance ≈ Z/M collapses.
//!
//!     cargo run --release --example hybrid_weights -- MODEL_DIR OBSERVATION [N]
use gkl_gpu::models::mlp::{cpu, MlpWeights};
use gkl_gpu::models::posterior::NpeModel;
use gkl_gpu::runtime::{AdapterOptions, GpuContext};
use gkl_gpu::sampling::npe::NpePosterior;
use gkl_gpu::training::Method;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() >= 3,
        "usage: hybrid_weights MODEL_DIR OBSERVATION [N]"
    );
    let model = NpeModel::load(std::path::Path::new(&args[1]))?;
    anyhow::ensure!(
        model.method == Method::Hybrid,
        "{} is not a hybrid model",
        args[1]
    );
    let obs: usize = args[2].parse()?;
    let n: usize = args.get(3).map_or(Ok(1_000_000), |s| s.parse())?;
    let task = gkl_tasks::task_by_name(model.task.as_deref().unwrap_or_default())?;
    let x = task.observation(obs)?.x;
    let (rc, off) = (model.ratio.clone().unwrap(), model.ratio_offset.unwrap());
    let (slots, _) = rc.arena_layout(model.arena_align);
    let w = MlpWeights::from_arena(&model.params[off..], &slots);
    let pre = model.preprocess.clone();
    let ctx = GpuContext::new(&AdapterOptions::default())?;
    let (s, _) =
        NpePosterior::new(&ctx, model.base_flow())?.sample(std::slice::from_ref(&x), n, 7)?;
    let (theta, d) = (&s[0], model.dim_theta);
    let rows = theta.len() / d;
    let f = cpu::forward(&rc, &w, &pre.ratio_rows(theta, &x), rows).y;
    let mut idx: Vec<usize> = (0..rows).collect();
    idx.sort_by(|&a, &b| f[b].total_cmp(&f[a]));
    let q = |p: f64| f[idx[((1.0 - p) * (rows - 1) as f64) as usize]];
    let z = f.iter().map(|v| v.exp()).sum::<f64>() / rows as f64;
    let top = idx.iter().take(100).map(|&i| f[i].exp()).sum::<f64>() / rows as f64;
    println!("{rows} base draws (inside and outside the support) for observation {obs}");
    println!(
        "f quantiles: 50% {:.3}  99% {:.3}  99.99% {:.3}  max {:.3}",
        q(0.5),
        q(0.99),
        q(0.9999),
        f[idx[0]]
    );
    println!(
        "Z = E_q[exp f] = {z:.4}; the 100 largest exp f carry {:.1}% of it",
        100.0 * top / z
    );
    for &i in idx.iter().take(5) {
        println!("  f {:.3} at θ {:?}", f[i], &theta[i * d..(i + 1) * d]);
    }
    Ok(())
}

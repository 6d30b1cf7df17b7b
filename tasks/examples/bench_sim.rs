//! Simulator throughput: sims/s for every task (prior draws, n per task).
//! Usage: cargo run -p gkl-tasks --release --example bench_sim -- [N]
//! Prints wall-clock sims/s and, on Linux, sims per CPU-second (robust on a busy machine).
use std::time::Instant;

/// User + system CPU seconds of this process (Linux /proc), if available.
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(100_000);
    println!("threads: {}", rayon::current_num_threads());
    for name in gkl_tasks::TASK_NAMES {
        let task = gkl_tasks::task_by_name(name).unwrap();
        let theta = task.sample_prior(n, 1);
        let _ = task.simulate(&theta[..task.dim_theta() * 1000.min(n)], 0); // warm-up
        let c0 = cpu_seconds();
        let t = Instant::now();
        let x = task.simulate(&theta, 2);
        let s = t.elapsed().as_secs_f64();
        let cpu = c0.and_then(|c0| cpu_seconds().map(|c1| c1 - c0));
        let bad = x.iter().filter(|v| !v.is_finite()).count();
        let per_cpu = cpu
            .map(|c| format!("{:>12.0} sims per CPU-s", n as f64 / c.max(0.01)))
            .unwrap_or_default();
        println!("{name:>24}: {n} sims in {s:.3} s = {:>12.0} sims/s wall, {per_cpu} (non-finite: {bad})", n as f64 / s);
    }
}

//! Writes reference-posterior samples of a task/observation to .npy and reports the time.
//! Usage: cargo run -p gkl-tasks --release --example reference -- TASK OBS N SEED OUT.npy
use std::time::Instant;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 6 {
        eprintln!("usage: reference TASK OBS N SEED OUT.npy");
        std::process::exit(2);
    }
    let task = gkl_tasks::task_by_name(&a[1]).unwrap_or_else(|e| panic!("{e}"));
    let k: usize = a[2].parse().unwrap();
    let n: usize = a[3].parse().unwrap();
    let seed: u64 = a[4].parse().unwrap();
    let obs = task.observation(k).unwrap();
    let t = Instant::now();
    let s = task.reference_posterior(&obs.x, n, seed).unwrap();
    let secs = t.elapsed().as_secs_f64();
    gkl_tasks::npy::write_npy_f64(std::path::Path::new(&a[5]), &s, n, task.dim_theta()).unwrap();
    println!("{} obs {} n {} seconds {:.2}", task.name(), k, n, secs);
}

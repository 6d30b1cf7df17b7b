//! An external simulator written in Rust, speaking gkl-gpu's `--simulator-cmd` framing: each
//! message is a u64 little-endian byte count and a complete `.npy`; θ (batch × dθ, float64)
//! arrives on stdin, x goes back on stdout, until stdin closes.
//!
//! The model: a noisy two-parameter oscillator observed at 5 times,
//! x_t = θ₀ · sin(θ₁ · t) + 0.1 ε_t, t = 1..5, with ε from its own generator seeded by
//! `GKL_GPU_SEED`.
//!
//! ```text
//! cargo build --release --example rust_simulator
//! echo '{"type": "box_uniform", "low": [0.5, 0.1], "high": [2, 1.5]}' > prior.json
//! gkl-gpu train --simulator-cmd target/release/examples/rust_simulator --prior prior.json \
//!     --simulations 5000 --out runs/osc
//! ```

use gkl_gpu::io::{npy_bytes_f64, read_npy_from};
use rand::{Rng, SeedableRng};
use std::io::{Read, Write};

fn main() {
    if let Err(e) = serve() {
        eprintln!("rust_simulator: {e}");
        std::process::exit(1);
    }
}

fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let seed: u64 = std::env::var("GKL_GPU_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut stdin, mut stdout) = (std::io::stdin().lock(), std::io::stdout().lock());
    loop {
        let mut len = [0u8; 8];
        match stdin.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()), // stdin closed
            Err(e) => return Err(e.into()),
        }
        let n = u64::from_le_bytes(len);
        let theta = read_npy_from(&mut (&mut stdin).take(n), "stdin")?;
        let [rows, d] = theta.shape[..] else {
            return Err(format!("θ must be 2-D, got {:?}", theta.shape).into());
        };
        if d != 2 {
            return Err(format!("θ must have 2 columns, got {d}").into());
        }
        let mut x = Vec::with_capacity(rows * 5);
        for r in theta.data.chunks_exact(2) {
            for t in 1..=5 {
                let eps: f64 = rng.sample(rand_distr::StandardNormal);
                x.push(r[0] * (r[1] * t as f64).sin() + 0.1 * eps);
            }
        }
        let body = npy_bytes_f64(&[rows, 5], &x)?;
        stdout.write_all(&(body.len() as u64).to_le_bytes())?;
        stdout.write_all(&body)?;
        stdout.flush()?;
    }
}

//! `cargo bench --bench kernels`: the same measurement as `gkl-gpu bench kernels`, on the
//! default adapter (honours WGPU_BACKEND / WGPU_ADAPTER_NAME).

use gkl_gpu::bench::kernels;
use gkl_gpu::runtime::{AdapterOptions, GpuContext};

fn main() {
    let opts = AdapterOptions::default()
        .with_env()
        .expect("bad WGPU_* environment");
    let ctx = GpuContext::new(&opts).unwrap_or_else(|e| panic!("{e}"));
    let report = kernels::run(&ctx, &[256, 1024, 4096], &[64, 128], 1.0, |m| {
        eprintln!("timing {m}")
    })
    .expect("benchmark failed");
    print!("{}", report.table());
}

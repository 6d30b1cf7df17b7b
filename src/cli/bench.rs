use super::GpuArgs; use anyhow::Result; use clap::Args;
#[derive(Args)] pub struct BenchArgs {}
pub fn run(_g: &GpuArgs, _a: BenchArgs) -> Result<()> { Ok(()) }

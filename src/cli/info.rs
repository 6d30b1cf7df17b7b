//! `gkl-gpu info`: every adapter, and the chosen one's limits and features.

use super::GpuArgs;
use anyhow::Result;
use clap::Args;
use gkl_gpu::runtime::{list_adapters, AdapterOptions, AdapterSummary, GpuContext};
use serde_json::json;

#[derive(Args)]
pub struct InfoArgs {
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

pub fn run(gpu: &GpuArgs, args: InfoArgs) -> Result<()> {
    let opts = gpu.options()?;
    // List everything the build can see, whatever the filter, so a user can pick.
    let all: Vec<AdapterSummary> = list_adapters(&AdapterOptions {
        backend: opts.backend,
        ..Default::default()
    })
    .iter()
    .map(|a| AdapterSummary::from_info(&a.get_info()))
    .collect();
    let chosen = GpuContext::new(&opts);
    if args.json {
        let chosen_json = match &chosen {
            Ok(ctx) => json!({
                "adapter": ctx.summary(),
                "software": ctx.is_software(),
                "limits": limits_json(&ctx.limits),
                "features": features_list(ctx.features),
            }),
            Err(e) => json!({ "error": e.to_string() }),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "adapters": all, "chosen": chosen_json }))?
        );
    } else {
        println!("adapters found ({}):", all.len());
        for a in &all {
            println!("  - {}", a.one_line());
        }
        match &chosen {
            Ok(ctx) => {
                println!("chosen: {}", ctx.summary().one_line());
                println!("limits:");
                for (k, v) in limits_json(&ctx.limits).as_object().into_iter().flatten() {
                    println!("  {k}: {v}");
                }
                println!("features: {}", features_list(ctx.features).join(", "));
            }
            Err(e) => println!("chosen: none ({e})"),
        }
    }
    chosen.map(|_| ()).map_err(Into::into)
}

fn limits_json(l: &wgpu::Limits) -> serde_json::Value {
    json!({
        "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
        "max_buffer_size": l.max_buffer_size,
        "max_storage_buffers_per_shader_stage": l.max_storage_buffers_per_shader_stage,
        "max_uniform_buffer_binding_size": l.max_uniform_buffer_binding_size,
        "max_compute_workgroup_storage_size": l.max_compute_workgroup_storage_size,
        "max_compute_invocations_per_workgroup": l.max_compute_invocations_per_workgroup,
        "max_compute_workgroup_size_x": l.max_compute_workgroup_size_x,
        "max_compute_workgroup_size_y": l.max_compute_workgroup_size_y,
        "max_compute_workgroup_size_z": l.max_compute_workgroup_size_z,
        "max_compute_workgroups_per_dimension": l.max_compute_workgroups_per_dimension,
        "max_bind_groups": l.max_bind_groups,
        "max_bindings_per_bind_group": l.max_bindings_per_bind_group,
    })
}

fn features_list(f: wgpu::Features) -> Vec<String> {
    f.iter_names().map(|(name, _)| name.to_string()).collect()
}

//! Every shader parses and validates with naga; no GPU needed.

use gkl_gpu::runtime::{ShaderDef, SHADERS};
use std::collections::BTreeSet;
use std::path::Path;

fn validate(name: &str, src: &str) -> Result<naga::valid::ModuleInfo, String> {
    let module = naga::front::wgsl::parse_str(src)
        .map_err(|e| format!("{name}: {}", e.emit_to_string(src)))?;
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map_err(|e| format!("{name}: {}", e.emit_to_string(src)))
}

/// Every source of every registered shader: its own, its subgroup variant where it has one, and
/// both again for its wide build where it has one.
fn sources() -> impl Iterator<Item = (String, &'static ShaderDef, &'static str)> {
    SHADERS.iter().flat_map(|def| {
        let wide = def.wide.as_ref();
        [
            Some((def.name.to_string(), def.source)),
            def.subgroup_source
                .map(|src| (format!("{} (subgroup)", def.name), src)),
            wide.map(|w| (format!("{} (wide)", def.name), w.source)),
            wide.and_then(|w| w.subgroup_source)
                .map(|src| (format!("{} (wide, subgroup)", def.name), src)),
        ]
        .into_iter()
        .flatten()
        .map(move |(name, src)| (name, def, src))
    })
}

#[test]
fn every_registered_shader_validates() {
    assert!(sources().any(|(name, _, _)| name.ends_with("(subgroup)")));
    assert!(sources().any(|(name, _, _)| name.ends_with("(wide, subgroup)")));
    for (name, _, src) in sources() {
        if let Err(e) = validate(&name, src) {
            panic!("{e}");
        }
    }
}

#[test]
fn every_file_under_shaders_is_registered_and_library_files_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut on_disk = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "wgsl") {
            on_disk.insert(p.file_stem().unwrap().to_string_lossy().to_string());
        }
    }
    let registered: BTreeSet<String> = SHADERS.iter().map(|d| d.name.to_string()).collect();
    assert_eq!(
        on_disk, registered,
        "shaders/*.wgsl and runtime::pipeline::SHADERS disagree"
    );
    for entry in std::fs::read_dir(dir.join("lib")).unwrap() {
        let p = entry.unwrap().path();
        let src = std::fs::read_to_string(&p).unwrap();
        validate(&p.display().to_string(), &src).unwrap();
    }
}

#[test]
fn binding_count_matches_the_declared_layout() {
    // The explicit bind group layout must cover every binding a shader declares.
    for (name, def, src) in sources() {
        let module = naga::front::wgsl::parse_str(src).unwrap();
        let mut bindings: Vec<u32> = module
            .global_variables
            .iter()
            .filter_map(|(_, v)| v.binding.as_ref().map(|b| b.binding))
            .collect();
        bindings.sort();
        let expect: Vec<u32> = (0..def.slots.len() as u32).collect();
        assert_eq!(
            bindings, expect,
            "shader {name}: bindings vs declared slots"
        );
    }
}

#[test]
fn a_broken_shader_is_rejected() {
    // The validator is really looking: a type error must be caught.
    let bad = "@compute @workgroup_size(1) fn main() { let x: f32 = 1u; }";
    assert!(validate("bad", bad).is_err());
}

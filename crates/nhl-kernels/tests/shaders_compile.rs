//! Every shader in the registry is parsed by naga's WGSL front end, validated, specialised with
//! every override value the backend uses, and translated to SPIR-V (Vulkan), MSL (Metal) and
//! HLSL (DX12). Needs no GPU; a shader that stops compiling for any of the three fails here.

use anyhow::{anyhow, Context, Result};
use naga::back::PipelineConstants;
use naga::valid::{Capabilities, ValidationFlags, Validator};
use naga::ShaderStage;
use nhl_kernels::shaders::Shader;

/// Every assignment of the shader's overrides: the product of their value sets.
fn specialisations(shader: Shader) -> Vec<PipelineConstants> {
    let mut out = vec![PipelineConstants::default()];
    for &(name, values) in shader.overrides() {
        out = out
            .into_iter()
            .flat_map(|base| {
                values.iter().map(move |&v| {
                    let mut c = base.clone();
                    c.insert(name.to_string(), v);
                    c
                })
            })
            .collect();
    }
    out
}

fn translate(
    shader: Shader,
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
) -> Result<usize> {
    let mut checked = 0;
    for constants in specialisations(shader) {
        for ep in &module.entry_points {
            let what = format!("{} `{}` with {constants:?}", shader.file_name(), ep.name);
            assert_eq!(
                ep.stage,
                ShaderStage::Compute,
                "{what}: only compute entry points"
            );
            let (module, info) = naga::back::pipeline_constants::process_overrides(
                module,
                info,
                Some((ep.stage, &ep.name)),
                &constants,
            )
            .map_err(|e| anyhow!("{what}: overrides: {e}"))?;

            naga::back::spv::write_vec(
                &module,
                &info,
                &naga::back::spv::Options::default(),
                Some(&naga::back::spv::PipelineOptions {
                    shader_stage: ep.stage,
                    entry_point: ep.name.clone(),
                }),
            )
            .map_err(|e| anyhow!("{what}: SPIR-V: {e}"))?;

            naga::back::msl::write_string(
                &module,
                &info,
                &naga::back::msl::Options {
                    lang_version: (2, 0),
                    ..Default::default()
                },
                &naga::back::msl::PipelineOptions {
                    entry_point: Some((ep.stage, ep.name.clone())),
                    ..Default::default()
                },
            )
            .map_err(|e| anyhow!("{what}: MSL: {e}"))?;

            let mut hlsl = String::new();
            let options = naga::back::hlsl::Options::default();
            let pipeline = naga::back::hlsl::PipelineOptions {
                entry_point: Some((ep.stage, ep.name.clone())),
            };
            naga::back::hlsl::Writer::new(&mut hlsl, &options, &pipeline)
                .write(&module, &info, None)
                .map_err(|e| anyhow!("{what}: HLSL: {e}"))?;
            checked += 1;
        }
    }
    Ok(checked)
}

#[test]
fn every_shader_validates_and_translates_to_spirv_msl_and_hlsl() -> Result<()> {
    for shader in Shader::all() {
        let module = naga::front::wgsl::parse_str(shader.source())
            .map_err(|e| anyhow!("{}", e.emit_to_string(shader.source())))
            .with_context(|| format!("parsing {}", shader.file_name()))?;
        let info = Validator::new(ValidationFlags::all(), Capabilities::default())
            .validate(&module)
            .map_err(|e| anyhow!("{}", e.emit_to_string(shader.source())))
            .with_context(|| format!("validating {}", shader.file_name()))?;
        assert!(
            !module.entry_points.is_empty(),
            "{} has no entry point",
            shader.file_name()
        );
        for &(name, _) in shader.overrides() {
            assert!(
                module
                    .overrides
                    .iter()
                    .any(|(_, o)| o.name.as_deref() == Some(name)),
                "{}: the registry lists override {name}, the shader has none",
                shader.file_name()
            );
        }
        let checked = translate(shader, &module, &info)?;
        println!(
            "{}: {checked} specialisations translated",
            shader.file_name()
        );
    }
    Ok(())
}

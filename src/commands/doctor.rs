//! `vggcache doctor`: what runtime, providers, CUDA libraries and model this machine would use.

use std::path::PathBuf;

use crate::trunk::{self, Device, Trunk, TrunkOptions};

/// Options of `doctor`.
#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    /// ONNX Runtime shared library (default: ORT_DYLIB_PATH, then the project .venv).
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
    /// Trunk model to inspect (default: models/vgg16_trunk.onnx under the project).
    #[arg(long)]
    pub model: Option<PathBuf>,
}

/// Prints the report on stdout; returns Err only when the runtime cannot be loaded at all.
pub fn run(args: &DoctorArgs) -> Result<(), super::CommandError> {
    println!("vggcache {}", env!("CARGO_PKG_VERSION"));
    println!("project root:     {}", show(crate::paths::project_root()));
    let rt = trunk::init_runtime(args.ort_lib.as_deref())?;
    println!(
        "ONNX Runtime:     {} (version {}, from {})",
        rt.path.display(),
        rt.version,
        rt.source.describe()
    );
    println!(
        "CPU int8 / bf16:  {}",
        trunk::CpuFeatures::detect().int8_summary()
    );
    let providers = trunk::available_providers()?;
    println!("providers:        {}", providers.join(", "));
    let has_cuda = providers.iter().any(|p| p == "CUDAExecutionProvider");
    println!(
        "CUDA provider:    {}",
        if has_cuda {
            "built in"
        } else {
            "not in this build (CPU wheel)"
        }
    );
    if has_cuda {
        println!("CUDA 13 / cuDNN 9 libraries:");
        for lib in trunk::cuda_library_report(false) {
            println!(
                "  {:<42} {}",
                lib.name,
                lib.resolved.as_deref().unwrap_or("NOT FOUND")
            );
        }
    }
    let model = args.model.clone().or_else(crate::paths::default_model);
    let Some(model) = model else {
        println!("model:            none (no project root; pass --model)");
        return Ok(());
    };
    let opts = TrunkOptions {
        ort_lib: args.ort_lib.clone(),
        device: Device::Auto,
        ..Default::default()
    };
    match Trunk::load(&model, &opts) {
        Ok(t) => {
            let i = t.info();
            println!("model:            {}", i.path.display());
            println!("  fingerprint:    {}", i.fingerprint);
            println!(
                "  input:          {} [N,3,{},{}]",
                i.input_name, i.input_hw.0, i.input_hw.1
            );
            println!("  output:         {} [N,{}]", i.output_name, i.dim);
            println!("  source:         {}", i.source);
            println!("  provenance:     {}", i.provenance);
            if let Some(q) = i.metadata.get("vggcache.quantization") {
                println!("  quantization:   {q}");
                if !trunk::CpuFeatures::detect().has_vnni() && q.contains("\"int8\"") {
                    println!("  note:           int8 trunk with 7-bit weights on a CPU without VNNI: correct features, less speed-up than with VNNI");
                }
            }
            println!(
                "  preprocess:     {}",
                serde_json::to_string(&i.preprocess).unwrap_or_default()
            );
            println!("  session runs on {}", t.provider().name());
            if let Some(why) = &t.fallback_reason {
                println!("  CUDA not used:  {why}");
            }
        }
        Err(e) => println!("model:            {} — {e}", model.display()),
    }
    Ok(())
}

fn show(p: Option<PathBuf>) -> String {
    p.map(|p| p.display().to_string())
        .unwrap_or_else(|| "not found".into())
}

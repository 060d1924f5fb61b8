//! `vggcache doctor`: what runtime, providers, CUDA libraries and model this machine would use.

use std::path::PathBuf;

use crate::store;
use crate::trunk::{self, Device, Trunk, TrunkOptions};

/// Options of `doctor`.
#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    /// ONNX Runtime shared library (default: ORT_DYLIB_PATH, then the onnxruntime package of the
    /// active Python environment, then of the python3 on PATH).
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
    /// Trunk model file to inspect (default: --trunk's model in the model store).
    #[arg(long, conflicts_with = "trunk")]
    pub model: Option<PathBuf>,
    /// Trunk to inspect, by name in the model store (default vgg16).
    #[arg(long)]
    pub trunk: Option<String>,
}

/// Prints the report on stdout; returns Err only when the runtime cannot be loaded at all (after
/// saying where the model would come from).
pub fn run(args: &DoctorArgs) -> Result<(), super::CommandError> {
    println!("vggcache {}", env!("CARGO_PKG_VERSION"));
    match store::home() {
        Ok(h) => println!("model store:      {} ({})", h.path.display(), h.from),
        Err(e) => println!("model store:      NONE: {e}"),
    }
    let trunk_name = args.trunk.as_deref().unwrap_or(store::DEFAULT_TRUNK);
    let model = store::model(args.model.as_deref(), trunk_name);
    let rt = match trunk::init_runtime(args.ort_lib.as_deref()) {
        Ok(rt) => rt,
        Err(e) => {
            println!("ONNX Runtime:     NOT FOUND: {e}");
            match &model {
                Ok(m) => println!("model:            {} (from {})", m.path.display(), m.source),
                Err(e) => println!("model:            NOT FOUND: {e}"),
            }
            return Err(e.into());
        }
    };
    println!(
        "ONNX Runtime:     {} (version {}, from {})",
        rt.path.display(),
        rt.version,
        rt.source
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
    let model = match model {
        Ok(m) => m,
        Err(e) => {
            println!("model:            NOT FOUND: {e}");
            return Ok(());
        }
    };
    let opts = TrunkOptions {
        ort_lib: args.ort_lib.clone(),
        device: Device::Auto,
        ..Default::default()
    };
    match Trunk::load(&model.path, &opts) {
        Ok(t) => {
            let i = t.info();
            println!(
                "model:            {} (from {})",
                i.path.display(),
                model.source
            );
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
        Err(e) => println!(
            "model:            {} (from {}): {e}",
            model.path.display(),
            model.source
        ),
    }
    Ok(())
}

//! Flag types several commands share: the trunk's flags and sizes with a suffix.

use std::path::PathBuf;

use super::CommandError;
use crate::trunk::{Device, TrunkOptions};

/// `SIZE` as bytes: a number with an optional `K`, `M`, `G` or `T` suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, shift) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        Some('T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("expected a size like 512M or 8G, got {s:?}"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("a size must be > 0, got {s:?}"));
    }
    Ok((v * (1u64 << shift) as f64) as u64)
}

/// `--device`: the CLI's names for [`Device`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    /// CUDA when it registers, else CPU (the fallback is reported).
    Auto,
    /// CUDA or an error, never a silent CPU run.
    Cuda,
    Cpu,
}

impl From<DeviceArg> for Device {
    fn from(d: DeviceArg) -> Self {
        match d {
            DeviceArg::Auto => Device::Auto,
            DeviceArg::Cuda => Device::Cuda,
            DeviceArg::Cpu => Device::Cpu,
        }
    }
}

/// Which trunk and where it runs: shared by every command that runs the trunk.
#[derive(Debug, Clone, clap::Args)]
pub struct TrunkArgs {
    /// Trunk ONNX model file (default: --trunk's model in the model store).
    #[arg(long, conflicts_with = "trunk")]
    pub model: Option<PathBuf>,
    /// Trunk by name, from the model store (VGGCACHE_HOME, default ~/.cache/vggcache): vgg16 (the
    /// default, ImageNet VGG16), vgg16-hed, efficientnet-lite0, vgg16-int8, or any name
    /// `vggcache models install` gave; `vggcache models list` shows them.
    #[arg(long)]
    pub trunk: Option<String>,
    /// Execution provider: auto (CUDA if it registers, else CPU), cuda (or fail), cpu.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// CPU inference threads (0 = ONNX Runtime's default, one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// ONNX Runtime shared library (default: ORT_DYLIB_PATH, then the onnxruntime package of the
    /// active Python environment, then of the python3 on PATH).
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
}

impl TrunkArgs {
    /// The model file these options name (the model store's lookup: `--model`, else `--trunk`).
    pub fn model_path(&self) -> Result<PathBuf, CommandError> {
        let trunk = self.trunk.as_deref().unwrap_or(crate::store::DEFAULT_TRUNK);
        Ok(crate::store::model_path(self.model.as_deref(), trunk)?)
    }

    pub fn options(&self) -> TrunkOptions {
        TrunkOptions {
            ort_lib: self.ort_lib.clone(),
            device: self.device.into(),
            threads: self.threads,
            cuda_nhwc: std::env::var("VGGCACHE_CUDA_NHWC").is_ok_and(|v| v == "1"),
        }
    }
}

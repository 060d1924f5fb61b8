//! The frozen trunk: ONNX Runtime discovery, execution provider, model contract and batch inference.
//!
//! This module never sees files other than the model and the runtime library, nor images: it takes
//! preprocessed tensors `(n, 3, h, w)` and returns features `(n, d)`.

mod cpu;
pub mod external;
mod model;
mod runner;
mod runtime;

pub use cpu::CpuFeatures;
pub use model::{external_data_files, fingerprint_file, ModelInfo};
pub use runner::{Device, Provider, Trunk, TrunkOptions};
pub use runtime::{
    available_providers, cuda_library_report, find_library, init_runtime, shared_environment,
    CudaLib, LibrarySource, RuntimeInfo,
};

use std::path::PathBuf;

/// Errors of the trunk: runtime library, model file, contract, inference.
#[derive(Debug, thiserror::Error)]
pub enum TrunkError {
    #[error(
        "ONNX Runtime library not found (looked in: {searched}). Install it with `make setup` \
         (pip wheel onnxruntime==1.31.1 into .venv), or pass --ort-lib PATH / set ORT_DYLIB_PATH \
         to a libonnxruntime.so"
    )]
    RuntimeNotFound { searched: String },
    #[error(
        "cannot load ONNX Runtime from {path}: {cause}. vggcache needs ONNX Runtime >= 1.17 \
         (`make setup` installs 1.31.1); pass --ort-lib PATH or set ORT_DYLIB_PATH to another library"
    )]
    RuntimeLoad { path: PathBuf, cause: String },
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    #[error("model file {path} not found; build it with `make model` (see models/README.md)")]
    ModelMissing { path: PathBuf },
    /// `--model` names a folder, not a model file.
    #[error(
        "--model {path} is a folder, not an ONNX model file; pass the file, e.g. --model \
         {path}/vgg16_trunk.onnx"
    )]
    ModelIsFolder { path: PathBuf },
    #[error("cannot load model {path}: {cause}")]
    ModelLoad { path: PathBuf, cause: String },
    #[error("model {path} breaks the trunk contract (input [N,3,H,W] float32 -> output [N,D] float32): {cause}")]
    Contract { path: PathBuf, cause: String },
    #[error("model {path}: metadata `{key}` {cause}")]
    Metadata {
        path: PathBuf,
        key: String,
        cause: String,
    },
    #[error("model {path} cannot run on this CPU: {cause}")]
    Int8WithoutVnni { path: PathBuf, cause: String },
    #[error("--device cuda: the CUDA execution provider cannot be used: {0}")]
    CudaUnavailable(String),
    #[error("batch for model {path}: expected {expected} floats ({n} x 3 x {h} x {w}), got {got}")]
    BatchShape {
        path: PathBuf,
        n: usize,
        h: usize,
        w: usize,
        expected: usize,
        got: usize,
    },
    #[error("inference with model {path} failed: {cause}")]
    Inference { path: PathBuf, cause: String },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

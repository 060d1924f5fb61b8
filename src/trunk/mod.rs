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
    /// The model store's lookup found no ONNX Runtime library (or a flag names a missing file).
    #[error(transparent)]
    Lookup(#[from] crate::store::StoreError),
    /// The ONNX Runtime library could not be loaded.
    #[error(
        "cannot load ONNX Runtime from {path}: {cause}. vggcache needs ONNX Runtime >= 1.17 \
         (`pip install onnxruntime==1.31.1` installs it); pass --ort-lib PATH or set ORT_DYLIB_PATH \
         to another library"
    )]
    RuntimeLoad {
        /// The file or folder concerned.
        path: PathBuf,
        /// What went wrong, as the underlying library put it.
        cause: String,
    },
    /// ONNX Runtime reported an error.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// The model file does not exist.
    #[error(
        "model file {path} not found; pass an existing ONNX model with --model PATH, or install \
         the default trunk with `vggcache models install vgg16` and use --trunk vgg16"
    )]
    ModelMissing {
        /// The file or folder concerned.
        path: PathBuf,
    },
    /// `--model` names a folder, not a model file.
    #[error(
        "--model {path} is a folder, not an ONNX model file; pass the file, e.g. --model \
         {path}/vgg16_trunk.onnx"
    )]
    ModelIsFolder {
        /// The file or folder concerned.
        path: PathBuf,
    },
    /// ONNX Runtime could not load the model.
    #[error("cannot load model {path}: {cause}")]
    ModelLoad {
        /// The file or folder concerned.
        path: PathBuf,
        /// What went wrong, as the underlying library put it.
        cause: String,
    },
    /// The model breaks the trunk contract (`[N,3,H,W]` float32 → `[N,D]` float32).
    #[error("model {path} breaks the trunk contract (input [N,3,H,W] float32 -> output [N,D] float32): {cause}")]
    Contract {
        /// The file or folder concerned.
        path: PathBuf,
        /// What went wrong, as the underlying library put it.
        cause: String,
    },
    /// A metadata entry of the model is missing or invalid.
    #[error("model {path}: metadata `{key}` {cause}")]
    Metadata {
        /// The file or folder concerned.
        path: PathBuf,
        /// The metadata key.
        key: String,
        /// What went wrong, as the underlying library put it.
        cause: String,
    },
    /// An int8 model this CPU cannot run correctly.
    #[error("model {path} cannot run on this CPU: {cause}")]
    Int8WithoutVnni {
        /// The file or folder concerned.
        path: PathBuf,
        /// What went wrong, as the underlying library put it.
        cause: String,
    },
    /// CUDA was asked for and cannot be used.
    #[error("--device cuda: the CUDA execution provider cannot be used: {0}")]
    CudaUnavailable(String),
    /// A batch tensor of the wrong length.
    #[error("batch for model {path}: expected {expected} floats ({n} x 3 x {h} x {w}), got {got}")]
    BatchShape {
        /// The file or folder concerned.
        path: PathBuf,
        /// Images in the batch.
        n: usize,
        /// Input height.
        h: usize,
        /// Input width.
        w: usize,
        /// What was expected.
        expected: usize,
        /// What was found.
        got: usize,
    },
    /// A run of the model failed.
    #[error("inference with model {path} failed: {cause}")]
    Inference {
        /// The file or folder concerned.
        path: PathBuf,
        /// What went wrong, as the underlying library put it.
        cause: String,
    },
    /// Reading a file failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

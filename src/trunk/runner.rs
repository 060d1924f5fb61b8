//! Runs the trunk on batches: session with the chosen execution provider, `(n,3,h,w)` → `(n,d)`.

use std::path::{Path, PathBuf};

use ndarray::Array2;
use ort::ep::{self, ExecutionProvider};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

use super::cpu;
use super::model::ModelInfo;
use super::runtime::{self, environment};
use super::TrunkError;

/// Where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// CUDA when it registers, else CPU (the fallback is reported).
    #[default]
    Auto,
    /// CUDA or an error, never a silent CPU run.
    Cuda,
    /// The CPU execution provider.
    Cpu,
}

/// The execution provider actually in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// The CUDA execution provider.
    Cuda,
    /// The CPU execution provider.
    Cpu,
}

impl Provider {
    /// ONNX Runtime's name of the provider.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cuda => "CUDAExecutionProvider",
            Self::Cpu => "CPUExecutionProvider",
        }
    }
}

/// How to build the trunk session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrunkOptions {
    /// ONNX Runtime library to load; `None`: the usual search (see `runtime`).
    pub ort_lib: Option<PathBuf>,
    /// Which execution provider to use.
    pub device: Device,
    /// Intra-op threads for the CPU provider; 0 = ONNX Runtime's default (one per core).
    pub threads: usize,
    /// CUDA only: let ONNX Runtime run convolutions in NHWC layout (its `prefer_nhwc` option).
    /// The CLI sets it from `VGGCACHE_CUDA_NHWC=1`; see docs/BENCHMARKS.md for what it changes.
    pub cuda_nhwc: bool,
}

/// A loaded trunk: one ONNX Runtime session plus its contract.
pub struct Trunk {
    session: Session,
    info: ModelInfo,
    provider: Provider,
    /// Why CUDA was not used under `--device auto`, if it was tried and failed.
    pub fallback_reason: Option<String>,
}

impl Trunk {
    /// Loads the runtime (once per process) and the model; checks the contract.
    pub fn load(model: &Path, opts: &TrunkOptions) -> Result<Self, TrunkError> {
        if model.is_dir() {
            return Err(TrunkError::ModelIsFolder {
                path: model.to_path_buf(),
            });
        }
        if !model.is_file() {
            return Err(TrunkError::ModelMissing {
                path: model.to_path_buf(),
            });
        }
        runtime::init_runtime(opts.ort_lib.as_deref())?;
        let (session, provider, fallback_reason) = match opts.device {
            Device::Cpu => (
                build_session(model, opts, Provider::Cpu)?,
                Provider::Cpu,
                None,
            ),
            Device::Cuda => {
                let s = build_session(model, opts, Provider::Cuda).map_err(|e| match e {
                    TrunkError::ModelLoad { cause, .. } => TrunkError::CudaUnavailable(cause),
                    other => other,
                })?;
                (s, Provider::Cuda, None)
            }
            Device::Auto => match build_session(model, opts, Provider::Cuda) {
                Ok(s) => (s, Provider::Cuda, None),
                Err(TrunkError::ModelLoad { cause, .. }) => (
                    build_session(model, opts, Provider::Cpu)?,
                    Provider::Cpu,
                    Some(cause),
                ),
                Err(e) => return Err(e),
            },
        };
        let info = ModelInfo::from_session(model, &session)?;
        if provider == Provider::Cpu {
            let refusal = info
                .metadata
                .get("vggcache.quantization")
                .and_then(|q| cpu::int8_refusal(cpu::CpuFeatures::detect(), q));
            if let Some(cause) = refusal {
                return Err(TrunkError::Int8WithoutVnni {
                    path: model.to_path_buf(),
                    cause,
                });
            }
        }
        Ok(Self {
            session,
            info,
            provider,
            fallback_reason,
        })
    }

    /// The loaded model.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The execution provider this session runs on (checked at build time, never assumed).
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Runs one batch.
    ///
    /// `batch`: `(n, 3, h, w)` row-major with `(h, w) = info().input_hw`; returns `(n, d)`.
    pub fn run(&mut self, batch: &[f32], n: usize) -> Result<Array2<f32>, TrunkError> {
        let (h, w) = self.info.input_hw;
        let expected = n * 3 * h * w;
        if batch.len() != expected || n == 0 {
            return Err(TrunkError::BatchShape {
                path: self.info.path.clone(),
                n,
                h,
                w,
                expected,
                got: batch.len(),
            });
        }
        let path = self.info.path.clone();
        let fail = |e: ort::Error| TrunkError::Inference {
            path: path.clone(),
            cause: e.to_string(),
        };
        let shape = [n as i64, 3, h as i64, w as i64];
        let input = TensorRef::from_array_view((shape, batch)).map_err(fail)?;
        let outputs = self
            .session
            .run(ort::inputs![self.info.input_name.as_str() => input])
            .map_err(fail)?;
        let (oshape, data) = outputs[self.info.output_name.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(fail)?;
        let d = self.info.dim;
        if oshape.len() != 2 || oshape[0] as usize != n || oshape[1] as usize != d {
            return Err(TrunkError::Inference {
                path: self.info.path.clone(),
                cause: format!("output shape {:?}, expected [{n}, {d}]", &oshape[..]),
            });
        }
        Ok(Array2::from_shape_vec((n, d), data.to_vec()).expect("length checked against shape"))
    }
}

fn build_session(
    model: &Path,
    opts: &TrunkOptions,
    provider: Provider,
) -> Result<Session, TrunkError> {
    let load = |e: String| TrunkError::ModelLoad {
        path: model.to_path_buf(),
        cause: e,
    };
    let mut b = Session::builder(environment())
        .map_err(|e| load(e.to_string()))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| load(e.to_string()))?;
    if opts.threads > 0 {
        b = b
            .with_intra_threads(opts.threads)
            .map_err(|e| load(e.to_string()))?;
    }
    match provider {
        Provider::Cpu => {
            b = b
                // The ort crate's `CPU::default()` *disables* ONNX Runtime's memory arena (the
                // C API default, and onnxruntime-python's, is on): without it every run maps,
                // faults in and unmaps each activation buffer again (~0.2 GB per VGG16 layer at
                // batch 16); measured ~8% slower trunk-only (docs/BENCHMARKS.md, section 3).
                .with_execution_providers([ep::CPU::default().with_arena_allocator(true).build()])
                .map_err(|e| load(e.to_string()))?;
        }
        Provider::Cuda => {
            if !ep::CUDA::is_available().unwrap_or(false) {
                return Err(load(
                    "this ONNX Runtime build has no CUDA provider (use onnxruntime-gpu instead: \
                     `pip uninstall onnxruntime && pip install onnxruntime-gpu==1.31.1`; in a \
                     checkout `make setup` does it when nvidia-smi finds a GPU)"
                        .into(),
                ));
            }
            // Put the CUDA/cuDNN libraries of pip's nvidia packages where the provider finds them.
            runtime::cuda_library_report(true);
            b = b
                .with_execution_providers([ep::CUDA::default()
                    .with_prefer_nhwc(opts.cuda_nhwc)
                    .build()
                    .error_on_failure()])
                .map_err(|e| load(e.to_string()))?
                // Any node that would silently fall back to the CPU makes session creation fail.
                .with_config_entry("session.disable_cpu_ep_fallback", "1")
                .map_err(|e| load(e.to_string()))?;
        }
    }
    b.commit_from_file(model).map_err(|e| load(e.to_string()))
}

//! The trunk model's contract (input `[N,3,H,W]` f32 → output `[N,D]` f32), metadata and fingerprint.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::{TensorElementType, ValueType};
use sha2::{Digest, Sha256};

use super::TrunkError;
use crate::spec::PreprocessSpec;

/// What vggcache knows about a loaded trunk model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub path: PathBuf,
    /// `sha256:<hex>` of the model file's bytes.
    pub fingerprint: String,
    pub input_name: String,
    pub output_name: String,
    /// Input height and width from the model's declared shape.
    pub input_hw: (usize, usize),
    /// Feature dimension D from the model's declared output shape.
    pub dim: usize,
    pub preprocess: PreprocessSpec,
    pub provenance: String,
    pub source: String,
    /// Every metadata_props entry of the model.
    pub metadata: BTreeMap<String, String>,
}

/// `sha256:<hex>` of a file's bytes, streamed.
pub fn fingerprint_file(path: &Path) -> Result<String, TrunkError> {
    let io = |source| TrunkError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// Dims of a tensor outlet, `-1` for dynamic axes; Err unless it is a float32 tensor.
fn f32_dims(path: &Path, what: &str, ty: &ValueType) -> Result<Vec<i64>, TrunkError> {
    let contract = |cause: String| TrunkError::Contract {
        path: path.to_path_buf(),
        cause,
    };
    match ty {
        ValueType::Tensor { ty, shape, .. } => {
            if *ty != TensorElementType::Float32 {
                return Err(contract(format!("{what} is {ty:?}, expected float32")));
            }
            Ok(shape.iter().copied().collect())
        }
        other => Err(contract(format!("{what} is {other:?}, expected a tensor"))),
    }
}

impl ModelInfo {
    /// Reads the contract and metadata of a session built from `path`.
    pub(super) fn from_session(path: &Path, session: &Session) -> Result<Self, TrunkError> {
        let contract = |cause: String| TrunkError::Contract {
            path: path.to_path_buf(),
            cause,
        };
        if session.inputs().len() != 1 || session.outputs().is_empty() {
            return Err(contract(format!(
                "expected 1 input and at least 1 output, found {} and {}",
                session.inputs().len(),
                session.outputs().len()
            )));
        }
        let input = &session.inputs()[0];
        let output = &session.outputs()[0];
        let ind = f32_dims(path, "input", input.dtype())?;
        let outd = f32_dims(path, "output", output.dtype())?;
        if ind.len() != 4 || ind[1] != 3 || ind[2] <= 0 || ind[3] <= 0 {
            return Err(contract(format!(
                "input shape {ind:?}, expected [N,3,H,W] with fixed H, W"
            )));
        }
        if outd.len() != 2 || outd[1] <= 0 {
            return Err(contract(format!(
                "output shape {outd:?}, expected [N,D] with fixed D"
            )));
        }
        let meta = session.metadata().map_err(|e| contract(e.to_string()))?;
        let mut metadata = BTreeMap::new();
        for k in meta.custom_keys().map_err(|e| contract(e.to_string()))? {
            if let Some(v) = meta.custom(&k) {
                metadata.insert(k, v);
            }
        }
        let meta_err = |key: &str, cause: String| TrunkError::Metadata {
            path: path.to_path_buf(),
            key: key.to_string(),
            cause,
        };
        let key = "vggcache.preprocess";
        let raw = metadata.get(key).ok_or_else(|| {
            meta_err(
                key,
                "is missing: build the model with the scripts in models/".into(),
            )
        })?;
        let preprocess: PreprocessSpec = serde_json::from_str(raw)
            .map_err(|e| meta_err(key, format!("is not a preprocessing spec: {e}")))?;
        let (h, w) = (ind[2] as usize, ind[3] as usize);
        if (preprocess.height as usize, preprocess.width as usize) != (h, w) {
            return Err(meta_err(
                key,
                format!(
                    "says {}x{} but the input is {h}x{w}",
                    preprocess.height, preprocess.width
                ),
            ));
        }
        if preprocess.std.iter().any(|s| s.is_nan() || *s <= 0.0) {
            return Err(meta_err(
                key,
                format!("has std {:?}; every std must be > 0", preprocess.std),
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            fingerprint: fingerprint_file(path)?,
            input_name: input.name().to_string(),
            output_name: output.name().to_string(),
            input_hw: (h, w),
            dim: outd[1] as usize,
            provenance: metadata
                .get("vggcache.provenance")
                .cloned()
                .unwrap_or_default(),
            source: metadata.get("vggcache.source").cloned().unwrap_or_default(),
            preprocess,
            metadata,
        })
    }
}

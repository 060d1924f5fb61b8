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
    /// The model file.
    pub path: PathBuf,
    /// [`fingerprint_file`]: `sha256:<hex>` of the model's bytes and its external-data files.
    pub fingerprint: String,
    /// The model's input tensor name.
    pub input_name: String,
    /// The model's output tensor name.
    pub output_name: String,
    /// Input height and width from the model's declared shape.
    pub input_hw: (usize, usize),
    /// Feature dimension D from the model's declared output shape.
    pub dim: usize,
    /// How an image becomes the input tensor (from the model metadata).
    pub preprocess: PreprocessSpec,
    /// Where the weights come from (metadata `vggcache.provenance`).
    pub provenance: String,
    /// How the model file was built (metadata `vggcache.source`).
    pub source: String,
    /// Every metadata_props entry of the model.
    pub metadata: BTreeMap<String, String>,
}

/// `sha256:<hex>` fingerprint of everything a model loads: for a self-contained model the sha256
/// of the `.onnx` file's bytes; for one with external data, the sha256 over a domain tag, the
/// `.onnx` bytes and, for each external-data file it references (sorted by `location`), its
/// location, its length and its bytes. Replacing `weights.bin` beside `model.onnx` changes it.
pub fn fingerprint_file(path: &Path) -> Result<String, TrunkError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| TrunkError::Io { path: p, source }
    };
    let (bytes, locations) = read_with_locations(path)?;
    let mut h = Sha256::new();
    if locations.is_empty() {
        h.update(&bytes);
        return Ok(format!("sha256:{}", hex::encode(h.finalize())));
    }
    h.update(b"vggcache onnx + external data\0");
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(&bytes);
    let base = path.parent().unwrap_or(Path::new("."));
    for loc in locations {
        let rel = Path::new(&loc);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(TrunkError::ModelLoad {
                path: path.to_path_buf(),
                cause: format!(
                    "external data location '{loc}' is not a plain path inside the model's folder"
                ),
            });
        }
        let file = base.join(rel);
        let mut f = std::fs::File::open(&file).map_err(io(&file))?;
        let len = f.metadata().map_err(io(&file))?.len();
        h.update(loc.as_bytes());
        h.update([0]);
        h.update(len.to_le_bytes());
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(io(&file))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// The model file's bytes and the external-data `location`s it references (sorted, no repeats).
fn read_with_locations(model: &Path) -> Result<(Vec<u8>, Vec<String>), TrunkError> {
    let bytes = std::fs::read(model).map_err(|source| TrunkError::Io {
        path: model.to_path_buf(),
        source,
    })?;
    let locations =
        super::external::external_locations(&bytes).map_err(|e| TrunkError::ModelLoad {
            path: model.to_path_buf(),
            cause: format!("not a readable ONNX protobuf: {}", e.0),
        })?;
    Ok((bytes, locations))
}

/// External-data files (paths) `model` loads besides itself; empty for a self-contained model.
pub fn external_data_files(model: &Path) -> Result<Vec<PathBuf>, TrunkError> {
    let (_, locations) = read_with_locations(model)?;
    let base = model.parent().unwrap_or(Path::new("."));
    Ok(locations.iter().map(|l| base.join(l)).collect())
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

//! Save and load a fitted head as safetensors: layer tensors, optional scaler tensors, config and classes in the metadata.
//!
//! Tensors (all F32): `layers.{i}.weight: (d_out, d_in)` (PyTorch's `nn.Linear` order, metadata
//! `weight_layout` = [`WEIGHT_LAYOUT`]; heads written before the change say `(d_in, d_out)` and
//! still load), `layers.{i}.bias: (d_out,)`, and when standardizing `scaler.mean: (d,)`,
//! `scaler.std: (d,)` (25,088 numbers each are kept as tensors, not text). Metadata keys written
//! here: `format`, `weight_layout`, `dims`, `classes`, `config` (JSON), `standardize`; the caller
//! adds its own (e.g. `trunk_fingerprint`) and gets every key back from [`FittedHead::load`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ndarray::{Array1, Array2};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use super::mlp::Mlp;
use super::scaler::Standardizer;
use super::{FittedHead, HeadConfig, HeadError};

/// Value of the `format` metadata key.
pub const FORMAT: &str = "vggcache-head/1";
/// Value of the `weight_layout` metadata key written now.
pub const WEIGHT_LAYOUT: &str = "(d_out, d_in)";
/// The layout of heads written before the weights were stored in PyTorch's order.
const WEIGHT_LAYOUT_V0: &str = "(d_in, d_out)";
const RESERVED: [&str; 6] = [
    "format",
    "weight_layout",
    "dims",
    "classes",
    "config",
    "standardize",
];

fn bytes_of(v: &[f32]) -> std::borrow::Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        std::borrow::Cow::Borrowed(bytemuck::cast_slice(v))
    } else {
        std::borrow::Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
}

fn floats_of(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl FittedHead {
    /// Write the head to `path` (safetensors). `metadata` is stored beside the head's own keys,
    /// which it must not reuse.
    pub fn save(&self, path: &Path, metadata: &BTreeMap<String, String>) -> Result<(), HeadError> {
        let bad = |message: String| HeadError::BadCheckpoint {
            path: path.to_path_buf(),
            message,
        };
        if let Some(k) = metadata.keys().find(|k| RESERVED.contains(&k.as_str())) {
            return Err(bad(format!(
                "metadata key {k:?} is reserved for the head itself"
            )));
        }
        let json = |e: serde_json::Error| bad(format!("encoding metadata: {e}"));
        let mut meta: HashMap<String, String> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        meta.insert("format".into(), FORMAT.into());
        meta.insert("weight_layout".into(), WEIGHT_LAYOUT.into());
        meta.insert(
            "dims".into(),
            serde_json::to_string(self.mlp.dims()).map_err(json)?,
        );
        meta.insert(
            "classes".into(),
            serde_json::to_string(&self.classes).map_err(json)?,
        );
        meta.insert(
            "config".into(),
            serde_json::to_string(&self.config).map_err(json)?,
        );
        meta.insert("standardize".into(), self.scaler.is_some().to_string());

        let layers = self.mlp.layers_out_in();
        let mut owned: Vec<(String, Vec<usize>, std::borrow::Cow<'_, [u8]>)> = Vec::new();
        for (i, (w, b)) in layers.iter().enumerate() {
            let ws = w.as_slice().expect("layer weights are contiguous");
            let bs = b.as_slice().expect("layer biases are contiguous");
            owned.push((
                format!("layers.{i}.weight"),
                vec![w.nrows(), w.ncols()],
                bytes_of(ws),
            ));
            owned.push((format!("layers.{i}.bias"), vec![b.len()], bytes_of(bs)));
        }
        if let Some(sc) = &self.scaler {
            let m = sc.mean.as_slice().expect("contiguous");
            let s = sc.std.as_slice().expect("contiguous");
            owned.push(("scaler.mean".into(), vec![m.len()], bytes_of(m)));
            owned.push(("scaler.std".into(), vec![s.len()], bytes_of(s)));
        }
        let mut views = Vec::with_capacity(owned.len());
        for (name, shape, data) in &owned {
            let v = TensorView::new(Dtype::F32, shape.clone(), data)
                .map_err(|e| bad(format!("tensor {name}: {e}")))?;
            views.push((name.clone(), v));
        }
        let bytes =
            safetensors::serialize(views, Some(meta)).map_err(|e| bad(format!("writing: {e}")))?;
        crate::fsutil::write_atomic(path, &bytes).map_err(|e| HeadError::Io {
            path: e.path,
            source: e.source,
        })
    }

    /// Read a head written by [`FittedHead::save`]; returns it and all metadata.
    pub fn load(path: &Path) -> Result<(FittedHead, BTreeMap<String, String>), HeadError> {
        let bad = |message: String| HeadError::BadCheckpoint {
            path: path.to_path_buf(),
            message,
        };
        let buf = std::fs::read(path).map_err(|source| HeadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let (_, header) = SafeTensors::read_metadata(&buf)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let meta: BTreeMap<String, String> = header
            .metadata()
            .as_ref()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let get = |k: &str| {
            meta.get(k)
                .ok_or_else(|| bad(format!("metadata key {k:?} missing")))
        };
        if get("format")? != FORMAT {
            return Err(bad(format!(
                "format {:?}, expected {FORMAT:?}",
                meta["format"]
            )));
        }
        let dims: Vec<usize> =
            serde_json::from_str(get("dims")?).map_err(|e| bad(format!("dims: {e}")))?;
        let classes: Vec<String> =
            serde_json::from_str(get("classes")?).map_err(|e| bad(format!("classes: {e}")))?;
        let config: HeadConfig =
            serde_json::from_str(get("config")?).map_err(|e| bad(format!("config: {e}")))?;
        let st =
            SafeTensors::deserialize(&buf).map_err(|e| bad(format!("reading tensors: {e}")))?;
        let tensor = |name: &str, shape: &[usize]| -> Result<Vec<f32>, HeadError> {
            let t = st
                .tensor(name)
                .map_err(|e| bad(format!("tensor {name}: {e}")))?;
            if t.dtype() != Dtype::F32 || t.shape() != shape {
                return Err(bad(format!(
                    "tensor {name} is {:?} {:?}, expected F32 {shape:?}",
                    t.dtype(),
                    t.shape()
                )));
            }
            Ok(floats_of(t.data()))
        };
        if dims.len() < 2 {
            return Err(bad(format!("dims {dims:?} has fewer than 2 entries")));
        }
        // `true`: weights stored (d_out, d_in); `false`: the old (d_in, d_out)
        let out_in = match meta.get("weight_layout").map(String::as_str) {
            Some(WEIGHT_LAYOUT) => true,
            Some(WEIGHT_LAYOUT_V0) | None => false,
            Some(other) => {
                return Err(bad(format!(
                    "weight_layout {other:?}, expected {WEIGHT_LAYOUT:?} or {WEIGHT_LAYOUT_V0:?}"
                )))
            }
        };
        let mut layers = Vec::with_capacity(dims.len() - 1);
        for (i, pair) in dims.windows(2).enumerate() {
            let (d_in, d_out) = (pair[0], pair[1]);
            let shape = if out_in { [d_out, d_in] } else { [d_in, d_out] };
            let w = tensor(&format!("layers.{i}.weight"), &shape)?;
            let b = tensor(&format!("layers.{i}.bias"), &pair[1..])?;
            let w =
                Array2::from_shape_vec((shape[0], shape[1]), w).map_err(|e| bad(e.to_string()))?;
            layers.push((w, Array1::from(b)));
        }
        let views: Vec<_> = layers
            .iter()
            .map(|(w, b)| (if out_in { w.view() } else { w.t() }, b.view()))
            .collect();
        let mlp = Mlp::from_layers_out_in(&views).map_err(|e| bad(e.to_string()))?;
        drop(views);
        drop(layers);
        let scaler = match get("standardize")?.as_str() {
            "true" => {
                let mean = tensor("scaler.mean", &dims[..1])?;
                let std = tensor("scaler.std", &dims[..1])?;
                if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                    return Err(bad(format!("scaler.std has the invalid entry {s}")));
                }
                Some(Standardizer {
                    mean: Array1::from(mean),
                    std: Array1::from(std),
                })
            }
            "false" => None,
            other => {
                return Err(bad(format!(
                    "standardize is {other:?}, expected true/false"
                )))
            }
        };
        let head = FittedHead::new(mlp, scaler, classes, config).map_err(|e| bad(e.to_string()))?;
        Ok((head, meta))
    }
}

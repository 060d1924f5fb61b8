//! ONNX export of a trained head (Gemm/Relu/.../Gemm/Softmax), alone or appended to a trunk model.
//!
//! No ONNX crate is used: [`proto`] writes the protobuf wire format, and this module lays out the
//! ONNX messages (field numbers from `onnx/onnx.proto`, ONNX 1.x). The head model is opset 17,
//! IR version 8: input `[N, D]` float, output [`OUTPUT_NAME`] `[N, C]` float, dropout gone (it is
//! the identity at inference), feature scaling folded into the first Gemm.
//!
//! [`with_trunk_model_bytes`] relies on protobuf merge semantics: parsing a serialized `ModelProto`
//! followed by another parses as their merge: embedded messages (`graph`) merge field by field,
//! repeated fields (nodes, initializers, outputs, `metadata_props`) append, scalars are overwritten
//! (so the appended part sets none). The trunk's bytes are copied unchanged and a small `ModelProto`
//! holding only the head's nodes, initializers, the new output and extra metadata is appended.

mod proto;

use std::collections::{BTreeMap, BTreeSet};

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use proto::{Field, Value};

/// Name of the probabilities output of every exported model.
pub const OUTPUT_NAME: &str = "probabilities";
/// Opset of the default (`ai.onnx`) domain used by [`head_model_bytes`].
pub const OPSET: i64 = 17;
/// IR version written by [`head_model_bytes`] (ONNX 1.10+, readable by every ONNX Runtime ≥ 1.10).
pub const IR_VERSION: i64 = 8;
/// Lowest trunk default-domain opset [`with_trunk_model_bytes`] accepts: Gemm-7 (bias broadcast);
/// Flatten, Relu and Softmax on a 2-D tensor with axis 1 mean the same from opset 1 on.
pub const MIN_TRUNK_OPSET: i64 = 7;
/// Lowest trunk IR version accepted: IR 4 allows initializers that are not graph inputs.
pub const MIN_TRUNK_IR: i64 = 4;

/// A trained head as plain arrays, ready to export.
#[derive(Debug, Clone)]
pub struct HeadGraph<'a> {
    /// `(w: (d_in, d_out), b: (d_out,))` per linear layer, input to output; ReLU between layers.
    pub layers: Vec<(ArrayView2<'a, f32>, ArrayView1<'a, f32>)>,
    /// Feature scaling `(mean, std)`, `(d,)` each, applied as `(x - mean) / std` before the first
    /// layer; folded into it on export: `w' = w / std` (row-wise), `b' = b - (mean / std) · w`.
    pub scaler: Option<(ArrayView1<'a, f32>, ArrayView1<'a, f32>)>,
    /// Class names, index = output column.
    pub classes: Vec<String>,
    /// Extra `metadata_props` (trunk fingerprint, preprocessing, training settings, ...).
    pub metadata: BTreeMap<String, String>,
}

/// What an existing ONNX model holds, read by [`inspect`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelSummary {
    pub ir_version: i64,
    /// `(domain, version)`; the default domain is `""`.
    pub opsets: Vec<(String, i64)>,
    pub graph_inputs: Vec<String>,
    pub graph_outputs: Vec<String>,
    /// Every value name in the graph: inputs, outputs, node outputs, initializers.
    pub tensor_names: BTreeSet<String>,
    pub metadata: Vec<(String, String)>,
    /// Some initializer keeps its data in an external file (`data_location = EXTERNAL`): the model
    /// only loads where that file sits at the recorded relative path.
    pub has_external_data: bool,
}

impl ModelSummary {
    /// Version of the default (`""` or `"ai.onnx"`) operator set, if imported.
    pub fn default_opset(&self) -> Option<i64> {
        self.opsets
            .iter()
            .find(|(d, _)| d.is_empty() || d == "ai.onnx")
            .map(|&(_, v)| v)
    }
}

/// Errors from exporting a head or reading a trunk model.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("head has no layers")]
    EmptyHead,
    #[error("head layer {layer}: {what}: expected {expected}, found {found}")]
    LayerShape {
        layer: usize,
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("head has {found} class names but its last layer has {expected} outputs")]
    ClassCount { expected: usize, found: usize },
    #[error("feature scaler {what} has length {found}, expected the head input size {expected}")]
    ScalerShape {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("feature scaler std[{index}] = {value}: expected a finite value > 0")]
    BadStd { index: usize, value: f32 },
    #[error("head layer {layer} {what} holds a non-finite value at flat index {index}")]
    NonFinite {
        layer: usize,
        what: &'static str,
        index: usize,
    },
    #[error("metadata key {key:?} is written by the exporter; choose another key")]
    ReservedMetadata { key: String },
    #[error(
        "metadata key {key:?} is already in the trunk with value {existing:?}, head gives {new:?}"
    )]
    MetadataConflict {
        key: String,
        existing: String,
        new: String,
    },
    #[error("trunk ONNX is not a valid ModelProto: {what} at byte {offset} of a {message}")]
    Malformed {
        message: &'static str,
        what: &'static str,
        offset: usize,
    },
    #[error("trunk ONNX has no graph")]
    NoGraph,
    #[error("trunk has no tensor named {name:?}; its graph outputs are {outputs:?}")]
    MissingTensor { name: String, outputs: Vec<String> },
    #[error("trunk already has a value named {name:?}; the head's names would clash")]
    NameClash { name: String },
    #[error("trunk IR version {found} is too old: expected >= {MIN_TRUNK_IR}")]
    OldIr { found: i64 },
    #[error("trunk default-domain opset is {found:?}: expected a version >= {MIN_TRUNK_OPSET}")]
    Opset { found: Option<i64> },
}

// Field numbers, onnx.proto.
mod f {
    pub const MODEL_IR_VERSION: u32 = 1;
    pub const MODEL_PRODUCER_NAME: u32 = 2;
    pub const MODEL_PRODUCER_VERSION: u32 = 3;
    pub const MODEL_DOC: u32 = 6;
    pub const MODEL_GRAPH: u32 = 7;
    pub const MODEL_OPSET_IMPORT: u32 = 8;
    pub const MODEL_METADATA: u32 = 14;
    pub const OPSET_DOMAIN: u32 = 1;
    pub const OPSET_VERSION: u32 = 2;
    pub const ENTRY_KEY: u32 = 1;
    pub const ENTRY_VALUE: u32 = 2;
    pub const GRAPH_NODE: u32 = 1;
    pub const GRAPH_NAME: u32 = 2;
    pub const GRAPH_INITIALIZER: u32 = 5;
    pub const GRAPH_DOC: u32 = 10;
    pub const GRAPH_INPUT: u32 = 11;
    pub const GRAPH_OUTPUT: u32 = 12;
    pub const GRAPH_VALUE_INFO: u32 = 13;
    pub const NODE_INPUT: u32 = 1;
    pub const NODE_OUTPUT: u32 = 2;
    pub const NODE_NAME: u32 = 3;
    pub const NODE_OP_TYPE: u32 = 4;
    pub const NODE_ATTRIBUTE: u32 = 5;
    pub const ATTR_NAME: u32 = 1;
    pub const ATTR_I: u32 = 3;
    pub const ATTR_TYPE: u32 = 20;
    pub const ATTR_TYPE_INT: i64 = 2;
    pub const TENSOR_DIMS: u32 = 1;
    pub const TENSOR_DATA_TYPE: u32 = 2;
    pub const TENSOR_NAME: u32 = 8;
    pub const TENSOR_RAW_DATA: u32 = 9;
    pub const TENSOR_DATA_LOCATION: u32 = 14;
    pub const TENSOR_FLOAT: i64 = 1;
    pub const VALUE_INFO_NAME: u32 = 1;
    pub const VALUE_INFO_TYPE: u32 = 2;
    pub const TYPE_TENSOR: u32 = 1;
    pub const TYPE_TENSOR_ELEM_TYPE: u32 = 1;
    pub const TYPE_TENSOR_SHAPE: u32 = 2;
    pub const SHAPE_DIM: u32 = 1;
    pub const DIM_VALUE: u32 = 1;
    pub const DIM_PARAM: u32 = 2;
}

/// A tensor dimension in a `ValueInfoProto`.
enum Dim {
    Value(usize),
    Param(&'static str),
    Unknown,
}

fn value_info<'a>(name: &str, dims: &[Dim]) -> Vec<Field<'a>> {
    let dims = dims
        .iter()
        .map(|d| {
            Field::Msg(
                f::SHAPE_DIM,
                match d {
                    Dim::Value(v) => vec![Field::Varint(f::DIM_VALUE, *v as i64)],
                    Dim::Param(p) => vec![Field::str(f::DIM_PARAM, *p)],
                    Dim::Unknown => vec![],
                },
            )
        })
        .collect();
    vec![
        Field::str(f::VALUE_INFO_NAME, name),
        Field::Msg(
            f::VALUE_INFO_TYPE,
            vec![Field::Msg(
                f::TYPE_TENSOR,
                vec![
                    Field::Varint(f::TYPE_TENSOR_ELEM_TYPE, f::TENSOR_FLOAT),
                    Field::Msg(f::TYPE_TENSOR_SHAPE, dims),
                ],
            )],
        ),
    ]
}

fn node<'a>(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<Field<'a>>,
) -> Field<'a> {
    let mut fields: Vec<Field> = inputs
        .iter()
        .map(|i| Field::str(f::NODE_INPUT, *i))
        .collect();
    fields.extend(outputs.iter().map(|o| Field::str(f::NODE_OUTPUT, *o)));
    fields.push(Field::str(f::NODE_NAME, name));
    fields.push(Field::str(f::NODE_OP_TYPE, op));
    fields.extend(attrs);
    Field::Msg(f::GRAPH_NODE, fields)
}

fn int_attr<'a>(name: &str, v: i64) -> Field<'a> {
    Field::Msg(
        f::NODE_ATTRIBUTE,
        vec![
            Field::str(f::ATTR_NAME, name),
            Field::Varint(f::ATTR_I, v),
            Field::Varint(f::ATTR_TYPE, f::ATTR_TYPE_INT),
        ],
    )
}

fn initializer<'a>(name: &str, dims: &[usize], data: Field<'a>) -> Field<'a> {
    let mut fields: Vec<Field> = dims
        .iter()
        .map(|&d| Field::Varint(f::TENSOR_DIMS, d as i64))
        .collect();
    fields.push(Field::Varint(f::TENSOR_DATA_TYPE, f::TENSOR_FLOAT));
    fields.push(Field::str(f::TENSOR_NAME, name));
    fields.push(data);
    Field::Msg(f::GRAPH_INITIALIZER, fields)
}

fn entry<'a>(key: &str, value: &str) -> Field<'a> {
    Field::Msg(
        f::MODEL_METADATA,
        vec![
            Field::str(f::ENTRY_KEY, key),
            Field::str(f::ENTRY_VALUE, value),
        ],
    )
}

/// Checks shapes, finiteness and the scaler; returns `(d_in, n_classes)`.
fn check_head(h: &HeadGraph) -> Result<(usize, usize), ExportError> {
    let Some(first) = h.layers.first() else {
        return Err(ExportError::EmptyHead);
    };
    let d_in = first.0.nrows();
    let mut prev = d_in;
    for (layer, (w, b)) in h.layers.iter().enumerate() {
        let (rows, cols) = w.dim();
        if rows != prev {
            return Err(ExportError::LayerShape {
                layer,
                what: "weight rows",
                expected: prev,
                found: rows,
            });
        }
        if b.len() != cols {
            return Err(ExportError::LayerShape {
                layer,
                what: "bias length",
                expected: cols,
                found: b.len(),
            });
        }
        if let Some(index) = w.iter().position(|v| !v.is_finite()) {
            return Err(ExportError::NonFinite {
                layer,
                what: "weight",
                index,
            });
        }
        if let Some(index) = b.iter().position(|v| !v.is_finite()) {
            return Err(ExportError::NonFinite {
                layer,
                what: "bias",
                index,
            });
        }
        prev = cols;
    }
    if h.classes.len() != prev {
        return Err(ExportError::ClassCount {
            expected: prev,
            found: h.classes.len(),
        });
    }
    if let Some((mean, std)) = &h.scaler {
        for (what, v) in [("mean", mean), ("std", std)] {
            if v.len() != d_in {
                return Err(ExportError::ScalerShape {
                    what,
                    expected: d_in,
                    found: v.len(),
                });
            }
        }
        if let Some(index) = mean.iter().position(|v| !v.is_finite()) {
            return Err(ExportError::NonFinite {
                layer: 0,
                what: "scaler mean",
                index,
            });
        }
        if let Some((index, &value)) = std
            .iter()
            .enumerate()
            .find(|(_, s)| !(s.is_finite() && **s > 0.0))
        {
            return Err(ExportError::BadStd { index, value });
        }
    }
    Ok((d_in, prev))
}

/// Folds `(x - mean) / std` into the layer `x · wtᵀ + b`: returns `(wt / std column-wise,
/// b - wt · (mean / std))`, computed in f64. `wt: (d_out, d_in)` (the weight in PyTorch's and
/// Gemm-`transB`'s order), `b: (d_out,)`, `mean, std: (d_in,)`.
fn fold_scaler(
    wt: ArrayView2<f32>,
    b: ArrayView1<f32>,
    mean: ArrayView1<f32>,
    std: ArrayView1<f32>,
) -> (Array2<f32>, Array1<f32>) {
    let mut w2 = Array2::<f32>::zeros(wt.raw_dim());
    let mut b2 = b.mapv(f64::from);
    for ((row, mut out), acc) in wt.rows().into_iter().zip(w2.rows_mut()).zip(b2.iter_mut()) {
        for (i, (o, &v)) in out.iter_mut().zip(row).enumerate() {
            let s = f64::from(std[i]);
            *o = (f64::from(v) / s) as f32;
            *acc -= f64::from(mean[i]) / s * f64::from(v);
        }
    }
    (w2, b2.mapv(|v| v as f32))
}

/// The head's nodes and initializers reading `input` (shape `[N, D]`), writing [`OUTPUT_NAME`];
/// internal names start with `prefix`.
fn head_graph_fields<'a>(h: &HeadGraph<'a>, input: &str, prefix: &str) -> Vec<Field<'a>> {
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let mut current = input.to_string();
    let last = h.layers.len() - 1;
    for (i, (w, b)) in h.layers.iter().enumerate() {
        let (w_name, b_name) = (
            format!("{prefix}fc{i}.weight"),
            format!("{prefix}fc{i}.bias"),
        );
        // Written as (d_out, d_in) with Gemm transB = 1: the head's own storage order, so the
        // 100 M weights of the first layer are copied in memory order.
        let wt = (*w).reversed_axes();
        let (d_out, d_in) = wt.dim();
        let (w_field, b_field) = match (&h.scaler, i) {
            (Some((mean, std)), 0) => {
                let (w2, b2) = fold_scaler(wt, *b, *mean, *std);
                (
                    Field::floats_owned(f::TENSOR_RAW_DATA, w2.into_dyn()),
                    Field::floats_owned(f::TENSOR_RAW_DATA, b2.into_dyn()),
                )
            }
            _ => (
                Field::floats_2d(f::TENSOR_RAW_DATA, wt),
                Field::floats_1d(f::TENSOR_RAW_DATA, *b),
            ),
        };
        inits.push(initializer(&w_name, &[d_out, d_in], w_field));
        inits.push(initializer(&b_name, &[d_out], b_field));
        let out = if i == last {
            format!("{prefix}logits")
        } else {
            format!("{prefix}fc{i}")
        };
        nodes.push(node(
            "Gemm",
            &format!("{prefix}gemm{i}"),
            &[&current, &w_name, &b_name],
            &[&out],
            vec![int_attr("transB", 1)],
        ));
        current = out;
        if i != last {
            let relu = format!("{prefix}relu{i}");
            nodes.push(node("Relu", &relu, &[&current], &[&relu], vec![]));
            current = relu;
        }
    }
    nodes.push(node(
        "Softmax",
        &format!("{prefix}softmax"),
        &[&current],
        &[OUTPUT_NAME],
        vec![int_attr("axis", 1)],
    ));
    nodes.extend(inits);
    nodes
}

/// Metadata entries the exporter writes itself, then the head's own; a head key equal to one of
/// ours is an error.
fn head_metadata(h: &HeadGraph, d_in: usize) -> Result<Vec<(String, String)>, ExportError> {
    let mut dims = vec![d_in.to_string()];
    dims.extend(h.layers.iter().map(|(w, _)| w.ncols().to_string()));
    let ours = [
        (
            "classes".to_string(),
            serde_json::Value::from(h.classes.clone()).to_string(),
        ),
        ("vggcache.head_layers".to_string(), dims.join(",")),
        (
            "vggcache.feature_scaling".to_string(),
            if h.scaler.is_some() {
                "folded into the first Gemm"
            } else {
                "none"
            }
            .to_string(),
        ),
        (
            "vggcache.output".to_string(),
            format!(
                "{OUTPUT_NAME}: softmax over classes, [N, {}]",
                h.classes.len()
            ),
        ),
    ];
    if let Some(key) = h
        .metadata
        .keys()
        .find(|k| ours.iter().any(|(o, _)| o == *k))
    {
        return Err(ExportError::ReservedMetadata { key: key.clone() });
    }
    Ok(ours
        .into_iter()
        .chain(h.metadata.iter().map(|(k, v)| (k.clone(), v.clone())))
        .collect())
}

/// The head alone as an ONNX model: input `input_name` `[N, D]` float → Gemm, Relu, ..., Gemm,
/// Softmax → [`OUTPUT_NAME`] `[N, C]` float. Opset [`OPSET`], IR [`IR_VERSION`]; `metadata_props`
/// holds `classes` (a JSON array), the layer sizes, whether scaling was folded, and `h.metadata`.
///
/// Errors: inconsistent shapes, non-finite weights, a bad scaler, a reserved metadata key.
pub fn head_model_bytes(h: &HeadGraph, input_name: &str) -> Result<Vec<u8>, ExportError> {
    let (d_in, n_classes) = check_head(h)?;
    let mut graph = head_graph_fields(h, input_name, "head/");
    graph.push(Field::str(f::GRAPH_NAME, "vggcache_head"));
    graph.push(Field::str(
        f::GRAPH_DOC,
        "vggcache head: Gemm/Relu layers, softmax; dropout removed",
    ));
    graph.push(Field::Msg(
        f::GRAPH_INPUT,
        value_info(input_name, &[Dim::Param("N"), Dim::Value(d_in)]),
    ));
    graph.push(Field::Msg(
        f::GRAPH_OUTPUT,
        value_info(OUTPUT_NAME, &[Dim::Param("N"), Dim::Value(n_classes)]),
    ));
    let mut model = vec![
        Field::Varint(f::MODEL_IR_VERSION, IR_VERSION),
        Field::str(f::MODEL_PRODUCER_NAME, "vggcache"),
        Field::str(f::MODEL_PRODUCER_VERSION, env!("CARGO_PKG_VERSION")),
        Field::str(f::MODEL_DOC, "Classifier head on cached trunk features"),
        Field::Msg(
            f::MODEL_OPSET_IMPORT,
            vec![
                Field::str(f::OPSET_DOMAIN, ""),
                Field::Varint(f::OPSET_VERSION, OPSET),
            ],
        ),
        Field::Msg(f::MODEL_GRAPH, graph),
    ];
    model.extend(head_metadata(h, d_in)?.iter().map(|(k, v)| entry(k, v)));
    Ok(proto::encode(&model))
}

/// Trunk and head as one model: `trunk_onnx`'s graph, unchanged, then Flatten(`trunk_output_name`,
/// axis 1) → the head → [`OUTPUT_NAME`] `[N, C]`. The trunk's inputs, outputs (its feature output
/// stays as a second output), opsets, IR version and metadata (preprocessing) are kept; the head's
/// metadata is added (a key already in the trunk with the same value is not repeated).
///
/// The result is `trunk_onnx` followed by an appended `ModelProto` (see the module doc). A trunk
/// with external tensor data ([`ModelSummary::has_external_data`]) still refers to its data file by
/// relative path, so the result must be saved beside that file.
///
/// Errors: a malformed trunk, no graph, no tensor `trunk_output_name`, a clash with the head's
/// names, trunk IR < [`MIN_TRUNK_IR`] or default opset < [`MIN_TRUNK_OPSET`], a metadata key the
/// trunk holds with another value, and the head errors of [`head_model_bytes`].
pub fn with_trunk_model_bytes(
    trunk_onnx: &[u8],
    trunk_output_name: &str,
    h: &HeadGraph,
) -> Result<Vec<u8>, ExportError> {
    let (d_in, n_classes) = check_head(h)?;
    let trunk = inspect(trunk_onnx)?;
    if trunk.ir_version < MIN_TRUNK_IR {
        return Err(ExportError::OldIr {
            found: trunk.ir_version,
        });
    }
    match trunk.default_opset() {
        Some(v) if v >= MIN_TRUNK_OPSET => {}
        found => return Err(ExportError::Opset { found }),
    }
    if !trunk.tensor_names.contains(trunk_output_name) {
        return Err(ExportError::MissingTensor {
            name: trunk_output_name.to_string(),
            outputs: trunk.graph_outputs.clone(),
        });
    }
    const PREFIX: &str = "vggcache_head/";
    if let Some(name) = trunk
        .tensor_names
        .iter()
        .find(|n| n.starts_with(PREFIX) || n.as_str() == OUTPUT_NAME)
    {
        return Err(ExportError::NameClash { name: name.clone() });
    }

    let flat = format!("{PREFIX}flatten");
    let mut graph = vec![node(
        "Flatten",
        &flat,
        &[trunk_output_name],
        &[&flat],
        vec![int_attr("axis", 1)],
    )];
    graph.extend(head_graph_fields(h, &flat, PREFIX));
    // Batch size left unnamed: the trunk may call it anything, or fix it.
    graph.push(Field::Msg(
        f::GRAPH_OUTPUT,
        value_info(OUTPUT_NAME, &[Dim::Unknown, Dim::Value(n_classes)]),
    ));
    let mut appended = vec![Field::Msg(f::MODEL_GRAPH, graph)];
    let existing: BTreeMap<&str, &str> = trunk
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for (k, v) in head_metadata(h, d_in)? {
        match existing.get(k.as_str()) {
            None => appended.push(entry(&k, &v)),
            Some(&old) if old == v => {}
            Some(&old) => {
                return Err(ExportError::MetadataConflict {
                    key: k,
                    existing: old.to_string(),
                    new: v,
                })
            }
        }
    }
    let tail = proto::encode(&appended);
    let mut out = Vec::with_capacity(trunk_onnx.len() + tail.len());
    out.extend_from_slice(trunk_onnx);
    out.extend_from_slice(&tail);
    Ok(out)
}

fn malformed(message: &'static str) -> impl Fn(proto::DecodeError) -> ExportError {
    move |e| ExportError::Malformed {
        message,
        what: e.what,
        offset: e.offset,
    }
}

fn utf8(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Reads the top-level facts of a serialized `ModelProto` (see [`ModelSummary`]); fields repeated
/// by concatenation merge as protobuf does (the last scalar wins, repeated fields append).
pub fn inspect(onnx: &[u8]) -> Result<ModelSummary, ExportError> {
    let mut s = ModelSummary::default();
    let mut saw_graph = false;
    for (number, value) in proto::fields(onnx).map_err(malformed("ModelProto"))? {
        match (number, value) {
            (f::MODEL_IR_VERSION, Value::Varint(v)) => s.ir_version = v as i64,
            (f::MODEL_OPSET_IMPORT, Value::Bytes(b)) => {
                let (mut domain, mut version) = (String::new(), 0);
                for (n, v) in proto::fields(b).map_err(malformed("OperatorSetIdProto"))? {
                    match (n, v) {
                        (f::OPSET_DOMAIN, Value::Bytes(d)) => domain = utf8(d),
                        (f::OPSET_VERSION, Value::Varint(v)) => version = v as i64,
                        _ => {}
                    }
                }
                s.opsets.push((domain, version));
            }
            (f::MODEL_METADATA, Value::Bytes(b)) => {
                let (k, v) = string_entry(b)?;
                s.metadata.push((k, v));
            }
            (f::MODEL_GRAPH, Value::Bytes(b)) => {
                saw_graph = true;
                read_graph(b, &mut s)?;
            }
            _ => {}
        }
    }
    if !saw_graph {
        return Err(ExportError::NoGraph);
    }
    Ok(s)
}

fn string_entry(b: &[u8]) -> Result<(String, String), ExportError> {
    let (mut k, mut v) = (String::new(), String::new());
    for (n, val) in proto::fields(b).map_err(malformed("StringStringEntryProto"))? {
        match (n, val) {
            (f::ENTRY_KEY, Value::Bytes(x)) => k = utf8(x),
            (f::ENTRY_VALUE, Value::Bytes(x)) => v = utf8(x),
            _ => {}
        }
    }
    Ok((k, v))
}

/// The `name` (field 1 for ValueInfoProto) of an embedded message, if any.
fn name_field(b: &[u8], number: u32, message: &'static str) -> Result<Option<String>, ExportError> {
    Ok(proto::fields(b)
        .map_err(malformed(message))?
        .into_iter()
        .rev()
        .find_map(|(n, v)| match (n, v) {
            (n, Value::Bytes(x)) if n == number => Some(utf8(x)),
            _ => None,
        }))
}

fn read_graph(b: &[u8], s: &mut ModelSummary) -> Result<(), ExportError> {
    for (number, value) in proto::fields(b).map_err(malformed("GraphProto"))? {
        let Value::Bytes(m) = value else { continue };
        match number {
            f::GRAPH_NODE => {
                for (n, v) in proto::fields(m).map_err(malformed("NodeProto"))? {
                    if let (f::NODE_OUTPUT, Value::Bytes(o)) = (n, v) {
                        s.tensor_names.insert(utf8(o));
                    }
                }
            }
            f::GRAPH_INITIALIZER => {
                for (n, v) in proto::fields(m).map_err(malformed("TensorProto"))? {
                    match (n, v) {
                        (f::TENSOR_NAME, Value::Bytes(x)) => {
                            s.tensor_names.insert(utf8(x));
                        }
                        (f::TENSOR_DATA_LOCATION, Value::Varint(1)) => s.has_external_data = true,
                        _ => {}
                    }
                }
            }
            f::GRAPH_INPUT | f::GRAPH_OUTPUT | f::GRAPH_VALUE_INFO => {
                if let Some(name) = name_field(m, f::VALUE_INFO_NAME, "ValueInfoProto")? {
                    s.tensor_names.insert(name.clone());
                    match number {
                        f::GRAPH_INPUT => s.graph_inputs.push(name),
                        f::GRAPH_OUTPUT => s.graph_outputs.push(name),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn small_head<'a>(w0: &'a Array2<f32>, b0: &'a Array1<f32>) -> HeadGraph<'a> {
        HeadGraph {
            layers: vec![(w0.view(), b0.view())],
            scaler: None,
            classes: vec!["a".into(), "b".into()],
            metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn fold_matches_explicit_scaling() {
        let w = array![[1.0f32, -2.0], [0.5, 3.0], [2.0, 0.0]];
        let b = array![0.1f32, -0.2];
        let mean = array![1.0f32, -1.0, 0.5];
        let std = array![2.0f32, 0.5, 4.0];
        let x = array![[3.0f32, 1.0, -2.0]];
        let explicit = ((&x - &mean) / &std).dot(&w) + &b;
        let (w2, b2) = fold_scaler(w.t(), b.view(), mean.view(), std.view());
        let folded = x.dot(&w2.t()) + &b2;
        for (a, c) in explicit.iter().zip(folded.iter()) {
            assert!((a - c).abs() < 1e-5, "{a} vs {c}");
        }
    }

    #[test]
    fn head_model_reads_back() {
        let (w, b) = (Array2::<f32>::ones((4, 2)), Array1::<f32>::zeros(2));
        let bytes = head_model_bytes(&small_head(&w, &b), "features").expect("valid head");
        let s = inspect(&bytes).expect("parses");
        assert_eq!(s.ir_version, IR_VERSION);
        assert_eq!(s.default_opset(), Some(OPSET));
        assert_eq!(s.graph_inputs, vec!["features"]);
        assert_eq!(s.graph_outputs, vec![OUTPUT_NAME]);
        assert!(s
            .metadata
            .contains(&("classes".into(), r#"["a","b"]"#.into())));
        assert!(!s.has_external_data);
    }

    #[test]
    fn head_errors() {
        let (w, b) = (Array2::<f32>::ones((4, 2)), Array1::<f32>::zeros(3));
        let e = head_model_bytes(&small_head(&w, &b), "x").expect_err("bias length");
        assert!(matches!(
            e,
            ExportError::LayerShape {
                what: "bias length",
                expected: 2,
                found: 3,
                ..
            }
        ));
        let b = Array1::<f32>::zeros(2);
        let mut h = small_head(&w, &b);
        h.classes.push("c".into());
        assert!(matches!(
            head_model_bytes(&h, "x"),
            Err(ExportError::ClassCount {
                expected: 2,
                found: 3
            })
        ));
        let (mean, std) = (Array1::<f32>::zeros(4), array![1.0f32, 0.0, 1.0, 1.0]);
        let mut h = small_head(&w, &b);
        h.scaler = Some((mean.view(), std.view()));
        assert!(matches!(
            head_model_bytes(&h, "x"),
            Err(ExportError::BadStd { index: 1, .. })
        ));
        let mut h = small_head(&w, &b);
        h.metadata.insert("classes".into(), "x".into());
        assert!(matches!(
            head_model_bytes(&h, "x"),
            Err(ExportError::ReservedMetadata { .. })
        ));
    }

    #[test]
    fn trunk_errors() {
        let (w, b) = (Array2::<f32>::ones((4, 2)), Array1::<f32>::zeros(2));
        let h = small_head(&w, &b);
        assert!(matches!(
            with_trunk_model_bytes(&[0x0b], "y", &h),
            Err(ExportError::Malformed { .. })
        ));
        assert!(matches!(
            with_trunk_model_bytes(&[0x08, 0x08], "y", &h),
            Err(ExportError::NoGraph)
        ));
        // A head model as "trunk": no tensor "nope", and its "probabilities" would clash.
        let trunk = head_model_bytes(&h, "features").expect("valid");
        match with_trunk_model_bytes(&trunk, "nope", &h) {
            Err(ExportError::MissingTensor { outputs, .. }) => {
                assert_eq!(outputs, vec![OUTPUT_NAME])
            }
            other => panic!("expected MissingTensor, got {other:?}"),
        }
        assert!(matches!(
            with_trunk_model_bytes(&trunk, "head/logits", &h),
            Err(ExportError::NameClash { .. })
        ));
    }
}
